"""Request and response models of reconciliation: support's discrepancy list and an order's money statement.

Request strings follow api/schemas.py's rule: labels are a single line, prose is multi-line (bazaar.text).
"""

from __future__ import annotations

import enum
import uuid
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, Field

from api.schemas import example
from bazaar.models import ReconciliationItem
from bazaar.payments.discrepancies import DiscrepancyStatus
from bazaar.payments.money import AnsweredCurrency
from bazaar.payments.reconcile import DiscrepancyCategory, MoneyStatement, ObjectType, Side, StatementLine
from bazaar.text import multi_line


class ReconciliationItemOut(BaseModel):
    """One discrepancy of a reconciliation window (docs/operations.md, "Reconciliation", says what each
    category means and what to do). Amounts are minor units; `ledger_amount` is what the ledger movement booked
    for it (in the payment's direction), or what a movement without a payment row moved."""

    id: int
    window_id: str
    category: DiscrepancyCategory
    object_type: ObjectType = Field(
        description="payment_intent, refund, transfer, transfer_reversal, dispute, dispute_reversal, "
        "balance_transaction, or ledger (a movement without a payment row)"
    )
    object_id: str = Field(description="the provider's id, our idempotency key, or the ledger txn")
    order_id: uuid.UUID | None = Field(description="the order any link leads to; null if none does")
    ours_amount: int | None
    ours_currency: str | None
    ours_status: str | None
    provider_amount: int | None
    provider_currency: str | None
    provider_status: str | None
    ledger_amount: int | None
    ledger_currency: str | None
    detail: str = Field(description="every problem found, and references that name no order of ours")
    status: DiscrepancyStatus
    note: str | None = Field(description="support's note, or which run resolved it")
    changed_by: uuid.UUID | None = Field(
        description="the support user who set the status; null: reconciliation"
    )
    status_changed_at: datetime | None
    first_seen_at: datetime
    last_seen_at: datetime

    @classmethod
    def of(cls, item: ReconciliationItem) -> ReconciliationItemOut:
        return cls(
            id=item.id,
            window_id=item.window_id,
            category=DiscrepancyCategory(item.category),
            object_type=item.object_type,
            object_id=item.object_id,
            order_id=item.order_id,
            ours_amount=item.ours_amount,
            ours_currency=item.ours_currency,
            ours_status=item.ours_status,
            provider_amount=item.provider_amount,
            provider_currency=item.provider_currency,
            provider_status=item.provider_status,
            ledger_amount=item.ledger_amount,
            ledger_currency=item.ledger_currency,
            detail=item.detail,
            status=DiscrepancyStatus(item.status),
            note=item.note,
            changed_by=item.changed_by,
            status_changed_at=item.status_changed_at,
            first_seen_at=item.first_seen_at,
            last_seen_at=item.last_seen_at,
        )


class ReconciliationPage(BaseModel):
    items: list[ReconciliationItemOut]
    next_cursor: int | None = Field(description="pass as `before` for the next page; null on the last one")


# Support's note on an item, and the most items a page lists: the REST route's rules, which the CLI takes too.
ItemNote = Annotated[str, multi_line(min_length=1, max_length=2000)]
MAX_ITEMS_PER_PAGE = 500


class ReconciliationItemIn(BaseModel):
    model_config = example({"status": "acknowledged", "note": "Asked the provider who made this refund"})

    status: DiscrepancyStatus = Field(
        description="acknowledged: someone is on it (it leaves the open gauge); resolved: settled (the note "
        "says how); open: reopen it"
    )
    note: ItemNote = Field(description="why: what was checked or done (kept with the item)")


class MoneySideOut(BaseModel):
    ref: str = Field(description="the provider's id, our payment's idempotency key, or the ledger txn")
    amount: int = Field(description="minor units")
    currency: str
    status: str | None

    @classmethod
    def of(cls, side: Side | None) -> MoneySideOut | None:
        return (
            None
            if side is None
            else cls(ref=side.ref, amount=side.amount, currency=side.currency, status=side.status)
        )


class MoneyLineKind(enum.StrEnum):
    """What a line of an order's money statement is."""

    CHARGE = "charge"
    REFUND = "refund"
    TRANSFER = "transfer"
    TRANSFER_REVERSAL = "transfer_reversal"
    CHARGEBACK = "chargeback"
    CHARGEBACK_REVERSAL = "chargeback_reversal"
    RELEASE = "release"
    RELEASE_REVERSAL = "release_reversal"
    FEE = "fee"
    LEDGER = "ledger"
    BALANCE_TRANSACTION = "balance_transaction"


class MoneyLineOut(BaseModel):
    kind: MoneyLineKind
    object_id: str
    provider: MoneySideOut | None = Field(description="at the provider (for `fee`: what the platform keeps)")
    payment: MoneySideOut | None = Field(description="our payment row")
    ledger: MoneySideOut | None = Field(description="the ledger movement")
    agrees: bool
    category: DiscrepancyCategory | None = Field(
        description="the discrepancy category reconciliation gives it, if any"
    )
    problems: list[str]

    @classmethod
    def of(cls, line: StatementLine) -> MoneyLineOut:
        return cls(
            kind=line.kind,
            object_id=line.object_id,
            provider=MoneySideOut.of(line.provider),
            payment=MoneySideOut.of(line.payment),
            ledger=MoneySideOut.of(line.ledger),
            agrees=line.agrees,
            category=DiscrepancyCategory(line.category) if line.category else None,
            problems=line.problems,
        )


class MoneyStatementOut(BaseModel):
    """Every money movement of the order at the provider, in our payments and in the ledger, side by side, with
    whether they agree (reconciliation's own comparison), and reconciliation's unsettled items on the order."""

    order_id: uuid.UUID
    currency: AnsweredCurrency
    agrees: bool
    lines: list[MoneyLineOut]
    discrepancies: list[ReconciliationItemOut]

    @classmethod
    def of(cls, statement: MoneyStatement, items: list[ReconciliationItem]) -> MoneyStatementOut:
        return cls(
            order_id=uuid.UUID(statement.order_id),
            currency=statement.currency,
            agrees=statement.agrees,
            lines=[MoneyLineOut.of(line) for line in statement.lines],
            discrepancies=[ReconciliationItemOut.of(i) for i in items],
        )
