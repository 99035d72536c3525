"""One client connection on the lean server: the socket's `asyncio.Protocol`.

Requests are parsed by httptools (llhttp). A request for a hot route (`POST` to the OpenAI
endpoints) runs its handler, wrapped in the application's middlewares, as soon as its headers
are in; its answer is written by this module. Any other request (health, metrics, models,
admin, a wrong method, a path we do not know) goes to aiohttp: from that request on the
connection is handed to an aiohttp `RequestHandler`, fed each request re-serialized as it
completes, so every route and error aiohttp serves behaves exactly as on the aiohttp server.

Requests on one connection are answered in order: a pipelined request waits for the one
before it. When the client goes away the running handler is cancelled (aiohttp's
`handler_cancellation=True`), which the pipeline records as a 499.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from typing import TYPE_CHECKING, Final, cast

import httptools
from aiohttp import web
from aiohttp.typedefs import Handler
from multidict import CIMultiDict, CIMultiDictProxy

from sidegate.errors import InvalidRequestError
from sidegate.lean_server.messages import LeanRequest, LeanStream, encode_response
from sidegate.middleware.errors import render

if TYPE_CHECKING:
    from sidegate.lean_server.front import Front

log = logging.getLogger("sidegate.server")

HEADER_BLOCK_LIMIT: Final = 64 * 1024
_PIPELINE_DEPTH: Final = 16  # requests queued on one connection before it stops reading
_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"


class _HeaderBlockTooLargeError(Exception):
    pass


class _BodyTooLargeError(Exception):
    pass


class _Parsed:
    """A request as the parser saw it; `lean` is set when a hot route serves it."""

    __slots__ = (
        "body",
        "complete",
        "handler",
        "headers",
        "keep_alive",
        "lean",
        "method",
        "url",
        "version",
    )

    def __init__(self, method: bytes, url: bytes, headers: list[tuple[str, str]]) -> None:
        self.method = method
        self.url = url
        self.headers = headers
        self.version = "1.1"
        self.keep_alive = True
        self.lean: LeanRequest | None = None
        self.handler: Handler | None = None
        self.body: list[bytes] = []
        self.complete = False

    def reserialized(self) -> bytes:
        """The request as aiohttp should see it: its body de-chunked, with its length."""
        lines = [b"%s %s HTTP/%s\r\n" % (self.method, self.url, self.version.encode())]
        for name, value in self.headers:
            if name.lower() not in ("content-length", "transfer-encoding", "expect"):
                lines.append(f"{name}: {value}\r\n".encode("latin-1"))
        body = b"".join(self.body)
        if body or self.method not in (b"GET", b"HEAD", b"DELETE", b"OPTIONS"):
            lines.append(b"Content-Length: %d\r\n" % len(body))
        lines.append(b"\r\n")
        lines.append(body)
        return b"".join(lines)


class LeanConnection(asyncio.Protocol):
    __slots__ = (
        "_aiohttp",
        "_body_size",
        "_current",
        "_drained",
        "_front",
        "_head_size",
        "_incoming",
        "_outgoing",
        "_parser",
        "_paused",
        "_queue",
        "_raw_headers",
        "_reading_paused",
        "_remote",
        "_url",
        "closed",
        "http11",
        "idle_since",
        "keep_alive",
        "transport",
    )

    def __init__(self, front: Front) -> None:
        self._front = front
        self._parser = httptools.HttpRequestParser(self)
        self._queue: deque[_Parsed] = deque()
        self._incoming: _Parsed | None = None
        self._current: asyncio.Task[None] | None = None
        self._aiohttp: asyncio.Protocol | None = None
        self._url = b""
        self._raw_headers: list[tuple[str, str]] = []
        self._head_size = 0
        self._body_size = 0
        self._paused = False
        self._drained: asyncio.Future[None] | None = None
        self._outgoing: list[bytes] | None = None
        self._reading_paused = False
        self._remote: str | None = None
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = time.monotonic()
        self.http11 = True
        self.keep_alive = True

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self._remote = str(peer[0]) if isinstance(peer, tuple) else None
        self._front.connections.add(self)

    def data_received(self, data: bytes) -> None:
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._refuse("Protocol upgrades are not supported.", 400)
        except httptools.HttpParserError as exc:
            cause = exc.__context__ or exc.__cause__
            if isinstance(cause, _HeaderBlockTooLargeError):
                self._refuse("The request's header block is too large.", 431)
            elif isinstance(cause, _BodyTooLargeError):
                self._refuse("The request body is larger than this server accepts.", 413)
            else:
                self._refuse("The request is not valid HTTP/1.1.", 400)

    def eof_received(self) -> bool | None:
        if self._aiohttp is not None:
            return self._aiohttp.eof_received()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._front.connections.discard(self)
        if self._current is not None and not self._current.done():
            self._current.cancel()  # the pipeline records the client's departure (499)
        if self._drained is not None and not self._drained.done():
            self._drained.set_exception(ConnectionResetError("the client went away"))
        if self._aiohttp is not None:
            self._aiohttp.connection_lost(exc)

    def pause_writing(self) -> None:
        self._paused = True
        if self._aiohttp is not None:
            self._aiohttp.pause_writing()

    def resume_writing(self) -> None:
        self._paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self._drained = None
        if self._aiohttp is not None:
            self._aiohttp.resume_writing()

    # Parser callbacks

    def on_message_begin(self) -> None:
        self._url = b""
        self._raw_headers = []
        self._head_size = 0
        self._body_size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)
        if self._head_size > HEADER_BLOCK_LIMIT:
            raise _HeaderBlockTooLargeError

    def on_header(self, name: bytes, value: bytes) -> None:
        # latin-1 keeps every byte as it came (and gives it back when re-serialized).
        self._raw_headers.append((name.decode("latin-1"), value.decode("latin-1")))
        self._head_size += len(name) + len(value) + 4
        if self._head_size > HEADER_BLOCK_LIMIT:
            raise _HeaderBlockTooLargeError

    def on_headers_complete(self) -> None:
        parser = self._parser
        parsed = _Parsed(parser.get_method(), self._url, self._raw_headers)
        parsed.version = parser.get_http_version()
        parsed.keep_alive = parser.should_keep_alive()
        self._incoming = parsed
        self._queue.append(parsed)
        if self._aiohttp is None and parsed.method == b"POST":
            parsed.handler = self._front.hot_routes.get(parsed.url.partition(b"?")[0])
        if parsed.handler is not None:
            self._start_lean(parsed)
        elif parsed.version == "1.1":
            expect = next((v for n, v in parsed.headers if n.lower() == "expect"), None)
            self._answer_continue(expect)
        if len(self._queue) == 1:
            self._next()
        elif len(self._queue) > _PIPELINE_DEPTH and self.transport is not None:
            self.transport.pause_reading()
            self._reading_paused = True

    def on_body(self, body: bytes) -> None:
        parsed = self._incoming
        if parsed is None:
            return
        self._body_size += len(body)
        limit = self._front.max_body_bytes
        lean = parsed.lean
        if lean is None:
            if self._body_size > limit:  # aiohttp would refuse it too, once it had it all
                raise _BodyTooLargeError
            parsed.body.append(body)
            return
        if lean.too_large is not None:
            return
        lean.add_body(body)
        if self._body_size > limit:
            lean.refuse_body(limit, self._body_size)
            self.keep_alive = False  # the rest of the body is never read

    def on_message_complete(self) -> None:
        parsed = self._incoming
        if parsed is None:
            return
        self._incoming = None
        parsed.complete = True
        if parsed.lean is not None:
            parsed.lean.finish_body()
        elif self._queue and self._queue[0] is parsed:
            self._next()

    # Serving

    def _start_lean(self, parsed: _Parsed) -> None:
        headers = CIMultiDictProxy(CIMultiDict(parsed.headers))
        path = parsed.url.partition(b"?")[0].decode("latin-1")
        parsed.lean = LeanRequest(self, self._front.app, "POST", path, headers, self._remote)
        declared = headers.get("Content-Length")
        if declared is not None and declared.isdigit():
            if int(declared) > self._front.max_body_bytes:
                parsed.lean.refuse_body(self._front.max_body_bytes, int(declared))
                self.keep_alive = False
                return
        if parsed.version == "1.1":
            self._answer_continue(headers.get("Expect"))

    def _answer_continue(self, expect: str | None) -> None:
        if expect is not None and expect.lower() == "100-continue" and self.transport is not None:
            self.transport.write(_CONTINUE)

    def _next(self) -> None:
        """Start the request at the head of the queue, if it can start."""
        if self._current is not None or not self._queue or self.closed:
            return
        parsed = self._queue[0]
        if parsed.lean is not None:
            self.http11 = parsed.version == "1.1"
            self.keep_alive = self.keep_alive and parsed.keep_alive
            serving = self._serve(parsed.lean, cast("Handler", parsed.handler))
            self._current = asyncio.get_running_loop().create_task(serving)
            return
        if not parsed.complete:
            return  # handed over once its body is in
        self._queue.popleft()
        self._hand_over(parsed)
        self._next()

    def _hand_over(self, parsed: _Parsed) -> None:
        self.flush()  # a stream's last bytes go before anything aiohttp writes
        if self._aiohttp is None:
            self._aiohttp = self._front.aiohttp_protocol()
            self._aiohttp.connection_made(cast(asyncio.Transport, self.transport))
        self._aiohttp.data_received(parsed.reserialized())

    async def _serve(self, request: LeanRequest, handler: Handler) -> None:
        try:
            response = await handler(cast(web.Request, request))
            if isinstance(response, LeanStream):
                if not response.finished:
                    self.keep_alive = False  # cut short: the framing is broken
            else:
                self.send(encode_response(response, keep_alive=self.keep_alive))
        except asyncio.CancelledError:
            return
        except Exception:
            log.exception("the lean server could not answer", extra={"path": request.path})
            self.keep_alive = False
        finally:
            self._current = None
        self._finished()

    def _finished(self) -> None:
        if self.closed:
            return
        self._queue.popleft()
        self.idle_since = time.monotonic()
        if not self.keep_alive or self._front.closing:
            self.flush()
            if self.transport is not None:
                self.transport.close()
            return
        if self._reading_paused and len(self._queue) <= _PIPELINE_DEPTH // 2:
            self._reading_paused = False
            if self.transport is not None:
                self.transport.resume_reading()
        self._next()

    def _refuse(self, message: str, status: int) -> None:
        """Answer a request the parser could not read, then close: the stream is lost."""
        if self.transport is None or self.closed:
            return
        if self._aiohttp is None and self._current is None:
            error = InvalidRequestError(message)
            self.send(encode_response(render(error, None, status), keep_alive=False))
        self.flush()
        self.transport.close()

    # Writing, for the answers and LeanStream

    def send(self, data: bytes) -> None:
        """Write now (after anything `send_soon` left pending)."""
        transport = self._writable()
        if self._outgoing is not None:
            self._outgoing.append(data)
            data = b"".join(self._outgoing)
            self._outgoing = None
        transport.write(data)

    def send_soon(self, data: bytes) -> None:
        """Write at the end of this turn of the event loop, with whatever else is written in it.

        A stream's head, its events and its last chunk are often all in hand within one turn
        (a short answer relayed whole): one system call instead of three, each of which costs
        more on loopback than the Python around it."""
        self._writable()
        if self._outgoing is None:
            self._outgoing = [data]
            asyncio.get_running_loop().call_soon(self.flush)
        else:
            self._outgoing.append(data)

    def flush(self) -> None:
        outgoing, self._outgoing = self._outgoing, None
        if not outgoing or self.closed or self.transport is None or self.transport.is_closing():
            return
        self.transport.write(outgoing[0] if len(outgoing) == 1 else b"".join(outgoing))

    def _writable(self) -> asyncio.Transport:
        if self.closed or self.transport is None or self.transport.is_closing():
            raise ConnectionResetError("Cannot write to closing transport")
        return self.transport

    async def drain(self) -> None:
        if self.closed:
            raise ConnectionResetError("Cannot write to closing transport")
        if not self._paused:
            return
        if self._drained is None:
            self._drained = asyncio.get_running_loop().create_future()
        await asyncio.shield(self._drained)

    # Shutdown (the front calls these)

    @property
    def idle(self) -> bool:
        return self._aiohttp is None and self._current is None and not self._queue

    @property
    def busy_task(self) -> asyncio.Task[None] | None:
        return self._current

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.flush()
            self.transport.close()
