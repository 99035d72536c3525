"""Authenticates every `/v1/` request and attaches the `Tenant`."""

from __future__ import annotations

from aiohttp import web
from aiohttp.typedefs import Handler

from sidegate.context import TENANT_KEY
from sidegate.keys import AUTH_KEY


@web.middleware
async def auth_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    if request.path.startswith("/v1/"):
        authenticator = request.app[AUTH_KEY]
        request[TENANT_KEY] = await authenticator.authenticate_request(
            request.headers.get("Authorization"), request.headers.get("api-key")
        )
    return await handler(request)
