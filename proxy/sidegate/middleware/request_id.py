"""A request id on every request and response: the client's `x-request-id` when sane.

Generated ids are a random per-process prefix plus a counter: unique across replicas and
restarts with overwhelming probability, and ~20x cheaper than `uuid4()` on the hot path.
"""

from __future__ import annotations

import itertools
import os
import re
from contextvars import ContextVar
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

from sidegate.context import REQUEST_ID_KEY

REQUEST_ID_HEADER: Final = "x-request-id"
_SANE: Final = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestIds:
    """`req_<24 hex>`: 12 random hex digits per process, then a 12-digit counter."""

    __slots__ = ("_counter", "_prefix")

    def __init__(self) -> None:
        self._prefix = "req_" + os.urandom(6).hex()
        self._counter = itertools.count(1)

    def next(self) -> str:
        return f"{self._prefix}{next(self._counter):012x}"


current_request_id: ContextVar[str | None] = ContextVar("sidegate_request_id", default=None)
REQUEST_IDS_KEY = web.AppKey("request_ids", RequestIds)


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    request_id = assign_request_id(request)
    response = await handler(request)
    if not response.prepared:
        response.headers[REQUEST_ID_HEADER] = request_id
    return response


def assign_request_id(request: web.Request) -> str:
    """The request's id (the client's when sane), kept on the request and in the context."""
    offered = request.headers.get(REQUEST_ID_HEADER)
    if offered and _SANE.match(offered):
        request_id = offered
    else:
        request_id = request.app[REQUEST_IDS_KEY].next()
    request[REQUEST_ID_KEY] = request_id
    current_request_id.set(request_id)
    return request_id
