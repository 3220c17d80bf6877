"""chargebacks in the ledger, and reconciliation results

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # New enum values are only added here, never used in this transaction (PostgreSQL forbids that).
    op.execute("ALTER TYPE ledger_account ADD VALUE IF NOT EXISTS 'chargebacks'")
    op.execute("ALTER TYPE payment_kind ADD VALUE IF NOT EXISTS 'chargeback'")
    op.execute("ALTER TYPE payment_kind ADD VALUE IF NOT EXISTS 'chargeback_reversal'")
    op.create_table(
        "reconciliation_runs",
        sa.Column("window_id", sa.String(length=64), nullable=False),
        sa.Column("since", sa.DateTime(timezone=True), nullable=False),
        sa.Column("until", sa.DateTime(timezone=True), nullable=False),
        sa.Column("workflow_id", sa.String(length=128), nullable=False),
        sa.Column("runs", sa.Integer(), nullable=False),
        sa.Column("matched", sa.Integer(), nullable=False),
        sa.Column("missing_ours", sa.Integer(), nullable=False),
        sa.Column("missing_provider", sa.Integer(), nullable=False),
        sa.Column("amount_mismatch", sa.Integer(), nullable=False),
        sa.Column("status_mismatch", sa.Integer(), nullable=False),
        sa.Column(
            "first_run_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column("last_run_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False),
        sa.PrimaryKeyConstraint("window_id"),
    )
    op.create_table(
        "reconciliation_items",
        sa.Column("id", sa.BigInteger(), autoincrement=True, nullable=False),
        sa.Column("window_id", sa.String(length=64), nullable=False),
        sa.Column("category", sa.String(length=32), nullable=False),
        sa.Column("object_type", sa.String(length=32), nullable=False),
        sa.Column("object_id", sa.String(length=255), nullable=False),
        sa.Column("order_id", sa.UUID(), nullable=True),
        sa.Column("ours_amount", sa.BigInteger(), nullable=True),
        sa.Column("provider_amount", sa.BigInteger(), nullable=True),
        sa.Column("ours_status", sa.String(length=32), nullable=True),
        sa.Column("provider_status", sa.String(length=32), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column(
            "first_seen_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.Column(
            "last_seen_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
        sa.ForeignKeyConstraint(["window_id"], ["reconciliation_runs.window_id"], ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint(
            "window_id", "object_type", "object_id", "category", name="uq_reconciliation_item"
        ),
    )
    op.create_index(
        op.f("ix_reconciliation_items_window_id"), "reconciliation_items", ["window_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_reconciliation_items_window_id"), table_name="reconciliation_items")
    op.drop_table("reconciliation_items")
    op.drop_table("reconciliation_runs")
    # PostgreSQL cannot drop enum values; the extra values are harmless to older code.
