"""The double-entry ledger: every money movement is a balanced set of entries, written once."""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import ColumnElement, ScalarSelect, case, func, select
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from bazaar.models import LedgerAccount, LedgerEntry, Order, Payment, PaymentKind, PaymentOutcome


async def post(
    session: AsyncSession,
    txn: str,
    order_id: uuid.UUID,
    seller_id: uuid.UUID,
    currency: str,
    entries: dict[LedgerAccount, int],
) -> None:
    """Append one movement. Idempotent on `txn` (a retried activity writes nothing new)."""
    if sum(entries.values()) != 0:
        raise ValueError(f"unbalanced ledger movement {txn}: {entries}")
    rows = [
        {
            "txn": txn,
            "order_id": order_id,
            "seller_id": seller_id,
            "account": account,
            "amount": amount,
            "currency": currency,
        }
        for account, amount in entries.items()
        if amount != 0
    ]
    if rows:
        await session.execute(
            insert(LedgerEntry).values(rows).on_conflict_do_nothing(constraint="uq_ledger_txn_account_order")
        )


@dataclass
class SellerBalance:
    currency: str
    held: int  # in escrow for orders not completed yet
    available: int  # released to the seller, not yet transferred
    paid_out: int  # transferred to the seller's connected account


async def seller_balances(session: AsyncSession, seller_id: uuid.UUID) -> list[SellerBalance]:
    def total(account: LedgerAccount) -> ColumnElement[int]:
        return func.coalesce(func.sum(case((LedgerEntry.account == account, LedgerEntry.amount), else_=0)), 0)

    # Per order first: a chargeback beyond what an order held (the buyer had a refund too) overdraws that order's
    # escrow, the platform's loss; it is not the seller's money, and must not hide what their other orders hold.
    per_order = (
        select(
            LedgerEntry.currency,
            total(LedgerAccount.ESCROW).label("escrow"),
            total(LedgerAccount.SELLER_PAYABLE).label("payable"),
            total(LedgerAccount.SELLER_PAYOUTS).label("paid_out"),
        )
        .where(LedgerEntry.seller_id == seller_id)
        .group_by(LedgerEntry.currency, LedgerEntry.order_id)
        .subquery()
    )
    rows = (
        await session.execute(
            select(
                per_order.c.currency,
                func.sum(func.greatest(per_order.c.escrow, 0)),
                func.sum(per_order.c.payable),
                func.sum(per_order.c.paid_out),
            )
            .group_by(per_order.c.currency)
            .order_by(per_order.c.currency)
        )
    ).all()
    return [SellerBalance(currency=c, held=int(h), available=int(a), paid_out=int(p)) for c, h, a, p in rows]


async def seller_history(session: AsyncSession, seller_id: uuid.UUID, limit: int) -> list[LedgerEntry]:
    accounts = (LedgerAccount.ESCROW, LedgerAccount.SELLER_PAYABLE, LedgerAccount.SELLER_PAYOUTS)
    return list(
        (
            await session.scalars(
                select(LedgerEntry)
                .where(LedgerEntry.seller_id == seller_id, LedgerEntry.account.in_(accounts))
                .order_by(LedgerEntry.id.desc())
                .limit(limit)
            )
        ).all()
    )


async def order_seller(session: AsyncSession, order_id: uuid.UUID) -> Order:
    order = await session.get(Order, order_id)
    if order is None:
        raise LookupError(f"order {order_id} not found")
    return order


# What was refunded of an order: its refunds that succeeded (what an order's `refunded` shows, wherever it is read).
_REFUNDED = (Payment.kind == PaymentKind.REFUND, Payment.outcome == PaymentOutcome.SUCCEEDED)


def refunded_of(order_id: ColumnElement[uuid.UUID] | InstrumentedAttribute[uuid.UUID]) -> ScalarSelect[int]:
    """What was refunded of the order `order_id` names (e.g. `Order.id` in a statement over orders), 0 if
    nothing: a scalar subquery."""
    return (
        select(func.coalesce(func.sum(Payment.amount), 0))
        .where(Payment.order_id == order_id, *_REFUNDED)
        .scalar_subquery()
    )


async def refunded_by_order(session: AsyncSession, order_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, int]:
    """What was refunded of each order (orders without any are left out)."""
    ids = list(order_ids)
    if not ids:
        return {}
    rows = await session.execute(
        select(Payment.order_id, func.sum(Payment.amount))
        .where(Payment.order_id.in_(ids), *_REFUNDED)
        .group_by(Payment.order_id)
    )
    return {order_id: int(amount) for order_id, amount in rows if order_id is not None}
