"""The order workflow (type `Order`) under test: orders placed as the API places them (update-with-start of
the `placement` Update) on a worker of their own running `FakeWorld`'s activities, the actors, and what the
webhook endpoint sends them (chargeback notices; a completed order reopened by signal-with-start).

Used by the workflow tests in tests/workflows/ and by tests/workflows/record_histories.py.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Set
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowHandle,
    WorkflowHistory,
    WorkflowUpdateFailedError,
    WorkflowUpdateHandle,
    WorkflowUpdateStage,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from temporalio.workflow import UpdateMethodMultiParam

from activities.orders import OrderTransition
from bazaar.orders.types import (
    NEEDS_ATTENTION,
    ORDER_STATUS,
    PAYOUT_OUTCOMES,
    ActionRequest,
    Actor,
    ChargebackNotice,
    OrderView,
    Placement,
    PlaceOrder,
    initial_search_attributes,
)
from bazaar.temporal import order_workflow_id
from tests.support.temporal import query_when
from tests.support.workflow_fakes import FakeWorld, activity_name
from worker import WORKFLOWS
from workflows.order import OrderWorkflow

BUYER, SELLER, SUPPORT, STRANGER = Actor("buyer-1"), Actor("seller-1"), Actor("staff-1", True), Actor("x-1")
AMOUNT, FEE = 45_000, 4_530  # 10 % + 0.30 EUR
PLACEMENT = Placement("listing-1", 1, "pm_card_visa")
Action = UpdateMethodMultiParam[[OrderWorkflow, ActionRequest], OrderView]


@dataclass
class Order:
    handle: WorkflowHandle[OrderWorkflow, OrderView]
    id: str
    queue: str = ""
    client: Client | None = None  # to start a reopened run of the same order
    world: FakeWorld = field(default_factory=FakeWorld)
    placed: OrderView | None = None  # the `placement` Update's answer

    async def act(self, update: Action, request: ActionRequest) -> OrderView:
        return await self.handle.execute_update(update, request)

    async def refused(self, update: Action, request: ActionRequest) -> str:
        return await refusal(self.act(update, request))

    async def start(self, update: Action, request: ActionRequest) -> WorkflowUpdateHandle[OrderView]:
        """Send an Update without waiting for its outcome (it was accepted by its validator)."""
        return await self.handle.start_update(update, request, wait_for_stage=WorkflowUpdateStage.ACCEPTED)

    async def state(self) -> OrderView:
        view = await self.handle.query(OrderWorkflow.state)
        assert view is not None
        return view

    async def state_when(self, check: Callable[[OrderView], bool], seconds: float = 15) -> OrderView:
        """Poll the `state` query until `check` holds."""
        return await query_when(self.handle, OrderWorkflow.state, check, seconds)

    async def result(self) -> OrderView:
        return await self.handle.result()

    async def paid_out(self, completions: int = 1) -> OrderView:
        """The order once the transfer after its `completions`-th release has an outcome (it follows the Update
        that released it): sent, refused (transfer_failed) or held (payout_on_hold)."""
        await self.world.eventually(lambda: len(payout_outcomes(self.world)) >= completions)
        outcome = payout_outcomes(self.world)[completions - 1]
        return await self.state_when(lambda view: view.payment_state == outcome.payment_state)


def payout_outcomes(world: FakeWorld) -> list[OrderTransition]:
    """The transitions that told how a transfer after a release went, in order."""
    return [t for t in world.transitions() if t.action in PAYOUT_OUTCOMES.values()]


async def refusal(call: Any) -> str:
    """The ApplicationError type an Update was refused with."""
    with pytest.raises(WorkflowUpdateFailedError) as failure:
        await call
    cause = failure.value.cause
    assert isinstance(cause, ApplicationError)
    return str(cause.type)


def place_order(order_id: str, **terms: Any) -> PlaceOrder:
    return PlaceOrder(
        order_id=order_id,
        buyer_id=BUYER.user_id,
        listing_id="listing-1",
        quantity=1,
        payment_method="pm_card_visa",
        idempotency_key="client-key",
        **terms,
    )


@asynccontextmanager
async def placed(
    env: WorkflowEnvironment, world: FakeWorld, *, without_activities: Set[str] = frozenset(), **terms: Any
) -> AsyncIterator[Order]:
    """An order placed as the API places it (update-with-start), on a worker of its own (registering the
    fake activities but `without_activities`)."""
    queue = f"test-{uuid.uuid4()}"
    order_id = str(uuid.uuid4())
    request = place_order(order_id, **terms)
    activities = [a for a in world.activities() if activity_name(a) not in without_activities]
    # Every workflow type: the order starts dispute cases on its queue (which start notifications).
    async with Worker(env.client, task_queue=queue, workflows=WORKFLOWS, activities=activities):
        start = WithStartWorkflowOperation(
            OrderWorkflow.run,
            request,
            id=order_workflow_id(order_id),
            task_queue=queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=initial_search_attributes(request),
        )
        view = await env.client.execute_update_with_start_workflow(
            OrderWorkflow.placement, PLACEMENT, start_workflow_operation=start
        )
        handle = await start.workflow_handle()
        yield Order(handle, order_id, queue, env.client, world, view)


@asynccontextmanager
async def unplaced(env: WorkflowEnvironment, world: FakeWorld, **terms: Any) -> AsyncIterator[Order]:
    """An order started without waiting for its placement (the API gave up waiting: the charge is slow)."""
    queue = f"test-{uuid.uuid4()}"
    order_id = str(uuid.uuid4())
    request = place_order(order_id, **terms)
    async with Worker(env.client, task_queue=queue, workflows=WORKFLOWS, activities=world.activities()):
        handle = await env.client.start_workflow(
            OrderWorkflow.run,
            request,
            id=order_workflow_id(order_id),
            task_queue=queue,
            search_attributes=initial_search_attributes(request),
        )
        yield Order(handle, order_id, queue, env.client, world)


async def run_to_end(env: WorkflowEnvironment, world: FakeWorld) -> tuple[OrderView, WorkflowHistory]:
    """Place an order and drive it to an end (used for the slice tests and to record replay histories)."""
    async with placed(env, world) as order:
        view = await order.state()
        if view.status == "paid":
            await order.act(OrderWorkflow.accept, ActionRequest(SELLER))
            await order.act(OrderWorkflow.fulfil, ActionRequest(SELLER, tracking={"carrier": "DHL"}))
            await order.act(OrderWorkflow.confirm_receipt, ActionRequest(BUYER))
        result = await order.result()
        described = await order.handle.describe()
        assert described.typed_search_attributes.get(ORDER_STATUS) == result.status
        assert described.typed_search_attributes.get(NEEDS_ATTENTION) is False
        return result, await order.handle.fetch_history()


def notice(status: str = "needs_response", dispute: str = "dp_1", amount: int = AMOUNT) -> ChargebackNotice:
    return ChargebackNotice(dispute_id=dispute, status=status, amount=amount, currency="EUR")


async def state_when(order: Order, check: Callable[[OrderView], bool]) -> OrderView:
    """Poll the `state` query until `check` holds (signals are fire-and-forget), for up to 10 s."""
    return await order.state_when(check, 10)


async def completed(order: Order) -> OrderView:
    """Accepted, shipped and confirmed: the order once the seller's transfer has an outcome."""
    await order.act(OrderWorkflow.accept, ActionRequest(SELLER))
    await order.act(OrderWorkflow.fulfil, ActionRequest(SELLER))
    await order.act(OrderWorkflow.confirm_receipt, ActionRequest(BUYER))
    return await order.paid_out()


async def reopened(client: Client, order: Order, chargeback: ChargebackNotice) -> Order:
    """What the webhook does for a chargeback on a completed order: signal-with-start a reopened run."""
    handle: WorkflowHandle[OrderWorkflow, OrderView] = await client.start_workflow(
        OrderWorkflow.run,
        PlaceOrder(
            order_id=order.id,
            buyer_id=BUYER.user_id,
            listing_id="listing-1",
            quantity=1,
            payment_method="",
            idempotency_key="client-key",
            reopen=True,
        ),
        id=order_workflow_id(order.id),
        task_queue=order.queue,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        start_signal="chargeback",
        start_signal_args=[chargeback],
    )
    return Order(handle, order.id, order.queue, client, order.world)
