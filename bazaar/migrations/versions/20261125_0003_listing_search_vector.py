"""Full-text search vector on listings, for the PostgreSQL search fallback.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-25
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    # 'simple' config: listings are multilingual; stemming for one language would hurt the others.
    op.execute(
        """
        ALTER TABLE listings ADD COLUMN search_vector tsvector GENERATED ALWAYS AS (
            setweight(to_tsvector('simple', coalesce(title, '')), 'A') ||
            setweight(to_tsvector('simple', coalesce(city, '')), 'B') ||
            setweight(to_tsvector('simple', coalesce(description, '')), 'C')
        ) STORED
        """
    )
    op.execute("CREATE INDEX ix_listings_search_vector ON listings USING gin (search_vector)")
    op.execute("CREATE INDEX ix_listings_active_price ON listings (price_amount) WHERE status = 'active'")


def downgrade() -> None:
    op.execute("DROP INDEX IF EXISTS ix_listings_active_price")
    op.execute("DROP INDEX IF EXISTS ix_listings_search_vector")
    op.execute("ALTER TABLE listings DROP COLUMN search_vector")
