from __future__ import annotations

from sidegate.cache import NoCache
from sidegate.caching import ExactCache, build_cache
from sidegate.observability.metrics import build_metrics
from sidegate.settings import parse_settings

BASE = """
upstreams: {mock: {provider: mock}}
models: {m: {upstream: mock}}
"""


async def test_the_configured_cache_is_built_without_io() -> None:
    metrics = build_metrics()
    disabled = build_cache(parse_settings(BASE + "cache: {enabled: false}", {}), metrics)
    assert isinstance(disabled, NoCache)
    memory = build_cache(parse_settings(BASE, {}), metrics)
    assert isinstance(memory, ExactCache)
    await memory.close()
    # Nothing listens there: building must not connect, and closing must not fail either.
    redis = build_cache(
        parse_settings(BASE + 'cache: {backend: redis, url: "redis://127.0.0.1:1/0"}', {}),
        metrics,
    )
    assert isinstance(redis, ExactCache)
    assert await redis.get("anything") is None  # fail-open
    await redis.close()
