"""A listing's stock as orders take it and give it back. Listings are locked in id order by every reservation and
return, so two transactions never wait on each other."""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from bazaar.listings import lifecycle
from bazaar.models import Listing, ListingStatus


def available(listing: Listing | None) -> int:
    """How many a buyer can order now: none unless it is active and its seller can take payments now."""
    if listing is None or listing.status != ListingStatus.ACTIVE or not listing.seller_can_sell:
        return 0
    return listing.quantity


async def locked(session: AsyncSession, listing_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, Listing]:
    """The listings, row-locked (in id order) until the transaction ends; missing ones are left out."""
    ids = sorted(set(listing_ids))
    rows = await session.scalars(
        select(Listing).where(Listing.id.in_(ids)).order_by(Listing.id).with_for_update()
    )
    return {listing.id: listing for listing in rows}


def take(session: AsyncSession, listing: Listing, quantity: int) -> None:
    """Reserve `quantity` of a locked listing for an order (the caller checked there is enough)."""
    listing.quantity -= quantity
    listing.order_count += 1
    if listing.quantity == 0:
        listing.status = ListingStatus.SOLD
    lifecycle.record_change(session, listing)


async def give_back(session: AsyncSession, lines: Iterable[tuple[uuid.UUID, int]]) -> None:
    """Put `(listing, quantity)` back on sale (a sold listing becomes active again)."""
    wanted = list(lines)
    listings = await locked(session, (listing_id for listing_id, _ in wanted))
    for listing_id, quantity in wanted:
        listing = listings[listing_id]
        listing.quantity += quantity
        if listing.status == ListingStatus.SOLD:
            listing.status = ListingStatus.ACTIVE
        lifecycle.record_change(session, listing)
