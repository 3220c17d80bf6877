"""notification outbox: when a pending delivery is due, and why its last attempt failed

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # The default fills existing rows: pending ones are due at once, so the sender picks them up.
    op.add_column(
        "notifications",
        sa.Column(
            "next_attempt_at", sa.DateTime(timezone=True), server_default=sa.text("now()"), nullable=False
        ),
    )
    op.add_column("notifications", sa.Column("last_error", sa.Text(), nullable=True))
    op.create_index(
        "ix_notifications_due",
        "notifications",
        ["next_attempt_at"],
        unique=False,
        postgresql_where=sa.text("status = 'pending'"),
    )


def downgrade() -> None:
    op.drop_index(
        "ix_notifications_due", table_name="notifications", postgresql_where=sa.text("status = 'pending'")
    )
    op.drop_column("notifications", "last_error")
    op.drop_column("notifications", "next_attempt_at")
