"""checkout: one payment for a cart across sellers; orders gain lines; a payment belongs to an order or a
checkout; a ledger movement may book several orders (a checkout's charge split into each order's escrow)

Revision ID: 0016
Revises: 0015
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0016"
down_revision: str | None = "0015"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.create_table(
        "checkouts",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("buyer_id", sa.Uuid(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("idempotency_key", sa.String(255), nullable=False),
        sa.Column("payment_method", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("status_reason", sa.String(64)),
        sa.Column("amount", sa.BigInteger(), nullable=False),
        sa.Column("currency", sa.String(3), nullable=False),
        sa.Column("payment_intent_id", sa.String(64)),
        sa.Column("workflow_id", sa.String(128), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.UniqueConstraint("buyer_id", "idempotency_key", name="uq_checkouts_buyer_idempotency_key"),
        sa.CheckConstraint("amount > 0", name="checkout_amount_positive"),
    )
    op.create_index("ix_checkouts_buyer", "checkouts", ["buyer_id", "created_at"])

    op.add_column("orders", sa.Column("checkout_id", sa.Uuid(), sa.ForeignKey("checkouts.id")))
    op.create_index("ix_orders_checkout_id", "orders", ["checkout_id"])
    op.create_table(
        "order_lines",
        sa.Column("order_id", sa.Uuid(), sa.ForeignKey("orders.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("listing_id", sa.Uuid(), sa.ForeignKey("listings.id"), primary_key=True),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("listing_title", sa.String(140), nullable=False),
        sa.Column("quantity", sa.Integer(), nullable=False),
        sa.Column("unit_amount", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("quantity > 0", name="order_line_quantity_positive"),
    )
    op.create_index("ix_order_lines_listing_id", "order_lines", ["listing_id"])
    # Every order placed so far bought one listing: its line.
    op.execute(
        "INSERT INTO order_lines (order_id, listing_id, position, listing_title, quantity, unit_amount) "
        "SELECT id, listing_id, 0, listing_title, quantity, unit_amount FROM orders"
    )

    op.alter_column("payments", "order_id", nullable=True)
    op.add_column("payments", sa.Column("checkout_id", sa.Uuid(), sa.ForeignKey("checkouts.id")))
    op.create_index("ix_payments_checkout_id", "payments", ["checkout_id"])
    op.create_check_constraint("payment_owner", "payments", "num_nonnulls(order_id, checkout_id) = 1")

    op.drop_constraint("uq_ledger_txn_account", "ledger_entries", type_="unique")
    op.create_unique_constraint(
        "uq_ledger_txn_account_order", "ledger_entries", ["txn", "account", "order_id"]
    )


def downgrade() -> None:
    op.drop_constraint("uq_ledger_txn_account_order", "ledger_entries", type_="unique")
    op.create_unique_constraint("uq_ledger_txn_account", "ledger_entries", ["txn", "account"])
    op.drop_constraint("payment_owner", "payments", type_="check")
    op.drop_index("ix_payments_checkout_id", "payments")
    op.drop_column("payments", "checkout_id")
    op.alter_column("payments", "order_id", nullable=False)
    op.drop_table("order_lines")
    op.drop_index("ix_orders_checkout_id", "orders")
    op.drop_column("orders", "checkout_id")
    op.drop_index("ix_checkouts_buyer", "checkouts")
    op.drop_table("checkouts")
