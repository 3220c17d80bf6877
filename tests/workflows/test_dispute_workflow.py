"""The dispute workflow: thread, information requests with deadlines, escalation (time-skipping server)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest
from temporalio import activity
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.disputes import DisputeStatusChange, OpenDispute, ThreadEntry
from activities.notifications import DeadLetterRequest, PrepareNotifications
from workflows.dispute import (
    DisputeCase,
    DisputeMessageIn,
    DisputeState,
    DisputeWorkflow,
    InfoRequest,
    Resolution,
)
from workflows.notification import NotificationWorkflow


@dataclass
class FakeDesk:
    thread: list[ThreadEntry] = field(default_factory=list)
    statuses: list[str] = field(default_factory=list)
    notified: list[tuple[str, tuple[str, ...], tuple[str, ...]]] = field(default_factory=list)

    def activities(self) -> list[Callable[..., Any]]:
        desk = self

        @activity.defn(name="open_dispute_case")
        async def open_case(req: OpenDispute) -> str:
            desk.statuses.append("open")
            return "dispute-1"

        @activity.defn(name="append_dispute_thread")
        async def append(entry: ThreadEntry) -> None:
            desk.thread.append(entry)

        @activity.defn(name="set_dispute_status")
        async def set_status(change: DisputeStatusChange) -> None:
            desk.statuses.append(change.status)

        @activity.defn(name="prepare_notifications")
        async def prepare(req: PrepareNotifications) -> list[int]:
            desk.notified.append((req.event_type, tuple(req.recipient_ids), tuple(req.recipient_roles)))
            return []

        @activity.defn(name="deliver_notification")
        async def deliver(notification_id: int) -> str:
            return "sent"

        @activity.defn(name="dead_letter_notification")
        async def dead_letter(req: DeadLetterRequest) -> None:
            return None

        return [open_case, append, set_status, prepare, deliver, dead_letter]


@asynccontextmanager
async def dispute(
    env: WorkflowEnvironment, desk: FakeDesk
) -> AsyncIterator[WorkflowHandle[Any, DisputeState]]:
    queue = f"test-{uuid.uuid4()}"
    order = str(uuid.uuid4())
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[DisputeWorkflow, NotificationWorkflow],
        activities=desk.activities(),
    ):
        yield await env.client.start_workflow(
            DisputeWorkflow.run,
            DisputeCase(
                order,
                "buyer-1",
                "seller-1",
                "Road bike",
                source="buyer",
                reason_code="not_as_described",
                message="the frame is cracked",
            ),
            id=f"dispute-{order}",
            task_queue=queue,
        )


async def test_unresolved_dispute_escalates_after_five_days(time_skipping_env: WorkflowEnvironment) -> None:
    desk = FakeDesk()
    async with dispute(time_skipping_env, desk) as handle:
        await time_skipping_env.sleep(timedelta(days=4, hours=23))
        assert (await handle.query(DisputeWorkflow.status)).status == "open"
        await time_skipping_env.sleep(timedelta(hours=2))
        assert (await handle.query(DisputeWorkflow.status)).status == "escalated"
        await handle.signal(DisputeWorkflow.resolved, Resolution("refund"))
        state = await handle.result()
        for _ in range(100):  # the resolution's notification is a child that runs on after the case ends
            if len(desk.notified) == 3:
                break
            await asyncio.sleep(0.05)
    assert (state.status, state.resolution) == ("resolved", "refund")
    assert desk.statuses == ["open", "escalated", "resolved"]
    assert [e.kind for e in desk.thread] == ["escalation"]
    events = [n[0] for n in desk.notified]
    assert events == ["dispute_opened", "dispute_escalated", "dispute_resolved"]
    assert desk.notified[1][1:] == ((), ("support",))  # escalation goes to support only


async def test_information_request_answered_and_unanswered(workflow_env: WorkflowEnvironment) -> None:
    """On the dev server: the time-skipping test server never answers an accepted Update (seen: RPC timeout)."""
    desk = FakeDesk()
    async with dispute(workflow_env, desk) as handle:
        asked = await handle.execute_update(
            DisputeWorkflow.request_info, InfoRequest("staff-1", "seller", "Photos of the packaging?", 86_400)
        )
        assert (asked.status, asked.waiting_for) == ("awaiting_info", ["seller"])
        answered = await handle.execute_update(
            DisputeWorkflow.add_message, DisputeMessageIn("seller-1", "seller", "Here they are", "evidence")
        )
        assert (answered.status, answered.waiting_for) == ("open", [])
        await handle.execute_update(
            DisputeWorkflow.request_info, InfoRequest("staff-1", "buyer", "Did you keep the box?", 1)
        )
        for _ in range(50):  # the one-second deadline passes without an answer
            state = await handle.query(DisputeWorkflow.status)
            if not state.waiting_for:
                break
            await asyncio.sleep(0.1)
        assert state.waiting_for == []
        await handle.signal(DisputeWorkflow.resolved, Resolution("partial_refund", 10_000))
        await handle.result()
    kinds = [(e.author_role, e.kind) for e in desk.thread]
    assert kinds == [
        ("support", "info_request"),
        ("seller", "evidence"),
        ("support", "info_request"),
        ("system", "no_response"),
    ]
    assert len({e.dedupe_key for e in desk.thread}) == len(desk.thread)


async def test_bad_input_and_late_messages_are_refused(time_skipping_env: WorkflowEnvironment) -> None:
    desk = FakeDesk()
    async with dispute(time_skipping_env, desk) as handle:
        for bad in (DisputeMessageIn("x", "stranger", "hi"), DisputeMessageIn("buyer-1", "buyer", "  ")):
            with pytest.raises(WorkflowUpdateFailedError) as failure:
                await handle.execute_update(DisputeWorkflow.add_message, bad)
            assert isinstance(failure.value.cause, ApplicationError)
            assert failure.value.cause.type == "InvalidRequest"
        await handle.signal(DisputeWorkflow.resolved, Resolution("release"))
        await handle.result()
    assert desk.thread == []
