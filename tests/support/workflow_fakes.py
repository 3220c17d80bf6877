"""Fake activities for workflow tests: same names and payloads as the real ones, no I/O.

One FakeWorld serves both order workflow versions: the lean `Order` (local database steps, one
`save_transition` per transition, `report_attention`) and the frozen `OrderWorkflow` (`record_order_state`,
`release_stock`, notification and review children), so tests of either read the same world. It serves the
`Checkout` too (`reserve_checkout`, `settle_checkout`, its one charge): its `listings` each have a seller and a
stock, and the orders it places are lean `Order` children of the same world. And the `Return`'s (`open_return`,
`save_return`, `refund_return`): `returns` (tests/support/return_fakes.py) read the same listings and faults.
"""

from __future__ import annotations

import asyncio
import itertools
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from temporalio import activity
from temporalio.client import Client, WorkflowHandle
from temporalio.exceptions import ApplicationError

from activities.checkout import CheckoutOutcome
from activities.database import DATA_ERROR
from activities.disputes import DisputeStatusChange, OpenDispute, ThreadEntry
from activities.notifications import DeadLetterRequest
from activities.orders import (
    AttentionReport,
    LedgerPosting,
    OrderSnapshot,
    OrderStateChange,
    OrderTransition,
    RefundLinesClaim,
    ReserveStockInput,
    ReserveStockResult,
)
from activities.payments import (
    PAYOUTS_DISABLED,
    ChargebackMovement,
    ChargeRequest,
    ChargeResult,
    RefundRequest,
    RefundResult,
    ReleaseRequest,
    ReleaseReversalRequest,
    TransferRequest,
    TransferResult,
    TransferReversalRequest,
    TransferReversalResult,
)
from activities.provider_budget import LOCAL_BUDGET_SPENT
from activities.trust import OrderOutcome, ReviewWindowRequest
from bazaar.checkout.types import LineRefusal, Reservation, SellerOrder, StartCheckout
from bazaar.orders.types import ChargebackStatus, OrderLineView
from bazaar.trust.notifications import NotificationEvent
from tests.support.return_fakes import FakeReturns


@dataclass
class Fault:
    """A step that fails: `times` more calls (None: until cleared) with a plain exception (transient), after
    `seconds` (0: at once, like a refused connection; more: like a connection attempt that times out), or,
    with `data_error`, with the non-retryable `DataError` the real activities raise for data the database
    refuses."""

    times: int | None = None
    data_error: bool = False
    seconds: float = 0.0


# The PaymentIntent of a checkout's one charge (an order's own charge is "pi_fake").
CHECKOUT_INTENT = "pi_checkout"


@dataclass
class FakeListing:
    """A listing a checkout can buy: its seller, and its own stock (the single-listing order reads `stock`)."""

    seller_id: str
    title: str
    stock: int = 1


def checkout_order_id(checkout_id: str, seller_id: str) -> str:
    """The order a checkout places with a seller: derived from both, so a retried reservation makes the same."""
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"checkout:{checkout_id}:{seller_id}"))


@dataclass
class ReviewWindow:
    """A review window opened for an order: by the lean order's completion (`closes_at`) or by the legacy
    review round's `open_review_window` (`window_seconds`)."""

    order_id: str
    window_seconds: int | None = None
    closes_at: datetime | None = None


@dataclass
class FakeWorld:
    """What the fake activities saw and will answer."""

    stock: int = 1
    decline: bool = False
    reject_charge: bool = False  # the "provider" refuses the charge request itself (PaymentRejected)
    reject_refunds: int = 0  # how many refunds the "provider" refuses (PaymentRejected)
    reject_transfers: int = 0  # how many transfers the "provider" refuses (PaymentRejected)
    payouts_disabled: bool = False  # the seller's payouts are disabled at the provider (PayoutsDisabled)
    reject_reversals: bool = False
    local_budget_spent: bool = False  # the local-first share of the provider's request limit is spent
    local_spills: list[str] = field(default_factory=list)  # money calls the budget sent to the payments queue
    # Failing steps by activity name, or `save_transition:<action>` for one transition only.
    faults: dict[str, Fault] = field(default_factory=dict)
    delays: dict[str, float] = field(default_factory=dict)  # same keys: seconds a step takes
    failures: list[str] = field(default_factory=list)  # every fault raised, by key
    reservations: list[ReserveStockInput] = field(default_factory=list)
    reserved: dict[str, int] = field(default_factory=dict)  # order -> quantity still held
    charges: list[ChargeRequest] = field(default_factory=list)  # charge requests the provider accepted
    rejected_charges: list[ChargeRequest] = field(default_factory=list)
    states: list[OrderStateChange] = field(default_factory=list)  # OrderTransition for the lean order
    released: list[str] = field(default_factory=list)
    refunds: list[RefundRequest] = field(default_factory=list)  # refunds the provider made
    rejected_refunds: list[RefundRequest] = field(default_factory=list)
    escrow_releases: list[ReleaseRequest] = field(default_factory=list)  # however booked (see `_post`)
    postings: list[LedgerPosting] = field(default_factory=list)  # booked with a transition
    transfers: list[TransferRequest] = field(default_factory=list)
    reversals: list[TransferReversalRequest] = field(default_factory=list)
    release_reversals: list[ReleaseReversalRequest] = field(default_factory=list)
    chargebacks: list[ChargebackMovement] = field(default_factory=list)
    payouts: list[tuple[str, int]] = field(default_factory=list)  # transfers the "provider" accepted
    reversed_payouts: int = 0
    loads: int = 0
    attention_reports: list[AttentionReport] = field(default_factory=list)
    line_claims: list[RefundLinesClaim] = field(default_factory=list)  # refunds by lines claiming their units
    # Trust and notifications: what the order's transitions, children and activities did.
    mail_down: bool = False  # every delivery fails (after a short wait, like a refused SMTP connection)
    events: list[NotificationEvent] = field(default_factory=list)
    deliveries: dict[int, tuple[str, str]] = field(default_factory=dict)  # id -> (event type, recipient)
    delivered: list[int] = field(default_factory=list)
    dead: dict[int, float] = field(default_factory=dict)  # id -> when it was dead-lettered (monotonic)
    outcomes: list[OrderOutcome] = field(default_factory=list)
    review_windows: list[ReviewWindow] = field(default_factory=list)
    reviews_written: int = 2  # what reveal_reviews finds to reveal
    revealed: list[str] = field(default_factory=list)  # orders whose reviews were revealed
    dispute_cases: list[OpenDispute] = field(default_factory=list)
    dispute_thread: list[ThreadEntry] = field(default_factory=list)
    dispute_statuses: list[DisputeStatusChange] = field(default_factory=list)
    # The checkout: what its listings are, what it reserved (by checkout), and how it was settled.
    listings: dict[str, FakeListing] = field(default_factory=dict)
    checkout_reservations: list[StartCheckout] = field(default_factory=list)  # every reserve_checkout call
    checkouts: dict[str, Reservation] = field(default_factory=dict)  # checkout -> its (stored) reservation
    checkout_stock: dict[str, list[tuple[str, int]]] = field(default_factory=dict)  # order -> lines held
    settlements: list[CheckoutOutcome] = field(default_factory=list)
    returns: FakeReturns = field(default_factory=FakeReturns)  # the `Return`'s opening, moves and refunds
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    # ---- knobs -------------------------------------------------------------------------------------------
    def fail(self, step: str, times: int | None = None, seconds: float = 0.0) -> None:
        """`step` fails transiently `times` more times (None: until `clear`), each attempt after `seconds`."""
        self.faults[step] = Fault(times=times, seconds=seconds)

    def refuse(self, step: str) -> None:
        """`step` fails with a non-retryable DataError until `clear`."""
        self.faults[step] = Fault(data_error=True)

    def clear(self, step: str | None = None) -> None:
        if step is None:
            self.faults.clear()
        else:
            self.faults.pop(step, None)

    def _spend_local(self, name: str) -> None:
        """A local-first money call spends the local budget first, like `activities.payments._move_money`."""
        if self.local_budget_spent and activity.info().is_local:
            self.local_spills.append(name)
            raise ApplicationError("local share spent", type=LOCAL_BUDGET_SPENT, non_retryable=True)

    async def _step(self, name: str, detail: str | None = None) -> None:
        """Run a step's fault and delay, if any (`detail`: the transition's action)."""
        keys = [f"{name}:{detail}", name] if detail else [name]
        for key in keys:
            if key in self.delays:
                await asyncio.sleep(self.delays[key])
        for key in keys:
            fault = self.faults.get(key)
            if fault is None:
                continue
            self.failures.append(key)
            if fault.seconds:
                await asyncio.sleep(fault.seconds)
            if fault.data_error:
                raise ApplicationError(
                    f"the database refused the data: {key}", type=DATA_ERROR, non_retryable=True
                )
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    del self.faults[key]
            raise ConnectionError(f"connection refused ({key})")

    # ---- reading the world ---------------------------------------------------------------------------
    def notified(self, event_type: str) -> list[NotificationEvent]:
        return [e for e in self.events if e.event_type == event_type]

    def transitions(self) -> list[OrderTransition]:
        """What the lean order's `save_transition` saved, in order."""
        return [s for s in self.states if isinstance(s, OrderTransition)]

    async def eventually(self, check: Callable[[], bool], seconds: float = 15) -> None:
        """Children run on their own: poll until `check` holds."""
        deadline = time.monotonic() + seconds
        while not check():
            assert time.monotonic() < deadline, "timed out waiting for the order's children"
            await asyncio.sleep(0.05)

    def snapshot(self, order_id: str) -> OrderSnapshot:
        """What the database would hold after what these activities saw (for a reopened run)."""
        self.loads += 1
        last = self.states[-1]
        release = self.escrow_releases[-1] if self.escrow_releases else None
        payout = self.payouts[-1] if len(self.payouts) > self.reversed_payouts else None
        chargeback = next((c for c in reversed(self.chargebacks) if not c.reinstated), None)
        won = any(c.reinstated for c in self.chargebacks)
        return OrderSnapshot(
            order_id=order_id,
            buyer_id="buyer-1",
            seller_id="seller-1",
            listing_id="listing-1",
            listing_title="Road bike",
            quantity=1,
            amount=45_000,
            currency="EUR",
            status=last.status,
            reason=last.reason,
            payment_state=last.payment_state,
            tracking=last.tracking,
            seq=last.seq,
            payment_intent_id="pi_fake",
            refunded_amount=sum(r.amount for r in self.refunds),
            refunds=len(self.refunds),
            releases=len(self.escrow_releases),
            transfers=len(self.transfers),
            reversals=len(self.reversals),
            released=len(self.release_reversals) < len(self.escrow_releases),
            released_gross=release.gross if release else 0,
            released_fee=release.fee if release else 0,
            payout_transfer_id=payout[0] if payout else None,
            payout_amount=payout[1] if payout else 0,
            chargeback_id=chargeback.dispute_id if chargeback else None,
            chargeback_status=(
                None if chargeback is None else ChargebackStatus.WON if won else ChargebackStatus.LOST
            ),
            chargeback_amount=chargeback.amount if chargeback else 0,
        )

    def _post(self, order_id: str, posting: LedgerPosting) -> None:
        """A ledger movement booked with a transition (once per txn); a release of escrow is also read as
        the `release_escrow` it replaces, so tests see releases however the workflow books them."""
        if any(p.txn == posting.txn for p in self.postings):
            return
        self.postings.append(posting)
        if ":release:" in posting.txn:
            gross, fee = -posting.entries["escrow"], posting.entries.get("platform_fees", 0)
            self.escrow_releases.append(ReleaseRequest(order_id, gross, fee, "EUR", posting.txn))

    def _release(self, order_id: str) -> None:
        """The order's stock back to the listing, once (like the real `stock_reserved` flag); a checkout's order
        gives each of its lines back to its own listing."""
        self.released.append(order_id)
        self.stock += self.reserved.pop(order_id, 0)
        for listing_id, quantity in self.checkout_stock.pop(order_id, []):
            self.listings[listing_id].stock += quantity

    def _reserve_checkout(self, req: StartCheckout) -> Reservation:
        """Every line's stock and one order per seller, or nothing (like `bazaar.checkout.checkouts.reserve`,
        which takes the price the buyer saw when it is the listing's)."""
        if req.checkout_id in self.checkouts:  # a retry after the commit: the same reservation
            return self.checkouts[req.checkout_id]
        refusals = []
        for line in req.lines:
            listing = self.listings.get(line.listing_id)
            if listing is None:
                refusals.append(LineRefusal(line.listing_id, "listing_not_available"))
            elif listing.stock < line.quantity:
                refusals.append(LineRefusal(line.listing_id, "sold_out", listing.stock))
        if refusals or not req.lines:
            return Reservation(ok=False, refusals=refusals, reason="lines_unavailable")
        by_seller: dict[str, list[OrderLineView]] = {}
        for line in req.lines:
            listing = self.listings[line.listing_id]
            listing.stock -= line.quantity
            bought = OrderLineView(line.listing_id, listing.title, line.quantity, line.seen_amount)
            by_seller.setdefault(listing.seller_id, []).append(bought)
        orders = []
        for seller_id, lines in by_seller.items():
            order_id = checkout_order_id(req.checkout_id, seller_id)
            self.checkout_stock[order_id] = [(line.listing_id, line.quantity) for line in lines]
            amount = sum(line.unit_amount * line.quantity for line in lines)
            orders.append(SellerOrder(order_id, seller_id, amount, lines))
        self.checkouts[req.checkout_id] = Reservation(
            ok=True,
            amount=sum(order.amount for order in orders),
            currency=req.lines[0].seen_currency,
            orders=orders,
        )
        return self.checkouts[req.checkout_id]

    def _prepare(self, event: NotificationEvent) -> list[int]:
        """An event's notification rows, once per event key (like the real outbox)."""
        if any(e.event_key == event.event_key for e in self.events):
            return []
        self.events.append(event)
        ids = []
        for recipient in [*event.recipient_ids, *event.recipient_roles]:
            ids.append(next(self._ids))
            self.deliveries[ids[-1]] = (event.event_type, recipient)
        return ids

    def activities(self) -> list[Callable[..., Any]]:
        world = self

        # ---- orders (the lean order runs these as local activities) --------------------------------
        @activity.defn(name="reserve_stock")
        async def reserve_stock(req: ReserveStockInput) -> ReserveStockResult:
            await world._step("reserve_stock")
            world.reservations.append(req)
            if req.order_id in world.reserved:  # a retry after the commit: the same reservation
                return world._reservation(req.quantity)
            if world.stock < req.quantity:
                return ReserveStockResult(ok=False, reason="sold_out")
            world.stock -= req.quantity
            world.reserved[req.order_id] = req.quantity
            return world._reservation(req.quantity)

        @activity.defn(name="save_transition")
        async def save_transition(change: OrderTransition) -> bool:
            await world._step("save_transition", change.action)
            if any(s.order_id == change.order_id and s.seq >= change.seq for s in world.states):
                return False  # saved before: nothing twice
            world.states.append(change)
            for posting in change.ledger:
                world._post(change.order_id, posting)
            if change.release_stock:
                world._release(change.order_id)
            for notice in change.notices:
                world._prepare(notice)
            for outcome in (change.outcome, "disputed" if change.disputed else None):
                if outcome:
                    world.outcomes.append(OrderOutcome(change.order_id, outcome))
            if change.review_closes_at:
                world.review_windows.append(ReviewWindow(change.order_id, closes_at=change.review_closes_at))
            return True

        @activity.defn(name="claim_refund_lines")
        async def claim_refund_lines(claim: RefundLinesClaim) -> None:
            await world._step("claim_refund_lines")
            world.line_claims.append(claim)

        @activity.defn(name="report_attention")
        async def report_attention(report: AttentionReport) -> None:
            world.attention_reports.append(report)

        @activity.defn(name="load_order")
        async def load_order(order_id: str) -> OrderSnapshot:
            await world._step("load_order")
            return world.snapshot(order_id)

        # ---- the checkout (local activities of the `Checkout` workflow) -------------------------------
        @activity.defn(name="reserve_checkout")
        async def reserve_checkout(req: StartCheckout) -> Reservation:
            await world._step("reserve_checkout")
            world.checkout_reservations.append(req)
            return world._reserve_checkout(req)

        @activity.defn(name="settle_checkout")
        async def settle_checkout(outcome: CheckoutOutcome) -> None:
            await world._step("settle_checkout")
            world.settlements.append(outcome)
            if not outcome.paid:  # its orders cancelled, each one's stock back (once)
                for order in world.checkouts[outcome.checkout_id].orders:
                    if order.order_id in world.checkout_stock:
                        world._release(order.order_id)

        # ---- orders, legacy workflow --------------------------------------------------------------
        @activity.defn(name="release_stock")
        async def release_stock(order_id: str) -> bool:
            world._release(order_id)
            return True

        @activity.defn(name="record_order_state")
        async def record_order_state(change: OrderStateChange) -> None:
            world.states.append(change)

        # ---- payments -----------------------------------------------------------------------------
        @activity.defn(name="charge")
        async def charge(req: ChargeRequest) -> ChargeResult:
            await world._step("charge")
            if world.reject_charge:
                world.rejected_charges.append(req)
                raise ApplicationError("No such PaymentMethod", type="PaymentRejected", non_retryable=True)
            world.charges.append(req)
            if req.checkout_id is not None:  # the checkout's one charge: a declined PaymentIntent exists too
                return ChargeResult(
                    succeeded=not world.decline,
                    payment_intent_id=CHECKOUT_INTENT,
                    failure_code="card_declined" if world.decline else None,
                )
            if world.decline:
                return ChargeResult(succeeded=False, failure_code="card_declined")
            return ChargeResult(succeeded=True, payment_intent_id="pi_fake")

        @activity.defn(name="refund")
        async def refund(req: RefundRequest) -> RefundResult:
            await world._step("refund")
            world._spend_local("refund")
            if world.reject_refunds > 0:
                world.reject_refunds -= 1
                world.rejected_refunds.append(req)
                raise ApplicationError("charge_disputed", type="PaymentRejected", non_retryable=True)
            world.refunds.append(req)
            return RefundResult(refund_id=f"re_{len(world.refunds)}", amount=req.amount)

        @activity.defn(name="release_escrow")
        async def release_escrow(req: ReleaseRequest) -> None:
            await world._step("release_escrow")
            world.escrow_releases.append(req)

        @activity.defn(name="transfer")
        async def transfer(req: TransferRequest) -> TransferResult:
            await world._step("transfer")
            if world.payouts_disabled:  # refused before any call, like the real activity
                raise ApplicationError("payouts disabled", type=PAYOUTS_DISABLED, non_retryable=True)
            world._spend_local("transfer")
            world.transfers.append(req)
            if world.reject_transfers > 0:
                world.reject_transfers -= 1
                raise ApplicationError("No such destination", type="PaymentRejected", non_retryable=True)
            world.payouts.append((f"tr_fake_{len(world.transfers)}", req.amount))
            return TransferResult(transfer_id=f"tr_fake_{len(world.transfers)}", destination="acct_fake")

        @activity.defn(name="reverse_transfer")
        async def reverse_transfer(req: TransferReversalRequest) -> TransferReversalResult:
            world._spend_local("reverse_transfer")
            world.reversals.append(req)
            if world.reject_reversals:
                raise ApplicationError("insufficient funds", type="PaymentRejected", non_retryable=True)
            world.reversed_payouts += 1
            return TransferReversalResult(reversal_id=f"trr_{len(world.reversals)}", amount=req.amount)

        @activity.defn(name="reverse_release")
        async def reverse_release(req: ReleaseReversalRequest) -> None:
            await world._step("reverse_release")
            world.release_reversals.append(req)

        @activity.defn(name="record_chargeback")
        async def record_chargeback(req: ChargebackMovement) -> None:
            await world._step("record_chargeback")
            world.chargebacks.append(req)

        # ---- notifications, trust and disputes ------------------------------------------------------
        @activity.defn(name="prepare_notifications")
        async def prepare_notifications(req: NotificationEvent) -> list[int]:
            return world._prepare(req)  # the real activity returns only rows not yet sent

        @activity.defn(name="deliver_notification")
        async def deliver_notification(notification_id: int) -> str:
            if world.mail_down:
                await asyncio.sleep(0.2)
                raise ConnectionRefusedError("SMTP server is down")
            world.delivered.append(notification_id)
            return "sent"

        @activity.defn(name="dead_letter_notification")
        async def dead_letter_notification(req: DeadLetterRequest) -> None:
            world.dead[req.notification_id] = time.monotonic()

        @activity.defn(name="record_order_outcome")
        async def record_order_outcome(req: OrderOutcome) -> None:
            world.outcomes.append(req)

        @activity.defn(name="open_review_window")
        async def open_review_window(req: ReviewWindowRequest) -> str:
            world.review_windows.append(ReviewWindow(req.order_id, window_seconds=req.window_seconds))
            return "2026-12-10T12:00+00:00"

        @activity.defn(name="reveal_reviews")
        async def reveal_reviews(order_id: str) -> int:
            world.revealed.append(order_id)
            return world.reviews_written

        @activity.defn(name="reveal_due_reviews")
        async def reveal_due_reviews() -> int:
            """Reveal every window opened with a closing time that has passed, once."""
            now = datetime.now(UTC)
            due = [
                w.order_id
                for w in world.review_windows
                if w.closes_at is not None and w.closes_at <= now and w.order_id not in world.revealed
            ]
            world.revealed.extend(due)
            return len(due)

        @activity.defn(name="open_dispute_case")
        async def open_dispute_case(req: OpenDispute) -> str:
            world.dispute_cases.append(req)
            for event in req.notices:  # written in the case's own transaction, like the real outbox
                world._prepare(event)
            return "case-1"

        @activity.defn(name="append_dispute_thread")
        async def append_dispute_thread(entry: ThreadEntry) -> None:
            world.dispute_thread.append(entry)
            if entry.status is not None:  # the entry moves the case too (one transaction)
                world.dispute_statuses.append(
                    DisputeStatusChange(entry.order_id, entry.status, notices=entry.notices)
                )
            for event in entry.notices:
                world._prepare(event)

        @activity.defn(name="set_dispute_status")
        async def set_dispute_status(change: DisputeStatusChange) -> None:
            world.dispute_statuses.append(change)
            for event in change.notices:
                world._prepare(event)

        return [
            prepare_notifications,
            deliver_notification,
            dead_letter_notification,
            record_order_outcome,
            open_review_window,
            reveal_reviews,
            reveal_due_reviews,
            open_dispute_case,
            append_dispute_thread,
            set_dispute_status,
            load_order,
            reserve_stock,
            save_transition,
            claim_refund_lines,
            report_attention,
            release_stock,
            record_order_state,
            charge,
            refund,
            release_escrow,
            transfer,
            reverse_transfer,
            reverse_release,
            record_chargeback,
            reserve_checkout,
            settle_checkout,
            *world.returns.activities(world),
        ]

    def _reservation(self, quantity: int) -> ReserveStockResult:
        return ReserveStockResult(
            ok=True,
            seller_id="seller-1",
            listing_title="Road bike",
            unit_amount=45_000,
            amount=45_000 * quantity,
            currency="EUR",
        )


def activity_name(fn: Callable[..., Any]) -> str:
    defn = activity._Definition.from_callable(fn)
    assert defn is not None and defn.name is not None
    return defn.name


def review_closes_in(window: ReviewWindow, seconds: int) -> bool:
    """The window closes `seconds` from about now (the completion just happened)."""
    assert window.closes_at is not None
    expected = datetime.now(UTC) + timedelta(seconds=seconds)
    return abs((window.closes_at - expected).total_seconds()) < 60


async def children_finished(client: Client, parent: WorkflowHandle[Any, Any]) -> None:
    """Wait for every child the parent started. Call before a test's worker stops: a child's activity left
    scheduled on a queue nobody polls keeps the time-skipping server from ever skipping time again."""
    history = await parent.fetch_history()
    for event in history.events:
        if event.HasField("child_workflow_execution_started_event_attributes"):
            child = event.child_workflow_execution_started_event_attributes.workflow_execution
            await client.get_workflow_handle(child.workflow_id, run_id=child.run_id).result()


async def child_workflow_types(parent: WorkflowHandle[Any, Any]) -> list[str]:
    """The workflow types of the children the parent started, in order."""
    history = await parent.fetch_history()
    return [
        event.start_child_workflow_execution_initiated_event_attributes.workflow_type.name
        for event in history.events
        if event.HasField("start_child_workflow_execution_initiated_event_attributes")
    ]
