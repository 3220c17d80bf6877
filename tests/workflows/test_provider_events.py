"""Provider events (Signals from the webhook endpoint) and the payout retry, on the order workflow (`Order`).

Chargebacks: an order with money in escrow (or paid out: clawed back first) goes to `disputed` with reason
`chargeback`; the network's decision restores it (won) or refunds it (lost). A completed order's workflow has
ended: the chargeback reopens it (signal-with-start of a run with `reopen=True`, as the webhook does).
Payment reports never charge.
"""

from __future__ import annotations

import asyncio

from temporalio.testing import WorkflowEnvironment

from bazaar.orders.types import PAYMENT_STATE, ActionRequest, PaymentReport
from tests.support.order_scenarios import RECORDED, record
from tests.support.orders import (
    AMOUNT,
    BUYER,
    FEE,
    SELLER,
    SUPPORT,
    completed,
    notice,
    placed,
    reopened,
    state_when,
)
from tests.support.workflow_fakes import FakeWorld
from workflows.order import OrderWorkflow

NET = AMOUNT - FEE


async def test_chargeback_on_a_paid_order_freezes_it_and_lost_refunds(
    workflow_env: WorkflowEnvironment,
) -> None:
    world = FakeWorld()
    async with placed(workflow_env, world) as order:
        await order.handle.signal(OrderWorkflow.chargeback, notice())
        await order.handle.signal(OrderWorkflow.chargeback, notice())  # redelivered: no second booking
        view = await state_when(order, lambda v: v.status == "disputed")
        assert (view.reason, view.payment_state, view.dispute_source) == (
            "chargeback",
            "chargeback",
            "chargeback",
        )
        assert (view.chargeback_id, view.chargeback_status, view.chargeback_amount) == (
            "dp_1",
            "withdrawn",
            AMOUNT,
        )
        assert view.allowed_actions == []  # support waits for the network's decision
        assert (
            await order.refused(OrderWorkflow.resolve_dispute, ActionRequest(SUPPORT, resolution="refund"))
            == "InvalidTransition"
        )
        assert await order.refused(OrderWorkflow.cancel, ActionRequest(BUYER)) == "InvalidTransition"
        described = await order.handle.describe()
        assert described.typed_search_attributes.get(PAYMENT_STATE) == "chargeback"

        await order.handle.signal(OrderWorkflow.chargeback, notice("lost"))
        final = await order.result()
    assert (final.status, final.reason, final.payment_state) == (
        "refunded",
        "chargeback_lost",
        "charged_back",
    )
    assert [(c.amount, c.reinstated, c.key) for c in world.chargebacks] == [
        (AMOUNT, False, f"{order.id}:chargeback:dp_1")
    ]
    assert world.refunds == []  # the network already gave the buyer the money back
    assert world.released == [order.id]  # never shipped: the stock can be sold again
    assert world.stock == 1
    assert [(s.action, s.release_stock) for s in world.transitions()][-2:] == [
        ("order.chargeback", False),
        ("order.chargeback_lost", True),
    ]
    assert [o.outcome for o in world.outcomes] == ["refunded", "disputed"]  # counted when it ended


async def test_chargeback_won_resumes_where_the_order_was(workflow_env: WorkflowEnvironment) -> None:
    world = FakeWorld()
    async with placed(workflow_env, world, dispute_window_seconds=3600) as order:
        await order.act(OrderWorkflow.accept, ActionRequest(SELLER))
        await order.act(OrderWorkflow.fulfil, ActionRequest(SELLER, tracking={"carrier": "DHL"}))
        await order.handle.signal(OrderWorkflow.chargeback, notice())
        await state_when(order, lambda v: v.status == "disputed")
        await order.handle.signal(OrderWorkflow.chargeback, notice("won"))
        view = await state_when(order, lambda v: v.status == "fulfilled")
        assert (view.payment_state, view.chargeback_status) == ("held_in_escrow", "won")
        done = await order.act(OrderWorkflow.confirm_receipt, ActionRequest(BUYER))
        assert (done.status, done.payment_state) == ("completed", "released")
    assert [(c.reinstated, c.key) for c in world.chargebacks] == [
        (False, f"{order.id}:chargeback:dp_1"),
        (True, f"{order.id}:chargeback_reversal:dp_1"),
    ]
    assert [t.amount for t in world.transfers] == [NET]


async def test_chargeback_after_completion_reopens_claws_back_and_won_pays_out_again(
    workflow_env: WorkflowEnvironment,
) -> None:
    world = FakeWorld()
    async with placed(workflow_env, world) as order:
        await completed(order)
        first = await order.result()  # the workflow ends with the order
        assert (first.status, first.payment_state) == ("completed", "released")
        again = await reopened(workflow_env.client, order, notice())
        view = await state_when(again, lambda v: v.status == "disputed")
        assert (view.reason, view.payment_state, view.platform_fee) == ("chargeback", "chargeback", 0)
        assert [(r.transfer_id, r.amount, r.idempotency_key) for r in world.reversals] == [
            ("tr_fake_1", NET, f"{order.id}:transfer_reversal:1")
        ]
        assert [(r.fee, r.seller_share, r.txn) for r in world.release_reversals] == [
            (FEE, NET, f"{order.id}:release_reversal:1")
        ]
        await again.handle.signal(OrderWorkflow.chargeback, notice("won"))
        final = await again.result()
        assert (final.status, final.reason, final.payment_state, final.platform_fee) == (
            "completed",
            "chargeback_won",
            "released",
            FEE,
        )
        # The network's decision delivered once more (e.g. funds_reinstated, then closed): nothing happens.
        late = await (await reopened(workflow_env.client, order, notice("won"))).result()
        assert (late.status, late.chargeback_status) == ("completed", "won")
    assert world.charges and len(world.charges) == 1  # a reopened run never charges
    assert [(r.gross, r.fee, r.txn) for r in world.escrow_releases] == [
        (AMOUNT, FEE, f"{order.id}:release:1"),
        (AMOUNT, FEE, f"{order.id}:release:2"),
    ]
    assert [(t.amount, t.idempotency_key) for t in world.transfers] == [
        (NET, f"{order.id}:transfer:1"),
        (NET, f"{order.id}:transfer:2"),
    ]
    assert [c.key for c in world.chargebacks] == [
        f"{order.id}:chargeback:dp_1",
        f"{order.id}:chargeback_reversal:dp_1",
    ]
    # The timeline continues where it ended; each release's transfer follows its completion.
    assert [(s.seq, s.action) for s in world.transitions()][-5:] == [
        (5, "order.completed"),
        (6, "order.payout_sent"),
        (7, "order.chargeback"),
        (8, "order.completed"),
        (9, "order.payout_sent"),
    ]


async def test_chargeback_after_completion_lost_when_the_seller_cannot_pay_back(
    workflow_env: WorkflowEnvironment,
) -> None:
    world = FakeWorld(reject_reversals=True)
    async with placed(workflow_env, world) as order:
        await completed(order)
        await order.result()
        again = await reopened(workflow_env.client, order, notice())
        await state_when(again, lambda v: v.status == "disputed")
        await again.handle.signal(OrderWorkflow.chargeback, notice("lost"))
        final = await asyncio.wait_for(again.result(), 20)
    # The release stands (the seller keeps the payout); the chargeback is booked: the platform's loss.
    assert (final.status, final.reason) == ("refunded", "chargeback_lost")
    assert world.release_reversals == []
    assert [c.amount for c in world.chargebacks] == [AMOUNT]
    assert world.released == []  # shipped goods


async def test_a_chargeback_reopening_a_cancelled_order_is_booked_and_won_back(
    workflow_env: WorkflowEnvironment,
) -> None:
    """Refunded in full, then disputed by the buyer's bank: the provider took the money all the same. Found from
    outside: the order ignored it (no case, a ledger that disagreed with the provider)."""
    world = FakeWorld()
    async with placed(workflow_env, world) as order:
        await order.act(OrderWorkflow.cancel, ActionRequest(BUYER))
        await order.result()
        again = await reopened(workflow_env.client, order, notice())
        disputed = await state_when(again, lambda v: v.status == "disputed")
        assert (disputed.reason, disputed.payment_state) == ("chargeback", "chargeback")
        await again.handle.signal(OrderWorkflow.chargeback, notice("won"))
        final = await asyncio.wait_for(again.result(), 20)
    assert (final.status, final.reason, final.payment_state) == ("cancelled", "buyer_cancelled", "refunded")
    assert [c.amount for c in world.chargebacks] == [AMOUNT, AMOUNT]  # withdrawn, then reinstated


async def test_payment_reports_are_recorded_and_never_charge(workflow_env: WorkflowEnvironment) -> None:
    world = FakeWorld()
    async with placed(workflow_env, world) as order:
        ours = PaymentReport("evt_1", "pi_fake", "succeeded", AMOUNT, "EUR")
        stranger = PaymentReport("evt_2", "pi_elsewhere", "succeeded", AMOUNT, "EUR")
        for report in (ours, ours, stranger):
            await order.handle.signal(OrderWorkflow.payment_reported, report)
        view = await state_when(order, lambda v: bool(v.unexpected_payment_intents))
        assert (view.status, view.provider_payment_status) == ("paid", "succeeded")
        assert view.unexpected_payment_intents == ["pi_elsewhere"]
    assert len(world.charges) == 1
    assert world.refunds == []


async def test_failed_payout_keeps_the_order_open_until_support_retries(
    workflow_env: WorkflowEnvironment,
) -> None:
    world = FakeWorld(reject_transfers=1)
    async with placed(workflow_env, world) as order:
        await order.act(OrderWorkflow.accept, ActionRequest(SELLER))
        await order.act(OrderWorkflow.fulfil, ActionRequest(SELLER))
        await order.act(OrderWorkflow.confirm_receipt, ActionRequest(BUYER))
        done = await order.paid_out()
        assert (done.status, done.payment_state, done.allowed_actions) == (
            "completed",
            "transfer_failed",
            ["refund", "retry_transfer"],
        )
        assert await order.refused(OrderWorkflow.retry_transfer, ActionRequest(SELLER)) == "Forbidden"
        retried = await order.act(OrderWorkflow.retry_transfer, ActionRequest(SUPPORT))
        assert (retried.status, retried.payment_state, retried.allowed_actions) == (
            "completed",
            "released",
            ["refund"],
        )
        final = await order.result()  # paid out: now the workflow ends
    assert final.payment_state == "released"
    assert [(t.amount, t.idempotency_key) for t in world.transfers] == [
        (NET, f"{order.id}:transfer:1"),
        (NET, f"{order.id}:transfer:2"),
    ]
    assert len(world.escrow_releases) == 1


async def test_recorded_scenarios_end_as_expected(workflow_env: WorkflowEnvironment) -> None:
    """The scenarios behind the stored histories still run to the end they were recorded with."""
    results = await asyncio.gather(*(record(workflow_env, name) for name in RECORDED))
    assert [view.status for view, _ in results] == [expected for *_, expected in RECORDED.values()]
