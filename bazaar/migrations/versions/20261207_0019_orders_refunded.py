"""reputations.orders_refunded: orders that ended refunded without ever completing (a dispute or a refund), so the
seller's rates count every ended order (they counted only completed and seller-cancelled ones, and a dispute
refunded in full was in the dispute rate but in no denominator)

Revision ID: 0019
Revises: 0018
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision: str = "0019"
down_revision: str | None = "0018"
branch_labels: str | None = None
depends_on: str | None = None


def upgrade() -> None:
    op.add_column(
        "reputations", sa.Column("orders_refunded", sa.Integer(), server_default="0", nullable=False)
    )
    # Orders already refunded that never completed, counted as the workflow now counts them (an ended order
    # is never counted again). PRIOR_MEAN (4.0) is bazaar.trust.reputation's score of a seller with no ratings.
    op.execute(
        """
        INSERT INTO reputations (user_id, rating_count, rating_sum, score, orders_completed, orders_cancelled,
                                 orders_disputed, orders_refunded)
        SELECT o.seller_id, 0, 0, 4.0, 0, 0, 0, count(*)
        FROM orders o
        WHERE o.status = 'refunded'
          AND NOT EXISTS (
              SELECT 1 FROM audit_events a WHERE a.dedupe_key = 'reputation:order:' || o.id || '\\:completed'
          )
        GROUP BY o.seller_id
        ON CONFLICT (user_id) DO UPDATE SET orders_refunded = EXCLUDED.orders_refunded
        """
    )


def downgrade() -> None:
    op.drop_column("reputations", "orders_refunded")
