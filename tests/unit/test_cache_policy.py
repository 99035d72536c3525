from __future__ import annotations

import time

import orjson
import pytest

from sidegate.auth import Tenant
from sidegate.cache import CachedAnswer
from sidegate.caching import ExactCache, MemoryStore, cache_directives, cacheable, storable
from sidegate.exchange import Exchange
from sidegate.inspection import Endpoint, RequestFacts, inspect_request
from sidegate.routing import Candidate
from sidegate.settings import PriceSettings

PRIMARY = Candidate("gpt-4o-mini", "openai", "gpt-4o-mini", "o200k_base", PriceSettings())


def _exchange(tenant: str = "acme", kind: Endpoint = "chat") -> Exchange:
    return Exchange("req", Tenant(tenant, None, None), kind, time.perf_counter())


def _facts(kind: Endpoint = "chat", **fields: object) -> RequestFacts:
    if kind == "embeddings":
        body: dict[str, object] = {"model": "text-embedding-3-small", "input": "hello"}
    else:
        body = {"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}
    body.update(fields)
    return inspect_request(orjson.dumps(body), kind)


def _cache(**options: object) -> ExactCache:
    store = MemoryStore(ttl_seconds=60, max_entries=10, max_bytes=1 << 20)
    return ExactCache(store, **options)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kind", "fields", "expected"),
    [
        ("embeddings", {}, True),
        ("chat", {"temperature": 0}, True),
        ("chat", {"temperature": 0.0, "n": 3}, True),
        ("chat", {}, False),  # the API's default temperature samples
        ("chat", {"temperature": 0.7}, False),
        ("completions", {"temperature": 0}, True),
        ("completions", {"temperature": 1}, False),
    ],
)
def test_what_is_cacheable_by_default(
    kind: Endpoint, fields: dict[str, object], expected: bool
) -> None:
    if kind == "completions":
        facts = inspect_request(orjson.dumps({"model": "m", "prompt": "hi", **fields}), kind)
    else:
        facts = _facts(kind, **fields)
    assert cacheable(kind, facts, nondeterministic=False) is expected
    assert cacheable(kind, facts, nondeterministic=True) is True


@pytest.mark.parametrize(
    ("header", "lookup", "store"),
    [
        (None, True, True),
        ("", True, True),
        ("no-cache", False, True),
        ("No-Store", True, False),
        ("max-age=0, no-cache", False, True),
        ("no-cache,no-store", False, False),
        ("private", True, True),
    ],
)
def test_cache_control_directives(header: str | None, lookup: bool, store: bool) -> None:
    assert cache_directives(header) == (lookup, store)


def test_tenants_never_share_a_key_unless_a_namespace_is_shared() -> None:
    facts = _facts(temperature=0)
    private = _cache()
    a = private.key(_exchange("acme"), facts, PRIMARY, None)
    b = private.key(_exchange("globex"), facts, PRIMARY, None)
    assert a is not None and b is not None and a.value != b.value
    shared = _cache(shared_namespace="acme")  # named like a tenant, still not that tenant's
    sa = shared.key(_exchange("acme"), facts, PRIMARY, None)
    sb = shared.key(_exchange("globex"), facts, PRIMARY, None)
    assert sa is not None and sb is not None and sa.value == sb.value
    assert sa.value != a.value


def test_separators_in_names_cannot_make_two_keys_equal() -> None:
    facts = _facts(temperature=0)
    cache = _cache()
    one = cache.key(_exchange("a:b"), facts, PRIMARY, None)
    two = cache.key(
        _exchange("a"),
        facts,
        Candidate("b:gpt-4o-mini", "openai", "x", "o200k_base", PriceSettings()),
        None,
    )
    assert one is not None and two is not None and one.value != two.value


def test_the_key_ignores_stream_and_user_but_not_the_answer_changing_fields() -> None:
    cache = _cache()
    exchange = _exchange()

    def key(**fields: object) -> str:
        found = cache.key(exchange, _facts(temperature=0, **fields), PRIMARY, None)
        assert found is not None
        return found.value

    base = key()
    assert key(stream=True, stream_options={"include_usage": True}) == base
    assert key(user="someone", metadata={"k": "v"}) == base
    assert key(max_tokens=5) != base
    assert key(seed=1) != base
    assert key(n=2) != base
    assert key(messages=[{"role": "user", "content": "hi!"}]) != base
    other_backend = Candidate("gpt-4o-mini", "local", "llama", "o200k_base", PriceSettings())
    moved = cache.key(exchange, _facts(temperature=0), other_backend, None)
    assert moved is not None and moved.value != base


def test_opt_outs_and_uncacheable_requests() -> None:
    cache = _cache()
    facts = _facts(temperature=0)
    no_cache = cache.key(_exchange(), facts, PRIMARY, "no-cache")
    assert no_cache is not None and (no_cache.lookup, no_cache.store) == (False, True)
    no_store = cache.key(_exchange(), facts, PRIMARY, "no-store")
    assert no_store is not None and (no_store.lookup, no_store.store) == (True, False)
    assert cache.key(_exchange(), facts, PRIMARY, "no-cache, no-store") is None
    assert cache.key(_exchange(), _facts(temperature=0.5), PRIMARY, None) is None
    wide = _cache(nondeterministic=True)
    assert wide.key(_exchange(), _facts(temperature=0.5), PRIMARY, None) is not None


def _chat_body(finish: str | None = "stop", **extra: object) -> bytes:
    choice = {"index": 0, "message": {"role": "assistant", "content": "x"}, "finish_reason": finish}
    return orjson.dumps({"object": "chat.completion", "choices": [choice], **extra})


@pytest.mark.parametrize(
    ("kind", "body", "expected"),
    [
        ("chat", _chat_body(), True),
        ("chat", _chat_body(finish=None), False),
        ("chat", _chat_body(error={"message": "x"}), False),
        ("chat", b'{"choices": []}', False),
        ("chat", b"{not json", False),
        ("chat", b"[]", False),
        ("embeddings", b'{"data": [{"embedding": [0.1]}]}', True),
        ("embeddings", b'{"data": []}', False),
    ],
)
def test_only_complete_answers_are_storable(kind: Endpoint, body: bytes, expected: bool) -> None:
    assert storable(kind, body) is expected


async def test_an_incomplete_answer_is_refused_at_put() -> None:
    cache = _cache()
    await cache.put("k", CachedAnswer("chat", _chat_body(finish=None), 1, 1))
    assert await cache.get("k") is None
    await cache.put("k", CachedAnswer("chat", _chat_body(), 1, 1))
    hit = await cache.get("k")
    assert hit is not None and hit.output_tokens == 1
