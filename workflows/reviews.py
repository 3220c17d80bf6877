"""The review round of a completed order (id `reviews-<order id>`): invite both sides, reveal blind reviews.

Reviews stay hidden until both sides have reviewed or the window closes (a durable timer); then they are
revealed and counted into the reputations, once.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy

with workflow.unsafe.imports_passed_through():
    from activities.notifications import PrepareNotifications
    from activities.trust import ReviewWindowRequest, TrustActivities
    from workflows.notification import notify_in_background

DB_RETRY = RetryPolicy(initial_interval=timedelta(milliseconds=200), maximum_interval=timedelta(seconds=10))


@dataclass
class ReviewRound:
    order_id: str
    buyer_id: str
    seller_id: str
    listing_title: str
    window_seconds: int = 14 * 24 * 3600
    notification_max_attempts: int = 6


def reviews_workflow_id(order_id: str) -> str:
    return f"reviews-{order_id}"


@workflow.defn
class ReviewWorkflow:
    def __init__(self) -> None:
        self._reviewed_by: set[str] = set()

    @workflow.run
    async def run(self, req: ReviewRound) -> int:
        closes_at = await workflow.execute_activity_method(
            TrustActivities.open_review_window,
            ReviewWindowRequest(req.order_id, req.window_seconds),
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=DB_RETRY,
        )
        event_key = f"order:{req.order_id}:review_invitation"
        await notify_in_background(
            PrepareNotifications(
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
        revealed: int = await workflow.execute_activity_method(
            TrustActivities.reveal_reviews,
            req.order_id,
            start_to_close_timeout=timedelta(seconds=30),
            retry_policy=DB_RETRY,
        )
        return revealed

    @workflow.signal
    def review_submitted(self, author_id: str) -> None:
        self._reviewed_by.add(author_id)
