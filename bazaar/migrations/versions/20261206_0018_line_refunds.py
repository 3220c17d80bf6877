"""order_lines.refunded_quantity: the units of a line refunded by line (refunds by lines, returns), so a line is
never refunded twice (written by the order's workflow with its transitions)

Revision ID: 0018
Revises: 0017
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0018"
down_revision: str | None = "0017"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column(
        "order_lines", sa.Column("refunded_quantity", sa.Integer(), server_default="0", nullable=False)
    )
    op.create_check_constraint(
        "order_line_refunded_within_quantity",
        "order_lines",
        "refunded_quantity >= 0 AND refunded_quantity <= quantity",
    )


def downgrade() -> None:
    op.drop_constraint("order_line_refunded_within_quantity", "order_lines")
    op.drop_column("order_lines", "refunded_quantity")
