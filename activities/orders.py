"""Order side effects on our database: stock reservation and release, the order projection and timeline.

The order workflow runs these as local activities (they are short database transactions: no task
dispatch, no extra workflow task). `save_transition` is one transaction per transition: the projection,
the timeline event, the stock going back, the notifications both sides get (an outbox drained by the
notification sender) and the trust bookkeeping, so nothing a transition implies is half done.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Select, bindparam, func, literal, or_, select, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import aliased
from temporalio import activity
from temporalio.exceptions import ApplicationError

from activities import metrics
from activities.database import activity_transaction
from activities.disputes import OpenDispute, open_case
from bazaar.checkout import cart
from bazaar.errors import Rejection
from bazaar.integrations import events
from bazaar.listings import stock
from bazaar.models import (
    AuditEvent,
    LedgerAccount,
    LedgerEntry,
    Listing,
    Order,
    OrderLine,
    OrderStatus,
    Payment,
    PaymentKind,
    PaymentOutcome,
    PaymentState,
)
from bazaar.orders.types import ChargebackStatus, OrderEvent, OrderLineView, Party, line_view
from bazaar.payments import ledger
from bazaar.payments.keys import MoneyOperation, key_number, key_prefix, money_key
from bazaar.returns import returns
from bazaar.settings import Settings
from bazaar.trust import disputes, notifications, reputation, reviews
from bazaar.trust.disputes import Resolution
from bazaar.trust.notifications import NotificationEvent

log = logging.getLogger(__name__)


@dataclass
class ReserveStockInput:
    order_id: str
    buyer_id: str
    listing_id: str
    quantity: int
    idempotency_key: str
    workflow_id: str
    payment_method: str = ""  # kept on the order, so a retried request can be compared with it


@dataclass
class ReserveStockResult:
    """Either the reserved order's terms, or why it could not be placed."""

    ok: bool
    reason: str | None = None
    seller_id: str = ""
    listing_title: str = ""
    unit_amount: int = 0
    amount: int = 0
    currency: str = ""


@dataclass
class OrderStateChange:
    order_id: str
    seq: int
    status: OrderStatus
    reason: str | None
    payment_state: PaymentState
    actor_id: str | None
    actor_role: Party
    action: OrderEvent
    tracking: dict[str, str] | None = None
    note: str | None = None  # the actor's own words (a cancellation's or refund's reason, support's note)


@dataclass
class LedgerPosting:
    """A ledger-only movement of the order (e.g. escrow released to the seller and the fee), idempotent on
    `txn`; accounts by their `LedgerAccount` value, amounts in the order's currency, summing to zero."""

    txn: str
    entries: dict[str, int]


@dataclass
class OrderTransition(OrderStateChange):
    """One transition of the order and everything it implies, written in one transaction."""

    release_stock: bool = False  # the order's stock goes back to its listing (once)
    ledger: list[LedgerPosting] = field(default_factory=list)
    notices: list[NotificationEvent] = field(default_factory=list)
    # The seller's reputation counters (bazaar.orders.notices.outcome_of): how the order ended
    # (completed | cancelled | refunded), and whether it counts as disputed.
    outcome: str | None = None
    disputed: bool = False
    review_closes_at: datetime | None = None  # completion: the review window opens until then
    # Refunds: the units of each line (by listing id) refunded by line so far, written to the order's lines.
    refunded_units: dict[str, int] = field(default_factory=dict)
    # Support's resolution of the order's dispute, when this transition settles it (the case reads resolved with it).
    dispute_resolution: Resolution | None = None
    # Units (by listing id) refunded by line before the order shipped: back on sale with this transition.
    restock_units: dict[str, int] = field(default_factory=dict)
    # The dispute case this transition opens (its record and first entry; the case's workflow follows).
    opens_case: OpenDispute | None = None
    # A completion whose seller's transfer follows it (after the Update's answer): no payout event yet.
    payout_follows: bool = False


@dataclass
class RefundLinesClaim:
    """The units of the order's lines a refund by lines takes, claimed before its money moves: `units`, refunded by
    line after it (absolute, by listing id), written under the order's row lock once `asked` (this refund's units)
    is checked against the units of open returns, which open under the same lock. A release gives `units` back
    (nothing asked)."""

    order_id: str
    units: dict[str, int]
    asked: dict[str, int] = field(default_factory=dict)


@dataclass
class AttentionReport:
    """A step of the order keeps failing past its bound: tell support (once per occurrence)."""

    order_id: str
    step: str
    error: str
    occurrence: int


@dataclass
class OrderSnapshot:
    """An ended order as the database knows it, for a reopened workflow run (see `load_order`)."""

    order_id: str
    buyer_id: str
    seller_id: str
    listing_id: str
    listing_title: str
    quantity: int
    amount: int
    currency: str
    status: OrderStatus
    reason: str | None
    payment_state: PaymentState
    tracking: dict[str, str] | None
    seq: int
    payment_intent_id: str | None
    refunded_amount: int
    # The highest <n> used in each kind of idempotency key, so the next one is new.
    refunds: int
    releases: int
    transfers: int
    reversals: int
    released: bool  # the latest release stands (not undone by a chargeback)
    released_gross: int
    released_fee: int
    payout_transfer_id: str | None  # the seller's payout that was not reversed, if any
    payout_amount: int
    chargeback_id: str | None
    chargeback_status: ChargebackStatus | None
    chargeback_amount: int
    checkout_id: str | None = None  # placed and paid by a checkout (its payouts go in the checkout's group)
    lines: list[OrderLineView] = field(default_factory=list)
    refunded_units: dict[str, int] = field(default_factory=dict)  # by listing id: units refunded by line


class OrderActivities:
    """Database work for the order workflow. Each activity is idempotent: Temporal may run it again."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    @activity.defn
    async def reserve_stock(self, req: ReserveStockInput) -> ReserveStockResult:
        """Create the order row and take the stock in one transaction (row lock: no oversell)."""
        order_id = uuid.UUID(req.order_id)
        async with activity_transaction() as session:
            existing = await session.get(Order, order_id)
            if existing is not None:  # a retry after the commit: report the same reservation
                return _reserved(existing)
            listing = await session.scalar(
                select(Listing).where(Listing.id == uuid.UUID(req.listing_id)).with_for_update()
            )
            # The API's own check (`purchase_problem`), again under the row lock: its code is the refusal's reason.
            refusal = cart.purchase_problem(listing, uuid.UUID(req.buyer_id), req.quantity)
            if refusal is not None:
                return ReserveStockResult(ok=False, reason=refusal.code.value)
            assert listing is not None
            stock.take(session, listing, req.quantity)
            order = Order(
                id=order_id,
                buyer_id=uuid.UUID(req.buyer_id),
                seller_id=listing.seller_id,
                listing_id=listing.id,
                listing_title=listing.title,
                quantity=req.quantity,
                unit_amount=listing.price_amount,
                amount=listing.price_amount * req.quantity,
                currency=listing.currency,
                status=OrderStatus.PENDING,
                payment_state=PaymentState.NONE,
                idempotency_key=req.idempotency_key,
                payment_method=req.payment_method or None,
                workflow_id=req.workflow_id,
                stock_reserved=True,
                state_seq=1,
            )
            session.add(order)
            session.add(
                OrderLine(
                    order_id=order_id,
                    listing_id=listing.id,
                    position=0,
                    listing_title=listing.title,
                    quantity=req.quantity,
                    unit_amount=listing.price_amount,
                )
            )
            session.add(
                AuditEvent(
                    actor_id=order.buyer_id,
                    actor_role=Party.BUYER,
                    subject_type="order",
                    subject_id=req.order_id,
                    action=OrderEvent.PLACED,
                    data={"status": OrderStatus.PENDING, "quantity": req.quantity},
                    dedupe_key=f"order:{req.order_id}:state:1",
                )
            )
            await session.flush()
            return _reserved(order)

    @activity.defn
    async def release_stock(self, order_id: str) -> bool:
        """Give the order's stock back to its listing, once (a sold listing becomes active again)."""
        async with activity_transaction() as session:
            return await _release_stock(session, uuid.UUID(order_id))

    @activity.defn
    async def record_order_state(self, change: OrderStateChange) -> None:
        """Project the workflow's state into `orders` and append the timeline event (never backwards).
        Used by orders started before `save_transition` existed (workflows.legacy_order)."""
        async with activity_transaction() as session:
            await _project(session, change)

    @activity.defn
    async def claim_refund_lines(self, claim: RefundLinesClaim) -> None:
        """Found from outside: a return and a refund by lines sent together both took the same units (each
        checked before the other was stored), and the return was then refused its refund for good."""
        async with activity_transaction() as session:
            # The order's row lock, which opening a return takes too: one of the two waits for the other.
            order = await session.scalar(
                select(Order).where(Order.id == uuid.UUID(claim.order_id)).with_for_update()
            )
            assert order is not None
            asked = {uuid.UUID(listing): n for listing, n in claim.asked.items()}
            # The rule the refund route asks first (bazaar.returns), asked again under the lock.
            if (problem := await returns.units_held_by_returns(session, order, asked)) is not None:
                raise ApplicationError(problem.message, type=Rejection.INVALID_REQUEST, non_retryable=True)
            for line in order.lines:
                line.refunded_quantity = claim.units.get(str(line.listing_id), line.refunded_quantity)

    @activity.defn
    async def save_transition(self, change: OrderTransition) -> bool:
        """The transition and what it implies, in one transaction; False if it was saved before (a retry
        after a lost answer writes nothing twice)."""
        async with activity_transaction() as session:
            moved = await _project(session, change)
            if moved is None:
                return False
            order_id = uuid.UUID(change.order_id)
            for posting in change.ledger:
                entries = {LedgerAccount(account): amount for account, amount in posting.entries.items()}
                await ledger.post(session, posting.txn, order_id, moved.seller_id, moved.currency, entries)
            if change.restock_units and not change.release_stock:  # a release gives back all that is left
                await _restock(session, order_id, change.restock_units)
            if change.release_stock:
                await _release_stock(session, order_id)
            for listing_id, units in change.refunded_units.items():
                await session.execute(
                    update(OrderLine)
                    .where(OrderLine.order_id == order_id, OrderLine.listing_id == uuid.UUID(listing_id))
                    .values(refunded_quantity=units)
                )
            if change.opens_case is not None:
                await open_case(session, change.opens_case)
            if change.dispute_resolution is not None:
                await disputes.record_resolution(session, order_id, change.dispute_resolution)
            await notifications.write(session, change.notices, self.settings.public_base_url)
            await events.record_order_transition(
                session,
                order_id,
                change.seq,
                change.status,
                moved.from_status,
                change.payment_state,
                change.action,
                change.payout_follows,
            )
            if change.outcome or change.disputed or change.review_closes_at:
                await _trust_bookkeeping(session, order_id, moved.seller_id, change)
        metrics.order_transition(moved.from_status, change.status, moved.seconds_in_state)  # once committed
        return True

    @activity.defn
    async def report_attention(self, report: AttentionReport) -> None:
        """Support hears of a stuck order: a timeline event and a notification to every support user."""
        async with activity_transaction() as session:
            key = f"order:{report.order_id}:attention:{report.occurrence}"
            await session.execute(
                insert(AuditEvent)
                .values(
                    actor_id=None,
                    actor_role=Party.SYSTEM,
                    subject_type="order",
                    subject_id=report.order_id,
                    action=OrderEvent.NEEDS_ATTENTION,
                    data={"step": report.step, "error": report.error[:500]},
                    dedupe_key=key,
                )
                .on_conflict_do_nothing(index_elements=["dedupe_key"])
            )
            attention = notifications.NotificationEvent(
                key,
                "order_needs_attention",
                [],
                ["support"],
                {"order_id": report.order_id, "step": report.step, "error": report.error[:500]},
            )
            await notifications.write(session, [attention], self.settings.public_base_url)
            # The order's reads say so too, until its next move (the projection clears it).
            await session.execute(
                update(Order)
                .where(Order.id == uuid.UUID(report.order_id))
                .values(needs_attention=f"{report.step}: {report.error}"[:600])
            )

    @activity.defn
    async def load_order(self, order_id: str) -> OrderSnapshot:
        """Rebuild an ended order's workflow state from its row, its payments and its ledger movements."""
        oid = uuid.UUID(order_id)
        async with activity_transaction() as session:
            order = await session.get(Order, oid)
            if order is None:
                raise LookupError(f"order {order_id} not found")
            # A checkout's order was paid by the checkout's charge (its payment row is the checkout's).
            owner = Payment.order_id == oid
            if order.checkout_id is not None:
                owner = or_(
                    owner, (Payment.checkout_id == order.checkout_id) & (Payment.kind == PaymentKind.CHARGE)
                )
            payments = (await session.scalars(select(Payment).where(owner))).all()
            entries = (await session.scalars(select(LedgerEntry).where(LedgerEntry.order_id == oid))).all()
            lost = await session.scalar(
                select(AuditEvent.id).where(
                    AuditEvent.subject_type == "order",
                    AuditEvent.subject_id == order_id,
                    AuditEvent.action == OrderEvent.CHARGEBACK_LOST,
                )
            )

        def done(kind: PaymentKind) -> list[Payment]:
            rows = [p for p in payments if p.kind == kind and p.outcome == PaymentOutcome.SUCCEEDED]
            return sorted(rows, key=lambda p: key_number(p.idempotency_key))

        def highest(operation: MoneyOperation, keys: list[str]) -> int:
            prefix = key_prefix(order_id, operation)
            return max((key_number(k) for k in keys if k.startswith(prefix)), default=0)

        payment_keys = [p.idempotency_key for p in payments]
        txns = sorted({e.txn for e in entries})
        charges = done(PaymentKind.CHARGE)
        transfers, reversals = done(PaymentKind.TRANSFER), done(PaymentKind.TRANSFER_REVERSAL)
        chargebacks, reinstated = done(PaymentKind.CHARGEBACK), done(PaymentKind.CHARGEBACK_REVERSAL)
        releases = highest(MoneyOperation.RELEASE, txns)
        # The latest release, less what refunds after it took back (`release_reversal:<n>.<refund>`).
        taken_back = key_prefix(order_id, MoneyOperation.RELEASE_REVERSAL) + f"{releases}."
        release = [
            e
            for e in entries
            if e.txn == money_key(order_id, MoneyOperation.RELEASE, releases) or e.txn.startswith(taken_back)
        ]
        released = releases > 0 and money_key(order_id, MoneyOperation.RELEASE_REVERSAL, releases) not in txns
        # What is still with the seller: earlier payouts were reversed in full (chargebacks), the latest one
        # perhaps in part (refunds after the release).
        outstanding = sum(t.amount for t in transfers) - sum(r.amount for r in reversals)
        payout = transfers[-1] if transfers and outstanding > 0 else None
        chargeback = chargebacks[-1] if chargebacks else None
        return OrderSnapshot(
            lines=[line_view(line) for line in order.lines],
            refunded_units={
                str(x.listing_id): x.refunded_quantity for x in order.lines if x.refunded_quantity
            },
            order_id=order_id,
            buyer_id=str(order.buyer_id),
            seller_id=str(order.seller_id),
            listing_id=str(order.listing_id),
            listing_title=order.listing_title,
            quantity=order.quantity,
            amount=order.amount,
            currency=order.currency,
            status=order.status,
            reason=order.status_reason,
            payment_state=order.payment_state,
            tracking=order.tracking,
            seq=order.state_seq,
            payment_intent_id=charges[-1].provider_id if charges else None,
            checkout_id=str(order.checkout_id) if order.checkout_id else None,
            refunded_amount=sum(p.amount for p in done(PaymentKind.REFUND)),
            refunds=highest(MoneyOperation.REFUND, payment_keys),
            releases=releases,
            transfers=highest(MoneyOperation.TRANSFER, payment_keys),
            reversals=highest(MoneyOperation.TRANSFER_REVERSAL, payment_keys),
            released=released,
            released_gross=-sum(e.amount for e in release if e.account == LedgerAccount.ESCROW),
            released_fee=sum(e.amount for e in release if e.account == LedgerAccount.PLATFORM_FEES),
            payout_transfer_id=payout.provider_id if payout else None,
            payout_amount=outstanding if payout else 0,
            chargeback_id=chargeback.provider_id if chargeback else None,
            chargeback_status=_chargeback_status(chargeback is not None, bool(reinstated), lost is not None),
            chargeback_amount=chargeback.amount if chargeback else 0,
        )


@dataclass
class _Moved:
    """What `_project` moved: the order's seller and currency, the state it left and how long it was in it."""

    seller_id: uuid.UUID
    currency: str
    from_status: str
    seconds_in_state: float


def _projection() -> Select[Any]:
    """The workflow's state into `orders` and its timeline event, in one statement (an order's critical path),
    built once: only the parameters change, so each transition skips building it (1.3 ms of Python measured)."""
    before = aliased(Order, name="before")  # the row as it was: the state left, and since when (updated_at)
    moved = (
        update(Order)
        .where(
            Order.id == bindparam("p_order_id", type_=Order.id.type),
            Order.state_seq < bindparam("p_seq", type_=Order.state_seq.type),
            before.id == Order.id,
        )
        .values(
            status=bindparam("p_status", type_=Order.status.type),
            status_reason=bindparam("p_reason", type_=Order.status_reason.type),
            payment_state=bindparam("p_payment_state", type_=Order.payment_state.type),
            state_seq=bindparam("p_seq", type_=Order.state_seq.type),
            tracking=bindparam("p_tracking", type_=Order.tracking.type),
            needs_attention=None,  # a move is the flagged step done (or given up and compensated)
        )
        .returning(
            Order.seller_id,
            Order.currency,
            before.status.label("from_status"),
            func.extract("epoch", func.now() - before.updated_at).label("seconds_in_state"),
        )
        .cte("moved")
    )
    event = {
        "actor_id": bindparam("p_actor_id", type_=AuditEvent.actor_id.type),
        "actor_role": bindparam("p_actor_role", type_=AuditEvent.actor_role.type),
        "subject_type": literal("order"),
        "subject_id": bindparam("p_subject_id", type_=AuditEvent.subject_id.type),
        "action": bindparam("p_action", type_=AuditEvent.action.type),
        "data": bindparam("p_data", type_=AuditEvent.data.type),
        "dedupe_key": bindparam("p_dedupe_key", type_=AuditEvent.dedupe_key.type),
    }
    timeline = (
        insert(AuditEvent)
        .from_select(list(event), select(*event.values()).select_from(moved))
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
        .cte("timeline")
    )
    return select(*moved.c).add_cte(timeline)


_PROJECTION = _projection()


async def _project(session: AsyncSession, change: OrderStateChange) -> _Moved | None:
    """Apply `_PROJECTION` for this change; None if this step was applied before."""
    connection = await session.connection()  # a Core statement: no ORM bookkeeping on the critical path
    parameters = {
        "p_order_id": uuid.UUID(change.order_id),
        "p_seq": change.seq,
        "p_status": change.status,
        "p_reason": change.reason,
        "p_payment_state": change.payment_state,
        "p_tracking": change.tracking,
        "p_actor_id": uuid.UUID(change.actor_id) if change.actor_id else None,
        "p_actor_role": change.actor_role,
        "p_subject_id": change.order_id,
        "p_action": change.action,
        "p_data": {
            "status": change.status,
            "reason": change.reason,
            "payment_state": change.payment_state,
            **({"note": change.note} if change.note else {}),
        },
        "p_dedupe_key": f"order:{change.order_id}:state:{change.seq}",
    }
    row = (await connection.execute(_PROJECTION, parameters)).first()
    if row is None:
        return None
    return _Moved(row.seller_id, row.currency, str(row.from_status), float(row.seconds_in_state))


async def _release_stock(session: AsyncSession, order_id: uuid.UUID) -> bool:
    order = await session.scalar(select(Order).where(Order.id == order_id).with_for_update())
    if order is None or not order.stock_reserved:
        return False
    # No line rows: placed by a worker of the version before lines (a rolling deploy); its one listing is its line.
    lines = [(x.listing_id, x.quantity - x.restocked_quantity) for x in order.lines] or [
        (order.listing_id, order.quantity)
    ]
    await stock.give_back(session, [(listing_id, units) for listing_id, units in lines if units > 0])
    order.stock_reserved = False
    return True


async def _restock(session: AsyncSession, order_id: uuid.UUID, units: dict[str, int]) -> None:
    """Put units refunded by line before the order shipped back on sale (the order holds the rest)."""
    order = await session.scalar(select(Order).where(Order.id == order_id).with_for_update())
    if order is None or not order.stock_reserved:
        return
    lines = {str(line.listing_id): line for line in order.lines}
    back = [(lines[k].listing_id, n) for k, n in units.items() if k in lines and n > 0]
    await stock.give_back(session, back)
    for listing_id, n in back:
        lines[str(listing_id)].restocked_quantity += n


async def _trust_bookkeeping(
    session: AsyncSession, order_id: uuid.UUID, seller_id: uuid.UUID, change: OrderTransition
) -> None:
    """Reputation counters and the review window, in a savepoint: if the trust tables refuse, the order's
    own transition still commits (the money and the order's state come first) and the failure is logged.
    One statement each: this runs in the transition that completes the order, before its Update answers."""
    try:
        async with session.begin_nested():
            for outcome in (change.outcome, "disputed" if change.disputed else None):
                if outcome:
                    await reputation.apply_order_outcome(session, order_id, seller_id, outcome)
            if change.review_closes_at:
                await reviews.start_window(session, order_id, change.review_closes_at)
    except SQLAlchemyError:
        log.exception("trust bookkeeping failed for order %s (%s)", order_id, change.action)


def _chargeback_status(charged_back: bool, reinstated: bool, lost: bool) -> ChargebackStatus | None:
    """The card network's decision as the timeline recorded it (a lost one may have left money frozen, which
    support released or refunded later: the order's own status no longer says)."""
    if not charged_back:
        return None
    if reinstated:
        return ChargebackStatus.WON
    return ChargebackStatus.LOST if lost else ChargebackStatus.WITHDRAWN


def _reserved(order: Order) -> ReserveStockResult:
    return ReserveStockResult(
        ok=True,
        seller_id=str(order.seller_id),
        listing_title=order.listing_title,
        unit_amount=order.unit_amount,
        amount=order.amount,
        currency=order.currency,
    )
