"""returns: a buyer's return of some of an order's lines, projected from its `Return` workflow (bazaar/returns)

Revision ID: 0017
Revises: 0016
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0017"
down_revision: str | None = "0016"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "returns",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("order_id", sa.Uuid(), sa.ForeignKey("orders.id"), nullable=False),
        sa.Column("buyer_id", sa.Uuid(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("seller_id", sa.Uuid(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_reason", sa.String(64)),
        sa.Column("reason", sa.String(32), nullable=False),
        sa.Column("message", sa.Text()),
        sa.Column("photos", postgresql.ARRAY(sa.Text()), nullable=False),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("tracking", postgresql.JSONB()),
        sa.Column("restocked", sa.Boolean()),
        sa.Column("workflow_id", sa.String(128), nullable=False, unique=True),
        sa.Column("idempotency_key", sa.String(255)),
        sa.Column("state_seq", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.CheckConstraint("amount > 0", name="return_amount_positive"),
    )
    op.create_index("ix_returns_order", "returns", ["order_id", "created_at"])
    op.create_index("ix_returns_seller", "returns", ["seller_id", "created_at"])
    op.create_table(
        "return_lines",
        sa.Column("return_id", sa.Uuid(), sa.ForeignKey("returns.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("listing_id", sa.Uuid(), sa.ForeignKey("listings.id"), primary_key=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("listing_title", sa.String(140), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_amount", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("quantity > 0", name="return_line_quantity_positive"),
    )


def downgrade() -> None:
    op.drop_table("return_lines")
    op.drop_index("ix_returns_seller", "returns")
    op.drop_index("ix_returns_order", "returns")
    op.drop_table("returns")
