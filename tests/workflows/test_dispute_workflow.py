"""The dispute workflow: thread, information requests with deadlines, escalation (time-skipping server)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from typing import Any

import pytest
from temporalio.client import WorkflowHandle, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from bazaar.trust.models import DisputeResolution, DisputeSource
from tests.support.workflow_fakes import FakeWorld, children_finished
from workflows.dispute import (
    DisputeCase,
    DisputeMessageIn,
    DisputeState,
    DisputeWorkflow,
    InfoRequest,
    Resolution,
)
from workflows.notification import NotificationWorkflow


@asynccontextmanager
async def dispute(
    env: WorkflowEnvironment, world: FakeWorld
) -> AsyncIterator[WorkflowHandle[Any, DisputeState]]:
    queue = f"test-{uuid.uuid4()}"
    order = str(uuid.uuid4())
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[DisputeWorkflow, NotificationWorkflow],
        activities=world.activities(),
    ):
        handle = await env.client.start_workflow(
            DisputeWorkflow.run,
            DisputeCase(
                order,
                "buyer-1",
                "seller-1",
                "Road bike",
                source=DisputeSource.BUYER,
                reason_code="not_as_described",
                message="the frame is cracked",
            ),
            id=f"dispute-{order}",
            task_queue=queue,
        )
        yield handle
        await children_finished(env.client, handle)


async def test_unresolved_dispute_escalates_after_five_days(time_skipping_env: WorkflowEnvironment) -> None:
    world = FakeWorld()
    async with dispute(time_skipping_env, world) as handle:
        await time_skipping_env.sleep(timedelta(days=4, hours=23))
        assert (await handle.query(DisputeWorkflow.status)).status == "open"
        await time_skipping_env.sleep(timedelta(hours=2))
        assert (await handle.query(DisputeWorkflow.status)).status == "escalated"
        await handle.signal(DisputeWorkflow.resolved, Resolution(DisputeResolution.REFUND))
        state = await handle.result()
        for _ in range(100):  # the resolution's notification is a child that runs on after the case ends
            if len(world.events) == 3:
                break
            await asyncio.sleep(0.05)
    assert (state.status, state.resolution) == ("resolved", "refund")
    assert len(world.dispute_cases) == 1
    assert [s.status for s in world.dispute_statuses] == ["escalated", "resolved"]
    assert [e.kind for e in world.dispute_thread] == ["escalation"]
    assert [e.event_type for e in world.events] == ["dispute_opened", "dispute_escalated", "dispute_resolved"]
    escalation = world.events[1]
    assert (escalation.recipient_ids, escalation.recipient_roles) == ([], ["support"])  # support only


async def test_information_request_answered_and_unanswered(workflow_env: WorkflowEnvironment) -> None:
    """On the dev server: the time-skipping test server never answers an accepted Update (seen: RPC timeout)."""
    world = FakeWorld()
    async with dispute(workflow_env, world) as handle:
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
        await handle.signal(DisputeWorkflow.resolved, Resolution(DisputeResolution.PARTIAL_REFUND, 10_000))
        await handle.result()
    kinds = [(e.author_role, e.kind) for e in world.dispute_thread]
    assert kinds == [
        ("support", "info_request"),
        ("seller", "evidence"),
        ("support", "info_request"),
        ("system", "no_response"),
    ]
    assert len({e.dedupe_key for e in world.dispute_thread}) == len(world.dispute_thread)


async def test_bad_input_and_late_messages_are_refused(time_skipping_env: WorkflowEnvironment) -> None:
    world = FakeWorld()
    async with dispute(time_skipping_env, world) as handle:
        for bad in (DisputeMessageIn("x", "stranger", "hi"), DisputeMessageIn("buyer-1", "buyer", "  ")):
            with pytest.raises(WorkflowUpdateFailedError) as failure:
                await handle.execute_update(DisputeWorkflow.add_message, bad)
            assert isinstance(failure.value.cause, ApplicationError)
            assert failure.value.cause.type == "InvalidRequest"
        await handle.signal(DisputeWorkflow.resolved, Resolution(DisputeResolution.RELEASE))
        await handle.result()
    assert world.dispute_thread == []
