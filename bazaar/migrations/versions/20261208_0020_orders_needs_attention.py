"""orders.needs_attention: why support is looking at the order (a step keeps failing), so its reads show what its
actions answer (409 `order_needs_attention`); written when the order is flagged, cleared by its next transition

Revision ID: 0020
Revises: 0019
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0020"
down_revision: str | None = "0019"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("orders", sa.Column("needs_attention", sa.String(600), nullable=True))


def downgrade() -> None:
    op.drop_column("orders", "needs_attention")
