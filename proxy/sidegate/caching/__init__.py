"""The exact response cache: rules (`policy`), an in-process store and a Redis store.

`build_cache(settings, metrics)` gives the pipeline its `ResponseCache` from `settings.cache`.
"""

from __future__ import annotations

from sidegate.cache import NoCache, ResponseCache
from sidegate.caching.memory import MemoryStore
from sidegate.caching.policy import ExactCache, Store, cache_directives, cacheable, storable
from sidegate.observability.metrics import Metrics
from sidegate.settings import Settings

__all__ = [
    "ExactCache",
    "MemoryStore",
    "Store",
    "build_cache",
    "cache_directives",
    "cacheable",
    "storable",
]


def build_cache(settings: Settings, metrics: Metrics) -> ResponseCache:
    """The configured cache; building it does no I/O (Redis connects on first use)."""
    config = settings.cache
    if not config.enabled:
        return NoCache()
    store: Store
    if config.backend == "redis":
        # Imported here: redis-py (and the OpenTelemetry SDK it loads) only when used.
        from sidegate.caching.redis_store import RedisStore

        errors = metrics.cache_requests.labels("exact", "error")

        def on_error(operation: str) -> None:
            errors.inc()

        store = RedisStore(
            config.url or settings.state.url,
            ttl_seconds=config.ttl_seconds,
            max_entries=config.max_entries,
            compress_min_bytes=config.compress_min_bytes,
            on_error=on_error,
            timeout_seconds=config.timeout_seconds,
        )
    else:
        store = MemoryStore(
            ttl_seconds=config.ttl_seconds,
            max_entries=config.max_entries,
            max_bytes=config.max_bytes,
        )
    return ExactCache(
        store,
        nondeterministic=config.cache_nondeterministic,
        shared_namespace=config.shared_namespace,
    )
