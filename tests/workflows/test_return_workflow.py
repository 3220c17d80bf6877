"""The return (type `Return`, workflows/returns.py): its state table, driven by its actors' Updates and its three
deadlines, with FakeWorld's `open_return`, `save_return` (local activities) and `refund_return` (the order's refund,
asked as an activity): `world.returns`, tests/support/return_fakes.py.

Runs on Temporal's time-skipping test server (the return sets no custom search attributes), so its deadlines are
the real ones (days) and `env.sleep` skips to them. Returns are started as the API starts them (update-with-start
of the `opened` Update, tests/support/returns.py). Two tests run on the dev server: the one that needs a real order
(`Order` upserts custom search attributes) and the race of two Updates sent while no worker polls (the
time-skipping server never delivers them).
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import timedelta

import pytest
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from activities.returns import ReturnActivities
from bazaar.orders.types import ActionRequest, Actor, OrderLineView, RefundLine
from bazaar.returns.models import ReturnStatus
from bazaar.returns.types import ReturnAction, ReturnedLine, ReturnRefund, ReturnRequest, ReturnView
from bazaar.settings import Settings
from tests.support.orders import BUYER, SELLER, STRANGER, SUPPORT, placed, refusal
from tests.support.returns import (
    AMOUNT,
    DAY,
    PUMP,
    RETURNED,
    TERMS,
    TRACKING,
    Return,
    moves,
    open_return,
    returned,
    returns_world,
    start_return,
    steps,
)
from tests.support.workflow_fakes import activity_name
from workflows.order import OrderWorkflow
from workflows.returns import ReturnWorkflow

# The statuses, named as in the state table.
REQUESTED, APPROVED, SHIPPED = ReturnStatus.REQUESTED, ReturnStatus.APPROVED, ReturnStatus.SHIPPED
ESCALATED, REFUNDED = ReturnStatus.ESCALATED, ReturnStatus.REFUNDED
REJECTED, CANCELLED = ReturnStatus.REJECTED, ReturnStatus.CANCELLED


async def skip(env: WorkflowEnvironment, seconds: float) -> None:
    await env.sleep(timedelta(seconds=seconds))


# ---- the happy path -------------------------------------------------------------------------------------


async def test_approved_shipped_received_and_restocked_is_refunded_once(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    world = returns_world()
    async with returned(time_skipping_env, world) as ret:
        opened = ret.opened
        assert (opened.status, opened.status_reason) == (REQUESTED, None)
        assert (opened.seller_id, opened.amount, opened.currency) == (SELLER.user_id, AMOUNT, "EUR")
        assert opened.lines == [OrderLineView("listing-pump", "Pump", 2, PUMP)]
        assert opened.allowed_actions == [ReturnAction.APPROVE, ReturnAction.CANCEL, ReturnAction.REJECT]
        assert [r.return_id for r in world.returns.requests] == [ret.id]

        approved = await ret.act(ReturnWorkflow.approve, SELLER)
        assert (approved.status, approved.allowed_actions) == (
            APPROVED,
            [ReturnAction.CANCEL, ReturnAction.SHIP],
        )
        shipped = await ret.act(ReturnWorkflow.ship, BUYER, tracking=TRACKING)
        assert (shipped.status, shipped.tracking, shipped.allowed_actions) == (
            SHIPPED,
            TRACKING,
            [ReturnAction.RECEIVE],
        )
        received = await ret.act(ReturnWorkflow.receive, SELLER, restock=True)
        assert (received.status, received.restocked, received.allowed_actions) == (REFUNDED, True, [])
        view = await ret.result()
        history = await ret.handle.fetch_history()
    assert view == received
    assert (view.status, view.status_reason, view.amount, view.tracking) == (REFUNDED, None, AMOUNT, TRACKING)
    # Exactly one refund, of the return's amount, asked of the order by the seller (support-flagged: the order's
    # refund after its release is support's).
    # Its ask is the return's third move (requested, approved, shipped): the Update id's attempt. It names the
    # units returned, so the order counts them refunded (never refunded twice by lines or by another return).
    refund = ReturnRefund(
        ret.id,
        ret.order_id,
        AMOUNT,
        Actor(SELLER.user_id, True),
        f"return {ret.id}",
        attempt=3,
        lines=[RefundLine("listing-pump", 2)],
    )
    assert world.returns.refund_requests == [refund]
    assert world.returns.refunds == [refund]
    # One save per move, each with its status, who is told and the template; the lines back on sale.
    assert moves(world) == [
        (2, APPROVED, None, "seller-1", "seller", "return.approved", ["buyer"], "return_approved"),
        (3, SHIPPED, None, "buyer-1", "buyer", "return.shipped", ["seller"], "return_shipped"),
        (4, REFUNDED, None, "seller-1", "seller", "return.refunded", ["buyer", "seller"], "return_refunded"),
    ]
    assert [(m.tracking, m.restocked) for m in world.returns.moves] == [
        (None, None),
        (TRACKING, None),
        (None, True),
    ]
    assert world.returns.restocked == [("listing-pump", 2)]
    assert world.listings["listing-pump"].stock == 2
    assert [(e.event_type, e.recipient_ids, e.recipient_roles) for e in world.events] == [
        ("return_requested", ["seller-1"], []),
        ("return_approved", ["buyer-1"], []),
        ("return_shipped", ["seller-1"], []),
        ("return_refunded", ["buyer-1", "seller-1"], []),
    ]
    # Database steps are local activities; what the order holds, then its refund, are activities (the orders queue's).
    assert steps(history) == (
        ["open_return", "save_return", "save_return", "save_return"],
        ["refundable", "refund_return"],
    )


async def test_a_save_retried_after_a_refused_connection_is_saved_once(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    world = returns_world()
    world.fail("save_return:approved", times=2)
    async with returned(time_skipping_env, world) as ret:
        approved = await ret.act(ReturnWorkflow.approve, SELLER)
        assert approved.status == APPROVED
        await ret.act(ReturnWorkflow.cancel, BUYER)
        await ret.result()
    assert world.failures == ["save_return:approved", "save_return:approved"]
    assert world.returns.statuses(ret.id) == ["approved", "cancelled"]
    assert [m.seq for m in world.returns.moves] == [2, 3]
    # Like the real `save`, a move at or below the saved seq (a retry after the commit) writes nothing.
    events = list(world.events)
    assert world.returns._save(world, world.returns.moves[0]) is False
    assert [m.seq for m in world.returns.moves] == [2, 3] and world.events == events


# ---- refused at its opening -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("refusal_knob", "lines", "reason"),
    [
        ("return_window_closed", RETURNED, "return_window_closed"),
        ("order_not_returnable", RETURNED, "order_not_returnable"),
        (None, [ReturnedLine("listing-not-bought", 1)], "invalid_lines"),
    ],
)
async def test_a_return_refused_at_its_opening_stores_nothing_and_ends(
    time_skipping_env: WorkflowEnvironment,
    refusal_knob: str | None,
    lines: list[ReturnedLine],
    reason: str,
) -> None:
    world = returns_world(refusal=refusal_knob)
    async with returned(time_skipping_env, world, lines=lines) as ret:
        view = await ret.result()
    assert (ret.opened.status, ret.opened.status_reason) == (None, reason)
    assert (ret.opened.amount, ret.opened.lines, ret.opened.allowed_actions) == (0, [], [])
    assert view == ret.opened
    assert len(world.returns.requests) == 1
    assert world.returns.moves == [] and world.returns.refund_requests == [] and world.events == []


# ---- the deadlines --------------------------------------------------------------------------------------


async def test_a_silent_seller_escalates_to_support_who_approves(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    world = returns_world()
    async with returned(time_skipping_env, world) as ret:
        await skip(time_skipping_env, TERMS.response_seconds - 3600)
        assert (await ret.state()).status == REQUESTED
        await skip(time_skipping_env, 2 * 3600)
        escalated = await ret.state_when(lambda v: v.status == ESCALATED)
        assert (escalated.status_reason, escalated.allowed_actions) == (
            "seller_did_not_answer",
            [ReturnAction.RESOLVE],
        )
        # Support decides now: not the seller (too late to approve, never allowed to resolve), and only with a
        # decision.
        assert await ret.refused(ReturnWorkflow.approve, SELLER) == "InvalidTransition"
        assert await ret.refused(ReturnWorkflow.resolve, SELLER, approve=True) == "Forbidden"
        assert await ret.refused(ReturnWorkflow.resolve, SUPPORT) == "InvalidRequest"
        approved = await ret.act(ReturnWorkflow.resolve, SUPPORT, approve=True)
        assert (approved.status, approved.status_reason) == (APPROVED, None)
        # The buyer sends it back as for a seller's approval; the seller confirms its arrival.
        await ret.act(ReturnWorkflow.ship, BUYER, tracking=TRACKING)
        await ret.act(ReturnWorkflow.receive, SELLER, restock=False)
        view = await ret.result()
    assert (view.status, view.restocked) == (REFUNDED, False)
    assert moves(world)[:2] == [
        (
            2,
            ESCALATED,
            "seller_did_not_answer",
            None,
            "system",
            "return.escalated",
            ["support", "buyer", "seller"],
            "return_escalated",
        ),
        (3, APPROVED, None, "staff-1", "support", "return.approved", ["buyer"], "return_approved"),
    ]
    assert world.returns.statuses() == ["escalated", "approved", "shipped", "refunded"]
    [told] = world.notified("return_escalated")
    assert (told.recipient_ids, told.recipient_roles) == (["buyer-1", "seller-1"], ["support"])
    assert [r.amount for r in world.returns.refunds] == [AMOUNT]
    assert world.returns.restocked == []


async def test_approved_but_not_sent_back_in_time_is_cancelled(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    world = returns_world()
    async with returned(time_skipping_env, world) as ret:
        await ret.act(ReturnWorkflow.approve, SELLER)
        await skip(time_skipping_env, TERMS.ship_seconds - 3600)
        assert (await ret.state()).status == APPROVED
        await skip(time_skipping_env, 2 * 3600)
        view = await ret.result()
    assert (view.status, view.status_reason, view.allowed_actions) == (CANCELLED, "not_sent_back", [])
    assert moves(world)[-1] == (
        3,
        CANCELLED,
        "not_sent_back",
        None,
        "system",
        "return.cancelled",
        ["buyer", "seller"],
        "return_cancelled",
    )
    assert world.returns.refund_requests == []


async def test_shipped_but_not_confirmed_in_time_is_refunded_without_restock(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    world = returns_world()
    async with returned(time_skipping_env, world) as ret:
        await ret.act(ReturnWorkflow.approve, SELLER)
        await ret.act(ReturnWorkflow.ship, BUYER, tracking=TRACKING)
        await skip(time_skipping_env, TERMS.receipt_seconds - 3600)
        assert (await ret.state()).status == SHIPPED
        await skip(time_skipping_env, 2 * 3600)
        view = await ret.result()
    assert (view.status, view.status_reason, view.restocked) == (REFUNDED, None, False)
    # The refund is asked in the seller's name, support-flagged (nobody acted: the system did).
    assert world.returns.refund_requests == [
        ReturnRefund(
            ret.id,
            ret.order_id,
            AMOUNT,
            Actor(SELLER.user_id, is_support=True),
            f"return {ret.id}",
            attempt=3,
            lines=[RefundLine("listing-pump", 2)],
        )
    ]
    [saved] = [m for m in world.returns.moves if m.status == REFUNDED]
    assert (saved.actor_id, saved.actor_role, saved.restocked) == (None, "system", False)
    assert (saved.notify, saved.event_type) == (["buyer", "seller"], "return_refunded")
    assert world.returns.restocked == [] and world.listings["listing-pump"].stock == 0


# ---- the order refuses the refund -----------------------------------------------------------------------


async def shipped_and_refused(ret: Return) -> ReturnView:
    """Approved, shipped and received: the order refuses the refund, so the return goes to support."""
    await ret.act(ReturnWorkflow.approve, SELLER)
    await ret.act(ReturnWorkflow.ship, BUYER, tracking=TRACKING)
    escalated = await ret.act(ReturnWorkflow.receive, SELLER, restock=True)
    assert (escalated.status, escalated.status_reason) == (ESCALATED, "refund_refused")
    assert escalated.allowed_actions == [ReturnAction.RESOLVE]
    assert escalated.restocked is None  # nothing refunded, nothing restocked
    return escalated


async def test_a_refused_refund_goes_to_support_who_has_it_asked_again(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    world = returns_world(refuse_refunds=1)
    async with returned(time_skipping_env, world) as ret:
        await shipped_and_refused(ret)
        assert [m[1:] for m in moves(world)][-1] == (
            ESCALATED,
            "refund_refused",
            None,
            "system",
            "return.escalated",
            ["support", "buyer", "seller"],
            "return_escalated",
        )
        assert world.returns.refunds == []
        # Escalated after the receipt: no deadline runs; a receipt again is not the seller's to confirm.
        await skip(time_skipping_env, TERMS.receipt_seconds + DAY)
        assert (await ret.state()).status == ESCALATED
        assert await ret.refused(ReturnWorkflow.receive, SELLER) == "InvalidTransition"
        # The seller restocked at receipt: that stands when support has the refund asked again (found from
        # outside: it was dropped).
        refunded = await ret.act(ReturnWorkflow.resolve, SUPPORT, approve=True, restock=False)
        assert (refunded.status, refunded.restocked) == (REFUNDED, True)
        assert await ret.result() == refunded
    assert [(r.amount, r.actor) for r in world.returns.refund_requests] == [
        (AMOUNT, Actor(SELLER.user_id, True)),
        (AMOUNT, Actor(SUPPORT.user_id, True)),
    ]
    assert len(world.returns.refunds) == 1
    assert world.returns.statuses() == ["approved", "shipped", "escalated", "refunded"]
    [saved] = [m for m in world.returns.moves if m.status == REFUNDED]
    assert (saved.actor_id, saved.actor_role, saved.restocked) == ("staff-1", "support", True)


async def test_a_refused_refund_that_support_rejects_ends_rejected(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    world = returns_world(refuse_refunds=1)
    async with returned(time_skipping_env, world) as ret:
        await shipped_and_refused(ret)
        assert await ret.refused(ReturnWorkflow.resolve, SUPPORT, approve=False) == "InvalidRequest"
        rejected = await ret.act(ReturnWorkflow.resolve, SUPPORT, approve=False, reason="disputed_by_buyer")
        assert (rejected.status, rejected.status_reason, rejected.allowed_actions) == (
            REJECTED,
            "disputed_by_buyer",
            [],
        )
        await ret.result()
    assert len(world.returns.refund_requests) == 1 and world.returns.refunds == []
    assert moves(world)[-1] == (
        5,
        REJECTED,
        "disputed_by_buyer",
        "staff-1",
        "support",
        "return.rejected",
        ["buyer"],
        "return_rejected",
    )
    assert world.returns.restocked == []


# ---- who may do what, when ------------------------------------------------------------------------------


async def test_moves_refused_by_who_asks_or_when_change_nothing(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    world = returns_world()
    async with returned(time_skipping_env, world) as ret:
        # Never this actor's move (403).
        assert await ret.refused(ReturnWorkflow.approve, BUYER) == "Forbidden"
        assert await ret.refused(ReturnWorkflow.reject, BUYER, reason="no") == "Forbidden"
        assert await ret.refused(ReturnWorkflow.approve, STRANGER) == "Forbidden"
        assert await ret.refused(ReturnWorkflow.ship, SELLER, tracking=TRACKING) == "Forbidden"
        assert await ret.refused(ReturnWorkflow.receive, BUYER) == "Forbidden"
        assert await ret.refused(ReturnWorkflow.cancel, SELLER) == "Forbidden"
        assert await ret.refused(ReturnWorkflow.resolve, SELLER, approve=True) == "Forbidden"
        # The actor's move, not now (409).
        assert await ret.refused(ReturnWorkflow.ship, BUYER, tracking=TRACKING) == "InvalidTransition"
        assert await ret.refused(ReturnWorkflow.receive, SELLER) == "InvalidTransition"
        assert await ret.refused(ReturnWorkflow.resolve, SUPPORT, approve=True) == "InvalidTransition"
        # A rejection says why (422).
        assert await ret.refused(ReturnWorkflow.reject, SELLER) == "InvalidRequest"
        assert await ret.refused(ReturnWorkflow.reject, SELLER, reason="") == "InvalidRequest"
        assert (await ret.state()) == ret.opened
        assert world.returns.moves == []
        await ret.act(ReturnWorkflow.approve, SELLER)
        assert await ret.refused(ReturnWorkflow.ship, SELLER, tracking=TRACKING) == "Forbidden"
        assert await ret.refused(ReturnWorkflow.approve, SELLER) == "InvalidTransition"
        assert (
            await ret.refused(ReturnWorkflow.reject, SELLER, reason="changed my mind") == "InvalidTransition"
        )
        await ret.act(ReturnWorkflow.cancel, BUYER)
        await ret.result()
    assert world.returns.statuses() == ["approved", "cancelled"]


async def test_an_approval_that_loses_the_race_with_a_rejection_is_refused(
    workflow_env: WorkflowEnvironment,
) -> None:
    """Both moves reach the return in one workflow task (sent while no worker polls): both pass their validators
    (the return is still requested), the rejection is saved first, and the approval, checked again under the
    return's lock, is refused. Nothing is approved after a rejection.

    On the dev server: on the time-skipping server, Updates sent while no worker polls never reach the next
    worker (the test hangs)."""
    world = returns_world()
    queue = f"test-{uuid.uuid4()}"
    request = start_return(str(uuid.uuid4()), str(uuid.uuid4()), TERMS, RETURNED)
    async with Worker(
        workflow_env.client, task_queue=queue, workflows=[ReturnWorkflow], activities=world.activities()
    ):
        _, handle = await open_return(workflow_env, queue, request)
    rejecting = asyncio.create_task(
        handle.execute_update(ReturnWorkflow.reject, ReturnRequest(SELLER, reason="used_not_damaged"))
    )
    await asyncio.sleep(0.5)
    approving = asyncio.create_task(handle.execute_update(ReturnWorkflow.approve, ReturnRequest(SELLER)))
    await asyncio.sleep(0.5)
    assert world.returns.moves == []  # nobody has run them yet
    async with Worker(
        workflow_env.client, task_queue=queue, workflows=[ReturnWorkflow], activities=world.activities()
    ):
        rejected = await rejecting
        assert (rejected.status, rejected.status_reason) == (REJECTED, "used_not_damaged")
        assert await refusal(approving) == "InvalidTransition"
        view = await handle.result()
        history = await handle.fetch_history()
    # Both were accepted (validated while requested): the approval was refused by its handler's check.
    accepted = [
        e.workflow_execution_update_accepted_event_attributes.accepted_request.input.name
        for e in history.events
        if e.HasField("workflow_execution_update_accepted_event_attributes")
    ]
    assert accepted == ["opened", "reject", "approve"]
    assert view.status == REJECTED
    assert moves(world) == [
        (
            2,
            REJECTED,
            "used_not_damaged",
            "seller-1",
            "seller",
            "return.rejected",
            ["buyer"],
            "return_rejected",
        )
    ]


@pytest.mark.parametrize("approved_first", [False, True], ids=["from_requested", "from_approved"])
async def test_the_buyer_withdraws_the_return(
    time_skipping_env: WorkflowEnvironment, approved_first: bool
) -> None:
    world = returns_world()
    async with returned(time_skipping_env, world) as ret:
        if approved_first:
            await ret.act(ReturnWorkflow.approve, SELLER)
        cancelled = await ret.act(ReturnWorkflow.cancel, BUYER)
        assert (cancelled.status, cancelled.status_reason, cancelled.allowed_actions) == (
            CANCELLED,
            "buyer_cancelled",
            [],
        )
        assert await ret.result() == cancelled
    seq = 3 if approved_first else 2
    assert moves(world)[-1] == (
        seq,
        CANCELLED,
        "buyer_cancelled",
        "buyer-1",
        "buyer",
        "return.cancelled",
        ["seller"],
        "return_cancelled",
    )
    assert world.returns.refund_requests == []


# ---- with the real order --------------------------------------------------------------------------------


async def test_support_asking_again_after_the_provider_refused_gets_the_order_to_refund(
    workflow_env: WorkflowEnvironment,
) -> None:
    """The real `refund_return` against a real lean order (dev server) whose provider refuses the first refund:
    the return escalates; support's approval asks the order again and the provider, now willing, refunds."""
    world = returns_world(reject_refunds=1)
    world.returns.prices = {"listing-1": 45_000}
    async with placed(workflow_env, world, dispute_window_seconds=3600) as order:
        await order.act(OrderWorkflow.accept, ActionRequest(SELLER))
        await order.act(OrderWorkflow.fulfil, ActionRequest(SELLER))
        real = ReturnActivities(Settings(_env_file=None, temporal_task_queue=order.queue))
        activities = [a for a in world.activities() if activity_name(a) != "refund_return"]
        async with returned(
            workflow_env,
            world,
            lines=[ReturnedLine("listing-1", 1)],
            order_id=order.id,
            activities=[*activities, real.refund_return],
        ) as ret:
            await ret.act(ReturnWorkflow.approve, SELLER)
            await ret.act(ReturnWorkflow.ship, BUYER, tracking=TRACKING)
            escalated = await ret.act(ReturnWorkflow.receive, SELLER, restock=True)
            assert (escalated.status, escalated.status_reason) == (ESCALATED, "refund_refused")
            assert [r.amount for r in world.rejected_refunds] == [45_000] and world.refunds == []
            view = await ret.act(ReturnWorkflow.resolve, SUPPORT, approve=True, restock=True)
            assert (view.status, [r.amount for r in world.refunds]) == (REFUNDED, [45_000])
            assert (await order.result()).status == "refunded"


async def test_a_return_refunds_what_the_order_still_holds_after_other_refunds(
    workflow_env: WorkflowEnvironment,
) -> None:
    """Found from outside: a seller's refund made after the return was asked for left the order holding less than
    the return's amount, and the return's refund was refused for good (escalated, and support's approval refused
    again). It refunds what the order still holds; one that holds nothing goes to support."""
    world = returns_world()
    world.returns.prices = {"listing-1": 45_000}
    async with placed(workflow_env, world, dispute_window_seconds=3600) as order:
        await order.act(OrderWorkflow.accept, ActionRequest(SELLER))
        await order.act(OrderWorkflow.fulfil, ActionRequest(SELLER))
        real = ReturnActivities(Settings(_env_file=None, temporal_task_queue=order.queue))
        faked = {"refund_return", "refundable"}
        activities = [a for a in world.activities() if activity_name(a) not in faked]
        async with returned(
            workflow_env,
            world,
            lines=[ReturnedLine("listing-1", 1)],
            order_id=order.id,
            activities=[*activities, real.refund_return, real.refundable],
        ) as ret:
            await ret.act(ReturnWorkflow.approve, SELLER)
            await order.act(OrderWorkflow.refund, ActionRequest(SELLER, refund_amount=30_000))
            await ret.act(ReturnWorkflow.ship, BUYER, tracking=TRACKING)
            view = await ret.act(ReturnWorkflow.receive, SELLER, restock=True)
            assert (view.status, view.amount) == (REFUNDED, 15_000)
            assert [r.amount for r in world.refunds] == [30_000, 15_000]
            assert [m.refunded_amount for m in world.returns.moves if m.status == REFUNDED] == [15_000]
            assert (await order.result()).status == "refunded"


async def test_a_return_whose_order_was_refunded_in_full_is_settled_by_that_refund(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    """Found from outside: it went to support, who could only reject it, and the lines the seller had back never
    went on sale. Nothing more is asked of the order; the return ends refunded, restocked as asked."""
    world = returns_world()
    world.returns.held = 0
    async with returned(time_skipping_env, world) as ret:
        await ret.act(ReturnWorkflow.approve, SELLER)
        await ret.act(ReturnWorkflow.ship, BUYER, tracking=TRACKING)
        view = await ret.act(ReturnWorkflow.receive, SELLER, restock=True)
        assert (view.status, view.status_reason, view.restocked) == (REFUNDED, "order_refunded_in_full", True)
        assert (view.amount, view.allowed_actions) == (AMOUNT, [])
        assert world.returns.refund_requests == []
        assert await ret.result() == view
    assert world.returns.statuses() == ["approved", "shipped", "refunded"]
    assert world.returns.restocked == [("listing-pump", 2)]


async def test_an_ask_refused_because_another_refund_took_part_is_asked_again_for_the_rest(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    """Found from outside: two returns received at once read what the order held before either refund landed;
    the order refused the second ask and the return went to support. It is asked again for what is left."""
    world = returns_world(refuse_refunds=1)
    world.returns.held_after_refusal = 1_500
    async with returned(time_skipping_env, world) as ret:
        await ret.act(ReturnWorkflow.approve, SELLER)
        await ret.act(ReturnWorkflow.ship, BUYER, tracking=TRACKING)
        view = await ret.act(ReturnWorkflow.receive, SELLER, restock=True)
        assert (view.status, view.amount, view.restocked) == (REFUNDED, 1_500, True)
    asks = [(r.amount, r.ask) for r in world.returns.refund_requests]
    assert asks == [(AMOUNT, 0), (1_500, 1)]  # each ask its own Update of the order
    assert [r.amount for r in world.returns.refunds] == [1_500]
    assert world.returns.statuses() == ["approved", "shipped", "refunded"]


async def test_supports_approval_refused_again_is_their_answer_and_moves_nothing(
    time_skipping_env: WorkflowEnvironment,
) -> None:
    """Found from outside: support's approval of a return the order still refused (disputed) answered with the
    return unchanged and escalated it to both sides a second time."""
    world = returns_world(refuse_refunds=2)
    async with returned(time_skipping_env, world) as ret:
        await shipped_and_refused(ret)
        assert await ret.refused(ReturnWorkflow.resolve, SUPPORT, approve=True) == "InvalidTransition"
        assert (await ret.state()).status == ESCALATED
        assert world.returns.statuses() == ["approved", "shipped", "escalated"]
        refunded = await ret.act(ReturnWorkflow.resolve, SUPPORT, approve=True)  # the order refunds now
        assert refunded.status == REFUNDED
