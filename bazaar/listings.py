"""Listing actions: every write bumps the version and writes a search-outbox row in the same transaction."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bazaar.auth import Principal
from bazaar.errors import DomainError, ErrorCode
from bazaar.models import AuditEvent, Category, Listing, ListingStatus, PayoutAccount, Role, SearchOutbox

# Allowed lifecycle moves a seller may request; `sold` is reached through stock, not by hand.
_SELLER_TRANSITIONS: dict[str, set[ListingStatus]] = {
    "publish": {ListingStatus.DRAFT, ListingStatus.ARCHIVED},
    "archive": {ListingStatus.DRAFT, ListingStatus.ACTIVE, ListingStatus.SOLD},
}


def record_change(session: AsyncSession, listing: Listing) -> None:
    """Bump the version and queue the listing for search sync (same transaction as the change)."""
    listing.version += 1
    session.add(SearchOutbox(listing_id=listing.id, listing_version=listing.version))


async def _check_category(session: AsyncSession, slug: str) -> None:
    if await session.get(Category, slug) is None:
        raise DomainError(ErrorCode.UNKNOWN_CATEGORY, f"unknown category {slug!r}", {"category": slug})


async def create(session: AsyncSession, seller: Principal, fields: dict[str, Any]) -> Listing:
    if not seller.has(Role.SELLER):
        raise DomainError(ErrorCode.FORBIDDEN, "only sellers can create listings")
    await _check_category(session, fields["category_slug"])
    listing = Listing(
        id=uuid.uuid4(), seller_id=seller.user_id, status=ListingStatus.DRAFT, version=0, **fields
    )
    session.add(listing)
    record_change(session, listing)
    session.add(_audit(seller, listing, "listing.created"))
    await session.flush()
    return listing


async def get_visible(session: AsyncSession, listing_id: uuid.UUID, viewer: Principal | None) -> Listing:
    """Active listings are public; others exist only for their seller and support (404 for the rest)."""
    listing = await session.get(Listing, listing_id)
    if listing is None or (listing.status != ListingStatus.ACTIVE and not _may_manage(listing, viewer)):
        raise DomainError(ErrorCode.NOT_FOUND, "listing not found")
    return listing


async def get_own(
    session: AsyncSession, listing_id: uuid.UUID, seller: Principal, if_match: int | None, lock: bool = True
) -> Listing:
    stmt = select(Listing).where(Listing.id == listing_id)
    listing = await session.scalar(stmt.with_for_update() if lock else stmt)
    if listing is None or (listing.status != ListingStatus.ACTIVE and not _may_manage(listing, seller)):
        raise DomainError(ErrorCode.NOT_FOUND, "listing not found")
    if listing.seller_id != seller.user_id:
        raise DomainError(ErrorCode.FORBIDDEN, "only the listing's seller can change it")
    if if_match is not None and if_match != listing.version:
        raise DomainError(
            ErrorCode.PRECONDITION_FAILED,
            "the listing changed since you read it",
            {"current_version": listing.version},
        )
    return listing


async def update(
    session: AsyncSession,
    listing_id: uuid.UUID,
    seller: Principal,
    if_match: int | None,
    changes: dict[str, Any],
) -> Listing:
    listing = await get_own(session, listing_id, seller, if_match)
    if listing.status == ListingStatus.ARCHIVED:
        raise DomainError(
            ErrorCode.INVALID_TRANSITION, "archived listings cannot be edited; publish it again"
        )
    if "category_slug" in changes:
        await _check_category(session, changes["category_slug"])
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
    session: AsyncSession, listing_id: uuid.UUID, seller: Principal, if_match: int | None
) -> Listing:
    listing = await get_own(session, listing_id, seller, if_match)
    _check_transition(listing, "publish")
    has_payout = await session.scalar(select(PayoutAccount.id).where(PayoutAccount.user_id == seller.user_id))
    if has_payout is None:
        raise DomainError(ErrorCode.PAYOUT_ACCOUNT_REQUIRED, "create a payout account before publishing")
    listing.status = ListingStatus.ACTIVE if listing.quantity > 0 else ListingStatus.SOLD
    listing.published_at = listing.published_at or datetime.now(UTC)
    record_change(session, listing)
    session.add(_audit(seller, listing, "listing.published"))
    return listing


async def archive(
    session: AsyncSession, listing_id: uuid.UUID, seller: Principal, if_match: int | None
) -> Listing:
    listing = await get_own(session, listing_id, seller, if_match)
    _check_transition(listing, "archive")
    listing.status = ListingStatus.ARCHIVED
    record_change(session, listing)
    session.add(_audit(seller, listing, "listing.archived"))
    return listing


def _check_transition(listing: Listing, action: str) -> None:
    if listing.status not in _SELLER_TRANSITIONS[action]:
        raise DomainError(
            ErrorCode.INVALID_TRANSITION,
            f"cannot {action} a listing that is {listing.status.value}",
            {"status": listing.status.value},
        )


def _may_manage(listing: Listing, viewer: Principal | None) -> bool:
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
