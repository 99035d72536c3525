"""Serving the application on the lean server (`server.http: lean`, the default).

aiohttp's server spends ~195k instructions on a request whose handler does nothing; a bare
httptools protocol ~29k. The lean server answers the hot routes (`POST /v1/chat/completions`,
`/v1/completions`, `/v1/embeddings`) itself and hands every other request to aiohttp
(`connection.py`). The hot routes' handlers come with their middlewares' work included:
Sidegate's behind one door (`middleware/door.py`), another app's wrapped by `with_middlewares`.
The application's life cycle — start-up, cleanup contexts, `on_shutdown`, graceful drain —
stays aiohttp's `AppRunner`.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Final, cast

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from sidegate.aiohttp_server import GatewayRunner, gateway_runner, serve_until_stopped
from sidegate.early import EarlyStart
from sidegate.lean_server.connection import LeanConnection

_BACKLOG: Final = 512


class Front:
    """What every connection shares: the app, its hot routes' handlers (their middlewares'
    work included), the aiohttp server that takes the other requests, and the live
    connections (for shutdown)."""

    def __init__(
        self,
        app: web.Application,
        hot_routes: Mapping[str, Handler],
        aiohttp_server: web.Server,
        max_body_bytes: int,
        keepalive_timeout: float,
    ) -> None:
        self.app = app
        self.hot_routes = {path.encode("ascii"): handler for path, handler in hot_routes.items()}
        # Handlers that can begin before their task (see sidegate.early).
        self.early_starts: dict[bytes, EarlyStart] = {
            path: cast(EarlyStart, handler)
            for path, handler in self.hot_routes.items()
            if hasattr(handler, "start_early")
        }
        self.aiohttp_protocol = aiohttp_server
        self.max_body_bytes = max_body_bytes
        self.connections: set[LeanConnection] = set()
        self.closing = False
        self.keepalive_timeout = keepalive_timeout
        self._sweeper: asyncio.Task[None] | None = None

    def __call__(self) -> LeanConnection:
        return LeanConnection(self)

    def start_sweeping(self) -> None:
        self._sweeper = asyncio.get_running_loop().create_task(self._sweep_idle())

    async def _sweep_idle(self) -> None:
        """Close keep-alive connections idle for longer than the timeout (one timer for all
        connections rather than one per connection and request)."""
        period = min(self.keepalive_timeout / 4, 5.0)
        while True:
            await asyncio.sleep(period)
            expired = time.monotonic() - self.keepalive_timeout
            for connection in list(self.connections):
                if connection.idle and connection.idle_since < expired:
                    connection.close()

    async def shutdown(self, drain_seconds: float) -> None:
        """Close idle connections now; let running requests finish within `drain_seconds`, then
        cancel them. Connections handed to aiohttp are drained by aiohttp's server."""
        self.closing = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        busy = []
        for connection in list(self.connections):
            connection.start_held()  # a request still uploading is served, and waited for
            task = connection.busy_task
            if task is not None:
                busy.append(task)
            elif connection.idle:
                connection.close()
        if busy:
            _, pending = await asyncio.wait(busy, timeout=drain_seconds)
            for task in pending:
                task.cancel()
            if pending:
                await asyncio.wait(pending)


def with_middlewares(app: web.Application, routes: Mapping[str, Handler]) -> dict[str, Handler]:
    """The handlers as aiohttp calls them: the app's first middleware outermost."""
    return {path: _wrapped(handler, app.middlewares) for path, handler in routes.items()}


def _wrapped(handler: Handler, middlewares: Sequence[Middleware]) -> Handler:
    for middleware in reversed(middlewares):
        handler = functools.partial(middleware, handler=handler)
    return handler


class LeanRunner(GatewayRunner):
    """aiohttp's runner, with the lean connections drained after `on_shutdown` (so `/ready`
    answers 503 while they finish), at the same time as aiohttp drains its own rather than
    after it (aiohttp's part alone may take up to twice `drain_timeout_seconds`: it waits for
    its handlers, then as long again for them to cancel)."""

    front: Front | None = None

    async def shutdown(self) -> None:
        await super().shutdown()
        server = self.server
        if self.front is not None and server is not None:
            # The runner's own `server.shutdown` call that follows finds nothing left to drain.
            await asyncio.gather(
                self.front.shutdown(self.shutdown_timeout), server.shutdown(self.shutdown_timeout)
            )

    @property
    def shutdown_timeout(self) -> float:
        return float(self._shutdown_timeout)


class LeanSite(web.BaseSite):
    __slots__ = ("_front", "_host", "_port", "_reuse_port")

    def __init__(
        self, runner: LeanRunner, front: Front, host: str, port: int, *, reuse_port: bool
    ) -> None:
        super().__init__(runner, backlog=_BACKLOG)
        self._front = front
        self._host = host
        self._port = port
        self._reuse_port = reuse_port

    @property
    def name(self) -> str:
        return f"http://{self._host}:{self._port}"

    async def start(self) -> None:
        await super().start()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            self._front,
            self._host,
            self._port,
            backlog=self._backlog,
            reuse_address=True,
            reuse_port=self._reuse_port or None,
        )
        for sock in self._server.sockets:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._front.start_sweeping()


def run_lean(
    app: web.Application,
    hot_routes: Callable[[web.Application], Mapping[str, Handler]],
    *,
    loop: asyncio.AbstractEventLoop,
    host: str,
    port: int,
    reuse_port: bool,
    max_body_bytes: int,
    shutdown_timeout: float,
    keepalive_timeout: float,
) -> None:
    """`web.run_app`, serving through the lean server; returns after SIGTERM/SIGINT and a
    graceful shutdown. `hot_routes` gives the hot routes' handlers of the started app."""
    runner = gateway_runner(LeanRunner, app, shutdown_timeout, keepalive_timeout)

    async def main() -> None:
        await runner.setup()
        assert runner.server is not None
        routes = hot_routes(app)
        runner.front = Front(app, routes, runner.server, max_body_bytes, keepalive_timeout)
        try:
            await LeanSite(runner, runner.front, host, port, reuse_port=reuse_port).start()
            await asyncio.Event().wait()
        finally:
            await runner.cleanup()

    serve_until_stopped(loop, main)
