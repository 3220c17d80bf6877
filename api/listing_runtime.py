"""In-process parts of listings and search in the API: the search service (Meilisearch with a PostgreSQL
fallback behind a circuit breaker), the hot-listing cache and its invalidation feed, batched view counts,
and the change-to-searchable histogram fed by search_sync. Started and stopped by the app's lifespan.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator

from fastapi import FastAPI

from api import metrics
from api.listing_schemas import ListingOut
from bazaar.db import get_sessionmaker
from bazaar.listings.cache import HotCache
from bazaar.listings.changes import LISTING_CHANGED_CHANNEL
from bazaar.listings.popularity import ViewCounter, flush_forever
from bazaar.pg_listen import listen_forever
from bazaar.search.meili import Meili
from bazaar.search.outbox import SYNCED_CHANNEL
from bazaar.search.service import CircuitBreaker, SearchService
from bazaar.settings import Settings

ListingCache = HotCache[uuid.UUID, ListingOut]


def _invalidate(cache: ListingCache, payload: str) -> None:
    ids = []
    for raw in payload.split(","):
        with contextlib.suppress(ValueError):
            ids.append(uuid.UUID(raw))
    cache.invalidate(ids)


@contextlib.asynccontextmanager
async def listing_runtime(app: FastAPI, settings: Settings) -> AsyncIterator[None]:
    # Search-only key: the API can read the index and nothing else.
    app.state.meili = Meili(
        settings.meili_url,
        settings.require("meili_search_key"),
        timeout=settings.meili_search_timeout_seconds,
        connect_timeout=min(settings.meili_search_timeout_seconds, 1.0),
    )
    breaker = CircuitBreaker(settings.search_breaker_retry_seconds)
    app.state.search = SearchService(app.state.meili, settings.meili_index, get_sessionmaker(), breaker)
    cache: ListingCache = HotCache(settings.listing_cache_max_entries, settings.listing_cache_ttl_seconds)
    views = ViewCounter()
    app.state.listing_cache, app.state.views = cache, views
    metrics.LIVE.cache, metrics.LIVE.views, metrics.LIVE.breaker = cache, views, breaker

    def feed_state(up: bool) -> None:
        cache.set_enabled(up and settings.listing_cache_max_entries > 0)

    tasks = [
        asyncio.create_task(
            listen_forever(
                settings.database_url,
                {
                    LISTING_CHANGED_CHANNEL: lambda payload: _invalidate(cache, payload),
                    SYNCED_CHANNEL: metrics.observe_synced,
                },
                on_state=feed_state,
            ),
            name="listing-feed",
        ),
        asyncio.create_task(
            flush_forever(views, get_sessionmaker(), settings.popularity_flush_seconds), name="view-flush"
        ),
    ]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await app.state.meili.aclose()
