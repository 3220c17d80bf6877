"""Reconciliation: our payments and ledger against the provider's records, over one time window.

One activity does fetch, compare and store, because the provider's side of a day can exceed Temporal's
payload limit: only the summary goes back to the workflow. The comparison itself (`compare`) is pure.

What is compared (provider objects created in the window, and our payment rows created in it):
- PaymentIntents, refunds, transfers, transfer reversals and disputes against our `payments` rows, by the
  provider's id (a PaymentIntent also by `metadata.order_id` while our row has no id yet): amount and status;
- each of our successful payments against its ledger movement (`ledger_entries.txn` = its idempotency key);
- every provider balance transaction against the payment it comes from (charge, refund, transfer, reversal,
  dispute), so money that moved at the provider without us knowing shows up even without an object match.

Categories: missing_ours (the provider has it, we do not), missing_provider (we have it, the provider does
not), amount_mismatch, status_mismatch. Each discrepancy is a log line and a metric
(`bazaar_reconciliation_discrepancies`, by category and object type) and a row in `reconciliation_items`;
re-running a window replaces its result (same rows, same counts: idempotent).
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import stripe
from sqlalchemy import delete, func, select, tuple_
from sqlalchemy.dialects.postgresql import insert
from temporalio import activity

from bazaar.db import transaction
from bazaar.models import (
    LedgerAccount,
    LedgerEntry,
    Payment,
    PaymentKind,
    PaymentOutcome,
    ReconciliationItem,
    ReconciliationRun,
)
from bazaar.payments.provider import order_id_of

CATEGORIES = ("missing_ours", "missing_provider", "amount_mismatch", "status_mismatch")
SUMMARY_LIMIT = 200  # discrepancies returned to the workflow (all of them are stored)

# Our payment kind -> the provider object it corresponds to.
OBJECT_TYPE = {
    PaymentKind.CHARGE: "payment_intent",
    PaymentKind.REFUND: "refund",
    PaymentKind.TRANSFER: "transfer",
    PaymentKind.TRANSFER_REVERSAL: "transfer_reversal",
    PaymentKind.CHARGEBACK: "dispute",
    PaymentKind.CHARGEBACK_REVERSAL: "dispute_reversal",
}
# Our payment kind -> the ledger account its movement must credit, and with which sign of its amount.
LEDGER_SIDE = {
    PaymentKind.CHARGE: (LedgerAccount.ESCROW, 1),
    PaymentKind.REFUND: (LedgerAccount.REFUNDS, 1),
    PaymentKind.TRANSFER: (LedgerAccount.SELLER_PAYOUTS, 1),
    PaymentKind.TRANSFER_REVERSAL: (LedgerAccount.SELLER_PAYOUTS, -1),
    PaymentKind.CHARGEBACK: (LedgerAccount.CHARGEBACKS, 1),
    PaymentKind.CHARGEBACK_REVERSAL: (LedgerAccount.CHARGEBACKS, -1),
}


@dataclass
class ReconcileWindow:
    since: str  # ISO 8601 with a time zone, inclusive
    until: str  # exclusive


@dataclass
class Discrepancy:
    category: str
    object_type: str
    object_id: str
    order_id: str | None = None
    ours_amount: int | None = None
    provider_amount: int | None = None
    ours_status: str | None = None
    provider_status: str | None = None
    detail: str = ""


@dataclass
class ReconciliationSummary:
    window_id: str
    since: str
    until: str
    matched: int
    missing_ours: int
    missing_provider: int
    amount_mismatch: int
    status_mismatch: int
    discrepancies: list[Discrepancy] = field(default_factory=list)


@dataclass(frozen=True)
class ProviderRecord:
    """A provider object reduced to what we compare."""

    object_type: str
    id: str
    amount: int
    status: str
    order_id: str | None = None


@dataclass(frozen=True)
class BalanceTxn:
    id: str
    type: str
    source: str
    amount: int


@dataclass(frozen=True)
class OurPayment:
    key: str
    kind: PaymentKind
    provider_id: str | None
    amount: int
    outcome: PaymentOutcome
    order_id: str
    in_window: bool


def parse_window(window: ReconcileWindow) -> tuple[datetime, datetime]:
    since, until = datetime.fromisoformat(window.since), datetime.fromisoformat(window.until)
    if since.tzinfo is None or until.tzinfo is None:
        raise ValueError("window bounds need a time zone (e.g. 2026-11-24T00:00:00+00:00)")
    if until <= since:
        raise ValueError("the window must end after it starts")
    return since.astimezone(UTC), until.astimezone(UTC)


def window_id(window: ReconcileWindow) -> str:
    since, until = parse_window(window)
    return f"{since:%Y%m%dT%H%M%SZ}-{until:%Y%m%dT%H%M%SZ}"


def reconciliation_workflow_id(window: ReconcileWindow) -> str:
    """One workflow id per window: re-running a window joins or repeats the same workflow."""
    return f"reconciliation-{window_id(window)}"


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
    return PaymentOutcome.SUCCEEDED  # transfers, reversals and dispute withdrawals exist only once done


def balance_source(txn: BalanceTxn, charge_intents: dict[str, str]) -> tuple[str, str] | None:
    """Which provider object a balance transaction moves money for, as (object type, id)."""
    prefix = txn.source.split("_", 1)[0]
    if prefix in ("ch", "py"):
        intent = charge_intents.get(txn.source)
        return ("payment_intent", intent) if intent else None
    return {
        "re": ("refund", txn.source),
        "tr": ("transfer", txn.source),
        "trr": ("transfer_reversal", txn.source),
        "dp": ("dispute" if txn.amount < 0 else "dispute_reversal", txn.source),
    }.get(prefix)


def compare(
    provider: Iterable[ProviderRecord],
    balance_txns: Iterable[BalanceTxn],
    charge_intents: dict[str, str],
    ours: Iterable[OurPayment],
    ledger: dict[str, dict[str, int]],
) -> tuple[int, list[Discrepancy]]:
    """Matched count and discrepancies; deterministic (sorted) so a re-run stores the same result."""
    ours = list(ours)
    by_provider: dict[tuple[str, str], OurPayment] = {
        (OBJECT_TYPE[p.kind], p.provider_id): p for p in ours if p.provider_id
    }
    unmatched_charges = {p.order_id: p for p in ours if p.kind == PaymentKind.CHARGE and not p.provider_id}
    matched, found, seen = 0, list[Discrepancy](), set[str]()
    for record in provider:
        mine = by_provider.get((record.object_type, record.id))
        if mine is None and record.object_type == "payment_intent" and record.order_id:
            mine = unmatched_charges.pop(record.order_id, None)  # our row never learnt the id (lost reply)
            if mine is not None:
                by_provider[(record.object_type, record.id)] = mine
        if mine is None:
            found.append(
                Discrepancy(
                    "missing_ours",
                    record.object_type,
                    record.id,
                    order_id=record.order_id,
                    provider_amount=record.amount,
                    provider_status=record.status,
                    detail="at the provider, not in our payments",
                )
            )
            continue
        seen.add(mine.key)
        ok = True
        if mine.amount != record.amount:
            ok = False
            found.append(_mismatch("amount_mismatch", record, mine, "amounts differ"))
        if mine.outcome != expected_outcome(record):
            ok = False
            found.append(_mismatch("status_mismatch", record, mine, "outcome differs from the provider's"))
        matched += ok
    for mine in ours:
        if not mine.in_window or mine.key in seen or mine.kind == PaymentKind.CHARGEBACK_REVERSAL:
            continue
        if mine.outcome == PaymentOutcome.FAILED and mine.provider_id is None:
            continue  # refused before anything existed at the provider: nothing to match
        found.append(
            Discrepancy(
                "missing_provider",
                OBJECT_TYPE[mine.kind],
                mine.provider_id or mine.key,
                order_id=mine.order_id,
                ours_amount=mine.amount,
                ours_status=mine.outcome.value,
                detail=f"our payment {mine.key} has no provider object",
            )
        )
    for mine in ours:
        if not mine.in_window or mine.outcome != PaymentOutcome.SUCCEEDED:
            continue
        account, sign = LEDGER_SIDE[mine.kind]
        booked = ledger.get(mine.key, {}).get(account.value)
        if booked is None:
            found.append(
                Discrepancy(
                    "missing_ours",
                    "ledger",
                    mine.key,
                    order_id=mine.order_id,
                    ours_amount=mine.amount,
                    detail=f"no ledger movement on {account.value}",
                )
            )
        elif booked != sign * mine.amount:
            found.append(
                Discrepancy(
                    "amount_mismatch",
                    "ledger",
                    mine.key,
                    order_id=mine.order_id,
                    ours_amount=sign * mine.amount,
                    provider_amount=booked,
                    # provider_amount holds what the ledger booked: the ledger is the other side here.
                    detail=f"ledger {account.value} booked {booked}, the payment says {sign * mine.amount}",
                )
            )
        else:
            matched += 1
    for txn in balance_txns:
        source = balance_source(txn, charge_intents)
        mine = by_provider.get(source) if source else None
        if mine is None:
            found.append(
                Discrepancy(
                    "missing_ours",
                    "balance_transaction",
                    txn.id,
                    provider_amount=txn.amount,
                    provider_status=txn.type,
                    detail=f"money moved at the provider for {txn.source}, unknown to us",
                )
            )
        elif abs(txn.amount) != mine.amount:
            found.append(
                Discrepancy(
                    "amount_mismatch",
                    "balance_transaction",
                    txn.id,
                    order_id=mine.order_id,
                    ours_amount=mine.amount,
                    provider_amount=txn.amount,
                    provider_status=txn.type,
                    detail=f"balance transaction for {txn.source} differs from our payment {mine.key}",
                )
            )
        else:
            matched += 1
    found.sort(key=lambda d: (d.category, d.object_type, d.object_id))
    return matched, found


def _mismatch(category: str, record: ProviderRecord, mine: OurPayment, detail: str) -> Discrepancy:
    return Discrepancy(
        category,
        record.object_type,
        record.id,
        order_id=mine.order_id,
        ours_amount=mine.amount,
        provider_amount=record.amount,
        ours_status=mine.outcome.value,
        provider_status=record.status,
        detail=f"{detail} (our payment {mine.key})",
    )


class ReconciliationActivities:
    def __init__(self, client: stripe.StripeClient) -> None:
        self.client = client

    @activity.defn
    async def reconcile(self, window: ReconcileWindow) -> ReconciliationSummary:
        """Fetch both sides of the window, compare, store the result (replacing a previous run's)."""
        since, until = parse_window(window)
        gte, lt = int(since.timestamp()), int(until.timestamp())
        provider: dict[tuple[str, str], ProviderRecord] = {}
        balance_txns: list[BalanceTxn] = []
        charge_intents: dict[str, str] = {}
        v1 = self.client.v1

        for object_type, resource in self._compared_resources().items():
            async for obj in _all(
                await resource.list_async(params={"created": {"gte": gte, "lt": lt}, "limit": 100})
            ):
                _add(provider, _record(object_type, obj))
        async for ch in _all(
            await v1.charges.list_async(params={"created": {"gte": gte, "lt": lt}, "limit": 100})
        ):
            if ch.get("payment_intent"):
                charge_intents[ch["id"]] = ch["payment_intent"]
        async for bt in _all(
            await v1.balance_transactions.list_async(params={"created": {"gte": gte, "lt": lt}, "limit": 100})
        ):
            txn = BalanceTxn(bt["id"], bt["type"], str(bt["source"]), bt["amount"])
            balance_txns.append(txn)
            if txn.type == "transfer_refund":  # reversals are listed per transfer; their money is here
                _add(provider, ProviderRecord("transfer_reversal", txn.source, txn.amount, "succeeded"))
        activity.heartbeat("provider listed")

        ours = await _our_payments(since, until, [key[1] for key in provider])
        # Our rows from the window whose provider object was created just outside it: fetch them one by one.
        for mine in ours:
            object_type = OBJECT_TYPE[mine.kind]
            if mine.in_window and mine.provider_id and (object_type, mine.provider_id) not in provider:
                record = await self._retrieve(object_type, mine.provider_id)
                if record is not None:
                    _add(provider, record)
        for txn in balance_txns:
            if txn.source.startswith(("ch_", "py_")) and txn.source not in charge_intents:
                charge = (await v1.charges.retrieve_async(txn.source)).to_dict()
                if charge.get("payment_intent"):
                    charge_intents[txn.source] = charge["payment_intent"]
        ledger = await _ledger_movements([p.key for p in ours if p.outcome == PaymentOutcome.SUCCEEDED])

        matched, found = compare(
            sorted(provider.values(), key=lambda r: (r.object_type, r.id)),
            sorted(balance_txns, key=lambda t: t.id),
            charge_intents,
            ours,
            ledger,
        )
        summary = _summarize(window, matched, found)
        await _store(window, since, until, summary, found)
        meter = activity.metric_meter()
        counter = meter.create_counter(
            "bazaar_reconciliation_discrepancies", "Reconciliation discrepancies found, per run", "1"
        )
        for item in found:
            activity.logger.warning(
                "reconciliation discrepancy window=%s category=%s object_type=%s object_id=%s order_id=%s "
                "ours_amount=%s provider_amount=%s ours_status=%s provider_status=%s: %s",
                summary.window_id,
                item.category,
                item.object_type,
                item.object_id,
                item.order_id,
                item.ours_amount,
                item.provider_amount,
                item.ours_status,
                item.provider_status,
                item.detail,
            )
            counter.add(1, {"category": item.category, "object_type": item.object_type})
        activity.logger.info(
            "reconciliation window=%s matched=%d discrepancies=%d", summary.window_id, matched, len(found)
        )
        return summary

    def _compared_resources(self) -> dict[str, Any]:
        """The provider's object lists we compare with our payments, by our object type."""
        v1 = self.client.v1
        return {
            "payment_intent": v1.payment_intents,
            "refund": v1.refunds,
            "transfer": v1.transfers,
            "dispute": v1.disputes,
        }

    async def _retrieve(self, object_type: str, provider_id: str) -> ProviderRecord | None:
        v1 = self.client.v1
        try:
            resources = self._compared_resources()
            if object_type in resources:
                return _record(
                    object_type, (await resources[object_type].retrieve_async(provider_id)).to_dict()
                )
            if object_type == "transfer_reversal":
                page = await v1.balance_transactions.list_async(params={"source": provider_id, "limit": 1})
                for bt in page.data:
                    return ProviderRecord("transfer_reversal", provider_id, bt["amount"], "succeeded")
        except stripe.InvalidRequestError as exc:
            if exc.http_status != 404:
                raise
        return None


async def _all(page: Any) -> AsyncIterator[dict[str, Any]]:
    """Every item of a list, following the provider's pagination, as plain dicts."""
    async for item in page.auto_paging_iter():
        yield item.to_dict()


def _add(records: dict[tuple[str, str], ProviderRecord], record: ProviderRecord) -> None:
    records[(record.object_type, record.id)] = record


def _record(object_type: str, data: dict[str, Any]) -> ProviderRecord:
    """A provider object reduced to what we compare (a transfer that exists has been paid)."""
    status = "paid" if object_type == "transfer" else data["status"]
    order_id = None if object_type == "dispute" else order_id_of(data)
    return ProviderRecord(object_type, data["id"], data["amount"], status, order_id)


async def _our_payments(since: datetime, until: datetime, provider_ids: list[str]) -> list[OurPayment]:
    """Our rows created in the window, plus any row the provider's window objects point at."""
    async with transaction() as session:
        in_window = (Payment.created_at >= since) & (Payment.created_at < until)
        rows = (
            await session.scalars(select(Payment).where(in_window | Payment.provider_id.in_(provider_ids)))
        ).all()
        return [
            OurPayment(
                key=p.idempotency_key,
                kind=p.kind,
                provider_id=p.provider_id,
                amount=p.amount,
                outcome=p.outcome,
                order_id=str(p.order_id),
                in_window=since <= p.created_at < until,
            )
            for p in sorted(rows, key=lambda p: p.idempotency_key)
        ]


async def _ledger_movements(keys: list[str]) -> dict[str, dict[str, int]]:
    """Per movement (txn = payment idempotency key): the sum per account."""
    movements: dict[str, dict[str, int]] = {}
    if not keys:
        return movements
    async with transaction() as session:
        rows = await session.execute(
            select(LedgerEntry.txn, LedgerEntry.account, func.sum(LedgerEntry.amount))
            .where(LedgerEntry.txn.in_(keys))
            .group_by(LedgerEntry.txn, LedgerEntry.account)
        )
        for txn, account, amount in rows.all():
            movements.setdefault(txn, {})[account.value] = int(amount)
    return movements


def _summarize(window: ReconcileWindow, matched: int, found: list[Discrepancy]) -> ReconciliationSummary:
    counts = {c: sum(1 for d in found if d.category == c) for c in CATEGORIES}
    return ReconciliationSummary(
        window_id=window_id(window),
        since=window.since,
        until=window.until,
        matched=matched,
        discrepancies=found[:SUMMARY_LIMIT],
        **counts,
    )


async def _store(
    window: ReconcileWindow,
    since: datetime,
    until: datetime,
    summary: ReconciliationSummary,
    found: list[Discrepancy],
) -> None:
    """Upsert the run and its discrepancies; drop the window's rows that no longer differ. One transaction."""
    counts = {c: getattr(summary, c) for c in CATEGORIES}
    async with transaction() as session:
        run = insert(ReconciliationRun).values(
            window_id=summary.window_id,
            since=since,
            until=until,
            workflow_id=reconciliation_workflow_id(window),
            runs=1,
            matched=summary.matched,
            **counts,
        )
        await session.execute(
            run.on_conflict_do_update(
                index_elements=["window_id"],
                set_={
                    "runs": ReconciliationRun.runs + 1,
                    "matched": run.excluded.matched,
                    "last_run_at": func.now(),
                    **{c: run.excluded[c] for c in CATEGORIES},
                },
            )
        )
        keys = [(d.object_type, d.object_id, d.category) for d in found]
        stale = select(ReconciliationItem.id).where(ReconciliationItem.window_id == summary.window_id)
        if keys:
            stale = stale.where(
                tuple_(
                    ReconciliationItem.object_type, ReconciliationItem.object_id, ReconciliationItem.category
                ).not_in(keys)
            )
        stale_ids = (await session.scalars(stale)).all()
        if stale_ids:
            await session.execute(delete(ReconciliationItem).where(ReconciliationItem.id.in_(stale_ids)))
        for item in found:
            values = {
                "order_id": _uuid_or_none(item.order_id),
                "ours_amount": item.ours_amount,
                "provider_amount": item.provider_amount,
                "ours_status": item.ours_status,
                "provider_status": item.provider_status,
                "detail": item.detail,
            }
            row = insert(ReconciliationItem).values(
                window_id=summary.window_id,
                category=item.category,
                object_type=item.object_type,
                object_id=item.object_id,
                **values,
            )
            await session.execute(
                row.on_conflict_do_update(
                    constraint="uq_reconciliation_item", set_={**values, "last_seen_at": func.now()}
                )
            )


def _uuid_or_none(value: str | None) -> uuid.UUID | None:
    """Metadata is free text at the provider: an order id that is not a UUID is kept in `detail` only."""
    try:
        return uuid.UUID(value) if value else None
    except ValueError:
        return None
