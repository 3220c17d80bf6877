"""Rebuild the listings index from scratch with no search downtime, then swap it in atomically.

1. A fresh index `<index>__reindex` gets the current settings.
2. One REPEATABLE READ snapshot of all listings is streamed into it; every row's xmin is remembered
   (PostgreSQL gives each new row version a new xmin, whatever changed: edits, stock, views).
3. Catch-up: rows whose xmin changed since (or that appeared or vanished) are re-read and re-applied, and
   so are the listings of every seller whose rating changed since (a rating change writes outbox rows but
   leaves the listing rows alone). The live syncer keeps the live index fresh meanwhile, consuming the
   outbox as usual.
4. Under the sync lock (which pauses the live syncer between two batches), a last catch-up, then
   Meilisearch's swap-indexes exchanges the two atomically; the old data, now under the temporary
   name, is deleted. Outbox rows written during the swap stay in the outbox and go to the new index.
"""

from __future__ import annotations

import logging
import time
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from tqdm import tqdm

from bazaar.listings.lifecycle import NO_RATINGS, SellerRating, seller_ratings, taxonomy
from bazaar.models import Listing, ListingStatus
from bazaar.pg_listen import connect
from bazaar.search.index import apply_index_settings, listing_document
from bazaar.search.meili import Meili
from bazaar.settings import Settings
from search_sync.sync import SYNC_LOCK_ID, XMIN, advisory_lock, apply_documents, documents_for

log = logging.getLogger("reindex")
REINDEX_LOCK_ID = 0x5EA2C5  # one reindex at a time
DOCS_PER_REQUEST = 5_000
_CATCH_UP_ROUNDS = 5


class ReindexBusy(RuntimeError):
    """Another reindex holds the reindex lock."""


@dataclass
class ReindexReport:
    index: str
    documents: int
    caught_up: int
    seconds: float  # snapshot start to swapped
    indexing_seconds: float  # snapshot streamed and indexed (before catch-up)

    @property
    def docs_per_second(self) -> float:
        return self.documents / self.indexing_seconds if self.indexing_seconds else 0.0


async def reindex(settings: Settings, *, progress: bool = True) -> ReindexReport:
    meili = Meili(settings.meili_url, settings.require("meili_master_key"), timeout=120.0)
    engine = create_async_engine(settings.database_url, pool_size=2)
    sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    try:
        async with await connect(settings.database_url) as lock_conn:
            got = await (
                await lock_conn.execute("SELECT pg_try_advisory_lock(%s)", (REINDEX_LOCK_ID,))
            ).fetchone()
            if not got or not got[0]:
                raise ReindexBusy("another reindex is running")
            return await _reindex(meili, sessionmaker, lock_conn, settings.meili_index, progress)
    finally:
        await meili.aclose()
        await engine.dispose()


async def _reindex(
    meili: Meili,
    sessionmaker: async_sessionmaker[AsyncSession],
    lock_conn: Any,
    live: str,
    progress: bool,
) -> ReindexReport:
    started = time.monotonic()
    fresh = f"{live}__reindex"
    if await meili.get_index(fresh) is not None:  # left over by a reindex that died
        await meili.run_task("DELETE", f"/indexes/{fresh}")
    await apply_index_settings(meili, live)  # swap needs both to exist
    await apply_index_settings(meili, fresh)

    seen, ratings, documents = await _load_snapshot(meili, sessionmaker, fresh, progress)
    indexing_seconds = time.monotonic() - started
    caught_up = 0
    for _ in range(_CATCH_UP_ROUNDS):  # converge while the live syncer runs, so the locked step is short
        changed = await _catch_up(meili, sessionmaker, fresh, seen, ratings)
        caught_up += changed
        if changed < 100:
            break
    async with advisory_lock(lock_conn, SYNC_LOCK_ID):
        caught_up += await _catch_up(meili, sessionmaker, fresh, seen, ratings)
        await meili.run_task("POST", "/swap-indexes", json=[{"indexes": [live, fresh]}])
    await meili.run_task("DELETE", f"/indexes/{fresh}")  # the previous generation
    report = ReindexReport(live, documents, caught_up, time.monotonic() - started, indexing_seconds)
    log.info(
        "reindexed %s: %d documents (%.0f/s), %d caught up, swapped after %.1fs",
        live,
        documents,
        report.docs_per_second,
        caught_up,
        report.seconds,
    )
    return report


async def _load_snapshot(
    meili: Meili, sessionmaker: async_sessionmaker[AsyncSession], index: str, progress: bool
) -> tuple[dict[uuid.UUID, int], dict[uuid.UUID, SellerRating], int]:
    """Stream one consistent snapshot into `index`; returns every row's xmin, the seller ratings used and
    the number of documents sent."""
    seen: dict[uuid.UUID, int] = {}
    tasks: list[int] = []
    sent = 0
    async with sessionmaker() as session:
        await session.connection(execution_options={"isolation_level": "REPEATABLE READ"})
        tree = await taxonomy(session)
        ratings = await seller_ratings(session, None)  # every seller with ratings (a few bytes each)
        total = await session.scalar(
            select(func.count()).select_from(Listing).where(Listing.status == ListingStatus.ACTIVE)
        )
        bar = tqdm(total=total or 0, desc=f"reindex {index}", unit="doc", disable=not progress)
        batch: list[dict[str, Any]] = []
        result = await session.stream(select(Listing, XMIN).execution_options(yield_per=2_000))
        async for listing, xmin in result:
            seen[listing.id] = int(xmin)
            if listing.status != ListingStatus.ACTIVE:
                continue
            batch.append(
                listing_document(
                    listing, tree.path(listing.category_slug), ratings.get(listing.seller_id, NO_RATINGS)
                )
            )
            if len(batch) >= DOCS_PER_REQUEST:
                tasks.append(await _send(meili, index, batch))
                sent += len(batch)
                batch = []
            # Drop the ORM objects as we go: 100k listings must not pile up in the identity map.
            session.expunge(listing)
        if batch:
            tasks.append(await _send(meili, index, batch))
            sent += len(batch)
        await session.rollback()
    for uid in tasks:  # Meilisearch applies them in order; the bar moves as each batch is searchable
        done = await meili.wait_task(uid, max_wait=3600)
        bar.update(int(done.get("details", {}).get("indexedDocuments") or 0))
    bar.close()
    return seen, ratings, sent


async def _send(meili: Meili, index: str, docs: list[dict[str, Any]]) -> int:
    return await meili.enqueue("POST", f"/indexes/{index}/documents?primaryKey=id", json=docs)


async def _catch_up(
    meili: Meili,
    sessionmaker: async_sessionmaker[AsyncSession],
    index: str,
    seen: dict[uuid.UUID, int],
    ratings: dict[uuid.UUID, SellerRating],
) -> int:
    """Re-apply every listing whose row changed, appeared or vanished since it was last read, and every
    listing of a seller whose rating differs from `ratings` (which then become the ratings read now)."""
    async with sessionmaker() as session:
        current = await seller_ratings(session, None)
        moved = {
            seller
            for seller in current.keys() | ratings.keys()
            if current.get(seller, NO_RATINGS) != ratings.get(seller, NO_RATINGS)
        }
        rows = (await session.execute(select(Listing.id, Listing.seller_id, XMIN))).all()
        now = {row.id: int(row.xmin) for row in rows}
        changed = [row.id for row in rows if seen.get(row.id) != int(row.xmin) or row.seller_id in moved]
        vanished = [i for i in seen if i not in now]
        # documents_for below reads the ratings again, so what it applies is never older than `current`.
        ratings.clear()
        ratings.update(current)
        if not changed and not vanished:
            return 0
        upserts, deletes, xmins = await documents_for(session, changed) if changed else ([], [], {})
        await session.rollback()
    deletes += [str(i) for i in vanished]
    await apply_documents(meili, index, upserts, deletes)
    for i in vanished:
        seen.pop(i, None)
    for i in changed:
        # Remember the xmin of the version actually applied (it may be newer than the scan's).
        if i in xmins:
            seen[i] = xmins[i]
        else:
            seen.pop(i, None)
    return len(changed) + len(vanished)
