"""Reputation: a stored Bayesian average of ratings received plus order outcome counts.

Updated when a review is revealed or an order ends (each event applied once) and when support hides a review,
never recomputed on read.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

from sqlalchemy import String, func, literal, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.sql.dml import ReturningInsert

from bazaar.listings.changes import announce
from bazaar.models import AuditEvent, Listing, ListingStatus, SearchOutbox, User
from bazaar.telemetry import traceparent
from bazaar.trust.models import Reputation, Review, TrustFlag, TrustFlagKind

# Prior: a newcomer counts as PRIOR_WEIGHT ratings of PRIOR_MEAN, so one 5-star review does not beat a long
# record of 4.8s, and one 1-star review does not sink a newcomer.
PRIOR_MEAN = 4.0
PRIOR_WEIGHT = 5
REPEATED_PAIR_LIMIT = 3  # reviews from the same author to the same subject within REPEATED_PAIR_DAYS
REPEATED_PAIR_DAYS = 30
NEW_ACCOUNT_DAYS = 7  # "new" reviewer accounts for the burst check
BURST_LIMIT = 3  # top ratings from new accounts within BURST_HOURS
BURST_HOURS = 24


def bayesian_score(rating_sum: int, rating_count: int) -> float:
    return round((PRIOR_MEAN * PRIOR_WEIGHT + rating_sum) / (PRIOR_WEIGHT + rating_count), 4)


async def _row(session: AsyncSession, user_id: uuid.UUID) -> Reputation:
    await session.execute(
        insert(Reputation)
        .values(user_id=user_id, score=PRIOR_MEAN)
        .on_conflict_do_nothing(index_elements=["user_id"])
    )
    row = await session.scalar(select(Reputation).where(Reputation.user_id == user_id).with_for_update())
    assert row is not None
    return row


def _audit_once(key: str, action: str, subject_id: uuid.UUID) -> ReturningInsert[tuple[int]]:
    """The audit row that doubles as the idempotency record of `key`: it returns its id the first time only."""
    return (
        insert(AuditEvent)
        .values(
            actor_role="system",
            subject_type="reputation",
            subject_id=str(subject_id),
            action=action,
            data={},
            dedupe_key=key,
        )
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .returning(AuditEvent.id)
    )


async def _once(session: AsyncSession, key: str, action: str, subject_id: uuid.UUID) -> bool:
    """True the first time `key` is seen."""
    return (await session.execute(_audit_once(key, action, subject_id))).first() is not None


async def apply_review(session: AsyncSession, review: Review) -> Reputation:
    rep = await _row(session, review.subject_id)
    if await _once(session, f"reputation:review:{review.id}", "reputation.review_counted", review.subject_id):
        await _recount(session, rep)
    return rep


async def recount_reviews(session: AsyncSession, subject_id: uuid.UUID) -> Reputation:
    """Support hid a review about `subject_id`: their ratings counted again without it (and search told)."""
    rep = await _row(session, subject_id)
    await _recount(session, rep)
    return rep


async def _recount(session: AsyncSession, rep: Reputation) -> None:
    """Ratings from the subject's revealed, visible reviews, read under the reputation's row lock: a review
    hidden or revealed at the same time is counted as whichever committed first left it, never twice."""
    count, total = (
        await session.execute(
            select(func.count(), func.coalesce(func.sum(Review.rating), 0)).where(
                Review.subject_id == rep.user_id, Review.revealed_at.is_not(None), Review.hidden_at.is_(None)
            )
        )
    ).one()
    if (count, total) != (rep.rating_count, rep.rating_sum):
        rep.rating_count, rep.rating_sum = count, total
        rep.score = bayesian_score(total, count)
        await reindex_seller_listings(session, rep.user_id)  # search shows and ranks by the new rating


# The counter each order outcome adds one to (bazaar.orders.notices.outcome_of decides the outcome).
_OUTCOME_COUNTERS = {
    "completed": Reputation.orders_completed,
    "cancelled": Reputation.orders_cancelled,
    "refunded": Reputation.orders_refunded,
    "disputed": Reputation.orders_disputed,
}
# Every counter of a seller's row, the ratings' included: a new row starts them at 0.
_COUNTER_KEYS = ("rating_count", "rating_sum", *(c.key for c in _OUTCOME_COUNTERS.values()))


async def apply_order_outcome(
    session: AsyncSession, order_id: uuid.UUID, seller_id: uuid.UUID, outcome: str
) -> None:
    """outcome: how the order ended (completed | cancelled | refunded), or disputed (an ended order that was
    disputed; bazaar.orders.notices.outcome_of decides which); each counted once per order. One statement (it
    runs in the transition that ends the order, before its Update answers): the audit row is the idempotency
    record, and the seller's row is created or counted up by how many audit rows were new (0 or 1)."""
    counter = _OUTCOME_COUNTERS[outcome].key
    once = _audit_once(
        f"reputation:order:{order_id}:{outcome}", f"reputation.order_{outcome}", seller_id
    ).cte("once")
    counters = {key: func.count() if key == counter else literal(0) for key in _COUNTER_KEYS}
    new_rows = select(literal(seller_id), literal(PRIOR_MEAN), *counters.values()).select_from(once)
    count = insert(Reputation).from_select(["user_id", "score", *counters], new_rows, include_defaults=False)
    await session.execute(
        count.on_conflict_do_update(
            index_elements=["user_id"],
            set_={
                counter: getattr(Reputation, counter) + getattr(count.excluded, counter),
                "updated_at": func.now(),  # `onupdate` is the ORM's: a Core upsert sets it itself
            },
            where=getattr(count.excluded, counter) > 0,
        )
    )


def orders_ended(rep: Reputation | None) -> int:
    """The seller's ended orders: completed, cancelled by the seller, refunded without completing (a buyer's
    cancellation or a failed payment is not the seller's doing and is not counted). What the rates divide by."""
    return (rep.orders_completed + rep.orders_cancelled + rep.orders_refunded) if rep else 0


def rates(rep: Reputation | None) -> dict[str, float]:
    """Shares of the seller's ended orders (`orders_ended`; 0 while there is none): completed, cancelled, and
    disputed (by the buyer or through a chargeback)."""
    ended = orders_ended(rep)
    if rep is None or ended == 0:
        return {"completion_rate": 0.0, "cancellation_rate": 0.0, "dispute_rate": 0.0}
    # Counters written before disputes were counted at the order's end counted them when they opened, open
    # ones included: at most every ended order.
    disputed = min(rep.orders_disputed, ended)
    return {
        "completion_rate": round(rep.orders_completed / ended, 4),
        "cancellation_rate": round(rep.orders_cancelled / ended, 4),
        "dispute_rate": round(disputed / ended, 4),
    }


async def reindex_seller_listings(session: AsyncSession, seller_id: uuid.UUID) -> None:
    """The seller's rating changed: queue their public listings for search sync in one statement, and announce
    them so the API's cached reads show the new rating too."""
    queued = await session.scalars(
        insert(SearchOutbox)
        .from_select(
            ["listing_id", "listing_version", "trace_context"],
            select(Listing.id, Listing.version, literal(traceparent(), String(64))).where(
                Listing.seller_id == seller_id, Listing.status == ListingStatus.ACTIVE
            ),
        )
        .returning(SearchOutbox.listing_id)
    )
    announce(session, queued.all())


async def flag_suspicious(session: AsyncSession, review: Review) -> list[TrustFlagKind]:
    """Flag patterns for support (never drop the review): repeated pairs and bursts from new accounts."""
    now = datetime.now(UTC)
    flags: list[TrustFlagKind] = []
    pair_count = await session.scalar(
        select(func.count())
        .select_from(Review)
        .where(
            Review.author_id == review.author_id,
            Review.subject_id == review.subject_id,
            Review.created_at > now - timedelta(days=REPEATED_PAIR_DAYS),
        )
    )
    if (pair_count or 0) >= REPEATED_PAIR_LIMIT:
        flags.append(
            await _flag(
                session,
                TrustFlagKind.REPEATED_PAIR,
                review.subject_id,
                f"pair:{review.author_id}",
                {"author_id": str(review.author_id), "reviews": int(pair_count or 0)},
            )
        )
    if review.rating == 5:
        burst = await session.scalar(
            select(func.count())
            .select_from(Review)
            .join(User, User.id == Review.author_id)
            .where(
                Review.subject_id == review.subject_id,
                Review.rating == 5,
                Review.created_at > now - timedelta(hours=BURST_HOURS),
                User.created_at > now - timedelta(days=NEW_ACCOUNT_DAYS),
            )
        )
        if (burst or 0) >= BURST_LIMIT:
            day = now.strftime("%Y-%m-%d")
            flags.append(
                await _flag(
                    session,
                    TrustFlagKind.NEW_ACCOUNT_BURST,
                    review.subject_id,
                    f"burst:{day}",
                    {"five_star_reviews_from_new_accounts": int(burst or 0)},
                )
            )
    return flags


async def _flag(
    session: AsyncSession,
    kind: TrustFlagKind,
    subject_id: uuid.UUID,
    evidence_key: str,
    details: dict[str, object],
) -> TrustFlagKind:
    await session.execute(
        insert(TrustFlag)
        .values(kind=kind, subject_id=subject_id, evidence_key=evidence_key, details=details)
        .on_conflict_do_nothing(constraint="uq_trust_flag")
    )
    return kind
