"""Listing views, counted in memory and flushed in batches: one UPDATE per interval, not one write per view.

Orders already count in the same transaction that reserves stock (activities); views are far more frequent,
so each API process sums them and `flush_views` writes the sums with outbox rows (bazaar.listings.lifecycle.add_views).
A failed flush keeps its counts for the next one; a crash loses at most one interval of views.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bazaar.listings import lifecycle as listings

log = logging.getLogger("popularity")


class ViewCounter:
    def __init__(self) -> None:
        self._counts: dict[uuid.UUID, int] = {}
        self.flushed = 0

    def add(self, listing_id: uuid.UUID, views: int = 1) -> None:
        self._counts[listing_id] = self._counts.get(listing_id, 0) + views

    async def flush(self, sessionmaker: async_sessionmaker[AsyncSession]) -> int:
        """Write the counts so far; on error they go back into the counter."""
        counts, self._counts = self._counts, {}
        if not counts:
            return 0
        try:
            async with sessionmaker() as session, session.begin():
                await listings.add_views(session, counts)
        except BaseException:
            for listing_id, views in counts.items():
                self.add(listing_id, views)
            raise
        total = sum(counts.values())
        self.flushed += total
        return total


async def flush_forever(
    counter: ViewCounter, sessionmaker: async_sessionmaker[AsyncSession], interval: float
) -> None:
    """Background task of the API: flush every `interval` seconds until cancelled (then flush once more)."""
    try:
        while True:
            await asyncio.sleep(interval)
            try:
                await counter.flush(sessionmaker)
            except Exception:
                log.exception("view count flush failed; keeping the counts for the next try")
    finally:
        try:
            await asyncio.shield(counter.flush(sessionmaker))
        except Exception:
            log.exception("final view count flush failed")
