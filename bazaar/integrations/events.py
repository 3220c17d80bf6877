"""Events for integrators: the catalogue, and the one way to write each kind, in the transaction of the change
that causes it (so an event exists if and only if its change committed).

An event is a row of `events`: its type, when, the seller it concerns (`seller_id`; NULL: the platform's only,
e.g. a buyer's review while reviews are blind) and `data`, a compact form of its object: ids, status, amounts,
never text a party may not see yet. The feed (`feed.py`) reads events in transaction order and the webhook
senders fan them out to endpoints (`delivery.py`), woken by the trigger on `events` (migration 0014).
"""

from __future__ import annotations

import enum
import uuid
from typing import Any

from sqlalchemy import ScalarSelect, String, bindparam, func, literal, select
from sqlalchemy.dialects.postgresql import aggregate_order_by, insert
from sqlalchemy.ext.asyncio import AsyncSession

from bazaar.integrations.models import Event
from bazaar.models import (
    LedgerAccount,
    LedgerEntry,
    Listing,
    Order,
    OrderLine,
    Payment,
    PaymentKind,
    PaymentOutcome,
    PaymentState,
)
from bazaar.orders.types import PAYOUT_OUTCOMES, OrderEvent
from bazaar.payments import ledger


class EventType(enum.StrEnum):
    """Every event type (docs: README, "Integrations: webhooks and the events feed")."""

    ORDER_PAID = "order.paid"
    ORDER_CONFIRMED = "order.confirmed"  # the seller accepted it
    ORDER_FULFILLED = "order.fulfilled"  # shipped
    ORDER_COMPLETED = "order.completed"
    ORDER_DISPUTED = "order.disputed"
    ORDER_REFUNDED = "order.refunded"
    ORDER_CANCELLED = "order.cancelled"
    # The same status, something else moved: a partial refund, a chargeback, a payout retried.
    ORDER_UPDATED = "order.updated"
    LISTING_CREATED = "listing.created"
    LISTING_PUBLISHED = "listing.published"
    LISTING_UPDATED = "listing.updated"  # an edit, or its stock (sold out, back on sale)
    LISTING_ARCHIVED = "listing.archived"
    LISTING_DELETED = "listing.deleted"
    REVIEW_CREATED = "review.created"  # no rating or text: reviews are blind until revealed
    REVIEW_REVEALED = "review.revealed"
    DISPUTE_OPENED = "dispute.opened"
    DISPUTE_RESOLVED = "dispute.resolved"
    PAYOUT_SENT = "payout.sent"
    PAYOUT_FAILED = "payout.failed"  # the provider refused it: support retries it
    PAYOUT_ON_HOLD = "payout.on_hold"  # waits until the provider enables the seller's payouts
    # Taken back from the seller: a refund or a chargeback after it was sent.
    PAYOUT_REVERSED = "payout.reversed"
    # A cart paid at once (the platform's: each seller hears of its own order by `order.paid`).
    CHECKOUT_PAID = "checkout.paid"
    CHECKOUT_PAYMENT_FAILED = "checkout.payment_failed"  # declined or refused: its orders cancelled
    RETURN_REQUESTED = "return.requested"
    RETURN_APPROVED = "return.approved"
    RETURN_REJECTED = "return.rejected"
    RETURN_ESCALATED = "return.escalated"  # support decides
    RETURN_SHIPPED = "return.shipped"
    RETURN_REFUNDED = "return.refunded"
    RETURN_CANCELLED = "return.cancelled"


class EventGroup(enum.StrEnum):
    """An endpoint may ask for every type of a group: `order.*`, ..."""

    ORDER = "order.*"
    LISTING = "listing.*"
    REVIEW = "review.*"
    DISPUTE = "dispute.*"
    PAYOUT = "payout.*"
    CHECKOUT = "checkout.*"
    RETURN = "return.*"


def matches(pattern: str, event_type: str) -> bool:
    """Whether an endpoint's `pattern` (a type or a group) selects `event_type` (the fan-out's SQL says the
    same: delivery.py)."""
    return pattern == event_type or pattern == f"{event_type.split('.', 1)[0]}.*"


async def record(
    session: AsyncSession,
    event_type: EventType,
    seller_id: uuid.UUID | ScalarSelect[uuid.UUID] | None,
    data: dict[str, Any],
    dedupe_key: str | None = None,
) -> None:
    """Write one event in the caller's transaction; with `dedupe_key`, once (a retried activity)."""
    statement = insert(Event).values(type=event_type, seller_id=seller_id, data=data, dedupe_key=dedupe_key)
    if dedupe_key is not None:
        statement = statement.on_conflict_do_nothing(index_elements=["dedupe_key"])
    connection = await session.connection()  # Core: no ORM bookkeeping (an order's transition runs this)
    await connection.execute(statement)


def seller_of(order_id: uuid.UUID) -> ScalarSelect[uuid.UUID]:
    """The seller of an order, inside the event's own statement (no extra round trip)."""
    return select(Order.seller_id).where(Order.id == order_id).scalar_subquery()


# ---------------------------------------------------------------------------------------------- listings


def listing_event(listing: Listing, event_type: EventType) -> Event:
    """A listing's event, to `session.add` beside its search-outbox row (bazaar.listings.lifecycle)."""
    return Event(
        type=event_type,
        seller_id=listing.seller_id,
        data={
            "object": "listing",
            "id": str(listing.id),
            "status": str(listing.status),
            "version": listing.version,
            "title": listing.title,
            "price": {"amount": listing.price_amount, "currency": listing.currency},
            "quantity": listing.quantity,
            "category": listing.category_slug,
        },
    )


# ------------------------------------------------------------------------------------------------ orders

_PAYOUT_ACTIONS = frozenset(
    {
        OrderEvent.COMPLETED,
        *PAYOUT_OUTCOMES.values(),
        OrderEvent.PAYOUT_RETRIED,
        OrderEvent.PAYOUT_RETRY_FAILED,
    }
)
_PAYOUTS = {
    PaymentState.RELEASED: EventType.PAYOUT_SENT,
    PaymentState.TRANSFER_FAILED: EventType.PAYOUT_FAILED,
    PaymentState.PAYOUT_ON_HOLD: EventType.PAYOUT_ON_HOLD,
}
# For people, not for systems; or, a transfer landing after its release, told by its payout event alone (the order
# itself did not change).
_QUIET = frozenset({OrderEvent.REMINDED, OrderEvent.NEEDS_ATTENTION, OrderEvent.PAYOUT_SENT})


def order_event_types(
    status: str, from_status: str, payment_state: str, action: str, payout_follows: bool = False
) -> list[EventType]:
    """The events of one order transition: `order.<status>` when the status changed (else `order.updated`), and
    a payout's when the transition released (or retried) the seller's payout; none when `payout_follows` (the
    release's transfer is still to be made: its own transition tells how it went)."""
    found: list[EventType] = []
    if status != from_status:
        found += [t for t in EventType if t == f"order.{status}"]  # none for `pending`, written at placing
    elif action not in _QUIET:
        found.append(EventType.ORDER_UPDATED)
    if action in _PAYOUT_ACTIONS and payment_state in _PAYOUTS and not payout_follows:
        found.append(_PAYOUTS[PaymentState(payment_state)])
    return found


async def record_order_transition(
    session: AsyncSession,
    order_id: uuid.UUID,
    seq: int,
    status: str,
    from_status: str,
    payment_state: str,
    action: str,
    payout_follows: bool = False,
) -> None:
    """The events of a transition the caller has just saved in `orders`, their data read from the row in the
    event's own statement. Once per transition (`seq`), should the caller's transaction run again."""
    connection = await session.connection()  # Core: no ORM bookkeeping on the order's critical path
    for event_type in order_event_types(status, from_status, payment_state, action, payout_follows):
        await connection.execute(
            _PAYOUT_EVENTS[event_type] if event_type in _PAYOUT_EVENTS else _ORDER_EVENT,
            {
                "type": event_type.value,
                "order_id": order_id,
                "previous_status": str(from_status),
                "action": str(action),
                "dedupe_key": f"order:{order_id}:state:{seq}:{event_type}",
            },
        )


def _line(listing_id: Any, title: Any, quantity: Any, unit_amount: Any, refunded: Any) -> Any:
    return func.jsonb_build_object(
        "listing_id", listing_id,
        "listing_title", title,
        "quantity", quantity,
        "unit_amount", unit_amount,
        "refunded_quantity", refunded,
    )  # fmt: skip


def _order_lines() -> Any:
    """The order's lines, in order, as the order's own read shows them (a checkout's order may have several;
    one placed before lines existed has its one listing as its line)."""
    line = _line(
        OrderLine.listing_id,
        OrderLine.listing_title,
        OrderLine.quantity,
        OrderLine.unit_amount,
        OrderLine.refunded_quantity,
    )
    own = func.jsonb_build_array(
        _line(Order.listing_id, Order.listing_title, Order.quantity, Order.unit_amount, literal(0))
    )
    return func.coalesce(
        select(func.jsonb_agg(aggregate_order_by(line, OrderLine.position)))
        .where(OrderLine.order_id == Order.id)
        .scalar_subquery(),
        own,
    )


def _order_data() -> Any:
    return func.jsonb_build_object(
        "object", "order",
        "id", Order.id,
        "status", Order.status,
        "previous_status", bindparam("previous_status", type_=String),
        "action", bindparam("action", type_=String),
        "reason", Order.status_reason,
        "payment_state", Order.payment_state,
        "buyer_id", Order.buyer_id,
        "seller_id", Order.seller_id,
        "listing_id", Order.listing_id,
        "listing_title", Order.listing_title,
        "quantity", Order.quantity,
        "amount", Order.amount,
        "refunded_amount", ledger.refunded_of(Order.id),
        "currency", Order.currency,
        "tracking", Order.tracking,
        "lines", _order_lines(),
    )  # fmt: skip


async def payout_reversed(session: AsyncSession, order: Order, amount: int, key: str) -> None:
    """`payout.reversed`: `amount` of the order's payout taken back from its seller (once per reversal)."""
    data = {
        "object": "payout",
        "order_id": str(order.id),
        "seller_id": str(order.seller_id),
        "status": "reversed",
        "amount": amount,
        "currency": order.currency,
    }
    await record(session, EventType.PAYOUT_REVERSED, order.seller_id, data, dedupe_key=key)


def _payout_data(event_type: EventType) -> Any:
    sent = (
        select(Payment.amount)
        .where(
            Payment.order_id == Order.id,
            Payment.kind == PaymentKind.TRANSFER,
            Payment.outcome == PaymentOutcome.SUCCEEDED,
        )
        .order_by(Payment.created_at.desc())
        .limit(1)
        .scalar_subquery()
    )
    # Not sent (failed, on hold): what the release left due to the seller (seller_payable, booked before this).
    due = (
        select(func.coalesce(func.sum(LedgerEntry.amount), 0))
        .where(LedgerEntry.order_id == Order.id, LedgerEntry.account == LedgerAccount.SELLER_PAYABLE)
        .scalar_subquery()
    )
    return func.jsonb_build_object(
        "object", "payout",
        "order_id", Order.id,
        "seller_id", Order.seller_id,
        "status", literal(event_type.removeprefix("payout."), String),
        # What was transferred (sent), or what is due and not paid out yet (failed, on hold).
        "amount", sent if event_type == EventType.PAYOUT_SENT else due,
        "currency", Order.currency,
    )  # fmt: skip


def _event_from_order(data: Any) -> Any:
    """An event whose data the statement reads from the order's row (`data`, an expression over `orders`)."""
    return (
        insert(Event)
        .from_select(
            ["type", "seller_id", "data", "dedupe_key"],
            select(
                bindparam("type", type_=String), Order.seller_id, data, bindparam("dedupe_key", type_=String)
            ).where(Order.id == bindparam("order_id")),
        )
        .on_conflict_do_nothing(index_elements=["dedupe_key"])
    )


# Built once (an order's transition writes them on its critical path: built per call they cost more than run).
_ORDER_EVENT = _event_from_order(_order_data())
_PAYOUT_EVENTS = {t: _event_from_order(_payout_data(t)) for t in _PAYOUTS.values()}
