"""order_lines.restocked_quantity: units of a line put back on sale before the order ended (refunded by line before
it shipped), so the order's release at its end gives back only the rest

Revision ID: 0021
Revises: 0020
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0021"
down_revision: str | None = "0020"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column(
        "order_lines", sa.Column("restocked_quantity", sa.Integer(), server_default="0", nullable=False)
    )


def downgrade() -> None:
    op.drop_column("order_lines", "restocked_quantity")
