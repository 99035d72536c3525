"""aiohttp's HTTP server as the gateway runs it: requests it cannot read answered in OpenAI's
error shape, and the process's event loop driven until SIGTERM/SIGINT.

A request aiohttp's parser refuses (not HTTP, a header block over its limits) never reaches a
handler or a middleware: aiohttp answers it itself, in plain text. Clients of an
OpenAI-compatible API read `{"error": {...}}`, so the gateway's connections answer those with
the error middleware's JSON, as the lean server does for the requests it reads.
"""

from __future__ import annotations

import asyncio
import logging
import re
from collections.abc import Callable, Coroutine
from contextlib import suppress
from typing import Any, TypeVar

from aiohttp import web
from aiohttp.http_exceptions import BadHttpMethod, LineTooLong
from aiohttp.web_protocol import RequestHandler
from aiohttp.web_request import BaseRequest

from sidegate.errors import InternalError, InvalidRequestError, ProxyError
from sidegate.middleware.errors import render

# What a client is told about a request that could not be read, by the status aiohttp chose.
_UNREADABLE: dict[int, str] = {
    400: "The request is not valid HTTP/1.1.",
    413: "The request body is larger than this server accepts.",
    431: "The request's header block is too large.",
}
_TOO_LONG = "The request line or a header is longer than this server accepts."

_QUOTED = re.compile(r""":|\sb?['"]""")

log = logging.getLogger("sidegate.server")


class _Connection(RequestHandler):
    def handle_error(
        self,
        request: BaseRequest,
        status: int = 500,
        exc: BaseException | None = None,
        message: str | None = None,
    ) -> web.StreamResponse:
        # Not aiohttp's own, which logs a client's unreadable bytes as a server error, with a
        # traceback that the logging configured for aiohttp prints over several lines.
        _log_unreadable(request, status, exc, message, first=self._request_count == 1)
        if request.writer.output_size > 0:
            raise ConnectionError("an answer has begun already: the connection is broken")
        error: ProxyError
        if status >= 500:
            error = InternalError("The server had an error while processing your request.")
        elif isinstance(exc, LineTooLong):
            error = InvalidRequestError(_TOO_LONG)
        else:
            error = InvalidRequestError(_UNREADABLE.get(status, "The request could not be read."))
        answer = render(error, None, status)
        answer.force_close()
        return answer


def _log_unreadable(
    request: BaseRequest,
    status: int,
    exc: BaseException | None,
    message: str | None,
    *,
    first: bool,
) -> None:
    if status >= 500:  # a handler's failure that got past the middlewares: a traceback helps
        log.error("error handling request", exc_info=exc, extra={"remote": request.remote})
        return
    # Non-HTTP bytes as a connection's first request are mostly TLS clients and scanners.
    level = logging.DEBUG if first and isinstance(exc, BadHttpMethod) else logging.WARNING
    # Not the offending bytes aiohttp quotes after its reason: they may hold a key.
    reason = _QUOTED.split(message or "", maxsplit=1)[0].strip() or None
    extra = {
        "status": status,
        "error": None if exc is None else type(exc).__name__,
        "reason": reason,
        "remote": request.remote,
    }
    log.log(level, "unreadable request", extra=extra)


class _Server(web.Server):
    """aiohttp's server, whose connections answer as `_Connection` does."""

    def __call__(self) -> RequestHandler:
        return _Connection(self, loop=self._loop, **self._kwargs)


class GatewayRunner(web.AppRunner):
    """aiohttp's runner, serving through `_Server`."""

    async def _make_server(self) -> web.Server:
        server = await super()._make_server()
        # The application builds its server (`Application._make_handler`); `_Server` only
        # changes the connections it makes and holds no state of its own.
        server.__class__ = _Server
        return server


_Runner = TypeVar("_Runner", bound=GatewayRunner)


def gateway_runner(
    kind: type[_Runner], app: web.Application, shutdown_timeout: float, keepalive_timeout: float
) -> _Runner:
    """A runner as the gateway runs it: SIGTERM/SIGINT end it gracefully, aiohttp writes no
    access log (the gateway writes its own), and a handler whose client left is cancelled."""
    return kind(
        app,
        handle_signals=True,
        access_log=None,
        shutdown_timeout=shutdown_timeout,
        keepalive_timeout=keepalive_timeout,
        handler_cancellation=True,
    )


def serve_until_stopped(
    loop: asyncio.AbstractEventLoop, main: Callable[[], Coroutine[Any, Any, None]]
) -> None:
    """Run `main` on `loop` as `web.run_app` does: SIGTERM/SIGINT (the runner's signal
    handlers) end it gracefully, then every task left is cancelled and the loop closed."""
    asyncio.set_event_loop(loop)
    main_task = loop.create_task(main())
    try:
        loop.run_until_complete(main_task)
    except (web.GracefulExit, KeyboardInterrupt):
        pass
    finally:
        try:
            if not main_task.done():
                main_task.cancel()
                with suppress(asyncio.CancelledError):
                    loop.run_until_complete(main_task)
        finally:
            _cancel_all(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()


def _cancel_all(loop: asyncio.AbstractEventLoop) -> None:
    tasks = asyncio.all_tasks(loop)
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))


def run_aiohttp(
    app: web.Application,
    *,
    loop: asyncio.AbstractEventLoop,
    host: str,
    port: int,
    reuse_port: bool,
    shutdown_timeout: float,
    keepalive_timeout: float,
) -> None:
    """Serve `app` on aiohttp's server alone (`server.http: aiohttp`) until SIGTERM/SIGINT."""
    runner = gateway_runner(GatewayRunner, app, shutdown_timeout, keepalive_timeout)

    async def main() -> None:
        await runner.setup()
        try:
            await web.TCPSite(runner, host, port, reuse_port=reuse_port or None).start()
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    serve_until_stopped(loop, main)
