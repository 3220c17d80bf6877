"""Data model of returns (projection of the `Return` workflows). Kept beside `bazaar.models` (same Base, same
metadata); Alembic sees it."""

from __future__ import annotations

import enum
import uuid
from typing import Any

from sqlalchemy import ARRAY, BigInteger, CheckConstraint, Enum, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column, relationship

from bazaar.models import Base, Timestamped


class ReturnStatus(enum.StrEnum):
    REQUESTED = "requested"  # the buyer asked; the seller approves or rejects (else support decides)
    ESCALATED = "escalated"  # support decides: the seller did not answer in time, or the refund was refused
    APPROVED = "approved"  # the buyer sends the lines back (tracking)
    SHIPPED = (
        "shipped"  # on its way back; the seller confirms receipt (else the refund goes out at the deadline)
    )
    REFUNDED = "refunded"  # the lines' money went back to the buyer (and the stock, if the seller restocked)
    REJECTED = "rejected"  # the seller or support said no
    CANCELLED = "cancelled"  # the buyer withdrew it, or did not send it back in time


RETURN_ENDED = frozenset({ReturnStatus.REFUNDED, ReturnStatus.REJECTED, ReturnStatus.CANCELLED})


class ReturnReason(enum.StrEnum):
    DAMAGED = "damaged"
    NOT_AS_DESCRIBED = "not_as_described"
    WRONG_ITEM = "wrong_item"
    CHANGED_MIND = "changed_mind"
    OTHER = "other"


def _text(cls: type[enum.Enum], length: int) -> Enum:
    """VARCHAR read and written as `cls` (no CHECK: adding a member changes no schema)."""
    return Enum(cls, native_enum=False, length=length, values_callable=lambda e: [m.value for m in e])


class Return(Timestamped, Base):
    """A buyer's return of some of an order's lines: the projection of its `Return` workflow."""

    __tablename__ = "returns"
    __table_args__ = (
        CheckConstraint("amount > 0", name="return_amount_positive"),
        Index("ix_returns_order", "order_id", "created_at"),
        Index("ix_returns_seller", "seller_id", "created_at"),
    )

    id: Mapped[uuid.UUID] = mapped_column(primary_key=True)
    order_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("orders.id"))
    buyer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    seller_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))
    status: Mapped[ReturnStatus] = mapped_column(_text(ReturnStatus, 16))
    status_reason: Mapped[str | None] = mapped_column(String(64))
    reason: Mapped[ReturnReason] = mapped_column(_text(ReturnReason, 32))
    message: Mapped[str | None] = mapped_column(Text)
    photos: Mapped[list[str]] = mapped_column(ARRAY(Text), default=list)
    amount: Mapped[int] = mapped_column(BigInteger)  # what the refund gives back: the lines at their prices
    currency: Mapped[str] = mapped_column(String(3))
    tracking: Mapped[dict[str, Any] | None] = mapped_column()
    restocked: Mapped[bool | None] = mapped_column()  # the seller's choice on receipt; null until then
    workflow_id: Mapped[str] = mapped_column(String(128), unique=True)
    idempotency_key: Mapped[str | None] = mapped_column(String(255))
    state_seq: Mapped[int] = mapped_column(Integer, default=1)  # the projection never moves backwards
    lines: Mapped[list[ReturnLine]] = relationship(lazy="selectin", order_by="ReturnLine.position")


class ReturnLine(Base):
    __tablename__ = "return_lines"
    __table_args__ = (CheckConstraint("quantity > 0", name="return_line_quantity_positive"),)

    return_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("returns.id", ondelete="CASCADE"), primary_key=True
    )
    listing_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("listings.id"), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    listing_title: Mapped[str] = mapped_column(String(140))
    quantity: Mapped[int] = mapped_column(Integer)
    unit_amount: Mapped[int] = mapped_column(BigInteger)
