"""The order workflow's failure rule: refusals by the provider or the database are compensated (or refuse
the Update) and never retried; transient failures past their bound flag the order for support
(NeedsAttention), which retries it.

Runs on a Temporal dev server, with the fake activities of tests/support/workflow_fakes.py failing on cue.
"""

from __future__ import annotations

import asyncio

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.testing import WorkflowEnvironment

from bazaar.orders.types import NEEDS_ATTENTION, ActionRequest
from tests.support.orders import AMOUNT, BUYER, PLACEMENT, SELLER, SUPPORT, placed, unplaced
from tests.support.workflow_fakes import FakeWorld
from workflows.order import OrderWorkflow

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


async def test_money_calls_the_local_budget_refuses_go_to_the_payments_queue_at_once(
    workflow_env: WorkflowEnvironment,
) -> None:
    """With the local share of the provider's request limit spent, a local-first call is not made locally: the
    step runs as a normal activity (the payments queue's rate limit applies) at once, not after the local budget's
    15 s, and the order is not flagged."""
    world = FakeWorld(local_budget_spent=True)
    async with placed(workflow_env, world) as order:
        asked = ActionRequest(SELLER, refund_amount=1_000)
        refunded = await asyncio.wait_for(order.act(OrderWorkflow.refund, asked), 10)
        assert (refunded.status, refunded.refunded_amount, refunded.attention) == ("paid", 1_000, None)
    assert world.local_spills == ["refund"]
    # The refused local attempt made no call; the queued one refunded once.
    assert ([r.amount for r in world.refunds], world.attention_reports) == ([1_000], [])


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
    async with unplaced(workflow_env, world) as order:
        view = await asyncio.wait_for(order.result(), 20)
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


async def test_our_bookkeeping_refusing_a_charge_is_not_a_provider_refusal(
    workflow_env: WorkflowEnvironment,
) -> None:
    """A money step failing for good on our side (the database refusing its data) may have moved the money: the
    order needs a person, it is not cancelled as if the provider had refused (stock and money stay put)."""
    world = FakeWorld()
    world.refuse("charge")
    async with unplaced(
        workflow_env, world, provider_timeout_seconds=1, attention_retry_seconds=3600
    ) as order:
        flagged = await order.state_when(lambda v: v.attention is not None)
        assert flagged.status == "pending"
        assert world.states == []  # not cancelled, nothing released
        world.clear()
        await order.act(OrderWorkflow.retry, ActionRequest(SUPPORT))
        placed_view = await order.handle.execute_update(OrderWorkflow.placement, PLACEMENT)
        assert placed_view is not None
        assert (placed_view.status, placed_view.attention) == ("paid", None)
    assert [c.idempotency_key for c in world.charges] == [f"{order.id}:charge:1"]


async def test_our_bookkeeping_refusing_a_payout_never_pays_twice(workflow_env: WorkflowEnvironment) -> None:
    """The transfer may have gone out before our record of it failed: the order needs a person and the payout is
    retried under the same key (the provider pays once), never `transfer_failed` and a new key."""
    world = FakeWorld()
    async with placed(workflow_env, world, provider_timeout_seconds=1, attention_retry_seconds=3600) as order:
        await order.act(OrderWorkflow.accept, ActionRequest(SELLER))
        await order.act(OrderWorkflow.fulfil, ActionRequest(SELLER))
        world.refuse("transfer")
        confirming = await order.start(OrderWorkflow.confirm_receipt, ActionRequest(BUYER))
        flagged = await order.state_when(lambda v: v.attention is not None)
        assert flagged.payment_state != "transfer_failed"
        world.clear()
        await order.act(OrderWorkflow.retry, ActionRequest(SUPPORT))
        done = await confirming.result()
        assert (done.status, done.attention) == ("completed", None)
    assert {t.idempotency_key for t in world.transfers} == {f"{order.id}:transfer:1"}
