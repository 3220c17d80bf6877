"""Orders keep the payment method they were placed with, so a retried create-order request (same
Idempotency-Key) can be compared with the first one as a whole.

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("orders", sa.Column("payment_method", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column("orders", "payment_method")
