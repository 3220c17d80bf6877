"""Reviews, profiles with reputation, and support's trust tools."""

from __future__ import annotations

import logging
import uuid
from typing import Annotated

from fastapi import APIRouter, Query
from sqlalchemy import select
from temporalio.service import RPCError

from api.deps import Caller, Session, Support, Temporal
from api.errors import workflow_gone
from api.openapi import errors
from api.trust_schemas import (
    DisputeSummaryOut,
    HideReviewIn,
    ProfileOut,
    ReputationOut,
    ReviewIn,
    ReviewOut,
    TrustFlagOut,
)
from bazaar.errors import DomainError, ErrorCode
from bazaar.models import Role, User
from bazaar.trust import disputes, reputation, reviews
from bazaar.trust.models import DisputeStatus, Reputation, TrustFlag
from workflows.reviews import ReviewWorkflow, reviews_workflow_id

router = APIRouter(prefix="/v1")  # tags per route: reviews, users, support
log = logging.getLogger("api.trust")


@router.post(
    "/orders/{order_id}/reviews",
    status_code=201,
    response_model=ReviewOut,
    tags=["reviews"],
    responses=errors(ErrorCode.FORBIDDEN, ErrorCode.REVIEW_NOT_ALLOWED, ErrorCode.REVIEW_EXISTS),
)
async def review_order(
    order_id: uuid.UUID, body: ReviewIn, caller: Caller, session: Session, temporal: Temporal
) -> ReviewOut:
    """Buyer reviews seller or seller reviews buyer, once, after completion; hidden until revealed."""
    review = await reviews.submit(session, order_id, caller, body.rating, body.text)
    out = ReviewOut.of(review)
    await session.commit()
    try:  # a review round of an order completed before the lean order path reveals early too
        await temporal.get_workflow_handle(reviews_workflow_id(str(order_id))).signal(
            ReviewWorkflow.review_submitted, str(caller.user_id)
        )
    except RPCError as exc:
        # No round (every newer order), or it ended: nothing to tell. Temporal out of reach: the review is
        # stored, the second review reveals both, and the sweep reveals closed windows, so nothing is lost.
        if not workflow_gone(exc):
            log.warning("review of order %s: could not tell its review round: %s", order_id, exc)
    return out


@router.get(
    "/orders/{order_id}/reviews",
    response_model=list[ReviewOut],
    tags=["reviews"],
    responses=errors(ErrorCode.FORBIDDEN),
)
async def list_order_reviews(order_id: uuid.UUID, caller: Caller, session: Session) -> list[ReviewOut]:
    """The order's reviews, for its buyer, seller and support: your own at once, the other side's once both
    have written or the review window has closed (blind reviews)."""
    return [ReviewOut.of(r) for r in await reviews.for_order(session, order_id, caller)]


@router.get("/users/{user_id}/profile", response_model=ProfileOut, tags=["users"])
async def get_user_profile(user_id: uuid.UUID, session: Session) -> ProfileOut:
    """Public: who someone is on Bazaar and how others rated them."""
    user = await _public_user(session, user_id)
    return ProfileOut(
        id=user.id,
        display_name=user.display_name,
        member_since=user.created_at,
        roles=[Role(r) for r in user.roles if r in (Role.BUYER, Role.SELLER)],
        reputation=reputation_out(await session.get(Reputation, user_id)),
    )


@router.get("/users/{user_id}/reviews", response_model=list[ReviewOut], tags=["users"])
async def list_user_reviews(
    user_id: uuid.UUID, session: Session, limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> list[ReviewOut]:
    """Public: revealed, visible reviews about this user, newest first (404 for a user the profile does not show,
    as it answers: an empty list is a user nobody reviewed yet)."""
    await _public_user(session, user_id)
    return [ReviewOut.of(r) for r in await reviews.public_for_user(session, user_id, limit)]


async def _public_user(session: Session, user_id: uuid.UUID) -> User:
    """A user the public may see: one that exists and is active (404 otherwise)."""
    user = await session.get(User, user_id)
    if user is None or not user.is_active:
        raise DomainError(ErrorCode.NOT_FOUND, "user not found")
    return user


@router.post("/support/reviews/{review_id}/hide", response_model=ReviewOut, tags=["support"])
async def hide_review(
    review_id: uuid.UUID, body: HideReviewIn, staff: Support, session: Session
) -> ReviewOut:
    """Support hides an abusive review (audited)."""
    return ReviewOut.of(await reviews.hide(session, review_id, staff, body.reason))


@router.get("/support/disputes", response_model=list[DisputeSummaryOut], tags=["support"])
async def list_dispute_queue(
    staff: Support,
    session: Session,
    status: Annotated[
        list[DisputeStatus] | None, Query(description="default: every unresolved status")
    ] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> list[DisputeSummaryOut]:
    """Support's queue of dispute cases: escalated first, then the oldest first (thread: the order's
    `GET /v1/orders/{id}/dispute`)."""
    wanted = status or [s for s in DisputeStatus if s != DisputeStatus.RESOLVED]
    return [DisputeSummaryOut.of_case(d) for d in await disputes.queue(session, wanted, limit)]


@router.get("/support/trust-flags", response_model=list[TrustFlagOut], tags=["support"])
async def list_trust_flags(
    staff: Support, session: Session, limit: Annotated[int, Query(ge=1, le=200)] = 50
) -> list[TrustFlagOut]:
    """Suspicious review patterns waiting for support."""
    rows = (
        await session.scalars(
            select(TrustFlag)
            .where(TrustFlag.resolved_at.is_(None))
            .order_by(TrustFlag.id.desc())
            .limit(limit)
        )
    ).all()
    return [
        TrustFlagOut(
            id=f.id, kind=f.kind, subject_id=f.subject_id, details=f.details, created_at=f.created_at
        )
        for f in rows
    ]


def reputation_out(rep: Reputation | None) -> ReputationOut:
    return ReputationOut(
        score=rep.score if rep else reputation.PRIOR_MEAN,
        rating_count=rep.rating_count if rep else 0,
        orders_completed=rep.orders_completed if rep else 0,
        orders_ended=reputation.orders_ended(rep),
        **reputation.rates(rep),
    )
