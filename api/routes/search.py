"""Buyers search active listings: Meilisearch (search-only key), or PostgreSQL while it is unreachable."""

from __future__ import annotations

import json
import time
import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Response

from api.deps import Search
from api.metrics import SEARCH_LATENCY, SEARCH_REQUESTS
from api.openapi import errors, header, merge
from api.ratelimits import SearchLimit
from api.schemas import INT64_MAX, SearchOut
from bazaar.errors import DomainError, ErrorCode
from bazaar.models import ListingCondition
from bazaar.payments.money import Currency
from bazaar.search.index import MAX_TOTAL_HITS
from bazaar.search.query import ListingQuery, SortOrder
from bazaar.text import single_line

router = APIRouter(prefix="/v1/search", tags=["search"])


CategorySlug = Annotated[str, single_line(min_length=1, max_length=64, strip=False)]
Price = Annotated[int | None, Query(ge=0, le=INT64_MAX, description="minor units of `currency`")]


@router.get(
    "/listings",
    response_model=SearchOut,
    responses=merge(
        {
            200: {
                "description": "one page of matching active listings",
                "headers": {
                    "X-Search-Backend": header(
                        "who answered: meilisearch, or postgres (degraded mode while Meilisearch is unreachable)",
                        {"type": "string", "enum": ["meilisearch", "postgres"]},
                    ),
                    "Server-Timing": header("time spent in the search backend and in the handler"),
                },
            }
        },
        errors(ErrorCode.UNKNOWN_CATEGORY),
    ),
)
async def search_listings(
    service: Search,
    _limit: SearchLimit,
    q: Annotated[Annotated[str, single_line(max_length=200)], Query()] = "",
    category: Annotated[
        list[CategorySlug], Query(max_length=10, description="slug; includes sub-categories; several = any")
    ] = [],  # noqa: B006
    condition: Annotated[list[ListingCondition], Query(max_length=5)] = [],  # noqa: B006
    min_price: Price = None,
    max_price: Price = None,
    currency: Annotated[Currency | None, Query(description="ISO 4217")] = None,
    seller_id: uuid.UUID | None = None,
    lat: Annotated[float | None, Query(ge=-90, le=90)] = None,
    lng: Annotated[float | None, Query(ge=-180, le=180)] = None,
    radius_km: Annotated[float | None, Query(gt=0, le=20_000)] = None,
    sort: SortOrder = SortOrder.RELEVANCE,
    page: Annotated[int, Query(ge=1, le=MAX_TOTAL_HITS)] = 1,
    per_page: Annotated[int, Query(ge=1, le=100)] = 20,
    facets: Annotated[bool, Query(description="counts per category, condition and price bucket")] = False,
) -> Response:
    entered = time.perf_counter()
    if (lat is None) != (lng is None) or (radius_km is not None and lat is None):
        raise DomainError(ErrorCode.VALIDATION_ERROR, "lat and lng go together (and radius_km needs both)")
    if sort == SortOrder.DISTANCE and lat is None:
        raise DomainError(ErrorCode.VALIDATION_ERROR, "sort=distance needs lat and lng")
    if (min_price is not None or max_price is not None) and currency is None:
        raise DomainError(ErrorCode.VALIDATION_ERROR, "min_price and max_price need a currency")
    if min_price is not None and max_price is not None and min_price > max_price:
        raise DomainError(ErrorCode.VALIDATION_ERROR, "min_price is above max_price")
    if page * per_page > MAX_TOTAL_HITS:
        raise DomainError(
            ErrorCode.VALIDATION_ERROR,
            f"results beyond the first {MAX_TOTAL_HITS} are not served; refine the search",
            {"max_page": MAX_TOTAL_HITS // per_page},
        )
    if category:  # most searches name none: no taxonomy lookup for them
        (await service.taxonomy()).require(category)
    query = ListingQuery(
        q=q,
        categories=list(dict.fromkeys(category)),
        conditions=list(dict.fromkeys(c.value for c in condition)),
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
    result = await service.search(query)
    SEARCH_LATENCY.labels(result.backend).observe(time.perf_counter() - started)
    SEARCH_REQUESTS.labels(result.backend).inc()
    # Serialised by hand in SearchOut's shape (tests validate it against the model): building and then
    # re-validating pydantic models for every hit cost about a third of the API's own time per search.
    body = {
        "hits": [
            {
                "id": h.id,
                "title": h.title,
                "price": {"amount": h.price_amount, "currency": h.currency},
                "category": h.category,
                "condition": h.condition,
                "city": h.city,
                "country": h.country,
                "seller_id": h.seller_id,
                "image_url": h.image_url,
                "highlight": h.highlight,
                "distance_m": h.distance_m,
                "seller_rating": h.seller_rating,
                "seller_rating_count": h.seller_rating_count,
            }
            for h in result.hits
        ],
        "total": result.total,
        "page": page,
        "per_page": per_page,
        "facets": result.facets,
        "processing_time_ms": result.processing_time_ms,
        "backend": result.backend,
    }
    return Response(
        json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode(),
        media_type="application/json",
        headers={
            "X-Search-Backend": result.backend,
            "Server-Timing": f"{result.backend};dur={result.backend_seconds * 1000:.2f}, "
            f"handler;dur={(time.perf_counter() - entered) * 1000:.2f}",
        },
    )
