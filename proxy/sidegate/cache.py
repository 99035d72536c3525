"""The response-cache seam: what the pipeline asks of a cache, and the no-op cache.

The pipeline calls `key()` once per request (after admission). `None` means "not cacheable";
otherwise the `CacheKey` says whether to look up (`Cache-Control: no-cache` skips it) and
whether to store (`no-store` skips it). A hit is replayed without an upstream call — as SSE when
the client streams; a miss that completes successfully is stored as a `CachedAnswer`, which is
always the complete non-streamed JSON answer (streamed answers are assembled first).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from sidegate.exchange import Exchange
from sidegate.inspection import Endpoint, RequestFacts
from sidegate.routing import Candidate


@dataclass(frozen=True, slots=True)
class CacheKey:
    value: str
    lookup: bool = True
    store: bool = True


@dataclass(frozen=True, slots=True)
class CachedAnswer:
    kind: Endpoint
    body: bytes  # the complete non-streamed JSON answer
    input_tokens: int
    output_tokens: int


class ResponseCache(Protocol):
    # Whether `key()` reads `RequestFacts.body_hash` (the pipeline has it worked out only then).
    hashes_bodies: bool

    def key(
        self,
        exchange: Exchange,
        facts: RequestFacts,
        candidate: Candidate,
        cache_control: str | None,
    ) -> CacheKey | None: ...

    async def get(self, key: str) -> CachedAnswer | None: ...

    async def put(self, key: str, answer: CachedAnswer) -> None: ...

    async def close(self) -> None: ...


class NoCache:
    """Caching off: nothing is cacheable."""

    hashes_bodies = False

    def key(
        self,
        exchange: Exchange,
        facts: RequestFacts,
        candidate: Candidate,
        cache_control: str | None,
    ) -> CacheKey | None:
        return None

    async def get(self, key: str) -> CachedAnswer | None:
        return None

    async def put(self, key: str, answer: CachedAnswer) -> None:
        return None

    async def close(self) -> None:
        return None
