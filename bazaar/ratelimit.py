"""Request limits with the `limits` library, counted in PostgreSQL so that every API replica shares them.

`PostgresStorage` is the storage adapter `limits` needs (its async `Storage` interface) over one UNLOGGED table,
`rate_limit_counters`: a counter per key with the end of its window. `incr` is one atomic statement
(`INSERT ... ON CONFLICT DO UPDATE ... RETURNING`): a counter whose window has ended starts again at the amount,
otherwise it grows; two replicas hitting one key at once serialise on its row. Times are the database's clock, so
replicas with drifting clocks still agree on the windows.

Strategy: fixed window (`FixedWindowRateLimiter`; `Limiter.hit` counts all of a limit's tiers in one upsert,
as the strategy's `hit` would one by one). A window starts at a key's first hit and lasts the limit's period;
it costs one row per tier and one upsert per hit. A moving window would store one entry per hit and count
them on every check (N times the writes and rows for an N/period limit) for a precision these abuse limits do not
need: a client can at worst get twice a limit across one window boundary, and the longer tiers ("5/minute;
10/hour;30/day") bound the long run. Several tiers per limit are how a lockout grows (bazaar.settings).

`Limiter` applies a limit (one or more tiers) to an identity and says what the response should tell the client:
whether it may go on, how much is left of each tier, and when to retry. Identities are hashed before they are
stored, so the table holds no email or client address.

Hot limits (searches, listing reads: `Limiter.hit(..., hot=True)`) are not written on the request's path:
`WriteBehind` decides them in the process from the key's shared count as last read from PostgreSQL plus this
process's own hits since, and writes those hits behind, batched in one statement every `WRITE_BEHIND_SECONDS`.
Measured before (docs/benchmarks.md): the upsert per search cost more than the search itself, and every search of
one client address serialised on its counter's row. What stays exact: a key's first hit in a window on a process
is counted in PostgreSQL at once (so its window and count are the shared ones), and a process never holds more
than its lease, `LOCAL_SHARE` of a tier's quota (at least 1), of unwritten hits of a key: the hit that would
exceed it writes them at once. So one process alone (one replica, one worker) enforces a limit exactly, and R
processes together admit at most the limit + (R - 1) x lease in a window (each admits, unseen by the others, at
most its lease); the hits written behind are in the shared count within `WRITE_BEHIND_SECONDS`.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import time
from dataclasses import dataclass
from functools import lru_cache

import psycopg
from limits import RateLimitItem, parse_many
from limits.aio.storage import Storage
from limits.aio.strategies import FixedWindowRateLimiter
from sqlalchemy import delete, func, select, text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from bazaar.models import RateLimitCounter

_COUNTER = RateLimitCounter
log = logging.getLogger("ratelimit")

# Hot limits (module doc): the share of a tier's quota one process may admit before writing it, and how often the
# hits admitted are written behind.
LOCAL_SHARE = 0.1
WRITE_BEHIND_SECONDS = 0.25


class PostgresStorage(Storage):
    """The `limits` storage interface over `rate_limit_counters` (fixed windows; see the module doc)."""

    STORAGE_SCHEME = None  # built from an engine, not from a storage URI

    def __init__(self, engine: AsyncEngine) -> None:
        super().__init__()
        self.engine = engine

    @property
    def base_exceptions(self) -> type[Exception] | tuple[type[Exception], ...]:
        return (DBAPIError, psycopg.Error)

    async def incr(self, key: str, expiry: int, amount: int = 1) -> int:
        return (await self.add_many([(key, expiry, amount)]))[key][0]

    async def add_many(self, hits: list[tuple[str, int, int]]) -> dict[str, tuple[int, float]]:
        """Add (key, window seconds, amount) hits in one statement (keys distinct); each key's new count and the
        end of its window (epoch seconds, database clock)."""
        if not hits:
            return {}
        async with self.engine.begin() as conn:
            rows = await conn.execute(
                _UPSERT,
                {
                    "keys": [key for key, _, _ in hits],
                    "amounts": [amount for _, _, amount in hits],
                    "windows": [int(window) for _, window, _ in hits],
                },
            )
        return {key: (int(count), float(ends_at)) for key, count, ends_at in rows}

    async def give_back(self, hits: list[tuple[str, int]]) -> None:
        """Take (key, amount) hits back out of their counters' current windows (a refused request counts for
        nothing); a window that ended meanwhile is left as it is."""
        async with self.engine.begin() as conn:
            await conn.execute(
                _GIVE_BACK, {"keys": [key for key, _ in hits], "amounts": [amount for _, amount in hits]}
            )

    async def get(self, key: str) -> int:
        async with self.engine.connect() as conn:
            count = await conn.scalar(
                select(_COUNTER.count).where(_COUNTER.key == key, _COUNTER.expires_at > func.now())
            )
        return int(count or 0)

    async def get_expiry(self, key: str) -> float:
        async with self.engine.connect() as conn:
            ends = await conn.scalar(
                select(func.extract("epoch", func.greatest(_COUNTER.expires_at, func.now()))).where(
                    _COUNTER.key == key
                )
            )
        return float(ends) if ends is not None else time.time()

    async def check(self) -> bool:
        try:
            async with self.engine.connect() as conn:
                await conn.execute(select(1))
        except (DBAPIError, psycopg.Error, OSError):
            return False
        return True

    async def reset(self) -> int | None:
        async with self.engine.begin() as conn:
            result = await conn.execute(delete(_COUNTER))
        return int(result.rowcount or 0)

    async def clear(self, key: str) -> None:
        async with self.engine.begin() as conn:
            await conn.execute(delete(_COUNTER).where(_COUNTER.key == key))

    async def purge_expired(self) -> int:
        """Delete the counters whose window has ended (they would start afresh anyway); returns how many."""
        async with self.engine.begin() as conn:
            result = await conn.execute(delete(_COUNTER).where(_COUNTER.expires_at <= func.now()))
        return int(result.rowcount or 0)


# A counter per key grows by its amount, or starts again at it when its window has ended; one statement for any
# number of keys (arrays, so its text and plan are the same every time).
_UPSERT = text(
    """
    INSERT INTO rate_limit_counters AS c (key, count, expires_at)
    SELECT k, n, now() + make_interval(secs => w)
    FROM unnest(CAST(:keys AS text[]), CAST(:amounts AS bigint[]), CAST(:windows AS integer[])) AS h(k, n, w)
    ON CONFLICT (key) DO UPDATE SET
        count = CASE WHEN c.expires_at <= now() THEN excluded.count ELSE c.count + excluded.count END,
        expires_at = CASE WHEN c.expires_at <= now() THEN excluded.expires_at ELSE c.expires_at END
    RETURNING c.key, c.count, extract(epoch FROM c.expires_at)
    """
)

_GIVE_BACK = text(
    """
    UPDATE rate_limit_counters AS c SET count = c.count - h.n
    FROM unnest(CAST(:keys AS text[]), CAST(:amounts AS bigint[])) AS h(k, n)
    WHERE c.key = h.k AND c.expires_at > now()
    """
)


@lru_cache(maxsize=128)
def tiers(limit: str) -> tuple[RateLimitItem, ...]:
    """The tiers of a limit in `limits` notation ("5/minute;10/hour"), shortest window first."""
    return tuple(sorted(parse_many(limit), key=lambda item: item.get_expiry()))


@dataclass(frozen=True)
class TierState:
    """One tier of a limit as the response reports it (RateLimit / RateLimit-Policy headers)."""

    amount: int  # the quota of the window
    window_seconds: int
    remaining: int
    reset_seconds: int  # until the window ends


@dataclass(frozen=True)
class Verdict:
    """What applying a limit decided: may the request go on, each tier's state, and when to retry."""

    allowed: bool
    tiers: tuple[TierState, ...]
    retry_after: int  # seconds; 0 when allowed


@lru_cache(maxsize=4096)
def identity(*parts: object) -> str:
    """The stored form of an identity (an email, a client address, a user id): a hash, never the value."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:32]


@dataclass
class _Window:
    """One key's window as this process knows it."""

    shared: int  # the count in PostgreSQL (every process's written hits) as last read here
    ends: float  # end of the window, epoch seconds (database clock)
    expiry: int  # the window's length, for the rows written behind
    pending: int = 0  # hits admitted here, not written yet
    writing: int = 0  # hits admitted here, in a write under way


class WriteBehind:
    """Counts of hot limits kept in the process and written to PostgreSQL behind the requests (module doc)."""

    def __init__(
        self,
        storage: PostgresStorage,
        share: float = LOCAL_SHARE,
        interval: float = WRITE_BEHIND_SECONDS,
        max_keys: int = 100_000,
    ) -> None:
        self.storage = storage
        self.share = share
        self.interval = interval
        # Beyond `max_keys` known keys, new ones are counted in PostgreSQL at once (memory stays bounded).
        self.max_keys = max_keys
        self.windows: dict[str, _Window] = {}

    def lease(self, item: RateLimitItem) -> int:
        return max(1, int(item.amount * self.share))

    async def hit(self, item: RateLimitItem, key: str, cost: int = 1) -> tuple[int, float]:
        """Count a hit of `key` against `item`: the count as this process sees it (over `item.amount`: refused,
        and not counted) and the end of the window."""
        window = self.windows.get(key)
        if window is not None and time.time() >= window.ends:
            del self.windows[key]  # the window is over: what this process did not write of it is void
            window = None
        if window is not None:
            seen = window.shared + window.pending + window.writing
            if seen + cost > item.amount:
                return seen + cost, window.ends
            if window.pending + window.writing + cost <= self.lease(item):
                window.pending += cost
                return seen + cost, window.ends
        elif len(self.windows) >= self.max_keys:
            count, ends = (await self.storage.add_many([(key, item.get_expiry(), cost)]))[key]
            return count, ends
        # Unknown here, or this process's lease is used up: write this hit and what is pending now.
        carry = window.pending if window is not None else 0
        if window is not None:
            window.pending, window.writing = 0, window.writing + carry
        try:
            count, ends = (await self.storage.add_many([(key, item.get_expiry(), carry + cost)]))[key]
        except BaseException:
            if window is not None:
                window.writing -= carry
                window.pending += carry
            raise
        current = self._absorb(key, window, carry, count, ends, item.get_expiry())
        return count + current.pending + current.writing, ends

    def _absorb(
        self, key: str, window: _Window | None, written: int, count: int, ends: float, expiry: int
    ) -> _Window:
        """What a write of `written` of `window`'s hits answered: the shared count, maybe of a new window."""
        if window is not None:
            window.writing -= written
        current = self.windows.get(key)
        if current is None or ends > current.ends + 0.5:  # not known here, or PostgreSQL started a new window
            current = self.windows[key] = _Window(shared=count, ends=ends, expiry=expiry)
        else:
            current.shared = max(current.shared, count)  # counts only grow within a window
        return current

    async def flush(self) -> int:
        """Write every key's pending hits in one statement; returns how many hits were written."""
        now = time.time()
        batch: dict[str, tuple[_Window, int]] = {}
        for key, window in list(self.windows.items()):
            if now >= window.ends:
                if not window.writing:
                    del self.windows[key]
            elif window.pending:
                batch[key] = (window, window.pending)
                window.writing += window.pending
                window.pending = 0
        if not batch:
            return 0
        try:
            written = await self.storage.add_many([(k, w.expiry, n) for k, (w, n) in batch.items()])
        except BaseException:
            for window, n in batch.values():
                window.writing -= n
                window.pending += n
            raise
        for key, (window, n) in batch.items():
            count, ends = written[key]
            self._absorb(key, window, n, count, ends, window.expiry)
        return sum(n for _, n in batch.values())

    async def run(self) -> None:
        """Write behind every `interval` until cancelled (then once more). While PostgreSQL is out of reach the
        counts are kept (and told once, not every interval); known keys are still decided here meanwhile."""
        failing = False
        try:
            while True:
                await asyncio.sleep(self.interval)
                try:
                    await self.flush()
                except (DBAPIError, psycopg.Error, OSError):
                    if not failing:
                        log.warning(
                            "request counts not written; retrying every %ss", self.interval, exc_info=True
                        )
                    failing = True
                else:
                    if failing:
                        log.info("request counts written again")
                    failing = False
        finally:
            try:
                await asyncio.shield(self.flush())
            except Exception:
                log.warning("request counts of the last %ss not written", self.interval, exc_info=True)


class Limiter:
    """Limits of named policies over `PostgresStorage`, with the library's fixed-window strategy; hot limits
    through `write_behind` when there is one."""

    def __init__(self, storage: PostgresStorage, write_behind: WriteBehind | None = None) -> None:
        self.storage = storage
        self.strategy = FixedWindowRateLimiter(storage)
        self.write_behind = write_behind

    async def hit(self, policy: str, limit: str, *who: object, cost: int = 1, hot: bool = False) -> Verdict:
        """Count one request of `who` against every tier of `limit`; refused when any tier is exceeded.
        `hot`: decided in the process and written behind (module doc)."""
        key = identity(*who)
        if hot and self.write_behind is not None:
            return await self._hit_hot(self.write_behind, policy, limit, key, cost)
        # Every tier in one statement; a tier listed twice shares its counter (counted twice, as tier by tier).
        hits: dict[str, tuple[int, int]] = {}  # counter -> (window seconds, amount)
        for item in tiers(limit):
            name = item.key_for(policy, key)
            hits[name] = (item.get_expiry(), hits.get(name, (0, 0))[1] + cost)
        seen = await self.storage.add_many([(name, window, n) for name, (window, n) in hits.items()])
        allowed = all(seen[item.key_for(policy, key)][0] <= item.amount for item in tiers(limit))
        taken_back = 0
        if not allowed:
            # A refused request uses up no quota (found from outside: each 429 of the minute's tier took one
            # from the day's, so a client retrying too early spent its day): its hit is taken back from every
            # tier, and the answer says what is left without it.
            await self.storage.give_back([(name, n) for name, (_, n) in hits.items()])
            taken_back = cost
        now = time.time()
        states = []
        for item in tiers(limit):
            count, ends = seen[item.key_for(policy, key)]
            states.append(_state(item, item.amount - count + taken_back, ends, now))
        return _verdict(allowed, states)

    async def _hit_hot(
        self, write_behind: WriteBehind, policy: str, limit: str, key: str, cost: int
    ) -> Verdict:
        now = time.time()
        allowed, states = True, []
        for item in tiers(limit):
            count, ends = await write_behind.hit(item, item.key_for(policy, key), cost)
            allowed = allowed and count <= item.amount
            states.append(_state(item, item.amount - count, ends, now))
        return _verdict(allowed, states)

    async def test(self, policy: str, limit: str, *who: object) -> Verdict:
        """Whether one more request of `who` would be allowed, counting nothing (e.g. an account's lockout)."""
        key = identity(*who)
        now = time.time()
        states = []
        allowed = True
        for item in tiers(limit):
            # The strategy's own `test` is `remaining >= 1` of these stats: one query fewer per tier.
            reset, remaining = await self.strategy.get_window_stats(item, policy, key)
            states.append(_state(item, remaining, reset, now))
            allowed = allowed and remaining >= 1
        return _verdict(allowed, states)

    async def clear(self, policy: str, limit: str, *who: object) -> None:
        """Forget `who`'s counts of every tier (e.g. an account's failed logins after a success)."""
        key = identity(*who)
        for item in tiers(limit):
            await self.strategy.clear(item, policy, key)


def _state(item: RateLimitItem, remaining: int, ends: float, now: float) -> TierState:
    return TierState(
        amount=item.amount,
        window_seconds=item.get_expiry(),
        remaining=max(0, remaining),
        # The storage keeps an expiry to the whole second after the window opened: never more than the window.
        reset_seconds=max(0, min(item.get_expiry(), math.ceil(ends - now))),
    )


def _verdict(allowed: bool, states: list[TierState]) -> Verdict:
    # Retry when every exhausted tier has started a new window.
    waits = [s.reset_seconds for s in states if s.remaining <= 0]
    retry_after = 0 if allowed else max(1, max(waits, default=1))
    return Verdict(allowed=allowed, tiers=tuple(states), retry_after=retry_after)
