"""What middlewares attach to each request, as typed `web.RequestKey`s."""

from __future__ import annotations

from aiohttp import web

from sidegate.auth import Tenant

REQUEST_ID_KEY = web.RequestKey("request_id", str)
TENANT_KEY = web.RequestKey("tenant", Tenant)
