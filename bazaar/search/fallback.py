"""Search in degraded mode: the same query over PostgreSQL (listings.search_vector, GIN; plain columns for the
filters, sorts and facets) while Meilisearch is unreachable. Slower, but always there; modelled on Meilisearch's
ranking rules (bazaar/search/words.py has the text match)."""

from __future__ import annotations

import html
import math
import time
import uuid
from typing import Any

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
from sqlalchemy.ext.asyncio import AsyncSession

from bazaar.listings import lifecycle as listings
from bazaar.listings.lifecycle import Taxonomy
from bazaar.models import Listing, ListingStatus
from bazaar.payments.money import CURRENCY_EXPONENTS
from bazaar.search import words
from bazaar.search.index import MAX_TOTAL_HITS, PRICE_BUCKETS
from bazaar.search.query import (
    EARTH_RADIUS_M,
    MARK_END,
    MARK_START,
    Hit,
    ListingQuery,
    SearchResult,
    SortOrder,
    distance_m,
    interpret,
    render_highlight,
    sorts_matches,
)
from bazaar.trust.models import Reputation

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
    # Active listings of sellers who can take charges now (as bazaar/search/query.py's SELLABLE).
    conds: list[ColumnElement[bool]] = [_L.status == ListingStatus.ACTIVE, Listing.seller_can_sell.expression]
    if matching is not None:
        conds.append(matching.every if sorts_matches(query) else matching.condition)
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
    # Prices compare within a currency (query.by_price): without a currency filter, currencies in code order.
    currencies = [] if query.currency else [_L.currency.asc()]
    match query.sort:
        case SortOrder.NEWEST:
            keys = [newest]
        case SortOrder.PRICE_ASC:
            keys = [*currencies, _L.price_amount.asc()]
        case SortOrder.PRICE_DESC:
            keys = [*currencies, _L.price_amount.desc()]
        case SortOrder.POPULAR:
            keys = [(_L.view_count + 10 * _L.order_count).desc()]
        case SortOrder.DISTANCE if query.lat is not None and query.lng is not None:
            keys = [_distance_sql(query.lat, query.lng).asc().nulls_last()]
        case SortOrder.RATING:
            keys = [rating.desc(), *relevance, newest]
        case _:  # relevance (words.text_match), then (Meilisearch too) the seller's rating
            # Without text, newest first as before: the (status, published_at) index serves it.
            # "cheap": the lower price right after the terms matched, as Meilisearch's `sort` rule follows `words`.
            cheap = [*currencies, _L.price_amount.asc()] if query.cheapest_first else []
            words = matching.words if matching is not None else 0
            keys = [*relevance[:words], *cheap, *relevance[words:], rating.desc(), newest]
            keys = keys if relevance or cheap else [newest]
            return [*keys, _L.id.asc()], bool(relevance)
    return [*keys, _L.id.asc()], query.sort == SortOrder.RATING and bool(relevance)


_SIMPLE: ColumnElement[Any] = literal_column("'simple'::regconfig")
_HEADLINE_TITLE = f"StartSel={MARK_START}, StopSel={MARK_END}, HighlightAll=true"
_HEADLINE_DESCRIPTION = f"StartSel={MARK_START}, StopSel={MARK_END}, MaxWords=30, MinWords=12"


def _headline(column: ColumnElement[str], tsq: Any, options: str) -> ColumnElement[str]:
    """ts_headline of the column's text with &, < and > as entities: its parser takes `<...>` for an HTML tag,
    which a fragment leaves out ("a<b c>d" became "a d"); entities it keeps, and `_pg_hit` reads them back."""
    escaped = func.replace(func.replace(func.replace(column, "&", "&amp;"), "<", "&lt;"), ">", "&gt;")
    return func.ts_headline(_SIMPLE, escaped, tsq, options)


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
            _headline(_L.title, tsq, _HEADLINE_TITLE).label("title_hl"),
            _headline(_L.description, tsq, _HEADLINE_DESCRIPTION).label("description_hl"),
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
        # The listing's own text again (`_headline` sent it as entities), then escaped as every snippet is.
        highlight = {
            "title": render_highlight(html.unescape(row.title_hl)),
            "description": render_highlight(html.unescape(row.description_hl)),
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
    return {
        "id": str(row.id),
        "title": row.title,
        "price": {"amount": row.price_amount, "currency": row.currency},
        "category": row.category_slug,
        "condition": row.condition,
        "city": row.city,
        "country": row.country,
        "seller_id": str(row.seller_id),
        "image_url": row.image_urls[0] if row.image_urls else None,
        "highlight": highlight,
        "distance_m": distance,
        "seller_rating": float(row.seller_rating),
        "seller_rating_count": int(row.seller_rating_count),
    }


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
