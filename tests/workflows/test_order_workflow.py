"""The order workflow's slice: reservation, charge with a derived idempotency key, paid or cancelled."""

from __future__ import annotations

import uuid

from temporalio.client import WorkflowHistory
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from tests.workflows.fakes import FakeWorld
from workflows.order import ORDER_STATUS, OrderView, OrderWorkflow, PlaceOrder


async def place(env: WorkflowEnvironment, world: FakeWorld, quantity: int = 1) -> tuple[OrderView, WorkflowHistory]:
    queue = f"test-{uuid.uuid4()}"
    order_id = str(uuid.uuid4())
    async with Worker(env.client, task_queue=queue, workflows=[OrderWorkflow], activities=world.activities()):
        handle = await env.client.start_workflow(
            OrderWorkflow.run,
            PlaceOrder(order_id=order_id, buyer_id="buyer-1", listing_id="listing-1", quantity=quantity,
                       payment_method="pm_card_visa", idempotency_key="client-key"),
            id=f"order-{order_id}", task_queue=queue,
        )
        placed = await handle.execute_update(OrderWorkflow.placement)
        result = await handle.result()
        assert placed == result
        described = await handle.describe()
        if result.status != "rejected":
            assert described.typed_search_attributes.get(ORDER_STATUS) == result.status
        return result, await handle.fetch_history()


async def test_paid(workflow_env: WorkflowEnvironment) -> None:
    world = FakeWorld(stock=2)
    view, _ = await place(workflow_env, world)
    assert view.status == "paid"
    assert view.payment_state == "held_in_escrow"
    assert view.payment_intent_id == "pi_fake"
    assert [c.idempotency_key for c in world.charges] == [f"{view.order_id}:charge:1"]
    assert world.charges[0].transfer_group == f"order-{view.order_id}"
    assert [s.status for s in world.states] == ["pending", "paid"]
    assert [s.seq for s in world.states] == [2, 3]
    assert world.released == []


async def test_declined_card_cancels_and_releases_stock(workflow_env: WorkflowEnvironment) -> None:
    world = FakeWorld(decline=True)
    view, _ = await place(workflow_env, world)
    assert (view.status, view.reason, view.payment_state) == ("cancelled", "payment_failed", "failed")
    assert world.released == [view.order_id]


async def test_sold_out_is_rejected_without_charging(workflow_env: WorkflowEnvironment) -> None:
    world = FakeWorld(stock=0)
    view, _ = await place(workflow_env, world)
    assert (view.status, view.reason) == ("rejected", "sold_out")
    assert world.charges == []
