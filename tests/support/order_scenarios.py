"""The order scenarios recorded as replay histories (`lean_*`, tests/histories/): `RECORDED`, each with its
world, the order's terms, the driver and the status it ends in. tests/workflows/record_histories.py records
them; tests/workflows/test_provider_events.py checks that each still ends as recorded.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from temporalio.client import WorkflowHistory, WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from bazaar.errors import Rejection
from bazaar.orders.types import ActionRequest, OrderView, RefundLine
from tests.support.orders import (
    BUYER,
    PLACEMENT,
    SELLER,
    SUPPORT,
    Order,
    completed,
    notice,
    placed,
    reopened,
    state_when,
    unplaced,
)
from tests.support.workflow_fakes import FakeWorld
from workflows.order import OrderWorkflow


async def drive_dispute(order: Order) -> Order:
    await order.act(OrderWorkflow.accept, ActionRequest(SELLER))
    await order.act(OrderWorkflow.fulfil, ActionRequest(SELLER))
    await order.act(OrderWorkflow.open_dispute, ActionRequest(BUYER, reason="not as described"))
    await order.act(
        OrderWorkflow.resolve_dispute,
        ActionRequest(SUPPORT, resolution="partial_refund", refund_amount=10_000),
    )
    return order


async def drive_cancellation(order: Order) -> Order:
    await order.act(OrderWorkflow.cancel, ActionRequest(BUYER))
    return order


async def drive_chargeback(order: Order) -> Order:
    await order.handle.signal(OrderWorkflow.chargeback, notice())
    await state_when(order, lambda v: v.status == "disputed")
    await order.handle.signal(OrderWorkflow.chargeback, notice("lost"))
    return order


async def won_back_after_it_ended(order: Order) -> Order:
    """The ended order reopened by a chargeback that the seller wins: the reopened run (the one recorded)."""
    await order.result()
    assert order.client is not None
    again = await reopened(order.client, order, notice())
    await state_when(again, lambda v: v.status == "disputed")
    await again.handle.signal(OrderWorkflow.chargeback, notice("won"))
    return again


async def drive_chargeback_after_completion(order: Order) -> Order:
    await completed(order)
    return await won_back_after_it_ended(order)


async def drive_chargeback_after_cancellation(order: Order) -> Order:
    """Cancelled: refunded in full before the chargeback."""
    await order.act(OrderWorkflow.cancel, ActionRequest(BUYER))
    return await won_back_after_it_ended(order)


async def drive_payout_retry(order: Order) -> Order:
    await completed(order)
    await order.act(OrderWorkflow.retry_transfer, ActionRequest(SUPPORT))
    return order


async def drive_to_completion(order: Order) -> Order:
    await completed(order)
    return order


async def drive_partial_refund(order: Order) -> Order:
    """A seller's partial refund before the release, then completed (the run closes apart from the last Update)."""
    await order.act(OrderWorkflow.accept, ActionRequest(SELLER))
    await order.act(OrderWorkflow.refund, ActionRequest(SELLER, reason="scratched", refund_amount=1_500))
    await order.act(OrderWorkflow.fulfil, ActionRequest(SELLER))
    await order.act(OrderWorkflow.confirm_receipt, ActionRequest(BUYER))
    return order


async def drive_refund_by_lines(order: Order) -> Order:
    """Accepted under an Idempotency-Key (the same key with another request refused), then refunded by its one
    line: the units counted with the transition, the run ends refunded."""
    await order.act(OrderWorkflow.accept, ActionRequest(SELLER, idempotency_key="k", request_digest="first"))
    reused = ActionRequest(SELLER, idempotency_key="k", request_digest="other")
    assert await order.refused(OrderWorkflow.accept, reused) == Rejection.IDEMPOTENCY_KEY_REUSED
    lines = [RefundLine(PLACEMENT.listing_id, PLACEMENT.quantity)]
    await order.act(OrderWorkflow.refund, ActionRequest(SELLER, reason="lost", refund_lines=lines))
    return order


async def drive_action_key_per_order(order: Order) -> Order:
    """Under `KEY_PER_ORDER_PATCH`: accepted under an Idempotency-Key; the same key on another action (fulfil) is
    refused; shipped under its own key and confirmed."""
    await order.act(OrderWorkflow.accept, ActionRequest(SELLER, idempotency_key="k", request_digest="d"))
    other_action = ActionRequest(SELLER, idempotency_key="k", request_digest="d")
    assert await order.refused(OrderWorkflow.fulfil, other_action) == Rejection.IDEMPOTENCY_KEY_REUSED
    await order.act(OrderWorkflow.fulfil, ActionRequest(SELLER, idempotency_key="k2", request_digest="d"))
    await order.act(
        OrderWorkflow.confirm_receipt, ActionRequest(BUYER, idempotency_key="k", request_digest="d")
    )
    return order


async def drive_dispute_refunded(order: Order) -> Order:
    await order.act(OrderWorkflow.accept, ActionRequest(SELLER))
    await order.act(OrderWorkflow.fulfil, ActionRequest(SELLER))
    await order.act(OrderWorkflow.open_dispute, ActionRequest(BUYER, reason="damaged", message="bent"))
    await order.act(OrderWorkflow.resolve_dispute, ActionRequest(SUPPORT, resolution="refund"))
    return order


async def drive_nothing(order: Order) -> Order:
    return order  # the deadlines act


async def drive_attention_then_retry(order: Order) -> Order:
    """Started while the provider is down: the charge fails past its bound and the order is flagged; support
    retries once the provider is back; then the order completes."""
    await order.state_when(lambda v: v.attention is not None)
    order.world.clear()
    await order.act(OrderWorkflow.retry, ActionRequest(SUPPORT))
    await order.handle.execute_update(OrderWorkflow.placement, PLACEMENT)
    await completed(order)
    return order


async def drive_refund_refused_then_declined(order: Order) -> Order:
    order.world.reject_refunds = 1
    await order.refused(OrderWorkflow.decline, ActionRequest(SELLER))
    await order.act(OrderWorkflow.decline, ActionRequest(SELLER))
    return order


async def drive_fulfil_refused_then_shipped(order: Order) -> Order:
    await order.act(OrderWorkflow.accept, ActionRequest(SELLER))
    order.world.refuse("save_transition:order.fulfilled")
    with pytest.raises(WorkflowUpdateFailedError):
        await order.act(OrderWorkflow.fulfil, ActionRequest(SELLER))
    order.world.clear()
    await order.act(OrderWorkflow.fulfil, ActionRequest(SELLER))
    await order.act(OrderWorkflow.confirm_receipt, ActionRequest(BUYER))
    return order


def provider_down() -> FakeWorld:
    world = FakeWorld()
    world.fail("charge")
    return world


Driver = Callable[[Order], Awaitable[Order]]  # returns the run whose history is recorded
# name -> (world, order terms, driver, expected final status). Histories of the lean order (type `Order`);
# the `order_*` and `trust_*` histories were recorded by the previous workflow (now `LegacyOrderWorkflow`)
# and are never recorded again. Scenarios in UNPLACED start without waiting for the placement.
RECORDED: dict[str, tuple[Callable[[], FakeWorld], dict[str, Any], Driver, str]] = {
    "lean_attention_then_retry": (
        provider_down,
        {"provider_timeout_seconds": 1, "attention_retry_seconds": 3600},
        drive_attention_then_retry,
        "completed",
    ),
    "lean_order_completed": (FakeWorld, {}, drive_to_completion, "completed"),
    "lean_payment_failed": (lambda: FakeWorld(decline=True), {}, drive_nothing, "cancelled"),
    "lean_payment_rejected": (lambda: FakeWorld(reject_charge=True), {}, drive_nothing, "cancelled"),
    "lean_sold_out": (lambda: FakeWorld(stock=0), {}, drive_nothing, "rejected"),
    "lean_cancelled_by_buyer": (FakeWorld, {}, drive_cancellation, "cancelled"),
    "lean_refund_refused_then_declined": (FakeWorld, {}, drive_refund_refused_then_declined, "cancelled"),
    "lean_fulfil_refused_then_shipped": (FakeWorld, {}, drive_fulfil_refused_then_shipped, "completed"),
    "lean_dispute_partial_refund": (FakeWorld, {"dispute_window_seconds": 3600}, drive_dispute, "completed"),
    "lean_dispute_refunded": (
        FakeWorld,
        {"dispute_window_seconds": 3600},
        drive_dispute_refunded,
        "refunded",
    ),
    "lean_payout_retried": (lambda: FakeWorld(reject_transfers=1), {}, drive_payout_retry, "completed"),
    "lean_chargeback_lost": (FakeWorld, {}, drive_chargeback, "refunded"),
    "lean_reopened_by_chargeback_won": (FakeWorld, {}, drive_chargeback_after_completion, "completed"),
    "lean_partial_refund_then_completed": (FakeWorld, {}, drive_partial_refund, "completed"),
    "lean_refund_by_lines": (FakeWorld, {}, drive_refund_by_lines, "refunded"),
    "lean_action_key_per_order": (FakeWorld, {}, drive_action_key_per_order, "completed"),
    # The same refund by lines with CLAIM_LINES_PATCH: its units claimed before the money moves.
    "lean_refund_lines_claimed": (FakeWorld, {}, drive_refund_by_lines, "refunded"),
    # With CHARGEBACK_AFTER_REFUND_PATCH: a chargeback on an order refunded in full is booked, then won back.
    "lean_cancelled_then_chargeback_won": (FakeWorld, {}, drive_chargeback_after_cancellation, "cancelled"),
    # With PAYOUT_AFTER_ANSWER_PATCH: the release answers the Update, the transfer follows as an activity (sent;
    # refused, then retried by support; paid out again after a chargeback won).
    "lean_paid_out_after_the_answer": (FakeWorld, {}, drive_to_completion, "completed"),
    "lean_payout_refused_after_the_answer": (
        lambda: FakeWorld(reject_transfers=1),
        {},
        drive_payout_retry,
        "completed",
    ),
    "lean_paid_out_again_after_chargeback_won": (
        FakeWorld,
        {},
        drive_chargeback_after_completion,
        "completed",
    ),
    "lean_reminded_then_timed_out": (
        FakeWorld,
        {"acceptance_timeout_seconds": 2, "acceptance_reminder_seconds": 1},
        drive_nothing,
        "cancelled",
    ),
}


UNPLACED = frozenset({"lean_attention_then_retry"})


async def record(env: WorkflowEnvironment, name: str) -> tuple[OrderView, WorkflowHistory]:
    make_world, terms, drive, _ = RECORDED[name]
    start = unplaced if name in UNPLACED else placed
    async with start(env, make_world(), **terms) as order:
        run = await drive(order)
        return await run.result(), await run.handle.fetch_history()
