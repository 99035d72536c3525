"""The in-process store: LRU bounded by entry count and by bytes, entries expire after a TTL.

Per process: with `server.workers > 1` or several replicas each keeps its own entries (use the
Redis backend to share). Expiry is checked on read, and eviction happens on write, so neither
needs a background task.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import Final

from sidegate.cache import CachedAnswer

# Rough per-entry bookkeeping (key, record, ordering) on top of the answer's bytes.
ENTRY_OVERHEAD_BYTES: Final = 200


@dataclass(frozen=True, slots=True)
class _Entry:
    answer: CachedAnswer
    expires_at: float
    size: int


class MemoryStore:
    def __init__(
        self,
        *,
        ttl_seconds: float,
        max_entries: int,
        max_bytes: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl_seconds
        self._max_entries = max_entries
        self._max_bytes = max_bytes
        self._clock = clock
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._bytes = 0

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def bytes_used(self) -> int:
        return self._bytes

    async def get(self, key: str) -> CachedAnswer | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.expires_at <= self._clock():
            self._remove(key)
            return None
        self._entries.move_to_end(key)
        return entry.answer

    async def put(self, key: str, answer: CachedAnswer) -> None:
        size = len(key) + len(answer.body) + ENTRY_OVERHEAD_BYTES
        if size > self._max_bytes:
            return  # larger than the whole cache: storing it would only evict everything else
        if key in self._entries:
            self._remove(key)
        self._entries[key] = _Entry(answer, self._clock() + self._ttl, size)
        self._bytes += size
        while len(self._entries) > self._max_entries or self._bytes > self._max_bytes:
            oldest = next(iter(self._entries))
            self._remove(oldest)

    async def close(self) -> None:
        self._entries.clear()
        self._bytes = 0

    def _remove(self, key: str) -> None:
        entry = self._entries.pop(key)
        self._bytes -= entry.size
