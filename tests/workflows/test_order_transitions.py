"""The order state machine (type `Order`): every allowed and forbidden transition, each actor rule, dispute
resolutions, the placement's idempotency, the validators and racing actors, and the lean critical path.
The failure rule is in test_order_failure_rule.py, the timers in test_order_timers.py.

Runs on a Temporal dev server (the time-skipping server rejects our custom search attributes). Orders are
started like the API does: update-with-start of the `placement` Update (tests/support/orders.py).
"""

from __future__ import annotations

import asyncio

import pytest
from temporalio.client import WorkflowUpdateFailedError
from temporalio.exceptions import ApplicationError
from temporalio.testing import WorkflowEnvironment

from bazaar.orders.types import ActionRequest, Actor, Placement, RefundLine
from tests.support.orders import (
    AMOUNT,
    BUYER,
    FEE,
    PLACEMENT,
    SELLER,
    STRANGER,
    SUPPORT,
    placed,
    refusal,
    run_to_end,
    unplaced,
)
from tests.support.workflow_fakes import FakeWorld, child_workflow_types
from workflows.order import OrderWorkflow

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
        # The transfer follows the answer: the release is booked with the completion, the payout after it.
        assert [t.idempotency_key for t in world.transfers] in ([], [f"{order.id}:transfer:1"])
        assert (await order.paid_out()).payment_state == "released"
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
        ("completed", "order.payout_sent"),
    ]
    assert [s.seq for s in world.states] == [2, 3, 4, 5, 6]
    assert [(s.actor_id, s.actor_role) for s in world.states] == [
        (None, "system"),
        (SELLER.user_id, "seller"),
        (SELLER.user_id, "seller"),
        (BUYER.user_id, "buyer"),
        (None, "system"),
    ]
    completion, payout = world.transitions()[-2:]
    assert (completion.payout_follows, [p.entries for p in completion.ledger]) == (
        True,
        [{"escrow": -AMOUNT, "platform_fees": FEE, "seller_payable": AMOUNT - FEE}],
    )
    assert (payout.payout_follows, payout.ledger, payout.notices) == (False, [], [])
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


async def test_one_key_sent_with_two_requests_at_once_refuses_the_second_as_a_reused_key(
    workflow_env: WorkflowEnvironment,
) -> None:
    """Both pass the validator while the charge is under way (neither has used the key yet); when the second's
    turn comes the key names the first request: idempotency_key_reused, whatever the order's state is by then
    (found from outside: it was an invalid transition, as if the key had not been reused)."""
    world = FakeWorld()
    world.delays["charge"] = 1.5
    async with unplaced(workflow_env, world) as order:
        await order.state_when(lambda v: v.status == "pending")
        first = await order.start(
            OrderWorkflow.cancel,
            ActionRequest(BUYER, reason="too slow", idempotency_key="k", request_digest="a"),
        )
        second = await order.start(
            OrderWorkflow.cancel,
            ActionRequest(BUYER, reason="found it", idempotency_key="k", request_digest="b"),
        )
        assert (await first.result()).status == "cancelled"
        assert await refusal(second.result()) == "IdempotencyKeyReused"
    assert [r.idempotency_key for r in world.refunds] == [f"{order.id}:refund:1"]


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


# ---- refunds while the money is in escrow ------------------------------------------------------------------


@pytest.mark.parametrize(("pro_rata", "fee"), [(True, 4_380), (False, FEE)])
async def test_a_partial_refund_keeps_the_order_and_the_release_charges_the_fee_by_the_terms(
    workflow_env: WorkflowEnvironment, pro_rata: bool, fee: int
) -> None:
    """1,500 back: pro rata the fee is 10 % of 43,500 + 0.30 (4,380); otherwise the whole order's (4,530)."""
    world = FakeWorld(stock=1)
    async with placed(workflow_env, world, fee_refunded_pro_rata=pro_rata) as order:
        await order.act(OrderWorkflow.accept, ActionRequest(SELLER))
        refunded = await order.act(OrderWorkflow.refund, ActionRequest(SELLER, refund_amount=1_500))
        assert (refunded.status, refunded.refunded_amount) == ("confirmed", 1_500)
        await order.act(OrderWorkflow.fulfil, ActionRequest(SELLER))
        done = await order.act(OrderWorkflow.confirm_receipt, ActionRequest(BUYER))
        assert (done.status, done.platform_fee) == ("completed", fee)
        await order.paid_out()
    assert [(r.amount, r.idempotency_key) for r in world.refunds] == [(1_500, f"{order.id}:refund:1")]
    assert [(r.gross, r.fee) for r in world.escrow_releases] == [(AMOUNT - 1_500, fee)]
    assert [t.amount for t in world.transfers] == [AMOUNT - 1_500 - fee]
    assert "order.partially_refunded" in [s.action for s in world.transitions()]


async def test_refunding_all_that_is_held_ends_the_order_and_more_is_refused(
    workflow_env: WorkflowEnvironment,
) -> None:
    world = FakeWorld(stock=1)
    async with placed(workflow_env, world) as order:
        for amount in (0, AMOUNT + 1, None):
            asked = ActionRequest(SUPPORT, refund_amount=amount)
            assert await refusal(order.act(OrderWorkflow.refund, asked)) == "InvalidRequest"
        by_buyer = ActionRequest(BUYER, refund_amount=100)
        assert await refusal(order.act(OrderWorkflow.refund, by_buyer)) == "Forbidden"
        await order.act(OrderWorkflow.refund, ActionRequest(SUPPORT, refund_amount=10_000))
        whole = await order.act(OrderWorkflow.refund, ActionRequest(SELLER, refund_amount=AMOUNT - 10_000))
        assert (whole.status, whole.reason, whole.payment_state) == (
            "refunded",
            "seller_refunded",
            "refunded",
        )
        assert (await order.result()).status == "refunded"
    assert [r.amount for r in world.refunds] == [10_000, AMOUNT - 10_000]
    assert world.transfers == [] and world.escrow_releases == []
    assert world.stock == 1  # unshipped: back on sale


async def test_a_refund_beyond_what_refunds_under_way_leave_is_refused_before_it_is_accepted(
    workflow_env: WorkflowEnvironment,
) -> None:
    """Found from outside: two refunds sent together were both accepted (both 202 while the provider was slow); the
    second, more than the first left, was refused by its handler later, and nobody was told. Its validator now
    counts the refunds accepted and not yet made."""
    world = FakeWorld()
    world.delays["refund"] = 1.0
    # The refunds go through the payments queue: their Updates wait on activities, not inside a workflow task.
    world.local_budget_spent = True
    async with placed(workflow_env, world) as order:
        first = await order.start(OrderWorkflow.refund, ActionRequest(SUPPORT, refund_amount=AMOUNT - 4_000))
        too_much = ActionRequest(SUPPORT, refund_amount=7_000)
        with pytest.raises(WorkflowUpdateFailedError) as refused:
            await order.act(OrderWorkflow.refund, too_much)
        # Refused by its validator, counting the first refund under way (its handler would say only what is held).
        cause = refused.value.cause
        assert isinstance(cause, ApplicationError) and cause.type == "InvalidRequest"
        assert cause.message.endswith(
            "a refund is between 1 and 4000 (what the order still holds, less the refunds under way)"
        ), cause.message
        left = await order.act(OrderWorkflow.refund, ActionRequest(SUPPORT, refund_amount=4_000))
        assert (await first.result()).refunded_amount == AMOUNT - 4_000
        assert (left.refunded_amount, left.status) == (AMOUNT, "refunded")
    assert [r.amount for r in world.refunds] == [AMOUNT - 4_000, 4_000]


async def test_a_refund_while_refunds_under_way_take_all_that_is_left_is_an_invalid_transition(
    workflow_env: WorkflowEnvironment,
) -> None:
    """Found from outside: two whole refunds sent together, the second was a 422 ("between 1 and 0") or a 409,
    by timing. Nothing is wrong with the request: the order is being refunded, as the 409 after it says."""
    world = FakeWorld()
    world.delays["refund"] = 1.0
    world.local_budget_spent = True
    async with placed(workflow_env, world) as order:
        first = await order.start(OrderWorkflow.refund, ActionRequest(SUPPORT, refund_amount=AMOUNT))
        assert await order.refused(OrderWorkflow.refund, ActionRequest(SELLER, refund_amount=AMOUNT)) == (
            "InvalidTransition"
        )
        assert (await first.result()).status == "refunded"
        assert await order.refused(OrderWorkflow.refund, ActionRequest(SELLER, refund_amount=AMOUNT)) == (
            "InvalidTransition"
        )
    assert [r.amount for r in world.refunds] == [AMOUNT]


# ---- the payout after the release ----------------------------------------------------------------------------


async def test_the_release_answers_before_the_transfer_which_follows_as_an_activity(
    workflow_env: WorkflowEnvironment,
) -> None:
    """confirm-receipt answers once the release is booked (the seller's balance shows it `available`); the transfer
    follows, as a normal activity the server retries and operators see pending: a local activity would hold the
    answer until it ended, and neither side waits for it."""
    world = FakeWorld()
    world.delays["transfer"] = 3.0
    async with placed(workflow_env, world) as order:
        await order.act(OrderWorkflow.accept, ActionRequest(SELLER))
        await order.act(OrderWorkflow.fulfil, ActionRequest(SELLER))
        done = await asyncio.wait_for(order.act(OrderWorkflow.confirm_receipt, ActionRequest(BUYER)), 2.5)
        assert (done.status, done.payment_state, done.platform_fee) == ("completed", "released", FEE)
        assert world.transfers == [] and world.transitions()[-1].action == "order.completed"
        assert [r.txn for r in world.escrow_releases] == [
            f"{order.id}:release:1"
        ]  # booked with the completion
        assert (await order.paid_out()).payment_state == "released"
        assert (await order.result()).status == "completed"
    assert [(t.amount, t.idempotency_key, t.release) for t in world.transfers] == [
        (AMOUNT - FEE, f"{order.id}:transfer:1", None)
    ]
    history = await order.handle.fetch_history()
    scheduled = [
        e.activity_task_scheduled_event_attributes.activity_type.name
        for e in history.events
        if e.HasField("activity_task_scheduled_event_attributes")
    ]
    assert scheduled == ["charge", "transfer"]


# ---- a payout on hold while the seller's payouts are disabled ---------------------------------------------


async def test_a_payout_held_while_payouts_are_disabled_goes_out_when_signalled(
    workflow_env: WorkflowEnvironment,
) -> None:
    world = FakeWorld(stock=1, payouts_disabled=True)
    async with placed(workflow_env, world) as order:
        await order.act(OrderWorkflow.accept, ActionRequest(SELLER))
        await order.act(OrderWorkflow.fulfil, ActionRequest(SELLER))
        done = await order.act(OrderWorkflow.confirm_receipt, ActionRequest(BUYER))
        assert (done.status, done.payment_state) == ("completed", "released")
        held = await order.paid_out()
        assert (held.status, held.payment_state) == ("completed", "payout_on_hold")
        assert world.transfers == []  # refused before any call: nothing sent, no key spent at the provider
        assert held.allowed_actions == ["refund", "retry_transfer"]
        world.payouts_disabled = False
        await order.handle.signal(OrderWorkflow.payouts_enabled)
        final = await order.result()
        assert (final.status, final.payment_state) == ("completed", "released")
    assert [(t.amount, t.idempotency_key) for t in world.transfers] == [
        (AMOUNT - FEE, f"{order.id}:transfer:2")
    ]
    assert [s.action for s in world.transitions()][-3:] == [
        "order.completed",
        "order.payout_on_hold",
        "order.payout_retried",
    ]


async def test_a_refund_by_lines_claims_its_units_first_and_gives_them_back_when_refused(
    workflow_env: WorkflowEnvironment,
) -> None:
    """Its units are claimed before the money moves, so a return opened meanwhile cannot take them too (the claim
    is under the order's row lock, tests/api/test_returns.py); a refund the provider refuses gives them back."""
    world = FakeWorld()
    world.reject_refunds = 1
    by_lines = ActionRequest(SELLER, refund_lines=[RefundLine("listing-1", 1)])
    async with placed(workflow_env, world) as order:
        assert await order.refused(OrderWorkflow.refund, by_lines) == "PaymentRejected"
        assert (await order.act(OrderWorkflow.refund, by_lines)).status == "refunded"
    assert [(c.units, c.asked) for c in world.line_claims] == [
        ({"listing-1": 1}, {"listing-1": 1}),
        ({"listing-1": 0}, {}),
        ({"listing-1": 1}, {"listing-1": 1}),
    ]
