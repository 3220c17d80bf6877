"""Request limits with the `limits` library, counted in PostgreSQL so that every API replica shares them.

`PostgresStorage` is the storage adapter `limits` needs (its async `Storage` interface) over one UNLOGGED table,
`rate_limit_counters`: a counter per key with the end of its window. `incr` is one atomic statement
(`INSERT ... ON CONFLICT DO UPDATE ... RETURNING`): a counter whose window has ended starts again at the amount,
otherwise it grows; two replicas hitting one key at once serialise on its row. Times are the database's clock, so
replicas with drifting clocks still agree on the windows.

Strategy: fixed window (`FixedWindowRateLimiter`). A window starts at a key's first hit and lasts the limit's
period; it costs one row and one upsert per hit and tier. A moving window would store one entry per hit and count
them on every check (N times the writes and rows for an N/period limit) for a precision these abuse limits do not
need: a client can at worst get twice a limit across one window boundary, and the longer tiers ("5/minute;
10/hour;30/day") bound the long run. Several tiers per limit are how a lockout grows (bazaar.settings).

`Limiter` applies a limit (one or more tiers) to an identity and says what the response should tell the client:
whether it may go on, how much is left of each tier, and when to retry. Identities are hashed before they are
stored, so the table holds no email or client address.
"""

from __future__ import annotations

import contextvars
import hashlib
import math
import time
from dataclasses import dataclass
from functools import lru_cache

import psycopg
from limits import RateLimitItem, parse_many
from limits.aio.storage import Storage
from limits.aio.strategies import FixedWindowRateLimiter
from sqlalchemy import case, delete, func, select, text
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import AsyncEngine

from bazaar.models import RateLimitCounter

# The state of the counters this task incremented last: `incr` returns only the count, and the limiter wants
# each window's end too (for Retry-After and the RateLimit header) without another query.
_LAST_INCR: contextvars.ContextVar[dict[str, tuple[int, float]] | None] = contextvars.ContextVar(
    "rate_limit_last_incr", default=None
)

_COUNTER = RateLimitCounter


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
        stored = _COUNTER
        statement = insert(_COUNTER).values(
            key=key, count=amount, expires_at=func.now() + text(f"interval '{int(expiry)} seconds'")
        )
        expired = stored.expires_at <= func.now()
        statement = statement.on_conflict_do_update(
            index_elements=[stored.key],
            set_={
                "count": case(
                    (expired, statement.excluded.count), else_=stored.count + statement.excluded.count
                ),
                "expires_at": case((expired, statement.excluded.expires_at), else_=stored.expires_at),
            },
        )
        async with self.engine.begin() as conn:
            count, ends_at = (
                await conn.execute(
                    statement.returning(stored.count, func.extract("epoch", stored.expires_at))
                )
            ).one()
        seen = _LAST_INCR.get()
        if seen is not None:
            seen[key] = (int(count), float(ends_at))
        return int(count)

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


def identity(*parts: object) -> str:
    """The stored form of an identity (an email, a client address, a user id): a hash, never the value."""
    return hashlib.sha256("\x1f".join(str(p) for p in parts).encode()).hexdigest()[:32]


class Limiter:
    """Limits of named policies over `PostgresStorage`, with the library's fixed-window strategy."""

    def __init__(self, storage: PostgresStorage) -> None:
        self.storage = storage
        self.strategy = FixedWindowRateLimiter(storage)

    async def hit(self, policy: str, limit: str, *who: object, cost: int = 1) -> Verdict:
        """Count one request of `who` against every tier of `limit`; refused when any tier is exceeded."""
        key = identity(*who)
        token = _LAST_INCR.set({})
        try:
            allowed = True
            for item in tiers(limit):
                allowed = await self.strategy.hit(item, policy, key, cost=cost) and allowed
            seen = _LAST_INCR.get() or {}
        finally:
            _LAST_INCR.reset(token)
        now = time.time()
        states = []
        for item in tiers(limit):
            count, ends = seen.get(item.key_for(policy, key), (cost, now + item.get_expiry()))
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
        reset_seconds=max(0, math.ceil(ends - now)),
    )


def _verdict(allowed: bool, states: list[TierState]) -> Verdict:
    # Retry when every exhausted tier has started a new window.
    waits = [s.reset_seconds for s in states if s.remaining <= 0]
    retry_after = 0 if allowed else max(1, max(waits, default=1))
    return Verdict(allowed=allowed, tiers=tuple(states), retry_after=retry_after)
