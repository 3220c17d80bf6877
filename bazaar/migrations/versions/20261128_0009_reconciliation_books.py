"""Reconciliation that proves the books: the currencies of both sides and what the ledger booked on every
discrepancy, the discrepancies' lifecycle (open, acknowledged, resolved; who and why), and counts of the new
categories per window.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0009"
down_revision: str | None = "0008"
branch_labels: str | None = None
depends_on: str | None = None

NEW_COUNTS = ("currency_mismatch", "missing_ledger", "ledger_only", "unbalanced")


def upgrade() -> None:
    for name in NEW_COUNTS:
        op.add_column(
            "reconciliation_runs", sa.Column(name, sa.Integer(), server_default=sa.text("0"), nullable=False)
        )
    op.add_column("reconciliation_items", sa.Column("ours_currency", sa.String(length=16), nullable=True))
    op.add_column("reconciliation_items", sa.Column("provider_currency", sa.String(length=16), nullable=True))
    op.add_column("reconciliation_items", sa.Column("ledger_amount", sa.BigInteger(), nullable=True))
    op.add_column("reconciliation_items", sa.Column("ledger_currency", sa.String(length=16), nullable=True))
    # Items stored before this revision are the current differences of their windows: open.
    op.add_column(
        "reconciliation_items",
        sa.Column("status", sa.String(length=16), server_default="open", nullable=False),
    )
    op.add_column(
        "reconciliation_items", sa.Column("status_changed_at", sa.DateTime(timezone=True), nullable=True)
    )
    op.add_column(
        "reconciliation_items", sa.Column("changed_by", postgresql.UUID(as_uuid=True), nullable=True)
    )
    op.add_column("reconciliation_items", sa.Column("note", sa.Text(), nullable=True))
    op.create_index(
        "ix_reconciliation_items_status", "reconciliation_items", ["status", "category", "object_type"]
    )
    op.create_index("ix_reconciliation_items_order", "reconciliation_items", ["order_id"])


def downgrade() -> None:
    op.drop_index("ix_reconciliation_items_order", table_name="reconciliation_items")
    op.drop_index("ix_reconciliation_items_status", table_name="reconciliation_items")
    # Revision 0008 keeps only the current differences of each window: resolved items go.
    op.execute("DELETE FROM reconciliation_items WHERE status = 'resolved'")
    for name in ("note", "changed_by", "status_changed_at", "status", "ledger_currency", "ledger_amount"):
        op.drop_column("reconciliation_items", name)
    op.drop_column("reconciliation_items", "provider_currency")
    op.drop_column("reconciliation_items", "ours_currency")
    for name in reversed(NEW_COUNTS):
        op.drop_column("reconciliation_runs", name)
