"""Data model of the cart. Kept beside `bazaar.models` (same Base, same metadata); Alembic sees it."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import BigInteger, CheckConstraint, DateTime, ForeignKey, Integer, String, func
from sqlalchemy.orm import Mapped, mapped_column

from bazaar.models import Base


class CartLine(Base):
    """A listing in a buyer's cart: how many they want, and the price they saw when they last set the line
    (the cart and the checkout compare it with the listing's price now)."""

    __tablename__ = "cart_lines"
    __table_args__ = (CheckConstraint("quantity > 0", name="cart_quantity_positive"),)

    buyer_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True)
    listing_id: Mapped[uuid.UUID] = mapped_column(
        ForeignKey("listings.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    quantity: Mapped[int] = mapped_column(Integer)
    seen_amount: Mapped[int] = mapped_column(BigInteger)
    seen_currency: Mapped[str] = mapped_column(String(3))
    added_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime(timezone=True), server_default=func.now(), onupdate=func.now()
    )
