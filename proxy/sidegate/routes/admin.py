"""Operator endpoints: block, unblock and inspect a tenant (the runbook's "block the tenant").

    POST /admin/tenants/{tenant}/block     new requests of the tenant answer 403 at once
    POST /admin/tenants/{tenant}/unblock
    GET  /admin/tenants/{tenant}           {"tenant", "blocked", "spent_usd", "tokens"} today (UTC)

Authenticated with `Authorization: Bearer <admin.token>` (compared in constant time); the
routes exist only when `admin.token` is set. With `state.backend: redis` the block list lives in
Redis, so a block reaches every replica with one call to any of them.
"""

from __future__ import annotations

import hashlib
import hmac

from aiohttp import web

from sidegate.errors import AuthenticationError
from sidegate.keys import SETTINGS_KEY
from sidegate.limits import LIMITS_KEY


def register(app: web.Application, token: str | None) -> None:
    if not token:
        return
    app.router.add_post("/admin/tenants/{tenant}/block", block)
    app.router.add_post("/admin/tenants/{tenant}/unblock", unblock)
    app.router.add_get("/admin/tenants/{tenant}", show)


def _check(request: web.Request) -> None:
    token = request.app[SETTINGS_KEY].admin.token or ""
    scheme, _, presented = request.headers.get("Authorization", "").partition(" ")
    expected = hashlib.sha256(token.encode()).digest()
    given = hashlib.sha256(presented.strip().encode()).digest()
    if scheme.lower() != "bearer" or not hmac.compare_digest(expected, given):
        raise AuthenticationError("Incorrect admin token.", code="invalid_admin_token")


async def _state(request: web.Request) -> web.Response:
    state = await request.app[LIMITS_KEY].state(request.match_info["tenant"])
    return web.json_response(
        {
            "tenant": state.tenant,
            "blocked": state.blocked,
            "spent_usd": state.spent_usd,
            "tokens": state.tokens,
        }
    )


async def block(request: web.Request) -> web.Response:
    _check(request)
    await request.app[LIMITS_KEY].set_blocked(request.match_info["tenant"], True)
    return await _state(request)


async def unblock(request: web.Request) -> web.Response:
    _check(request)
    await request.app[LIMITS_KEY].set_blocked(request.match_info["tenant"], False)
    return await _state(request)


async def show(request: web.Request) -> web.Response:
    _check(request)
    return await _state(request)
