"""One client connection on the lean server: the socket's `asyncio.Protocol`.

Requests are parsed by httptools (llhttp), except the common one: a whole `POST` with a
`Content-Length` body, already in hand, is read in one native call (`_native.request_head`,
which declines anything llhttp should judge). A request for a hot route (`POST` to the OpenAI
endpoints) runs its handler, wrapped in the application's middlewares; the connection's
reading half (`RequestReader`, in `reading.py`) takes its requests in, its writing half
(`ClientWriter`, in `writing.py`) writes the answers. On a connection with
nothing before it, the handler starts once the body is in, begun in the socket's callback
as far as the upstream write (`sidegate.early`); otherwise, and when the head alone is
answered (`Expect: 100-continue`, a declared body over the limit), as soon as its headers
are in. Any other request (health, metrics, models,
admin, a wrong method, a path we do not know) goes to aiohttp: from that request on the
connection is handed to an aiohttp `RequestHandler`, fed each request re-serialized as it
completes, so every route and error aiohttp serves behaves exactly as on the aiohttp server.

Requests on one connection are answered in order: a pipelined request waits for the one
before it, and once a request for aiohttp has been read every later one goes to aiohttp too
(it answers its requests in order; two servers writing to one socket would not). When the
client goes away the running handler is cancelled (aiohttp's `handler_cancellation=True`),
which the pipeline records as a 499.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable
from typing import TYPE_CHECKING, Any, Final, cast

import httptools
from aiohttp import web
from multidict import CIMultiDict, CIMultiDictProxy

from sidegate._native import HeadHeaders
from sidegate.errors import InvalidRequestError
from sidegate.lean_server.messages import LeanRequest, LeanStream, encode_response
from sidegate.lean_server.parsed import ParsedRequest
from sidegate.lean_server.reading import PIPELINE_DEPTH, HeadOverLimitError, RequestReader
from sidegate.middleware.errors import render

if TYPE_CHECKING:
    from sidegate.lean_server.front import Front

log = logging.getLogger("sidegate.server")

_CONTINUE: Final = b"HTTP/1.1 100 Continue\r\n\r\n"
# Handed to aiohttp after the requests it holds, so that it answers 400 (in order) and closes.
_UNREADABLE: Final = b"\x00 / HTTP/1.1\r\n\r\n"


class LeanConnection(RequestReader, asyncio.Protocol):
    __slots__ = (
        "_aiohttp",
        "_current",
        "_front",
        "_loop",
        "_parser",
        "_queue",
        "_refusal",
        "_remote",
        "closed",
        "http11",
        "idle_since",
        "stream_started",
        "transport",
        "writing_paused",
    )

    def __init__(self, front: Front) -> None:
        self._front = front
        # Kept: on Python 3.11 each get_running_loop() costs a getpid() system call.
        self._loop = asyncio.get_running_loop()
        self._parser = httptools.HttpRequestParser(self)
        self._queue: deque[ParsedRequest] = deque()
        self._incoming: ParsedRequest | None = None
        self._current: asyncio.Task[None] | None = None
        self._aiohttp: asyncio.Protocol | None = None
        self._between_messages = True  # llhttp holds no part of a request
        self._url = b""
        self._raw_headers: list[tuple[str, str]] = []
        self._head_size = 0
        self._body_size = 0
        self.writing_paused = False
        self._drained: asyncio.Future[None] | None = None
        self._outgoing: list[bytes] | None = None
        self._reading_paused = False
        self._to_aiohttp = False
        self._upgrade_refused = False
        self._refusal: bytes | None = None
        self._remote: str | None = None
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.idle_since = time.monotonic()
        self.http11 = True
        self.keep_alive = True
        self.stream_started = False  # a LeanStream's head went out for the running request

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        peer = transport.get_extra_info("peername")
        self._remote = str(peer[0]) if isinstance(peer, tuple) else None
        self._front.connections.add(self)

    def data_received(self, data: bytes) -> None:
        if self._between_messages and not self._to_aiohttp and self._refusal is None:
            data = self._take_plain(data)
            if not data:
                return
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserUpgrade as upgrade:
            if self._incoming is not None or self._upgrade_refused:
                self._refuse("Protocol upgrades are not supported on a request with a body.", 400)
                return
            # As on aiohttp: an `Upgrade` (h2c, websocket) is declined by answering the request
            # as plain HTTP/1.1; what follows it is read as the next request.
            self._parser = httptools.HttpRequestParser(self)
            self._between_messages = True
            rest = data[upgrade.args[0] :]
            if rest:
                self.data_received(rest)
        except httptools.HttpParserError as exc:
            cause = exc.__context__ or exc.__cause__
            if isinstance(cause, HeadOverLimitError):
                self._refuse("The request's header block is too large.", 431)
            else:
                self._refuse("The request is not valid HTTP/1.1.", 400)

    def eof_received(self) -> bool | None:
        if self._aiohttp is not None:
            return self._aiohttp.eof_received()
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.start_held()  # and cancelled below: its departure is recorded as any request's
        self.closed = True
        self._front.connections.discard(self)
        if self._current is not None and not self._current.done():
            # The pipeline records the client's departure (499). Cancelled on the next turn,
            # after its first step: a request that started early (sidegate.early) holds an
            # upstream request and a ticket its handler must release, which it cannot do
            # when cancelled before it began.
            self._loop.call_soon(self._current.cancel)
        if self._drained is not None and not self._drained.done():
            self._drained.set_exception(ConnectionResetError("the client went away"))
        if self._aiohttp is not None:
            self._aiohttp.connection_lost(exc)

    def pause_writing(self) -> None:
        self.writing_paused = True
        if self._aiohttp is not None:
            self._aiohttp.pause_writing()

    def resume_writing(self) -> None:
        self.writing_paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)
        self._drained = None
        if self._aiohttp is not None:
            self._aiohttp.resume_writing()

    def _start_lean(self, parsed: ParsedRequest) -> LeanRequest:
        raw = parsed.headers
        path = parsed.url.partition(b"?")[0].decode("latin-1")
        if type(raw) is HeadHeaders:
            # The native reader took the request whole, its length already within the limit.
            lean = LeanRequest(self, self._front.app, "POST", path, raw, self._remote)
            parsed.lean = lean
            return lean
        headers = CIMultiDictProxy(CIMultiDict(raw))
        lean = LeanRequest(self, self._front.app, "POST", path, headers, self._remote)
        parsed.lean = lean
        declared = headers.get("Content-Length")
        if declared is not None and declared.isdigit():
            if int(declared) > self._front.max_body_bytes:
                lean.refuse_body(self._front.max_body_bytes, int(declared))
                parsed.expects_continue = False  # the answer is 413: the body is not wanted
                self.keep_alive = False
        return lean

    def _next(self) -> None:
        """Start the request at the head of the queue, if it can start."""
        if self._current is not None or self.closed:
            return
        self._resume_reading()
        if not self._queue:
            if self._refusal is not None:
                self._answer_refusal()
            return
        parsed = self._queue[0]
        if parsed.held:
            return  # started once its body is in
        if parsed.expects_continue and not parsed.complete:
            # Only now: an interim answer must not overtake the answers before it.
            parsed.expects_continue = False
            self.send(_CONTINUE)
        if parsed.lean is not None:
            self.http11 = parsed.version == "1.1"
            self.keep_alive = self.keep_alive and parsed.keep_alive
            self.stream_started = False
            handler: Any = parsed.handler  # set for every lean request
            early = parsed.early
            answer = handler(parsed.lean) if early is None else handler(parsed.lean, early)
            serving = self._serve(parsed.lean, answer)
            self._current = self._loop.create_task(serving, context=parsed.context)
            return
        if not parsed.complete:
            return  # handed over once its body is in
        self._queue.popleft()
        self._hand_over(parsed.reserialized())
        self._next()

    def _resume_reading(self) -> None:
        if (
            self._reading_paused
            and self._refusal is None
            and len(self._queue) <= PIPELINE_DEPTH // 2
            and self.transport is not None
        ):
            self._reading_paused = False
            self.transport.resume_reading()

    def _hand_over(self, request: bytes) -> None:
        self.flush()  # a stream's last bytes go before anything aiohttp writes
        if self._aiohttp is None:
            self._aiohttp = self._front.aiohttp_protocol()
            self._aiohttp.connection_made(cast(asyncio.Transport, self.transport))
        self._aiohttp.data_received(request)

    async def _serve(self, request: LeanRequest, answer: Awaitable[web.StreamResponse]) -> None:
        try:
            response = await answer
            if isinstance(response, LeanStream):
                if not response.finished:
                    self.keep_alive = False  # cut short: the framing is broken
            elif self.stream_started:
                # An error after a stream's head went out cannot be a second answer inside
                # the chunked body: the client sees the stream end without its last chunk.
                self.keep_alive = False
            else:
                keep_alive = self.keep_alive and not self.draining
                self.send(encode_response(response, keep_alive=keep_alive))
        except asyncio.CancelledError:
            self.close()  # cancelled by a shutdown's deadline (or the client left already)
            return
        except ConnectionResetError:
            # The client left after the handler had its answer (or its stream's last chunk):
            # nobody is there to tell, and nothing went wrong here.
            self.keep_alive = False
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
        if not self.keep_alive or self.draining:
            self.close()
            return
        self._next()

    def _refuse(self, message: str, status: int) -> None:
        """Answer a request the parser could not read after the requests before it, then close:
        the rest of the byte stream cannot be read."""
        if self.transport is None or self.closed:
            return
        self.transport.pause_reading()
        self._reading_paused = True
        broken, self._incoming = self._incoming, None
        error = InvalidRequestError(message)
        queue = self._queue
        if broken is not None and broken.lean is not None and queue and queue[0] is broken:
            # Its handler answers, as for any request it cannot read: its body will never be
            # whole, so reading it raises this error.
            self.keep_alive = False
            broken.lean.refuse(error)
            return
        if broken is not None and broken in queue:  # not when answered before its body was in
            queue.remove(broken)
        self._refusal = encode_response(render(error, None, status), keep_alive=False)
        self._next()

    def _answer_refusal(self) -> None:
        if self._aiohttp is not None:
            self._aiohttp.data_received(_UNREADABLE)  # answered after what aiohttp holds
        elif self._refusal is not None:
            self.send(self._refusal)
            self.close()
        self._refusal = None

    # Shutdown (the front calls these)

    @property
    def idle(self) -> bool:
        return self._aiohttp is None and self._current is None and not self._queue

    @property
    def draining(self) -> bool:
        """The server is shutting down: answers say `Connection: close`."""
        return self._front.closing

    @property
    def busy_task(self) -> asyncio.Task[None] | None:
        return self._current

    def start_held(self) -> None:
        """Serve now, by the ordinary path, a request held for the rest of its body."""
        if self._queue and self._queue[0].held:
            self._queue[0].held = False
            self._next()

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.flush()
            self.transport.close()
