"""payout accounts keep the provider's account status (details submitted, charges and payouts enabled, what is
due), as `account.updated` events report it (bazaar/payments/onboarding.py)

Revision ID: 0013
Revises: 0012

Existing accounts start unreported (NULL), like a new one before its first event: they are not held back until
the provider reports them unable to sell.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0013"
down_revision: str | None = "0012"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column("payout_accounts", sa.Column("details_submitted", sa.Boolean(), nullable=True))
    op.add_column("payout_accounts", sa.Column("charges_enabled", sa.Boolean(), nullable=True))
    op.add_column("payout_accounts", sa.Column("payouts_enabled", sa.Boolean(), nullable=True))
    op.add_column(
        "payout_accounts", sa.Column("requirements", postgresql.JSONB(astext_type=sa.Text()), nullable=True)
    )
    op.add_column("payout_accounts", sa.Column("status_reported_at", sa.BigInteger(), nullable=True))
    op.create_index(
        "ix_payout_accounts_charges_disabled",
        "payout_accounts",
        ["user_id"],
        postgresql_where=sa.text("NOT charges_enabled"),
    )


def downgrade() -> None:
    op.drop_index("ix_payout_accounts_charges_disabled", table_name="payout_accounts")
    for column in (
        "status_reported_at",
        "requirements",
        "payouts_enabled",
        "charges_enabled",
        "details_submitted",
    ):
        op.drop_column("payout_accounts", column)
