"""A request id on every request and response: the client's `x-request-id` when sane."""

from __future__ import annotations

import re
import uuid
from contextvars import ContextVar
from typing import Final

from aiohttp import web
from aiohttp.typedefs import Handler

from sidegate.context import REQUEST_ID_KEY

REQUEST_ID_HEADER: Final = "x-request-id"
_SANE: Final = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")

current_request_id: ContextVar[str | None] = ContextVar("sidegate_request_id", default=None)


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    offered = request.headers.get(REQUEST_ID_HEADER)
    request_id = offered if offered and _SANE.match(offered) else f"req_{uuid.uuid4().hex}"
    request[REQUEST_ID_KEY] = request_id
    current_request_id.set(request_id)
    response = await handler(request)
    if not response.prepared:
        response.headers[REQUEST_ID_HEADER] = request_id
    return response
