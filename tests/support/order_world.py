"""The state of the order model's world (tests/support/order_model.py): a listing's stock, the orders and
payments tables, the ledger, a payment provider that keeps every idempotent request's answer and each order's
balances, the fault scripts its calls meet (`OUTCOMES`), and the card network's disputes.
"""

from __future__ import annotations

import itertools
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from temporalio.exceptions import ApplicationError

from activities.disputes import DisputeStatusChange, OpenDispute, ThreadEntry
from activities.orders import AttentionReport

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


class WorldState:
    """One Hypothesis example's tables and provider: the orders, payments and ledger tables, the provider's
    stored answers, balances and fault scripts, and the card network's disputes. What the activities do with
    them is `World`'s (tests/support/order_model.py)."""

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
