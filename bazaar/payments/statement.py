"""An order's money statement: every charge, refund, transfer, reversal, chargeback and release of the order
at the provider, in our payments and in the ledger, side by side, judged by reconciliation's own comparison
(`bazaar.payments.reconcile.judge`); and the fee, which is no provider object: what the platform keeps of the
order's money at the provider (the sum of what its objects moved on the platform balance), less what the ledger
still holds for the order in escrow or owes the seller, must be the ledger's fee. Pure: no I/O."""

from __future__ import annotations

from collections.abc import Iterable

from bazaar.models import LedgerAccount
from bazaar.payments.reconcile import (
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


def statement(order_id: str, currency: str, units: Iterable[Unit]) -> MoneyStatement:
    units = list(units)
    lines = [_line(unit) for unit in units]
    lines.append(_fee(currency, units))
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


def _fee(currency: str, units: list[Unit]) -> StatementLine:
    problems: list[str] = []
    kept = 0
    for unit in units:
        record = unit.provider
        if record is None or record.object_type not in PROVIDER_SIGN or not record.moved_money:
            continue
        if record.currency != currency:
            problems.append(
                f"{record.object_type} {record.id} is in {record.currency}, the order in {currency}"
            )
            continue
        kept += PROVIDER_SIGN[record.object_type] * record.amount
    accounts: dict[str, int] = {}
    for unit in units:
        for entry in unit.movement.entries if unit.movement else ():
            if entry.currency == currency:
                accounts[entry.account] = accounts.get(entry.account, 0) + entry.amount
    held = accounts.get(LedgerAccount.ESCROW.value, 0) + accounts.get(LedgerAccount.SELLER_PAYABLE.value, 0)
    fee = accounts.get(LedgerAccount.PLATFORM_FEES.value, 0)
    if kept - held != fee:
        problems.append(
            f"the platform keeps {kept - held} at the provider ({kept} on its balance for the order, {held} "
            f"of it held in escrow or owed to the seller), the ledger's fee is {fee}"
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
