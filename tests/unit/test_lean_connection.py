"""The lean server's connection handling, in process, with routes built to be slow or to fail.

A small app is served the way `sidegate serve` serves its own (`LeanRunner`, `Front`,
`LeanSite`): its `POST /hot` and `POST /stream` are hot routes the lean server answers, its GET
routes go to aiohttp. A raw socket drives it, so ordering, interim answers, back-pressure and
shutdown can be checked where the real gateway's routes answer too fast to show them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress
from typing import Any

import pytest
from aiohttp import web
from aiohttp.typedefs import Handler
from tests.answers import Answer, Answers
from tests.procs import free_port

from sidegate.lean_server.front import Front, LeanRunner, LeanSite, with_middlewares
from sidegate.lean_server.messages import open_stream


async def hot(request: web.Request) -> web.Response:
    """`sleep <seconds> <name>` waits, then answers `hot <name>`."""
    words = (await request.read()).decode().split()
    await asyncio.sleep(float(words[1]))
    return web.Response(text=f"hot {words[2]}")


async def stream_then_fail(request: web.Request) -> web.StreamResponse:
    response = await open_stream(request, 200, {"Content-Type": "text/event-stream"})
    await response.write(b"data: first\n\n")
    raise RuntimeError("the upstream broke mid-stream")


def _client_leaves(request: web.Request) -> None:
    """The client's departure as the server meets it when it comes after the handler's last
    wait: the transport is closing, and the task is no longer there to be cancelled."""
    lean: Any = request
    lean.connection.transport.abort()


async def answer_after_leaving(request: web.Request) -> web.Response:
    await request.read()
    _client_leaves(request)
    return web.Response(text="nobody reads this")


async def stream_after_leaving(request: web.Request) -> web.StreamResponse:
    response = await open_stream(request, 200, {"Content-Type": "text/event-stream"})
    await response.write(b"data: first\n\n")
    _client_leaves(request)
    await response.write_eof()
    return response


async def slow(request: web.Request) -> web.Response:
    await asyncio.sleep(float(request.query.get("s", "0.3")))
    return web.Response(text="slow")


async def fast(request: web.Request) -> web.Response:
    return web.Response(text="fast")


@web.middleware
async def errors_as_answers(request: web.Request, handler: Handler) -> web.StreamResponse:
    """As Sidegate's error middleware does: an exception becomes a JSON 500."""
    try:
        return await handler(request)
    except RuntimeError:
        return web.json_response({"error": {"message": "broken"}}, status=500)


HOT_ROUTES: dict[str, Handler] = {
    "/hot": hot,
    "/stream": stream_then_fail,
    "/answer-after-leaving": answer_after_leaving,
    "/stream-after-leaving": stream_after_leaving,
}


class Served:
    """The running server: its runner, and the raw client connections a test opened."""

    def __init__(self, port: int, runner: LeanRunner) -> None:
        self.port = port
        self.runner = runner
        self.clients: list[Client] = []

    async def connect(self) -> Client:
        client = Client(*await asyncio.open_connection("127.0.0.1", self.port))
        self.clients.append(client)
        return client

    async def close_clients(self) -> None:
        for client in self.clients:
            client.writer.close()
            with suppress(ConnectionError):
                await client.writer.wait_closed()


@asynccontextmanager
async def lean_server(drain_seconds: float = 5.0) -> AsyncIterator[Served]:
    app = web.Application(middlewares=[errors_as_answers])
    for path, handler in HOT_ROUTES.items():
        app.router.add_post(path, handler)
    app.router.add_get("/slow", slow)
    app.router.add_get("/fast", fast)
    runner = LeanRunner(
        app, handle_signals=False, shutdown_timeout=drain_seconds, handler_cancellation=True
    )
    await runner.setup()
    assert runner.server is not None
    routes = with_middlewares(app, HOT_ROUTES)
    runner.front = Front(app, routes, runner.server, 4096, keepalive_timeout=75)
    port = free_port()
    await LeanSite(runner, runner.front, "127.0.0.1", port, reuse_port=False).start()
    served = Served(port, runner)
    try:
        yield served
    finally:
        await served.close_clients()
        if runner.server is not None:  # a test may have shut it down itself
            await runner.cleanup()


READ_SECONDS = 5.0  # an answer this late is one that will never come


class Client:
    """One raw connection; answers parsed by llhttp as they arrive."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.raw = b""
        self.closed = False
        self._answers = Answers()

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    async def read(self, count: int) -> list[Answer]:
        async with asyncio.timeout(READ_SECONDS):
            while self._answers.completed() < count and not self.closed:
                data = await self.reader.read(65536)
                if not data:
                    self.closed = True
                    break
                self.raw += data
                self._answers.feed(data)
        return [a for a in self._answers.answers if a.complete]

    async def read_to_end(self) -> bytes:
        async with asyncio.timeout(READ_SECONDS):
            while data := await self.reader.read(65536):
                self.raw += data
        self.closed = True
        return self.raw


def post(path: str, body: str, *extra: str) -> bytes:
    data = body.encode()
    head = [f"POST {path} HTTP/1.1", "Host: t", f"Content-Length: {len(data)}", *extra]
    return ("\r\n".join(head) + "\r\n\r\n").encode() + data


def get(path: str, *extra: str) -> bytes:
    return ("\r\n".join([f"GET {path} HTTP/1.1", "Host: t", *extra]) + "\r\n\r\n").encode()


async def test_a_hot_request_after_an_aiohttp_one_waits_for_its_answer() -> None:
    async with lean_server() as served:
        client = await served.connect()
        # The GET is slower than the POST after it: both servers answering at once would
        # put the second POST's answer first.
        client.send(post("/hot", "sleep 0.05 one") + get("/slow") + post("/hot", "sleep 0 two"))
        answers = await client.read(3)
        assert [a.body for a in answers] == [b"hot one", b"slow", b"hot two"]


async def test_an_upgrade_request_is_answered_as_plain_http() -> None:
    async with lean_server() as served:
        client = await served.connect()
        client.send(get("/fast", "Connection: Upgrade", "Upgrade: h2c") + get("/fast"))
        answers = await client.read(2)
        assert [(a.status, a.body) for a in answers] == [(200, b"fast"), (200, b"fast")]


async def test_an_upgrade_with_a_body_is_refused_after_the_answers_before_it() -> None:
    async with lean_server() as served:
        client = await served.connect()
        upgrade = post("/hot", "sleep 0 x", "Connection: Upgrade", "Upgrade: h2c")
        client.send(post("/hot", "sleep 0.05 first") + upgrade)
        answers = await client.read(2)
        assert [a.status for a in answers] == [200, 400]
        assert answers[0].body == b"hot first"
        assert b"upgrade" in answers[1].body.lower()
        assert await client.read_to_end() is not None and client.closed


async def test_reading_resumes_after_a_deep_pipeline_is_handed_to_aiohttp() -> None:
    async with lean_server() as served:
        client = await served.connect()
        # While the POST runs, 30 GETs queue up: reading pauses at 17. They are then handed
        # to aiohttp, and the 30 sent afterwards must still be read.
        client.send(post("/hot", "sleep 0.2 first") + get("/fast") * 30)
        await asyncio.sleep(0.1)
        client.send(get("/fast") * 30)
        answers = await client.read(61)
        assert len(answers) == 61
        assert {a.body for a in answers[1:]} == {b"fast"}


async def test_100_continue_does_not_overtake_the_answer_before_it() -> None:
    async with lean_server() as served:
        client = await served.connect()
        waiting = post("/hot", "", "Expect: 100-continue").replace(
            b"Content-Length: 0", b"Content-Length: 14"
        )
        client.send(post("/hot", "sleep 0.1 first") + waiting)
        answers = await client.read(2)  # llhttp counts the interim answer as a message
        assert [a.status for a in answers] == [200, 100]
        assert answers[0].body == b"hot first"
        client.send(b"sleep 0 second")
        answers = await client.read(3)
        assert answers[2].body == b"hot second"


async def test_an_answer_during_a_drain_closes_the_connection() -> None:
    async with lean_server() as served:
        client = await served.connect()
        client.send(post("/hot", "sleep 0.3 draining"))
        await asyncio.sleep(0.05)
        shutdown = asyncio.create_task(served.runner.cleanup())
        (answer,) = await client.read(1)
        assert answer.body == b"hot draining"
        assert answer.headers.get("connection") == "close"
        await client.read_to_end()
        await shutdown


async def test_a_request_cancelled_at_the_drain_deadline_loses_its_connection() -> None:
    async with lean_server(drain_seconds=0.3) as served:
        client = await served.connect()
        client.send(post("/hot", "sleep 30 never"))
        await asyncio.sleep(0.05)
        await served.runner.cleanup()
        assert await client.read_to_end() == b""  # closed without an answer, not left hanging


async def test_lean_and_aiohttp_connections_drain_together() -> None:
    drain = 1.0
    async with lean_server(drain_seconds=drain) as served:
        lean = await served.connect()
        lean.send(post("/hot", "sleep 30 lean"))
        handed = await served.connect()
        handed.send(get("/slow?s=30"))
        await asyncio.sleep(0.05)
        started = time.monotonic()
        await served.runner.cleanup()
        took = time.monotonic() - started
        # aiohttp waits up to the drain for its handler, then as long again for it to
        # cancel (2 s here); the lean drain (1 s) runs beside it, not after it (3 s).
        assert took < drain * 2.6


async def test_an_error_after_a_stream_started_ends_the_connection_not_a_second_answer() -> None:
    async with lean_server() as served:
        client = await served.connect()
        client.send(post("/stream", "") + get("/fast"))
        raw = await client.read_to_end()
        assert raw.startswith(b"HTTP/1.1 200 OK")
        assert b"data: first" in raw
        assert b"HTTP/1.1 500" not in raw
        assert not raw.endswith(b"0\r\n\r\n")  # no last chunk: the client sees it cut short


async def test_a_client_that_left_before_its_answer_is_not_an_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with lean_server() as served:
        for path in ("/answer-after-leaving", "/stream-after-leaving"):
            client = await served.connect()
            with caplog.at_level(logging.INFO, logger="sidegate.server"):
                client.send(post(path, ""))
                await client.read_to_end()
            assert [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR] == []
        fresh = await served.connect()
        fresh.send(post("/hot", "sleep 0 after"))
        (answer,) = await fresh.read(1)
        assert answer.body == b"hot after"
