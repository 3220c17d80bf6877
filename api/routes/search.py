"""Buyers search active listings (Meilisearch, through a search-only key)."""

from __future__ import annotations

import time
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Query

from api.deps import MeiliClient
from api.metrics import SEARCH_LATENCY
from api.schemas import Condition, SearchHit, SearchOut
from bazaar.errors import DomainError, ErrorCode
from bazaar.meili import MeiliError
from bazaar.money import Money
from bazaar.search import ListingQuery, SortOrder, search_listings
from bazaar.settings import get_settings

router = APIRouter(prefix="/v1/search", tags=["search"])


@router.get("/listings", response_model=SearchOut)
async def search(
    meili: MeiliClient,
    q: Annotated[str, Query(max_length=200)] = "",
    category: Annotated[list[str], Query(max_length=10, description="slug; includes sub-categories")] = [],  # noqa: B006
    condition: Annotated[list[Condition], Query(max_length=5)] = [],  # noqa: B006
    min_price: Annotated[int | None, Query(ge=0, description="minor units")] = None,
    max_price: Annotated[int | None, Query(ge=0, description="minor units")] = None,
    currency: Annotated[str | None, Query(pattern="^[A-Z]{3}$")] = None,
    seller_id: uuid.UUID | None = None,
    lat: Annotated[float | None, Query(ge=-90, le=90)] = None,
    lng: Annotated[float | None, Query(ge=-180, le=180)] = None,
    radius_km: Annotated[float | None, Query(gt=0, le=20_000)] = None,
    sort: SortOrder = SortOrder.RELEVANCE,
    page: Annotated[int, Query(ge=1, le=500)] = 1,
    per_page: Annotated[int, Query(ge=1, le=100)] = 20,
    facets: bool = False,
) -> SearchOut:
    if (lat is None) != (lng is None) or (radius_km is not None and lat is None):
        raise DomainError(ErrorCode.VALIDATION_ERROR, "lat and lng go together (and radius_km needs both)")
    if sort == SortOrder.DISTANCE and lat is None:
        raise DomainError(ErrorCode.VALIDATION_ERROR, "sort=distance needs lat and lng")
    if min_price is not None and max_price is not None and min_price > max_price:
        raise DomainError(ErrorCode.VALIDATION_ERROR, "min_price is above max_price")
    query = ListingQuery(
        q=q,
        categories=category,
        conditions=list(condition),
        min_price=min_price,
        max_price=max_price,
        currency=currency,
        seller_id=str(seller_id) if seller_id else None,
        lat=lat,
        lng=lng,
        radius_km=radius_km,
        sort=sort,
        page=page,
        per_page=per_page,
        facets=facets,
    )
    started = time.perf_counter()
    try:
        result = await search_listings(meili, get_settings().meili_index, query)
    except MeiliError as exc:
        raise DomainError(ErrorCode.SERVICE_UNAVAILABLE, "search is unavailable, retry shortly") from exc
    finally:
        SEARCH_LATENCY.labels("meilisearch").observe(time.perf_counter() - started)
    return SearchOut(
        hits=[_hit(h) for h in result["hits"]],
        total=result.get("totalHits", result.get("estimatedTotalHits", 0)),
        page=page,
        per_page=per_page,
        facets=result.get("facetDistribution") if facets else None,
        processing_time_ms=result.get("processingTimeMs", 0),
    )


def _hit(doc: dict[str, Any]) -> SearchHit:
    formatted = doc.get("_formatted", {})
    return SearchHit(
        id=doc["id"],
        title=doc["title"],
        price=Money(amount=doc["price_amount"], currency=doc["currency"]),
        category=doc["category"],
        condition=doc["condition"],
        city=doc.get("city"),
        country=doc.get("country"),
        seller_id=doc["seller_id"],
        image_url=doc.get("image_url"),
        highlight={k: formatted[k] for k in ("title", "description") if k in formatted},
        distance_m=doc.get("_geoDistance"),
    )
