"""`GET /v1/models`: the models this gateway serves (its configured names, not upstreams')."""

from __future__ import annotations

import orjson
from aiohttp import web

from sidegate.errors import ModelNotFoundError
from sidegate.keys import ROUTER_KEY

_CREATED = 1_700_000_000  # configured models have no creation time; a fixed one keeps it stable


def _entry(name: str) -> dict[str, object]:
    return {"id": name, "object": "model", "created": _CREATED, "owned_by": "sidegate"}


async def list_models(request: web.Request) -> web.Response:
    names = request.app[ROUTER_KEY].names()
    body = {"object": "list", "data": [_entry(name) for name in names]}
    return web.Response(body=orjson.dumps(body), content_type="application/json")


async def get_model(request: web.Request) -> web.Response:
    name = request.match_info["model"]
    if name not in request.app[ROUTER_KEY].names():
        raise ModelNotFoundError(f"The model `{name}` does not exist.", param="model")
    return web.Response(body=orjson.dumps(_entry(name)), content_type="application/json")
