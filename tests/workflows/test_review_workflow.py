"""The blind review round: revealed when both sides have reviewed, or when the window closes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from temporalio import activity
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.notifications import DeadLetterRequest, PrepareNotifications
from activities.trust import ReviewWindowRequest
from workflows.notification import NotificationWorkflow
from workflows.reviews import ReviewRound, ReviewWorkflow


@dataclass
class FakeTrust:
    windows: list[ReviewWindowRequest] = field(default_factory=list)
    revealed: list[str] = field(default_factory=list)
    invitations: list[PrepareNotifications] = field(default_factory=list)

    def activities(self) -> list[Callable[..., Any]]:
        trust = self

        @activity.defn(name="open_review_window")
        async def open_review_window(req: ReviewWindowRequest) -> str:
            trust.windows.append(req)
            return "2026-12-09T12:00+00:00"

        @activity.defn(name="reveal_reviews")
        async def reveal_reviews(order_id: str) -> int:
            trust.revealed.append(order_id)
            return 2

        @activity.defn(name="prepare_notifications")
        async def prepare(req: PrepareNotifications) -> list[int]:
            trust.invitations.append(req)
            return []

        @activity.defn(name="deliver_notification")
        async def deliver(notification_id: int) -> str:
            return "sent"

        @activity.defn(name="dead_letter_notification")
        async def dead_letter(req: DeadLetterRequest) -> None:
            return None

        return [open_review_window, reveal_reviews, prepare, deliver, dead_letter]


async def test_revealed_as_soon_as_both_sides_reviewed(workflow_env: WorkflowEnvironment) -> None:
    trust = FakeTrust()
    queue = f"test-{uuid.uuid4()}"
    order = str(uuid.uuid4())
    async with Worker(
        workflow_env.client,
        task_queue=queue,
        workflows=[ReviewWorkflow, NotificationWorkflow],
        activities=trust.activities(),
    ):
        handle = await workflow_env.client.start_workflow(
            ReviewWorkflow.run,
            ReviewRound(order, "buyer-1", "seller-1", "Road bike", window_seconds=3600),
            id=f"reviews-{order}",
            task_queue=queue,
        )
        await handle.signal(ReviewWorkflow.review_submitted, "buyer-1")
        await handle.signal(ReviewWorkflow.review_submitted, "buyer-1")  # the same side twice is still one
        await asyncio.sleep(0.3)
        assert trust.revealed == []
        await handle.signal(ReviewWorkflow.review_submitted, "seller-1")
        assert await asyncio.wait_for(handle.result(), timeout=10) == 2
    assert trust.revealed == [order]
    assert trust.windows[0].window_seconds == 3600
    assert trust.invitations[0].event_type == "review_invitation"
    assert set(trust.invitations[0].recipient_ids) == {"buyer-1", "seller-1"}


async def test_revealed_when_the_window_closes(workflow_env: WorkflowEnvironment) -> None:
    trust = FakeTrust()
    queue = f"test-{uuid.uuid4()}"
    order = str(uuid.uuid4())
    async with Worker(
        workflow_env.client,
        task_queue=queue,
        workflows=[ReviewWorkflow, NotificationWorkflow],
        activities=trust.activities(),
    ):
        handle = await workflow_env.client.start_workflow(
            ReviewWorkflow.run,
            ReviewRound(order, "buyer-1", "seller-1", "Road bike", window_seconds=1),
            id=f"reviews-{order}",
            task_queue=queue,
        )
        await handle.signal(ReviewWorkflow.review_submitted, "buyer-1")
        await asyncio.wait_for(handle.result(), timeout=10)
    assert trust.revealed == [order]
