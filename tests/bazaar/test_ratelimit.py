"""The `limits` storage adapter over PostgreSQL (bazaar.ratelimit): atomic counters with fixed windows, the
library's strategy on top, and the verdicts the API turns into headers. On a migrated database of this module's
own (the `outbox_url` fixture), so no API counts in it meanwhile."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bazaar.ratelimit import Limiter, PostgresStorage, identity, tiers

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
async def storage(outbox_url: str) -> AsyncIterator[PostgresStorage]:
    engine = create_async_engine(outbox_url, pool_size=20)
    yield PostgresStorage(engine)
    await engine.dispose()


async def test_incr_is_atomic_across_concurrent_hits(storage: PostgresStorage) -> None:
    counts = await asyncio.gather(*(storage.incr("atomic", 60) for _ in range(40)))
    assert sorted(counts) == list(range(1, 41))  # every hit saw a different count: none lost
    assert await storage.get("atomic") == 40
    assert time.time() + 55 < await storage.get_expiry("atomic") <= time.time() + 61


async def test_an_ended_window_starts_again(storage: PostgresStorage) -> None:
    assert await storage.incr("window", 1, amount=3) == 3
    assert await storage.incr("window", 1) == 4  # same window: the expiry does not move
    await asyncio.sleep(1.2)
    assert await storage.get("window") == 0
    assert await storage.incr("window", 60) == 1
    assert await storage.purge_expired() >= 0


async def test_clear_reset_and_check(storage: PostgresStorage) -> None:
    await storage.incr("gone", 60)
    await storage.clear("gone")
    assert await storage.get("gone") == 0
    assert await storage.check()
    await storage.incr("also-gone", 60)
    assert (await storage.reset() or 0) >= 1
    assert await storage.get("also-gone") == 0


async def test_limiter_tiers_headers_and_lockout(storage: PostgresStorage) -> None:
    limiter = Limiter(storage)
    limit = "3/minute;5/hour"
    assert [item.get_expiry() for item in tiers(limit)] == [60, 3600]
    verdicts = [await limiter.hit("login", limit, "someone@example.com") for _ in range(4)]
    assert [v.allowed for v in verdicts] == [True, True, True, False]
    assert [(t.remaining, t.amount, t.window_seconds) for t in verdicts[0].tiers] == [
        (2, 3, 60),
        (4, 5, 3600),
    ]
    refused = verdicts[-1]
    assert refused.tiers[0].remaining == 0 and 55 <= refused.retry_after <= 60
    # `test` counts nothing: the lockout check before a password is verified.
    before = await limiter.test("login", limit, "someone@example.com")
    assert (
        not before.allowed
        and (await limiter.test("login", limit, "someone@example.com")).tiers == before.tiers
    )
    assert (await limiter.test("login", limit, "someone-else@example.com")).allowed
    await limiter.clear("login", limit, "someone@example.com")
    assert (await limiter.test("login", limit, "someone@example.com")).allowed


async def test_identities_are_stored_hashed(storage: PostgresStorage) -> None:
    await Limiter(storage).hit("search", "10/minute", "203.0.113.9")
    async with storage.engine.connect() as conn:
        keys = (await conn.execute(text("SELECT key FROM rate_limit_counters"))).scalars().all()
    assert not any("203.0.113.9" in key for key in keys)
    assert any(identity("203.0.113.9") in key for key in keys)
