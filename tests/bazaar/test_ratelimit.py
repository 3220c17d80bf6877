"""The `limits` storage adapter over PostgreSQL (bazaar.ratelimit): atomic counters with fixed windows, the
library's strategy on top, and the verdicts the API turns into headers. On a migrated database of this module's
own (the `outbox_url` fixture), so no API counts in it meanwhile."""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from bazaar.ratelimit import Limiter, PostgresStorage, WriteBehind, _state, identity, tiers

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
    assert await storage.incr("short", 1) == 1
    await asyncio.sleep(1.2)
    assert await storage.purge_expired() >= 1  # at least "short", whose window has ended
    assert await storage.purge_expired() == 0  # nothing left to purge: "window" runs for a minute


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


async def test_a_refused_request_uses_up_no_quota(storage: PostgresStorage) -> None:
    """Found from outside: each 429 of the minute's tier took one more from the day's, so a client that retried
    too early spent its day's orders without placing one."""
    limiter = Limiter(storage)
    limit = "2/minute;5/hour"
    verdicts = [await limiter.hit("quota", limit, "early-retrier") for _ in range(6)]
    assert [v.allowed for v in verdicts] == [True, True, False, False, False, False]
    assert [t.remaining for t in verdicts[-1].tiers] == [0, 3]  # the hour lost only the two admitted
    minute, hour = (item.key_for("quota", identity("early-retrier")) for item in tiers(limit))
    assert (await storage.get(minute), await storage.get(hour)) == (2, 2)


def test_a_window_never_ends_later_than_its_length() -> None:
    """Found from outside: the first `RateLimit` of a 60 s window said `t=61` (the storage's expiry is a whole
    second after the window opened, and the seconds left are rounded up)."""
    [minute] = tiers("3/minute")
    now = time.time()
    assert _state(minute, 2, now + 60.4, now).reset_seconds == 60
    assert _state(minute, 2, now + 59.2, now).reset_seconds == 60
    assert _state(minute, 2, now + 0.2, now).reset_seconds == 1
    assert _state(minute, 2, now - 1, now).reset_seconds == 0


async def test_identities_are_stored_hashed(storage: PostgresStorage) -> None:
    await Limiter(storage).hit("search", "10/minute", "203.0.113.9")
    async with storage.engine.connect() as conn:
        keys = (await conn.execute(text("SELECT key FROM rate_limit_counters"))).scalars().all()
    assert not any("203.0.113.9" in key for key in keys)
    assert any(identity("203.0.113.9") in key for key in keys)


# ------------------------------------------------------------------ hot limits: counted here, written behind


async def test_hot_limit_is_exact_in_one_process(storage: PostgresStorage) -> None:
    behind = WriteBehind(storage, share=0.1, interval=3600)  # lease of 2 for 20/minute; no timer here
    limiter = Limiter(storage, behind)
    verdicts = [await limiter.hit("search", "20/minute", "198.51.100.1", hot=True) for _ in range(23)]
    assert [v.allowed for v in verdicts] == [True] * 20 + [False] * 3
    assert [v.tiers[0].remaining for v in verdicts[:3]] == [19, 18, 17]
    assert 55 <= verdicts[-1].retry_after <= 61
    await behind.flush()
    key = tiers("20/minute")[0].key_for("search", identity("198.51.100.1"))
    assert await storage.get(key) == 20  # every admitted hit written, the refused ones not counted


async def test_hot_counts_are_written_behind_and_first_hits_at_once(storage: PostgresStorage) -> None:
    behind = WriteBehind(storage, share=0.5, interval=3600)  # a lease of 5 for 10/minute
    limiter = Limiter(storage, behind)
    key = tiers("10/minute")[0].key_for("reads", identity("198.51.100.2"))

    async def hit() -> None:
        assert (await limiter.hit("reads", "10/minute", "198.51.100.2", hot=True)).allowed

    await hit()
    assert await storage.get(key) == 1  # a key's first hit in a window is counted in PostgreSQL at once
    for _ in range(5):
        await hit()
    assert await storage.get(key) == 1  # within the lease: not written yet
    await hit()
    assert await storage.get(key) == 7  # the hit past the lease wrote it and the five before it
    await hit()
    assert await behind.flush() == 1
    assert await storage.get(key) == 8


async def test_replicas_share_hot_limits_within_a_lease(storage: PostgresStorage) -> None:
    """Two processes counting one key: together they admit the limit, and at most one lease more."""
    replicas = [WriteBehind(storage, share=0.1, interval=3600) for _ in range(2)]
    limiters = [Limiter(storage, behind) for behind in replicas]
    admitted = 0
    for n in range(60):
        admitted += (await limiters[n % 2].hit("search", "30/minute", "198.51.100.3", hot=True)).allowed
        if n % 7 == 6:
            await replicas[n % 2].flush()  # each writes behind on its own clock
    assert 30 <= admitted <= 30 + 3  # the limit, plus at most (replicas - 1) x lease (3 of 30)
    for behind in replicas:
        await behind.flush()
    for limiter in limiters:  # once written, each sees the other's hits
        assert not (await limiter.hit("search", "30/minute", "198.51.100.3", hot=True)).allowed


async def test_an_ended_window_is_forgotten(storage: PostgresStorage) -> None:
    behind = WriteBehind(storage, share=0.5, interval=3600)
    limiter = Limiter(storage, behind)
    assert [(await limiter.hit("burst", "4/second", "198.51.100.4", hot=True)).allowed for _ in range(5)] == [
        True,
        True,
        True,
        True,
        False,
    ]
    await asyncio.sleep(1.1)
    assert (await limiter.hit("burst", "4/second", "198.51.100.4", hot=True)).allowed
    await behind.flush()
    assert not behind.windows or all(w.pending == 0 for w in behind.windows.values())


class _FakeCounters:
    """The shared table as `WriteBehind` uses it (`add_many`), in memory, with a random delay per write."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.rows: dict[str, tuple[int, float]] = {}

    async def add_many(self, hits: list[tuple[str, int, int]]) -> dict[str, tuple[int, float]]:
        await asyncio.sleep(self.rng.random() / 1000)
        out = {}
        for key, window, amount in hits:
            count, ends = self.rows.get(key, (0, 0.0))
            if ends <= time.time():
                count, ends = 0, time.time() + window
            self.rows[key] = out[key] = (count + amount, ends)
        return out


@pytest.mark.parametrize("seed", range(40))
async def test_replicas_never_admit_more_than_a_lease_each_over_the_limit(seed: int) -> None:
    """Random interleavings of 1-4 processes, concurrent hits and writes behind: a window admits at least the
    limit and at most limit + (processes - 1) x lease."""
    rng = random.Random(seed)
    replicas, amount = rng.randint(1, 4), rng.choice([5, 30, 60, 300])
    counters = _FakeCounters(rng)
    processes = [WriteBehind(counters, share=0.1, interval=3600) for _ in range(replicas)]  # type: ignore[arg-type]
    item = tiers(f"{amount}/hour")[0]
    admitted = 0

    async def client() -> None:
        nonlocal admitted
        for _ in range(amount):
            behind = rng.choice(processes)
            if rng.random() < 0.1:
                await behind.flush()
            count, _ = await behind.hit(item, "key")
            admitted += count <= amount

    await asyncio.gather(*(client() for _ in range(4)))
    assert amount <= admitted <= amount + (replicas - 1) * max(1, amount // 10)
