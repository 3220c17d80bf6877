"""The checkout (type `Checkout`, workflows/checkout.py): one reservation for every line and one charge for the
whole cart, then one paid child `Order` per seller (`CheckoutShare`: no reservation or charge of its own); a
declined or refused charge cancels the orders and gives the stock back; a refused reservation takes nothing.

Runs on a Temporal dev server, like the order tests (the time-skipping server rejects the custom search
attributes the checkout starts its orders with), with FakeWorld's activities: checkouts are started as the API
starts them (update-with-start of the `placement` Update). tests/workflows/record_histories.py records the
checkout's replay histories with these helpers.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateStage,
)
from temporalio.common import SearchAttributePair, TypedSearchAttributes, WorkflowIDConflictPolicy
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from bazaar.checkout.types import CheckoutLine, CheckoutPlacement, CheckoutView, LineRefusal, StartCheckout
from bazaar.orders.types import (
    BUYER_ID,
    ORDER_STATUS,
    SELLER_ID,
    ActionRequest,
    Actor,
    OrderLineView,
    OrderView,
)
from bazaar.payments.money import platform_fee
from bazaar.temporal import checkout_workflow_id, order_workflow_id
from tests.support.orders import BUYER, Order, refusal
from tests.support.temporal import query_when
from tests.support.workflow_fakes import (
    CHECKOUT_INTENT,
    FakeListing,
    FakeWorld,
    checkout_order_id,
    child_workflow_types,
)
from worker import WORKFLOWS
from workflows.checkout import CheckoutWorkflow
from workflows.order import OrderWorkflow

# Two sellers: the first sells a road bike and pumps (two lines, one order), the second a helmet.
BIKE_SELLER, HELMET_SELLER = Actor("seller-a"), Actor("seller-b")
PAYMENT_METHOD = "pm_card_visa"
LINES = [
    CheckoutLine("listing-bike", 1, 45_000, "EUR"),
    CheckoutLine("listing-helmet", 1, 5_000, "EUR"),
    CheckoutLine("listing-pump", 2, 2_000, "EUR"),
]
BIKE_ORDER, HELMET_ORDER = 45_000 + 2 * 2_000, 5_000
TOTAL = BIKE_ORDER + HELMET_ORDER


def shop(stock: int = 1) -> FakeWorld:
    """A world whose listings are the checkout's: every listing with `stock` units (the pumps twice that)."""
    return FakeWorld(
        listings={
            "listing-bike": FakeListing(BIKE_SELLER.user_id, "Road bike", stock),
            "listing-helmet": FakeListing(HELMET_SELLER.user_id, "Helmet", stock),
            "listing-pump": FakeListing(BIKE_SELLER.user_id, "Pump", 2 * stock),
        }
    )


def stock_of(world: FakeWorld) -> dict[str, int]:
    return {listing_id: listing.stock for listing_id, listing in world.listings.items()}


@dataclass
class Checkout:
    handle: WorkflowHandle[CheckoutWorkflow, CheckoutView]
    id: str
    queue: str
    client: Client
    world: FakeWorld
    placed: CheckoutView | None = None  # the `placement` Update's answer
    seen: dict[str, Order] = field(default_factory=dict)

    async def state(self) -> CheckoutView:
        return await self.handle.query(CheckoutWorkflow.state)

    async def state_when(self, check: Callable[[CheckoutView], bool], seconds: float = 15) -> CheckoutView:
        """Poll the `state` query until `check` holds."""
        return await query_when(self.handle, CheckoutWorkflow.state, check, seconds)

    async def result(self) -> CheckoutView:
        return await self.handle.result()

    def order(self, seller_id: str) -> Order:
        """The seller's order of this checkout (a child `Order` workflow, `order-<order id>`)."""
        order_id = checkout_order_id(self.id, seller_id)
        handle: WorkflowHandle[OrderWorkflow, OrderView] = self.client.get_workflow_handle(
            order_workflow_id(order_id), result_type=OrderView
        )
        return Order(handle, order_id, self.queue, self.client, self.world)

    async def order_paid(self, seller_id: str) -> Order:
        order = self.order(seller_id)
        await order.state_when(lambda v: v.status == "paid")
        return order


def start_checkout(checkout_id: str, **terms: bool | int) -> StartCheckout:
    return StartCheckout(
        checkout_id=checkout_id,
        buyer_id=BUYER.user_id,
        payment_method=PAYMENT_METHOD,
        idempotency_key="client-key",
        lines=list(LINES),
        terms=dict(terms),
    )


@asynccontextmanager
async def checked_out(
    env: WorkflowEnvironment, world: FakeWorld, *, wait: bool = True, **terms: bool | int
) -> AsyncIterator[Checkout]:
    """A checkout started as the API starts it (update-with-start of `placement`; `wait=False`: started
    without waiting for the payment), on a worker of its own that runs its orders too."""
    queue = f"test-{uuid.uuid4()}"
    checkout_id = str(uuid.uuid4())
    request = start_checkout(checkout_id, **terms)
    async with Worker(env.client, task_queue=queue, workflows=WORKFLOWS, activities=world.activities()):
        workflow_id = checkout_workflow_id(checkout_id)
        attributes = TypedSearchAttributes([SearchAttributePair(BUYER_ID, BUYER.user_id)])
        if not wait:
            handle = await env.client.start_workflow(
                CheckoutWorkflow.run, request, id=workflow_id, task_queue=queue, search_attributes=attributes
            )
            yield Checkout(handle, checkout_id, queue, env.client, world)
            return
        start = WithStartWorkflowOperation(
            CheckoutWorkflow.run,
            request,
            id=workflow_id,
            task_queue=queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            search_attributes=attributes,
        )
        view = await env.client.execute_update_with_start_workflow(
            CheckoutWorkflow.placement, CheckoutPlacement(PAYMENT_METHOD), start_workflow_operation=start
        )
        handle = await start.workflow_handle()
        yield Checkout(handle, checkout_id, queue, env.client, world, view)


async def drive_to_completion(order: Order, seller: Actor) -> None:
    await order.act(OrderWorkflow.accept, ActionRequest(seller))
    await order.act(OrderWorkflow.fulfil, ActionRequest(seller, tracking={"carrier": "DHL"}))
    await order.act(OrderWorkflow.confirm_receipt, ActionRequest(BUYER))


# ---- paid: one order per seller, each started paid --------------------------------------------------------


async def test_two_sellers_paid_once_each_get_a_paid_order_of_their_own_lines(
    workflow_env: WorkflowEnvironment,
) -> None:
    world = shop()
    async with checked_out(workflow_env, world) as checkout:
        assert checkout.placed is not None
        assert (checkout.placed.status, checkout.placed.payment_intent_id) == ("paid", CHECKOUT_INTENT)
        view = await checkout.result()
        assert (view.status, view.reason, view.amount, view.currency) == ("paid", None, TOTAL, "EUR")
        assert view.attention is None
        bike, helmet = checkout.order(BIKE_SELLER.user_id), checkout.order(HELMET_SELLER.user_id)
        assert [(o.order_id, o.seller_id, o.amount) for o in view.orders] == [
            (bike.id, BIKE_SELLER.user_id, BIKE_ORDER),
            (helmet.id, HELMET_SELLER.user_id, HELMET_ORDER),
        ]
        # One child Order per seller, `order-<order id>`, started by the checkout.
        assert await child_workflow_types(checkout.handle) == ["Order", "Order"]
        history = await checkout.handle.fetch_history()
        started = [
            e.start_child_workflow_execution_initiated_event_attributes.workflow_id
            for e in history.events
            if e.HasField("start_child_workflow_execution_initiated_event_attributes")
        ]
        assert started == [f"order-{bike.id}", f"order-{helmet.id}"]
        await checkout.order_paid(BIKE_SELLER.user_id)
        await checkout.order_paid(HELMET_SELLER.user_id)
        for order_view, seller, amount, lines in (
            (
                await bike.state(),
                BIKE_SELLER,
                BIKE_ORDER,
                [
                    OrderLineView("listing-bike", "Road bike", 1, 45_000),
                    OrderLineView("listing-pump", "Pump", 2, 2_000),
                ],
            ),
            (
                await helmet.state(),
                HELMET_SELLER,
                HELMET_ORDER,
                [OrderLineView("listing-helmet", "Helmet", 1, 5_000)],
            ),
        ):
            assert (order_view.status, order_view.payment_state) == ("paid", "held_in_escrow")
            assert (order_view.checkout_id, order_view.payment_intent_id) == (checkout.id, CHECKOUT_INTENT)
            assert (order_view.seller_id, order_view.amount, order_view.currency) == (
                seller.user_id,
                amount,
                "EUR",
            )
            assert order_view.lines == lines
            assert order_view.listing_title == lines[0].listing_title
        described = await bike.handle.describe()
        assert described.typed_search_attributes.get(ORDER_STATUS) == "paid"
        assert described.typed_search_attributes.get(SELLER_ID) == BIKE_SELLER.user_id
        # Operators see it as they see a single order: memo, summary and details.
        assert await described.memo() == {
            "listing_title": "Road bike",
            "amount": BIKE_ORDER,
            "currency": "EUR",
            "quantity": 3,
        }
        assert await described.static_summary() == (
            f"Order {BIKE_ORDER // 100}.00 EUR: Road bike (+1 more line), checkout {checkout.id[:8]}"
        )
        assert f"**Order** `{bike.id}`" in (await described.static_details() or "")
        # The checkout has ended; its orders run on (ABANDON): each waits for its seller.
        assert (await checkout.handle.describe()).status == WorkflowExecutionStatus.COMPLETED
        assert described.status == WorkflowExecutionStatus.RUNNING
    # One charge, the checkout's: for the whole cart, in the checkout's transfer group, under one key.
    [charge] = world.charges
    assert (charge.order_id, charge.checkout_id, charge.amount, charge.currency) == (
        "",
        checkout.id,
        TOTAL,
        "EUR",
    )
    assert charge.transfer_group == f"checkout-{checkout.id}"
    assert charge.idempotency_key == f"checkout-{checkout.id}:charge:1"
    assert charge.payment_method == PAYMENT_METHOD
    # Neither order reserved or charged on its own: each only saved its move to paid (state 2).
    assert world.reservations == [] and world.reserved == {}
    assert sorted((s.order_id, s.seq, s.status, s.action) for s in world.transitions()) == sorted(
        [(bike.id, 2, "paid", "order.paid"), (helmet.id, 2, "paid", "order.paid")]
    )
    [reserved] = world.checkout_reservations
    assert (reserved.checkout_id, reserved.lines) == (checkout.id, LINES)
    assert [(s.checkout_id, s.paid, s.reason, s.payment_intent_id) for s in world.settlements] == [
        (checkout.id, True, None, CHECKOUT_INTENT)
    ]
    assert stock_of(world) == {"listing-bike": 0, "listing-helmet": 0, "listing-pump": 0}
    assert world.released == [] and world.refunds == []


# ---- not paid: nothing started, the stock back ------------------------------------------------------------


async def test_a_declined_card_fails_the_checkout_and_starts_no_order(
    workflow_env: WorkflowEnvironment,
) -> None:
    world = shop()
    world.decline = True
    async with checked_out(workflow_env, world) as checkout:
        assert checkout.placed is not None
        assert (checkout.placed.status, checkout.placed.reason) == ("payment_failed", "payment_failed")
        view = await checkout.result()
        assert await child_workflow_types(checkout.handle) == []
    # The declined PaymentIntent is kept (reconciliation matches it).
    assert (view.status, view.reason, view.payment_intent_id) == (
        "payment_failed",
        "payment_failed",
        CHECKOUT_INTENT,
    )
    assert len(world.charges) == 1  # a decline is an answer: not retried
    assert [(s.checkout_id, s.paid, s.reason, s.payment_intent_id) for s in world.settlements] == [
        (checkout.id, False, "payment_failed", CHECKOUT_INTENT)
    ]
    # Both orders cancelled by the settlement, every line's stock back.
    bike, helmet = (checkout_order_id(checkout.id, s.user_id) for s in (BIKE_SELLER, HELMET_SELLER))
    assert sorted(world.released) == sorted([bike, helmet])
    assert stock_of(world) == {"listing-bike": 1, "listing-helmet": 1, "listing-pump": 2}
    assert world.states == []  # no order workflow ran


async def test_a_charge_the_provider_refuses_is_payment_rejected(workflow_env: WorkflowEnvironment) -> None:
    world = shop()
    world.reject_charge = True
    async with checked_out(workflow_env, world) as checkout:
        assert checkout.placed is not None
        assert (checkout.placed.status, checkout.placed.reason) == ("payment_failed", "payment_rejected")
        view = await checkout.result()  # completes, does not fail
        assert await child_workflow_types(checkout.handle) == []
    assert (view.status, view.reason, view.payment_intent_id, view.attention) == (
        "payment_failed",
        "payment_rejected",
        None,
        None,
    )
    assert world.charges == [] and len(world.rejected_charges) == 1  # refused once, never retried
    assert [(s.paid, s.reason, s.payment_intent_id) for s in world.settlements] == [
        (False, "payment_rejected", None)
    ]
    assert stock_of(world) == {"listing-bike": 1, "listing-helmet": 1, "listing-pump": 2}


async def test_a_refused_reservation_takes_nothing_and_charges_nothing(
    workflow_env: WorkflowEnvironment,
) -> None:
    world = shop()
    world.listings["listing-pump"].stock = 1  # one pump left, two asked for
    del world.listings["listing-helmet"]  # left sale
    async with checked_out(workflow_env, world) as checkout:
        assert checkout.placed is not None
        view = await checkout.result()
        assert await child_workflow_types(checkout.handle) == []
    for answer in (checkout.placed, view):
        assert (answer.status, answer.reason, answer.orders) == (None, "lines_unavailable", [])
        assert answer.refusals == [
            LineRefusal("listing-helmet", "listing_not_available", 0),
            LineRefusal("listing-pump", "sold_out", 1),
        ]
    assert world.charges == [] and world.settlements == []
    assert stock_of(world) == {"listing-bike": 1, "listing-pump": 1}


async def test_a_reservation_the_database_refuses_is_an_invalid_request(
    workflow_env: WorkflowEnvironment,
) -> None:
    world = shop()
    world.refuse("reserve_checkout")
    async with checked_out(workflow_env, world) as checkout:
        view = await checkout.result()
    assert checkout.placed is not None
    assert (checkout.placed.status, checkout.placed.reason) == (None, "invalid_request")
    assert (view.status, view.reason, view.refusals) == (None, "invalid_request", [])
    assert world.failures == ["reserve_checkout"]  # a data error is final: tried once
    assert world.charges == [] and world.settlements == []


# ---- the placement's idempotency --------------------------------------------------------------------------


async def test_a_placement_with_another_payment_method_is_refused(workflow_env: WorkflowEnvironment) -> None:
    """While the charge runs, a retry of the request with the same payment method joins (answered once the
    payment has an outcome); one with another payment method is refused at once (409), nothing changed."""
    world = shop()
    world.delays["charge"] = 1.5
    async with checked_out(workflow_env, world, wait=False) as checkout:
        await checkout.state_when(lambda v: v.amount == TOTAL)  # reserved, the charge under way
        same = await checkout.handle.start_update(
            CheckoutWorkflow.placement,
            CheckoutPlacement(PAYMENT_METHOD),
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
        )
        different = CheckoutPlacement("pm_card_mastercard")
        assert (
            await refusal(checkout.handle.execute_update(CheckoutWorkflow.placement, different))
            == "IdempotencyKeyReused"
        )
        assert (await checkout.state()).status == "pending"
        assert (await same.result()).status == "paid"
        assert (await checkout.result()).status == "paid"
    [charge] = world.charges
    assert charge.payment_method == PAYMENT_METHOD


# ---- the failure rule: a charge failing past its bound ------------------------------------------------------


async def test_a_charge_failing_past_its_bound_is_flagged_keeps_the_stock_and_is_retried(
    workflow_env: WorkflowEnvironment,
) -> None:
    world = shop()
    world.fail("charge")
    async with checked_out(
        workflow_env, world, wait=False, provider_timeout_seconds=1, attention_retry_seconds=1
    ) as checkout:
        stuck = await checkout.state_when(lambda v: v.attention is not None)
        assert stuck.status == "pending" and str(stuck.attention).startswith("charge: ")
        assert await (await checkout.handle.describe()).memo_value("attention") == stuck.attention
        assert stock_of(world) == {"listing-bike": 0, "listing-helmet": 0, "listing-pump": 0}  # still held
        world.clear("charge")
        view = await checkout.result()
        assert (view.status, view.attention) == ("paid", None)
        assert await (await checkout.handle.describe()).memo_value("attention", default=None) is None
        await checkout.order_paid(BIKE_SELLER.user_id)
    assert {c.idempotency_key for c in world.charges} == {f"checkout-{checkout.id}:charge:1"}  # one key


# ---- a checkout's order runs on its own: payout in the checkout's group, a refund of its share only -------


async def test_a_checkout_orders_payout_goes_in_the_checkouts_transfer_group(
    workflow_env: WorkflowEnvironment,
) -> None:
    world = shop()
    async with checked_out(workflow_env, world) as checkout:
        bike = await checkout.order_paid(BIKE_SELLER.user_id)
        await drive_to_completion(bike, BIKE_SELLER)
        done = await bike.result()
        assert (done.status, done.payment_state, done.checkout_id) == ("completed", "released", checkout.id)
        fee = platform_fee(BIKE_ORDER, 1_000, 30)
        assert done.platform_fee == fee
    [transfer] = world.transfers
    assert (transfer.order_id, transfer.amount, transfer.transfer_group) == (
        bike.id,
        BIKE_ORDER - fee,
        f"checkout-{checkout.id}",
    )
    assert transfer.idempotency_key == f"{bike.id}:transfer:1"
    assert [(r.order_id, r.gross, r.fee) for r in world.escrow_releases] == [(bike.id, BIKE_ORDER, fee)]
    assert world.refunds == []


async def test_a_seller_declining_refunds_only_its_share_of_the_checkouts_charge(
    workflow_env: WorkflowEnvironment,
) -> None:
    world = shop()
    async with checked_out(workflow_env, world) as checkout:
        helmet = await checkout.order_paid(HELMET_SELLER.user_id)
        bike = await checkout.order_paid(BIKE_SELLER.user_id)
        declined = await helmet.act(OrderWorkflow.decline, ActionRequest(HELMET_SELLER))
        assert (declined.status, declined.reason, declined.payment_state) == (
            "cancelled",
            "seller_declined",
            "refunded",
        )
        assert declined.refunded_amount == HELMET_ORDER
        assert (await bike.state()).status == "paid"  # the other seller's order is untouched
    [refund] = world.refunds
    assert (refund.order_id, refund.payment_intent_id, refund.amount, refund.currency) == (
        helmet.id,
        CHECKOUT_INTENT,
        HELMET_ORDER,
        "EUR",
    )
    assert refund.idempotency_key == f"{helmet.id}:refund:1"
    # The declined order's line goes back on sale; the other order keeps its stock.
    assert world.released == [helmet.id]
    assert stock_of(world) == {"listing-bike": 0, "listing-helmet": 1, "listing-pump": 0}
