"""The return workflow (type `Return`) under test: returns asked for as the API asks (update-with-start of the
`opened` Update) on a worker of their own running `FakeWorld`'s activities (its `returns`, tests/support/
return_fakes.py), the actors' moves, and what its saved moves and history say.

Used by tests/workflows/test_return_workflow.py and by tests/workflows/record_histories.py.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from temporalio.client import (
    WithStartWorkflowOperation,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowHistory,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from temporalio.workflow import UpdateMethodMultiParam

from bazaar.orders.types import Actor
from bazaar.returns.models import ReturnReason
from bazaar.returns.types import ReturnedLine, ReturnRequest, ReturnTerms, ReturnView, StartReturn
from bazaar.temporal import return_workflow_id
from tests.support.orders import BUYER, SELLER, refusal
from tests.support.return_fakes import FakeReturns
from tests.support.temporal import query_when
from tests.support.workflow_fakes import FakeListing, FakeWorld
from workflows.returns import ReturnWorkflow

DAY = 24 * 3600
# The settings' defaults: the seller answers within 3 days, the buyer ships within 14, the seller confirms within 21.
TERMS = ReturnTerms(response_seconds=3 * DAY, ship_seconds=14 * DAY, receipt_seconds=21 * DAY)
# Two of the order's pumps go back: the return's amount is theirs, not the order's.
RETURNED = [ReturnedLine("listing-pump", 2)]
PUMP = 2_000
AMOUNT = 2 * PUMP
TRACKING = {"carrier": "DHL", "tracking_number": "RT123"}
Move = UpdateMethodMultiParam[[ReturnWorkflow, ReturnRequest], ReturnView]


def returns_world(*, refusal: str | None = None, refuse_refunds: int = 0, **knobs: Any) -> FakeWorld:
    """A world whose order sold the seller's road bike and pumps (the return's prices): `refusal` refuses the
    return at its opening, `refuse_refunds` has the order refuse that many refunds; `knobs` are the world's."""
    returns = FakeReturns(
        prices={"listing-1": 45_000, "listing-pump": PUMP}, refusal=refusal, refuse_refunds=refuse_refunds
    )
    return FakeWorld(
        listings={"listing-pump": FakeListing(SELLER.user_id, "Pump", stock=0)}, returns=returns, **knobs
    )


@dataclass
class Return:
    handle: WorkflowHandle[ReturnWorkflow, ReturnView]
    id: str
    order_id: str
    world: FakeWorld
    opened: ReturnView  # the `opened` Update's answer (the API's 201, or its refusal)

    async def act(self, update: Move, actor: Actor, **fields: Any) -> ReturnView:
        return await self.handle.execute_update(update, ReturnRequest(actor, **fields))

    async def refused(self, update: Move, actor: Actor, **fields: Any) -> str:
        """The ApplicationError type the Update was refused with."""
        return await refusal(self.act(update, actor, **fields))

    async def state(self) -> ReturnView:
        return await self.handle.query(ReturnWorkflow.state)

    async def state_when(self, check: Callable[[ReturnView], bool], seconds: float = 15) -> ReturnView:
        """Poll the `state` query until `check` holds."""
        return await query_when(self.handle, ReturnWorkflow.state, check, seconds)

    async def result(self) -> ReturnView:
        return await self.handle.result()


def start_return(return_id: str, order_id: str, terms: ReturnTerms, lines: list[ReturnedLine]) -> StartReturn:
    return StartReturn(
        return_id=return_id,
        order_id=order_id,
        buyer_id=BUYER.user_id,
        lines=list(lines),
        reason=ReturnReason.DAMAGED,
        message="the valve is broken",
        photos=["https://img.example/valve.jpg"],
        idempotency_key="client-key",
        window_seconds=30 * DAY,
        terms=terms,
    )


async def open_return(
    env: WorkflowEnvironment, queue: str, request: StartReturn
) -> tuple[ReturnView, WorkflowHandle[ReturnWorkflow, ReturnView]]:
    """Ask for the return as the API does: update-with-start of `opened` (its answer, and the return's handle)."""
    start = WithStartWorkflowOperation(
        ReturnWorkflow.run,
        request,
        id=return_workflow_id(request.return_id),
        task_queue=queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
        static_summary=f"return of order {request.order_id}",
    )
    opened = await env.client.execute_update_with_start_workflow(
        ReturnWorkflow.opened, start_workflow_operation=start, id="opened"
    )
    return opened, await start.workflow_handle()


@asynccontextmanager
async def returned(
    env: WorkflowEnvironment,
    world: FakeWorld,
    *,
    terms: ReturnTerms = TERMS,
    lines: list[ReturnedLine] = RETURNED,
    order_id: str | None = None,
    activities: list[Callable[..., Any]] | None = None,
) -> AsyncIterator[Return]:
    """A return asked for as the API asks, on a worker of its own running the world's activities (or
    `activities`). A return still running when the test ends is terminated (a timer left on a queue nobody polls
    must not hold the time-skipping server's clock)."""
    queue = f"test-{uuid.uuid4()}"
    request = start_return(str(uuid.uuid4()), order_id or str(uuid.uuid4()), terms, lines)
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[ReturnWorkflow],
        activities=activities if activities is not None else world.activities(),
    ):
        opened, handle = await open_return(env, queue, request)
        try:
            yield Return(handle, request.return_id, request.order_id, world, opened)
        finally:
            if (await handle.describe()).status == WorkflowExecutionStatus.RUNNING:
                await handle.terminate("the test is over")


def moves(world: FakeWorld) -> list[tuple[Any, ...]]:
    """What each saved move says: seq, status, reason, actor, role, timeline action, who is told, template."""
    return [
        (m.seq, m.status, m.status_reason, m.actor_id, m.actor_role, m.action, m.notify, m.event_type)
        for m in world.returns.moves
    ]


def steps(history: WorkflowHistory) -> tuple[list[str], list[str]]:
    """The local activities a run ran (their markers) and the activities it scheduled, in order."""
    local, scheduled = [], []
    for event in history.events:
        if event.HasField("marker_recorded_event_attributes"):
            marker = event.marker_recorded_event_attributes
            if marker.marker_name == "core_local_activity":
                [payload] = marker.details["data"].payloads
                local.append(json.loads(payload.data)["activity_type"])
        if event.HasField("activity_task_scheduled_event_attributes"):
            scheduled.append(event.activity_task_scheduled_event_attributes.activity_type.name)
    return local, scheduled
