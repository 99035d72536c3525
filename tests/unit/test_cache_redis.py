"""The Redis store's value format and its fail-open behaviour (against a port nobody serves)."""

from __future__ import annotations

import asyncio
import logging
import socket

import orjson
import pytest

from sidegate.cache import CachedAnswer
from sidegate.caching.redis_store import RedisStore, decode, encode


def _answer(body: bytes) -> CachedAnswer:
    return CachedAnswer("completions", body, 12, 34)


def test_values_round_trip_and_large_ones_are_compressed() -> None:
    small = _answer(b'{"choices": []}')
    assert decode(encode(small, 1024)) == small
    large = _answer(orjson.dumps({"text": "the same words " * 500}))
    packed = encode(large, 1024)
    assert len(packed) < len(large.body) // 4
    assert decode(packed) == large
    assert len(encode(large, len(large.body) + 1)) > len(large.body)  # under the threshold


def test_unreadable_values_are_misses() -> None:
    packed = encode(_answer(b"{}" * 1000), 16)
    assert decode(b"") is None
    assert decode(b"\x09" + packed[1:]) is None  # another format version
    assert decode(packed[:12] + b"garbage") is None  # compressed flag, corrupt data


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def test_an_unreachable_redis_is_a_miss_logged_once_per_outage(
    caplog: pytest.LogCaptureFixture,
) -> None:
    failures: list[str] = []
    clock = Clock()
    store = RedisStore(
        f"redis://127.0.0.1:{_closed_port()}/0",
        ttl_seconds=60,
        max_entries=10,
        compress_min_bytes=1024,
        on_error=failures.append,
        retry_after_seconds=5,
        clock=clock,
    )
    try:
        with caplog.at_level(logging.WARNING, logger="sidegate.cache"):
            assert await store.get("k") is None
            await store.put("k", _answer(b"{}"))  # resting: not even tried
            assert await store.get("k") is None
            assert failures == ["get"]
            clock.now += 6
            await store.put("k", _answer(b"{}"))
            assert failures == ["get", "put"]
        unavailable = [r for r in caplog.records if "unavailable" in r.getMessage()]
        assert len(unavailable) == 1
    finally:
        await store.close()


async def test_after_a_rest_one_call_probes_a_silent_redis_while_the_others_skip() -> None:
    # A listening socket that never answers: connections open, replies never come.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        failures: list[str] = []
        clock = Clock()
        store = RedisStore(
            f"redis://127.0.0.1:{silent.getsockname()[1]}/0",
            ttl_seconds=60,
            max_entries=10,
            compress_min_bytes=1024,
            on_error=failures.append,
            timeout_seconds=0.1,
            retry_after_seconds=5,
            clock=clock,
        )
        try:
            assert await store.get("k") is None
            assert failures == ["get"]
            clock.now += 6
            results = await asyncio.gather(*(store.get("k") for _ in range(5)))
            assert results == [None] * 5
            assert failures == ["get", "get"]  # one probe, not five timeouts
        finally:
            await store.close()
