from __future__ import annotations

from sidegate.cache import CachedAnswer
from sidegate.caching import MemoryStore
from sidegate.caching.memory import ENTRY_OVERHEAD_BYTES


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _answer(size: int = 10) -> CachedAnswer:
    return CachedAnswer("chat", b"x" * size, 1, 2)


async def test_entries_expire_after_the_ttl() -> None:
    clock = Clock()
    store = MemoryStore(ttl_seconds=5, max_entries=10, max_bytes=1 << 20, clock=clock)
    await store.put("k", _answer())
    clock.now += 4.9
    assert await store.get("k") == _answer()
    clock.now += 0.2
    assert await store.get("k") is None
    assert len(store) == 0 and store.bytes_used == 0


async def test_the_least_recently_used_entry_goes_first_at_max_entries() -> None:
    store = MemoryStore(ttl_seconds=60, max_entries=3, max_bytes=1 << 20)
    for key in "abc":
        await store.put(key, _answer())
    assert await store.get("a") is not None  # a is now the most recently used
    await store.put("d", _answer())
    assert len(store) == 3
    assert await store.get("b") is None
    assert all([await store.get(k) is not None for k in "acd"])


async def test_bytes_bound_evicts_and_an_oversized_answer_is_skipped() -> None:
    entry = 1 + 100 + ENTRY_OVERHEAD_BYTES
    store = MemoryStore(ttl_seconds=60, max_entries=100, max_bytes=entry * 2)
    for key in "abc":
        await store.put(key, _answer(100))
    assert len(store) == 2 and store.bytes_used == entry * 2
    assert await store.get("a") is None
    await store.put("huge", _answer(entry * 3))
    assert await store.get("huge") is None
    assert len(store) == 2  # nothing was evicted for it


async def test_replacing_an_entry_keeps_the_byte_count_right() -> None:
    store = MemoryStore(ttl_seconds=60, max_entries=10, max_bytes=1 << 20)
    await store.put("k", _answer(100))
    await store.put("k", _answer(10))
    assert len(store) == 1
    assert store.bytes_used == 1 + 10 + ENTRY_OVERHEAD_BYTES
    await store.close()
    assert len(store) == 0
