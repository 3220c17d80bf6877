"""A fake world with real semantics for the order workflow's activities: a listing's stock, the orders table,
the payments table and the ledger (as `activities.orders` / `activities.payments` write them), and a payment
provider that keeps every idempotent request's answer and each order's balances.

Unlike `fakes.py` (which records what the workflow asked), this model *does* what the real activities do, with
the same rules, so that a property test can compare the three views of one order (the workflow's, the
database's and the provider's) after any interleaving of actions, webhooks, faults and timers:

- stock: `reserve_stock` takes it under the listing's lock, `release_stock`/`save_transition(release_stock)`
  gives it back once per order (`stock_reserved`), a listing at 0 is sold out;
- provider: one stored answer per idempotency key (the same key replays it, the same key with a different
  request is an error, as at Stripe), balances per order (charged, refunded, transferred, reversed,
  charged back), and the checks a real provider makes (never refund more than was captured, no refund on a
  disputed charge, never reverse more than was transferred);
- payments table and ledger: the stored-outcome rule of `activities.payments` (a stored success is returned as
  is; attempt recorded, provider called, outcome and ledger movement stored together), ledger movements
  balanced and idempotent on their txn;
- faults: each provider call's key follows a `Script` chosen when its first attempt arrives (see `OUTCOMES`):
  a decline, a refusal (non-retryable `PaymentRejected`), transient failures before the provider is reached,
  and dropped responses (the provider did it and stored it under the key; the activity fails and its retry
  must get the stored answer).

Every activity runs on the worker's event loop; read a `World` only from that loop. A world is picked by the
order id of each activity's input (`Router`), so the workflows of an earlier example never touch a later one.
Anything the model itself finds wrong (a key reused for a different request, an overdraw the provider would
refuse, a ledger txn reused with another movement, a transition the table silently drops) is appended to
`World.violations` for the test to assert on.
"""

from __future__ import annotations

import asyncio
import itertools
import re
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities.disputes import DisputeStatusChange, OpenDispute, ThreadEntry
from activities.notifications import DeadLetterRequest
from activities.orders import (
    AttentionReport,
    OrderSnapshot,
    OrderStateChange,
    OrderTransition,
    ReserveStockInput,
    ReserveStockResult,
)
from activities.payments import (
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
from activities.trust import OrderOutcome, ReviewWindowRequest
from bazaar.trust.notifications import NotificationEvent

SELLER_ID = "seller-1"
UNIT_PRICE = 45_000
CURRENCY = "EUR"

# Ledger accounts (bazaar.models.LedgerAccount values).
BUYER_PAYMENTS, ESCROW, REFUNDS = "buyer_payments", "escrow", "refunds"
PLATFORM_FEES, SELLER_PAYABLE, SELLER_PAYOUTS, CHARGEBACKS = (
    "platform_fees",
    "seller_payable",
    "seller_payouts",
    "chargebacks",
)
ACCOUNTS = (BUYER_PAYMENTS, ESCROW, REFUNDS, PLATFORM_FEES, SELLER_PAYABLE, SELLER_PAYOUTS, CHARGEBACKS)

# What one provider call (one idempotency key) meets, attempt by attempt:
#   do    the provider answers (the first time it acts and stores the answer under the key; then it replays)
#   fail  the provider is not reached (connection refused, timeout): a retryable error, nothing done
#   drop  the provider acts and stores the answer, but the response is lost: a retryable error
#   slow  the provider acts and stores the answer, which arrives after SLOW_SECONDS (past the call's bound:
#         the attempt times out, or fails when the answer finally comes)
#   decline / refuse   the provider's final answer: a card decline (charge only) / a refusal (PaymentRejected)
# After the script runs out, every further attempt is `do`.
OUTCOMES: dict[str, tuple[str, ...]] = {
    "ok": ("do",),
    "decline": ("decline",),
    "refuse": ("refuse",),
    "flaky": ("fail", "do"),  # one transient failure, retried within the bound
    "dropped": ("drop", "do"),  # the provider acted; the retry must get the stored answer
    "outage": ("fail", "fail", "fail", "fail", "do"),  # past the provider bound: the order needs attention
    "dropped_outage": ("drop", "fail", "fail", "fail", "do"),  # acted, then unreachable past the bound
    "slow_outage": ("slow", "fail", "fail", "fail", "do"),  # acted, answered too late, then unreachable
}
SLOW_SECONDS = 3.0  # longer than the test's provider bound (provider_timeout_seconds)


class ProviderRefusal(Exception):
    """The provider's final refusal of a request (invalid for what it holds)."""


class ProviderUnreachable(ConnectionError):
    """A transient provider failure (retryable): the request may or may not have been acted on."""


class ProviderSlow(Exception):
    """The provider acted, and its answer takes SLOW_SECONDS (the activity waits, then fails)."""


@dataclass
class Listing:
    listing_id: str
    initial: int
    quantity: int
    status: str = "active"  # active | sold


@dataclass
class OrderRow:
    order_id: str
    buyer_id: str
    seller_id: str
    listing_id: str
    quantity: int
    amount: int
    currency: str
    status: str
    reason: str | None
    payment_state: str
    seq: int
    idempotency_key: str
    payment_method: str | None
    workflow_id: str
    stock_reserved: bool = True
    shipped: bool = False  # a `fulfilled` state was saved: the stock left with the parcel
    tracking: dict[str, str] | None = None
    # seq -> (status, reason, payment_state, action) of every transition the table applied
    history: dict[int, tuple[str, str | None, str, str]] = field(default_factory=dict)


@dataclass
class PaymentRow:
    order_id: str
    kind: str  # charge | refund | transfer | transfer_reversal | chargeback | chargeback_reversal
    key: str
    amount: int
    currency: str
    outcome: str = "pending"  # pending | succeeded | failed
    provider_id: str | None = None
    failure_code: str | None = None


@dataclass
class Balances:
    """What the provider moved for one order."""

    charged: int = 0
    refunded: int = 0
    transferred: int = 0
    reversed: int = 0
    charged_back: int = 0  # taken by the card network, net of what it gave back


@dataclass
class Stored:
    """One idempotency key at the provider: the request it was first used for and the answer it got."""

    request: tuple[Any, ...]
    result: Any = None
    error: str | None = None  # decline code / refusal message (replayed as such)
    declined: bool = False


@dataclass
class Script:
    steps: tuple[str, ...]
    attempts: int = 0

    def next(self) -> str:
        step = self.steps[self.attempts] if self.attempts < len(self.steps) else "do"
        self.attempts += 1
        return step


@dataclass
class Dispute:
    """A card-network dispute on an order's charge, as the provider tracks it."""

    dispute_id: str
    amount: int
    status: str = "needs_response"  # needs_response | won | lost


class World:
    """One Hypothesis example's database and provider (see the module docstring)."""

    def __init__(self, listing_id: str, stock: int) -> None:
        self.listing = Listing(listing_id, stock, stock, "active" if stock > 0 else "sold")
        self.orders: dict[str, OrderRow] = {}
        self.payments: dict[str, PaymentRow] = {}
        self.ledger: dict[tuple[str, str], tuple[str, int]] = {}  # (txn, account) -> (order id, amount)
        self.txns: dict[str, tuple[str, dict[str, int]]] = {}  # txn -> (order id, movement)
        self.provider: dict[str, Stored] = {}  # idempotency key -> stored request/answer
        self.balances: dict[str, Balances] = {}
        self.transfers: dict[str, tuple[str, int, int]] = {}  # transfer id -> (order id, amount, reversed)
        self.disputes: dict[str, Dispute] = {}  # order id -> the dispute on its charge (one per charge)
        self.moved: Counter[str] = Counter()  # idempotency key -> times money moved under it
        self.plans: dict[tuple[str, str], list[str]] = {}  # (order id, operation) -> outcomes of next keys
        self.scripts: dict[str, Script] = {}  # idempotency key -> its script
        self.refused_refunds_disputed = 0
        self.violations: list[str] = []
        self.attention: list[AttentionReport] = []
        self.cases: list[OpenDispute] = []
        self.thread: list[ThreadEntry] = []
        self.case_statuses: list[DisputeStatusChange] = []
        self.inflight = 0  # activities executing now
        self.calls: Counter[str] = Counter()
        self._ids = itertools.count(1)

    # ---- faults ------------------------------------------------------------------------------------------
    def plan(self, order_id: str, operation: str, outcome: str) -> None:
        """The next new key of `operation` (charge, refund, transfer, reverse_transfer) on this order meets
        `outcome` (one of OUTCOMES)."""
        self.plans.setdefault((order_id, operation), []).append(outcome)

    def _script(self, order_id: str, operation: str, key: str) -> Script:
        if key not in self.scripts:
            planned = self.plans.get((order_id, operation)) or ["ok"]
            outcome = planned.pop(0)
            self.scripts[key] = Script(OUTCOMES[outcome])
        return self.scripts[key]

    @contextmanager
    def running(self, name: str) -> Iterator[None]:
        self.inflight += 1
        self.calls[name] += 1
        try:
            yield
        finally:
            self.inflight -= 1

    # ---- derived views -------------------------------------------------------------------------------------
    def balance(self, order_id: str) -> Balances:
        return self.balances.setdefault(order_id, Balances())

    def ledger_of(self, order_id: str) -> dict[str, int]:
        sums = dict.fromkeys(ACCOUNTS, 0)
        for (_, account), (owner, amount) in self.ledger.items():
            if owner == order_id:
                sums[account] += amount
        return sums

    def held_stock(self) -> int:
        return sum(o.quantity for o in self.orders.values() if o.stock_reserved)

    def charge_intent(self, order_id: str) -> str | None:
        row = self.payments.get(f"{order_id}:charge:1")
        return row.provider_id if row is not None and row.outcome == "succeeded" else None

    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids)}"

    # ---- the ledger (bazaar.payments.ledger.post) -------------------------------------------------------------
    def post(self, txn: str, order_id: str, movement: dict[str, int]) -> None:
        if sum(movement.values()) != 0:
            raise ValueError(f"unbalanced ledger movement {txn}: {movement}")
        movement = {a: v for a, v in movement.items() if v != 0}
        booked = self.txns.get(txn)
        if booked is not None:
            if booked != (order_id, movement):
                self.violations.append(f"ledger txn {txn} reused: {booked} then {(order_id, movement)}")
            return  # on conflict do nothing
        self.txns[txn] = (order_id, movement)
        for account, amount in movement.items():
            self.ledger[(txn, account)] = (order_id, amount)

    # ---- the payments table (activities.payments) ---------------------------------------------------------
    def _record_attempt(self, order_id: str, kind: str, key: str, amount: int, currency: str) -> None:
        self.payments.setdefault(key, PaymentRow(order_id, kind, key, amount, currency))

    def _record_outcome(
        self,
        key: str,
        outcome: str,
        provider_id: str | None,
        failure_code: str | None = None,
        movement: dict[str, int] | None = None,
    ) -> None:
        row = self.payments[key]
        row.outcome, row.provider_id, row.failure_code = outcome, provider_id, failure_code
        if movement is not None:
            self.post(key, row.order_id, movement)

    def _reject(self, key: str, message: str) -> ApplicationError:
        self._record_outcome(key, "failed", None, "InvalidRequestError")
        return ApplicationError(message, type="PaymentRejected", non_retryable=True)

    # ---- the provider ----------------------------------------------------------------------------------
    def _provider(
        self, order_id: str, operation: str, key: str, request: tuple[Any, ...], act: Callable[[], Any]
    ) -> Stored:
        """One request under an idempotency key, through the key's fault script. Returns the stored answer
        (a success, a decline or a refusal: the caller turns it into the activity's result), or raises
        ProviderUnreachable."""
        step = self._script(order_id, operation, key).next()
        if step == "fail":
            raise ProviderUnreachable(f"{operation} {key}: provider unreachable")
        stored = self.provider.get(key)
        if stored is not None:
            if stored.request != request:
                # Stripe: "Keys for idempotent requests can only be used with the same parameters".
                self.violations.append(f"idempotency key {key} reused: {stored.request} then {request}")
                return Stored(request, error=f"idempotency key {key} was used for a different request")
        else:
            stored = Stored(request)
            if step == "decline":
                stored.declined, stored.error = True, "card_declined"
            elif step == "refuse":
                stored.error = f"the provider refuses this {operation}"
            else:  # do, drop, slow: the provider acts
                try:
                    stored.result = act()
                except ProviderRefusal as refusal:
                    stored.error = str(refusal)
                else:
                    self.moved[key] += 1
            self.provider[key] = stored
        if step == "drop":
            raise ProviderUnreachable(f"{operation} {key}: the response was lost")
        if step == "slow":
            raise ProviderSlow(f"{operation} {key}: no answer in time")
        return stored

    # ---- activities: orders -------------------------------------------------------------------------------
    def reserve_stock(self, req: ReserveStockInput) -> ReserveStockResult:
        existing = self.orders.get(req.order_id)
        if existing is not None:
            return self._reserved(existing)
        listing = self.listing
        if req.listing_id != listing.listing_id:
            return ReserveStockResult(ok=False, reason="listing_not_available")
        if req.buyer_id == SELLER_ID:
            return ReserveStockResult(ok=False, reason="own_listing")
        if listing.status == "sold" or listing.quantity < req.quantity:
            return ReserveStockResult(ok=False, reason="sold_out")
        listing.quantity -= req.quantity
        if listing.quantity == 0:
            listing.status = "sold"
        row = OrderRow(
            order_id=req.order_id,
            buyer_id=req.buyer_id,
            seller_id=SELLER_ID,
            listing_id=listing.listing_id,
            quantity=req.quantity,
            amount=UNIT_PRICE * req.quantity,
            currency=CURRENCY,
            status="pending",
            reason=None,
            payment_state="none",
            seq=1,
            idempotency_key=req.idempotency_key,
            payment_method=req.payment_method or None,
            workflow_id=req.workflow_id,
        )
        row.history[1] = ("pending", None, "none", "order.placed")
        self.orders[req.order_id] = row
        return self._reserved(row)

    @staticmethod
    def _reserved(row: OrderRow) -> ReserveStockResult:
        return ReserveStockResult(
            ok=True,
            seller_id=row.seller_id,
            listing_title="Road bike",
            unit_amount=UNIT_PRICE,
            amount=row.amount,
            currency=row.currency,
        )

    def release_stock(self, order_id: str) -> bool:
        row = self.orders.get(order_id)
        if row is None or not row.stock_reserved:
            return False
        self.listing.quantity += row.quantity
        if self.listing.status == "sold":
            self.listing.status = "active"
        row.stock_reserved = False
        return True

    def project(self, change: OrderStateChange) -> bool:
        """`activities.orders._project`: apply if newer, else nothing (a retry); a *different* transition
        under a seq the table already has would be dropped silently: that is a violation."""
        row = self.orders.get(change.order_id)
        if row is None:
            self.violations.append(f"transition {change.action} for order {change.order_id} without a row")
            return False
        content = (change.status, change.reason, change.payment_state, change.action)
        if change.seq <= row.seq:
            seen = row.history.get(change.seq)
            if seen is not None and seen != content:
                self.violations.append(
                    f"order {change.order_id}: transition seq {change.seq} {content} dropped, the table "
                    f"has {seen} under that seq (current seq {row.seq})"
                )
            return False
        row.status, row.reason, row.payment_state = change.status, change.reason, change.payment_state
        row.seq, row.tracking = change.seq, change.tracking
        row.history[change.seq] = content
        if change.status == "fulfilled":
            row.shipped = True
        return True

    def save_transition(self, change: OrderTransition) -> bool:
        """`activities.orders.save_transition`: the projection, the ledger postings booked with it (e.g. the
        escrow release of a completion) and the stock going back, in one transaction."""
        if not self.project(change):
            return False
        for posting in change.ledger:
            self.post(posting.txn, change.order_id, dict(posting.entries))
        if change.release_stock:
            self.release_stock(change.order_id)
        return True

    def load_order(self, order_id: str) -> OrderSnapshot:
        """`activities.orders.load_order` over this world's tables (the same derivation)."""
        order = self.orders.get(order_id)
        if order is None:
            raise LookupError(f"order {order_id} not found")
        payments = [p for p in self.payments.values() if p.order_id == order_id]
        txns = sorted({txn for (txn, _), (owner, _) in self.ledger.items() if owner == order_id})

        def done(kind: str) -> list[PaymentRow]:
            rows = [p for p in payments if p.kind == kind and p.outcome == "succeeded"]
            return sorted(rows, key=lambda p: _key_number(p.key))

        def highest(operation: str, keys: list[str]) -> int:
            return max((_key_number(k) for k in keys if k.startswith(f"{order_id}:{operation}:")), default=0)

        payment_keys = [p.key for p in payments]
        charges = done("charge")
        transfers, reversals = done("transfer"), done("transfer_reversal")
        chargebacks, reinstated = done("chargeback"), done("chargeback_reversal")
        releases = highest("release", txns)
        release = self.txns.get(f"{order_id}:release:{releases}", (order_id, {}))[1]
        released = releases > 0 and f"{order_id}:release_reversal:{releases}" not in txns
        payout = transfers[-1] if len(transfers) > len(reversals) else None
        chargeback = chargebacks[-1] if chargebacks else None
        status = None
        if chargeback is not None:
            # As the timeline recorded the network's decision (`order.chargeback_lost`).
            lost = any(action == "order.chargeback_lost" for *_, action in order.history.values())
            status = "won" if reinstated else "lost" if lost else "withdrawn"
        return OrderSnapshot(
            order_id=order_id,
            buyer_id=order.buyer_id,
            seller_id=order.seller_id,
            listing_id=order.listing_id,
            listing_title="Road bike",
            quantity=order.quantity,
            amount=order.amount,
            currency=order.currency,
            status=order.status,
            reason=order.reason,
            payment_state=order.payment_state,
            tracking=order.tracking,
            seq=order.seq,
            payment_intent_id=charges[-1].provider_id if charges else None,
            refunded_amount=sum(p.amount for p in done("refund")),
            refunds=highest("refund", payment_keys),
            releases=releases,
            transfers=highest("transfer", payment_keys),
            reversals=highest("transfer_reversal", payment_keys),
            released=released,
            released_gross=-release.get(ESCROW, 0),
            released_fee=release.get(PLATFORM_FEES, 0),
            payout_transfer_id=payout.provider_id if payout else None,
            payout_amount=payout.amount if payout else 0,
            chargeback_id=chargeback.provider_id if chargeback else None,
            chargeback_status=status,
            chargeback_amount=chargeback.amount if chargeback else 0,
        )

    # ---- activities: payments ---------------------------------------------------------------------------
    def charge(self, req: ChargeRequest) -> ChargeResult:
        key = req.idempotency_key
        stored_row = self.payments.get(key)
        if stored_row is not None and stored_row.outcome != "pending":
            return ChargeResult(
                succeeded=stored_row.outcome == "succeeded",
                payment_intent_id=stored_row.provider_id,
                failure_code=stored_row.failure_code,
            )
        self._record_attempt(req.order_id, "charge", key, req.amount, req.currency)
        request = ("charge", req.amount, req.currency, req.payment_method, req.transfer_group)

        def act() -> str:
            if req.amount <= 0:
                raise ProviderRefusal(f"cannot charge {req.amount}")
            self.balance(req.order_id).charged += req.amount
            return self._new_id("pi")

        stored = self._provider(req.order_id, "charge", key, request, act)
        if stored.declined:
            declined = self._new_id("pi_declined")
            self._record_outcome(key, "failed", declined, "card_declined")
            return ChargeResult(succeeded=False, payment_intent_id=declined, failure_code="card_declined")
        if stored.error is not None:
            raise self._reject(key, stored.error)
        intent = str(stored.result)
        self._record_outcome(
            key, "succeeded", intent, movement={ESCROW: req.amount, BUYER_PAYMENTS: -req.amount}
        )
        return ChargeResult(succeeded=True, payment_intent_id=intent)

    def _move_money(
        self,
        order_id: str,
        kind: str,
        key: str,
        amount: int,
        currency: str,
        request: tuple[Any, ...],
        act: Callable[[], str],
        movement: dict[str, int],
    ) -> str:
        """`activities.payments._move_money`: at most once per key; a stored success is returned as is."""
        stored_row = self.payments.get(key)
        if stored_row is not None and stored_row.outcome == "succeeded" and stored_row.provider_id:
            return stored_row.provider_id
        self._record_attempt(order_id, kind, key, amount, currency)
        stored = self._provider(order_id, kind, key, request, act)
        if stored.error is not None:
            raise self._reject(key, stored.error)
        provider_id = str(stored.result)
        self._record_outcome(key, "succeeded", provider_id, movement=movement)
        return provider_id

    def refund(self, req: RefundRequest) -> RefundResult:
        request = ("refund", req.payment_intent_id, req.amount, req.reason)

        def act() -> str:
            balance = self.balance(req.order_id)
            if req.payment_intent_id != self.charge_intent(req.order_id):
                self.violations.append(
                    f"refund {req.idempotency_key} of unknown intent {req.payment_intent_id}"
                )
                raise ProviderRefusal("no such payment intent")
            dispute = self.disputes.get(req.order_id)
            if dispute is not None and dispute.status != "won":
                # A disputed charge cannot be refunded (the network decides, or has decided, that money).
                self.refused_refunds_disputed += 1
                raise ProviderRefusal("charge_disputed: the charge has a dispute")
            if not 0 < req.amount <= balance.charged - balance.refunded:
                self.violations.append(
                    f"refund {req.idempotency_key} of {req.amount} with {balance.charged - balance.refunded} "
                    "left on the charge"
                )
                raise ProviderRefusal("amount exceeds what is left on the charge")
            balance.refunded += req.amount
            return self._new_id("re")

        refund_id = self._move_money(
            req.order_id,
            "refund",
            req.idempotency_key,
            req.amount,
            req.currency,
            request,
            act,
            {ESCROW: -req.amount, REFUNDS: req.amount},
        )
        return RefundResult(refund_id, req.amount)

    def release_escrow(self, req: ReleaseRequest) -> None:
        self.post(
            req.txn,
            req.order_id,
            {ESCROW: -req.gross, PLATFORM_FEES: req.fee, SELLER_PAYABLE: req.gross - req.fee},
        )

    def transfer(self, req: TransferRequest) -> TransferResult:
        request = ("transfer", req.amount, req.currency, req.transfer_group)

        def act() -> str:
            if req.amount <= 0:
                self.violations.append(f"transfer {req.idempotency_key} of {req.amount}")
                raise ProviderRefusal(f"cannot transfer {req.amount}")
            self.balance(req.order_id).transferred += req.amount
            transfer_id = self._new_id("tr")
            self.transfers[transfer_id] = (req.order_id, req.amount, 0)
            return transfer_id

        transfer_id = self._move_money(
            req.order_id,
            "transfer",
            req.idempotency_key,
            req.amount,
            req.currency,
            request,
            act,
            {SELLER_PAYABLE: -req.amount, SELLER_PAYOUTS: req.amount},
        )
        return TransferResult(transfer_id, "acct_seller")

    def reverse_transfer(self, req: TransferReversalRequest) -> TransferReversalResult:
        request = ("transfer_reversal", req.transfer_id, req.amount, req.reason)

        def act() -> str:
            found = self.transfers.get(req.transfer_id)
            if found is None or found[0] != req.order_id or not 0 < req.amount <= found[1] - found[2]:
                self.violations.append(f"reversal {req.idempotency_key} of {req.amount} from {found}")
                raise ProviderRefusal("cannot reverse that much of this transfer")
            self.transfers[req.transfer_id] = (found[0], found[1], found[2] + req.amount)
            self.balance(req.order_id).reversed += req.amount
            return self._new_id("trr")

        reversal_id = self._move_money(
            req.order_id,
            "transfer_reversal",
            req.idempotency_key,
            req.amount,
            req.currency,
            request,
            act,
            {SELLER_PAYOUTS: -req.amount, SELLER_PAYABLE: req.amount},
        )
        return TransferReversalResult(reversal_id, req.amount)

    def reverse_release(self, req: ReleaseReversalRequest) -> None:
        self.post(
            req.txn,
            req.order_id,
            {ESCROW: req.fee + req.seller_share, PLATFORM_FEES: -req.fee, SELLER_PAYABLE: -req.seller_share},
        )

    def record_chargeback(self, req: ChargebackMovement) -> None:
        kind = "chargeback_reversal" if req.reinstated else "chargeback"
        self.payments.setdefault(
            req.key,
            PaymentRow(req.order_id, kind, req.key, req.amount, req.currency, "succeeded", req.dispute_id),
        )
        sign = -1 if req.reinstated else 1
        self.post(req.key, req.order_id, {CHARGEBACKS: sign * req.amount, ESCROW: -sign * req.amount})

    # ---- the card network (driven by the test, as the provider's webhooks would report it) ---------------
    def open_dispute(self, order_id: str, amount: int) -> Dispute:
        dispute = Dispute(self._new_id("dp"), amount)
        self.disputes[order_id] = dispute
        self.balance(order_id).charged_back += amount
        return dispute

    def decide_dispute(self, order_id: str, won: bool) -> Dispute:
        dispute = self.disputes[order_id]
        dispute.status = "won" if won else "lost"
        if won:
            self.balance(order_id).charged_back -= dispute.amount
        return dispute


def _key_number(key: str) -> int:
    match = re.search(r":(\d+)$", key)
    return int(match.group(1)) if match else 0


class Router:
    """The world of each order id (activities carry it), for one worker serving many examples."""

    def __init__(self) -> None:
        self.worlds: dict[str, World] = {}
        self.strays: list[str] = []  # activities for orders no live world knows (an earlier example's)

    def register(self, order_id: str, world: World) -> None:
        self.worlds[order_id] = world

    def forget(self, world: World) -> None:
        for order_id in [o for o, w in self.worlds.items() if w is world]:
            del self.worlds[order_id]

    def world(self, order_id: str, name: str) -> World:
        found = self.worlds.get(order_id)
        if found is None:
            self.strays.append(f"{name} {order_id}")
            raise ApplicationError(f"no world for order {order_id}", type="StrayActivity", non_retryable=True)
        return found

    def activities(self) -> list[Callable[..., Any]]:
        """Fake activities with the real names and payloads, each running its order's world."""
        router = self

        async def call(name: str, order_id: str, work: Callable[[World], Any]) -> Any:
            world = router.world(order_id, name)
            with world.running(name):
                try:
                    return work(world)
                except ProviderSlow as slow:
                    await asyncio.sleep(SLOW_SECONDS)
                    raise ProviderUnreachable(str(slow)) from None

        @activity.defn(name="reserve_stock")
        async def reserve_stock(req: ReserveStockInput) -> ReserveStockResult:
            result: ReserveStockResult = await call(
                "reserve_stock", req.order_id, lambda w: w.reserve_stock(req)
            )
            return result

        @activity.defn(name="release_stock")
        async def release_stock(order_id: str) -> bool:
            result: bool = await call("release_stock", order_id, lambda w: w.release_stock(order_id))
            return result

        @activity.defn(name="record_order_state")
        async def record_order_state(change: OrderStateChange) -> None:
            await call("record_order_state", change.order_id, lambda w: w.project(change))

        @activity.defn(name="save_transition")
        async def save_transition(change: OrderTransition) -> bool:
            result: bool = await call("save_transition", change.order_id, lambda w: w.save_transition(change))
            return result

        @activity.defn(name="report_attention")
        async def report_attention(report: AttentionReport) -> None:
            await call("report_attention", report.order_id, lambda w: w.attention.append(report))

        @activity.defn(name="load_order")
        async def load_order(order_id: str) -> OrderSnapshot:
            result: OrderSnapshot = await call("load_order", order_id, lambda w: w.load_order(order_id))
            return result

        @activity.defn(name="charge")
        async def charge(req: ChargeRequest) -> ChargeResult:
            result: ChargeResult = await call("charge", req.order_id, lambda w: w.charge(req))
            return result

        @activity.defn(name="refund")
        async def refund(req: RefundRequest) -> RefundResult:
            result: RefundResult = await call("refund", req.order_id, lambda w: w.refund(req))
            return result

        @activity.defn(name="release_escrow")
        async def release_escrow(req: ReleaseRequest) -> None:
            await call("release_escrow", req.order_id, lambda w: w.release_escrow(req))

        @activity.defn(name="transfer")
        async def transfer(req: TransferRequest) -> TransferResult:
            result: TransferResult = await call("transfer", req.order_id, lambda w: w.transfer(req))
            return result

        @activity.defn(name="reverse_transfer")
        async def reverse_transfer(req: TransferReversalRequest) -> TransferReversalResult:
            result: TransferReversalResult = await call(
                "reverse_transfer", req.order_id, lambda w: w.reverse_transfer(req)
            )
            return result

        @activity.defn(name="reverse_release")
        async def reverse_release(req: ReleaseReversalRequest) -> None:
            await call("reverse_release", req.order_id, lambda w: w.reverse_release(req))

        @activity.defn(name="record_chargeback")
        async def record_chargeback(req: ChargebackMovement) -> None:
            await call("record_chargeback", req.order_id, lambda w: w.record_chargeback(req))

        # The dispute case and its notifications: recorded, never failing.
        @activity.defn(name="open_dispute_case")
        async def open_dispute_case(req: OpenDispute) -> str:
            await call("open_dispute_case", req.order_id, lambda w: w.cases.append(req))
            return f"case-{req.order_id}"

        @activity.defn(name="append_dispute_thread")
        async def append_dispute_thread(entry: ThreadEntry) -> None:
            await call("append_dispute_thread", entry.order_id, lambda w: w.thread.append(entry))

        @activity.defn(name="set_dispute_status")
        async def set_dispute_status(change: DisputeStatusChange) -> None:
            await call("set_dispute_status", change.order_id, lambda w: w.case_statuses.append(change))

        @activity.defn(name="prepare_notifications")
        async def prepare_notifications(req: NotificationEvent) -> list[int]:
            return []  # the outbox is written by save_transition; nothing to deliver here

        @activity.defn(name="deliver_notification")
        async def deliver_notification(notification_id: int) -> str:
            return "sent"

        @activity.defn(name="dead_letter_notification")
        async def dead_letter_notification(req: DeadLetterRequest) -> None:
            return None

        @activity.defn(name="record_order_outcome")
        async def record_order_outcome(req: OrderOutcome) -> None:
            return None

        @activity.defn(name="open_review_window")
        async def open_review_window(req: ReviewWindowRequest) -> str:
            return "2030-01-01T00:00+00:00"

        @activity.defn(name="reveal_reviews")
        async def reveal_reviews(order_id: str) -> int:
            return 0

        @activity.defn(name="reveal_due_reviews")
        async def reveal_due_reviews() -> int:
            return 0

        return [
            reserve_stock,
            release_stock,
            record_order_state,
            save_transition,
            report_attention,
            load_order,
            charge,
            refund,
            release_escrow,
            transfer,
            reverse_transfer,
            reverse_release,
            record_chargeback,
            open_dispute_case,
            append_dispute_thread,
            set_dispute_status,
            prepare_notifications,
            deliver_notification,
            dead_letter_notification,
            record_order_outcome,
            open_review_window,
            reveal_reviews,
            reveal_due_reviews,
        ]
