"""A raw upstream for the lean transport's tests: `asyncio.start_server` on 127.0.0.1 whose
handler writes whatever bytes a test wants, and the loop fixtures that build it."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

from tests.unit.both_loops import loops_with

from sidegate.upstream.lean import LeanTransport
from sidegate.upstream.transport import Timeouts

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter, int], Awaitable[None]]
TIMEOUTS = Timeouts(connect=5.0, read=10.0)
SHORT = Timeouts(connect=5.0, read=0.2)
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"


class RawUpstream:
    """A TCP server whose handler writes whatever bytes a test wants; counts connections."""

    def __init__(self, handler: Handler) -> None:
        self._handler = handler
        self.connections = 0
        self.requests: list[bytes] = []
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None
        self.url = ""

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}/v1/chat/completions"

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)  # type: ignore[arg-type]
        self.connections += 1
        try:
            await self._handler(reader, writer, self.connections)
        except (ConnectionError, asyncio.IncompleteReadError):
            pass
        finally:
            writer.close()
            self._tasks.discard(task)  # type: ignore[arg-type]

    async def read_request(self, reader: asyncio.StreamReader) -> bytes | None:
        """One request (head and Content-Length body), or None when the client closed."""
        try:
            head = await reader.readuntil(b"\r\n\r\n")
        except asyncio.IncompleteReadError:
            return None
        length = 0
        for line in head.split(b"\r\n"):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        body = await reader.readexactly(length)
        self.requests.append(head + body)
        return head + body


@asynccontextmanager
async def lean_transport() -> AsyncIterator[LeanTransport]:
    transport = LeanTransport(max_connections_per_endpoint=4, idle_expiry_seconds=30.0)
    try:
        yield transport
    finally:
        await transport.close()


@asynccontextmanager
async def raw_upstreams() -> AsyncIterator[Callable[[Handler], Awaitable[RawUpstream]]]:
    started: list[RawUpstream] = []

    async def make(handler: Handler) -> RawUpstream:
        upstream = RawUpstream(handler)
        await upstream.start()
        started.append(upstream)
        return upstream

    try:
        yield make
    finally:
        for upstream in started:
            await upstream.stop()


# Built inside the test's own loop, so they are not pytest fixtures.
LOOP_FIXTURES: dict[str, Callable[[], AbstractAsyncContextManager[Any]]] = {
    "transport": lean_transport,
    "upstream_factory": raw_upstreams,
}
on_both_loops = loops_with(LOOP_FIXTURES)

UpstreamFactory = Callable[[Handler], Awaitable[RawUpstream]]


async def forever() -> None:
    await asyncio.Event().wait()
