"""`build_app(settings)`: the application, its middlewares, routes and resources.

Building the app has no side effects; resources (upstream connections, the embedded mock
upstream) are created by cleanup contexts when the app starts and closed when it stops.
"""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

from sidegate.auth import Authenticator
from sidegate.caching import build_cache
from sidegate.inspection import Endpoint
from sidegate.keys import (
    AUTH_KEY,
    LIFECYCLE_KEY,
    METRICS_KEY,
    PIPELINE_KEY,
    POOLS_KEY,
    ROUTER_KEY,
    SETTINGS_KEY,
)
from sidegate.lifecycle import Lifecycle, restore_collector, settle_collector
from sidegate.limits import LIMITS_KEY, build_admission
from sidegate.middleware.auth import auth_middleware
from sidegate.middleware.errors import error_middleware
from sidegate.middleware.request_id import REQUEST_IDS_KEY, RequestIds, request_id_middleware
from sidegate.observability.events import events_middleware
from sidegate.observability.metrics import build_metrics
from sidegate.observability.telemetry import telemetry
from sidegate.pipeline import Pipeline, Seams
from sidegate.routes import admin, chat, completions, embeddings, health, models
from sidegate.routing import Router
from sidegate.settings import Settings
from sidegate.tokens import Tokenizer, encoding_for_model
from sidegate.upstream.guard import guard_upstreams
from sidegate.upstream.pool import UpstreamPools

# The OpenAI endpoints: `POST` only, served by the lean server when it runs (server.http).
HOT_KINDS: Final[dict[str, Endpoint]] = {
    "/v1/chat/completions": "chat",
    "/v1/completions": "completions",
    "/v1/embeddings": "embeddings",
}
_ROUTE_OF_KIND: Final[dict[Endpoint, Handler]] = {
    "chat": chat.chat_completions,
    "completions": completions.completions,
    "embeddings": embeddings.embeddings,
}
HOT_ROUTES: Final = {path: _ROUTE_OF_KIND[kind] for path, kind in HOT_KINDS.items()}


def build_app(settings: Settings) -> web.Application:
    app = web.Application(
        middlewares=[error_middleware, request_id_middleware, events_middleware, auth_middleware],
        client_max_size=settings.server.max_body_bytes,
    )
    app[SETTINGS_KEY] = settings
    app[METRICS_KEY] = build_metrics(tenant_label=settings.telemetry.tenant_label)
    app[AUTH_KEY] = Authenticator(settings)
    app[ROUTER_KEY] = Router(settings)
    app[LIFECYCLE_KEY] = Lifecycle()
    app[REQUEST_IDS_KEY] = RequestIds()
    app.cleanup_ctx.append(upstreams_ctx)
    app.on_startup.append(settle_collector)  # runs after the cleanup contexts' start
    app.on_cleanup.append(restore_collector)
    app.on_shutdown.append(_start_draining)
    for path, handler in HOT_ROUTES.items():
        app.router.add_post(path, handler)
    app.router.add_get("/v1/models", models.list_models)
    app.router.add_get("/v1/models/{model}", models.get_model)
    app.router.add_get("/health", health.health)
    app.router.add_get("/ready", health.ready)
    app.router.add_get("/metrics", health.metrics)
    admin.register(app, settings.admin.token)
    return app


@asynccontextmanager
async def _embedded_mock(settings: Settings) -> AsyncIterator[tuple[str, ...]]:
    """Serve the mock upstream in this process when an upstream of provider `mock` has no
    endpoints (the embedded default), on a loopback port of its own."""
    if not any(u.provider == "mock" and not u.endpoints for u in settings.upstreams.values()):
        yield ()
        return
    from sidegate.mock_upstream import build_mock_app

    runner = web.AppRunner(build_mock_app(), access_log=None)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    await web.SockSite(runner, sock).start()
    try:
        yield (f"http://127.0.0.1:{port}/v1",)
    finally:
        await runner.cleanup()


@asynccontextmanager
async def _upstreams(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS_KEY]
    metrics = app[METRICS_KEY]

    def on_health(upstream: str, endpoint: str, up: bool) -> None:
        metrics.upstream_up.labels(upstream, endpoint).set(1 if up else 0)

    _warm_tokenizers(settings, app[ROUTER_KEY])
    async with _embedded_mock(settings) as embedded, telemetry(settings, metrics) as observe:
        pools = UpstreamPools(settings, on_health, embedded)
        guard_upstreams(pools, settings)
        app[POOLS_KEY] = pools
        app[LIMITS_KEY] = build_admission(settings, metrics)
        seams = Seams(
            admission=app[LIMITS_KEY],
            cache=build_cache(settings, metrics),
            tracing=observe.tracing,
            recorder=observe.recorder,
        )
        app[PIPELINE_KEY] = Pipeline(app[ROUTER_KEY], pools, metrics, seams)
        try:
            yield
        finally:
            await seams.admission.close()
            await seams.cache.close()
            seams.tracing.shutdown()
            await pools.close()


def _warm_tokenizers(settings: Settings, router: Router) -> None:
    """Compile the split pattern of every encoding a configured model counts with before
    serving, so the first request with text outside ASCII does not pay for it (~15 ms)."""
    encodings = {encoding_for_model(name) for name in settings.models}
    encodings.update(c.encoding for name in settings.models for c in router.candidates(name))
    for encoding in sorted(encodings):
        Tokenizer(encoding).count("warm-up, déjà vu")


async def upstreams_ctx(app: web.Application) -> AsyncIterator[None]:
    async with _upstreams(app):
        yield


async def _start_draining(app: web.Application) -> None:
    app[LIFECYCLE_KEY].draining = True
