"""Listings: sellers create and manage them; everyone reads active ones. ETag/If-Match on writes."""

from __future__ import annotations

import base64
import uuid
from datetime import datetime
from typing import Annotated

from fastapi import APIRouter, Header, Query, Response
from sqlalchemy import select, tuple_

from api.deps import MaybeCaller, Seller, Session
from api.schemas import ListingIn, ListingOut, ListingPage, ListingPatch
from bazaar import listings
from bazaar.errors import DomainError, ErrorCode
from bazaar.models import Listing, ListingStatus

router = APIRouter(prefix="/v1", tags=["listings"])
IfMatch = Annotated[str | None, Header(description='ETag from a previous read, e.g. "3"')]


def parse_if_match(value: str | None, required: bool = False) -> int | None:
    if value is None:
        if required:
            raise DomainError(ErrorCode.PRECONDITION_REQUIRED, "send If-Match with the listing's ETag")
        return None
    try:
        return int(value.strip().removeprefix("W/").strip('"'))
    except ValueError as exc:
        raise DomainError(ErrorCode.PRECONDITION_FAILED, "If-Match is not an ETag of this API") from exc


def with_etag(response: Response, listing: Listing) -> ListingOut:
    response.headers["ETag"] = f'"{listing.version}"'
    return ListingOut.of(listing)


@router.post("/listings", status_code=201, response_model=ListingOut)
async def create_listing(body: ListingIn, seller: Seller, session: Session, response: Response) -> ListingOut:
    listing = await listings.create(session, seller, body.columns())
    await session.refresh(listing)
    return with_etag(response, listing)


@router.get("/listings/{listing_id}", response_model=ListingOut)
async def get_listing(
    listing_id: uuid.UUID, viewer: MaybeCaller, session: Session, response: Response
) -> ListingOut:
    return with_etag(response, await listings.get_visible(session, listing_id, viewer))


@router.patch("/listings/{listing_id}", response_model=ListingOut)
async def update_listing(
    listing_id: uuid.UUID,
    body: ListingPatch,
    seller: Seller,
    session: Session,
    response: Response,
    if_match: IfMatch = None,
) -> ListingOut:
    listing = await listings.update(session, listing_id, seller, parse_if_match(if_match), body.columns())
    await session.flush()
    await session.refresh(listing)
    return with_etag(response, listing)


@router.post("/listings/{listing_id}/publish", response_model=ListingOut)
async def publish_listing(
    listing_id: uuid.UUID, seller: Seller, session: Session, response: Response, if_match: IfMatch = None
) -> ListingOut:
    listing = await listings.publish(session, listing_id, seller, parse_if_match(if_match))
    await session.flush()
    await session.refresh(listing)
    return with_etag(response, listing)


@router.post("/listings/{listing_id}/archive", response_model=ListingOut)
async def archive_listing(
    listing_id: uuid.UUID, seller: Seller, session: Session, response: Response, if_match: IfMatch = None
) -> ListingOut:
    listing = await listings.archive(session, listing_id, seller, parse_if_match(if_match))
    await session.flush()
    await session.refresh(listing)
    return with_etag(response, listing)


@router.get("/me/listings", response_model=ListingPage)
async def my_listings(
    seller: Seller,
    session: Session,
    status: Annotated[ListingStatus | None, Query()] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 20,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
) -> ListingPage:
    """Newest first, keyset-paginated (stable under inserts)."""
    stmt = select(Listing).where(Listing.seller_id == seller.user_id)
    if status is not None:
        stmt = stmt.where(Listing.status == status)
    if cursor:
        created, last_id = _decode_cursor(cursor)
        stmt = stmt.where(tuple_(Listing.created_at, Listing.id) < tuple_(created, last_id))
    rows = (
        await session.scalars(stmt.order_by(Listing.created_at.desc(), Listing.id.desc()).limit(limit + 1))
    ).all()
    items = rows[:limit]
    next_cursor = _encode_cursor(items[-1]) if len(rows) > limit else None
    return ListingPage(items=[ListingOut.of(item) for item in items], next_cursor=next_cursor)


def _encode_cursor(listing: Listing) -> str:
    return base64.urlsafe_b64encode(f"{listing.created_at.isoformat()}|{listing.id}".encode()).decode()


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        created, last_id = base64.urlsafe_b64decode(cursor.encode()).decode().split("|")
        return datetime.fromisoformat(created), uuid.UUID(last_id)
    except ValueError as exc:
        raise DomainError(ErrorCode.VALIDATION_ERROR, "invalid cursor", {"cursor": cursor}) from exc
