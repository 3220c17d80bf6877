"""Revealing blind reviews: the scheduled sweep (`RevealDueReviewsWorkflow`) for windows the lean order
opened with its completion, and the legacy review round (`ReviewWorkflow`, one per order completed before
the lean order path): revealed when both sides have reviewed, or when the window closes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from bazaar.orders.types import ActionRequest
from tests.support.orders import BUYER, SELLER, placed
from tests.support.workflow_fakes import FakeWorld, ReviewWindow, children_finished
from workflows.notification import NotificationWorkflow
from workflows.order import OrderWorkflow
from workflows.reviews import RevealDueReviewsWorkflow, ReviewRound, ReviewWorkflow


async def sweep(env: WorkflowEnvironment, world: FakeWorld) -> int:
    """One run of the sweep, as the Schedule starts it."""
    queue = f"test-{uuid.uuid4()}"
    async with Worker(
        env.client, task_queue=queue, workflows=[RevealDueReviewsWorkflow], activities=world.activities()
    ):
        revealed: int = await env.client.execute_workflow(
            RevealDueReviewsWorkflow.run, id=f"reveal-due-reviews-{uuid.uuid4()}", task_queue=queue
        )
        return revealed


async def test_the_sweep_reveals_the_windows_that_closed(workflow_env: WorkflowEnvironment) -> None:
    world = FakeWorld()
    now = datetime.now(UTC)
    world.review_windows += [
        ReviewWindow("closed", closes_at=now - timedelta(minutes=1)),
        ReviewWindow("open", closes_at=now + timedelta(days=14)),
    ]
    assert await sweep(workflow_env, world) == 1
    assert world.revealed == ["closed"]
    assert await sweep(workflow_env, world) == 0  # once


async def test_a_completed_orders_reviews_are_revealed_by_the_sweep_when_its_window_closes(
    workflow_env: WorkflowEnvironment,
) -> None:
    """The lean order opens the window in its completion and starts no review round: the sweep reveals."""
    world = FakeWorld()
    async with placed(workflow_env, world, review_window_seconds=1) as order:
        await order.act(OrderWorkflow.accept, ActionRequest(SELLER))
        await order.act(OrderWorkflow.fulfil, ActionRequest(SELLER))
        await order.act(OrderWorkflow.confirm_receipt, ActionRequest(BUYER))
        assert await sweep(workflow_env, world) == 0  # still open
        await asyncio.sleep(1.5)
        assert await sweep(workflow_env, world) == 1
    assert world.revealed == [order.id]


@asynccontextmanager
async def review_round(
    env: WorkflowEnvironment, world: FakeWorld, **terms: int
) -> AsyncIterator[tuple[str, WorkflowHandle[ReviewWorkflow, int]]]:
    queue = f"test-{uuid.uuid4()}"
    order = str(uuid.uuid4())
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[ReviewWorkflow, NotificationWorkflow],
        activities=world.activities(),
    ):
        handle = await env.client.start_workflow(
            ReviewWorkflow.run,
            ReviewRound(order, "buyer-1", "seller-1", "Road bike", **terms),
            id=f"reviews-{order}",
            task_queue=queue,
        )
        yield order, handle
        await children_finished(env.client, handle)


async def test_revealed_as_soon_as_both_sides_reviewed(workflow_env: WorkflowEnvironment) -> None:
    world = FakeWorld()
    async with review_round(workflow_env, world, window_seconds=3600) as (order, handle):
        await handle.signal(ReviewWorkflow.review_submitted, "buyer-1")
        await handle.signal(ReviewWorkflow.review_submitted, "buyer-1")  # the same side twice is still one
        await asyncio.sleep(0.3)
        assert world.revealed == []
        await handle.signal(ReviewWorkflow.review_submitted, "seller-1")
        assert await asyncio.wait_for(handle.result(), timeout=10) == 2
        await world.eventually(lambda: bool(world.events))
    assert world.revealed == [order]
    assert world.review_windows[0].window_seconds == 3600
    [invitation] = world.events
    assert invitation.event_type == "review_invitation"
    assert set(invitation.recipient_ids) == {"buyer-1", "seller-1"}


async def test_revealed_when_the_fourteen_day_window_closes(time_skipping_env: WorkflowEnvironment) -> None:
    """Time-skipping server: the default 14-day window passes in moments; one side's review is revealed."""
    world = FakeWorld(reviews_written=1)
    async with review_round(time_skipping_env, world) as (order, handle):
        await handle.signal(ReviewWorkflow.review_submitted, "buyer-1")
        assert await handle.result() == 1
        run = await handle.describe()
    assert world.revealed == [order]
    # Revealed by the timer, not before: the round lasted the whole window (in skipped workflow time).
    assert run.close_time is not None
    assert run.close_time - run.start_time >= timedelta(days=14)
    assert world.review_windows[0].window_seconds == 14 * 24 * 3600
