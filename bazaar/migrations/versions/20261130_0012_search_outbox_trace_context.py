"""listing outbox rows keep the trace of the change that queued them (W3C traceparent), so the search sync's batch
continues the request's trace (bazaar/telemetry.py)

Revision ID: 0012
Revises: 0011
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | None = "0011"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("search_outbox", sa.Column("trace_context", sa.String(length=64), nullable=True))


def downgrade() -> None:
    op.drop_column("search_outbox", "trace_context")
