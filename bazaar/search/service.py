"""One search endpoint, two backends: Meilisearch behind a circuit breaker, PostgreSQL while it is unreachable."""

from __future__ import annotations

import logging
import time

from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bazaar.listings import lifecycle as listings
from bazaar.listings.lifecycle import Taxonomy
from bazaar.search.fallback import search_postgres
from bazaar.search.meili import Meili, MeiliError, MeiliUnavailable
from bazaar.search.query import ListingQuery, SearchResult, search_meili

log = logging.getLogger("search")


class CircuitBreaker:
    """Closed: use Meilisearch. After a failure: open for `retry_seconds` (answer from PostgreSQL), then let
    one request probe Meilisearch; success closes it, failure opens it again. No state can get stuck: a
    probe that never reports back just lets the next probe through `retry_seconds` later."""

    def __init__(self, retry_seconds: float) -> None:
        self.retry_seconds = retry_seconds
        self.open_until = 0.0  # 0: closed

    @property
    def is_open(self) -> bool:
        return self.open_until != 0.0

    def allow(self) -> bool:
        if self.open_until == 0.0:
            return True
        now = time.monotonic()
        if now >= self.open_until:
            self.open_until = now + self.retry_seconds  # this request is the probe; others keep falling back
            return True
        return False

    def success(self) -> None:
        self.open_until = 0.0

    def failure(self) -> None:
        self.open_until = time.monotonic() + self.retry_seconds


class SearchService:
    def __init__(
        self,
        meili: Meili,
        index: str,
        sessionmaker: async_sessionmaker[AsyncSession],
        breaker: CircuitBreaker,
    ) -> None:
        self.meili = meili
        self.index = index
        self.sessionmaker = sessionmaker
        self.breaker = breaker

    async def taxonomy(self) -> Taxonomy:
        if (cached := listings.cached_taxonomy()) is not None:
            return cached  # the hot path: no session, no database
        async with self.sessionmaker() as session:
            return await listings.taxonomy(session)

    async def search(self, query: ListingQuery) -> SearchResult:
        if self.breaker.allow():
            try:
                result = await search_meili(self.meili, self.index, query)
            except MeiliUnavailable as exc:
                self.breaker.failure()
                log.warning("meilisearch unavailable, answering from postgres: %s", exc)
            except MeiliError as exc:
                # It answered but refused (e.g. the index is not created yet): answer this one from
                # PostgreSQL too, but do not treat Meilisearch as down.
                log.error("meilisearch refused a search, answering from postgres: %s", exc)
            else:
                self.breaker.success()
                return result
        async with self.sessionmaker() as session, session.begin():
            return await search_postgres(session, query, await listings.taxonomy(session))
