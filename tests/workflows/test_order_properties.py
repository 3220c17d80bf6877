"""Property test of the order workflow: a Hypothesis state machine interleaves, across a few orders on one
listing with little stock, what buyers, sellers, support, the payment provider and the clock do, and checks
after every step that nothing is lost, doubled or stuck.

The workflow runs for real (one Temporal dev server, one worker on its own task queue for the module); its
activities run against `order_model.World`, a fake database and provider with real semantics, fresh for each
example. Steps: place an order (its charge meeting a chosen provider outcome), the actors' Updates (alone or
two at once), support's `resolve_dispute`/`retry_transfer`/`retry`, provider webhooks (`payment_reported`,
chargebacks opened and decided, redelivered), faults planned for the next refund/transfer/reversal, and time
passing (short acceptance and dispute deadlines for some orders).

After every step, once the workflows have settled (bounded), the invariants:
- every Update answered (or was refused with Forbidden, InvalidTransition, InvalidRequest, NeedsAttention or
  PaymentRejected) within `UPDATE_BOUND` seconds; no workflow failed, no workflow task failed, none is busy
  past `SETTLE_BOUND`;
- stock: the listing's stock plus what orders hold is the initial stock; a terminal order that never shipped
  holds none, an order that may still ship holds its own;
- money, per order: the provider's balances equal the ledger's; the ledger sums to zero; refunded <= charged;
  the seller is never paid more than was released; a terminal order keeps nothing in escrow; no idempotency
  key is reused for another request, and the workflow asks the provider for nothing it must refuse;
- the orders table equals the workflow's view (status, reason, payment state) and its search attributes,
  and no transition is silently dropped by the table (seq never goes backwards).

Failures it found are kept in FOUND as scripted sequences of the machine's own steps, replayed (with the
invariants after each step) before exploring, so a known failure fails every run, not one run in ten.

Run: `make test` (profile `default`: 15 examples of up to 12 steps, tests/conftest.py) or `make test-long`
(profile `long`: 300 examples of up to 40 steps); `pytest -s` prints what the examples reached.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar, TypeVar

import pytest
from hypothesis import note
from hypothesis import strategies as st
from hypothesis.control import currently_in_test_context
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)
from temporalio.client import (
    Client,
    WithStartWorkflowOperation,
    WorkflowExecutionDescription,
    WorkflowExecutionStatus,
    WorkflowHandle,
    WorkflowUpdateFailedError,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy
from temporalio.exceptions import ApplicationError, WorkflowAlreadyStartedError
from temporalio.service import RPCError, RPCStatusCode
from temporalio.testing import WorkflowEnvironment
from temporalio.worker import Worker

from bazaar.orders.types import (
    NEEDS_ATTENTION,
    ORDER_STATUS,
    PAYMENT_STATE,
    TERMINAL,
    ActionRequest,
    Actor,
    ChargebackNotice,
    OrderView,
    PaymentReport,
    Placement,
    PlaceOrder,
    initial_search_attributes,
    order_workflow_id,
)
from tests.workflows.order_model import (
    BUYER_PAYMENTS,
    CHARGEBACKS,
    ESCROW,
    OUTCOMES,
    REFUNDS,
    SELLER_ID,
    SELLER_PAYABLE,
    SELLER_PAYOUTS,
    UNIT_PRICE,
    Router,
    World,
)
from worker import WORKFLOWS
from workflows.dispute import dispute_workflow_id
from workflows.order import OrderWorkflow

T = TypeVar("T")

UPDATE_BOUND = 10.0  # seconds an Update may take to answer
SETTLE_BOUND = 15.0  # seconds the workflows may stay busy after a step
MAX_ORDERS = 4
MAX_SLEEP = 4.0  # seconds of `time_passes` per example
REFUSALS = frozenset(
    {"Forbidden", "InvalidTransition", "InvalidRequest", "NeedsAttention", "PaymentRejected"}
)

# Terms: bounds short enough for faults to go past them within a step (provider calls retry 1 s, 2 s, ...).
BOUNDS: dict[str, int] = {
    "provider_timeout_seconds": 2,
    "attention_retry_seconds": 2,
    "step_timeout_seconds": 10,
    "dispute_escalation_seconds": 3600,
}
TERMS: dict[str, dict[str, int]] = {
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


class Harness:
    """An event loop of our own in a thread (Hypothesis's steps are sync; pytest-asyncio's loop is not
    running during a sync test), a client of the session's dev server and a worker on a fresh task queue."""

    def __init__(self, target: str, namespace: str) -> None:
        self.router = Router()
        self.queue = f"order-properties-{uuid.uuid4()}"
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="order-properties", daemon=True)
        self.thread.start()
        self.client: Client = self.run(Client.connect(target, namespace=namespace))
        self.worker: Worker = self.run(self._worker())
        self.serving = self.submit(self.worker.run())

    async def _worker(self) -> Worker:
        return Worker(
            self.client,
            task_queue=self.queue,
            workflows=WORKFLOWS,
            activities=self.router.activities(),
        )

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 60) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def submit(self, coro: Coroutine[Any, Any, T]) -> concurrent.futures.Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        try:
            self.run(self.worker.shutdown())
            self.serving.result(30)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self.thread.join(10)
            self.loop.close()


@pytest.fixture(scope="module")
def harness(workflow_env: WorkflowEnvironment) -> Iterator[Harness]:
    config = workflow_env.client.service_client.config
    h = Harness(config.target_host, workflow_env.client.namespace)
    try:
        yield h
    finally:
        h.close()


@dataclass
class Placed:
    order_id: str
    buyer: str
    quantity: int
    terms: str
    handle: WorkflowHandle[Any, Any]
    last_notice: ChargebackNotice | None = None
    final: OrderView | None = None  # the result of its closed run (until a chargeback reopens it)


@dataclass
class Sent:
    """An Update (or placement) in flight: settled by the invariant, which holds it to UPDATE_BOUND."""

    label: str
    future: concurrent.futures.Future[tuple[str, str, float]]
    sent_at: float = field(default_factory=time.monotonic)


def any_open(machine: OrderMachine) -> bool:
    """Some order's workflow has not ended (actions on ended ones are tried, but rarely pay)."""
    return any(o.final is None for o in machine.placed.values())


class OrderMachine(RuleBasedStateMachine):
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

    async def settle(self) -> tuple[list[str], dict[str, WorkflowExecutionDescription]]:
        """Wait until no activity runs and no open order has work pending (twice in a row, the histories
        unchanged), within SETTLE_BOUND. Returns what is still busy, and each open order's description."""
        deadline = time.monotonic() + SETTLE_BOUND
        previous: dict[str, int] | None = None
        busy: list[str] = []
        descs: dict[str, WorkflowExecutionDescription] = {}
        while time.monotonic() < deadline:
            busy = [f"{self.world.inflight} activities running"] if self.world.inflight else []
            descs = {}
            for order in self.placed.values():
                if order.final is not None:
                    continue  # closed, and nothing reopened it since
                try:
                    desc = await order.handle.describe()
                except RPCError:
                    continue
                raw = desc.raw_description
                descs[order.order_id] = desc
                if raw.pending_activities:
                    names = [p.activity_type.name for p in raw.pending_activities]
                    busy.append(f"{order.order_id[:8]} pending activities {names}")
                if raw.HasField("pending_workflow_task") and raw.pending_workflow_task.attempt <= 1:
                    busy.append(f"{order.order_id[:8]} workflow task pending")  # (a failing one is reported)
            lengths = {order_id: desc.history_length for order_id, desc in descs.items()}
            if not busy and lengths == previous:
                return [], descs
            previous = None if busy else lengths
            await asyncio.sleep(0.05)
        return [f"not settled within {SETTLE_BOUND} s: {busy}"], descs

    async def check(self) -> list[str]:
        problems, descs = await self.settle()
        w = self.world
        problems += [f"model: {v}" for v in w.violations]
        held = w.held_stock()
        if w.listing.quantity + held != w.listing.initial:
            problems.append(
                f"stock: listing {w.listing.quantity} + held {held} != initial {w.listing.initial}"
            )
        for order in self.placed.values():
            found = await self.check_order(order, descs.get(order.order_id))
            problems += [f"order {order.order_id[:8]}: {p}" for p in found]
        return problems

    async def check_order(self, order: Placed, desc: WorkflowExecutionDescription | None) -> list[str]:
        """The order's workflow, its table row, its stock and its money agree (see the module docstring)."""
        w = self.world
        problems: list[str] = []
        if order.final is None:
            if desc is None:
                return []  # not started (a placement still in flight is held to its bound above)
            problems += await self.workflow_problems(order, desc)
        view = order.final or await self.view_now(order, desc)
        if view is None:
            return [*problems, "no view after settling"]
        row = w.orders.get(order.order_id)
        balance = w.balance(order.order_id)
        ledger = w.ledger_of(order.order_id)
        ended = view.status in TERMINAL and view.payment_state != "transfer_failed"
        if row is None:
            if view.status != "rejected":
                problems.append(f"no orders row for a {view.status} order")
            return problems
        # The table is the workflow's view.
        if (row.status, row.reason, row.payment_state) != (view.status, view.reason, view.payment_state):
            problems.append(
                f"table {row.status}/{row.reason}/{row.payment_state} (seq {row.seq}) != workflow "
                f"{view.status}/{view.reason}/{view.payment_state}"
            )
        # Stock.
        if row.status in TERMINAL and row.stock_reserved and not row.shipped:
            problems.append(f"{row.status} ({row.reason}) but still holds {row.quantity} in stock")
        if row.status in ("pending", "paid", "confirmed") and not row.stock_reserved:
            problems.append(f"{row.status} but its stock went back to the listing (oversell)")
        # Money: the provider and the ledger agree, and the ledger balances.
        pairs = {
            "charged": (balance.charged, -ledger[BUYER_PAYMENTS]),
            "refunded": (balance.refunded, ledger[REFUNDS]),
            "paid out": (balance.transferred - balance.reversed, ledger[SELLER_PAYOUTS]),
            "charged back": (balance.charged_back, ledger[CHARGEBACKS]),
        }
        for what, (provider, booked) in pairs.items():
            if provider != booked:
                problems.append(f"{what}: provider {provider} != ledger {booked}")
        if sum(ledger.values()) != 0:
            problems.append(f"ledger does not balance: {ledger}")
        if balance.refunded > balance.charged:
            problems.append(f"refunded {balance.refunded} > charged {balance.charged}")
        if view.refunded_amount != balance.refunded:
            problems.append(f"view refunded {view.refunded_amount} != provider refunded {balance.refunded}")
        if ledger[SELLER_PAYABLE] < 0:
            problems.append(f"seller paid {-ledger[SELLER_PAYABLE]} more than was released: {ledger}")
        lost = any(
            key.startswith(f"{order.order_id}:transfer_reversal:") and p.outcome == "failed"
            for key, p in w.payments.items()
        )
        if ledger[ESCROW] < 0 and not lost:
            problems.append(f"escrow {ledger[ESCROW]} < 0 without a refused transfer reversal: {ledger}")
        if ended and ledger[ESCROW] > 0:
            problems.append(f"{view.status} ({view.reason}) but {ledger[ESCROW]} still in escrow: {ledger}")
        if ended and ledger[SELLER_PAYABLE] != 0:
            problems.append(f"{view.status} but {ledger[SELLER_PAYABLE]} released and not paid out")
        return problems

    async def workflow_problems(self, order: Placed, desc: WorkflowExecutionDescription) -> list[str]:
        problems = []
        if desc.status not in (WorkflowExecutionStatus.RUNNING, WorkflowExecutionStatus.COMPLETED):
            problems.append(f"workflow is {desc.status}")
        problems += await self.task_failures(desc.id)
        problems += await self.task_failures(dispute_workflow_id(order.order_id))
        view = await self.view_now(order, desc)
        if view is None:
            return [*problems, "no view of the order (its workflow task keeps failing?)"]
        attrs = desc.typed_search_attributes
        shown = (attrs.get(ORDER_STATUS), attrs.get(PAYMENT_STATE), attrs.get(NEEDS_ATTENTION))
        if shown != (view.status, view.payment_state, view.attention is not None):
            problems.append(f"search attributes {shown} != view {view.status}/{view.payment_state}")
        ended = view.status in TERMINAL and view.payment_state != "transfer_failed"
        if desc.status == WorkflowExecutionStatus.COMPLETED and not ended:
            problems.append(f"workflow ended with the order {view.status}/{view.payment_state}")
        if desc.status == WorkflowExecutionStatus.RUNNING and ended:
            problems.append(f"workflow still running with the order {view.status}/{view.payment_state}")
        if desc.status == WorkflowExecutionStatus.COMPLETED:
            order.final = view
        return problems

    async def view_now(self, order: Placed, desc: WorkflowExecutionDescription | None) -> OrderView | None:
        """A running order's view (query), or a closed run's result (no replay needed)."""
        if desc is not None and desc.status == WorkflowExecutionStatus.COMPLETED:
            handle = self.h.client.get_workflow_handle(desc.id, run_id=desc.run_id, result_type=OrderView)
            result: OrderView = await handle.result()
            return result
        if desc is not None and desc.raw_description.pending_workflow_task.attempt > 1:
            return None  # its workflow task keeps failing: a query would wait for it (reported above)
        try:
            view: OrderView | None = await order.handle.query(
                OrderWorkflow.state, rpc_timeout=timedelta(seconds=10)
            )
        except RPCError as error:  # e.g. its workflow task keeps failing (reported with the failure)
            self.problems.append(f"order {order.order_id[:8]}: cannot query its state: {error}")
            return None
        return view

    async def task_failures(self, workflow_id: str) -> list[str]:
        """Workflow task failures (a bug in workflow code leaves the workflow RUNNING, retrying its task);
        a history is read again only when it grew."""
        try:
            desc = await self.h.client.get_workflow_handle(workflow_id).describe()
        except RPCError as error:
            if error.status == RPCStatusCode.NOT_FOUND:
                return []
            raise
        seen = (desc.run_id or "", desc.history_length)
        if self.histories.get(workflow_id) == seen:
            return []
        self.histories[workflow_id] = seen
        found = []
        handle = self.h.client.get_workflow_handle(workflow_id, run_id=desc.run_id)
        async for event in handle.fetch_history_events():
            if event.HasField("workflow_task_failed_event_attributes"):
                failure = event.workflow_task_failed_event_attributes.failure
                where = [line.strip() for line in failure.stack_trace.splitlines() if "/workflows/" in line]
                found.append(
                    f"{workflow_id}: workflow task failed: {failure.application_failure_info.type} "
                    f"{failure.message[:200]} ({where[-1] if where else 'no workflow frame'})"
                )
        return found

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


def payout_answered_past_the_bound(m: OrderMachine) -> Iterator[None]:
    """The provider makes the seller's transfer but answers after the bound, then is unreachable for a few
    attempts: `_pay_out` takes the timeout for a refusal and records `transfer_failed` although the money
    went out (the ledger never books it), and support's `retry_transfer` (docs/operations.md: "the refused
    attempt moved no money") pays the seller again under a new key (provider 80940 paid out, ledger 40470)."""
    m.open_listing(stock=1, buyer="buyer-1", quantity=1, charge="ok", terms="long")
    yield
    for _ in ("accept", "fulfil"):
        m.advance(pick=0)
        yield
    m.provider_fault(pick=0, operation="transfer", outcome="slow_outage")
    yield
    m.advance(pick=0)  # confirm_receipt: fails here (paid out at the provider, not in the ledger)
    yield
    m.advance(pick=0)  # retry_transfer: the seller is paid a second time
    yield


def provider_outage_during_an_update(m: OrderMachine) -> Iterator[None]:
    """The provider is unreachable for a few attempts when support cancels a confirmed order. Found with
    temporalio 1.35: the refund's local first attempts retried past their 2 s `schedule_to_close_timeout`
    (backoffs under `local_retry_threshold` stay in the task), so the cancel answered after 15 s (never, while
    the outage lasted) and the order never showed NeedsAttention. Fixed (local_retry_threshold); kept as a
    regression sequence."""
    m.open_listing(stock=1, buyer="buyer-1", quantity=1, charge="ok", terms="long")
    yield
    m.advance(pick=0)  # accept
    yield
    m.provider_fault(pick=0, operation="refund", outcome="outage")
    yield
    m.act(pick=0, action="cancel", who="support")  # failed here: no answer within 10 s
    yield


def partial_chargeback_lost_before_shipping(m: OrderMachine) -> Iterator[None]:
    """A partial chargeback, lost, on an order that never shipped leaves the rest frozen in a `disputed`
    order; resolving it (`release`) completes the order with its stock still reserved, for ever (and pays
    the seller for an item that was never sent); `refund` would also keep the stock (release_stock=False)."""
    m.open_listing(stock=1, buyer="buyer-1", quantity=1, charge="ok", terms="long")
    yield
    m.chargeback_opens(pick=0, partial=True)
    yield
    m.chargeback_decided(pick=0, won=False)
    yield
    m.resolve_dispute(pick=0, resolution="release", refund_amount=None, who="party")  # fails here
    yield


def lost_chargeback_redelivered_after_completion(m: OrderMachine) -> Iterator[None]:
    """A partial chargeback is lost, support releases the rest (the order completes), then the dispute's
    `lost` status is delivered again (another `charge.dispute.*` event): the webhook reopens the completed
    order; `load_order` reports the chargeback as `withdrawn` (it says `lost` only for a refunded order), so
    the reopened run closes it again and `_close_chargeback` fails `assert self._before_chargeback is not
    None` (never set by `_restore`): the workflow task fails on every retry, the order is stuck and cannot
    be queried."""
    m.open_listing(stock=1, buyer="buyer-1", quantity=1, charge="ok", terms="long")
    yield
    for _ in ("accept", "fulfil"):
        m.advance(pick=0)
        yield
    m.chargeback_opens(pick=0, partial=True)
    yield
    m.chargeback_decided(pick=0, won=False)  # disputed/frozen: the rest waits for support
    yield
    m.advance(pick=0)  # support resolves: release -> completed
    yield
    m.redelivered(pick=0, what="chargeback_again", status="succeeded")  # fails here
    yield


# Failures this test found, as minimal sequences of its own steps; replayed (each step followed by the
# invariants) before exploring, so they fail the same way on every run until the workflow is fixed.
FOUND: list[Callable[[OrderMachine], Iterator[None]]] = [
    payout_answered_past_the_bound,
    provider_outage_during_an_update,
    partial_chargeback_lost_before_shipping,
    lost_chargeback_redelivered_after_completion,
]


def replay(harness: Harness, sequence: Callable[[OrderMachine], Iterator[None]]) -> str | None:
    """Run a scripted sequence through the machine, checking the invariants after each step: the failure,
    with what happened, or None."""
    OrderMachine.harness = harness
    machine = OrderMachine()
    try:
        for _ in sequence(machine):
            machine.nothing_lost_doubled_or_stuck()
    except AssertionError as failure:
        steps = "\n  ".join(machine.log)
        return f"{sequence.__name__}: {failure}\n  {steps}"
    finally:
        machine.teardown()
    return None


def test_order_workflow_properties(harness: Harness) -> None:
    failures = [f for f in (replay(harness, sequence) for sequence in FOUND) if f is not None]
    assert not failures, "\n\n".join(failures)  # known failures first: no need to explore until fixed
    OrderMachine.harness = harness
    OrderMachine.examples = OrderMachine.steps = 0
    started = time.monotonic()
    try:
        run_state_machine_as_test(OrderMachine)
    finally:
        print(
            f"\norder properties: {OrderMachine.examples} examples, {OrderMachine.steps} checked steps, "
            f"{time.monotonic() - started:.0f} s\nstates reached: {sorted(OrderMachine.reached.items())}\n"
            f"answers: {sorted(OrderMachine.answers.items())}"
        )
