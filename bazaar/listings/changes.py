"""Which listings a transaction changed, announced at its commit: a NOTIFY on `listing_changed` carrying their ids
(comma-separated), so every API process drops them from its hot-listing cache (api/listing_runtime.py). NOTIFY is
transactional: sent at commit only, and nothing is sent for a transaction rolled back.

Whatever changes what a listing's read shows announces it: the listing's own writes (bazaar/listings/lifecycle.py)
and its seller's rating changing (bazaar/trust/reputation.py).
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable

from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session

LISTING_CHANGED_CHANNEL = "listing_changed"
_CHANGED_KEY = "bazaar.changed_listings"
_NOTIFY_IDS_PER_MESSAGE = 150  # 150 * 37 bytes stays well under PostgreSQL's 8000-byte payload limit


def announce(session: AsyncSession, listing_ids: Iterable[uuid.UUID]) -> None:
    """Announce the listings as changed once this session's transaction commits."""
    session.sync_session.info.setdefault(_CHANGED_KEY, set()).update(str(i) for i in listing_ids)


@event.listens_for(Session, "before_commit")
def _notify_changed_listings(session: Session) -> None:
    ids = sorted(session.info.pop(_CHANGED_KEY, ()))
    for start in range(0, len(ids), _NOTIFY_IDS_PER_MESSAGE):
        session.execute(
            text("SELECT pg_notify(:channel, :ids)"),
            {
                "channel": LISTING_CHANGED_CHANNEL,
                "ids": ",".join(ids[start : start + _NOTIFY_IDS_PER_MESSAGE]),
            },
        )


@event.listens_for(Session, "after_rollback")
def _forget_changed_listings(session: Session) -> None:
    session.info.pop(_CHANGED_KEY, None)
