"""Two-way blind reviews after a completed order."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import DateTime, literal, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from bazaar.auth import Principal
from bazaar.errors import DomainError, ErrorCode
from bazaar.integrations import events
from bazaar.models import AuditEvent, Order, Role
from bazaar.trust import reputation
from bazaar.trust.models import Review, ReviewDirection, ReviewWindow


async def open_window(
    session: AsyncSession,
    order_id: uuid.UUID,
    window: timedelta | None = None,
    *,
    closes_at: datetime | None = None,
) -> ReviewWindow:
    """Open the order's review window (once) for `window` from now, or until `closes_at`."""
    if closes_at is None:
        assert window is not None
        closes_at = datetime.now(UTC) + window
    await start_window(session, order_id, closes_at)
    found = await session.get(ReviewWindow, order_id)
    if found is None:
        raise LookupError(f"order {order_id} not found")
    return found


async def start_window(session: AsyncSession, order_id: uuid.UUID, closes_at: datetime) -> None:
    """`open_window` in one statement, reading nothing back (the order's completion runs it before its Update
    answers): the window's parties are the order's, from its row; no row for an order that is not stored."""
    parties = select(Order.id, Order.buyer_id, Order.seller_id, literal(closes_at, DateTime(timezone=True)))
    await session.execute(
        insert(ReviewWindow)
        .from_select(["order_id", "buyer_id", "seller_id", "closes_at"], parties.where(Order.id == order_id))
        .on_conflict_do_nothing(index_elements=["order_id"])
    )


async def submit(
    session: AsyncSession, order_id: uuid.UUID, author: Principal, rating: int, text: str
) -> Review:
    order = await session.get(Order, order_id)
    if order is None:
        raise DomainError(ErrorCode.NOT_FOUND, "order not found")
    if author.user_id == order.buyer_id:
        direction, subject = ReviewDirection.BUYER_TO_SELLER, order.seller_id
    elif author.user_id == order.seller_id:
        direction, subject = ReviewDirection.SELLER_TO_BUYER, order.buyer_id
    else:
        raise DomainError(ErrorCode.FORBIDDEN, "only the buyer and the seller of an order can review it")
    # Locked: of two reviews written at once, the second sees the first and reveals both.
    window = await session.scalar(
        select(ReviewWindow).where(ReviewWindow.order_id == order_id).with_for_update()
    )
    if window is None:
        raise DomainError(
            ErrorCode.REVIEW_NOT_ALLOWED,
            "reviews open when the order is completed",
            {"status": order.status.value},
        )
    # A party that already reviewed hears so whatever the window's state (the unique key settles a race).
    written = await session.scalar(
        select(Review.id).where(Review.order_id == order_id, Review.author_id == author.user_id)
    )
    if written is not None:
        raise DomainError(ErrorCode.REVIEW_EXISTS, "you have already reviewed this order")
    if window.revealed_at is not None or window.closes_at <= datetime.now(UTC):
        raise DomainError(ErrorCode.REVIEW_NOT_ALLOWED, "the review window for this order has closed")
    review = Review(
        order_id=order_id,
        author_id=author.user_id,
        subject_id=subject,
        direction=direction,
        rating=rating,
        text=text,
    )
    session.add(review)
    try:
        await session.flush()
    except IntegrityError as exc:
        raise DomainError(ErrorCode.REVIEW_EXISTS, "you have already reviewed this order") from exc
    # Blind: no rating or text, and a buyer's review only in the platform's scope until it is revealed.
    by_seller = direction == ReviewDirection.SELLER_TO_BUYER
    await events.record(
        session, events.EventType.REVIEW_CREATED, order.seller_id if by_seller else None, _review_data(review)
    )
    await reputation.flag_suspicious(session, review)
    if await both_submitted(session, order_id):
        await reveal(session, order_id)  # blind until both sides have written, then at once
    return review


async def reveal(session: AsyncSession, order_id: uuid.UUID) -> list[Review]:
    """Make the order's reviews visible (both sides reviewed, or the window closed) and count them."""
    window = await session.scalar(
        select(ReviewWindow).where(ReviewWindow.order_id == order_id).with_for_update()
    )
    if window is None:
        return []
    now = datetime.now(UTC)
    window.revealed_at = window.revealed_at or now
    reviews = (await session.scalars(select(Review).where(Review.order_id == order_id))).all()
    for review in reviews:
        if review.revealed_at is None:
            review.revealed_at = now
            data = {**_review_data(review), "rating": review.rating}
            await events.record(session, events.EventType.REVIEW_REVEALED, window.seller_id, data)
        await reputation.apply_review(session, review)
    return list(reviews)


def _review_data(review: Review) -> dict[str, str]:
    return {
        "object": "review",
        "id": str(review.id),
        "order_id": str(review.order_id),
        "direction": str(review.direction),
        "author_id": str(review.author_id),
        "subject_id": str(review.subject_id),
    }


async def reveal_due(session: AsyncSession, now: datetime | None = None, limit: int = 500) -> int:
    """Reveal the reviews of every window that has closed unrevealed (the periodic sweep); how many windows."""
    due = (
        await session.scalars(
            select(ReviewWindow.order_id)
            .where(ReviewWindow.revealed_at.is_(None), ReviewWindow.closes_at <= (now or datetime.now(UTC)))
            .order_by(ReviewWindow.closes_at)
            .limit(limit)
        )
    ).all()
    for order_id in due:
        await reveal(session, order_id)
    return len(due)


async def both_submitted(session: AsyncSession, order_id: uuid.UUID) -> bool:
    authors = (await session.scalars(select(Review.author_id).where(Review.order_id == order_id))).all()
    return len(set(authors)) >= 2


async def for_order(session: AsyncSession, order_id: uuid.UUID, viewer: Principal) -> list[Review]:
    """The order's reviews as `viewer` may see them: your own always, the other side's once revealed."""
    order = await session.get(Order, order_id)
    if order is None:
        raise DomainError(ErrorCode.NOT_FOUND, "order not found")
    support = viewer.has(Role.SUPPORT)
    if viewer.user_id not in (order.buyer_id, order.seller_id) and not support:
        raise DomainError(ErrorCode.FORBIDDEN, "only the buyer, the seller and support can see these reviews")
    reviews = (
        await session.scalars(select(Review).where(Review.order_id == order_id).order_by(Review.created_at))
    ).all()
    return [
        r
        for r in reviews
        if support or r.author_id == viewer.user_id or (r.revealed_at is not None and r.hidden_at is None)
    ]


async def public_for_user(session: AsyncSession, user_id: uuid.UUID, limit: int) -> list[Review]:
    return list(
        (
            await session.scalars(
                select(Review)
                .where(
                    Review.subject_id == user_id, Review.revealed_at.is_not(None), Review.hidden_at.is_(None)
                )
                .order_by(Review.revealed_at.desc())
                .limit(limit)
            )
        ).all()
    )


async def hide(session: AsyncSession, review_id: uuid.UUID, staff: Principal, reason: str) -> Review:
    review = await session.get(Review, review_id)
    if review is None:
        raise DomainError(ErrorCode.NOT_FOUND, "review not found")
    if staff.user_id in (review.author_id, review.subject_id):  # never support's remedy for oneself
        raise DomainError(
            ErrorCode.FORBIDDEN, "support staff cannot hide a review they wrote or that is about them"
        )
    review.hidden_at = datetime.now(UTC)
    review.hidden_by = staff.user_id
    review.hidden_reason = reason
    # Hiding is support's remedy for faked ratings too: a hidden review no longer counts (nor ranks in search).
    await reputation.recount_reviews(session, review.subject_id)
    session.add(
        AuditEvent(
            actor_id=staff.user_id,
            actor_role="support",
            subject_type="review",
            subject_id=str(review.id),
            action="review.hidden",
            data={"reason": reason, "order_id": str(review.order_id)},
        )
    )
    return review
