"""The shared store: entries in Redis, so every replica answers from what any one of them stored.

Values are a small binary header (format version, flags, endpoint kind, token counts) followed by
the answer's JSON, zlib-compressed from `compress_min_bytes` on. Redis expires entries itself
(`SET ... PX ttl`). `max_entries` holds across replicas: a sorted-set index scores every entry by
its last use (Redis's own clock), a store evicts the least recently used beyond the bound, and a
hit refreshes its entry's score — each a single Lua call, so a lookup or a store is still one
round trip. (The index names many keys in one script, so this wants a plain Redis or a primary
with replicas, not Redis Cluster.)

Fail-open: the cache is an optimisation, so a Redis that is down, slow or answering garbage turns
lookups into misses and stores into no-ops; the request is served from the upstream. Every call
is bounded by a short timeout and never retried, and after a failure Redis is left alone for
`retry_after_seconds`; then one call probes it while the others still skip it, so an outage costs
at most one timeout per window, never one per request. An outage is logged once when it starts
and once when it ends; every failed call is reported to `on_error`.
"""

from __future__ import annotations

import asyncio
import logging
import struct
import time
import zlib
from collections.abc import Callable
from typing import Final

from redis.asyncio import Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from sidegate.cache import CachedAnswer
from sidegate.inspection import Endpoint

log = logging.getLogger("sidegate.cache")

_VERSION: Final = 1
_FLAG_ZLIB: Final = 1
_HEADER: Final = struct.Struct(">BBBII")  # version, flags, kind, input_tokens, output_tokens
_KIND_CODES: Final[dict[Endpoint, int]] = {"chat": 1, "completions": 2, "embeddings": 3}
_KINDS: Final[dict[int, Endpoint]] = {code: kind for kind, code in _KIND_CODES.items()}
_MAX_TOKENS: Final = 2**32 - 1

# KEYS: entry, index. ARGV: max entries. The entry's value, or nil; a hit refreshes its score.
_GET: Final = """
local value = redis.call('GET', KEYS[1])
if value then
  local t = redis.call('TIME')
  redis.call('ZADD', KEYS[2], 'XX', t[1] * 1000 + math.floor(t[2] / 1000), KEYS[1])
end
return value
"""
# KEYS: entry, index. ARGV: value, ttl ms, max entries. Returns how many entries were evicted.
_PUT: Final = """
local t = redis.call('TIME')
local now = t[1] * 1000 + math.floor(t[2] / 1000)
local ttl = tonumber(ARGV[2])
redis.call('SET', KEYS[1], ARGV[1], 'PX', ttl)
redis.call('ZADD', KEYS[2], now, KEYS[1])
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - ttl)
local excess = redis.call('ZCARD', KEYS[2]) - tonumber(ARGV[3])
if excess > 0 then
  local oldest = redis.call('ZPOPMIN', KEYS[2], excess)
  for i = 1, #oldest, 2 do redis.call('DEL', oldest[i]) end
end
redis.call('PEXPIRE', KEYS[2], ttl)
return math.max(excess, 0)
"""


def encode(answer: CachedAnswer, compress_min_bytes: int) -> bytes:
    body, flags = answer.body, 0
    if len(body) >= compress_min_bytes:
        # Level 1: most of the size win on JSON for a fraction of the CPU of the default level.
        packed = zlib.compress(body, 1)
        if len(packed) < len(body):
            body, flags = packed, _FLAG_ZLIB
    header = _HEADER.pack(
        _VERSION,
        flags,
        _KIND_CODES[answer.kind],
        min(answer.input_tokens, _MAX_TOKENS),
        min(answer.output_tokens, _MAX_TOKENS),
    )
    return header + body


def decode(value: bytes) -> CachedAnswer | None:
    """The stored answer, or None for a value this version cannot read (treated as a miss)."""
    if len(value) < _HEADER.size:
        return None
    version, flags, code, input_tokens, output_tokens = _HEADER.unpack_from(value)
    kind = _KINDS.get(code)
    if version != _VERSION or kind is None:
        return None
    body = value[_HEADER.size :]
    if flags & _FLAG_ZLIB:
        try:
            body = zlib.decompress(body)
        except zlib.error:
            return None
    return CachedAnswer(kind, body, input_tokens, output_tokens)


class RedisStore:
    def __init__(
        self,
        url: str,
        *,
        ttl_seconds: float,
        max_entries: int,
        compress_min_bytes: int,
        on_error: Callable[[str], None],
        index_key: str = "sidegate:cache:v1:index",
        timeout_seconds: float = 0.25,
        retry_after_seconds: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._client: Redis = Redis.from_url(
            url,
            socket_timeout=timeout_seconds,
            socket_connect_timeout=timeout_seconds,
            retry=Retry(NoBackoff(), 0),
            health_check_interval=0,
        )
        self._get = self._client.register_script(_GET)
        self._put = self._client.register_script(_PUT)
        self._index = index_key
        self._max_entries = max_entries
        self._ttl_ms = max(1, round(ttl_seconds * 1000))
        self._compress_min_bytes = compress_min_bytes
        self._on_error = on_error
        self._timeout = timeout_seconds
        self._retry_after = retry_after_seconds
        self._clock = clock
        self._down_since: float | None = None
        self._resume_at = 0.0
        self._probing = False

    async def get(self, key: str) -> CachedAnswer | None:
        if self._skip():
            return None
        try:
            async with asyncio.timeout(self._timeout):
                value = await self._get(keys=[key, self._index])
        except (RedisError, OSError, TimeoutError) as error:
            self._failed("get", error)
            return None
        finally:
            self._probing = False
        self._succeeded()
        return decode(value) if isinstance(value, bytes) else None

    async def put(self, key: str, answer: CachedAnswer) -> None:
        if self._skip():
            return
        value = encode(answer, self._compress_min_bytes)
        try:
            async with asyncio.timeout(self._timeout):
                await self._put(
                    keys=[key, self._index], args=[value, self._ttl_ms, self._max_entries]
                )
        except (RedisError, OSError, TimeoutError) as error:
            self._failed("put", error)
            return
        finally:
            self._probing = False
        self._succeeded()

    async def close(self) -> None:
        await self._client.aclose()

    def _skip(self) -> bool:
        """Whether to leave Redis alone for this call; the first call after a rest probes it."""
        if self._down_since is None:
            return False
        if self._probing or self._clock() < self._resume_at:
            return True
        self._probing = True
        return False

    def _failed(self, operation: str, error: BaseException) -> None:
        now = self._clock()
        self._on_error(operation)
        self._resume_at = now + self._retry_after
        if self._down_since is None:
            self._down_since = now
            log.warning(
                "response cache: Redis is unavailable (%s: %s: %.200s); serving without the cache",
                operation,
                type(error).__name__,
                str(error),
                extra={"event": "cache_backend_down"},
            )

    def _succeeded(self) -> None:
        if self._down_since is not None:
            log.warning(
                "response cache: Redis is back after %.1f s",
                self._clock() - self._down_since,
                extra={"event": "cache_backend_up"},
            )
            self._down_since = None
