"""A small in-process cache for hot listing reads: LRU, TTL, and invalidation that a racing read cannot undo.

Invalidations come from the `listing_changed` NOTIFY feed (every process's commits) and from local writes.
The classic race (read old row, a change commits and invalidates, then the old row is stored) is closed with
an invalidation sequence: `put` is refused when the key was invalidated after the read began (`token()`).
While the feed is down the cache is disabled, since changes made elsewhere would go unnoticed; it is
cleared when the feed comes back, so nothing read before the gap survives it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Generic, TypeVar

K = TypeVar("K")
V = TypeVar("V")


class HotCache(Generic[K, V]):
    def __init__(self, max_entries: int, ttl_seconds: float, remember_invalidations: int = 10_000) -> None:
        self.max_entries = max_entries
        self.ttl = ttl_seconds
        self.enabled = False
        self.hits = 0
        self.misses = 0
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._seq = 0
        self._invalidated: OrderedDict[K, int] = OrderedDict()  # key -> seq of its last invalidation
        self._remember = remember_invalidations
        self._floor = 0  # every invalidation with seq <= floor has been forgotten

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: K) -> V | None:
        if not self.enabled:
            return None
        found = self._entries.get(key)
        if found is None or found[0] < time.monotonic():
            if found is not None:
                del self._entries[key]
            self.misses += 1
            return None
        self._entries.move_to_end(key)
        self.hits += 1
        return found[1]

    def token(self) -> int:
        """Take before reading the source; pass to `put`."""
        return self._seq

    def put(self, key: K, value: V, token: int) -> bool:
        if not self.enabled or self._invalidated.get(key, self._floor) > token:
            return False  # invalidated since the read began (or we cannot tell): do not store stale data
        self._entries[key] = (time.monotonic() + self.ttl, value)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
        return True

    def invalidate(self, keys: list[K]) -> None:
        self._seq += 1
        for key in keys:
            self._entries.pop(key, None)
            self._invalidated[key] = self._seq
            self._invalidated.move_to_end(key)
        while len(self._invalidated) > self._remember:
            _, forgotten = self._invalidated.popitem(last=False)
            self._floor = max(self._floor, forgotten)

    def clear(self) -> None:
        self._seq += 1
        self._entries.clear()
        self._invalidated.clear()
        self._floor = self._seq

    def set_enabled(self, enabled: bool) -> None:
        """Feed up: start from empty. Feed down: stop serving and storing."""
        self.clear()
        self.enabled = enabled

    @property
    def hit_ratio(self) -> float:
        total = self.hits + self.misses
        return self.hits / total if total else 0.0
