"""The order state machine (type `Order`): every allowed and forbidden transition, each actor rule, each
timer, and the failure rule (refusals compensated, transient failures past their bound flagged for support).

Runs on a Temporal dev server (the time-skipping server rejects our custom search attributes), so the
timer tests use one-second deadlines instead of skipping time. Orders are started like the API does:
update-with-start of the `placement` Update.
"""

from __future__ import annotations

import asyncio
import time
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
from temporalio.common import WorkflowIDConflictPolicy
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker
from temporalio.workflow import UpdateMethodMultiParam

from bazaar.orders.types import (
    NEEDS_ATTENTION,
    ORDER_STATUS,
    ActionRequest,
    Actor,
    OrderView,
    Placement,
    PlaceOrder,
    initial_search_attributes,
    order_workflow_id,
)
from tests.workflows.fakes import FakeWorld, activity_name, child_workflow_types
from worker import WORKFLOWS
from workflows.order import OrderWorkflow

BUYER, SELLER, SUPPORT, STRANGER = Actor("buyer-1"), Actor("seller-1"), Actor("staff-1", True), Actor("x-1")
AMOUNT, FEE = 45_000, 4_530  # 10 % + 0.30 EUR
PLACEMENT = Placement("listing-1", 1, "pm_card_visa")
DATABASE_STEPS = frozenset(
    {
        "reserve_stock",
        "save_transition",
        "release_escrow",
        "reverse_release",
        "record_chargeback",
        "load_order",
    }
)
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
        deadline = time.monotonic() + seconds
        while True:
            view = await self.handle.query(OrderWorkflow.state)  # None while a reopened run loads
            if (view is not None and check(view)) or time.monotonic() > deadline:
                assert view is not None and check(view), view
                return view
            await asyncio.sleep(0.05)

    async def result(self) -> OrderView:
        return await self.handle.result()


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


# ---- the state machine ----------------------------------------------------------------------------------


async def test_happy_path_releases_escrow_minus_fee(workflow_env: WorkflowEnvironment) -> None:
    world = FakeWorld(stock=2)
    async with placed(workflow_env, world) as order:
        assert order.placed is not None
        assert (order.placed.status, order.placed.payment_state) == ("paid", "held_in_escrow")
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
    [reservation] = world.reservations
    assert (reservation.payment_method, reservation.idempotency_key, reservation.workflow_id) == (
        "pm_card_visa",
        "client-key",
        f"order-{order.id}",
    )
    assert [c.idempotency_key for c in world.charges] == [f"{order.id}:charge:1"]
    assert world.charges[0].transfer_group == f"order-{order.id}"
    assert [(r.gross, r.fee, r.txn) for r in world.escrow_releases] == [
        (AMOUNT, FEE, f"{order.id}:release:1")
    ]
    assert [(t.amount, t.idempotency_key, t.transfer_group) for t in world.transfers] == [
        (AMOUNT - FEE, f"{order.id}:transfer:1", f"order-{order.id}")
    ]
    assert world.refunds == []
    # One save_transition per transition (the reservation wrote state 1).
    assert [(s.status, s.action) for s in world.transitions()] == [
        ("paid", "order.paid"),
        ("confirmed", "order.accepted"),
        ("fulfilled", "order.fulfilled"),
        ("completed", "order.completed"),
    ]
    assert [s.seq for s in world.states] == [2, 3, 4, 5]
    assert [(s.actor_id, s.actor_role) for s in world.states] == [
        (None, "system"),
        (SELLER.user_id, "seller"),
        (SELLER.user_id, "seller"),
        (BUYER.user_id, "buyer"),
    ]
    assert world.states[-1].tracking == {"carrier": "DHL", "tracking_number": "42"}
    assert not any(s.release_stock for s in world.transitions())
    assert world.stock == 1  # sold: the stock stays taken


async def test_declined_card_cancels_and_releases_stock(workflow_env: WorkflowEnvironment) -> None:
    world = FakeWorld(decline=True)
    view, _ = await run_to_end(workflow_env, world)
    assert (view.status, view.reason, view.payment_state) == ("cancelled", "payment_failed", "failed")
    [cancelled] = world.transitions()
    assert (cancelled.action, cancelled.release_stock) == ("order.payment_failed", True)
    assert world.released == [view.order_id]
    assert world.stock == 1
    assert world.refunds == []


async def test_sold_out_is_rejected_without_charging(workflow_env: WorkflowEnvironment) -> None:
    world = FakeWorld(stock=0)
    view, _ = await run_to_end(workflow_env, world)
    assert (view.status, view.reason, view.allowed_actions) == ("rejected", "sold_out", [])
    assert world.charges == []
    assert world.states == []


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
    assert [(s.status, s.reason, s.release_stock) for s in world.transitions()][-1] == (
        "cancelled",
        reason,
        True,
    )
    assert world.released == [order.id]
    assert world.transfers == []


async def test_seller_cancels_after_accepting(workflow_env: WorkflowEnvironment) -> None:
    world = FakeWorld()
    async with placed(workflow_env, world) as order:
        await order.act(OrderWorkflow.accept, ActionRequest(SELLER))
        # The buyer may cancel, just no longer now: a state refusal (409), not Forbidden.
        assert await order.refused(OrderWorkflow.cancel, ActionRequest(BUYER)) == "InvalidTransition"
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
            (OrderWorkflow.retry, SELLER),
            (OrderWorkflow.retry_transfer, BUYER),
        ]:
            assert await order.refused(update, ActionRequest(actor)) == "Forbidden", (update, actor)
        assert (
            await order.refused(OrderWorkflow.resolve_dispute, ActionRequest(BUYER, resolution="refund"))
            == "Forbidden"
        )
        # Nothing moved.
        assert (await order.state()).status == "paid"


async def test_transitions_not_allowed_now_are_refused(workflow_env: WorkflowEnvironment) -> None:
    async with placed(workflow_env, FakeWorld()) as order:
        assert await order.refused(OrderWorkflow.fulfil, ActionRequest(SELLER)) == "InvalidTransition"
        assert await order.refused(OrderWorkflow.confirm_receipt, ActionRequest(BUYER)) == "InvalidTransition"
        assert await order.refused(OrderWorkflow.open_dispute, ActionRequest(BUYER)) == "InvalidTransition"
        # Nothing is stuck: support has nothing to retry.
        assert await order.refused(OrderWorkflow.retry, ActionRequest(SUPPORT)) == "InvalidTransition"
        await order.act(OrderWorkflow.accept, ActionRequest(SELLER))
        assert await order.refused(OrderWorkflow.accept, ActionRequest(SELLER)) == "InvalidTransition"
        assert await order.refused(OrderWorkflow.decline, ActionRequest(SELLER)) == "InvalidTransition"
        await order.act(OrderWorkflow.fulfil, ActionRequest(SELLER))
        assert await order.refused(OrderWorkflow.cancel, ActionRequest(SELLER)) == "InvalidTransition"
        assert (
            await order.refused(OrderWorkflow.resolve_dispute, ActionRequest(SUPPORT, resolution="release"))
            == "InvalidTransition"
        )
        assert (
            await order.refused(OrderWorkflow.retry_transfer, ActionRequest(SUPPORT)) == "InvalidTransition"
        )


async def test_acceptance_deadline_cancels_with_refund(workflow_env: WorkflowEnvironment) -> None:
    world = FakeWorld()
    async with placed(workflow_env, world, acceptance_timeout_seconds=1) as order:
        view = await order.result()
    assert (view.status, view.reason, view.payment_state) == ("cancelled", "acceptance_timeout", "refunded")
    assert [r.amount for r in world.refunds] == [AMOUNT]
    assert world.released == [order.id]
    assert world.transitions()[-1].actor_role == "system"


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
        assert (await order.state()).status == "disputed"


# ---- placement --------------------------------------------------------------------------------------------


async def test_placement_retried_with_the_same_request_joins_and_a_different_one_is_refused(
    workflow_env: WorkflowEnvironment,
) -> None:
    async with placed(workflow_env, FakeWorld()) as order:
        again = await order.handle.execute_update(OrderWorkflow.placement, PLACEMENT)
        assert again is not None and again.status == "paid"
        for different in (
            Placement("listing-2", 1, "pm_card_visa"),
            Placement("listing-1", 2, "pm_card_visa"),
            Placement("listing-1", 1, "pm_card_mastercard"),
        ):
            assert (
                await refusal(order.handle.execute_update(OrderWorkflow.placement, different))
                == "IdempotencyKeyReused"
            ), different
        assert (await order.state()).status == "paid"


# ---- refusals by the provider: compensated, never retried --------------------------------------------------


async def test_a_refused_charge_cancels_the_order_and_gives_the_stock_back(
    workflow_env: WorkflowEnvironment,
) -> None:
    world = FakeWorld(reject_charge=True)
    async with placed(workflow_env, world) as order:
        assert order.placed is not None
        assert (order.placed.status, order.placed.reason) == ("cancelled", "payment_rejected")
        view = await order.result()  # completes, does not fail
    assert (view.status, view.reason, view.payment_state, view.attention) == (
        "cancelled",
        "payment_rejected",
        "failed",
        None,
    )
    assert world.charges == []  # nothing charged
    assert len(world.rejected_charges) == 1  # and not retried
    [cancelled] = world.transitions()
    assert (cancelled.seq, cancelled.action, cancelled.release_stock) == (2, "order.payment_rejected", True)
    assert world.released == [order.id]
    assert world.stock == 1
    assert world.attention_reports == []


async def test_a_refused_refund_refuses_the_update_and_changes_nothing(
    workflow_env: WorkflowEnvironment,
) -> None:
    world = FakeWorld(reject_refunds=1)
    async with placed(workflow_env, world) as order:
        assert await order.refused(OrderWorkflow.decline, ActionRequest(SELLER)) == "PaymentRejected"
        view = await order.state()
        assert (view.status, view.payment_state, view.refunded_amount, view.attention) == (
            "paid",
            "held_in_escrow",
            0,
            None,
        )
        assert len(world.rejected_refunds) == 1 and world.refunds == []
        assert [s.status for s in world.states] == ["paid"]
        assert world.released == []
        # The provider takes it the next time: the order goes on as usual.
        declined = await order.act(OrderWorkflow.decline, ActionRequest(SELLER))
        assert (declined.status, declined.refunded_amount) == ("cancelled", AMOUNT)
    assert [r.amount for r in world.refunds] == [AMOUNT]
    assert world.released == [order.id]


# ---- the failure rule: transient failures past their bound need attention ----------------------------------


async def test_a_provider_call_failing_past_its_bound_needs_attention_until_support_retries(
    workflow_env: WorkflowEnvironment,
) -> None:
    """The charge keeps failing transiently (the provider is down) past `provider_timeout_seconds`: the
    order stays pending, flagged for support, and is charged once support retries after the provider is
    back, with the same idempotency key."""
    world = FakeWorld()
    world.fail("charge")  # until cleared
    async with unplaced(
        workflow_env, world, provider_timeout_seconds=1, attention_retry_seconds=3600
    ) as order:
        stuck = await order.state_when(lambda v: v.attention is not None)
        assert stuck.attention is not None and stuck.attention.startswith("charge: ")
        assert (stuck.status, stuck.allowed_actions) == ("pending", ["cancel", "retry"])
        described = await order.handle.describe()
        assert described.typed_search_attributes.get(NEEDS_ATTENTION) is True
        assert await described.memo_value("attention") == stuck.attention
        await world.eventually(lambda: bool(world.attention_reports))
        [report] = world.attention_reports
        assert (report.order_id, report.step, report.occurrence) == (order.id, "charge", 1)
        # Actors are told at once instead of waiting behind the stuck step.
        for update in (OrderWorkflow.accept, OrderWorkflow.decline, OrderWorkflow.fulfil):
            assert await order.refused(update, ActionRequest(SELLER)) == "NeedsAttention", update
        assert await order.refused(OrderWorkflow.open_dispute, ActionRequest(BUYER)) == "NeedsAttention"
        assert await order.refused(OrderWorkflow.retry, ActionRequest(SELLER)) == "Forbidden"
        # Still failing: support's retry runs the step once more and answers with the order still stuck.
        again = await order.act(OrderWorkflow.retry, ActionRequest(SUPPORT))
        assert again.attention is not None and again.status == "pending"
        # The provider is back: support's retry moves the order on and clears the flag.
        world.clear()
        retried = await order.act(OrderWorkflow.retry, ActionRequest(SUPPORT))
        assert retried.attention is None
        placed_view = await order.handle.execute_update(OrderWorkflow.placement, PLACEMENT)
        assert placed_view is not None
        assert (placed_view.status, placed_view.attention) == ("paid", None)
        assert "retry" not in placed_view.allowed_actions
        described = await order.handle.describe()
        assert described.typed_search_attributes.get(NEEDS_ATTENTION) is False
        assert await described.memo_value("attention", default=None) is None
        assert (await order.act(OrderWorkflow.accept, ActionRequest(SELLER))).status == "confirmed"
    # Every attempt carried the same idempotency key: the provider charges once.
    assert [c.idempotency_key for c in world.charges] == [f"{order.id}:charge:1"]
    assert world.failures.count("charge") >= 2
    assert [s.status for s in world.states] == ["paid", "confirmed"]
    assert len(world.attention_reports) == 1  # one occurrence, reported once


async def test_a_stuck_step_is_retried_on_its_own(workflow_env: WorkflowEnvironment) -> None:
    world = FakeWorld()
    world.fail("charge")
    async with unplaced(workflow_env, world, provider_timeout_seconds=1, attention_retry_seconds=1) as order:
        await order.state_when(lambda v: v.attention is not None)
        world.clear()
        placed_view = await order.handle.execute_update(OrderWorkflow.placement, PLACEMENT)
        assert placed_view is not None
        assert (placed_view.status, placed_view.attention) == ("paid", None)
        described = await order.handle.describe()
        assert described.typed_search_attributes.get(NEEDS_ATTENTION) is False


async def test_a_cancel_during_attention_waits_for_the_step_then_cancels(
    workflow_env: WorkflowEnvironment,
) -> None:
    """Support may still cancel while a step is stuck (DURING_ATTENTION): the cancel waits for the step."""
    world = FakeWorld()
    world.fail("charge")
    async with unplaced(
        workflow_env, world, provider_timeout_seconds=1, attention_retry_seconds=3600
    ) as order:
        await order.state_when(lambda v: v.attention is not None)
        cancelling = await order.start(OrderWorkflow.cancel, ActionRequest(SUPPORT))
        world.clear()
        await order.act(OrderWorkflow.retry, ActionRequest(SUPPORT))
        cancelled = await cancelling.result()
        assert (cancelled.status, cancelled.reason, cancelled.refunded_amount) == (
            "cancelled",
            "support_cancelled",
            AMOUNT,
        )
    assert [s.status for s in world.states] == ["paid", "cancelled"]


async def test_a_database_step_failing_past_its_bound_needs_attention_until_support_retries(
    workflow_env: WorkflowEnvironment,
) -> None:
    world = FakeWorld()
    world.fail("save_transition:order.accepted")  # every attempt refused at once, until cleared
    async with placed(workflow_env, world, step_timeout_seconds=1, attention_retry_seconds=3600) as order:
        accepting = asyncio.ensure_future(order.act(OrderWorkflow.accept, ActionRequest(SELLER)))
        try:
            stuck = await order.state_when(lambda v: v.attention is not None)
            assert stuck.attention is not None and stuck.attention.startswith("save_transition: ")
            assert (stuck.status, stuck.allowed_actions) == ("paid", ["cancel", "retry"])
            described = await order.handle.describe()
            assert described.typed_search_attributes.get(NEEDS_ATTENTION) is True
            assert await described.memo_value("attention") == stuck.attention
            await world.eventually(lambda: bool(world.attention_reports))
            assert await order.refused(OrderWorkflow.decline, ActionRequest(SELLER)) == "NeedsAttention"
            world.clear()
            assert (await order.act(OrderWorkflow.retry, ActionRequest(SUPPORT))).attention is None
            assert (await accepting).status == "confirmed"
            described = await order.handle.describe()
            assert described.typed_search_attributes.get(NEEDS_ATTENTION) is False
        finally:
            world.clear()  # let the step through, so the worker can stop
            await asyncio.wait_for(asyncio.shield(accepting), 30)
    assert [(s.seq, s.status) for s in world.states] == [(2, "paid"), (3, "confirmed")]


async def test_a_refund_failing_past_its_bound_needs_attention(workflow_env: WorkflowEnvironment) -> None:
    """The refund runs locally first (`local_first`): past its budget it must become a normal activity and
    past `provider_timeout_seconds` flag the order, like any provider call."""
    world = FakeWorld()
    world.fail("refund")
    async with placed(workflow_env, world, provider_timeout_seconds=1, attention_retry_seconds=3600) as order:
        declining = asyncio.ensure_future(order.act(OrderWorkflow.decline, ActionRequest(SELLER)))
        try:
            stuck = await order.state_when(lambda v: v.attention is not None)
            assert stuck.attention is not None and stuck.attention.startswith("refund: ")
        finally:
            world.clear()  # the provider is back; support retries instead of waiting for the next retry
            retried = await order.act(OrderWorkflow.retry, ActionRequest(SUPPORT))
            declined = await asyncio.wait_for(asyncio.shield(declining), 60)
    assert retried.attention is None
    assert (declined.status, declined.payment_state) == ("cancelled", "refunded")


async def test_data_the_database_refuses_refuses_the_update_and_keeps_the_state(
    workflow_env: WorkflowEnvironment,
) -> None:
    world = FakeWorld()
    async with placed(workflow_env, world) as order:
        await order.act(OrderWorkflow.accept, ActionRequest(SELLER))
        world.refuse("save_transition:order.fulfilled")
        with pytest.raises(WorkflowUpdateFailedError):
            await order.act(OrderWorkflow.fulfil, ActionRequest(SELLER, tracking={"carrier": "DHL"}))
        view = await order.state()
        assert (view.status, view.tracking, view.attention) == ("confirmed", None, None)
        assert world.failures == ["save_transition:order.fulfilled"]  # permanent: not retried
        assert world.attention_reports == []
        # The data is fixed: the same transition goes through with the next number.
        world.clear()
        assert (await order.act(OrderWorkflow.fulfil, ActionRequest(SELLER))).status == "fulfilled"
    assert [(s.seq, s.status) for s in world.states] == [(2, "paid"), (3, "confirmed"), (4, "fulfilled")]


async def test_data_the_database_refuses_is_an_invalid_request(workflow_env: WorkflowEnvironment) -> None:
    world = FakeWorld()
    async with placed(workflow_env, world) as order:
        await order.act(OrderWorkflow.accept, ActionRequest(SELLER))
        world.refuse("save_transition:order.fulfilled")
        assert await order.refused(OrderWorkflow.fulfil, ActionRequest(SELLER)) == "InvalidRequest"


@pytest.mark.parametrize("transition", ["order.paid", "order.cancelled"])
async def test_a_transition_that_moved_money_and_cannot_be_saved_needs_attention(
    workflow_env: WorkflowEnvironment, transition: str
) -> None:
    """The charge (`paid`) or the refund (a decline's `cancelled`) went through; its save is refused for
    good: the order must not fail or answer as if nothing happened, it is flagged for support."""
    world = FakeWorld()
    if transition == "order.paid":
        world.refuse("save_transition:order.paid")
        context = unplaced(workflow_env, world, attention_retry_seconds=3600)
    else:
        context = placed(workflow_env, world, attention_retry_seconds=3600)
    async with context as order:
        if transition == "order.cancelled":
            world.refuse("save_transition:order.cancelled")
            declining = asyncio.ensure_future(order.act(OrderWorkflow.decline, ActionRequest(SELLER)))
        try:
            stuck = await order.state_when(lambda v: v.attention is not None, seconds=5)
            assert stuck.attention is not None and stuck.attention.startswith("save_transition: ")
        finally:
            world.clear()
            if transition == "order.cancelled":
                declining.cancel()
    assert len(world.charges) == 1 and len(world.refunds) <= 1


async def test_a_reservation_the_database_refuses_rejects_the_order(
    workflow_env: WorkflowEnvironment,
) -> None:
    """Refused order data (e.g. a NUL byte the API let through) rejects the order; the workflow does not
    fail."""
    world = FakeWorld()
    world.refuse("reserve_stock")
    queue = f"test-{uuid.uuid4()}"
    order_id = str(uuid.uuid4())
    request = place_order(order_id)
    async with Worker(
        workflow_env.client, task_queue=queue, workflows=WORKFLOWS, activities=world.activities()
    ):
        handle = await workflow_env.client.start_workflow(
            OrderWorkflow.run, request, id=order_workflow_id(order_id), task_queue=queue
        )
        view = await asyncio.wait_for(handle.result(), 20)
    assert (view.status, view.reason) == ("rejected", "invalid_request")
    assert world.charges == []


async def test_a_refusal_after_transient_failures_clears_the_attention(
    workflow_env: WorkflowEnvironment,
) -> None:
    world = FakeWorld()
    world.fail("charge")
    async with unplaced(
        workflow_env, world, provider_timeout_seconds=1, attention_retry_seconds=3600
    ) as order:
        await order.state_when(lambda v: v.attention is not None)
        # The provider answers again, and refuses the charge: the order is cancelled, nothing taken.
        world.clear()
        world.reject_charge = True
        retry = asyncio.ensure_future(order.act(OrderWorkflow.retry, ActionRequest(SUPPORT)))
        try:
            view = await order.state_when(lambda v: v.status == "cancelled")
            assert (view.reason, view.payment_state) == ("payment_rejected", "failed")
            assert view.attention is None, view.attention
            assert (await asyncio.wait_for(retry, 10)).attention is None
            final = await asyncio.wait_for(order.result(), 10)
            assert final.attention is None
            described = await order.handle.describe()
            assert described.typed_search_attributes.get(NEEDS_ATTENTION) is False
        finally:
            retry.cancel()
    assert world.released == [order.id]


# ---- validators and races ------------------------------------------------------------------------------


async def test_control_characters_are_refused_before_anything_happens(
    workflow_env: WorkflowEnvironment,
) -> None:
    world = FakeWorld()
    async with placed(workflow_env, world, dispute_window_seconds=3600) as order:
        assert (
            await order.refused(OrderWorkflow.cancel, ActionRequest(BUYER, reason="changed\x00my mind"))
            == "InvalidRequest"
        )
        assert (
            await order.refused(OrderWorkflow.decline, ActionRequest(SELLER, reason="no\nstock"))
            == "InvalidRequest"
        )
        await order.act(OrderWorkflow.accept, ActionRequest(SELLER))
        events = len((await order.handle.fetch_history()).events)
        for tracking in (
            {"carrier": "DHL", "tracking_number": "42\x00"},
            {"carrier": "DHL\r\nBcc: x@example.com"},
            {"carrier": "x" * 5001},
            {"courier": "DHL"},
        ):
            assert (
                await order.refused(OrderWorkflow.fulfil, ActionRequest(SELLER, tracking=tracking))
                == "InvalidRequest"
            ), tracking
        # Refused by the validator: not even written to the history.
        assert len((await order.handle.fetch_history()).events) == events
        await order.act(OrderWorkflow.fulfil, ActionRequest(SELLER, tracking={"carrier": "DHL"}))
        assert (
            await order.refused(
                OrderWorkflow.open_dispute, ActionRequest(BUYER, reason="damaged", message="bent\x1b[31m")
            )
            == "InvalidRequest"
        )
        # A message may have several lines.
        disputed = await order.act(
            OrderWorkflow.open_dispute,
            ActionRequest(BUYER, reason="damaged", message="bent\r\nframe\tcracked"),
        )
        assert disputed.status == "disputed"
    assert [s.status for s in world.states] == ["paid", "confirmed", "fulfilled", "disputed"]


async def test_the_buyers_cancel_racing_the_sellers_accept_is_an_invalid_transition(
    workflow_env: WorkflowEnvironment,
) -> None:
    world = FakeWorld()
    world.delays["save_transition:order.accepted"] = 1
    async with placed(workflow_env, world) as order:
        accepting = await order.start(OrderWorkflow.accept, ActionRequest(SELLER))
        assert await order.refused(OrderWorkflow.cancel, ActionRequest(BUYER)) == "InvalidTransition"
        assert (await accepting.result()).status == "confirmed"
    assert world.refunds == []
    assert [s.status for s in world.states] == ["paid", "confirmed"]


async def test_an_action_accepted_while_another_runs_is_checked_again_when_its_turn_comes(
    workflow_env: WorkflowEnvironment,
) -> None:
    """While the charge is under way, the buyer and support both cancel: both pass the validator (a pending
    order may be cancelled), both wait for the charge; the first cancels (with a refund), the second is
    checked again when its turn comes and refused: InvalidTransition, no second refund."""
    world = FakeWorld()
    world.delays["charge"] = 1.5
    async with unplaced(workflow_env, world) as order:
        await order.state_when(lambda v: v.status == "pending")
        by_buyer = await order.start(OrderWorkflow.cancel, ActionRequest(BUYER))
        by_support = await order.start(OrderWorkflow.cancel, ActionRequest(SUPPORT))
        cancelled = await by_buyer.result()
        assert (cancelled.status, cancelled.reason) == ("cancelled", "buyer_cancelled")
        assert await refusal(by_support.result()) == "InvalidTransition"
    assert [r.idempotency_key for r in world.refunds] == [f"{order.id}:refund:1"]
    assert [s.reason for s in world.states] == [None, "buyer_cancelled"]


# ---- the lean critical path -------------------------------------------------------------------------------


async def test_a_completed_order_has_a_short_history_and_no_children(
    workflow_env: WorkflowEnvironment,
) -> None:
    world = FakeWorld()
    view, history = await run_to_end(workflow_env, world)
    assert view.status == "completed"
    events = history.events
    print(f"\nplace -> accept -> fulfil -> confirm: {len(events)} history events")
    assert len(events) <= 60
    # Database steps are local activities (markers), never activity tasks.
    scheduled = {
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in events
        if e.HasField("activity_task_scheduled_event_attributes")
    }
    assert not scheduled & DATABASE_STEPS, scheduled
    markers = [e for e in events if e.HasField("marker_recorded_event_attributes")]
    assert len(markers) >= 5  # reserve_stock and a save_transition per transition, at least
    assert not any(e.HasField("start_child_workflow_execution_initiated_event_attributes") for e in events)


async def test_only_dispute_cases_are_started_as_children(workflow_env: WorkflowEnvironment) -> None:
    world = FakeWorld()
    async with placed(workflow_env, world, dispute_window_seconds=3600) as order:
        await order.act(OrderWorkflow.accept, ActionRequest(SELLER))
        await order.act(OrderWorkflow.fulfil, ActionRequest(SELLER))
        await order.act(OrderWorkflow.open_dispute, ActionRequest(BUYER, reason="damaged"))
        await order.act(OrderWorkflow.resolve_dispute, ActionRequest(SUPPORT, resolution="release"))
        await order.result()
        assert await child_workflow_types(order.handle) == ["DisputeWorkflow"]
