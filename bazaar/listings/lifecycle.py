"""Listing actions: every write bumps the version and writes a search-outbox row in the same transaction.

Lifecycle: draft -> active (needs a payout account that can take charges) -> sold (stock 0; active again when
stock returns); archived when the seller withdraws it. Only active listings are public; the rest 404 for anyone
but their seller (and support). The version is the ETag: a write with a stale If-Match gets 412.
"""

from __future__ import annotations

import base64
import enum
import json
import time
import uuid
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any, NamedTuple

from pydantic import AwareDatetime, ConfigDict, Field, TypeAdapter
from sqlalchemy import ColumnElement, Float, case, literal, select, text, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from bazaar.auth import Principal
from bazaar.errors import DomainError, ErrorCode, field_error
from bazaar.integrations.events import EventType, listing_event
from bazaar.listings.changes import announce
from bazaar.models import (
    AuditEvent,
    Category,
    Listing,
    ListingStatus,
    Order,
    OrderLine,
    Role,
    SearchOutbox,
)
from bazaar.payments import onboarding
from bazaar.payments.money import Currency
from bazaar.telemetry import traceparent
from bazaar.trust.models import Reputation
from bazaar.trust.reputation import PRIOR_MEAN

# Allowed lifecycle moves a seller may request; `sold` is reached through stock, not by hand.
_SELLER_TRANSITIONS: dict[str, set[ListingStatus]] = {
    "publish": {ListingStatus.DRAFT, ListingStatus.ARCHIVED},
    "archive": {ListingStatus.DRAFT, ListingStatus.ACTIVE, ListingStatus.SOLD},
}


def record_change(
    session: AsyncSession, listing: Listing, event: EventType = EventType.LISTING_UPDATED
) -> None:
    """Bump the version, queue the listing for search sync and write its integrations event (same transaction
    as the change)."""
    listing.version += 1
    # The change's trace travels with the row: the search sync's batch continues it.
    session.add(
        SearchOutbox(listing_id=listing.id, listing_version=listing.version, trace_context=traceparent())
    )
    session.add(listing_event(listing, event))
    announce(session, [listing.id])


# ------------------------------------------------------------------------------------------ taxonomy


@dataclass(frozen=True)
class Taxonomy:
    """The managed category tree (it changes only through migrations)."""

    parents: dict[str, str | None]
    names: dict[str, str]

    def __contains__(self, slug: object) -> bool:
        return slug in self.parents

    def require(self, slugs: list[str]) -> None:
        """Refuse unknown category slugs (422 unknown_category naming the unknown one, or all of them)."""
        unknown = [s for s in slugs if s not in self.parents]
        if unknown:
            raise DomainError(
                ErrorCode.UNKNOWN_CATEGORY,
                f"unknown category {unknown[0]!r}; see GET /v1/categories",
                {"category": unknown[0] if len(unknown) == 1 else unknown},
            )

    def path(self, slug: str) -> list[tuple[str, str]]:
        """(slug, name) from the root down to `slug`."""
        path: list[tuple[str, str]] = []
        current: str | None = slug
        while current is not None:
            path.insert(0, (current, self.names[current]))
            current = self.parents[current]
        return path

    def descendants(self, slug: str) -> list[str]:
        """`slug` and every category below it."""
        found = [slug]
        for candidate in self.parents:
            if candidate != slug and any(s == slug for s, _ in self.path(candidate)):
                found.append(candidate)
        return found

    def tree(self) -> list[dict[str, Any]]:
        def children(parent: str | None) -> list[dict[str, Any]]:
            return [
                {"slug": slug, "name": self.names[slug], "children": children(slug)}
                for slug in sorted(self.parents, key=lambda s: self.names[s])
                if self.parents[slug] == parent
            ]

        return children(None)


_TAXONOMY_TTL = 60.0
_taxonomy: tuple[float, Taxonomy] | None = None


def cached_taxonomy() -> Taxonomy | None:
    """The cached tree while it is fresh (no database access at all), else None."""
    if _taxonomy is not None and time.monotonic() - _taxonomy[0] < _TAXONOMY_TTL:
        return _taxonomy[1]
    return None


async def taxonomy(session: AsyncSession) -> Taxonomy:
    """The category tree, cached per process for a minute (it is small and changes only by migration)."""
    global _taxonomy
    if (cached := cached_taxonomy()) is not None:
        return cached
    rows = (await session.execute(select(Category.slug, Category.parent_slug, Category.name))).all()
    loaded = Taxonomy(
        parents={slug: parent for slug, parent, _ in rows}, names={slug: name for slug, _, name in rows}
    )
    _taxonomy = (time.monotonic(), loaded)
    return loaded


async def check_categories(session: AsyncSession, slugs: list[str]) -> Taxonomy:
    tree = await taxonomy(session)
    tree.require(slugs)
    return tree


# ------------------------------------------------------------------------------------------- actions


async def create(session: AsyncSession, seller: Principal, fields: dict[str, Any]) -> Listing:
    if not seller.has(Role.SELLER):
        raise DomainError(ErrorCode.FORBIDDEN, "only sellers can create listings")
    await check_categories(session, [fields["category_slug"]])
    listing = Listing(
        id=uuid.uuid4(), seller_id=seller.user_id, status=ListingStatus.DRAFT, version=0, **fields
    )
    session.add(listing)
    record_change(session, listing, EventType.LISTING_CREATED)
    session.add(_audit(seller, listing, "listing.created"))
    await session.flush()
    return listing


def _visible(listing: Listing | None, viewer: Principal | None) -> Listing:
    """Active listings are public; others exist only for their seller and support (404 for the rest)."""
    if listing is None or (listing.status != ListingStatus.ACTIVE and not may_manage(listing, viewer)):
        raise DomainError(ErrorCode.NOT_FOUND, "listing not found")
    return listing


async def get_visible_rated(
    session: AsyncSession, listing_id: uuid.UUID, viewer: Principal | None
) -> tuple[Listing, SellerRating]:
    """A listing the viewer may see (`_visible`) and its seller's rating, in one statement (an outer join on
    the reputation's key)."""
    row = (
        await session.execute(
            select(Listing, *rating_sql())
            .outerjoin(Reputation, Reputation.user_id == Listing.seller_id)
            .where(Listing.id == listing_id)
        )
    ).first()
    if row is None:
        return _visible(None, viewer), NO_RATINGS  # raises not found
    listing, score, count = row
    return _visible(listing, viewer), SellerRating(float(score), int(count))


async def get_own(
    session: AsyncSession,
    listing_id: uuid.UUID,
    seller: Principal,
    if_match: Collection[int] | None,
    lock: bool = True,
) -> Listing:
    stmt = select(Listing).where(Listing.id == listing_id)
    listing = _visible(await session.scalar(stmt.with_for_update() if lock else stmt), seller)
    if listing.seller_id != seller.user_id:
        raise DomainError(ErrorCode.FORBIDDEN, "only the listing's seller can change it")
    if if_match is not None and listing.version not in if_match:
        raise DomainError(
            ErrorCode.PRECONDITION_FAILED,
            "the listing changed since you read it"
            if if_match
            else f'If-Match holds no ETag of this API (a listing\'s is its version in quotes: "{listing.version}")',
            {"current_version": listing.version},
        )
    return listing


async def update(
    session: AsyncSession,
    listing_id: uuid.UUID,
    seller: Principal,
    if_match: Collection[int] | None,
    changes: dict[str, Any],
) -> Listing:
    listing = await get_own(session, listing_id, seller, if_match)
    if listing.status == ListingStatus.ARCHIVED:
        raise DomainError(
            ErrorCode.INVALID_TRANSITION, "archived listings cannot be edited; publish it again"
        )
    if "category_slug" in changes:
        await check_categories(session, [changes["category_slug"]])
    changes = {name: value for name, value in changes.items() if getattr(listing, name) != value}
    if not changes:  # nothing new (an empty or repeated PATCH): no new version, no event, no audit line
        return listing
    for name, value in changes.items():
        setattr(listing, name, value)
    if listing.status == ListingStatus.ACTIVE and listing.quantity == 0:
        listing.status = ListingStatus.SOLD
    elif listing.status == ListingStatus.SOLD and listing.quantity > 0:
        listing.status = ListingStatus.ACTIVE
    record_change(session, listing)
    session.add(_audit(seller, listing, "listing.updated", {"fields": sorted(changes)}))
    return listing


async def publish(
    session: AsyncSession, listing_id: uuid.UUID, seller: Principal, if_match: Collection[int] | None
) -> Listing:
    listing = await get_own(session, listing_id, seller, if_match)
    _check_transition(listing, "publish")
    if listing.quantity == 0 and listing.published_at is None:
        # A draft with nothing to sell would go on sale as `sold`, though it never sold: stock comes first.
        raise DomainError(
            ErrorCode.INVALID_TRANSITION, "a listing with no stock cannot be published: set its quantity"
        )
    await onboarding.require_can_sell(session, seller.user_id)
    # Published again after it sold out (archived meanwhile): it shows as sold until it has stock.
    listing.status = ListingStatus.ACTIVE if listing.quantity > 0 else ListingStatus.SOLD
    listing.published_at = listing.published_at or datetime.now(UTC)
    record_change(session, listing, EventType.LISTING_PUBLISHED)
    session.add(_audit(seller, listing, "listing.published"))
    return listing


async def archive(
    session: AsyncSession, listing_id: uuid.UUID, seller: Principal, if_match: Collection[int] | None
) -> Listing:
    listing = await get_own(session, listing_id, seller, if_match)
    _check_transition(listing, "archive")
    listing.status = ListingStatus.ARCHIVED
    record_change(session, listing, EventType.LISTING_ARCHIVED)
    session.add(_audit(seller, listing, "listing.archived"))
    return listing


async def delete(
    session: AsyncSession, listing_id: uuid.UUID, seller: Principal, if_match: Collection[int] | None
) -> Listing | None:
    """Remove a listing that never had an order (None); one with orders is archived instead (returned).

    The row lock from get_own also holds off a concurrent order's stock reservation, which locks the
    same row first: an order either sees the listing gone or stops the deletion.
    """
    listing = await get_own(session, listing_id, seller, if_match)
    # Any line of any order (a checkout's order lists it as its second line; an order of the version before lines
    # names it only on the order).
    had_orders = await session.scalar(
        select(Order.id).where(Order.listing_id == listing.id).limit(1)
    ) or await session.scalar(select(OrderLine.order_id).where(OrderLine.listing_id == listing.id).limit(1))
    if had_orders is not None:
        if listing.status != ListingStatus.ARCHIVED:
            listing.status = ListingStatus.ARCHIVED
            record_change(session, listing, EventType.LISTING_ARCHIVED)
            session.add(_audit(seller, listing, "listing.archived", {"reason": "deleted_with_orders"}))
        return listing
    # The outbox row outlives the listing: search sync finds no row and deletes the document.
    session.add(
        SearchOutbox(listing_id=listing.id, listing_version=listing.version + 1, trace_context=traceparent())
    )
    session.add(listing_event(listing, EventType.LISTING_DELETED))
    announce(session, [listing.id])
    session.add(_audit(seller, listing, "listing.deleted"))
    await session.delete(listing)
    return None


def _check_transition(listing: Listing, action: str) -> None:
    if listing.status not in _SELLER_TRANSITIONS[action]:
        raise DomainError(
            ErrorCode.INVALID_TRANSITION,
            f"cannot {action} a listing that is {listing.status.value}",
            {"status": listing.status.value},
        )


def may_manage(listing: Listing, viewer: Principal | None) -> bool:
    return viewer is not None and (listing.seller_id == viewer.user_id or viewer.has(Role.SUPPORT))


def _audit(actor: Principal, listing: Listing, action: str, data: dict[str, Any] | None = None) -> AuditEvent:
    return AuditEvent(
        actor_id=actor.user_id,
        actor_role="seller",
        subject_type="listing",
        subject_id=str(listing.id),
        action=action,
        data={"version": listing.version, **(data or {})},
    )


# ------------------------------------------------------------------------------------- seller rating


class SellerRating(NamedTuple):
    """The seller rating every listing ranks by and shows (search documents, the PostgreSQL fallback and
    listing responses use this one rule, so all of them agree): the stored Bayesian score once the seller
    has ratings, else the prior (`bazaar.trust.reputation.PRIOR_MEAN`), whether or not a reputation row exists."""

    score: float
    rating_count: int


NO_RATINGS = SellerRating(PRIOR_MEAN, 0)


def rating_sql() -> tuple[ColumnElement[float], ColumnElement[int]]:
    """SellerRating's (score, count) in SQL, over `reputations` outer-joined on the seller (no row: NULLs)."""
    rated = Reputation.rating_count > 0
    score = case((rated, Reputation.score), else_=literal(PRIOR_MEAN, Float))
    count = case((rated, Reputation.rating_count), else_=0)
    return score, count


async def seller_ratings(
    session: AsyncSession, seller_ids: Iterable[uuid.UUID] | None
) -> dict[uuid.UUID, SellerRating]:
    """The rating of each given seller that has ratings (None: of every such seller), in one query.

    Sellers left out have none: look them up with `.get(seller_id, NO_RATINGS)`.
    """
    stmt = select(Reputation.user_id, Reputation.score, Reputation.rating_count).where(
        Reputation.rating_count > 0
    )
    if seller_ids is not None:
        wanted = list(set(seller_ids))
        if not wanted:
            return {}
        stmt = stmt.where(Reputation.user_id.in_(wanted))
    return {
        user_id: SellerRating(float(score), int(count))
        for user_id, score, count in (await session.execute(stmt)).all()
    }


async def seller_rating(session: AsyncSession, seller_id: uuid.UUID) -> SellerRating:
    return (await seller_ratings(session, [seller_id])).get(seller_id, NO_RATINGS)


# -------------------------------------------------------------------------------------- my listings


class OwnSort(enum.StrEnum):
    NEWEST = "newest"
    OLDEST = "oldest"
    PRICE_ASC = "price_asc"
    PRICE_DESC = "price_desc"


# sort -> (key column, descending); ties broken by id in the same direction, so the order is total.
_OWN_SORTS: dict[OwnSort, tuple[str, bool]] = {
    OwnSort.NEWEST: ("created_at", True),
    OwnSort.OLDEST: ("created_at", False),
    OwnSort.PRICE_ASC: ("price_amount", False),
    OwnSort.PRICE_DESC: ("price_amount", True),
}
MAX_PAGE_SIZE = 100


async def list_own(
    session: AsyncSession,
    seller: Principal,
    status: ListingStatus | None,
    sort: OwnSort,
    limit: int,
    cursor: str | None,
) -> tuple[list[Listing], str | None]:
    """One page of the seller's listings, keyset-paginated (stable under inserts), and the next cursor."""
    limit = max(1, min(limit, MAX_PAGE_SIZE))
    column_name, descending = _OWN_SORTS[sort]
    # Prices compare within a currency (as search sorts them): grouped by currency code, in the sort's direction.
    columns = [getattr(Listing, column_name), Listing.id]
    if column_name == "price_amount":
        columns.insert(0, Listing.currency)
    stmt = select(Listing).where(Listing.seller_id == seller.user_id)
    if status is not None:
        stmt = stmt.where(Listing.status == status)
    if cursor:
        row: ColumnElement[Any] = tuple_(*columns)
        bound = tuple_(*_decode_cursor(cursor, sort))
        stmt = stmt.where(row < bound if descending else row > bound)
    order = [c.desc() if descending else c.asc() for c in columns]
    rows = list((await session.scalars(stmt.order_by(*order).limit(limit + 1))).all())
    items = rows[:limit]
    next_cursor = _encode_cursor(items[-1], sort) if len(rows) > limit else None
    return items, next_cursor


def _encode_cursor(listing: Listing, sort: OwnSort) -> str:
    key = getattr(listing, _OWN_SORTS[sort][0])
    keys = [key.isoformat()] if isinstance(key, datetime) else [listing.currency, key]
    raw = [sort.value, *keys, str(listing.id)]
    return base64.urlsafe_b64encode(json.dumps(raw).encode()).decode().rstrip("=")


# A cursor is client input: its JSON is validated strictly (the exact shape _encode_cursor writes, keys that
# fit their column), so a crafted one is a 422, never a database error.
_TIME_CURSOR = TypeAdapter(tuple[str, AwareDatetime, uuid.UUID], config=ConfigDict(strict=True))
_PRICE_CURSOR = TypeAdapter(
    tuple[str, Currency, Annotated[int, Field(ge=0, le=2**63 - 1)], uuid.UUID], config=ConfigDict(strict=True)
)


def _decode_cursor(cursor: str, sort: OwnSort) -> tuple[Any, ...]:
    adapter = _TIME_CURSOR if _OWN_SORTS[sort][0] == "created_at" else _PRICE_CURSOR
    try:
        raw = base64.urlsafe_b64decode((cursor + "=" * (-len(cursor) % 4)).encode("ascii"))
        sort_value, *keys = adapter.validate_json(raw)
        if sort_value != sort.value:
            raise ValueError("cursor from another sort")
        return tuple(keys)
    except ValueError as exc:  # so are binascii.Error, UnicodeError and pydantic's ValidationError
        raise field_error(
            "cursor",
            "not a cursor of this sort: pass `next_cursor` of the previous page, with the same sort",
            "value_error",
            "query",
            cursor=cursor[:100],
        ) from exc


# --------------------------------------------------------------------------------------- popularity


async def add_views(session: AsyncSession, counts: dict[uuid.UUID, int]) -> int:
    """Add batched view counts with one statement, queueing those listings for search sync.

    The version (ETag) is not bumped: a view is not an edit, and a seller's If-Match must not fail
    because someone looked. Search sync re-reads the row, so the new popularity reaches the index.
    Ids are sorted so concurrent flushes from several API processes lock rows in the same order.
    """
    if not counts:
        return 0
    ids = sorted(counts)
    result = await session.execute(
        text(
            """
            WITH v AS (SELECT * FROM unnest(CAST(:ids AS uuid[]), CAST(:counts AS bigint[])) AS v(id, n)),
            bumped AS (
                UPDATE listings l SET view_count = l.view_count + v.n FROM v
                WHERE l.id = v.id RETURNING l.id, l.version
            )
            INSERT INTO search_outbox (listing_id, listing_version)
            SELECT id, version FROM bumped ORDER BY id
            """
        ),
        {"ids": ids, "counts": [counts[i] for i in ids]},
    )
    return int(getattr(result, "rowcount", 0) or 0)
