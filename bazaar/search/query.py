"""Listing search: typed parameters become a Meilisearch query, or, when Meilisearch is down, a PostgreSQL
full-text query with the same filters, sorts and facets. User input never reaches a filter unescaped:
attribute names are fixed here, numbers are formatted from ints/floats, every string is quoted and escaped
(Meilisearch) or bound as a parameter (PostgreSQL).
"""

from __future__ import annotations

import enum
import html
import logging
import math
import time
import uuid
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from sqlalchemy import (
    ColumnElement,
    Float,
    and_,
    case,
    cast,
    false,
    func,
    literal,
    literal_column,
    select,
    text,
    true,
)
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bazaar.listings import lifecycle as listings
from bazaar.listings.lifecycle import NO_RATINGS, Taxonomy
from bazaar.models import Listing, ListingStatus
from bazaar.payments.money import CURRENCY_EXPONENTS
from bazaar.search import words
from bazaar.search.index import MAX_TOTAL_HITS, PRICE_BUCKETS
from bazaar.search.meili import Meili, MeiliError, MeiliUnavailable
from bazaar.trust.models import Reputation

log = logging.getLogger("search")


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


@dataclass
class Hit:
    id: str
    title: str
    price_amount: int
    currency: str
    category: str
    condition: str
    city: str | None
    country: str | None
    seller_id: str
    image_url: str | None
    highlight: dict[str, str]
    distance_m: int | None
    seller_rating: (
        float  # bazaar.listings.lifecycle.SellerRating: what the listing ranks by (the prior if unrated)
    )
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


def build_sort(query: ListingQuery) -> list[str]:
    match query.sort:
        case SortOrder.NEWEST:
            return ["published_at:desc"]
        case SortOrder.PRICE_ASC:
            return ["price_amount:asc"]
        case SortOrder.PRICE_DESC:
            return ["price_amount:desc"]
        case SortOrder.POPULAR:
            return ["popularity:desc"]
        case SortOrder.RATING:
            return ["seller_rating:desc"]
        case SortOrder.DISTANCE:
            return [f"_geoPoint({float(query.lat or 0)}, {float(query.lng or 0)}):asc"]
        case _:  # relevance; the `sort` ranking rule comes after the text rules (bazaar/search/index.py)
            return ["price_amount:asc"] if query.cheapest_first else []


def build_request(query: ListingQuery) -> dict[str, Any]:
    query = interpret(query)
    body: dict[str, Any] = {
        "q": words.meili_text(query.q),
        "filter": build_filter(query),
        "sort": build_sort(query),  # after interpret: "cheap" sorts
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
    geo = doc.get("_geo")
    distance = None
    if query.lat is not None and query.lng is not None and geo:
        distance = distance_m(query.lat, query.lng, float(geo["lat"]), float(geo["lng"]))
    rating_count = int(doc.get("seller_rating_count") or 0)
    return Hit(
        id=doc["id"],
        title=doc["title"],
        price_amount=doc["price_amount"],
        currency=doc["currency"],
        category=doc["category"],
        condition=doc["condition"],
        city=doc.get("city"),
        country=doc.get("country"),
        seller_id=doc["seller_id"],
        image_url=doc.get("image_url"),
        highlight={
            k: render_highlight(str(formatted[k])) for k in ("title", "description") if formatted.get(k)
        },
        distance_m=distance,
        # A document written before ratings were indexed has no count: it shows (and ranks as) unrated.
        seller_rating=float(doc["seller_rating"]) if rating_count else NO_RATINGS.score,
        seller_rating_count=rating_count,
    )


def _meili_facets(distribution: dict[str, dict[str, int]]) -> dict[str, dict[str, int]]:
    facets = {name: dict(distribution.get(attribute, {})) for name, attribute in FACET_NAMES.items()}
    facets["price"] = {
        label: facets["price"][label] for label, _ in PRICE_BUCKETS if label in facets["price"]
    }
    return facets


async def search_meili(meili: Meili, index: str, query: ListingQuery) -> SearchResult:
    started = time.perf_counter()
    result = await meili.search(index, build_request(query))
    waited = time.perf_counter() - started
    return SearchResult(
        hits=[_meili_hit(h, query) for h in result["hits"]],
        total=int(result.get("totalHits", result.get("estimatedTotalHits", 0))),
        facets=_meili_facets(result.get("facetDistribution") or {}) if query.facets else None,
        processing_time_ms=int(result.get("processingTimeMs", 0)),
        backend="meilisearch",
        backend_seconds=waited,
    )


# ------------------------------------------------------------------------------------ PostgreSQL query

_L = Listing.__table__.c
# Listings with their seller's reputation: a LEFT JOIN on its primary key never adds rows, and PostgreSQL
# removes it from the plan when a query uses no column of it (so the other sorts keep their plans).
_RATED = Listing.__table__.outerjoin(Reputation.__table__, Reputation.user_id == Listing.seller_id)


def _distance_sql(lat: float, lng: float) -> ColumnElement[float]:
    """Haversine in SQL over the listing's lat/lng, in metres (NULL for listings without a location)."""
    dlat = func.radians(_L.lat - literal(lat, Float)) / 2
    dlng = func.radians(_L.lng - literal(lng, Float)) / 2
    a = func.power(func.sin(dlat), 2) + math.cos(math.radians(lat)) * func.cos(
        func.radians(_L.lat)
    ) * func.power(func.sin(dlng), 2)
    return 2 * EARTH_RADIUS_M * func.asin(func.least(1.0, func.sqrt(a)))


def _major_units() -> ColumnElement[Any]:
    odd = {c: e for c, e in CURRENCY_EXPONENTS.items() if e != 2}
    divisor = case(*[(_L.currency == c, 10**e) for c, e in odd.items()], else_=100) if odd else literal(100)
    return cast(_L.price_amount, Float) / divisor


def _price_bucket_sql() -> ColumnElement[str]:
    major = _major_units()
    whens = [(major >= lower, label) for label, lower in reversed(PRICE_BUCKETS[1:])]
    return case(*whens, else_=PRICE_BUCKETS[0][0])


def _pg_conditions(
    query: ListingQuery, tree: Taxonomy, matching: words.TextMatch | None
) -> list[ColumnElement[bool]]:
    conds: list[ColumnElement[bool]] = [_L.status == ListingStatus.ACTIVE]
    if matching is not None:
        conds.append(matching.condition)
    if query.categories:
        slugs = sorted({s for c in query.categories if c in tree for s in tree.descendants(c)})
        conds.append(_L.category_slug.in_(slugs))
    if query.conditions:
        conds.append(_L.condition.in_(query.conditions))
    if query.currency:
        conds.append(_L.currency == query.currency)
    if query.min_price is not None:
        conds.append(_L.price_amount >= int(query.min_price))
    if query.max_price is not None:
        conds.append(_L.price_amount <= int(query.max_price))
    if query.min_major is not None:
        conds.append(_major_units() >= query.min_major)
    if query.max_major is not None:
        conds.append(_major_units() <= query.max_major)
    if query.seller_id:
        try:
            conds.append(_L.seller_id == uuid.UUID(query.seller_id))
        except ValueError:
            conds.append(false())  # not a seller id: nothing matches, as in Meilisearch
    if query.lat is not None and query.lng is not None and query.radius_km is not None:
        conds += _bounding_box(query.lat, query.lng, float(query.radius_km) * 1000)
        conds.append(_distance_sql(query.lat, query.lng) <= float(query.radius_km) * 1000)
    return conds


def _bounding_box(lat: float, lng: float, radius_m: float) -> list[ColumnElement[bool]]:
    """Cheap comparisons that drop most rows before the trigonometry (a slightly larger box than the
    circle; the exact distance test follows). Left out near the poles and across the antimeridian."""
    degrees = math.degrees(radius_m / EARTH_RADIUS_M) * 1.01
    lat_min, lat_max = lat - degrees, lat + degrees
    if lat_min <= -90 or lat_max >= 90:
        return []
    box: list[ColumnElement[bool]] = [_L.lat.between(lat_min, lat_max)]
    lng_span = degrees / math.cos(math.radians(max(abs(lat_min), abs(lat_max))))
    if lng - lng_span > -180 and lng + lng_span < 180:
        box.append(_L.lng.between(lng - lng_span, lng + lng_span))
    return box


def _pg_order(query: ListingQuery, matching: words.TextMatch | None) -> tuple[list[ColumnElement[Any]], bool]:
    """ORDER BY of the page query (over _RATED), and whether it sorts by the text's scores (joined then).
    The seller's rating is the same value as the documents' `seller_rating`
    (bazaar.listings.lifecycle.SellerRating), so both backends rank sellers alike."""
    newest = _L.published_at.desc().nulls_last()
    rating = listings.rating_sql()[0]
    relevance = matching.order if matching is not None else []
    keys: list[ColumnElement[Any]]
    match query.sort:
        case SortOrder.NEWEST:
            keys = [newest]
        case SortOrder.PRICE_ASC:
            keys = [_L.price_amount.asc()]
        case SortOrder.PRICE_DESC:
            keys = [_L.price_amount.desc()]
        case SortOrder.POPULAR:
            keys = [(_L.view_count + 10 * _L.order_count).desc()]
        case SortOrder.DISTANCE if query.lat is not None and query.lng is not None:
            keys = [_distance_sql(query.lat, query.lng).asc().nulls_last()]
        case SortOrder.RATING:
            keys = [rating.desc(), *relevance, newest]
        case _:  # relevance (words.text_match), then (Meilisearch too) the seller's rating
            # Without text, newest first as before: the (status, published_at) index serves it.
            cheap = [_L.price_amount.asc()] if query.cheapest_first else []
            keys = [*relevance, *cheap, rating.desc(), newest] if relevance or cheap else [newest]
            return [*keys, _L.id.asc()], bool(relevance)
    return [*keys, _L.id.asc()], query.sort == SortOrder.RATING and bool(relevance)


_SIMPLE: ColumnElement[Any] = literal_column("'simple'::regconfig")
_HEADLINE_TITLE = f"StartSel={MARK_START}, StopSel={MARK_END}, HighlightAll=true"
_HEADLINE_DESCRIPTION = f"StartSel={MARK_START}, StopSel={MARK_END}, MaxWords=30, MinWords=12"


async def search_postgres(session: AsyncSession, query: ListingQuery, tree: Taxonomy) -> SearchResult:
    """The same search over listings.search_vector (GIN) and plain columns; slower, but always there."""
    started = time.perf_counter()
    # Degraded mode must not take the database down with it: cap each statement of this transaction.
    await session.execute(text("SET LOCAL statement_timeout = '5s'"))
    query = interpret(query)
    matching = await words.text_match(session, words.terms(query.q, tree))
    tsq = matching.tsquery if matching is not None else None
    conds = _pg_conditions(query, tree, matching)
    order, scored = _pg_order(query, matching)
    # 1. The page: ids only, in order (top-N sort over the matches).
    page_ids = list(
        (
            await session.scalars(
                select(_L.id)
                .select_from(_RATED.join(matching.scores, true()) if matching and scored else _RATED)
                .where(and_(*conds))
                .order_by(*order)
                .limit(query.per_page)
                .offset((query.page - 1) * query.per_page)
            )
        ).all()
    )
    # 2. What to show for those rows only (ts_headline is costly), with the seller's rating.
    rating_score, rating_count = listings.rating_sql()
    columns: list[Any] = [
        _L.id,
        _L.title,
        _L.description,
        _L.price_amount,
        _L.currency,
        _L.category_slug,
        _L.condition,
        _L.city,
        _L.country,
        _L.seller_id,
        _L.image_urls,
        _L.lat,
        _L.lng,
        rating_score.label("seller_rating"),
        rating_count.label("seller_rating_count"),
    ]
    if tsq is not None:
        columns += [
            func.ts_headline(_SIMPLE, _L.title, tsq, _HEADLINE_TITLE).label("title_hl"),
            func.ts_headline(_SIMPLE, _L.description, tsq, _HEADLINE_DESCRIPTION).label("description_hl"),
        ]
    rows: dict[uuid.UUID, Any] = {}
    if page_ids:
        shown = select(*columns).select_from(_RATED).where(_L.id.in_(page_ids))
        rows = {r.id: r for r in (await session.execute(shown)).all()}
    # Totals are exact up to the same cap as Meilisearch's (maxTotalHits).
    total = await session.scalar(
        select(func.count()).select_from(select(_L.id).where(and_(*conds)).limit(MAX_TOTAL_HITS).subquery())
    )
    facets = await _pg_facets(session, conds, tree) if query.facets else None
    elapsed = time.perf_counter() - started
    return SearchResult(
        hits=[_pg_hit(rows[i], query, tsq is not None) for i in page_ids if i in rows],
        total=int(total or 0),
        facets=facets,
        processing_time_ms=round(elapsed * 1000),
        backend="postgres",
        backend_seconds=elapsed,
    )


def _pg_hit(row: Any, query: ListingQuery, highlighted: bool) -> Hit:
    if highlighted:
        highlight = {
            "title": render_highlight(row.title_hl),
            "description": render_highlight(row.description_hl),
        }
    else:
        words = row.description.split()
        crop = " ".join(words[:30]) + ("\u2026" if len(words) > 30 else "")
        highlight = {"title": render_highlight(row.title), "description": render_highlight(crop)}
    if not highlight["description"]:
        del highlight["description"]
    distance = None
    if query.lat is not None and query.lng is not None and row.lat is not None and row.lng is not None:
        distance = distance_m(query.lat, query.lng, row.lat, row.lng)
    return Hit(
        id=str(row.id),
        title=row.title,
        price_amount=row.price_amount,
        currency=row.currency,
        category=row.category_slug,
        condition=row.condition,
        city=row.city,
        country=row.country,
        seller_id=str(row.seller_id),
        image_url=row.image_urls[0] if row.image_urls else None,
        highlight=highlight,
        distance_m=distance,
        seller_rating=float(row.seller_rating),
        seller_rating_count=int(row.seller_rating_count),
    )


async def _pg_facets(
    session: AsyncSession, conds: list[ColumnElement[bool]], tree: Taxonomy
) -> dict[str, dict[str, int]]:
    """Counts per category (rolled up to every ancestor, like the documents' `categories`), condition and
    price bucket, over the same matches."""
    where = and_(*conds)
    by_category = (
        await session.execute(select(_L.category_slug, func.count()).where(where).group_by(_L.category_slug))
    ).all()
    categories: dict[str, int] = {}
    for slug, count in by_category:
        for ancestor, _ in tree.path(slug):
            categories[ancestor] = categories.get(ancestor, 0) + count
    by_condition = (
        await session.execute(select(_L.condition, func.count()).where(where).group_by(_L.condition))
    ).all()
    bucket = _price_bucket_sql().label("bucket")
    by_price = dict((await session.execute(select(bucket, func.count()).where(where).group_by(bucket))).all())
    return {
        "category": dict(sorted(categories.items())),
        "condition": {c: n for c, n in sorted(by_condition)},
        "price": {label: by_price[label] for label, _ in PRICE_BUCKETS if label in by_price},
    }


# ----------------------------------------------------------------------------- one endpoint, two backends


class CircuitBreaker:
    """Closed: use Meilisearch. After a failure: open for `retry_seconds` (answer from PostgreSQL), then let
    one request probe Meilisearch; success closes it, failure opens it again. No state can get stuck: a
    probe that never reports back just lets the next probe through `retry_seconds` later."""

    def __init__(self, retry_seconds: float) -> None:
        self.retry_seconds = retry_seconds
        self.open_until = 0.0  # 0: closed

    @property
    def is_open(self) -> bool:
        return self.open_until != 0.0

    def allow(self) -> bool:
        if self.open_until == 0.0:
            return True
        now = time.monotonic()
        if now >= self.open_until:
            self.open_until = now + self.retry_seconds  # this request is the probe; others keep falling back
            return True
        return False

    def success(self) -> None:
        self.open_until = 0.0

    def failure(self) -> None:
        self.open_until = time.monotonic() + self.retry_seconds


class SearchService:
    def __init__(
        self,
        meili: Meili,
        index: str,
        sessionmaker: async_sessionmaker[AsyncSession],
        breaker: CircuitBreaker,
    ) -> None:
        self.meili = meili
        self.index = index
        self.sessionmaker = sessionmaker
        self.breaker = breaker

    async def taxonomy(self) -> Taxonomy:
        if (cached := listings.cached_taxonomy()) is not None:
            return cached  # the hot path: no session, no database
        async with self.sessionmaker() as session:
            return await listings.taxonomy(session)

    async def search(self, query: ListingQuery) -> SearchResult:
        if self.breaker.allow():
            try:
                result = await search_meili(self.meili, self.index, query)
            except MeiliUnavailable as exc:
                self.breaker.failure()
                log.warning("meilisearch unavailable, answering from postgres: %s", exc)
            except MeiliError as exc:
                # It answered but refused (e.g. the index is not created yet): answer this one from
                # PostgreSQL too, but do not treat Meilisearch as down.
                log.error("meilisearch refused a search, answering from postgres: %s", exc)
            else:
                self.breaker.success()
                return result
        async with self.sessionmaker() as session, session.begin():
            return await search_postgres(session, query, await listings.taxonomy(session))
