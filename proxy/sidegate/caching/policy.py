"""The exact cache's rules: which requests it answers, under which key, and what it stores.

Cacheable: embeddings always; chat and legacy completions only with `temperature: 0` (any other
temperature, or none, samples — so a stored answer would freeze one sample), unless
`cache.cache_nondeterministic` widens the rule on purpose. `n > 1` follows the same rule: `n` is
part of the key and the stored answer holds all n choices, which a streamed hit replays one
choice after the other.

The key is `namespace + resolved model + endpoint + body hash`. The namespace is the tenant, so
one tenant never receives another's entry; `cache.shared_namespace` replaces it with one named
namespace for every tenant, an explicit choice. The resolved model is the configured model with
its upstream and upstream model, so re-pointing a model at another backend starts a fresh set of
entries. The body hash is the native canonical hash: every answer-changing field, and neither
`stream` nor `stream_options`, so streamed and whole requests share entries (replay converts).

`Cache-Control: no-cache` skips the lookup, `no-store` skips the store. Only a complete answer
is stored: a JSON object with no `error`, and every choice carrying its finish reason (an
embeddings answer: non-empty `data`).
"""

from __future__ import annotations

from typing import Final, Protocol
from urllib.parse import quote

import orjson

from sidegate.cache import CachedAnswer, CacheKey
from sidegate.exchange import Exchange
from sidegate.inspection import Endpoint, RequestFacts
from sidegate.routing import Candidate

KEY_PREFIX: Final = "sidegate:cache:v1"


class Store(Protocol):
    async def get(self, key: str) -> CachedAnswer | None: ...

    async def put(self, key: str, answer: CachedAnswer) -> None: ...

    async def close(self) -> None: ...


def cache_directives(value: str | None) -> tuple[bool, bool]:
    """(lookup, store) allowed by a request's `Cache-Control` header."""
    if not value:
        return True, True
    directives = {part.split("=", 1)[0].strip().lower() for part in value.split(",")}
    return "no-cache" not in directives, "no-store" not in directives


def cacheable(kind: Endpoint, facts: RequestFacts, *, nondeterministic: bool) -> bool:
    if kind == "embeddings" or nondeterministic:
        return True
    return facts.temperature == 0


def storable(kind: Endpoint, body: bytes) -> bool:
    """Whether `body` is a complete, successful answer of this endpoint."""
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    if not isinstance(payload, dict) or payload.get("error") is not None:
        return False
    if kind == "embeddings":
        data = payload.get("data")
        return isinstance(data, list) and bool(data)
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices:
        return False
    return all(isinstance(c, dict) and c.get("finish_reason") for c in choices)


class ExactCache:
    """The `ResponseCache` the pipeline talks to: key rules here, storage in a `Store`."""

    hashes_bodies = True

    def __init__(
        self, store: Store, *, nondeterministic: bool = False, shared_namespace: str | None = None
    ) -> None:
        self._store = store
        self._nondeterministic = nondeterministic
        # Prefixed so a shared namespace can never be named like a tenant's private one.
        self._shared = f"shared:{shared_namespace}" if shared_namespace else None

    def key(
        self,
        exchange: Exchange,
        facts: RequestFacts,
        candidate: Candidate,
        cache_control: str | None,
    ) -> CacheKey | None:
        if not cacheable(exchange.kind, facts, nondeterministic=self._nondeterministic):
            return None
        lookup, store = cache_directives(cache_control)
        if not lookup and not store:
            return None
        if facts.body_hash is None:
            raise ValueError("the request was inspected without hash_body")
        namespace = self._shared or f"tenant:{exchange.tenant.name}"
        parts = (
            namespace,
            candidate.model,
            candidate.upstream,
            candidate.upstream_model,
            exchange.kind,
            facts.body_hash,
        )
        # Quoting keeps the separator out of names, so two different tuples never join equal.
        value = ":".join((KEY_PREFIX, *(quote(part, safe="") for part in parts)))
        return CacheKey(value, lookup=lookup, store=store)

    async def get(self, key: str) -> CachedAnswer | None:
        return await self._store.get(key)

    async def put(self, key: str, answer: CachedAnswer) -> None:
        if storable(answer.kind, answer.body):
            await self._store.put(key, answer)

    async def close(self) -> None:
        await self._store.close()
