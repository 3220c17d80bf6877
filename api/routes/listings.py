"""Listings: sellers create and manage them; everyone reads active ones. ETag/If-Match on writes: an edit
(PATCH) must send If-Match (428 without it, 412 when stale); publish, archive and delete take it when given
(they are moves between states, refused with 409 when the state is wrong).

Public detail reads of active listings go through the process's hot-listing cache and count a view;
the seller (and support) always read the database, so their ETag is never stale. Every listing comes with
its seller's rating; a cached copy's rating may be up to the cache TTL old (a rating change does not
invalidate listings, unlike a listing write).
"""

from __future__ import annotations

import re
import uuid
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query, Response

from api.deps import Cache, MaybeCaller, Seller, Session, VerifiedSeller, Views
from api.listing_schemas import (
    CategoriesOut,
    CategoryNode,
    ListingDeleteOut,
    ListingIn,
    ListingOut,
    ListingPage,
    ListingPatch,
)
from api.openapi import ETAG, LOCATION, VARY, errors, merge
from api.ratelimits import ListingReadLimit
from bazaar.auth import Principal
from bazaar.errors import ErrorCode
from bazaar.listings import lifecycle as listings
from bazaar.models import Listing, ListingStatus, Role
from bazaar.text import single_line

router = APIRouter(prefix="/v1", tags=["listings"])
categories_router = APIRouter(prefix="/v1", tags=["categories"])
IfMatch = Annotated[
    str | None,
    Header(
        description='ETag from a previous read, e.g. "3" (a list matches if any is current; * any version); '
        "a stale one gets 412"
    ),
]
# Required (428 `precondition_required` without it: api/errors.py), so a client cannot lose another's edit.
RequiredIfMatch = Annotated[
    str,
    Header(
        description='ETag from a previous read, e.g. "3"; a stale one gets 412; * overwrites whatever is there',
        examples=['"3"'],
    ),
]
IfNoneMatch = Annotated[
    str | None, Header(description='ETags you hold (e.g. "3", or a list, or *); 304 when one is current')
]
WRITTEN: dict[int | str, dict[str, Any]] = {
    200: {"description": "the listing as stored, with its new ETag", "headers": ETAG}
}
STALE = errors(ErrorCode.PRECONDITION_FAILED)


def entity_tags(value: str) -> list[str] | None:
    """The entity-tags an If-Match or If-None-Match lists (RFC 9110 13.1: one or more, comma-separated; weak ones
    compare by their opaque part here, as a listing has one representation); None for `*`."""
    if value.strip() == "*":
        return None
    return [tag.strip().removeprefix("W/") for tag in value.split(",") if tag.strip()]


def parse_if_match(value: str | None) -> frozenset[int] | None:
    """The versions an If-Match names (any of them matches; tags that are no version of ours match none, so the
    answer is the usual 412 with `current_version`); None for none or `*` (any version)."""
    tags = None if value is None else entity_tags(value)
    if tags is None:
        return None
    return frozenset(int(tag[1:-1]) for tag in tags if re.fullmatch(r'"[0-9]{1,18}"', tag))


def etag(version: int) -> str:
    return f'"{version}"'


async def with_etag(session: Session, response: Response, listing: Listing) -> ListingOut:
    response.headers["ETag"] = etag(listing.version)
    return ListingOut.of(listing, await listings.seller_rating(session, listing.seller_id))


@categories_router.get("/categories", response_model=CategoriesOut)
async def list_categories(session: Session, response: Response) -> CategoriesOut:
    """The managed category taxonomy as a tree (public). Searching a category includes its children."""
    tree = await listings.taxonomy(session)
    response.headers["Cache-Control"] = "public, max-age=300"
    return CategoriesOut(categories=[CategoryNode.model_validate(node) for node in tree.tree()])


@router.post(
    "/listings",
    status_code=201,
    response_model=ListingOut,
    responses=merge(
        {201: {"description": "the draft listing", "headers": {**LOCATION, **ETAG}}},
        errors(ErrorCode.UNKNOWN_CATEGORY),
    ),
)
async def create_listing(body: ListingIn, seller: Seller, session: Session, response: Response) -> ListingOut:
    """A draft listing (publish it to put it on sale)."""
    listing = await listings.create(session, seller, body.columns())
    await session.refresh(listing)
    response.headers["Location"] = f"/v1/listings/{listing.id}"
    return await with_etag(session, response, listing)


def _public_reader(viewer: Principal | None, seller_id: uuid.UUID) -> bool:
    """Readers served from the cache: anyone but the listing's seller and support."""
    return viewer is None or (viewer.user_id != seller_id and not viewer.has(Role.SUPPORT))


@router.get(
    "/listings/{listing_id}",
    response_model=ListingOut,
    responses={
        200: {"description": "the listing", "headers": {**ETAG, **VARY}},
        304: {
            "description": "If-None-Match matched: the copy you hold is current",
            "headers": {**ETAG, **VARY},
        },
    },
)
async def get_listing(
    listing_id: uuid.UUID,
    viewer: MaybeCaller,
    _limit: ListingReadLimit,
    session: Session,
    cache: Cache,
    views: Views,
    response: Response,
    if_none_match: IfNoneMatch = None,
) -> ListingOut | Response:
    """An active listing, for anyone; a draft, sold or archived one only for its seller and support (404
    for others). Answers an `ETag`; with a matching `If-None-Match` (a list, or `*`), 304 without a body."""
    cached = cache.get(listing_id)
    if cached is not None and _public_reader(viewer, cached.seller_id):
        out = cached
    else:
        token = cache.token()
        listing, rating = await listings.get_visible_rated(session, listing_id, viewer)
        out = ListingOut.of(listing, rating)
        if listing.status == ListingStatus.ACTIVE:
            cache.put(listing_id, out, token)
    if out.status == ListingStatus.ACTIVE and _public_reader(viewer, out.seller_id):
        views.add(listing_id)
    if if_none_match is not None:
        held = entity_tags(if_none_match)
        if held is None or etag(out.version) in held:  # `*`: any copy of a listing that exists is current
            return Response(status_code=304, headers={"ETag": etag(out.version), "Vary": "Authorization"})
    response.headers["ETag"] = etag(out.version)
    response.headers["Vary"] = "Authorization"  # the seller and support also read drafts, uncached
    return out


@router.patch(
    "/listings/{listing_id}",
    response_model=ListingOut,
    responses=merge(
        WRITTEN,
        STALE,
        errors(
            ErrorCode.FORBIDDEN,
            ErrorCode.INVALID_TRANSITION,
            ErrorCode.PRECONDITION_REQUIRED,
            ErrorCode.UNKNOWN_CATEGORY,
        ),
    ),
)
async def update_listing(
    listing_id: uuid.UUID,
    body: ListingPatch,
    seller: Seller,
    session: Session,
    cache: Cache,
    response: Response,
    if_match: RequiredIfMatch,
) -> ListingOut:
    """Change the fields sent. If-Match is required: 428 without it, 412 when someone changed the listing
    since your read (the body names `current_version`)."""
    listing = await listings.update(session, listing_id, seller, parse_if_match(if_match), body.columns())
    return await _written(session, cache, response, listing)


async def _written(session: Session, cache: Cache, response: Response, listing: Listing) -> ListingOut:
    """After a seller's write: drop the cached copy (this process at once; every process again on commit,
    through NOTIFY) and answer with the stored row and its new ETag."""
    cache.invalidate([listing.id])
    await session.flush()
    await session.refresh(listing)
    return await with_etag(session, response, listing)


@router.post(
    "/listings/{listing_id}/publish",
    response_model=ListingOut,
    responses=merge(
        WRITTEN,
        STALE,
        errors(
            ErrorCode.FORBIDDEN,
            ErrorCode.INVALID_TRANSITION,
            ErrorCode.PAYOUT_ACCOUNT_REQUIRED,
            ErrorCode.PAYOUT_ACCOUNT_NOT_READY,
        ),
    ),
)
async def publish_listing(
    listing_id: uuid.UUID,
    seller: VerifiedSeller,
    session: Session,
    cache: Cache,
    response: Response,
    if_match: IfMatch = None,
) -> ListingOut:
    """Put a draft, or an archived listing, on sale (`active`; it reaches search within seconds). A draft needs
    stock (409 without); an archived listing that had sold out comes back as `sold` until its seller sets a
    quantity. Needs a verified email address and a payout account that can receive payouts; `If-Match` optional
    (412 when stale)."""
    listing = await listings.publish(session, listing_id, seller, parse_if_match(if_match))
    return await _written(session, cache, response, listing)


@router.post(
    "/listings/{listing_id}/archive",
    response_model=ListingOut,
    responses=merge(WRITTEN, STALE, errors(ErrorCode.FORBIDDEN, ErrorCode.INVALID_TRANSITION)),
)
async def archive_listing(
    listing_id: uuid.UUID,
    seller: Seller,
    session: Session,
    cache: Cache,
    response: Response,
    if_match: IfMatch = None,
) -> ListingOut:
    """Take the listing off sale (`archived`; gone from search, not editable) until its seller publishes it
    again. Orders already placed go on; `If-Match` optional (412 when stale)."""
    listing = await listings.archive(session, listing_id, seller, parse_if_match(if_match))
    return await _written(session, cache, response, listing)


@router.delete(
    "/listings/{listing_id}",
    response_model=ListingDeleteOut,
    responses=merge(
        {200: {"description": "deleted, or archived (then with the listing and its ETag)", "headers": ETAG}},
        STALE,
        errors(ErrorCode.FORBIDDEN),
    ),
)
async def delete_listing(
    listing_id: uuid.UUID,
    seller: Seller,
    session: Session,
    cache: Cache,
    response: Response,
    if_match: IfMatch = None,
) -> ListingDeleteOut:
    """Removes a listing that never had orders; one with orders is archived instead (order history)."""
    kept = await listings.delete(session, listing_id, seller, parse_if_match(if_match))
    if kept is None:
        cache.invalidate([listing_id])
        await session.flush()
        return ListingDeleteOut(result="deleted")
    return ListingDeleteOut(result="archived", listing=await _written(session, cache, response, kept))


@router.get("/me/listings", response_model=ListingPage)
async def list_my_listings(
    seller: Seller,
    session: Session,
    status: Annotated[ListingStatus | None, Query()] = None,
    sort: listings.OwnSort = listings.OwnSort.NEWEST,
    limit: Annotated[int, Query(ge=1, le=listings.MAX_PAGE_SIZE)] = 20,
    cursor: Annotated[
        Annotated[str, single_line(max_length=500)] | None,
        Query(description="next_cursor of the previous page"),
    ] = None,
) -> ListingPage:
    """The seller's own listings in every status, keyset-paginated (stable under inserts)."""
    items, next_cursor = await listings.list_own(session, seller, status, sort, limit, cursor)
    rating = await listings.seller_rating(session, seller.user_id)  # one seller: one lookup for the page
    return ListingPage(items=[ListingOut.of(item, rating) for item in items], next_cursor=next_cursor)
