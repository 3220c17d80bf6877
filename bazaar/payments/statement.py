"""An order's money statement: every charge, refund, transfer, reversal, chargeback and release of the order
at the provider, in our payments and in the ledger, side by side, judged by reconciliation's own comparison
(`bazaar.payments.reconcile.judge`); and the fee, which is no provider object: what the platform keeps of the
order's money at the provider (the sum of what its objects moved on the platform balance), less what the ledger
still holds for the order in escrow or owes the seller, must be the ledger's fee. Pure: no I/O.

An order a checkout placed shares its checkout's one charge: the charge's line is the order's share of it (what
the charge booked into this order's escrow), not the whole, which would tell each seller what the buyer bought
from the others; it agrees when the whole charge agrees (the PaymentIntent, the checkout's payment row, the
movement across all the checkout's orders) and the movement booked the order's share. The fee counts only that
share and only the order's own ledger entries. A dispute on that charge is each order's share of it the same way
(every order's row of it and its movement are compared as one with the provider's dispute)."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from bazaar.models import LedgerAccount
from bazaar.payments.reconcile import (
    DISPUTE_KINDS,
    LEDGER_SIDE,
    OBJECT_TYPE,
    PROVIDER_SIGN,
    MoneyStatement,
    Side,
    StatementLine,
    Unit,
    judge,
    ledger_amount,
)

# The provider's object type -> what the statement calls it: our payment kind of that object (any other type,
# e.g. balance_transaction, by its own name).
KIND = {object_type: kind.value for kind, object_type in OBJECT_TYPE.items()}


@dataclass(frozen=True)
class ChargeShare:
    """The order's part of its checkout's one charge (the provider knows only the whole)."""

    checkout_id: str
    amount: int  # the order's amount: what the checkout's charge booked into its escrow


def statement(
    order_id: str, currency: str, units: Iterable[Unit], checkout: ChargeShare | None = None
) -> MoneyStatement:
    units = list(units)
    lines = [
        _share_line(unit, order_id, checkout.amount)
        if checkout and _checkout_charge(unit, checkout)
        else _share_line(unit, order_id, _own_share(unit, order_id))
        if _shared_dispute(unit)
        else _line(unit)
        for unit in units
    ]
    lines.append(_fee(order_id, currency, units, checkout))
    return MoneyStatement(
        order_id=order_id, currency=currency, lines=lines, agrees=all(line.agrees for line in lines)
    )


def _line(unit: Unit) -> StatementLine:
    verdict = judge(unit)
    provider, mine, movement = unit.provider, unit.payment, unit.movement
    if unit.object_type == "ledger":
        operation = movement.operation if movement else None
        kind = operation if operation in ("release", "release_reversal") else "ledger"
    else:
        kind = KIND.get(unit.object_type, unit.object_type)
    booked = ledger_amount(unit)
    return StatementLine(
        kind=kind,
        object_id=unit.object_id,
        provider=Side(provider.id, provider.amount, provider.currency, provider.status) if provider else None,
        payment=Side(mine.key, mine.amount, mine.currency, mine.outcome.value) if mine else None,
        ledger=Side(movement.txn, booked if booked is not None else 0, "/".join(movement.currencies))
        if movement
        else None,
        agrees=verdict.agrees,
        category=verdict.category.value if verdict.category else None,
        problems=list(verdict.problems),
    )


def _share_line(unit: Unit, order_id: str, share: int) -> StatementLine:
    """A money movement several orders share (a checkout's charge, a dispute on it) as this order's statement shows
    it: the order's share on each side, the provider's and our payment's ids and statuses, and what the movement
    booked for this order. It agrees when the whole agrees and the movement booked the order's share."""
    whole, booked = _line(unit), _own_share(unit, order_id)
    problems = list(whole.problems)
    if unit.movement is not None and booked != share:
        problems.append(f"the {whole.kind} booked {booked} for this order, its share is {share}")
    provider, payment, ledger = whole.provider, whole.payment, whole.ledger
    return StatementLine(
        kind=whole.kind,
        object_id=whole.object_id,
        provider=Side(provider.ref, share, provider.currency, provider.status) if provider else None,
        payment=Side(payment.ref, share, payment.currency, payment.status) if payment else None,
        ledger=Side(ledger.ref, booked, ledger.currency) if ledger else None,
        agrees=not problems,
        category=whole.category or ("amount_mismatch" if problems else None),
        problems=problems,
    )


def _shared_dispute(unit: Unit) -> bool:
    """A dispute (or its reinstatement) on a checkout's one charge: its orders' rows compared as one
    (`reconcile.pair`), each order bearing its share."""
    mine = unit.payment
    return mine is not None and mine.order_id is None and mine.kind in DISPUTE_KINDS


def _own_share(unit: Unit, order_id: str) -> int:
    """What the unit's movement booked for this order on its payment's side (the charge: into its escrow)."""
    assert unit.payment is not None
    account, sign = LEDGER_SIDE[unit.payment.kind]
    entries = unit.movement.entries if unit.movement else ()
    return sign * sum(e.amount for e in entries if e.order_id == order_id and e.account == account.value)


def _fee(order_id: str, currency: str, units: list[Unit], checkout: ChargeShare | None) -> StatementLine:
    problems: list[str] = []
    kept, share = 0, ""
    for unit in units:
        record = unit.provider
        if record is None or record.object_type not in PROVIDER_SIGN or not record.moved_money:
            continue
        if record.currency != currency:
            problems.append(
                f"{record.object_type} {record.id} is in {record.currency}, the order in {currency}"
            )
            continue
        if checkout is not None and _checkout_charge(unit, checkout):
            # The provider knows the checkout's whole charge; the order's money is its share of it.
            kept += checkout.amount
            share = f", its share of checkout {checkout.checkout_id}'s charge {checkout.amount}"
        elif _shared_dispute(unit):
            kept += PROVIDER_SIGN[record.object_type] * _own_share(unit, order_id)
        else:
            kept += PROVIDER_SIGN[record.object_type] * record.amount
    accounts: dict[str, int] = {}
    for unit in units:
        for entry in unit.movement.entries if unit.movement else ():
            # A checkout's charge books the other orders too: only this order's entries are its own.
            if entry.currency == currency and entry.order_id in (None, order_id):
                accounts[entry.account] = accounts.get(entry.account, 0) + entry.amount
    held = accounts.get(LedgerAccount.ESCROW.value, 0) + accounts.get(LedgerAccount.SELLER_PAYABLE.value, 0)
    fee = accounts.get(LedgerAccount.PLATFORM_FEES.value, 0)
    if kept - held != fee:
        problems.append(
            f"the platform keeps {kept - held} at the provider ({kept} on its balance for the order{share}, "
            f"{held} of it held in escrow or owed to the seller), the ledger's fee is {fee}"
        )
    return StatementLine(
        kind="fee",
        object_id=f"{currency} fee",
        provider=Side("platform balance", kept - held, currency),
        payment=None,
        ledger=Side(LedgerAccount.PLATFORM_FEES.value, fee, currency),
        agrees=not problems,
        category="amount_mismatch" if problems else None,
        problems=problems,
    )


def _checkout_charge(unit: Unit, checkout: ChargeShare) -> bool:
    """Whether the unit is the checkout's charge: the PaymentIntent its payment row claims (any other
    PaymentIntent counts whole, as a stray one of a single order does)."""
    return (
        unit.object_type == "payment_intent"
        and unit.payment is not None
        and unit.payment.checkout_id == checkout.checkout_id
    )
