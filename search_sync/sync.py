"""Drain the search outbox into Meilisearch.

Each batch re-reads the listings' current state (so an older version can never overwrite a newer one),
upserts public listings and deletes the others, waits until Meilisearch has applied both tasks, and only
then deletes the outbox rows it handled. A crash or a Meilisearch outage leaves the rows in place: nothing
is lost, the next batch redoes the work (upserts and deletes are idempotent, and Meilisearch applies
tasks in the order they were enqueued, so a task left over by a crashed syncer is followed by a newer one).

Batches never race: each one runs under an advisory lock, held only for the batch. A reindex takes the
same lock for its final catch-up and swap, which pauses syncing for that moment only. So search-sync can run as
several replicas for availability: they take turns batch by batch, and when one dies the database ends its
session and releases the lock, and the others go on (tests/search_sync/test_replicas.py measures the takeover).

Tracing: each batch is a span (`search-sync batch`) in the trace of the change that queued its first row (the
outbox row's `trace_context`), linked to the traces of the others; its SQL and Meilisearch calls are its children.

Freshness: when a batch is done, the change-to-searchable latency of every row (outbox `created_at` to
now, on the database clock) is sent as a NOTIFY on `search_synced`; API processes feed it to a histogram.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import uuid
from collections.abc import AsyncIterator
from typing import Any

import psycopg
from opentelemetry import trace
from opentelemetry.trace import SpanKind
from sqlalchemy import BigInteger, Label, literal_column, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from bazaar.listings.lifecycle import NO_RATINGS, seller_ratings, taxonomy
from bazaar.models import Listing, SearchOutbox
from bazaar.pg_listen import connect
from bazaar.search.index import apply_index_settings, is_public, listing_document
from bazaar.search.meili import Meili, MeiliError
from bazaar.search.outbox import SYNCED_CHANNEL
from bazaar.settings import Settings
from bazaar.telemetry import batch_parent, instrument_engine

log = logging.getLogger("search_sync")
SYNC_LOCK_ID = 0x5EA2C4  # advisory lock key: held by whoever writes outbox changes to the index
OUTBOX_CHANNEL = "search_outbox"  # NOTIFY sent by a trigger on every outbox insert (migration 0001)
_SAMPLES_PER_MESSAGE = 800  # ~7 bytes each: stays under the 8000-byte NOTIFY payload limit
_TRACER = trace.get_tracer("search_sync")

# Row version marker: PostgreSQL gives every new row version a new xmin, whatever changed in it.
XMIN: Label[int] = literal_column("listings.xmin::text::bigint", BigInteger).label("xmin")


async def documents_for(
    session: AsyncSession, listing_ids: list[uuid.UUID]
) -> tuple[list[dict[str, Any]], list[str], dict[uuid.UUID, int]]:
    """Current documents to upsert, ids to delete, and each found row's xmin, for these listings.

    Seller ratings are read here too: a rating change queues the seller's listings in the same transaction
    (bazaar.trust.reputation.reindex_seller_listings), so a batch that saw those outbox rows sees the new rating.
    """
    tree = await taxonomy(session)
    rows = (await session.execute(select(Listing, XMIN).where(Listing.id.in_(listing_ids)))).all()
    found = {listing.id: listing for listing, _ in rows}
    public = [x for x in found.values() if is_public(x)]
    ratings = await seller_ratings(session, {x.seller_id for x in public})
    upserts = [
        listing_document(x, tree.path(x.category_slug), ratings.get(x.seller_id, NO_RATINGS)) for x in public
    ]
    deletes = [str(i) for i in listing_ids if i not in found or not is_public(found[i])]
    return upserts, deletes, {listing.id: int(xmin) for listing, xmin in rows}


async def apply_documents(
    meili: Meili, index: str, upserts: list[dict[str, Any]], deletes: list[str]
) -> None:
    """Enqueue both writes, then wait for both (Meilisearch may batch them into one)."""
    tasks = []
    if upserts:
        tasks.append(await meili.enqueue("POST", f"/indexes/{index}/documents?primaryKey=id", json=upserts))
    if deletes:
        tasks.append(await meili.enqueue("POST", f"/indexes/{index}/documents/delete-batch", json=deletes))
    await meili.wait_tasks(tasks)


class OutboxSync:
    def __init__(
        self, meili: Meili, sessionmaker: async_sessionmaker[AsyncSession], index: str, batch_size: int
    ) -> None:
        self.meili = meili
        self.sessionmaker = sessionmaker
        self.index = index
        self.batch_size = batch_size

    async def sync_once(self) -> int:
        """Handle one batch of outbox rows (call it under the sync lock); returns how many were cleared."""
        async with self.sessionmaker() as session:
            rows = (
                await session.execute(
                    select(SearchOutbox.id, SearchOutbox.listing_id, SearchOutbox.trace_context)
                    .order_by(SearchOutbox.id)
                    .limit(self.batch_size)
                )
            ).all()
            if not rows:
                return 0  # an empty poll makes no span, nor do its statements (no trace is current)
            parent, links = batch_parent(r.trace_context for r in rows)
            with _TRACER.start_as_current_span(
                "search-sync batch",
                context=parent,
                kind=SpanKind.CONSUMER,
                links=links,
                attributes={"bazaar.search_sync.rows": len(rows)},
            ):
                await self._apply(session, [r.id for r in rows], [r.listing_id for r in rows])
        return len(rows)

    async def _apply(self, session: AsyncSession, row_ids: list[int], listing_ids: list[uuid.UUID]) -> None:
        """Index the listings' current state, then clear their rows and report how long each change took."""
        # Read after the outbox rows: the state read is at least as new as every change in the batch.
        upserts, deletes, _ = await documents_for(session, list(dict.fromkeys(listing_ids)))
        await session.rollback()  # release the snapshot while Meilisearch works
        trace.get_current_span().set_attributes(
            {"bazaar.search_sync.upserts": len(upserts), "bazaar.search_sync.deletes": len(deletes)}
        )
        await apply_documents(self.meili, self.index, upserts, deletes)
        async with self.sessionmaker() as clearing, clearing.begin():
            latencies = (
                (
                    await clearing.execute(
                        text(
                            "WITH gone AS (DELETE FROM search_outbox WHERE id = ANY(:ids) RETURNING created_at) "
                            "SELECT round(1000 * extract(epoch FROM clock_timestamp() - created_at)) FROM gone"
                        ),
                        {"ids": row_ids},
                    )
                )
                .scalars()
                .all()
            )
            samples = [int(ms) for ms in latencies]
            for start in range(0, len(samples), _SAMPLES_PER_MESSAGE):
                payload = json.dumps({"ms": samples[start : start + _SAMPLES_PER_MESSAGE]})
                await clearing.execute(
                    text("SELECT pg_notify(:channel, :payload)"),
                    {"channel": SYNCED_CHANNEL, "payload": payload},
                )


@contextlib.asynccontextmanager
async def advisory_lock(
    conn: psycopg.AsyncConnection[Any], key: int, stop: asyncio.Event | None = None
) -> AsyncIterator[bool]:
    """Hold a session advisory lock on `conn` (autocommit) for the block; yields False if `stop` came first.

    Polls with pg_try_advisory_lock rather than blocking in the server, so a stop request is honoured
    while someone else (a reindex) holds the lock.
    """
    delay = 0.005
    while True:
        got = await (await conn.execute("SELECT pg_try_advisory_lock(%s)", (key,))).fetchone()
        if got is not None and got[0]:
            break
        if stop is not None and stop.is_set():
            yield False
            return
        await asyncio.sleep(delay)
        delay = min(delay * 2, 0.1)
    try:
        yield True
    finally:
        if not conn.closed:
            await conn.execute("SELECT pg_advisory_unlock(%s)", (key,))


class Backoff:
    def __init__(self, first: float, cap: float) -> None:
        self.first = first
        self.cap = max(cap, first)
        self.current = first

    def next(self) -> float:
        delay, self.current = self.current, min(self.current * 2, self.cap)
        return delay

    def reset(self) -> None:
        self.current = self.first


async def run(settings: Settings, stop: asyncio.Event) -> None:
    """The sync process: runs until `stop` is set; survives database and Meilisearch outages."""
    engine = create_async_engine(settings.database_url, pool_size=2, pool_pre_ping=True)
    instrument_engine(engine)  # a batch's statements as its child spans
    sessionmaker = async_sessionmaker(engine, expire_on_commit=False)
    meili = Meili(settings.meili_url, settings.require("meili_master_key"), timeout=30.0, connect_timeout=2.0)
    syncer = OutboxSync(meili, sessionmaker, settings.meili_index, settings.search_sync_batch_size)
    backoff = Backoff(0.1, settings.search_sync_max_backoff_seconds)
    settings_applied = False
    try:
        while not stop.is_set():
            try:
                async with await connect(settings.database_url) as conn:
                    await conn.execute(f"LISTEN {OUTBOX_CHANNEL}")
                    while not stop.is_set():
                        try:
                            if not settings_applied:
                                await apply_index_settings(meili, settings.meili_index)
                                settings_applied = True
                                log.info("index %s settings are current", settings.meili_index)
                            async with advisory_lock(conn, SYNC_LOCK_ID, stop) as locked:
                                handled = await syncer.sync_once() if locked else 0
                            backoff.reset()
                        except MeiliError as exc:
                            delay = backoff.next()
                            log.warning("meilisearch: %s; retrying in %.1fs", exc, delay)
                            await sleep_or_stop(stop, delay)
                            continue
                        if handled:
                            log.debug("synced %d outbox rows", handled)
                        if handled < settings.search_sync_batch_size:
                            # Sleep until a new row is committed (NOTIFY) or the poll interval passes.
                            async for _ in conn.notifies(
                                timeout=max(settings.search_sync_poll_seconds, 0.01), stop_after=1
                            ):
                                pass
            except (OSError, psycopg.Error, DBAPIError) as exc:
                delay = backoff.next()
                log.warning("database: %r; reconnecting in %.1fs", exc, delay)
                await sleep_or_stop(stop, delay)
    finally:
        await meili.aclose()
        await engine.dispose()


async def sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(stop.wait(), timeout=seconds)
