"""Buyers search active listings: Meilisearch (search-only key), or PostgreSQL while it is unreachable.

This route is the documented contract (the OpenAPI operation, its validation and its errors). Well-formed
searches are answered by `api.search_direct` before routing, with the same checks (`cross_field_problem`),
the same limit and the same rendering (`render`); anything it does not recognise as plain comes here.
"""

from __future__ import annotations

import time
import uuid
from typing import Annotated

import orjson
from fastapi import APIRouter, Query, Response

from api.deps import Search
from api.listing_schemas import SearchOut
from api.metrics import SEARCH_LATENCY, SEARCH_REQUESTS
from api.openapi import SCHEMAS, errors, header, merge
from api.ratelimits import SearchLimit
from api.schemas import INT64_MAX
from bazaar.errors import DomainError, ErrorCode, field_error
from bazaar.models import ListingCondition
from bazaar.payments.money import Currency
from bazaar.search.index import MAX_TOTAL_HITS
from bazaar.search.query import ListingQuery, SearchResult, SortOrder
from bazaar.text import single_line

PATH = "/v1/search/listings"
router = APIRouter(prefix="/v1/search", tags=["search"])


CategorySlug = Annotated[str, single_line(min_length=1, max_length=64, strip=False)]
Price = Annotated[int | None, Query(ge=0, le=INT64_MAX, description="minor units of `currency`")]
# Per backend, bound once: `labels()` looks the child up under a lock on every call.
_LATENCY = {b: SEARCH_LATENCY.labels(b) for b in ("meilisearch", "postgres")}
_ANSWERED = {b: SEARCH_REQUESTS.labels(b) for b in ("meilisearch", "postgres")}


def cross_field_problem(query: ListingQuery) -> DomainError | None:
    """What the parameters cannot mean together (each one valid on its own), or None."""
    # Each names the parameter to add or change (`details.errors[].loc`), as a single parameter's 422 does.
    if (query.lat is None) != (query.lng is None) or (query.radius_km is not None and query.lat is None):
        missing = "lat" if query.lat is None else "lng"
        return field_error(missing, "lat and lng go together (and radius_km needs both)", "missing", "query")
    if query.sort == SortOrder.DISTANCE and query.lat is None:
        return field_error("lat", "sort=distance needs lat and lng", "missing", "query")
    if (query.min_price is not None or query.max_price is not None) and query.currency is None:
        return field_error("currency", "min_price and max_price need a currency", "missing", "query")
    if query.min_price is not None and query.max_price is not None and query.min_price > query.max_price:
        return field_error("min_price", "min_price is above max_price", "value_error", "query")
    if query.page * query.per_page > MAX_TOTAL_HITS:
        return field_error(
            "page",
            f"results beyond the first {MAX_TOTAL_HITS} are not served; refine the search",
            "value_error",
            "query",
            max_page=MAX_TOTAL_HITS // query.per_page,
        )
    return None


def render(result: SearchResult, query: ListingQuery, entered: float) -> tuple[bytes, dict[str, str]]:
    """The 200's body (SearchOut's shape: the hits are already in it) and its own headers."""
    body = orjson.dumps(
        {
            "hits": result.hits,
            "total": result.total,
            "page": query.page,
            "per_page": query.per_page,
            "facets": result.facets,
            "processing_time_ms": result.processing_time_ms,
            "backend": result.backend,
        }
    )
    return body, {
        "X-Search-Backend": result.backend,
        "Server-Timing": f"{result.backend};dur={result.backend_seconds * 1000:.2f}, "
        f"handler;dur={(time.perf_counter() - entered) * 1000:.2f}",
    }


def observe(result: SearchResult) -> None:
    """Search metrics (after the response is on its way)."""
    _LATENCY[result.backend].observe(result.backend_seconds)
    _ANSWERED[result.backend].inc()


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
                        {"$ref": f"{SCHEMAS}SearchBackend"},
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
    q: Annotated[
        Annotated[str, single_line(max_length=200)],
        Query(
            description="words to find (a typo allowed from 5 letters, two from 8, one in the first letter "
            "counting as two; synonyms); a price phrase ('under 200 euro', 'between 1,000 and 2,000') becomes "
            "bounds in major units; 'cheap' puts the lower price first"
        ),
    ] = "",
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
    sort: Annotated[
        SortOrder,
        Query(
            description="relevance (default) may drop words of `q` from the end; any other order lists the "
            "listings with every word of `q` in that order. Prices compare within a currency: without "
            "`currency`, grouped by currency code, then by price"
        ),
    ] = SortOrder.RELEVANCE,
    page: Annotated[
        int,
        Query(
            ge=1,
            le=MAX_TOTAL_HITS,
            description=f"1-based; the first {MAX_TOTAL_HITS:,} matches are served: page x per_page up to "
            f"{MAX_TOTAL_HITS:,} (beyond: 422 naming `page`, with `details.max_page`)",
        ),
    ] = 1,
    per_page: Annotated[int, Query(ge=1, le=100)] = 20,
    facets: Annotated[bool, Query(description="counts per category, condition and price bucket")] = False,
) -> Response:
    """Active listings ranked by relevance, then popularity (views, orders) and the seller's reputation, with
    filters, facets and a sort order.
    Public: no credentials needed (a valid token only sets whose request limit applies)."""
    entered = time.perf_counter()
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
    if (problem := cross_field_problem(query)) is not None:
        raise problem
    if query.categories:  # most searches name none: no taxonomy lookup for them
        (await service.taxonomy()).require(query.categories)
    result = await service.search(query)
    body, headers = render(result, query, entered)
    observe(result)
    return Response(body, media_type="application/json", headers=headers)
