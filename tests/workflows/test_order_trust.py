"""What an order tells others: notifications, the acceptance reminder, the review window, the dispute case
and the seller's outcome counters.

The lean order (`Order`) writes a transition's notifications (an outbox the notification sender drains),
its reputation outcome and, on completion, the review window with both invitations in the transition's own
`save_transition`: they are there when the Update answers, and the order starts no notification or review
children. Dispute cases are still `DisputeWorkflow` children, started after the Update has answered.
"""

from __future__ import annotations

from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from bazaar.orders.types import ActionRequest
from tests.support.orders import AMOUNT, BUYER, FEE, SELLER, SUPPORT, notice, placed
from tests.support.workflow_fakes import FakeWorld, child_workflow_types, review_closes_in
from workflows.dispute import DisputeState, DisputeWorkflow, dispute_workflow_id
from workflows.order import OrderWorkflow


def who(world: FakeWorld) -> list[tuple[str, list[str]]]:
    return [(e.event_type, e.recipient_ids) for e in world.events]


async def test_each_step_notifies_the_other_side_and_completion_opens_the_review_window(
    workflow_env: WorkflowEnvironment,
) -> None:
    world = FakeWorld()
    async with placed(workflow_env, world, review_window_seconds=3600) as order:
        assert len(world.events) == 1  # written with the `paid` transition, before the placement answered
        await order.act(OrderWorkflow.accept, ActionRequest(SELLER))
        await order.act(OrderWorkflow.fulfil, ActionRequest(SELLER, tracking={"carrier": "DHL"}))
        await order.act(OrderWorkflow.confirm_receipt, ActionRequest(BUYER))
        # No waiting: everything the completion implies was saved before its Update answered.
        assert len(world.events) == 5
        assert len(world.review_windows) == 1
        await order.result()
        assert await child_workflow_types(order.handle) == []
    seller, buyer = SELLER.user_id, BUYER.user_id
    assert who(world) == [
        ("order_paid", [seller]),
        ("order_accepted", [buyer]),
        ("order_shipped", [buyer]),
        ("order_completed", [seller]),
        ("review_invitation", [buyer, seller]),
    ]
    assert [e.event_key for e in world.events] == [
        f"order:{order.id}:{step}"
        for step in ("paid", "accepted", "shipped", "completed", "review_invitation")
    ]
    # Each notice is part of its transition's save (one transaction).
    assert [(t.action, [n.event_type for n in t.notices]) for t in world.transitions()] == [
        ("order.paid", ["order_paid"]),
        ("order.accepted", ["order_accepted"]),
        ("order.fulfilled", ["order_shipped"]),
        ("order.completed", ["order_completed", "review_invitation"]),
        ("order.payout_sent", []),  # the transfer after the answer: the completion told the seller
    ]
    paid, _, shipped, done, invitation = world.events
    assert (paid.data["amount"], paid.data["listing_title"], paid.data["buyer_id"]) == (
        "450.00 EUR",
        "Road bike",
        buyer,
    )
    assert "deadline" in paid.data
    assert shipped.data["tracking"] == "carrier: DHL"
    assert done.data["payout"] == f"{(AMOUNT - FEE) // 100}.{(AMOUNT - FEE) % 100:02d} EUR"
    assert [(o.order_id, o.outcome) for o in world.outcomes] == [(order.id, "completed")]
    # The completion opened the review window (for the review window's length) and invited both sides.
    [window] = world.review_windows
    assert window.order_id == order.id and review_closes_in(window, 3600)
    assert window.closes_at is not None
    assert invitation.data["deadline"] == window.closes_at.isoformat(timespec="minutes")
    assert (invitation.data["order_id"], invitation.data["listing_title"]) == (order.id, "Road bike")
    [completion] = [t for t in world.transitions() if t.action == "order.completed"]
    assert (completion.outcome, completion.review_closes_at) == ("completed", window.closes_at)
    assert world.revealed == []  # revealed by the second review or the sweep (test_review_workflow.py)


async def test_the_order_never_waits_for_mail(workflow_env: WorkflowEnvironment) -> None:
    """No notification activity is even registered: the order goes from placement to completion anyway
    (its notifications are rows the notification sender delivers, tests/activities/test_notification_sender.py)."""
    world = FakeWorld(mail_down=True)
    mail = {"prepare_notifications", "deliver_notification", "dead_letter_notification"}
    async with placed(workflow_env, world, without_activities=mail) as order:
        await order.act(OrderWorkflow.accept, ActionRequest(SELLER))
        await order.act(OrderWorkflow.fulfil, ActionRequest(SELLER))
        done = await order.act(OrderWorkflow.confirm_receipt, ActionRequest(BUYER))
        assert done.status == "completed"
        await order.result()
    assert len(world.events) == 5  # all written to the outbox, for the sender
    assert len(world.deliveries) == 6 and world.delivered == [] and world.dead == {}


async def test_the_seller_is_reminded_before_the_acceptance_deadline(
    workflow_env: WorkflowEnvironment,
) -> None:
    world = FakeWorld()
    async with placed(
        workflow_env, world, acceptance_timeout_seconds=3, acceptance_reminder_seconds=2
    ) as order:
        await world.eventually(lambda: bool(world.notified("acceptance_deadline_approaching")))
        assert (await order.state()).status == "paid"  # reminded, not yet cancelled
        view = await order.result()
    assert (view.status, view.reason) == ("cancelled", "acceptance_timeout")
    [reminder] = world.notified("acceptance_deadline_approaching")
    assert (reminder.recipient_ids, reminder.event_key) == ([SELLER.user_id], f"order:{order.id}:reminder")
    assert "deadline" in reminder.data
    # The reminder is a save_transition of its own, which keeps the order's status.
    assert [(t.seq, t.status, t.action) for t in world.transitions()] == [
        (2, "paid", "order.paid"),
        (3, "paid", "order.reminded"),
        (4, "cancelled", "order.cancelled"),
    ]
    [cancelled] = world.notified("order_cancelled")
    assert cancelled.recipient_ids == [BUYER.user_id, SELLER.user_id]
    assert cancelled.data["reason"] == "acceptance timeout"
    # A missed deadline counts against the seller.
    assert [o.outcome for o in world.outcomes] == ["cancelled"]


async def test_an_order_accepted_in_time_gets_no_reminder(workflow_env: WorkflowEnvironment) -> None:
    world = FakeWorld()
    async with placed(
        workflow_env, world, acceptance_timeout_seconds=2, acceptance_reminder_seconds=1
    ) as order:
        await order.act(OrderWorkflow.accept, ActionRequest(SELLER))
        await workflow_env.sleep(2)  # past both the reminder and the deadline
        assert (await order.state()).status == "confirmed"
    assert world.notified("acceptance_deadline_approaching") == []
    assert [t.action for t in world.transitions()] == ["order.paid", "order.accepted"]


async def test_decline_notifies_the_buyer_and_counts_against_the_seller(
    workflow_env: WorkflowEnvironment,
) -> None:
    world = FakeWorld()
    async with placed(workflow_env, world) as order:
        await order.act(OrderWorkflow.decline, ActionRequest(SELLER))
    [declined] = world.notified("order_declined")
    assert (declined.recipient_ids, declined.event_key) == ([BUYER.user_id], f"order:{order.id}:cancelled")
    assert world.notified("order_cancelled") == []
    assert [o.outcome for o in world.outcomes] == ["cancelled"]


async def test_a_buyer_cancelling_does_not_count_against_the_seller(
    workflow_env: WorkflowEnvironment,
) -> None:
    world = FakeWorld()
    async with placed(workflow_env, world) as order:
        await order.act(OrderWorkflow.cancel, ActionRequest(BUYER))
    [cancelled] = world.notified("order_cancelled")
    assert cancelled.recipient_ids == [BUYER.user_id, SELLER.user_id]
    assert cancelled.data["reason"] == "buyer cancelled"
    assert world.outcomes == []


async def test_a_refused_charge_tells_nobody(workflow_env: WorkflowEnvironment) -> None:
    """Nothing was taken and the seller never heard of the order: no notification, no reputation."""
    world = FakeWorld(reject_charge=True)
    async with placed(workflow_env, world) as order:
        await order.result()
    assert world.events == [] and world.outcomes == []


async def test_a_buyer_dispute_opens_a_case_that_resolving_closes(workflow_env: WorkflowEnvironment) -> None:
    world = FakeWorld()
    async with placed(workflow_env, world, dispute_window_seconds=3600) as order:
        await order.act(OrderWorkflow.accept, ActionRequest(SELLER))
        await order.act(OrderWorkflow.fulfil, ActionRequest(SELLER))
        disputed = await order.act(
            OrderWorkflow.open_dispute, ActionRequest(BUYER, reason="damaged", message="the frame is bent")
        )
        assert disputed.status == "disputed"  # answered before the case's start was awaited
        await world.eventually(lambda: bool(world.dispute_cases))
        case: WorkflowHandle[DisputeWorkflow, DisputeState] = workflow_env.client.get_workflow_handle(
            dispute_workflow_id(order.id), result_type=DisputeState
        )
        assert (await case.query(DisputeWorkflow.status)).status == "open"
        await order.act(OrderWorkflow.resolve_dispute, ActionRequest(SUPPORT, resolution="refund"))
        closed: DisputeState = await case.result()
        await world.eventually(lambda: bool(world.notified("dispute_resolved")))
        await order.result()
        assert await child_workflow_types(order.handle) == ["DisputeWorkflow"]
    [opened] = world.dispute_cases
    assert (opened.source, opened.reason_code, opened.message, opened.author_id) == (
        "buyer",
        "damaged",
        "the frame is bent",
        BUYER.user_id,
    )
    assert (closed.status, closed.resolution) == ("resolved", "refund")
    assert [s.status for s in world.dispute_statuses] == ["resolved"]
    # Counted when the order ended: refunded without completing, and disputed.
    assert [o.outcome for o in world.outcomes] == ["refunded", "disputed"]
    assert {e.event_type for e in world.events} >= {"dispute_opened", "dispute_resolved"}


async def test_a_chargeback_becomes_a_dispute_case_closed_by_the_networks_decision(
    workflow_env: WorkflowEnvironment,
) -> None:
    world = FakeWorld()
    async with placed(workflow_env, world) as order:
        await order.handle.signal(OrderWorkflow.chargeback, notice())
        await order.state_when(lambda v: v.status == "disputed")
        await world.eventually(lambda: bool(world.dispute_cases))
        await order.handle.signal(OrderWorkflow.chargeback, notice("lost"))
        case: WorkflowHandle[DisputeWorkflow, DisputeState] = workflow_env.client.get_workflow_handle(
            dispute_workflow_id(order.id), result_type=DisputeState
        )
        closed = await case.result()
    [opened] = world.dispute_cases
    assert (opened.source, opened.reason_code, opened.provider_dispute_id, opened.author_id) == (
        "chargeback",
        "chargeback",
        "dp_1",
        None,
    )
    assert (closed.status, closed.resolution) == ("resolved", "refund")
    assert [o.outcome for o in world.outcomes] == ["refunded", "disputed"]


async def test_a_chargeback_on_an_open_buyer_case_joins_it(workflow_env: WorkflowEnvironment) -> None:
    world = FakeWorld()
    async with placed(workflow_env, world, dispute_window_seconds=3600) as order:
        await order.act(OrderWorkflow.accept, ActionRequest(SELLER))
        await order.act(OrderWorkflow.fulfil, ActionRequest(SELLER))
        await order.act(OrderWorkflow.open_dispute, ActionRequest(BUYER, reason="damaged", message="bent"))
        await world.eventually(lambda: bool(world.dispute_cases))
        await order.handle.signal(OrderWorkflow.chargeback, notice())
        await order.state_when(lambda v: v.payment_state == "chargeback")
        await world.eventually(lambda: any(e.kind == "chargeback" for e in world.dispute_thread))
        case: WorkflowHandle[DisputeWorkflow, DisputeState] = workflow_env.client.get_workflow_handle(
            dispute_workflow_id(order.id), result_type=DisputeState
        )
        # The network sides with the seller: the money is back in escrow, and the buyer's case goes on.
        await order.handle.signal(OrderWorkflow.chargeback, notice("won"))
        back = await order.state_when(lambda v: v.chargeback_status == "won")
        assert (back.status, back.reason, back.payment_state) == ("disputed", "damaged", "frozen")
        assert (await case.query(DisputeWorkflow.status)).status == "open"
        await order.act(OrderWorkflow.resolve_dispute, ActionRequest(SUPPORT, resolution="refund"))
        closed = await case.result()
    assert len(world.dispute_cases) == 1  # one case, the buyer's
    [joined] = [e for e in world.dispute_thread if e.kind == "chargeback"]
    assert joined.data == {"provider_dispute_id": "dp_1"} and "450.00 EUR" in joined.body
    assert (closed.status, closed.resolution) == ("resolved", "refund")
    assert [r.amount for r in world.refunds] == [AMOUNT]
    # Counted once, when the order ended (the buyer's case and the chargeback are one disputed order).
    assert [o.outcome for o in world.outcomes] == ["refunded", "disputed"]


async def test_a_refused_payout_tells_the_seller_and_the_retry_tells_them_again(
    workflow_env: WorkflowEnvironment,
) -> None:
    world = FakeWorld(reject_transfers=1)
    async with placed(workflow_env, world) as order:
        await order.act(OrderWorkflow.accept, ActionRequest(SELLER))
        await order.act(OrderWorkflow.fulfil, ActionRequest(SELLER))
        done = await order.act(OrderWorkflow.confirm_receipt, ActionRequest(BUYER))
        assert done.payment_state == "released"  # the transfer follows the answer
        assert (await order.paid_out()).payment_state == "transfer_failed"
        assert len(world.notified("order_completed")) == 1
        await world.eventually(lambda: len(world.notified("payout_delayed")) == 1)
        await order.act(OrderWorkflow.retry_transfer, ActionRequest(SUPPORT))
        await order.result()
    [delayed] = world.notified("payout_delayed")
    completed, paid = world.notified("order_completed")
    assert delayed.recipient_ids == paid.recipient_ids == completed.recipient_ids == [SELLER.user_id]
    assert [completed.event_key, delayed.event_key, paid.event_key] == [
        f"order:{order.id}:{step}" for step in ("completed", "payout-1", "payout-retried-2")
    ]
    assert paid.data["payout"] == delayed.data["payout"] == completed.data["payout"] == "404.70 EUR"
    # The review window opened once, with the completion (not again with the payout).
    assert len(world.review_windows) == 1
    assert [o.outcome for o in world.outcomes] == ["completed"]
