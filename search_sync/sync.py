"""Drain the search outbox into Meilisearch.

Each batch re-reads the listings' current state (so an older version can never overwrite a newer one),
upserts public listings and deletes the others, waits until Meilisearch has applied both tasks, and only
then deletes the outbox rows it handled. A crash or a Meilisearch outage leaves the rows in place: nothing
is lost, the next batch redoes the work. One syncer at a time holds an advisory lock, so batches never race.
"""

from __future__ import annotations

import asyncio
import logging
import uuid

import psycopg
from sqlalchemy import delete, select, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncSession

from bazaar.db import get_sessionmaker
from bazaar.meili import Meili, MeiliError
from bazaar.models import Category, Listing, SearchOutbox
from bazaar.search_index import INDEX_SETTINGS, is_public, listing_document
from bazaar.settings import Settings

log = logging.getLogger("search_sync")
SYNC_LOCK_ID = 0x5EA2C4  # advisory lock key: one active syncer


async def apply_index_settings(meili: Meili, index: str) -> None:
    """Create the index if needed and apply the versioned settings (a no-op task when unchanged)."""
    try:
        await meili.request("GET", f"/indexes/{index}")
    except MeiliError:
        await meili.run_task("POST", "/indexes", json={"uid": index, "primaryKey": "id"})
    await meili.run_task("PATCH", f"/indexes/{index}/settings", json=INDEX_SETTINGS)


async def category_paths(session: AsyncSession) -> dict[str, list[tuple[str, str]]]:
    rows = (await session.execute(select(Category.slug, Category.parent_slug, Category.name))).all()
    by_slug = {slug: (parent, name) for slug, parent, name in rows}
    paths: dict[str, list[tuple[str, str]]] = {}
    for slug in by_slug:
        path: list[tuple[str, str]] = []
        current: str | None = slug
        while current is not None:
            parent, name = by_slug[current]
            path.insert(0, (current, name))
            current = parent
        paths[slug] = path
    return paths


async def documents_for(
    session: AsyncSession, listing_ids: list[uuid.UUID]
) -> tuple[list[dict[str, object]], list[str]]:
    """Current documents to upsert and ids to delete for these listings."""
    paths = await category_paths(session)
    found = {
        row.id: row
        for row in (await session.scalars(select(Listing).where(Listing.id.in_(listing_ids)))).all()
    }
    upserts = [listing_document(x, paths[x.category_slug], 0.0) for x in found.values() if is_public(x)]
    deletes = [str(i) for i in listing_ids if i not in found or not is_public(found[i])]
    return upserts, deletes


async def sync_once(meili: Meili, index: str, batch_size: int) -> int:
    """Handle one batch of outbox rows; returns how many rows were cleared."""
    async with get_sessionmaker()() as session:
        rows = (await session.scalars(select(SearchOutbox).order_by(SearchOutbox.id).limit(batch_size))).all()
        if not rows:
            return 0
        row_ids = [r.id for r in rows]
        listing_ids = list(dict.fromkeys(r.listing_id for r in rows))
        upserts, deletes = await documents_for(session, listing_ids)
        await session.rollback()  # release the snapshot while Meilisearch works
    if upserts:
        await meili.run_task("POST", f"/indexes/{index}/documents?primaryKey=id", json=upserts)
    if deletes:
        await meili.run_task("POST", f"/indexes/{index}/documents/delete-batch", json=deletes)
    async with get_sessionmaker()() as session, session.begin():
        await session.execute(delete(SearchOutbox).where(SearchOutbox.id.in_(row_ids)))
    return len(row_ids)


def _libpq_url(database_url: str) -> str:
    return make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)


async def run(settings: Settings, stop: asyncio.Event) -> None:
    meili = Meili(settings.meili_url, settings.require("meili_master_key"))
    async with await psycopg.AsyncConnection.connect(
        _libpq_url(settings.database_url), autocommit=True
    ) as conn:
        log.info("waiting for the sync lock")
        await conn.execute("SELECT pg_advisory_lock(%s)", (SYNC_LOCK_ID,))
        await conn.execute("LISTEN search_outbox")
        backoff = 0.5
        settings_applied = False
        while not stop.is_set():
            try:
                if not settings_applied:
                    await apply_index_settings(meili, settings.meili_index)
                    settings_applied = True
                    log.info("index %s settings applied", settings.meili_index)
                handled = await sync_once(meili, settings.meili_index, settings.search_sync_batch_size)
                backoff = 0.5
            except MeiliError as exc:
                log.warning("meilisearch unavailable, retrying in %.1fs: %s", backoff, exc)
                await _sleep_or_stop(stop, backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            if handled:
                log.info("synced %d outbox rows", handled)
            if handled < settings.search_sync_batch_size:
                # Sleep until a new row is committed (NOTIFY) or the poll interval passes.
                async for _ in conn.notifies(
                    timeout=max(settings.search_sync_poll_seconds, 0.05) * 25, stop_after=1
                ):
                    pass
    await meili.aclose()


async def _sleep_or_stop(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except TimeoutError:
        pass


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
