"""Every `web.AppKey` of the application, in one place."""

from __future__ import annotations

from aiohttp import web

from sidegate.auth import Authenticator
from sidegate.lifecycle import Lifecycle
from sidegate.observability.metrics import Metrics
from sidegate.pipeline import Pipeline
from sidegate.routing import Router
from sidegate.settings import Settings
from sidegate.upstream.pool import UpstreamPools

SETTINGS_KEY = web.AppKey("settings", Settings)
METRICS_KEY = web.AppKey("metrics", Metrics)
AUTH_KEY = web.AppKey("authenticator", Authenticator)
ROUTER_KEY = web.AppKey("router", Router)
POOLS_KEY = web.AppKey("upstream_pools", UpstreamPools)
PIPELINE_KEY = web.AppKey("pipeline", Pipeline)
LIFECYCLE_KEY = web.AppKey("lifecycle", Lifecycle)
