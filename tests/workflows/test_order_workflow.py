"""The order state machine: every allowed and forbidden transition, each actor rule, each timer.

Runs on a Temporal dev server (the time-skipping server rejects our custom search attributes), so the
timer tests use one-second deadlines instead of skipping time.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from temporalio.client import Client, WorkflowHandle, WorkflowHistory, WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from temporalio.workflow import UpdateMethodMultiParam

from tests.workflows.fakes import FakeWorld
from worker import WORKFLOWS
from workflows.order import ORDER_STATUS, ActionRequest, Actor, OrderView, OrderWorkflow, PlaceOrder

BUYER, SELLER, SUPPORT, STRANGER = Actor("buyer-1"), Actor("seller-1"), Actor("staff-1", True), Actor("x-1")
AMOUNT, FEE = 45_000, 4_530  # 10 % + 0.30 EUR
Action = UpdateMethodMultiParam[[OrderWorkflow, ActionRequest], OrderView]


@dataclass
class Order:
    handle: WorkflowHandle[OrderWorkflow, OrderView]
    id: str
    queue: str = ""
    client: Client | None = None  # to start a reopened run of the same order

    async def act(self, update: Action, request: ActionRequest) -> OrderView:
        return await self.handle.execute_update(update, request)

    async def refused(self, update: Action, request: ActionRequest) -> str:
        with pytest.raises(WorkflowUpdateFailedError) as failure:
            await self.act(update, request)
        cause = failure.value.cause
        assert isinstance(cause, ApplicationError)
        return str(cause.type)

    async def result(self) -> OrderView:
        return await self.handle.result()


@asynccontextmanager
async def placed(env: WorkflowEnvironment, world: FakeWorld, **terms: Any) -> AsyncIterator[Order]:
    queue = f"test-{uuid.uuid4()}"
    order_id = str(uuid.uuid4())
    # Every workflow type: the order starts notification, review and dispute children on its queue.
    async with Worker(env.client, task_queue=queue, workflows=WORKFLOWS, activities=world.activities()):
        handle = await env.client.start_workflow(
            OrderWorkflow.run,
            PlaceOrder(
                order_id=order_id,
                buyer_id=BUYER.user_id,
                listing_id="listing-1",
                quantity=1,
                payment_method="pm_card_visa",
                idempotency_key="client-key",
                **terms,
            ),
            id=f"order-{order_id}",
            task_queue=queue,
        )
        await handle.execute_update(OrderWorkflow.placement)
        yield Order(handle, order_id, queue, env.client)


async def run_to_end(env: WorkflowEnvironment, world: FakeWorld) -> tuple[OrderView, WorkflowHistory]:
    """Place an order and drive it to an end (used for the slice tests and to record replay histories)."""
    async with placed(env, world) as order:
        view = await order.handle.query(OrderWorkflow.state)
        assert view is not None
        if view.status == "paid":
            await order.act(OrderWorkflow.accept, ActionRequest(SELLER))
            await order.act(OrderWorkflow.fulfil, ActionRequest(SELLER, tracking={"carrier": "DHL"}))
            await order.act(OrderWorkflow.confirm_receipt, ActionRequest(BUYER))
        result = await order.result()
        described = await order.handle.describe()
        if result.status != "rejected":
            assert described.typed_search_attributes.get(ORDER_STATUS) == result.status
        return result, await order.handle.fetch_history()


async def test_happy_path_releases_escrow_minus_fee(workflow_env: WorkflowEnvironment) -> None:
    world = FakeWorld(stock=2)
    async with placed(workflow_env, world) as order:
        assert (await order.act(OrderWorkflow.accept, ActionRequest(SELLER))).status == "confirmed"
        shipped = await order.act(
            OrderWorkflow.fulfil, ActionRequest(SELLER, tracking={"carrier": "DHL", "tracking_number": "42"})
        )
        assert (shipped.status, shipped.tracking) == (
            "fulfilled",
            {"carrier": "DHL", "tracking_number": "42"},
        )
        done = await order.act(OrderWorkflow.confirm_receipt, ActionRequest(BUYER))
        assert (done.status, done.reason, done.payment_state) == ("completed", "buyer_confirmed", "released")
        assert done.platform_fee == FEE
        assert (await order.result()).status == "completed"
    assert [c.idempotency_key for c in world.charges] == [f"{order.id}:charge:1"]
    assert world.charges[0].transfer_group == f"order-{order.id}"
    assert [(r.gross, r.fee, r.txn) for r in world.escrow_releases] == [
        (AMOUNT, FEE, f"{order.id}:release:1")
    ]
    assert [(t.amount, t.idempotency_key, t.transfer_group) for t in world.transfers] == [
        (AMOUNT - FEE, f"{order.id}:transfer:1", f"order-{order.id}")
    ]
    assert world.refunds == []
    assert [s.status for s in world.states] == ["paid", "confirmed", "fulfilled", "completed"]
    assert [s.seq for s in world.states] == [2, 3, 4, 5]
    assert world.states[-1].tracking == {"carrier": "DHL", "tracking_number": "42"}


async def test_declined_card_cancels_and_releases_stock(workflow_env: WorkflowEnvironment) -> None:
    world = FakeWorld(decline=True)
    view, _ = await run_to_end(workflow_env, world)
    assert (view.status, view.reason, view.payment_state) == ("cancelled", "payment_failed", "failed")
    assert world.released == [view.order_id]
    assert world.refunds == []


async def test_sold_out_is_rejected_without_charging(workflow_env: WorkflowEnvironment) -> None:
    world = FakeWorld(stock=0)
    view, _ = await run_to_end(workflow_env, world)
    assert (view.status, view.reason) == ("rejected", "sold_out")
    assert world.charges == []


@pytest.mark.parametrize(
    ("action", "actor", "reason"),
    [
        ("decline", SELLER, "seller_declined"),
        ("cancel", BUYER, "buyer_cancelled"),
        ("cancel", SUPPORT, "support_cancelled"),
    ],
)
async def test_cancel_after_payment_refunds_in_full(
    workflow_env: WorkflowEnvironment, action: str, actor: Actor, reason: str
) -> None:
    world = FakeWorld()
    async with placed(workflow_env, world) as order:
        view = await order.act(getattr(OrderWorkflow, action), ActionRequest(actor))
        assert (view.status, view.reason, view.payment_state) == ("cancelled", reason, "refunded")
        assert view.refunded_amount == AMOUNT
    assert [(r.amount, r.idempotency_key) for r in world.refunds] == [(AMOUNT, f"{order.id}:refund:1")]
    assert world.released == [order.id]
    assert world.transfers == []


async def test_seller_cancels_after_accepting(workflow_env: WorkflowEnvironment) -> None:
    world = FakeWorld()
    async with placed(workflow_env, world) as order:
        await order.act(OrderWorkflow.accept, ActionRequest(SELLER))
        assert await order.refused(OrderWorkflow.cancel, ActionRequest(BUYER)) == "Forbidden"
        view = await order.act(OrderWorkflow.cancel, ActionRequest(SELLER))
        assert (view.status, view.reason) == ("cancelled", "seller_cancelled")
    assert len(world.refunds) == 1
    assert world.released == [order.id]


async def test_wrong_actors_are_forbidden(workflow_env: WorkflowEnvironment) -> None:
    async with placed(workflow_env, FakeWorld()) as order:
        for update, actor in [
            (OrderWorkflow.accept, BUYER),
            (OrderWorkflow.accept, STRANGER),
            (OrderWorkflow.accept, SUPPORT),
            (OrderWorkflow.decline, BUYER),
            (OrderWorkflow.cancel, STRANGER),
            (OrderWorkflow.fulfil, BUYER),
            (OrderWorkflow.confirm_receipt, SELLER),
            (OrderWorkflow.open_dispute, SELLER),
        ]:
            assert await order.refused(update, ActionRequest(actor)) == "Forbidden", (update, actor)
        assert (
            await order.refused(OrderWorkflow.resolve_dispute, ActionRequest(BUYER, resolution="refund"))
            == "Forbidden"
        )
        # Nothing moved.
        state = await order.handle.query(OrderWorkflow.state)
        assert state is not None
        assert state.status == "paid"


async def test_transitions_not_allowed_now_are_refused(workflow_env: WorkflowEnvironment) -> None:
    async with placed(workflow_env, FakeWorld()) as order:
        assert await order.refused(OrderWorkflow.fulfil, ActionRequest(SELLER)) == "InvalidTransition"
        assert await order.refused(OrderWorkflow.confirm_receipt, ActionRequest(BUYER)) == "InvalidTransition"
        assert await order.refused(OrderWorkflow.open_dispute, ActionRequest(BUYER)) == "InvalidTransition"
        await order.act(OrderWorkflow.accept, ActionRequest(SELLER))
        assert await order.refused(OrderWorkflow.accept, ActionRequest(SELLER)) == "InvalidTransition"
        assert await order.refused(OrderWorkflow.decline, ActionRequest(SELLER)) == "InvalidTransition"
        await order.act(OrderWorkflow.fulfil, ActionRequest(SELLER))
        assert await order.refused(OrderWorkflow.cancel, ActionRequest(SELLER)) == "InvalidTransition"
        assert (
            await order.refused(OrderWorkflow.resolve_dispute, ActionRequest(SUPPORT, resolution="release"))
            == "InvalidTransition"
        )


async def test_acceptance_deadline_cancels_with_refund(workflow_env: WorkflowEnvironment) -> None:
    world = FakeWorld()
    async with placed(workflow_env, world, acceptance_timeout_seconds=1) as order:
        view = await order.result()
    assert (view.status, view.reason, view.payment_state) == ("cancelled", "acceptance_timeout", "refunded")
    assert [r.amount for r in world.refunds] == [AMOUNT]
    assert world.released == [order.id]


async def test_dispute_window_passing_completes(workflow_env: WorkflowEnvironment) -> None:
    world = FakeWorld()
    async with placed(workflow_env, world, dispute_window_seconds=1) as order:
        await order.act(OrderWorkflow.accept, ActionRequest(SELLER))
        await order.act(OrderWorkflow.fulfil, ActionRequest(SELLER))
        view = await order.result()
    assert (view.status, view.reason) == ("completed", "dispute_window_passed")
    assert [t.amount for t in world.transfers] == [AMOUNT - FEE]


@pytest.mark.parametrize(
    ("resolution", "refund", "status", "refunds", "transfers"),
    [
        ("release", None, "completed", [], [AMOUNT - FEE]),
        ("refund", None, "refunded", [AMOUNT], []),
        ("partial_refund", 10_000, "completed", [10_000], [35_000 - 3_530]),
    ],
)
async def test_dispute_resolutions(
    workflow_env: WorkflowEnvironment,
    resolution: str,
    refund: int | None,
    status: str,
    refunds: list[int],
    transfers: list[int],
) -> None:
    world = FakeWorld()
    async with placed(workflow_env, world, dispute_window_seconds=3600) as order:
        await order.act(OrderWorkflow.accept, ActionRequest(SELLER))
        await order.act(OrderWorkflow.fulfil, ActionRequest(SELLER))
        disputed = await order.act(
            OrderWorkflow.open_dispute, ActionRequest(BUYER, reason="not as described")
        )
        assert (disputed.status, disputed.payment_state) == ("disputed", "frozen")
        assert await order.refused(OrderWorkflow.confirm_receipt, ActionRequest(BUYER)) == "InvalidTransition"
        view = await order.act(
            OrderWorkflow.resolve_dispute, ActionRequest(SUPPORT, resolution=resolution, refund_amount=refund)
        )
        assert view.status == status
    assert [r.amount for r in world.refunds] == refunds
    assert [t.amount for t in world.transfers] == transfers
    assert world.released == []  # shipped goods: stock is not restocked by a dispute


async def test_bad_resolutions_are_invalid_requests(workflow_env: WorkflowEnvironment) -> None:
    async with placed(workflow_env, FakeWorld(), dispute_window_seconds=3600) as order:
        await order.act(OrderWorkflow.accept, ActionRequest(SELLER))
        await order.act(OrderWorkflow.fulfil, ActionRequest(SELLER))
        await order.act(OrderWorkflow.open_dispute, ActionRequest(BUYER))
        for request in (
            ActionRequest(SUPPORT, resolution="split"),
            ActionRequest(SUPPORT, resolution="partial_refund"),
            ActionRequest(SUPPORT, resolution="partial_refund", refund_amount=AMOUNT),
        ):
            assert await order.refused(OrderWorkflow.resolve_dispute, request) == "InvalidRequest"
        state = await order.handle.query(OrderWorkflow.state)
        assert state is not None
        assert state.status == "disputed"
