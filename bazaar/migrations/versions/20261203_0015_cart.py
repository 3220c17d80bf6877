"""cart: a line per listing in a buyer's cart, with the price the buyer saw (bazaar/checkout)

Revision ID: 0015
Revises: 0014
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0015"
down_revision: str | None = "0014"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "cart_lines",
        sa.Column("buyer_id", sa.Uuid(), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column(
            "listing_id", sa.Uuid(), sa.ForeignKey("listings.id", ondelete="CASCADE"), primary_key=True
        ),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("seen_amount", sa.BigInteger(), nullable=False),
        sa.Column("seen_currency", sa.String(3), nullable=False),
        sa.Column("added_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("quantity > 0", name="cart_quantity_positive"),
    )
    op.create_index("ix_cart_lines_listing_id", "cart_lines", ["listing_id"])


def downgrade() -> None:
    op.drop_table("cart_lines")
