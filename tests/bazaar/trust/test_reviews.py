"""Reviews and the reputation they give, on a migrated database of this module's own (the `db` fixture): a party
that already reviewed hears `review_exists` whatever the window's state, and a review support hides stops counting
(its subject's listings are queued for search sync, as a revealed review queues them)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select, update

from bazaar.auth import Principal
from bazaar.errors import DomainError, ErrorCode
from bazaar.models import Listing, ListingStatus, OrderStatus, PaymentState, SearchOutbox, User
from bazaar.trust import reputation, reviews
from bazaar.trust.models import Reputation, Review, ReviewWindow
from bazaar.trust.reputation import PRIOR_MEAN, bayesian_score
from tests.support.outbox import Sessions, make_users, stored_order

pytestmark = pytest.mark.integration


def principal(user: User, *roles: str) -> Principal:
    return Principal(user_id=user.id, roles=frozenset(roles or ("buyer",)))


async def completed_order(db: Sessions, buyer: User, seller: User) -> uuid.UUID:
    """A completed order with its review window open for an hour."""
    order = await stored_order(
        db,
        buyer,
        seller,
        title="Reviewed lamp",
        amount=2_000,
        status=OrderStatus.COMPLETED,
        payment_state=PaymentState.RELEASED,
    )
    async with db() as session, session.begin():
        await reviews.open_window(session, order.id, timedelta(hours=1))
    return order.id


async def submit(db: Sessions, order_id: uuid.UUID, author: User, rating: int) -> Review:
    async with db() as session, session.begin():
        return await reviews.submit(session, order_id, principal(author), rating, "")


async def refused(db: Sessions, order_id: uuid.UUID, author: User) -> ErrorCode:
    with pytest.raises(DomainError) as refusal:
        await submit(db, order_id, author, 3)
    return refusal.value.code


async def ratings(db: Sessions, user: User) -> tuple[int, int, float]:
    async with db() as session:
        rep = await session.get(Reputation, user.id)
        return (rep.rating_count, rep.rating_sum, rep.score) if rep else (0, 0, PRIOR_MEAN)


async def queued(db: Sessions, listing_id: uuid.UUID) -> int:
    async with db() as session:
        found = await session.scalar(
            select(func.count()).select_from(SearchOutbox).where(SearchOutbox.listing_id == listing_id)
        )
        return int(found or 0)


async def hide(db: Sessions, review: Review, staff: User) -> None:
    async with db() as session, session.begin():
        await reviews.hide(session, review.id, principal(staff, "support"), "abusive words")


async def test_a_party_that_reviewed_hears_review_exists_whatever_the_window(db: Sessions) -> None:
    buyer, seller = await make_users(db, 2, "Reviewer")
    revealed = await completed_order(db, buyer, seller)
    await submit(db, revealed, buyer, 5)
    await submit(db, revealed, seller, 4)  # both wrote: revealed at once
    for author in (buyer, seller):
        assert await refused(db, revealed, author) == ErrorCode.REVIEW_EXISTS

    closed = await completed_order(db, buyer, seller)
    await submit(db, closed, buyer, 5)
    async with db() as session, session.begin():  # the window closes with only the buyer's review
        await session.execute(
            update(ReviewWindow)
            .where(ReviewWindow.order_id == closed)
            .values(closes_at=datetime.now(UTC) - timedelta(seconds=1))
        )
    assert await refused(db, closed, buyer) == ErrorCode.REVIEW_EXISTS
    assert await refused(db, closed, seller) == ErrorCode.REVIEW_NOT_ALLOWED  # never wrote: too late now


async def test_a_hidden_review_stops_counting_and_requeues_the_sellers_listings(db: Sessions) -> None:
    seller, staff, *buyers = await make_users(db, 6, "Rated")
    async with db() as session, session.begin():
        listing = Listing(
            seller_id=seller.id,
            title="Rated lamp",
            price_amount=2_000,
            currency="EUR",
            category_slug="home",
            condition="good",
            quantity=1,
            status=ListingStatus.ACTIVE,
        )
        session.add(listing)
    written = []
    for buyer, stars in zip(buyers[:3], (5, 5, 2), strict=True):
        order_id = await completed_order(db, buyer, seller)
        written.append(await submit(db, order_id, buyer, stars))
        await submit(db, order_id, seller, 4)  # revealed: counted
    assert await ratings(db, seller) == (3, 12, bayesian_score(12, 3))
    before = await queued(db, listing.id)

    await hide(db, written[0], staff)  # one of the five-star reviews: no longer counted, search told
    assert await ratings(db, seller) == (2, 7, bayesian_score(7, 2))
    assert await queued(db, listing.id) == before + 1
    await hide(db, written[0], staff)  # again: nothing changes
    assert await ratings(db, seller) == (2, 7, bayesian_score(7, 2))
    assert await queued(db, listing.id) == before + 1

    # Hidden while still blind: revealing the order's reviews later does not count it.
    blind_order = await completed_order(db, buyers[3], seller)
    blind = await submit(db, blind_order, buyers[3], 5)
    await hide(db, blind, staff)
    await submit(db, blind_order, seller, 4)  # both wrote: revealed
    assert await ratings(db, seller) == (2, 7, bayesian_score(7, 2))
    assert await ratings(db, buyers[3]) == (1, 4, bayesian_score(4, 1))


async def test_an_order_outcome_counts_once_and_its_window_opens_once(db: Sessions) -> None:
    """What an order's completion books in its own transaction, one statement each: the seller's counter (a
    retried transition counts nothing twice; a seller with no row yet gets one at the prior) and the window."""
    buyer, seller = await make_users(db, 2, "Outcome")
    order = await stored_order(
        db, buyer, seller, title="Counted lamp", amount=2_000, status=OrderStatus.COMPLETED,
        payment_state=PaymentState.RELEASED,
    )  # fmt: skip
    closes_at = datetime.now(UTC) + timedelta(days=7)
    for _ in range(2):  # the transition's transaction run again: nothing more
        async with db() as session, session.begin():
            await reputation.apply_order_outcome(session, order.id, seller.id, "completed")
            await reputation.apply_order_outcome(session, order.id, seller.id, "disputed")
            await reviews.start_window(session, order.id, closes_at)
    async with db() as session:
        rep = await session.get(Reputation, seller.id)
        assert rep is not None
        assert (rep.orders_completed, rep.orders_disputed, rep.orders_cancelled, rep.score) == (
            1,
            1,
            0,
            PRIOR_MEAN,
        )
        window = await session.get(ReviewWindow, order.id)
        assert window is not None
        assert (window.buyer_id, window.seller_id, window.closes_at) == (buyer.id, seller.id, closes_at)
    other = await stored_order(
        db, buyer, seller, title="Second lamp", amount=2_000, status=OrderStatus.CANCELLED,
        payment_state=PaymentState.REFUNDED,
    )  # fmt: skip
    async with db() as session, session.begin():
        await reputation.apply_order_outcome(session, other.id, seller.id, "cancelled")
    async with db() as session:
        rep = await session.get(Reputation, seller.id)
        assert rep is not None
        assert (rep.orders_completed, rep.orders_cancelled) == (1, 1)
