"""integrations: API keys, the events table (with the writing transaction's id, the feed's order), webhook
endpoints, deliveries and their attempts, and the fan-out's position (bazaar/integrations)

Revision ID: 0014
Revises: 0013

A statement-level trigger on `events` NOTIFYs the webhook senders (sender.py) whatever wrote the events (an ORM
add or a Core insert); PostgreSQL delivers it at commit only, so a sender never looks for rows it cannot see yet.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision: str = "0014"
down_revision: str | None = "0013"
branch_labels: str | None = None
depends_on: str | None = None


def _now() -> sa.TextClause:
    return sa.text("now()")


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("seller_id", sa.Uuid(), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("created_by", sa.Uuid(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("name", sa.String(80), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("last_used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_api_keys_seller_id", "api_keys", ["seller_id"])
    op.create_table(
        "webhook_endpoints",
        sa.Column("id", sa.Uuid(), primary_key=True),
        sa.Column("seller_id", sa.Uuid(), sa.ForeignKey("users.id"), nullable=True),
        sa.Column("created_by", sa.Uuid(), sa.ForeignKey("users.id"), nullable=False),
        sa.Column("url", sa.Text(), nullable=False),
        sa.Column("description", sa.String(200), nullable=False),
        sa.Column("event_types", postgresql.ARRAY(sa.String(40)), nullable=False),
        sa.Column("enabled", sa.Boolean(), nullable=False),
        sa.Column("disabled_reason", sa.String(200), nullable=True),
        sa.Column("secret", sa.String(100), nullable=False),
        sa.Column("previous_secret", sa.String(100), nullable=True),
        sa.Column("previous_secret_expires_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
    )
    op.create_index("ix_webhook_endpoints_seller_id", "webhook_endpoints", ["seller_id"])
    # xid8: the id of the writing transaction (its top-level one, also from a savepoint).
    op.execute(
        """
        CREATE TABLE events (
            id BIGSERIAL PRIMARY KEY,
            xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
            type VARCHAR(40) NOT NULL,
            occurred_at TIMESTAMP WITH TIME ZONE NOT NULL DEFAULT now(),
            seller_id UUID,
            data JSONB NOT NULL,
            dedupe_key VARCHAR(255) UNIQUE
        )
        """
    )
    op.create_index("ix_events_feed", "events", ["xid", "id"])
    op.create_index("ix_events_seller_feed", "events", ["seller_id", "xid", "id"])
    op.create_table(
        "webhook_deliveries",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column(
            "endpoint_id",
            sa.Uuid(),
            sa.ForeignKey("webhook_endpoints.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("event_id", sa.BigInteger(), sa.ForeignKey("events.id"), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
        sa.UniqueConstraint("endpoint_id", "event_id", name="uq_webhook_delivery"),
    )
    op.create_index(
        "ix_webhook_deliveries_due",
        "webhook_deliveries",
        ["next_attempt_at"],
        postgresql_where=sa.text("status = 'pending'"),
    )
    op.create_table(
        "webhook_attempts",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column(
            "delivery_id",
            sa.BigInteger(),
            sa.ForeignKey("webhook_deliveries.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("attempted_at", sa.DateTime(timezone=True), server_default=_now(), nullable=False),
        sa.Column("status_code", sa.Integer(), nullable=True),
        sa.Column("duration_ms", sa.Integer(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("response_body", sa.Text(), nullable=True),
    )
    op.create_index("ix_webhook_attempts_delivery", "webhook_attempts", ["delivery_id", "id"])
    op.execute(
        "CREATE TABLE webhook_fanout (id INTEGER PRIMARY KEY, after_xid xid8 NOT NULL, after_id BIGINT NOT NULL)"
    )
    op.execute("INSERT INTO webhook_fanout (id, after_xid, after_id) VALUES (1, '0', 0)")
    op.execute(
        """
        CREATE FUNCTION events_wake_senders() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('integration_events', '');
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        "CREATE TRIGGER events_wake_senders AFTER INSERT ON events "
        "FOR EACH STATEMENT EXECUTE FUNCTION events_wake_senders()"
    )


def downgrade() -> None:
    op.execute("DROP TRIGGER events_wake_senders ON events")
    op.execute("DROP FUNCTION events_wake_senders()")
    op.drop_table("webhook_fanout")
    op.drop_table("webhook_attempts")
    op.drop_table("webhook_deliveries")
    op.drop_table("events")
    op.drop_table("webhook_endpoints")
    op.drop_table("api_keys")
