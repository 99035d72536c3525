from __future__ import annotations

from aiohttp import web

from sidegate.keys import PIPELINE_KEY


async def completions(request: web.Request) -> web.StreamResponse:
    return await request.app[PIPELINE_KEY].handle(request, "completions")
