"""Reconciliation: the provider's records against our payments and our double-entry ledger, over one time
window; and an order's money statement. The comparison itself is `bazaar.payments.reconcile` (pure); here is
the fetching and the storing.

One activity fetches, compares and stores a window, because the provider's side of a day can exceed Temporal's
payload limit: only the summary goes back to the workflow. What a window holds:

- the provider's PaymentIntents, refunds, transfers and disputes created in it, and its balance transactions
  (each with its source object), which add the transfer reversals and dispute reinstatements, and any money
  we cannot attribute to an object;
- our payment rows created in it, the rows those provider objects (or the PaymentIntent of a refund or dispute,
  or the transfer of a reversal) point at, and every ledger movement created in it with its payment row;
- the provider objects of our rows that were created just outside the window (fetched one by one).

A checkout's one charge is the checkout's payment row (no order), its PaymentIntent names the checkout
(`metadata.checkout_id`, transfer group `checkout-<id>`), and its ledger movement books every order of the
checkout; a discrepancy on it names no order (the detail names the checkout). Its orders' refunds and transfers
are each order's own, named by `metadata.order_id`.

Each money movement belongs to the window in which it first happened on either side, so a movement that spans
a window edge is reported once. After storing its window, a run re-checks the earlier windows that still have
unsettled items and ended within `RECONCILIATION_SETTLE_SECONDS` (default 24 h) before it: a webhook booked
after midnight, or a worker that was down across the edge, clears the earlier window's item on the next run.
"""

from __future__ import annotations

import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import stripe
from sqlalchemy import any_, cast, or_, select
from sqlalchemy.dialects.postgresql import ARRAY, UUID
from sqlalchemy.types import Text
from temporalio import activity
from temporalio.exceptions import ApplicationError

from bazaar.db import transaction
from bazaar.models import Checkout, LedgerEntry, Order, Payment, ReconciliationItem, StripeEvent
from bazaar.payments import discrepancies
from bazaar.payments.provider import order_id_of
from bazaar.payments.reconcile import (
    CATEGORIES,
    DISPUTE_KINDS,
    OBJECT_TYPE,
    Discrepancy,
    Entry,
    MoneyStatement,
    Movement,
    OurPayment,
    ProviderRecord,
    compare,
    pair,
)
from bazaar.payments.statement import ChargeShare, statement
from bazaar.settings import get_settings
from bazaar.temporal import checkout_workflow_id, order_workflow_id

__all__ = ["Discrepancy", "ReconcileWindow", "ReconciliationActivities", "ReconciliationSummary"]

SUMMARY_LIMIT = 200  # discrepancies returned to the workflow (all of them are stored)
# Balance transaction types that move an order's money; platform payouts and fees are not an order's.
MONEY_TYPES = frozenset(
    {"charge", "payment", "refund", "payment_refund", "transfer", "transfer_refund", "adjustment"}
)


@dataclass
class ReconcileWindow:
    since: str  # ISO 8601 with a time zone, inclusive
    until: str  # exclusive


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
    currency_mismatch: int = 0
    missing_ledger: int = 0
    ledger_only: int = 0
    unbalanced: int = 0
    opened: int = 0  # items this run opened (new, or found again after reconciliation had resolved them)
    resolved: int = 0  # items resolved by this run: its window's, and those of the windows it re-checked
    rechecked: list[str] = field(default_factory=list)  # earlier windows re-checked (settle period)


@dataclass
class OurSide:
    payments: list[OurPayment]
    movements: list[Movement]
    links: dict[str, str]  # provider id of one of our rows -> its order
    known_orders: set[str]
    checkout_links: dict[str, str] = field(default_factory=dict)  # a checkout's PaymentIntent -> the checkout
    known_checkouts: set[str] = field(default_factory=set)


def parse_window(window: ReconcileWindow) -> tuple[datetime, datetime]:
    """The window's bounds in UTC, in whole seconds (the provider's times are whole seconds)."""
    since, until = datetime.fromisoformat(window.since), datetime.fromisoformat(window.until)
    if since.tzinfo is None or until.tzinfo is None:
        raise ValueError("window bounds need a time zone (e.g. 2026-11-24T00:00:00+00:00)")
    since, until = (t.astimezone(UTC).replace(microsecond=0) for t in (since, until))
    if until <= since:
        raise ValueError("the window must end after it starts")
    return since, until


def window_id(window: ReconcileWindow) -> str:
    since, until = parse_window(window)
    return f"{since:%Y%m%dT%H%M%SZ}-{until:%Y%m%dT%H%M%SZ}"


def reconciliation_workflow_id(window: ReconcileWindow) -> str:
    """One workflow id per window: re-running a window joins or repeats the same workflow."""
    return f"reconciliation-{window_id(window)}"


class ReconciliationActivities:
    def __init__(self, client: stripe.StripeClient) -> None:
        self.client = client

    @activity.defn
    async def reconcile(self, window: ReconcileWindow) -> ReconciliationSummary:
        """Reconcile the window and store its result; then re-check the earlier windows still unsettled."""
        summary = await self._window(window, reconciliation_workflow_id(window))
        since, _ = parse_window(window)
        settle = timedelta(seconds=get_settings().reconciliation_settle_seconds)
        async with transaction() as session:
            earlier = [
                (r.since, r.until, r.workflow_id)
                for r in await discrepancies.windows_to_recheck(session, since, settle)
                if r.window_id != summary.window_id
            ]
        for start, end, workflow_id in earlier:
            again = await self._window(ReconcileWindow(start.isoformat(), end.isoformat()), workflow_id)
            summary.rechecked.append(again.window_id)
            summary.resolved += again.resolved
            activity.heartbeat(f"re-checked {again.window_id}")
        return summary

    @activity.defn
    async def order_money(self, order_id: str) -> MoneyStatement:
        """An order's money at the provider, in our payments and in the ledger, side by side."""
        oid = uuid.UUID(order_id)
        async with transaction() as session:
            order = await session.get(Order, oid)
            if order is None:
                raise ApplicationError(f"order {order_id} not found", type="NotFound", non_retryable=True)
            currency = order.currency
            checkout = (
                ChargeShare(str(order.checkout_id), order.amount) if order.checkout_id is not None else None
            )
            owned, booked = Payment.order_id == oid, LedgerEntry.order_id == oid
            if order.checkout_id is not None:
                # The one charge of its checkout, which paid for it, and a dispute on that charge (every order's
                # row of it: each bears its share), each with its movement whole (every order's share of it).
                disputes = select(Payment.provider_id).where(
                    Payment.order_id == oid, Payment.kind.in_(DISPUTE_KINDS)
                )
                owned = (
                    owned
                    | (Payment.checkout_id == order.checkout_id)
                    | (Payment.kind.in_(DISPUTE_KINDS) & Payment.provider_id.in_(disputes))
                )
            rows = (await session.scalars(select(Payment).where(owned))).all()
            payments = [_ours(p) for p in rows]
            if order.checkout_id is not None:
                shared = [p.key for p in payments if p.order_id != order_id]
                booked = booked | (LedgerEntry.txn == any_(_texts(shared)))
            movements = _movements((await session.scalars(select(LedgerEntry).where(booked))).all())
            # Provider objects reconciliation or the webhooks saw on this order, that our rows do not name.
            items = await session.execute(
                select(ReconciliationItem.object_type, ReconciliationItem.object_id).where(
                    ReconciliationItem.order_id == oid
                )
            )
            named = {(object_type, object_id) for object_type, object_id in items.all()}
            obj = StripeEvent.payload["data"]["object"]
            naming = [
                obj["metadata"]["order_id"].astext == order_id,
                obj["transfer_group"].astext == order_workflow_id(order_id),
            ]
            if checkout is not None:
                naming += [
                    obj["metadata"]["checkout_id"].astext == checkout.checkout_id,
                    obj["transfer_group"].astext == checkout_workflow_id(checkout.checkout_id),
                ]
            seen = await session.scalars(select(obj["id"].astext).where(or_(*naming)))
            named |= {("payment_intent", i) for i in seen.all() if i and i.startswith("pi_")}
        records = await self._order_records(order_id, payments, named, checkout)
        return statement(order_id, currency, pair(records.values(), payments, movements), checkout)

    async def _window(self, window: ReconcileWindow, workflow_id: str) -> ReconciliationSummary:
        since, until = parse_window(window)
        provider = await self._provider_side(int(since.timestamp()), int(until.timestamp()))
        activity.heartbeat("provider listed")
        ours = await _our_side(since, until, provider.values())
        # Our rows of the window whose provider object was created outside it: fetch them one by one.
        fetched = False
        for mine in ours.payments:
            key = (OBJECT_TYPE[mine.kind], mine.provider_id or "")
            in_window = since.timestamp() <= mine.created < until.timestamp()
            if in_window and mine.provider_id and key not in provider:
                if (record := await self._retrieve(*key)) is not None:
                    provider[key] = record
                    fetched = True
        if fetched:  # their links (a refund's PaymentIntent, ...) may point at rows outside the window
            ours = await _our_side(since, until, provider.values())
        matched, found = compare(
            since.timestamp(),
            until.timestamp(),
            provider.values(),
            ours.payments,
            ours.movements,
            ours.links,
            ours.known_orders,
            ours.checkout_links,
            ours.known_checkouts,
        )
        wid = window_id(window)
        async with transaction() as session:
            opened, resolved = await discrepancies.store_run(
                session,
                window_id=wid,
                since=since,
                until=until,
                workflow_id=workflow_id,
                matched=matched,
                found=found,
            )
        for item in found:
            activity.logger.warning(
                "reconciliation discrepancy window=%s category=%s object_type=%s object_id=%s order_id=%s "
                "ours=%s %s provider=%s %s ledger=%s %s: %s",
                wid,
                item.category,
                item.object_type,
                item.object_id,
                item.order_id,
                item.ours_amount,
                item.ours_currency,
                item.provider_amount,
                item.provider_currency,
                item.ledger_amount,
                item.ledger_currency,
                item.detail,
            )
        activity.logger.info(
            "reconciliation window=%s matched=%d discrepancies=%d opened=%d resolved=%d",
            wid,
            matched,
            len(found),
            opened,
            resolved,
        )
        count = Counter(d.category for d in found)
        return ReconciliationSummary(
            window_id=wid,
            since=window.since,
            until=window.until,
            matched=matched,
            discrepancies=found[:SUMMARY_LIMIT],
            opened=opened,
            resolved=resolved,
            **{c: count[c] for c in CATEGORIES},  # type: ignore[arg-type]  # every category is an int field
        )

    def _compared_resources(self) -> dict[str, Any]:
        """The provider's object lists we compare with our payments, by our object type."""
        v1 = self.client.v1
        return {
            "payment_intent": v1.payment_intents,
            "refund": v1.refunds,
            "transfer": v1.transfers,
            "dispute": v1.disputes,
        }

    async def _provider_side(self, gte: int, lt: int) -> dict[tuple[str, str], ProviderRecord]:
        records: dict[tuple[str, str], ProviderRecord] = {}
        for object_type, resource in self._compared_resources().items():
            page = await resource.list_async(params={"created": {"gte": gte, "lt": lt}, "limit": 100})
            async for obj in _all(page):
                _add(records, _record(object_type, obj))
        balance = await self.client.v1.balance_transactions.list_async(
            params={"created": {"gte": gte, "lt": lt}, "limit": 100, "expand": ["data.source"]}
        )
        async for bt in _all(balance):
            if (record := _from_balance(bt)) is not None:
                _add(records, record)
        return records

    async def _retrieve(self, object_type: str, provider_id: str) -> ProviderRecord | None:
        try:
            resources = self._compared_resources()
            if object_type in resources:
                obj = (await resources[object_type].retrieve_async(provider_id)).to_dict()
                return _record(object_type, obj)
            if object_type == "transfer_reversal":
                page = await self.client.v1.balance_transactions.list_async(
                    params={"source": provider_id, "limit": 1, "expand": ["data.source"]}
                )
                for bt in page.data:
                    return _from_balance(bt.to_dict())
            if object_type == "dispute_reversal":
                dispute = (await self.client.v1.disputes.retrieve_async(provider_id)).to_dict()
                return next(iter(_reinstatements(dispute)), None)
        except stripe.InvalidRequestError as exc:
            if exc.http_status != 404:
                raise
        return None

    async def _order_records(
        self,
        order_id: str,
        payments: list[OurPayment],
        named: set[tuple[str, str]],
        checkout: ChargeShare | None = None,
    ) -> dict[tuple[str, str], ProviderRecord]:
        """Every provider object of one order: its PaymentIntents (our charges, and any a webhook or a
        reconciliation named), their refunds and disputes, its transfers (by transfer group) and their
        reversals, and whatever else our rows or reconciliation name. An order of a checkout shares the
        checkout's PaymentIntent and transfer group with the checkout's other orders: of their refunds and
        transfers, only those naming this order (or named by its rows) are its own."""
        v1 = self.client.v1
        records: dict[tuple[str, str], ProviderRecord] = {}
        wanted = named | {(OBJECT_TYPE[p.kind], p.provider_id) for p in payments if p.provider_id}
        shared = {p.provider_id for p in payments if p.checkout_id is not None and p.provider_id}

        def its_own(record: ProviderRecord) -> bool:
            return record.order_ref == order_id or (record.object_type, record.id) in wanted

        intents = sorted(i for t, i in wanted if t == "payment_intent")
        for intent in intents:
            if (record := await self._retrieve("payment_intent", intent)) is not None:
                _add(records, record)
                if checkout is not None and record.order_ref == checkout.checkout_id:
                    shared.add(intent)
            refunds = await v1.refunds.list_async(params={"payment_intent": intent, "limit": 100})
            async for obj in _all(refunds):
                refund = _record("refund", obj)
                if intent not in shared or its_own(refund):  # a shared charge: the other orders' refunds too
                    _add(records, refund)
            disputes = await v1.disputes.list_async(params={"payment_intent": intent, "limit": 100})
            async for obj in _all(disputes):
                _add(records, _record("dispute", obj))
                for record in _reinstatements(obj):
                    _add(records, record)
        group = order_workflow_id(order_id)  # the transfer group of its money
        async for obj in _all(await v1.transfers.list_async(params={"transfer_group": group, "limit": 100})):
            _add(records, _record("transfer", obj))
        if checkout is not None:  # its payouts are grouped with the charge that paid for it
            group = checkout_workflow_id(checkout.checkout_id)
            page = await v1.transfers.list_async(params={"transfer_group": group, "limit": 100})
            async for obj in _all(page):
                if its_own(record := _record("transfer", obj)):
                    _add(records, record)
        for object_type, provider_id in sorted(wanted):
            if (object_type, provider_id) not in records and object_type != "balance_transaction":
                if (record := await self._retrieve(object_type, provider_id)) is not None:
                    _add(records, record)
        for transfer in sorted(i for t, i in records if t == "transfer"):
            async for obj in _all(await v1.transfers.reversals.list_async(transfer, params={"limit": 100})):
                _add(records, _reversal(obj, obj.get("created")))
        return records


async def _all(page: Any) -> AsyncIterator[dict[str, Any]]:
    """Every item of a list, following the provider's pagination, as plain dicts."""
    async for item in page.auto_paging_iter():
        yield item.to_dict()


def _add(records: dict[tuple[str, str], ProviderRecord], record: ProviderRecord) -> None:
    records[(record.object_type, record.id)] = record


def _id(value: Any) -> str | None:
    """An id field, whether the provider sent the id or the expanded object."""
    if isinstance(value, dict):
        value = value.get("id")
    return str(value) if value else None


def _record(object_type: str, data: dict[str, Any]) -> ProviderRecord:
    """A provider object reduced to what we compare (a transfer that exists has been paid)."""
    return ProviderRecord(
        object_type=object_type,
        id=str(data["id"]),
        amount=int(data["amount"]),
        currency=str(data.get("currency") or "").upper(),
        status="paid" if object_type == "transfer" else str(data.get("status")),
        created=float(data.get("created") or 0),
        order_ref=None if object_type == "dispute" else _owner_ref(data),
        payment_intent=_id(data.get("payment_intent")) if object_type in ("refund", "dispute") else None,
    )


def _owner_ref(data: dict[str, Any]) -> str | None:
    """Whose money a provider object is: its order, else (a checkout's one charge) its checkout, by
    `metadata.checkout_id` or a `checkout-<id>` transfer group."""
    if (order_id := order_id_of(data)) is not None:
        return order_id
    checkout_id = (data.get("metadata") or {}).get("checkout_id")
    group = str(data.get("transfer_group") or "")
    prefix = checkout_workflow_id("")
    if not checkout_id and group.startswith(prefix):
        checkout_id = group.removeprefix(prefix)
    return str(checkout_id) if checkout_id else None


def _reversal(data: dict[str, Any], created: Any) -> ProviderRecord:
    return ProviderRecord(
        object_type="transfer_reversal",
        id=str(data["id"]),
        amount=int(data["amount"]),
        currency=str(data.get("currency") or "").upper(),
        status="succeeded",
        created=float(created or 0),
        order_ref=_owner_ref(data),
        transfer=_id(data.get("transfer")),
    )


def _reinstatements(dispute: dict[str, Any]) -> list[ProviderRecord]:
    """A dispute's money coming back (won): its positive balance transactions."""
    return [
        ProviderRecord(
            object_type="dispute_reversal",
            id=str(dispute["id"]),
            amount=int(bt["amount"]),
            currency=str(bt.get("currency") or dispute.get("currency") or "").upper(),
            status=str(dispute.get("status")),
            created=float(bt.get("created") or 0),
            payment_intent=_id(dispute.get("payment_intent")),
        )
        for bt in dispute.get("balance_transactions") or []
        if isinstance(bt, dict) and int(bt.get("amount") or 0) > 0
    ]


def _from_balance(bt: dict[str, Any]) -> ProviderRecord | None:
    """The money movement a balance transaction is, when no listed object of its window stands for it."""
    if bt.get("type") not in MONEY_TYPES:
        return None
    source = bt.get("source")
    obj: dict[str, Any] = source if isinstance(source, dict) else {"id": str(source or "")}
    prefix = str(obj.get("id")).split("_", 1)[0]
    if prefix == "trr":
        return _reversal({**obj, "amount": obj.get("amount", abs(bt["amount"]))}, bt.get("created"))
    if prefix == "dp" and bt["amount"] > 0:
        return ProviderRecord(
            object_type="dispute_reversal",
            id=str(obj["id"]),
            amount=int(bt["amount"]),
            currency=str(bt.get("currency") or "").upper(),
            status=str(obj.get("status", "won")),
            created=float(bt.get("created") or 0),
            payment_intent=_id(obj.get("payment_intent")),
        )
    if prefix in ("ch", "py") and obj.get("payment_intent"):
        return None  # its PaymentIntent is listed in the window it was created in
    if prefix in ("re", "tr", "dp"):
        return None  # listed (refunds, transfers, disputes) in the window they were created in
    return ProviderRecord(
        object_type="balance_transaction",
        id=str(bt["id"]),
        amount=int(bt["amount"]),
        currency=str(bt.get("currency") or "").upper(),
        status=str(bt.get("type")),
        created=float(bt.get("created") or 0),
    )


def _ours(p: Payment) -> OurPayment:
    return OurPayment(
        key=p.idempotency_key,
        kind=p.kind,
        provider_id=p.provider_id,
        amount=p.amount,
        currency=p.currency,
        outcome=p.outcome,
        order_id=str(p.order_id) if p.order_id is not None else None,
        created=p.created_at.timestamp(),
        checkout_id=str(p.checkout_id) if p.checkout_id is not None else None,
    )


def _movements(entries: Iterable[LedgerEntry]) -> list[Movement]:
    grouped: dict[str, list[LedgerEntry]] = {}
    for e in sorted(entries, key=lambda e: e.id):
        grouped.setdefault(e.txn, []).append(e)
    return [
        Movement(
            txn=txn,
            # A checkout's charge books several orders: it is no one order's.
            order_id=str(rows[0].order_id) if len({e.order_id for e in rows}) == 1 else None,
            entries=tuple(Entry(e.account.value, e.currency, e.amount, str(e.order_id)) for e in rows),
            created=min(e.created_at for e in rows).timestamp(),
        )
        for txn, rows in sorted(grouped.items())
    ]


async def _our_side(since: datetime, until: datetime, provider: Iterable[ProviderRecord]) -> OurSide:
    """Our rows and movements of the window, the rows the provider's objects point at, the rows of the window's
    movements, and which of the orders the provider's objects name are ours."""
    provider = list(provider)
    ids = {r.id for r in provider} | {i for r in provider for i in (r.payment_intent, r.transfer) if i}
    async with transaction() as session:
        window_txns = (
            select(LedgerEntry.txn)
            .where(LedgerEntry.created_at >= since, LedgerEntry.created_at < until)
            .distinct()
            .scalar_subquery()
        )
        in_window = (Payment.created_at >= since) & (Payment.created_at < until)
        rows = (
            await session.scalars(
                select(Payment).where(
                    in_window
                    | (Payment.provider_id == any_(_texts(ids)))
                    | Payment.idempotency_key.in_(window_txns)
                )
            )
        ).all()
        keys = sorted({p.idempotency_key for p in rows})
        entries = (
            await session.scalars(
                select(LedgerEntry).where(
                    LedgerEntry.txn.in_(window_txns) | (LedgerEntry.txn == any_(_texts(keys)))
                )
            )
        ).all()
        candidates = {u for r in provider if r.order_ref and (u := _uuid(r.order_ref)) is not None}
        known: Sequence[uuid.UUID] = ()
        checkouts: Sequence[uuid.UUID] = ()
        if candidates:
            known = (
                await session.scalars(select(Order.id).where(Order.id == any_(_uuids(candidates))))
            ).all()
            checkouts = (
                await session.scalars(select(Checkout.id).where(Checkout.id == any_(_uuids(candidates))))
            ).all()
    payments = [_ours(p) for p in rows]
    return OurSide(
        payments=payments,
        movements=_movements(entries),
        links={p.provider_id: p.order_id for p in payments if p.provider_id and p.order_id},
        known_orders={str(o) for o in known},
        checkout_links={p.provider_id: p.checkout_id for p in payments if p.provider_id and p.checkout_id},
        known_checkouts={str(c) for c in checkouts},
    )


def _uuid(value: str) -> uuid.UUID | None:
    try:
        return uuid.UUID(value)
    except ValueError:
        return None


def _texts(values: Iterable[str]) -> Any:
    """One array parameter (a day's ids can outnumber PostgreSQL's 65,535 bind parameters)."""
    return cast(sorted(values), ARRAY(Text))


def _uuids(values: Iterable[uuid.UUID]) -> Any:
    return cast(sorted(values), ARRAY(UUID(as_uuid=True)))
