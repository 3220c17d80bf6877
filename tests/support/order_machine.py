"""The order property test's state machine (tests/workflows/test_order_properties.py says what it does and
checks): its steps (rules), the invariant after every step (its checks: `OrderChecks`, order_checks.py) and
the end of an example. `harness` (`Harness`, order_harness.py) is set by the test.
"""

from __future__ import annotations

import concurrent.futures
import time
import uuid
from collections import Counter
from collections.abc import Coroutine
from typing import Any, ClassVar

from hypothesis import note
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule
from temporalio.client import WithStartWorkflowOperation, WorkflowUpdateFailedError
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode

from bazaar.orders.types import (
    ActionRequest,
    Actor,
    ChargebackNotice,
    OrderView,
    PaymentReport,
    Placement,
    PlaceOrder,
    initial_search_attributes,
)
from bazaar.temporal import order_workflow_id
from tests.support.order_checks import SETTLE_BOUND, OrderChecks
from tests.support.order_harness import Harness, Placed, Sent
from tests.support.order_model import World
from tests.support.order_world import OUTCOMES, SELLER_ID, UNIT_PRICE
from workflows.dispute import dispute_workflow_id
from workflows.order import OrderWorkflow

UPDATE_BOUND = 10.0  # seconds an Update may take to answer
MAX_ORDERS = 4
MAX_SLEEP = 4.0  # seconds of `time_passes` per example
REFUSALS = frozenset(
    {"Forbidden", "InvalidTransition", "InvalidRequest", "NeedsAttention", "PaymentRejected"}
)

# Terms: bounds short enough for faults to go past them within a step (provider calls retry 1 s, 2 s, ...).
BOUNDS: dict[str, Any] = {
    "provider_timeout_seconds": 2,
    "attention_retry_seconds": 2,
    "step_timeout_seconds": 10,
    "dispute_escalation_seconds": 3600,
}
TERMS: dict[str, dict[str, Any]] = {
    "long": {"acceptance_timeout_seconds": 3600, "dispute_window_seconds": 3600},
    "short": {"acceptance_timeout_seconds": 3, "acceptance_reminder_seconds": 1, "dispute_window_seconds": 3},
}
SUPPORT = Actor("staff-1", is_support=True)
STRANGER = Actor("stranger-1")
PAYMENT_METHOD = "pm_card_visa"
ACTIONS = (
    "accept",
    "decline",
    "cancel",
    "fulfil",
    "confirm_receipt",
    "open_dispute",
    "retry_transfer",
    "retry",
)
# Choices for an order (the first of each is where failures shrink to).
BUYER_CHOICE = st.sampled_from(["buyer-1", "buyer-2", "buyer-1", SELLER_ID])  # the seller: own listing
QUANTITY_CHOICE = st.sampled_from([1, 2])
CHARGE_CHOICE = st.sampled_from(["ok", "ok", "ok", "ok", *(o for o in OUTCOMES if o != "ok")])
TERMS_CHOICE = st.sampled_from(list(TERMS))
# Who normally does what (the `party` choice); others are tried too, and must be refused.
PARTY = {
    "accept": "seller",
    "decline": "seller",
    "cancel": "buyer",
    "fulfil": "seller",
    "confirm_receipt": "buyer",
    "open_dispute": "buyer",
    "resolve_dispute": "support",
    "retry_transfer": "support",
    "retry": "support",
    "refund": "seller",
}
# The natural next actions in each state (`advance`), to get deep into the lifecycle in few steps.
NEXT: dict[str, tuple[str, ...]] = {
    "paid": ("accept", "accept", "accept", "decline", "cancel"),
    "confirmed": ("fulfil", "fulfil", "fulfil", "cancel"),
    "fulfilled": ("confirm_receipt", "open_dispute"),
    "disputed": ("release", "refund", "partial_refund"),
}
# The provider call an order in each state makes next (`provider_fault`).
FAULTED_NEXT = {"fulfilled": "transfer", "completed": "reverse_transfer", "disputed": "transfer"}
PICK = st.integers(0, 59)  # which of the eligible orders (and which of its next actions)


def any_open(machine: OrderMachine) -> bool:
    """Some order exists to act on. Only what the steps themselves decided counts here, never whether a
    workflow has ended yet: that depends on timing, and a precondition that varies between two runs of the
    same example makes Hypothesis fail the test as flaky. (A step on an ended order is refused, and checked.)"""
    return bool(machine.placed)


class OrderMachine(RuleBasedStateMachine, OrderChecks):
    """One example: a listing, up to MAX_ORDERS orders on it, and the steps above; `harness` is set by the
    test (one worker for all examples), the world is new for each example."""

    harness: ClassVar[Harness]
    # What the runs covered (printed at the end: `pytest -s`): examples, checked steps, states reached.
    examples: ClassVar[int] = 0
    steps: ClassVar[int] = 0
    reached: ClassVar[Counter[str]] = Counter()
    answers: ClassVar[Counter[str]] = Counter()

    def __init__(self) -> None:
        super().__init__()
        OrderMachine.examples += 1
        self.h = self.harness
        self.listing_id = f"listing-{uuid.uuid4()}"
        self.world = World(self.listing_id, 0)
        self.placed: dict[str, Placed] = {}
        self.sent: list[Sent] = []
        self.problems: list[str] = []
        self.slept = 0.0
        self.histories: dict[str, tuple[str, int]] = {}  # workflow id -> (run id, length) last read
        self.log: list[str] = []  # what happened, when driven outside Hypothesis (scripted scenarios)

    def note(self, message: str) -> None:
        if currently_in_test_context():
            note(message)
        else:
            self.log.append(message)

    # ---- plumbing -------------------------------------------------------------------------------------
    def on_loop(self, work: Any) -> Any:
        """Run `work(world)` on the worker's loop (the world is only touched there)."""

        async def call() -> Any:
            return work(self.world)

        return self.h.run(call())

    def send(self, label: str, coro: Coroutine[Any, Any, Any]) -> None:
        async def outcome() -> tuple[str, str, float]:
            started = time.monotonic()
            try:
                result = await coro
            except WorkflowUpdateFailedError as failed:
                cause = failed.cause
                if isinstance(cause, ApplicationError) and cause.type in REFUSALS:
                    return "refused", f"{cause.type}: {cause}", time.monotonic() - started
                return "unexpected", f"{type(cause).__name__} {cause!r}", time.monotonic() - started
            except WorkflowAlreadyStartedError:
                return "closed", "workflow already ended", time.monotonic() - started
            except RPCError as error:
                if error.status == RPCStatusCode.NOT_FOUND:
                    return "closed", str(error), time.monotonic() - started
                return "unexpected", f"RPCError {error.status} {error}", time.monotonic() - started
            except Exception as error:
                return "unexpected", f"{type(error).__name__} {error!r}", time.monotonic() - started
            view = result if isinstance(result, OrderView) else None
            shown = f"{view.status}/{view.payment_state}" if view else repr(result)
            return "ok", shown, time.monotonic() - started

        self.sent.append(Sent(label, self.h.submit(outcome())))

    def update(self, order: Placed, action: str, request: ActionRequest) -> None:
        self.send(
            f"{action} by {request.actor.user_id} on {order.order_id[:8]}",
            order.handle.execute_update(action, request, result_type=OrderView),
        )

    def actor(self, order: Placed, who: str, action: str) -> Actor:
        role = PARTY[action] if who == "party" else who
        return {
            "buyer": Actor(order.buyer),
            "seller": Actor(SELLER_ID),
            "support": SUPPORT,
            "stranger": STRANGER,
        }[role]

    def view_of(self, order: Placed) -> OrderView | None:
        if order.final is not None:
            return order.final
        try:
            view: OrderView | None = self.h.run(order.handle.query(OrderWorkflow.state), 30)
        except RPCError:
            return None
        return view

    def deliver(self, order: Placed, notice: ChargebackNotice) -> None:
        """What the webhook does with a `charge.dispute.*` event (api/routes/webhooks.py)."""
        order.last_notice = notice
        order.final = None
        status = self.on_loop(lambda w: w.orders[order.order_id].status)

        async def webhook() -> str:
            try:
                if status == "completed":
                    await self.h.client.start_workflow(
                        OrderWorkflow.run,
                        self.request(order, reopen=True),
                        id=order_workflow_id(order.order_id),
                        task_queue=self.h.queue,
                        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
                        start_signal="chargeback",
                        start_signal_args=[notice],
                    )
                    return "signal-with-start (reopen)"
                await order.handle.signal(OrderWorkflow.chargeback, notice)
                return "signalled"
            except RPCError as error:
                if error.status != RPCStatusCode.NOT_FOUND:
                    raise
                return "the order's workflow has ended: the webhook drops it"

        outcome = self.h.run(webhook())
        self.note(f"chargeback {notice.status} {notice.amount} on {order.order_id[:8]} ({status}): {outcome}")

    def request(self, order: Placed, reopen: bool = False) -> PlaceOrder:
        return PlaceOrder(
            order_id=order.order_id,
            buyer_id=order.buyer,
            listing_id=self.listing_id,
            quantity=order.quantity,
            payment_method="" if reopen else PAYMENT_METHOD,
            idempotency_key=f"client-{order.order_id}",
            reopen=reopen,
            **TERMS[order.terms],
            **BOUNDS,
        )

    # ---- rules ----------------------------------------------------------------------------------------
    @initialize(
        stock=st.integers(1, 3),
        buyer=BUYER_CHOICE,
        quantity=QUANTITY_CHOICE,
        charge=CHARGE_CHOICE,
        terms=TERMS_CHOICE,
    )
    def open_listing(self, stock: int, buyer: str, quantity: int, charge: str, terms: str) -> None:
        """A listing with a little stock, and its first order (every example has one)."""
        self.world = World(self.listing_id, stock)
        self.note(f"listing with stock {stock}")
        self.new_order(buyer, quantity, charge, terms)

    @precondition(lambda self: len(self.placed) < MAX_ORDERS)
    @rule(buyer=BUYER_CHOICE, quantity=QUANTITY_CHOICE, charge=CHARGE_CHOICE, terms=TERMS_CHOICE)
    def place_order(self, buyer: str, quantity: int, charge: str, terms: str) -> None:
        self.new_order(buyer, quantity, charge, terms)

    def new_order(self, buyer: str, quantity: int, charge: str, terms: str) -> str:
        order_id = str(uuid.uuid4())
        handle = self.h.client.get_workflow_handle(order_workflow_id(order_id))
        order = Placed(order_id, buyer, quantity, terms, handle)
        self.placed[order_id] = order

        async def register() -> None:
            self.h.router.register(order_id, self.world)
            self.world.plan(order_id, "charge", charge)

        self.h.run(register())
        self.send(f"place {order_id[:8]} ({buyer}, x{quantity}, charge {charge}, {terms})", self.place(order))
        return order_id

    async def place(self, order: Placed) -> OrderView | None:
        """The API's create-order call: update-with-start of the order and its `placement` Update."""
        req = self.request(order)
        start = WithStartWorkflowOperation(
            OrderWorkflow.run,
            req,
            id=order_workflow_id(order.order_id),
            task_queue=self.h.queue,
            id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
            id_reuse_policy=WorkflowIDReusePolicy.REJECT_DUPLICATE,
            search_attributes=initial_search_attributes(req, SELLER_ID, UNIT_PRICE * order.quantity),
        )
        view: OrderView | None = await self.h.client.execute_update_with_start_workflow(
            OrderWorkflow.placement,
            Placement(self.listing_id, order.quantity, PAYMENT_METHOD),
            start_workflow_operation=start,
            id="placement",
        )
        return view

    @precondition(any_open)
    @rule(pick=PICK)
    def advance(self, pick: int) -> None:
        """The natural next step of one of the orders that has one (the seller accepts a paid order, ...)."""
        self.advance_one(pick)

    @precondition(any_open)
    @rule(pick=PICK)
    def advance_another(self, pick: int) -> None:
        """Twice the weight of any other rule: most examples should get deep into the lifecycle."""
        self.advance_one(pick)

    def advance_one(self, pick: int) -> None:
        candidates: list[tuple[Placed, str]] = []
        for order in self.placed.values():
            view = self.view_of(order)
            if view is None:
                continue
            if view.attention is not None:
                candidates.append((order, "retry"))
            elif view.payment_state == "transfer_failed":
                candidates.append((order, "retry_transfer"))
            elif view.status in NEXT and view.payment_state != "chargeback":
                candidates.append((order, NEXT[view.status][pick % len(NEXT[view.status])]))
        if not candidates:
            return
        order, action = candidates[pick % len(candidates)]
        if action in ("release", "refund", "partial_refund"):
            self.do_resolve(order, action, 10_000, "party")
        else:
            self.do_act(order, action, "party")

    def live(self, pick: int) -> Placed:
        """One of the orders whose workflow has not ended (any order if all have)."""
        open_orders = [o for o in self.placed.values() if o.final is None] or list(self.placed.values())
        return open_orders[pick % len(open_orders)]

    @precondition(any_open)
    @rule(
        pick=PICK,
        action=st.sampled_from(ACTIONS),
        who=st.sampled_from(["party", "party", "buyer", "seller", "support", "stranger"]),
    )
    def act(self, pick: int, action: str, who: str) -> None:
        """Any action by anyone on an open order: what the rules refuse must be refused, and nothing else."""
        self.do_act(self.live(pick), action, who)

    def do_act(self, placed: Placed, action: str, who: str) -> None:
        request = ActionRequest(self.actor(placed, who, action))
        if action == "fulfil":
            request.tracking = {"carrier": "DHL", "tracking_number": "42"}
        if action == "open_dispute":
            request.reason, request.message = "not_as_described", "the frame is cracked"
        self.update(placed, action, request)

    @precondition(any_open)
    @rule(
        pick=PICK,
        resolution=st.sampled_from(["release", "refund", "partial_refund"]),
        refund_amount=st.sampled_from([10_000, 1, UNIT_PRICE - 1, UNIT_PRICE, 0, None]),
        who=st.sampled_from(["party", "buyer", "seller"]),
    )
    def resolve_dispute(self, pick: int, resolution: str, refund_amount: int | None, who: str) -> None:
        self.do_resolve(self.live(pick), resolution, refund_amount, who)

    def do_resolve(self, placed: Placed, resolution: str, refund_amount: int | None, who: str) -> None:
        request = ActionRequest(
            self.actor(placed, who, "resolve_dispute"),
            resolution=resolution,
            refund_amount=refund_amount if resolution == "partial_refund" else None,
        )
        self.update(placed, "resolve_dispute", request)

    @precondition(any_open)
    @rule(
        pick=PICK,
        amount=st.sampled_from([1_500, 1, UNIT_PRICE - 1, UNIT_PRICE, 2 * UNIT_PRICE, 0]),
        who=st.sampled_from(["party", "support", "buyer"]),
    )
    def refund(self, pick: int, amount: int, who: str) -> None:
        """Part or all of the escrowed money back, by the seller or support (more than is held is refused)."""
        placed = self.live(pick)
        request = ActionRequest(self.actor(placed, who, "refund"), reason="agreed", refund_amount=amount)
        self.update(placed, "refund", request)

    @precondition(any_open)
    @rule(
        pick=PICK,
        first=st.sampled_from(["accept", "cancel", "decline", "fulfil", "confirm_receipt", "open_dispute"]),
        second=st.sampled_from(["cancel", "accept", "decline", "fulfil", "confirm_receipt", "open_dispute"]),
    )
    def race(self, pick: int, first: str, second: str) -> None:
        """Two actors at once on one order (the API does not serialise them)."""
        placed = self.live(pick)
        for action in (first, second):
            request = ActionRequest(self.actor(placed, "party", action))
            if action == "open_dispute":
                request.reason = "not_received"
            self.update(placed, action, request)

    @precondition(any_open)
    @rule(
        pick=PICK,
        operation=st.sampled_from(["next", "next", "transfer", "refund", "reverse_transfer"]),
        outcome=st.sampled_from([o for o in OUTCOMES if o != "decline"]),
    )
    def provider_fault(self, pick: int, operation: str, outcome: str) -> None:
        """The next new `operation` call of an open order meets `outcome` at the provider (`next`: the call
        the order makes next: a refund while it may be cancelled, a transfer once shipped, ...)."""
        order = self.live(pick)
        if operation == "next":
            view = self.view_of(order)
            status = view.status if view is not None else "pending"
            operation = FAULTED_NEXT.get(status, "refund")
        self.on_loop(lambda w: w.plan(order.order_id, operation, outcome))
        self.note(f"next {operation} of {order.order_id[:8]}: {outcome}")

    @rule(
        pick=PICK,
        what=st.sampled_from(["chargeback_again", "payment_ours", "payment_elsewhere", "placement_again"]),
        status=st.sampled_from(["succeeded", "failed"]),
    )
    def redelivered(self, pick: int, what: str, status: str) -> None:
        """At-least-once inputs: a webhook delivered again, a payment report (ours, or a PaymentIntent this
        order did not make), the buyer's client retrying the create-order request."""
        if what == "chargeback_again":
            notified = [o for o in self.placed.values() if o.last_notice is not None]
            if notified:
                placed = notified[pick % len(notified)]
                assert placed.last_notice is not None
                self.deliver(placed, placed.last_notice)
            return
        placed = self.live(pick)
        order = placed.order_id
        if what == "placement_again":
            # The API answers a retry from the orders table unless the order is still pending (or has no
            # row yet); only then does it join the workflow (api/routes/orders.py `place_order`).
            status = self.on_loop(lambda w: w.orders[order].status if order in w.orders else None)
            if status in (None, "pending"):
                self.send(f"place again {order[:8]}", self.place(placed))
            return
        ours = what == "payment_ours"
        intent = self.on_loop(lambda w: w.charge_intent(order)) if ours else f"pi_elsewhere_{order[:8]}"
        report = PaymentReport(
            f"evt_{uuid.uuid4().hex[:12]}", intent or "pi_unknown", status, UNIT_PRICE, "EUR"
        )

        async def signal() -> None:
            try:
                await placed.handle.signal(OrderWorkflow.payment_reported, report)
            except RPCError as error:
                if error.status != RPCStatusCode.NOT_FOUND:
                    raise

        self.h.run(signal())

    def pick_order(self, pick: int, eligible: Any) -> Placed | None:
        """One of the orders `eligible(world, order id)` holds for, or None (the step does nothing)."""
        found = self.on_loop(lambda w: [o for o in self.placed.values() if eligible(w, o.order_id)])
        return found[pick % len(found)] if found else None

    @rule(pick=PICK, partial=st.booleans())
    def chargeback_opens(self, pick: int, partial: bool) -> None:
        """The buyer's bank disputes a charge: the network takes the money now, and the webhook tells us.
        Only a charge with money left on it, once per charge."""

        def disputable(w: World, order_id: str) -> bool:
            balance = w.balance(order_id)
            return balance.charged > balance.refunded and order_id not in w.disputes

        order = self.pick_order(pick, disputable)
        if order is None:
            return

        def open_one(w: World) -> ChargebackNotice:
            balance = w.balance(order.order_id)
            left = balance.charged - balance.refunded
            dispute = w.open_dispute(order.order_id, left // 2 if partial else left)
            return ChargebackNotice(dispute.dispute_id, "needs_response", dispute.amount, "EUR")

        self.deliver(order, self.on_loop(open_one))

    @rule(pick=PICK, won=st.booleans())
    def chargeback_decided(self, pick: int, won: bool) -> None:
        """The network decides an open dispute (`charge.dispute.closed`)."""

        def undecided(w: World, order_id: str) -> bool:
            dispute = w.disputes.get(order_id)
            return dispute is not None and dispute.status == "needs_response"

        order = self.pick_order(pick, undecided)
        if order is None:
            return

        def decide(w: World) -> ChargebackNotice:
            dispute = w.decide_dispute(order.order_id, won)
            return ChargebackNotice(dispute.dispute_id, dispute.status, dispute.amount, "EUR")

        self.deliver(order, self.on_loop(decide))

    @precondition(lambda self: self.slept < MAX_SLEEP)
    @rule(seconds=st.sampled_from([1.0, 3.5]))
    def time_passes(self, seconds: float) -> None:
        self.slept += seconds
        time.sleep(seconds)

    # ---- invariants -----------------------------------------------------------------------------------
    @invariant()
    def nothing_lost_doubled_or_stuck(self) -> None:
        OrderMachine.steps += 1
        for sent in self.sent:
            remaining = sent.sent_at + UPDATE_BOUND - time.monotonic()
            try:
                kind, detail, took = sent.future.result(max(0.0, remaining))
            except concurrent.futures.TimeoutError:
                self.problems.append(f"{sent.label}: no answer within {UPDATE_BOUND} s")
                continue
            self.note(f"{sent.label} -> {kind} {detail} ({took:.1f} s)")
            OrderMachine.answers[f"{sent.label.split()[0]} {kind}"] += 1
            if kind == "unexpected":
                self.problems.append(f"{sent.label}: unexpected failure {detail}")
        self.sent = [s for s in self.sent if not s.future.done()]
        assert not self.problems, self.problems
        problems = self.h.run(self.check(), SETTLE_BOUND + 60)
        assert not problems and not self.problems, "\n".join([*self.problems, *problems])

    def teardown(self) -> None:
        """End this example's workflows (orders wait for deadlines and support) and drop its world."""

        async def end() -> None:
            for order in self.placed.values():
                for workflow_id in (order_workflow_id(order.order_id), dispute_workflow_id(order.order_id)):
                    try:
                        await self.h.client.get_workflow_handle(workflow_id).terminate("example over")
                    except RPCError:
                        pass  # never started, or ended already
            self.h.router.forget(self.world)
            for row in self.world.orders.values():
                OrderMachine.reached.update(f"{s}/{p} ({r})" for s, r, p, _ in row.history.values())
            OrderMachine.reached.update(f"needs attention: {a.step}" for a in self.world.attention)
            OrderMachine.reached.update(f"run: {c}" for c in self.world.calls if c in ("load_order",))

        for sent in self.sent:
            sent.future.cancel()
        self.h.run(end())
