"""Listing search: typed parameters become a Meilisearch query (here), or, when Meilisearch is down, a
PostgreSQL full-text query with the same filters, sorts and facets (bazaar/search/fallback.py); which one
answers is decided by bazaar/search/service.py. User input never reaches a filter unescaped: attribute names
are fixed here, numbers are formatted from ints/floats, every string is quoted and escaped (Meilisearch) or
bound as a parameter (PostgreSQL).

Both backends answer hits already in the API's shape (`Hit`, the documented `SearchHit`): the API sends them
as they are, with no model built or validated per hit.
"""

from __future__ import annotations

import enum
import html
import math
import time
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypedDict

from bazaar.listings.lifecycle import NO_RATINGS
from bazaar.payments.money import CURRENCY_EXPONENTS
from bazaar.search import words
from bazaar.search.index import PRICE_BUCKETS
from bazaar.search.meili import Meili


class SortOrder(enum.StrEnum):
    RELEVANCE = "relevance"
    NEWEST = "newest"
    PRICE_ASC = "price_asc"
    PRICE_DESC = "price_desc"
    POPULAR = "popular"
    RATING = "rating"
    DISTANCE = "distance"


FACET_ATTRIBUTES = ["categories", "condition", "price_bucket"]
# Our facet names in responses -> the index attribute they count.
FACET_NAMES = {"category": "categories", "condition": "condition", "price": "price_bucket"}
# Returned fields of a hit; everything else in the document stays in Meilisearch.
HIT_ATTRIBUTES = [
    "id",
    "title",
    "price_amount",
    "currency",
    "category",
    "condition",
    "city",
    "country",
    "seller_id",
    "image_url",
    "_geo",
    "seller_rating",
    "seller_rating_count",
]
# Highlight markers no listing text contains; turned into <em> after HTML-escaping the text itself.
MARK_START, MARK_END = "\ue000", "\ue001"
# Every search, whatever it asks: no listings of a seller who cannot take charges now
# (bazaar/payments/onboarding.py). `!=` keeps documents written before the flag existed (Meilisearch matches a
# missing attribute) until they are rewritten.
SELLABLE = "seller_can_sell != false"
EARTH_RADIUS_M = 6_371_000.0


@dataclass
class ListingQuery:
    q: str = ""
    categories: list[str] = field(default_factory=list)
    conditions: list[str] = field(default_factory=list)
    min_price: int | None = None
    max_price: int | None = None
    currency: str | None = None
    seller_id: str | None = None
    lat: float | None = None
    lng: float | None = None
    radius_km: float | None = None
    sort: SortOrder = SortOrder.RELEVANCE
    page: int = 1
    per_page: int = 20
    facets: bool = False
    # From words of `q` like "under 200" (interpret): bounds in major units of each listing's own currency.
    min_major: float | None = None
    max_major: float | None = None
    cheapest_first: bool = False  # from words like "cheap": relevance first, then the lower price


def interpret(query: ListingQuery) -> ListingQuery:
    """The query as both backends run it: a price phrase in `q` ("under 200 euro") leaves the text and
    becomes price bounds (words.price_words), unless the request sets its own."""
    rest, price = words.price_words(query.q)
    if price is None:
        return query
    own = query.min_price is not None or query.max_price is not None
    return replace(
        query,
        q=rest,
        cheapest_first=price.cheapest_first,
        min_major=None if own else price.min_major,
        max_major=None if own else price.max_major,
        currency=query.currency or (None if own else price.currency),
    )


class Price(TypedDict):
    amount: int
    currency: str


class Hit(TypedDict):
    """One hit in the API's shape (api.schemas.SearchHit)."""

    id: str
    title: str
    price: Price
    category: str
    condition: str
    city: str | None
    country: str | None
    seller_id: str
    image_url: str | None
    highlight: dict[str, str]
    distance_m: int | None
    # bazaar.listings.lifecycle.SellerRating: what the listing ranks by (the prior if unrated)
    seller_rating: float
    seller_rating_count: int


@dataclass
class SearchResult:
    hits: list[Hit]
    total: int
    facets: dict[str, dict[str, int]] | None
    processing_time_ms: int
    backend: Literal["meilisearch", "postgres"]
    backend_seconds: float = 0.0  # time spent waiting for the backend (Server-Timing)


# ----------------------------------------------------------------------------------- Meilisearch query


def quote(value: str) -> str:
    """A Meilisearch filter string literal: escape backslash and double quote, then wrap in quotes."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def build_filter(query: ListingQuery) -> list[str | list[str]]:
    """AND of clauses; a list inside is an OR. Attribute names are fixed here, values typed or quoted."""
    clauses: list[str | list[str]] = []
    if query.categories:
        clauses.append([f"categories = {quote(c)}" for c in query.categories])
    if query.conditions:
        clauses.append([f"condition = {quote(c)}" for c in query.conditions])
    if query.currency:
        clauses.append(f"currency = {quote(query.currency)}")
    if query.min_price is not None:
        clauses.append(f"price_amount >= {int(query.min_price)}")
    if query.max_price is not None:
        clauses.append(f"price_amount <= {int(query.max_price)}")
    if query.seller_id:
        clauses.append(f"seller_id = {quote(query.seller_id)}")
    if query.min_major is not None or query.max_major is not None:
        clauses.append(_major_price_filter(query))
    if query.lat is not None and query.lng is not None and query.radius_km is not None:
        clauses.append(
            f"_geoRadius({float(query.lat)}, {float(query.lng)}, {round(float(query.radius_km) * 1000)})"
        )
    return clauses


def _major_price_filter(query: ListingQuery) -> str:
    """Bounds in major units: per group of currencies with the same number of decimals, in minor units."""
    groups: dict[int, list[str]] = {}
    for code in [query.currency] if query.currency else list(CURRENCY_EXPONENTS):
        groups.setdefault(CURRENCY_EXPONENTS.get(code, 2), []).append(code)
    parts = []
    for exponent, codes in sorted(groups.items()):
        low, high = words.minor_bounds(words.PriceWords(query.min_major, query.max_major), exponent)
        clause = [f"currency IN [{', '.join(quote(c) for c in codes)}]"]
        clause += [f"price_amount >= {int(low)}"] if low is not None else []
        clause += [f"price_amount <= {int(high)}"] if high is not None else []
        parts.append("(" + " AND ".join(clause) + ")")
    return " OR ".join(parts)


def sorts_matches(query: ListingQuery) -> bool:
    """An order the caller chose (not relevance): it orders the listings matching every word of `q`, and
    the text rules only break its ties (the `sort` ranking rule follows `words`: bazaar/search/index.py)."""
    return query.sort != SortOrder.RELEVANCE


def by_price(query: ListingQuery, direction: Literal["asc", "desc"]) -> list[str]:
    """Prices compare within a currency: without a `currency` filter, currencies in code order."""
    return [*([] if query.currency else ["currency:asc"]), f"price_amount:{direction}"]


def build_sort(query: ListingQuery) -> list[str]:
    match query.sort:
        case SortOrder.NEWEST:
            return ["published_at:desc"]
        case SortOrder.PRICE_ASC:
            return by_price(query, "asc")
        case SortOrder.PRICE_DESC:
            return by_price(query, "desc")
        case SortOrder.POPULAR:
            return ["popularity:desc"]
        case SortOrder.RATING:
            return ["seller_rating:desc"]
        case SortOrder.DISTANCE:
            return [f"_geoPoint({float(query.lat or 0)}, {float(query.lng or 0)}):asc"]
        case _:  # relevance: "cheap" puts the lower price first among listings matching as many words
            return by_price(query, "asc") if query.cheapest_first else []


def build_request(query: ListingQuery) -> dict[str, Any]:
    query = interpret(query)
    body: dict[str, Any] = {
        "q": words.meili_text(query.q),
        "filter": build_filter(query),
        "sort": build_sort(query),  # after interpret: "cheap" sorts
        # A chosen order lists what matches every word; relevance may drop words from the end.
        "matchingStrategy": "all" if sorts_matches(query) else "last",
        "page": query.page,
        "hitsPerPage": query.per_page,
        "attributesToRetrieve": HIT_ATTRIBUTES,
        "attributesToHighlight": ["title", "description"],
        "attributesToCrop": ["description"],
        "cropLength": 30,
        "highlightPreTag": MARK_START,
        "highlightPostTag": MARK_END,
    }
    if query.facets:
        body["facets"] = FACET_ATTRIBUTES
    return body


def render_highlight(marked: str) -> str:
    """HTML-safe snippet: the listing's text escaped, only our own markers become <em>."""
    return html.escape(marked, quote=False).replace(MARK_START, "<em>").replace(MARK_END, "</em>")


def distance_m(lat1: float, lng1: float, lat2: float, lng2: float) -> int:
    """Great-circle distance (haversine), the same formula as the PostgreSQL fallback."""
    p1, p2 = math.radians(lat1), math.radians(lat2)
    dp, dl = p2 - p1, math.radians(lng2 - lng1)
    a = math.sin(dp / 2) ** 2 + math.cos(p1) * math.cos(p2) * math.sin(dl / 2) ** 2
    return round(2 * EARTH_RADIUS_M * math.asin(min(1.0, math.sqrt(a))))


def _meili_hit(doc: dict[str, Any], query: ListingQuery) -> Hit:
    formatted = doc.get("_formatted") or {}
    distance = None
    if "_geoDistance" in doc:
        # Meilisearch's own distance when it sorted by distance: the figure it ordered the hits by (found from
        # outside: ours, rounded from another earth radius, ran 1 m backwards between neighbours).
        distance = int(doc["_geoDistance"])
    elif query.lat is not None and query.lng is not None and (geo := doc.get("_geo")):
        distance = distance_m(query.lat, query.lng, float(geo["lat"]), float(geo["lng"]))
    rating_count = int(doc.get("seller_rating_count") or 0)
    highlight = {}
    if title := formatted.get("title"):
        highlight["title"] = render_highlight(str(title))
    if description := formatted.get("description"):
        highlight["description"] = render_highlight(str(description))
    return {
        "id": doc["id"],
        "title": doc["title"],
        "price": {"amount": doc["price_amount"], "currency": doc["currency"]},
        "category": doc["category"],
        "condition": doc["condition"],
        "city": doc.get("city"),
        "country": doc.get("country"),
        "seller_id": doc["seller_id"],
        "image_url": doc.get("image_url"),
        "highlight": highlight,
        "distance_m": distance,
        # A document written before ratings were indexed has no count: it shows (and ranks as) unrated.
        "seller_rating": float(doc["seller_rating"]) if rating_count else NO_RATINGS.score,
        "seller_rating_count": rating_count,
    }


def _meili_facets(distribution: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    facets = {name: dict(distribution.get(attribute, {})) for name, attribute in FACET_NAMES.items()}
    facets["price"] = {
        label: facets["price"][label] for label, _ in PRICE_BUCKETS if label in facets["price"]
    }
    return facets


async def search_meili(meili: Meili, index: str, query: ListingQuery) -> SearchResult:
    started = time.perf_counter()
    request = build_request(query)
    request["filter"] = [*request["filter"], SELLABLE]
    result = await meili.search(index, request)
    waited = time.perf_counter() - started
    return SearchResult(
        hits=[_meili_hit(h, query) for h in result["hits"]],
        total=int(result.get("totalHits", result.get("estimatedTotalHits", 0))),
        facets=_meili_facets(result.get("facetDistribution") or {}) if query.facets else None,
        processing_time_ms=int(result.get("processingTimeMs", 0)),
        backend="meilisearch",
        backend_seconds=waited,
    )
