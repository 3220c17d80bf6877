"""The listing outbox as the API and search sync both see it: rows written with each listing change, drained
into Meilisearch by search_sync, which tells listeners how long each change took to become searchable."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

SYNCED_CHANNEL = "search_synced"  # NOTIFY with {"ms": [latency, ...]} after each batch


async def outbox_backlog(session: AsyncSession) -> tuple[int, float]:
    """Rows waiting and the age in seconds of the oldest one (index freshness)."""
    row = (
        await session.execute(
            text(
                "SELECT count(*), coalesce(extract(epoch FROM now() - min(created_at)), 0) FROM search_outbox"
            )
        )
    ).one()
    return int(row[0]), float(row[1])
