"""A return's database steps (run by `activities/returns.py` for the `Return` workflow): open it under the order's
row lock (the lines must be the order's and not returned already, within the return window), save each move with
its timeline event and notifications in one transaction, and put the lines back on sale when the seller restocks.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from bazaar.errors import DomainError, field_error
from bazaar.integrations import events
from bazaar.integrations.events import EventType
from bazaar.listings import stock
from bazaar.models import AuditEvent, Order, OrderStatus
from bazaar.orders.types import OrderEvent, OrderLineView, line_view
from bazaar.payments import ledger
from bazaar.payments.money import format_money
from bazaar.returns.models import Return, ReturnLine, ReturnStatus
from bazaar.returns.rules import REFUND_REFUSED_AT_RECEIPT
from bazaar.returns.types import ReturnOpened, ReturnTransition, StartReturn
from bazaar.temporal import return_workflow_id
from bazaar.trust import notifications
from bazaar.trust.notifications import NotificationEvent

RETURNABLE = frozenset({OrderStatus.FULFILLED, OrderStatus.COMPLETED})
# Returns still to refund: they hold their units and their amount (a refunded one's units are the lines' refunded
# units; a rejected or cancelled one holds nothing).
_OPEN = [
    s for s in ReturnStatus if s not in (ReturnStatus.REJECTED, ReturnStatus.CANCELLED, ReturnStatus.REFUNDED)
]


async def units_in_open_returns(session: AsyncSession, order_id: uuid.UUID) -> dict[uuid.UUID, int]:
    """Units of each listing the order's open returns hold (a refunded one's units are in its lines'
    `refunded_quantity`): neither another return nor a refund by lines may take them."""
    rows = await session.execute(
        select(ReturnLine.listing_id, func.sum(ReturnLine.quantity))
        .join(Return, Return.id == ReturnLine.return_id)
        .where(Return.order_id == order_id, Return.status.in_(_OPEN))
        .group_by(ReturnLine.listing_id)
    )
    return {listing_id: int(total) for listing_id, total in rows}


async def units_held_by_returns(
    session: AsyncSession, order: Order, asked: dict[uuid.UUID, int]
) -> DomainError | None:
    """Why a refund by lines of `asked` (units by listing) may not be made: it would take units an open return
    holds, which its receipt refunds (found from outside: refunding every unit left the buyer shipping one back
    that nothing would refund or restock). None if it takes none."""
    held = await units_in_open_returns(session, order.id)
    for line in order.lines:
        left = line.quantity - line.refunded_quantity - held.get(line.listing_id, 0)
        if held.get(line.listing_id) and asked.get(line.listing_id, 0) > left:
            return field_error(
                "lines",
                f"listing {line.listing_id}: {left} can be refunded by lines; {held[line.listing_id]} more are in "
                "an open return, refunded when the seller receives them (or reject the return)",
                "in_open_return",
            )
    return None


def opened_of(row: Return) -> ReturnOpened:
    return ReturnOpened(
        ok=True,
        seller_id=str(row.seller_id),
        amount=row.amount,
        currency=row.currency,
        lines=[line_view(x) for x in row.lines],
        seq=row.state_seq,
    )


async def open_return(session: AsyncSession, req: StartReturn, base_url: str) -> ReturnOpened:
    """Store the return (status requested) and tell the seller, or refuse it with nothing stored."""
    return_id = uuid.UUID(req.return_id)
    existing = await session.get(Return, return_id)
    if existing is not None:  # a retry after the commit
        return opened_of(existing)
    order = await session.scalar(select(Order).where(Order.id == uuid.UUID(req.order_id)).with_for_update())
    if order is None or str(order.buyer_id) != req.buyer_id or order.status not in RETURNABLE:
        status = order.status.value if order else "unknown"
        return ReturnOpened(ok=False, refusal="order_not_returnable", detail=f"the order is {status}")
    shipped_at = await session.scalar(
        select(func.min(AuditEvent.at)).where(
            AuditEvent.subject_type == "order",
            AuditEvent.subject_id == req.order_id,
            AuditEvent.action == OrderEvent.FULFILLED,
        )
    )
    if shipped_at is None or datetime.now(UTC) - shipped_at > timedelta(seconds=req.window_seconds):
        return ReturnOpened(ok=False, refusal="return_window_closed", detail="the return window has closed")
    bought = {line.listing_id: line for line in order.lines}
    returned = await units_in_open_returns(session, order.id)
    lines: list[OrderLineView] = []
    for wanted in req.lines:
        listing_id = uuid.UUID(wanted.listing_id)
        line = bought.get(listing_id)
        left = line.quantity - line.refunded_quantity - int(returned.get(listing_id, 0)) if line else 0
        if line is None or not 0 < wanted.quantity <= line.quantity:  # never bought so: the request is wrong
            detail = f"listing {wanted.listing_id}: {left} of it can be returned"
            return ReturnOpened(ok=False, refusal="invalid_lines", detail=detail)
        if wanted.quantity > left:  # bought, but refunded or in another open return meanwhile: the state
            detail = (
                f"listing {wanted.listing_id}: {left} of it can be returned (refunds and open returns count)"
            )
            return ReturnOpened(ok=False, refusal="already_returned", detail=detail)
        lines.append(OrderLineView(wanted.listing_id, line.listing_title, wanted.quantity, line.unit_amount))
    # The lines at their prices, but never more than the order still holds.
    amount = min(sum(x.unit_amount * x.quantity for x in lines), await _still_held(session, order))
    if amount <= 0:
        return ReturnOpened(ok=False, refusal="nothing_to_refund", detail="the order was refunded already")
    row = Return(
        id=return_id,
        order_id=order.id,
        buyer_id=order.buyer_id,
        seller_id=order.seller_id,
        status=ReturnStatus.REQUESTED,
        reason=req.reason,
        message=req.message,
        photos=req.photos,
        amount=amount,
        currency=order.currency,
        workflow_id=return_workflow_id(req.return_id),
        idempotency_key=req.idempotency_key,
        state_seq=1,
    )
    session.add(row)
    await session.flush()
    for position, taken in enumerate(lines):
        session.add(
            ReturnLine(
                return_id=return_id,
                listing_id=uuid.UUID(taken.listing_id),
                position=position,
                listing_title=taken.listing_title,
                quantity=taken.quantity,
                unit_amount=taken.unit_amount,
            )
        )
    _audit(session, row, 1, "return.requested", order.buyer_id, "buyer", None)
    await _event(session, row, 1, lines)
    await notifications.write(
        session,
        [
            _notice(
                row,
                1,
                "return_requested",
                [str(row.seller_id)],
                [],
                req.reason.value.replace("_", " "),
                lines,
            )
        ],
        base_url,
    )
    await session.flush()
    stored = await session.get(Return, return_id, populate_existing=True)
    assert stored is not None
    return opened_of(stored)


async def short_of_refund(session: AsyncSession, return_id: uuid.UUID) -> bool:
    """Whether the order holds nothing more to refund (refunded in full since), so approving the return would only
    send the buyer's parcel back for nothing. Holding less than the return's amount is no reason: the return
    refunds what the order still holds when it is received (workflows.returns)."""
    row = await session.get(Return, return_id)
    return row is not None and row.order_id in await _holding_nothing(session, {row.order_id})


async def _holding_nothing(session: AsyncSession, order_ids: set[uuid.UUID]) -> set[uuid.UUID]:
    """Of these orders, the ones with nothing more to refund (refunded in full), or not stored."""
    orders = {o.id: o for o in await session.scalars(select(Order).where(Order.id.in_(order_ids)))}
    refunded = await ledger.refunded_by_order(session, list(orders))
    return {oid for oid in order_ids if oid not in orders or orders[oid].amount - refunded.get(oid, 0) <= 0}


def received(row: Return) -> bool:
    """Whether the seller has the lines back and the return waits on its refund: escalated because the order
    refused it at receipt. Support's approval asks the order again (a return whose order was refunded in full
    meanwhile is settled by that refund)."""
    return row.status == ReturnStatus.ESCALATED and row.status_reason == REFUND_REFUSED_AT_RECEIPT


async def unapprovable(session: AsyncSession, rows: Iterable[Return]) -> set[uuid.UUID]:
    """Of `rows`, the requested returns whose order holds nothing more to refund: approving one is refused, so
    their `allowed_actions` leave `approve` out (found from outside: offered, then refused with a 409)."""
    asked = [row for row in rows if row.status == ReturnStatus.REQUESTED]
    if not asked:
        return set()
    holding_nothing = await _holding_nothing(session, {row.order_id for row in asked})
    return {row.id for row in asked if row.order_id in holding_nothing}


async def _unrefunded(session: AsyncSession, order: Order) -> int:
    return order.amount - (await ledger.refunded_by_order(session, [order.id])).get(order.id, 0)


async def unrefunded(session: AsyncSession, order_id: uuid.UUID) -> int:
    """What the stored order has not refunded (0 for no such order)."""
    order = await session.get(Order, order_id)
    return await _unrefunded(session, order) if order is not None else 0


async def _still_held(session: AsyncSession, order: Order) -> int:
    """What the order still holds for a new return: its amount less its refunds and what its open returns will
    refund."""
    open_returns = [Return.order_id == order.id, Return.status.in_(_OPEN)]
    promised = await session.scalar(select(func.coalesce(func.sum(Return.amount), 0)).where(*open_returns))
    return await _unrefunded(session, order) - int(promised or 0)


async def save(session: AsyncSession, move: ReturnTransition, base_url: str) -> bool:
    """The move, its timeline event and its notifications; the lines back on sale when a refunded return is
    restocked. False if it was saved before (a retry writes nothing twice)."""
    row = await session.scalar(select(Return).where(Return.id == uuid.UUID(move.return_id)).with_for_update())
    assert row is not None
    if row.state_seq >= move.seq:
        return False
    row.state_seq = move.seq
    row.status = move.status
    row.status_reason = move.status_reason
    if move.tracking is not None:
        row.tracking = move.tracking
    if move.restocked is not None:
        row.restocked = move.restocked
    if move.refunded_amount is not None:
        row.amount = move.refunded_amount
    if move.status == ReturnStatus.REFUNDED and move.restocked:
        await stock.give_back(session, [(line.listing_id, line.quantity) for line in row.lines])
    actor = uuid.UUID(move.actor_id) if move.actor_id else None
    _audit(session, row, move.seq, move.action, actor, move.actor_role, move.status_reason)
    await _event(session, row, move.seq, row.lines)
    if move.event_type:
        recipients = [
            str(row.buyer_id) if p == "buyer" else str(row.seller_id) for p in move.notify if p != "support"
        ]
        roles = ["support"] if "support" in move.notify else []
        reason = (move.status_reason or "").replace("_", " ")
        notice = _notice(row, move.seq, move.event_type, recipients, roles, reason, row.lines)
        await notifications.write(session, [notice], base_url)
    return True


def _audit(
    session: AsyncSession,
    row: Return,
    seq: int,
    action: str,
    actor: uuid.UUID | None,
    role: str,
    reason: str | None,
) -> None:
    session.add(
        AuditEvent(
            actor_id=actor,
            actor_role=role,
            subject_type="return",
            subject_id=str(row.id),
            action=action,
            data={"status": row.status.value, "reason": reason, "order_id": str(row.order_id)},
            dedupe_key=f"return:{row.id}:state:{seq}",
        )
    )


def _notice(
    row: Return,
    seq: int,
    event_type: str,
    recipients: list[str],
    roles: list[str],
    reason: str,
    lines: Sequence[OrderLineView | ReturnLine],
) -> NotificationEvent:
    tracking = ", ".join(f"{k}: {v}" for k, v in sorted((row.tracking or {}).items()))
    return NotificationEvent(
        event_key=f"return:{row.id}:{seq}",
        event_type=event_type,
        recipient_ids=recipients,
        recipient_roles=roles,
        data={
            "order_id": str(row.order_id),
            "listing_title": lines[0].listing_title if lines else "your order",
            "amount": format_money(row.amount, row.currency),
            "reason": reason or "no reason given",
            "tracking": tracking or "no tracking given",
        },
    )


async def _event(
    session: AsyncSession, row: Return, seq: int, lines: Sequence[OrderLineView | ReturnLine]
) -> None:
    """The integrators' `return.<status>` event (the seller's, and the platform's)."""
    data = {
        "object": "return",
        "id": str(row.id),
        "order_id": str(row.order_id),
        "status": row.status.value,
        "reason": row.status_reason,
        "buyer_reason": row.reason.value,
        "buyer_id": str(row.buyer_id),
        "refund": {"amount": row.amount, "currency": row.currency},
        "lines": [{"listing_id": str(x.listing_id), "quantity": x.quantity} for x in lines],
    }
    event_type = EventType(f"return.{row.status.value}")
    await events.record(session, event_type, row.seller_id, data, f"return:{row.id}:state:{seq}")
