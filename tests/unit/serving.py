"""An aiohttp app served on 127.0.0.1 for the length of a `with` block (plain or TLS)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web
from aiohttp.test_utils import TestServer


@asynccontextmanager
async def serving(
    app: web.Application, context: ssl.SSLContext | None = None
) -> AsyncIterator[TestServer]:
    server = TestServer(app)
    await server.start_server(ssl=context)
    try:
        yield server
    finally:
        await server.close()
