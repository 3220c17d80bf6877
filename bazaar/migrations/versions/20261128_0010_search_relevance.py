"""Search relevance in the PostgreSQL fallback (bazaar/search/words.py): pg_trgm and a trigram index on the
title, for words no listing has (typos: "stratocastr"); an index on the category of active listings, for
words that name a category ("bike" finds the Bikes category).

pg_trgm ships with PostgreSQL (contrib: Debian's postgresql package, the postgres:16 image, managed
services) and is a trusted extension: the database's owner may create it.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

from alembic import op

revision: str = "0010"
down_revision: str | None = "0009"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.execute("CREATE INDEX ix_listings_title_trgm ON listings USING gin (title gin_trgm_ops)")
    op.execute("CREATE INDEX ix_listings_active_category ON listings (category_slug) WHERE status = 'active'")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_listings_active_category")
    op.execute("DROP INDEX IF EXISTS ix_listings_title_trgm")
    op.execute("DROP EXTENSION IF EXISTS pg_trgm")
