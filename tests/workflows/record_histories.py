"""Record workflow histories for the replay tests: `python -m tests.workflows.record_histories [--all]`.

Run it when a deliberate change to a workflow adds new paths; never to "fix" a failing replay (that failure is
the signal that running workflows would break; see docs/workflow-versioning.md). It records only scenarios
that have no history yet: the stored ones are the proof that workflows started by that code still replay.

What is recorded here:
- `lean_*`: the order workflow (type `Order`, `workflows/order.py`), one history per scenario of
  `tests/support/order_scenarios.py` (`RECORDED`; tests/workflows/test_provider_events.py checks each still
  ends as recorded);
- `reveal_due_reviews_sweep`: one run of the review sweep;
- `dispute_case_chargeback_joined`: a buyer's dispute case that a chargeback joins (started by the lean order).
- Recorded with the dispute case's `BOUNDED_PATCH` (bounded local database steps, notifications in the outbox):
  `dispute_case_outbox_refunded` (a case the lean order opened with its static summary, worked and refunded) with
  its order's history `lean_dispute_case_with_summary` (the child's start carries user metadata), and
  `dispute_case_attention_recovered` (a case whose database refuses a message, then is down past the step bound
  and comes back: refused Updates, the flag in the memo, support told).

- Recorded with the order's `CLOSE_APART_PATCH` (the run closes in a task apart from its last Update):
  `lean_partial_refund_then_completed` (a seller's partial refund, then completed).
- `lean_refund_by_lines`: accepted under an action Idempotency-Key (the same key with another request refused),
  then refunded by its line (the units refunded counted with the transition).
- Recorded with the order's `KEY_PER_ORDER_PATCH`: `lean_action_key_per_order` (an action's key refused on another
  action of the order, then shipped and confirmed).
- Recorded with `CLAIM_LINES_PATCH`: `lean_refund_lines_claimed` (the refund by lines above, its units claimed
  before its money moved).
- Recorded with `CHARGEBACK_AFTER_REFUND_PATCH`: `lean_cancelled_then_chargeback_won` (cancelled by the buyer,
  then reopened by a chargeback: booked, disputed, won back, cancelled again).
- `checkout_*`: the checkout (type `Checkout`, `workflows/checkout.py`), started as the API starts it
  (update-with-start of `placement`, tests/workflows/test_checkout_workflow.py): `checkout_paid_two_sellers` (two
  sellers' lines reserved, charged once, two child orders started), `checkout_payment_failed` (a declined card:
  settled unpaid, no child), `checkout_payment_rejected` (the provider refuses the charge),
  `checkout_lines_unavailable` (the reservation refuses a sold-out line: nothing charged) and
  `checkout_charge_attention_recovered` (the charge fails past its bound: flagged in the memo, retried on a timer,
  a `placement` accepted meanwhile, then paid); with `lean_checkout_order_completed`, the bike seller's order of
  `checkout_paid_two_sellers` (a child `Order` started with a `CheckoutShare`: paid without a reservation or a
  charge of its own), accepted, shipped and confirmed (payout in the checkout's transfer group).
- `return_*`: the return (type `Return`, `workflows/returns.py`), asked for as the API asks (update-with-start of
  `opened`, tests/support/returns.py), with FakeWorld's activities and deadlines of a second where a
  deadline is the path: `return_refunded_after_receipt` (approved, shipped, received and restocked: refunded),
  `return_escalated_then_resolved` (the seller silent past `response_seconds`: escalated; support approves; shipped
  and received without restock: refunded), `return_receipt_deadline_refund` (shipped, never confirmed: refunded at
  `receipt_seconds`, nothing restocked), `return_refund_refused_then_refunded` (the order refuses the refund:
  escalated `refund_refused`; support approves and the refund is asked again) and `return_refused_at_open` (the
  return window closed: nothing stored, the run ends); recorded with `REFUND_UP_TO_HELD_PATCH`,
  `return_refunded_up_to_held` (the order holds 1,500 of the return's 4,000 by its receipt: that is refunded);
  recorded with `RETURN_SETTLES_PATCH` too, `return_settled_by_the_order` (the order was refunded in full before
  the receipt: the return ends refunded by it, restocked) and `return_asked_again_for_the_rest` (the order refuses
  the ask, another refund having left 1,500: asked again for that).

What is never recorded again: the `order_*` and `trust_*` histories and the first children's histories
(`dispute_case_worked_and_refunded`, `review_round_both_reviewed`, `notification_order_paid`) were recorded by
the previous order workflow, which now runs as `LegacyOrderWorkflow` (type `OrderWorkflow`) for the orders it
started; nothing starts it any more, so there is nothing to record them from.
`order_transfer_failed_before_retry.json` was recorded once by the code before the payout-retry patch.

`--all` re-records the scenarios listed here (only before the lean order's first release, or when every
workflow started by the code that recorded them has closed).
"""

from __future__ import annotations

import asyncio
import sys
import uuid
from pathlib import Path

from temporalio.client import WorkflowHandle, WorkflowHistory, WorkflowUpdateStage
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from bazaar.checkout.types import CheckoutPlacement
from bazaar.orders.types import ActionRequest
from bazaar.returns.models import ReturnStatus
from bazaar.returns.types import ReturnTerms
from bazaar.temporal import DATA_CONVERTER
from bazaar.trust.models import DisputeResolution
from tests.support.binaries import venv_binary
from tests.support.order_scenarios import RECORDED, record
from tests.support.orders import BUYER, SELLER, SUPPORT, notice, placed
from tests.support.returns import TRACKING, returned, returns_world
from tests.support.temporal import SEARCH_ATTRIBUTES
from tests.support.workflow_fakes import FakeWorld
from tests.workflows.test_checkout_workflow import (
    BIKE_SELLER,
    PAYMENT_METHOD,
    checked_out,
    drive_to_completion,
    shop,
)
from tests.workflows.test_dispute_workflow import CaseDb, a_case, cleared, message, refusal, until
from workflows.checkout import CheckoutWorkflow
from workflows.dispute import (
    ChargebackJoined,
    DisputeState,
    DisputeWorkflow,
    InfoRequest,
    Resolution,
    dispute_workflow_id,
)
from workflows.order import OrderWorkflow
from workflows.returns import ReturnWorkflow
from workflows.reviews import RevealDueReviewsWorkflow

HISTORIES = Path(__file__).resolve().parent.parent / "histories"


async def record_sweep(env: WorkflowEnvironment) -> WorkflowHistory:
    queue = f"record-{uuid.uuid4()}"
    async with Worker(
        env.client,
        task_queue=queue,
        workflows=[RevealDueReviewsWorkflow],
        activities=FakeWorld().activities(),
    ):
        handle = await env.client.start_workflow(
            RevealDueReviewsWorkflow.run, id="reveal-due-reviews", task_queue=queue
        )
        await handle.result()
        return await handle.fetch_history()


async def record_joined_case(env: WorkflowEnvironment) -> WorkflowHistory:
    """A buyer's dispute; a chargeback joins its case; the network sides with the seller; support refunds."""
    world = FakeWorld()
    async with placed(env, world, dispute_window_seconds=3600) as order:
        await order.act(OrderWorkflow.accept, ActionRequest(SELLER))
        await order.act(OrderWorkflow.fulfil, ActionRequest(SELLER))
        await order.act(OrderWorkflow.open_dispute, ActionRequest(BUYER, reason="damaged", message="bent"))
        await world.eventually(lambda: bool(world.dispute_cases))
        await order.handle.signal(OrderWorkflow.chargeback, notice())
        await world.eventually(lambda: any(e.kind == "chargeback" for e in world.dispute_thread))
        await order.handle.signal(OrderWorkflow.chargeback, notice("won"))
        await order.state_when(lambda v: v.chargeback_status == "won")
        await order.act(OrderWorkflow.resolve_dispute, ActionRequest(SUPPORT, resolution="refund"))
        case: WorkflowHandle[DisputeWorkflow, DisputeState] = env.client.get_workflow_handle(
            dispute_workflow_id(order.id), result_type=DisputeState
        )
        await case.result()
        await order.result()
        return await case.fetch_history()


async def record_outbox_case(env: WorkflowEnvironment) -> tuple[WorkflowHistory, WorkflowHistory]:
    """A buyer's dispute the lean order opens (with the case's summary); support asks the seller, who answers;
    support refunds. Returns the case's history and the order's."""
    world = FakeWorld()
    async with placed(env, world, dispute_window_seconds=3600) as order:
        await order.act(OrderWorkflow.accept, ActionRequest(SELLER))
        await order.act(OrderWorkflow.fulfil, ActionRequest(SELLER))
        await order.act(OrderWorkflow.open_dispute, ActionRequest(BUYER, reason="damaged", message="bent"))
        await world.eventually(lambda: bool(world.dispute_cases))
        case: WorkflowHandle[DisputeWorkflow, DisputeState] = env.client.get_workflow_handle(
            dispute_workflow_id(order.id), result_type=DisputeState
        )
        await case.execute_update(
            DisputeWorkflow.request_info, InfoRequest("staff-1", "seller", "Receipt?", 86_400)
        )
        await case.execute_update(DisputeWorkflow.add_message, message("Attached", kind="evidence"))
        await order.act(OrderWorkflow.resolve_dispute, ActionRequest(SUPPORT, resolution="refund"))
        await case.result()
        await order.result()
        return await case.fetch_history(), await order.handle.fetch_history()


async def record_attention_case(env: WorkflowEnvironment) -> WorkflowHistory:
    """A case started on its own (as an operator would): the database refuses a message (NUL byte), then is
    down past the step bound (the Update refused, the case flagged), then back (support told, the flag
    cleared); a chargeback joins; the case is resolved with a partial refund."""
    db = CaseDb()
    queue = f"record-{uuid.uuid4()}"
    order = str(uuid.uuid4())
    case = a_case(order, step_timeout_seconds=1, attention_retry_seconds=1)
    async with Worker(env.client, task_queue=queue, workflows=[DisputeWorkflow], activities=db.activities()):
        handle = await env.client.start_workflow(
            DisputeWorkflow.run,
            case,
            id=dispute_workflow_id(order),
            task_queue=queue,
            static_summary=case.summary(),
        )
        await handle.execute_update(
            DisputeWorkflow.request_info, InfoRequest("staff-1", "seller", "Receipt?", 86_400)
        )
        await refusal(handle.execute_update(DisputeWorkflow.add_message, message("bad \x00 byte")))
        db.down = True
        await refusal(handle.execute_update(DisputeWorkflow.add_message, message("lost")))
        db.down = False
        await until(lambda: cleared(handle))
        await handle.execute_update(DisputeWorkflow.add_message, message("Attached", kind="evidence"))
        await handle.signal(DisputeWorkflow.chargeback_joined, ChargebackJoined("dp_1", 45_000, "EUR"))
        await handle.signal(DisputeWorkflow.resolved, Resolution(DisputeResolution.PARTIAL_REFUND, 10_000))
        await handle.result()
        return await handle.fetch_history()


async def record_checkout_paid(env: WorkflowEnvironment) -> tuple[WorkflowHistory, WorkflowHistory]:
    """Two sellers' lines paid at once; the bike seller's order (a child started with a CheckoutShare) is
    accepted, shipped and confirmed. Returns the checkout's history and that order's."""
    world = shop()
    async with checked_out(env, world) as checkout:
        assert (await checkout.result()).status == "paid"
        bike = await checkout.order_paid(BIKE_SELLER.user_id)
        await drive_to_completion(bike, BIKE_SELLER)
        assert (await bike.result()).status == "completed"
        assert [t.transfer_group for t in world.transfers] == [f"checkout-{checkout.id}"]
        return await checkout.handle.fetch_history(), await bike.handle.fetch_history()


async def record_checkout_unpaid(env: WorkflowEnvironment, world_knob: str) -> WorkflowHistory:
    """A checkout that ends unpaid: `decline` (payment_failed), `reject_charge` (payment_rejected) or
    `sold_out` (the reservation refuses a line: nothing charged)."""
    world = shop()
    if world_knob == "sold_out":
        world.listings["listing-helmet"].stock = 0
    else:
        setattr(world, world_knob, True)
    async with checked_out(env, world) as checkout:
        view = await checkout.result()
        assert view.status != "paid", view
        return await checkout.handle.fetch_history()


async def record_checkout_attention(env: WorkflowEnvironment) -> WorkflowHistory:
    """The charge fails past its bound (flagged, retried on a timer); the buyer's request joins meanwhile; the
    provider comes back and the checkout is paid."""
    world = shop()
    world.fail("charge")
    async with checked_out(
        env, world, wait=False, provider_timeout_seconds=1, attention_retry_seconds=1
    ) as checkout:
        await checkout.state_when(lambda v: v.attention is not None)
        joined = await checkout.handle.start_update(
            CheckoutWorkflow.placement,
            CheckoutPlacement(PAYMENT_METHOD),
            wait_for_stage=WorkflowUpdateStage.ACCEPTED,
        )
        world.clear("charge")
        assert (await joined.result()).status == "paid"
        view = await checkout.result()
        assert (view.status, view.attention) == ("paid", None)
        return await checkout.handle.fetch_history()


# The return's recorded paths; the deadline a path is about is a second, the others an hour.
RETURNS = (
    "return_refunded_after_receipt",
    "return_escalated_then_resolved",
    "return_receipt_deadline_refund",
    "return_refund_refused_then_refunded",
    "return_refused_at_open",
    # Recorded with REFUND_UP_TO_HELD_PATCH: the order holds less than the return's amount (a refund since).
    "return_refunded_up_to_held",
    # Recorded with RETURN_SETTLES_PATCH: the order was refunded in full before the receipt (settled by it), and
    # the order refuses an ask because another refund took part of it (asked again for the rest).
    "return_settled_by_the_order",
    "return_asked_again_for_the_rest",
)


async def record_return(env: WorkflowEnvironment, name: str) -> WorkflowHistory:
    """One of the return's paths (`RETURNS`), driven as its actors and deadlines drive it."""
    hour = 3600
    refused_once = ("return_refund_refused_then_refunded", "return_asked_again_for_the_rest")
    world = returns_world(
        refuse_refunds=1 if name in refused_once else 0,
        refusal="return_window_closed" if name == "return_refused_at_open" else None,
    )
    if name == "return_refunded_up_to_held":
        world.returns.held = 1_500
    if name == "return_settled_by_the_order":
        world.returns.held = 0
    if name == "return_asked_again_for_the_rest":
        world.returns.held_after_refusal = 1_500
    terms = ReturnTerms(
        response_seconds=1 if name == "return_escalated_then_resolved" else hour,
        ship_seconds=hour,
        receipt_seconds=1 if name == "return_receipt_deadline_refund" else hour,
    )
    async with returned(env, world, terms=terms) as ret:
        if name == "return_refused_at_open":
            assert ret.opened.status is None, ret.opened
        elif name == "return_escalated_then_resolved":
            await ret.state_when(lambda v: v.status == ReturnStatus.ESCALATED)
            await ret.act(ReturnWorkflow.resolve, SUPPORT, approve=True)
            await ret.act(ReturnWorkflow.ship, BUYER, tracking=TRACKING)
            await ret.act(ReturnWorkflow.receive, SELLER, restock=False)
        else:
            await ret.act(ReturnWorkflow.approve, SELLER)
            await ret.act(ReturnWorkflow.ship, BUYER, tracking=TRACKING)
            if name in (
                "return_refunded_after_receipt",
                "return_refunded_up_to_held",
                "return_settled_by_the_order",
                "return_asked_again_for_the_rest",
            ):
                await ret.act(ReturnWorkflow.receive, SELLER, restock=True)
            elif name == "return_refund_refused_then_refunded":
                escalated = await ret.act(ReturnWorkflow.receive, SELLER, restock=True)
                assert escalated.status_reason == "refund_refused", escalated
                await ret.act(ReturnWorkflow.resolve, SUPPORT, approve=True, restock=False)
        view = await ret.result()
        expected = None if name == "return_refused_at_open" else ReturnStatus.REFUNDED
        assert view.status == expected, view
        return await ret.handle.fetch_history()


async def main(everything: bool) -> None:
    def wanted(name: str) -> bool:
        return everything or not (HISTORIES / f"{name}.json").exists()

    def write(name: str, history: WorkflowHistory) -> None:
        # Failures carry stack traces with this checkout's absolute paths: kept relative (replay never reads them).
        checkout = str(HISTORIES.parent.parent) + "/"
        (HISTORIES / f"{name}.json").write_text(history.to_json().replace(checkout, ""))
        print(f"recorded {name}")

    async with await WorkflowEnvironment.start_local(
        dev_server_existing_path=venv_binary("temporal"),
        search_attributes=SEARCH_ATTRIBUTES,
        dev_server_extra_args=["--headless"],
        data_converter=DATA_CONVERTER,
    ) as env:
        for name in RECORDED:
            if wanted(name):
                _, history = await record(env, name)
                write(name, history)
        if wanted("reveal_due_reviews_sweep"):
            write("reveal_due_reviews_sweep", await record_sweep(env))
        if wanted("dispute_case_chargeback_joined"):
            write("dispute_case_chargeback_joined", await record_joined_case(env))
        if wanted("dispute_case_outbox_refunded") or wanted("lean_dispute_case_with_summary"):
            case_history, order_history = await record_outbox_case(env)
            write("dispute_case_outbox_refunded", case_history)
            write("lean_dispute_case_with_summary", order_history)
        if wanted("dispute_case_attention_recovered"):
            write("dispute_case_attention_recovered", await record_attention_case(env))
        if wanted("checkout_paid_two_sellers") or wanted("lean_checkout_order_completed"):
            checkout_history, order_history = await record_checkout_paid(env)
            write("checkout_paid_two_sellers", checkout_history)
            write("lean_checkout_order_completed", order_history)
        for name, knob in (
            ("checkout_payment_failed", "decline"),
            ("checkout_payment_rejected", "reject_charge"),
            ("checkout_lines_unavailable", "sold_out"),
        ):
            if wanted(name):
                write(name, await record_checkout_unpaid(env, knob))
        if wanted("checkout_charge_attention_recovered"):
            write("checkout_charge_attention_recovered", await record_checkout_attention(env))
        for name in RETURNS:
            if wanted(name):
                write(name, await record_return(env, name))


if __name__ == "__main__":
    asyncio.run(main("--all" in sys.argv[1:]))
