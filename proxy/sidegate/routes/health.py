"""Liveness, readiness (503 while draining) and Prometheus metrics (optionally behind a token)."""

from __future__ import annotations

import hmac

from aiohttp import web
from prometheus_client import CONTENT_TYPE_LATEST

from sidegate.errors import AuthenticationError, NotFoundError
from sidegate.keys import LIFECYCLE_KEY, METRICS_KEY, SETTINGS_KEY
from sidegate.observability.metrics import exposition


async def health(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    if request.app[LIFECYCLE_KEY].draining:
        return web.json_response({"status": "draining"}, status=503)
    return web.json_response({"status": "ready"})


async def metrics(request: web.Request) -> web.Response:
    telemetry = request.app[SETTINGS_KEY].telemetry
    if not telemetry.metrics:
        raise NotFoundError("Metrics are turned off (telemetry.metrics).", code="unknown_url")
    if telemetry.metrics_token is not None:
        scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
        expected = telemetry.metrics_token.encode()
        if scheme.lower() != "bearer" or not hmac.compare_digest(
            presented.strip().encode(), expected
        ):
            raise AuthenticationError(
                "/metrics needs 'Authorization: Bearer TOKEN' (telemetry.metrics_token).",
                code="invalid_metrics_token",
                headers={"WWW-Authenticate": "Bearer"},
            )
    body = exposition(request.app[METRICS_KEY])
    return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})
