"""What an order tells others: notifications, the acceptance reminder, the review round, the dispute case and
the seller's outcome counters. All of it runs in children and activities that never hold up the order."""

from __future__ import annotations

import time

from temporalio.client import WorkflowHandle
from temporalio.testing import WorkflowEnvironment

from tests.workflows.fakes import FakeWorld
from tests.workflows.test_order_workflow import AMOUNT, BUYER, FEE, SELLER, SUPPORT, placed
from tests.workflows.test_provider_events import notice, state_when
from workflows.dispute import DisputeState, DisputeWorkflow, dispute_workflow_id
from workflows.order import ActionRequest, OrderWorkflow


def who(world: FakeWorld) -> list[tuple[str, list[str]]]:
    return [(e.event_type, e.recipient_ids) for e in world.events]


async def test_each_step_notifies_the_other_side_and_completion_opens_the_review_round(
    workflow_env: WorkflowEnvironment,
) -> None:
    world = FakeWorld()
    async with placed(workflow_env, world, review_window_seconds=3600) as order:
        await world.eventually(lambda: len(world.events) == 1)
        await order.act(OrderWorkflow.accept, ActionRequest(SELLER))
        await order.act(OrderWorkflow.fulfil, ActionRequest(SELLER, tracking={"carrier": "DHL"}))
        await order.act(OrderWorkflow.confirm_receipt, ActionRequest(BUYER))
        await world.eventually(lambda: len(world.events) == 5 and len(world.delivered) == 6)
        await order.result()
    seller, buyer = SELLER.user_id, BUYER.user_id
    assert who(world) == [
        ("order_paid", [seller]),
        ("order_accepted", [buyer]),
        ("order_shipped", [buyer]),
        ("order_completed", [seller]),
        ("review_invitation", [buyer, seller]),
    ]
    assert [e.event_key for e in world.events[:4]] == [
        f"order:{order.id}:{step}" for step in ("paid", "accepted", "shipped", "completed")
    ]
    paid, _, shipped, done, _ = world.events
    assert (paid.data["amount"], paid.data["listing_title"], paid.data["buyer_id"]) == (
        "450.00 EUR",
        "Road bike",
        buyer,
    )
    assert "deadline" in paid.data
    assert shipped.data["tracking"] == "carrier: DHL"
    assert done.data["payout"] == f"{(AMOUNT - FEE) // 100}.{(AMOUNT - FEE) % 100:02d} EUR"
    assert [(o.order_id, o.outcome) for o in world.outcomes] == [(order.id, "completed")]
    # Opened by the order (before its update answers), then again by the review round: idempotent.
    assert {(w.order_id, w.window_seconds) for w in world.review_windows} == {(order.id, 3600)}
    assert world.dead == {}


async def test_a_dead_mail_server_neither_delays_the_order_nor_loses_the_notification(
    workflow_env: WorkflowEnvironment,
) -> None:
    world = FakeWorld(mail_down=True)
    async with placed(workflow_env, world, notification_max_attempts=3) as order:
        await order.act(OrderWorkflow.accept, ActionRequest(SELLER))
        await order.act(OrderWorkflow.fulfil, ActionRequest(SELLER))
        done = await order.act(OrderWorkflow.confirm_receipt, ActionRequest(BUYER))
        completed_at = time.monotonic()
        assert done.status == "completed"
        # Each delivery takes 3 failing attempts (1 s + 2 s backoff) before it is dead-lettered: the whole
        # order went through before the first of them gave up.
        await world.eventually(lambda: len(world.dead) == len(world.deliveries) == 6, seconds=30)
        assert min(world.dead.values()) > completed_at
        assert world.delivered == []
        # Mail is back: replaying the dead letters (what `POST /v1/support/dead-letters/replay` starts)
        # delivers each of them once.
        world.mail_down = False
        replay = await workflow_env.client.execute_workflow(
            "NotificationWorkflow",
            {"notification_ids": sorted(world.dead)},
            id=f"notify-replay-{order.id}",
            task_queue=order.queue,
        )
    assert set(replay.values()) == {"sent"}
    assert sorted(world.delivered) == sorted(world.dead)


async def test_the_seller_is_reminded_before_the_acceptance_deadline(
    workflow_env: WorkflowEnvironment,
) -> None:
    world = FakeWorld()
    async with placed(
        workflow_env, world, acceptance_timeout_seconds=3, acceptance_reminder_seconds=2
    ) as order:
        await world.eventually(lambda: bool(world.notified("acceptance_deadline_approaching")))
        state = await order.handle.query(OrderWorkflow.state)
        assert state is not None and state.status == "paid"  # reminded, not yet cancelled
        view = await order.result()
        await world.eventually(lambda: bool(world.notified("order_cancelled")))
    assert (view.status, view.reason) == ("cancelled", "acceptance_timeout")
    [reminder] = world.notified("acceptance_deadline_approaching")
    assert reminder.recipient_ids == [SELLER.user_id]
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
        state = await order.handle.query(OrderWorkflow.state)
        assert state is not None and state.status == "confirmed"
    assert world.notified("acceptance_deadline_approaching") == []


async def test_decline_notifies_the_buyer_and_counts_against_the_seller(
    workflow_env: WorkflowEnvironment,
) -> None:
    world = FakeWorld()
    async with placed(workflow_env, world) as order:
        await order.act(OrderWorkflow.decline, ActionRequest(SELLER))
        await world.eventually(lambda: bool(world.notified("order_declined")))
    assert world.notified("order_declined")[0].recipient_ids == [BUYER.user_id]
    assert world.notified("order_cancelled") == []
    assert [o.outcome for o in world.outcomes] == ["cancelled"]


async def test_a_buyer_cancelling_does_not_count_against_the_seller(
    workflow_env: WorkflowEnvironment,
) -> None:
    world = FakeWorld()
    async with placed(workflow_env, world) as order:
        await order.act(OrderWorkflow.cancel, ActionRequest(BUYER))
        await world.eventually(lambda: bool(world.notified("order_cancelled")))
    assert world.notified("order_cancelled")[0].recipient_ids == [BUYER.user_id, SELLER.user_id]
    assert world.outcomes == []


async def test_a_buyer_dispute_opens_a_case_that_resolving_closes(workflow_env: WorkflowEnvironment) -> None:
    world = FakeWorld()
    async with placed(workflow_env, world, dispute_window_seconds=3600) as order:
        await order.act(OrderWorkflow.accept, ActionRequest(SELLER))
        await order.act(OrderWorkflow.fulfil, ActionRequest(SELLER))
        await order.act(
            OrderWorkflow.open_dispute, ActionRequest(BUYER, reason="damaged", message="the frame is bent")
        )
        await world.eventually(lambda: bool(world.dispute_cases))
        case: WorkflowHandle[DisputeWorkflow, DisputeState] = workflow_env.client.get_workflow_handle(
            dispute_workflow_id(order.id), result_type=DisputeState
        )
        assert (await case.query(DisputeWorkflow.status)).status == "open"
        await order.act(OrderWorkflow.resolve_dispute, ActionRequest(SUPPORT, resolution="refund"))
        closed: DisputeState = await case.result()
        await world.eventually(lambda: bool(world.notified("dispute_resolved")))
    [opened] = world.dispute_cases
    assert (opened.source, opened.reason_code, opened.message, opened.author_id) == (
        "buyer",
        "damaged",
        "the frame is bent",
        BUYER.user_id,
    )
    assert (closed.status, closed.resolution) == ("resolved", "refund")
    assert [s.status for s in world.dispute_statuses] == ["resolved"]
    assert [o.outcome for o in world.outcomes] == ["disputed"]
    assert {e.event_type for e in world.events} >= {"dispute_opened", "dispute_resolved"}


async def test_a_chargeback_becomes_a_dispute_case_closed_by_the_networks_decision(
    workflow_env: WorkflowEnvironment,
) -> None:
    world = FakeWorld()
    async with placed(workflow_env, world) as order:
        await order.handle.signal(OrderWorkflow.chargeback, notice())
        await state_when(order, lambda v: v.status == "disputed")
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


async def test_a_chargeback_on_an_open_buyer_case_joins_it(workflow_env: WorkflowEnvironment) -> None:
    world = FakeWorld()
    async with placed(workflow_env, world, dispute_window_seconds=3600) as order:
        await order.act(OrderWorkflow.accept, ActionRequest(SELLER))
        await order.act(OrderWorkflow.fulfil, ActionRequest(SELLER))
        await order.act(OrderWorkflow.open_dispute, ActionRequest(BUYER, reason="damaged", message="bent"))
        await world.eventually(lambda: bool(world.dispute_cases))
        await order.handle.signal(OrderWorkflow.chargeback, notice())
        await state_when(order, lambda v: v.payment_state == "chargeback")
        await world.eventually(lambda: any(e.kind == "chargeback" for e in world.dispute_thread))
        case: WorkflowHandle[DisputeWorkflow, DisputeState] = workflow_env.client.get_workflow_handle(
            dispute_workflow_id(order.id), result_type=DisputeState
        )
        # The network sides with the seller: the money is back in escrow, and the buyer's case goes on.
        await order.handle.signal(OrderWorkflow.chargeback, notice("won"))
        back = await state_when(order, lambda v: v.chargeback_status == "won")
        assert (back.status, back.reason, back.payment_state) == ("disputed", "damaged", "frozen")
        assert (await case.query(DisputeWorkflow.status)).status == "open"
        await order.act(OrderWorkflow.resolve_dispute, ActionRequest(SUPPORT, resolution="refund"))
        closed = await case.result()
    assert len(world.dispute_cases) == 1  # one case, the buyer's
    [joined] = [e for e in world.dispute_thread if e.kind == "chargeback"]
    assert joined.data == {"provider_dispute_id": "dp_1"} and "450.00 EUR" in joined.body
    assert (closed.status, closed.resolution) == ("resolved", "refund")
    assert [r.amount for r in world.refunds] == [AMOUNT]


async def test_a_refused_payout_tells_the_seller_and_the_retry_tells_them_again(
    workflow_env: WorkflowEnvironment,
) -> None:
    world = FakeWorld(reject_transfers=1)
    async with placed(workflow_env, world) as order:
        await order.act(OrderWorkflow.accept, ActionRequest(SELLER))
        await order.act(OrderWorkflow.fulfil, ActionRequest(SELLER))
        done = await order.act(OrderWorkflow.confirm_receipt, ActionRequest(BUYER))
        assert done.payment_state == "transfer_failed"
        await world.eventually(lambda: bool(world.notified("payout_delayed")))
        assert world.notified("order_completed") == []
        await order.act(OrderWorkflow.retry_transfer, ActionRequest(SUPPORT))
        await world.eventually(lambda: bool(world.notified("order_completed")))
        await order.result()
    [delayed] = world.notified("payout_delayed")
    [paid] = world.notified("order_completed")
    assert delayed.recipient_ids == paid.recipient_ids == [SELLER.user_id]
    assert paid.event_key == f"order:{order.id}:payout-retried-2"
    assert paid.data["payout"] == delayed.data["payout"] == "404.70 EUR"
