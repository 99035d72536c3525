"""The one place an error becomes a response: OpenAI-shaped JSON with the right status."""

from __future__ import annotations

import logging

import orjson
from aiohttp import web
from aiohttp.typedefs import Handler

from sidegate.context import REQUEST_ID_KEY
from sidegate.errors import (
    BodyTooLargeError,
    InternalError,
    InvalidRequestError,
    NotFoundError,
    ProxyError,
    UpstreamStatusError,
    status_of,
)
from sidegate.middleware.request_id import REQUEST_ID_HEADER

log = logging.getLogger("sidegate.access")


def render(error: ProxyError, request_id: str | None, status: int | None = None) -> web.Response:
    headers = dict(error.headers)
    if request_id:
        headers[REQUEST_ID_HEADER] = request_id
    # Refusals before the pipeline (401, 413, ...) never reached the cache either.
    headers.setdefault("x-cache", "miss")
    if isinstance(error, UpstreamStatusError) and _is_openai_error(error.upstream_body):
        # An upstream's own OpenAI-shaped error is passed through unchanged.
        body = error.upstream_body
    else:
        body = orjson.dumps(error.body())
    return web.Response(
        body=body,
        status=status or status_of(error),
        headers=headers,
        content_type="application/json",
    )


def _is_openai_error(body: bytes) -> bool:
    try:
        payload = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return isinstance(payload, dict) and isinstance(payload.get("error"), dict)


def _from_http(exc: web.HTTPException) -> ProxyError:
    if isinstance(exc, web.HTTPRequestEntityTooLarge):
        return BodyTooLargeError()
    if isinstance(exc, web.HTTPNotFound):
        return NotFoundError("Unknown path.", code="unknown_url")
    if isinstance(exc, web.HTTPMethodNotAllowed):
        error = InvalidRequestError(
            f"Method {exc.method} is not allowed here.", code="method_not_allowed"
        )
        error.headers["Allow"] = ", ".join(sorted(exc.allowed_methods))
        return error
    return InvalidRequestError(exc.reason)


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except Exception as exc:
        answer = error_answer(request, exc)
        if answer is None:
            raise
        return answer


def error_answer(request: web.Request, exc: Exception) -> web.Response | None:
    """The answer to a request that raised `exc`; None when it is not an error (an aiohttp
    redirect, say), which the caller raises on."""
    if isinstance(exc, ProxyError):
        if not exc.accounted:  # else the request's access line has it
            log.log(exc.level, "request failed: %s", exc.message, extra=_ids(request))
        return render(exc, request.get(REQUEST_ID_KEY))
    if isinstance(exc, web.HTTPException):
        if exc.status < 400:
            return None
        translated = _from_http(exc)
        status = exc.status if type(translated) is InvalidRequestError else None
        return render(translated, request.get(REQUEST_ID_KEY), status)
    log.exception("unhandled error", extra=_ids(request))
    return render(
        InternalError("The server had an error while processing your request."),
        request.get(REQUEST_ID_KEY),
    )


def _ids(request: web.Request) -> dict[str, object]:
    return {"request_id": request.get(REQUEST_ID_KEY), "path": request.path}
