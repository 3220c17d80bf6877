"""Disputes: the record and thread of a disputed order (the money side is in the order workflow)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import case, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from bazaar.auth import Principal, order_party
from bazaar.errors import DomainError, ErrorCode
from bazaar.models import Order
from bazaar.orders.types import Party
from bazaar.trust.models import (
    Dispute,
    DisputeMessage,
    DisputeMessageKind,
    DisputeResolution,
    DisputeSource,
    DisputeStatus,
)


async def open_case(
    session: AsyncSession,
    order_id: uuid.UUID,
    source: DisputeSource,
    reason_code: str,
    message: str,
    author_id: uuid.UUID | None,
    provider_dispute_id: str | None = None,
) -> Dispute:
    await session.execute(
        insert(Dispute)
        .values(
            id=uuid.uuid4(),
            order_id=order_id,
            source=source,
            reason_code=reason_code,
            status=DisputeStatus.OPEN,
            provider_dispute_id=provider_dispute_id,
        )
        .on_conflict_do_nothing(index_elements=["order_id"])
    )
    dispute = await session.scalar(select(Dispute).where(Dispute.order_id == order_id).with_for_update())
    assert dispute is not None
    if dispute.status == DisputeStatus.RESOLVED and dispute.provider_dispute_id != provider_dispute_id:
        # A new case on an order whose earlier one was resolved (a chargeback after a buyer dispute): the
        # order has one dispute record, reopened for it; the thread keeps the earlier case above it.
        dispute.source, dispute.reason_code, dispute.status = source, reason_code, DisputeStatus.OPEN
        dispute.provider_dispute_id = provider_dispute_id
        dispute.resolution = dispute.refund_amount = dispute.resolved_at = None
    await add_message(
        session,
        dispute.id,
        author_id,
        Party.SYSTEM if author_id is None else Party.BUYER,  # only the buyer opens a case themselves
        DisputeMessageKind.OPENED,
        message or reason_code,
        {"reason_code": reason_code, "source": source},
        dedupe_key=f"{case_prefix(order_id, provider_dispute_id)}:opened",
    )
    return dispute


def case_prefix(order_id: uuid.UUID | str, provider_dispute_id: str | None) -> str:
    """Prefix of one case's thread and notification keys: an order has the buyer's case, and may have a
    later one per card-network dispute (a chargeback)."""
    return f"dispute:{order_id}:{provider_dispute_id or 'buyer'}"


async def add_message(
    session: AsyncSession,
    dispute_id: uuid.UUID,
    author_id: uuid.UUID | None,
    author_role: Party,
    kind: DisputeMessageKind,
    body: str,
    data: dict[str, Any] | None = None,
    dedupe_key: str | None = None,
) -> None:
    """Append to the thread; `dedupe_key` makes a retried activity append once."""
    await session.execute(
        insert(DisputeMessage)
        .values(
            dispute_id=dispute_id,
            author_id=author_id,
            author_role=author_role,
            kind=kind,
            body=body,
            data=data or {},
            dedupe_key=dedupe_key,
        )
        .on_conflict_do_nothing(constraint="uq_dispute_message_dedupe")
    )


async def set_status(
    session: AsyncSession,
    order_id: uuid.UUID,
    status: DisputeStatus,
    resolution: DisputeResolution | None = None,
    refund_amount: int | None = None,
) -> Dispute:
    dispute = await session.scalar(select(Dispute).where(Dispute.order_id == order_id).with_for_update())
    if dispute is None:
        raise LookupError(f"no dispute on order {order_id}")
    if dispute.status != DisputeStatus.RESOLVED:
        dispute.status = status
        if status == DisputeStatus.RESOLVED:
            dispute.resolution = resolution
            dispute.refund_amount = refund_amount
            dispute.resolved_at = datetime.now(UTC)
    return dispute


async def case_for_order(session: AsyncSession, order_id: uuid.UUID) -> tuple[Dispute, list[DisputeMessage]]:
    dispute = await session.scalar(select(Dispute).where(Dispute.order_id == order_id))
    if dispute is None:
        raise DomainError(ErrorCode.NOT_FOUND, "this order has no dispute")
    thread = (
        await session.scalars(
            select(DisputeMessage).where(DisputeMessage.dispute_id == dispute.id).order_by(DisputeMessage.id)
        )
    ).all()
    return dispute, list(thread)


async def visible_case(
    session: AsyncSession, order_id: uuid.UUID, viewer: Principal
) -> tuple[Dispute, list[DisputeMessage]]:
    """The dispute and its thread, for the buyer, the seller and support only."""
    order = await session.get(Order, order_id)
    if order is None:
        raise DomainError(ErrorCode.NOT_FOUND, "order not found")
    if order_party(order, viewer) is None:
        raise DomainError(ErrorCode.FORBIDDEN, "only the buyer, the seller and support can see this dispute")
    return await case_for_order(session, order_id)


async def queue(session: AsyncSession, statuses: list[DisputeStatus], limit: int) -> list[Dispute]:
    """Support's work queue: escalated cases first, then the oldest first."""
    escalated_first = case((Dispute.status == DisputeStatus.ESCALATED, 0), else_=1)
    rows = await session.scalars(
        select(Dispute)
        .where(Dispute.status.in_(statuses))
        .order_by(escalated_first, Dispute.created_at, Dispute.id)
        .limit(limit)
    )
    return list(rows.all())
