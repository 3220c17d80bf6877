"""The one comparison of money: per money movement, the provider's object, our payment row and our ledger
movement side by side, and whether they agree. Reconciliation (`activities/reconciliation.py`, over a time
window) and an order's money statement (`GET /v1/orders/{id}/money`, `bazaar/payments/statement.py`) both
pair records with `pair` and judge each pair with `judge`. Pure: no I/O.

A **unit** is one money movement: a provider object (PaymentIntent, refund, transfer, transfer reversal, dispute
withdrawal, dispute reinstatement, or a balance transaction we cannot attribute), the payment row that claims
it (matched by the provider's id, or for a charge whose reply was lost, by its order or checkout), and that row's
ledger movement (`ledger_entries.txn` = the row's idempotency key). A ledger movement with no payment row is a
unit of its own. A checkout's one charge is one unit like any other: one PaymentIntent, the checkout's payment
row, and one movement that books each of its orders' share (compared as a whole: its escrow is the charge). A
unit agrees when:

- both sides exist (a row that was refused before anything existed at the provider needs no provider object);
- the currencies are the same on the provider, on the payment row and on every entry of the movement;
- the amounts are the same: the provider's, the row's, and what the movement booked on the account the row's
  kind books (`LEDGER_SIDE`);
- the row's outcome is the one the provider's status means (`expected_outcome`);
- a successful row has its movement, the movement sums to zero per currency, and a row that did not succeed
  has none.

One unit gives at most one discrepancy: its category is the first problem found (in the order above), its
detail lists them all, so one drift is reported once.
"""

from __future__ import annotations

import enum
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from bazaar.models import LedgerAccount, PaymentKind, PaymentOutcome
from bazaar.payments.keys import MoneyOperation, key_operation


class DiscrepancyCategory(enum.StrEnum):
    MISSING_OURS = "missing_ours"  # the provider has it, we have no payment row
    MISSING_PROVIDER = "missing_provider"  # our payment row claims a provider object that is not there
    MISSING_LEDGER = "missing_ledger"  # a successful payment without its ledger movement
    LEDGER_ONLY = "ledger_only"  # a ledger movement that claims provider money, with no payment row
    UNBALANCED = "unbalanced"  # a ledger movement whose entries do not sum to zero per currency
    CURRENCY_MISMATCH = "currency_mismatch"
    AMOUNT_MISMATCH = "amount_mismatch"
    STATUS_MISMATCH = "status_mismatch"


CATEGORIES = tuple(c.value for c in DiscrepancyCategory)


class ObjectType(enum.StrEnum):
    """What a unit of the comparison is: a provider object, a ledger movement without a payment row, or money at
    the provider that no object explains."""

    PAYMENT_INTENT = "payment_intent"
    REFUND = "refund"
    TRANSFER = "transfer"
    TRANSFER_REVERSAL = "transfer_reversal"
    DISPUTE = "dispute"
    DISPUTE_REVERSAL = "dispute_reversal"
    BALANCE_TRANSACTION = "balance_transaction"
    LEDGER = "ledger"


# Our payment kind -> the provider object it corresponds to.
OBJECT_TYPE: dict[PaymentKind, str] = {
    PaymentKind.CHARGE: ObjectType.PAYMENT_INTENT,
    PaymentKind.REFUND: ObjectType.REFUND,
    PaymentKind.TRANSFER: ObjectType.TRANSFER,
    PaymentKind.TRANSFER_REVERSAL: ObjectType.TRANSFER_REVERSAL,
    PaymentKind.CHARGEBACK: ObjectType.DISPUTE,
    PaymentKind.CHARGEBACK_REVERSAL: ObjectType.DISPUTE_REVERSAL,
}
# Our payment kind -> the ledger account its movement books it on, and with which sign of its amount.
LEDGER_SIDE = {
    PaymentKind.CHARGE: (LedgerAccount.ESCROW, 1),
    PaymentKind.REFUND: (LedgerAccount.REFUNDS, 1),
    PaymentKind.TRANSFER: (LedgerAccount.SELLER_PAYOUTS, 1),
    PaymentKind.TRANSFER_REVERSAL: (LedgerAccount.SELLER_PAYOUTS, -1),
    PaymentKind.CHARGEBACK: (LedgerAccount.CHARGEBACKS, 1),
    PaymentKind.CHARGEBACK_REVERSAL: (LedgerAccount.CHARGEBACKS, -1),
}
# Movements that never have a provider object (the release of escrow to the seller and the fee, and its undo).
LEDGER_ONLY_OPERATIONS = frozenset({MoneyOperation.RELEASE.value, MoneyOperation.RELEASE_REVERSAL.value})
# How the platform's balance at the provider moves with each object that moved money.
PROVIDER_SIGN = {
    "payment_intent": 1,
    "refund": -1,
    "transfer": -1,
    "transfer_reversal": 1,
    "dispute": -1,
    "dispute_reversal": 1,
}


@dataclass(frozen=True)
class ProviderRecord:
    """A provider object reduced to what we compare."""

    object_type: str  # payment_intent | refund | transfer | transfer_reversal | dispute | dispute_reversal
    # | balance_transaction (money we cannot attribute to any object)
    id: str
    amount: int
    currency: str  # upper case
    status: str
    created: float  # unix time: what places it in a window (a reinstatement: when the money came back)
    # Whose money, as written: `metadata.order_id`, else `metadata.checkout_id` (a checkout's one charge), else
    # the order or the checkout of `transfer_group`.
    order_ref: str | None = None
    payment_intent: str | None = None  # a refund's or dispute's PaymentIntent
    transfer: str | None = None  # a reversal's transfer

    @property
    def moved_money(self) -> bool:
        if self.object_type == "payment_intent":
            return self.status == "succeeded"
        if self.object_type == "refund":
            return self.status in ("succeeded", "pending")
        return self.object_type in PROVIDER_SIGN


@dataclass(frozen=True)
class OurPayment:
    key: str
    kind: PaymentKind
    provider_id: str | None
    amount: int
    currency: str
    outcome: PaymentOutcome
    order_id: str | None  # None: a checkout's one charge for all its orders
    created: float  # unix time
    checkout_id: str | None = None  # set on a checkout's charge (and only there)

    @property
    def owner(self) -> str:
        """The order, or the checkout, whose money it is: what its PaymentIntent names."""
        return self.order_id or self.checkout_id or ""


@dataclass(frozen=True)
class Entry:
    account: str
    currency: str
    amount: int
    order_id: str | None = None  # None: not known (every entry counts as the statement's order's)


@dataclass(frozen=True)
class Movement:
    """A ledger movement: the entries of one `txn`."""

    txn: str
    # None: it books several orders (a checkout's charge, split into each order's escrow).
    order_id: str | None
    entries: tuple[Entry, ...]
    created: float  # unix time of its first entry

    @property
    def order_ids(self) -> list[str]:
        return sorted({e.order_id for e in self.entries if e.order_id})

    @property
    def currencies(self) -> list[str]:
        return sorted({e.currency for e in self.entries})

    def sums(self) -> dict[str, int]:
        total: dict[str, int] = {}
        for e in self.entries:
            total[e.currency] = total.get(e.currency, 0) + e.amount
        return total

    def on(self, account: str) -> int | None:
        amounts = [e.amount for e in self.entries if e.account == account]
        return sum(amounts) if amounts else None

    @property
    def operation(self) -> str | None:
        return key_operation(self.txn)

    @property
    def gross(self) -> int:
        """What the movement moved: the sum of its positive entries."""
        return sum(e.amount for e in self.entries if e.amount > 0)


@dataclass
class Unit:
    """One money movement: whichever of the three records exist for it."""

    object_type: str
    object_id: str
    provider: ProviderRecord | None = None
    payment: OurPayment | None = None
    movement: Movement | None = None

    @property
    def at(self) -> float:
        """When it first happened on either side: the window that owns it (so it is reported in one window)."""
        times = [r.created for r in (self.provider, self.payment) if r is not None]
        if not times and self.movement is not None:
            times.append(self.movement.created)
        return min(times)


@dataclass(frozen=True)
class Verdict:
    category: DiscrepancyCategory | None
    problems: tuple[str, ...] = ()

    @property
    def agrees(self) -> bool:
        return self.category is None


@dataclass
class Discrepancy:
    category: str
    object_type: str
    object_id: str  # the provider's id, our idempotency key, or the ledger txn
    order_id: str | None = None
    ours_amount: int | None = None
    provider_amount: int | None = None
    ours_status: str | None = None
    provider_status: str | None = None
    detail: str = ""
    ours_currency: str | None = None
    provider_currency: str | None = None
    ledger_amount: int | None = None  # what the movement booked for the payment (in the payment's direction)
    ledger_currency: str | None = None


def expected_outcome(record: ProviderRecord) -> PaymentOutcome:
    """The outcome our row must have for what the provider says happened."""
    if record.object_type == "payment_intent":
        if record.status == "succeeded":
            return PaymentOutcome.SUCCEEDED
        if record.status in ("requires_payment_method", "canceled"):
            return PaymentOutcome.FAILED
        return PaymentOutcome.PENDING
    if record.object_type == "refund":
        return {"succeeded": PaymentOutcome.SUCCEEDED, "pending": PaymentOutcome.PENDING}.get(
            record.status, PaymentOutcome.FAILED
        )
    return PaymentOutcome.SUCCEEDED  # transfers, reversals and dispute movements exist only once done


def pair(
    provider: Iterable[ProviderRecord], payments: Iterable[OurPayment], movements: Iterable[Movement]
) -> list[Unit]:
    """Every record in exactly one unit, in a stable order."""
    payments = sorted(payments, key=lambda p: p.key)
    movement_of = {m.txn: m for m in movements}
    payments = _one_row_per_dispute(payments, movement_of)
    by_provider = {(OBJECT_TYPE[p.kind], p.provider_id): p for p in payments if p.provider_id}
    # A charge whose reply was lost has no provider id yet: its PaymentIntent names the order (or checkout).
    lost_replies = {p.owner: p for p in payments if p.kind == PaymentKind.CHARGE and not p.provider_id}
    units: list[Unit] = []
    claimed: set[str] = set()
    for record in sorted(provider, key=lambda r: (r.object_type, r.id)):
        mine = by_provider.get((record.object_type, record.id))
        if mine is None and record.object_type == "payment_intent" and record.order_ref:
            mine = lost_replies.pop(record.order_ref, None)
        if mine is not None and mine.key in claimed:
            mine = None  # a second provider object for one row (a lost reply retried elsewhere)
        units.append(Unit(record.object_type, record.id, record))
        if mine is not None:
            claimed.add(mine.key)
            units[-1].payment, units[-1].movement = mine, movement_of.get(mine.key)
    for mine in payments:
        if mine.key not in claimed:
            claimed.add(mine.key)
            object_id = mine.provider_id or mine.key
            units.append(Unit(OBJECT_TYPE[mine.kind], object_id, None, mine, movement_of.get(mine.key)))
    for movement in sorted(movement_of.values(), key=lambda m: m.txn):
        if movement.txn not in claimed:
            units.append(Unit(ObjectType.LEDGER, movement.txn, movement=movement))
    return units


DISPUTE_KINDS = frozenset({PaymentKind.CHARGEBACK, PaymentKind.CHARGEBACK_REVERSAL})


def _one_row_per_dispute(payments: list[OurPayment], movement_of: dict[str, Movement]) -> list[OurPayment]:
    """A dispute on a checkout's one charge is booked by each of its orders (its share: a row and a movement
    each): compared as one unit, like the charge, the rows become one row of their sum and their movements one
    movement (under the first row's key; `movement_of` is updated). Anything else passes unchanged."""
    groups: dict[tuple[PaymentKind, str], list[OurPayment]] = {}
    for p in payments:
        if p.kind in DISPUTE_KINDS and p.provider_id:
            groups.setdefault((p.kind, p.provider_id), []).append(p)
    merged: dict[str, OurPayment] = {}
    absorbed: set[str] = set()
    for rows in groups.values():
        if len(rows) < 2:
            continue
        first = rows[0]
        merged[first.key] = OurPayment(
            key=first.key,
            kind=first.kind,
            provider_id=first.provider_id,
            amount=sum(r.amount for r in rows),
            currency=first.currency
            if len({r.currency for r in rows}) == 1
            else "/".join(r.currency for r in rows),
            outcome=first.outcome,
            order_id=None,
            created=min(r.created for r in rows),
        )
        moved = [movement_of.pop(r.key) for r in rows if r.key in movement_of]
        if moved:
            movement_of[first.key] = Movement(
                first.key, None, tuple(e for m in moved for e in m.entries), min(m.created for m in moved)
            )
        absorbed |= {r.key for r in rows[1:]}
    return [merged.get(p.key, p) for p in payments if p.key not in absorbed]


def judge(unit: Unit) -> Verdict:
    """Whether the unit's records agree; else the category of the first problem, and every problem."""
    problems: list[tuple[DiscrepancyCategory, str]] = []
    provider, mine, movement = unit.provider, unit.payment, unit.movement
    if mine is None:
        if provider is not None:
            problems.append(
                (
                    DiscrepancyCategory.MISSING_OURS,
                    f"at the provider ({provider.status}), not in our payments",
                )
            )
        elif movement is not None:
            if movement.operation not in LEDGER_ONLY_OPERATIONS:
                problems.append(
                    (
                        DiscrepancyCategory.LEDGER_ONLY,
                        f"ledger movement {movement.txn} has no payment row and no provider object",
                    )
                )
            problems += _balance(movement)
        return _verdict(problems)
    if provider is None and not (mine.outcome == PaymentOutcome.FAILED and mine.provider_id is None):
        problems.append(
            (DiscrepancyCategory.MISSING_PROVIDER, f"our payment {mine.key} has no provider object")
        )
    if mine.outcome == PaymentOutcome.SUCCEEDED and movement is None:
        problems.append(
            (DiscrepancyCategory.MISSING_LEDGER, f"our payment {mine.key} has no ledger movement")
        )
    if movement is not None:
        if mine.outcome != PaymentOutcome.SUCCEEDED:
            problems.append(
                (
                    DiscrepancyCategory.STATUS_MISMATCH,
                    f"booked in the ledger although our payment is {mine.outcome.value}",
                )
            )
        problems += _balance(movement)
    if provider is not None and provider.currency != mine.currency:
        problems.append(
            (
                DiscrepancyCategory.CURRENCY_MISMATCH,
                f"the provider's is in {provider.currency}, our payment in {mine.currency}",
            )
        )
    if movement is not None and movement.currencies != [mine.currency]:
        problems.append(
            (
                DiscrepancyCategory.CURRENCY_MISMATCH,
                f"the ledger movement is in {'/'.join(movement.currencies)}, our payment in {mine.currency}",
            )
        )
    if provider is not None and provider.amount != mine.amount:
        problems.append(
            (
                DiscrepancyCategory.AMOUNT_MISMATCH,
                f"the provider's is {provider.amount}, our payment {mine.amount}",
            )
        )
    booked = ledger_amount(unit)
    if movement is not None and booked != mine.amount:
        account, _ = LEDGER_SIDE[mine.kind]
        problems.append(
            (
                DiscrepancyCategory.AMOUNT_MISMATCH,
                f"the ledger booked {booked} on {account.value}, our payment says {mine.amount}",
            )
        )
    if provider is not None and mine.outcome != expected_outcome(provider):
        problems.append(
            (
                DiscrepancyCategory.STATUS_MISMATCH,
                f"our payment is {mine.outcome.value}, the provider's is {provider.status}",
            )
        )
    return _verdict(problems)


def ledger_amount(unit: Unit) -> int | None:
    """What the unit's movement booked for it: for a payment, on the account its kind books, in the payment's
    direction (equal to the payment's amount when they agree); otherwise what the movement moved."""
    if unit.movement is None:
        return None
    if unit.payment is None:
        return unit.movement.gross
    account, sign = LEDGER_SIDE[unit.payment.kind]
    booked = unit.movement.on(account.value)
    return None if booked is None else sign * booked


def order_of(
    unit: Unit,
    orders_by_provider_id: Mapping[str, str],
    known_orders: Iterable[str],
    checkouts_by_provider_id: Mapping[str, str] | None = None,
    known_checkouts: Iterable[str] = (),
) -> tuple[str | None, list[str]]:
    """The order the unit belongs to, through any link that leads to it: our payment row or ledger movement,
    the PaymentIntent of a refund or dispute, the transfer of a reversal (our rows of those), the provider's
    `metadata.order_id` or `transfer_group`. Also the references that name no order of ours (kept for people).
    A checkout's charge is no one order's: no order, and its checkout named in the notes."""
    if unit.payment is not None:
        if unit.payment.order_id is not None:
            return unit.payment.order_id, []
        return None, [f"the charge of checkout {unit.payment.checkout_id}"]
    if unit.movement is not None:
        if unit.movement.order_id is not None:
            return unit.movement.order_id, []
        return None, [
            f"ledger movement {unit.movement.txn} books orders {', '.join(unit.movement.order_ids)}"
        ]
    record = unit.provider
    if record is None:
        return None, []
    known, checkouts = set(known_orders), checkouts_by_provider_id or {}
    notes: list[str] = []
    for link in (record.payment_intent, record.transfer):
        if link and link in orders_by_provider_id:
            return orders_by_provider_id[link], []
        if link and link in checkouts:  # several orders' charge: the object's own reference may say which
            notes.append(f"its PaymentIntent {link} is the charge of checkout {checkouts[link]}")
        elif link:
            notes.append(
                f"its {'PaymentIntent' if link == record.payment_intent else 'transfer'} {link} is not ours"
            )
    ref = record.order_ref
    if ref:
        parsed = _uuid(ref)
        if parsed is not None and parsed in known:
            return parsed, []
        if parsed is not None and parsed in set(known_checkouts):
            notes.append(f"its reference names checkout {parsed}, no one order")
        else:
            notes.append(f"order reference {ref!r} names no order of ours")
    return None, notes


def discrepancy(unit: Unit, verdict: Verdict, order_id: str | None, notes: Iterable[str] = ()) -> Discrepancy:
    assert verdict.category is not None
    provider, mine, movement = unit.provider, unit.payment, unit.movement
    return Discrepancy(
        category=verdict.category.value,
        object_type=unit.object_type,
        object_id=unit.object_id,
        order_id=order_id,
        ours_amount=mine.amount if mine else None,
        provider_amount=provider.amount if provider else None,
        ours_status=mine.outcome.value if mine else None,
        provider_status=provider.status[:32] if provider else None,
        detail="; ".join([*verdict.problems, *notes]),
        ours_currency=mine.currency if mine else None,
        provider_currency=provider.currency[:16] if provider else None,
        ledger_amount=ledger_amount(unit),
        ledger_currency="/".join(movement.currencies)[:16] if movement else None,
    )


def compare(
    since: float,
    until: float,
    provider: Iterable[ProviderRecord],
    payments: Iterable[OurPayment],
    movements: Iterable[Movement],
    orders_by_provider_id: Mapping[str, str] | None = None,
    known_orders: Iterable[str] = (),
    checkouts_by_provider_id: Mapping[str, str] | None = None,
    known_checkouts: Iterable[str] = (),
) -> tuple[int, list[Discrepancy]]:
    """Matched count and discrepancies of the units the window [since, until) owns (by `Unit.at`); sorted, so a
    re-run stores the same result."""
    links, checkout_links = orders_by_provider_id or {}, checkouts_by_provider_id or {}
    known, checkouts = set(known_orders), set(known_checkouts)
    matched, found = 0, list[Discrepancy]()
    for unit in pair(provider, payments, movements):
        if not since <= unit.at < until:
            continue  # another window's: reported there, once
        verdict = judge(unit)
        if verdict.agrees:
            matched += 1
            continue
        order_id, notes = order_of(unit, links, known, checkout_links, checkouts)
        found.append(discrepancy(unit, verdict, order_id, notes))
    found.sort(key=lambda d: (d.category, d.object_type, d.object_id))
    return matched, found


def _balance(movement: Movement) -> list[tuple[DiscrepancyCategory, str]]:
    off = {currency: total for currency, total in movement.sums().items() if total != 0}
    if not off:
        return []
    text = ", ".join(f"{total:+d} {currency}" for currency, total in sorted(off.items()))
    return [(DiscrepancyCategory.UNBALANCED, f"ledger movement {movement.txn} does not sum to zero ({text})")]


def _verdict(problems: list[tuple[DiscrepancyCategory, str]]) -> Verdict:
    if not problems:
        return Verdict(None)
    return Verdict(problems[0][0], tuple(text for _, text in problems))


def _uuid(value: str) -> str | None:
    try:
        return str(uuid.UUID(value))
    except ValueError:
        return None


@dataclass
class Side:
    """One side of a statement line."""

    ref: str  # the provider's id, our idempotency key, or the ledger txn
    amount: int
    currency: str
    status: str | None = None


@dataclass
class StatementLine:
    kind: str  # charge | refund | transfer | transfer_reversal | chargeback | chargeback_reversal | release
    # | release_reversal | fee | ledger | balance_transaction
    object_id: str
    provider: Side | None
    payment: Side | None
    ledger: Side | None
    agrees: bool
    category: str | None = None
    problems: list[str] = field(default_factory=list)


@dataclass
class MoneyStatement:
    order_id: str
    currency: str
    lines: list[StatementLine]
    agrees: bool
