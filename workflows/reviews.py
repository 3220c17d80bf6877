"""Revealing blind reviews.

Reviews stay hidden until both sides have reviewed or the window closes; then they are revealed and counted
into the reputations, once. A completed order opens its window and sends the invitations in its completion
transaction; the second review reveals both at once (`bazaar.trust.reviews.submit`); windows that close with a
side missing are revealed by `RevealDueReviewsWorkflow`, which a Temporal Schedule runs every few minutes.

`ReviewWorkflow` (id `reviews-<order id>`, a durable timer per order) is how orders completed before the
lean order path ran their review round; it stays registered until those rounds have ended.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

from workflows.queues import execute_activity
from workflows.retries import DB_RETRY

with workflow.unsafe.imports_passed_through():
    from activities.trust import ReviewWindowRequest, TrustActivities
    from bazaar.temporal import reviews_workflow_id as reviews_workflow_id
    from bazaar.trust.notifications import NotificationEvent
    from workflows.notification import notify_in_background


@dataclass
class ReviewRound:
    order_id: str
    buyer_id: str
    seller_id: str
    listing_title: str
    window_seconds: int = 14 * 24 * 3600
    notification_max_attempts: int = 6


REVEAL_SCHEDULE_ID = "bazaar-reveal-due-reviews"


@workflow.defn
class RevealDueReviewsWorkflow:
    """One sweep: reveal the reviews of every window that has closed (started by the Schedule)."""

    @workflow.run
    async def run(self) -> int:
        revealed: int = await execute_activity(
            TrustActivities.reveal_due_reviews,
            start_to_close_timeout=timedelta(minutes=2),
            retry_policy=RetryPolicy(maximum_interval=timedelta(seconds=30), maximum_attempts=10),
        )
        return revealed


@workflow.defn
class ReviewWorkflow:
    def __init__(self) -> None:
        self._reviewed_by: set[str] = set()

    @workflow.run
    async def run(self, req: ReviewRound) -> int:
        closes_at = await execute_activity(
            TrustActivities.open_review_window,
            ReviewWindowRequest(req.order_id, req.window_seconds),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=DB_RETRY,
        )
        event_key = f"order:{req.order_id}:review_invitation"
        await notify_in_background(
            NotificationEvent(
                event_key=event_key,
                event_type="review_invitation",
                recipient_ids=[req.buyer_id, req.seller_id],
                data={"listing_title": req.listing_title, "deadline": closes_at, "order_id": req.order_id},
            ),
            req.notification_max_attempts,
        )
        try:
            await workflow.wait_condition(
                lambda: len(self._reviewed_by) >= 2, timeout=timedelta(seconds=req.window_seconds)
            )
        except TimeoutError:
            pass  # the window closed: reveal whatever was written
        revealed: int = await execute_activity(
            TrustActivities.reveal_reviews,
            req.order_id,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=DB_RETRY,
        )
        return revealed

    @workflow.signal
    def review_submitted(self, author_id: str) -> None:
        self._reviewed_by.add(author_id)
