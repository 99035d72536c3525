"""One keep-alive HTTP/1.1 connection to an upstream: the socket's `asyncio.Protocol`.

It feeds every byte to one llhttp response parser (httptools) and hands the parser's callbacks to
the `LeanResponse` in flight (`lean_response.py`), which buffers body pieces for the consumer. An
answer that arrives whole in one read, framed by `Content-Length` (an unstreamed completion), is
read in one native call instead (`_native.response_head`, which declines anything llhttp should
judge); so is the head of a chunked answer (a stream) when it comes whole in one read, and then
its body by a `_native.ChunkedBody`, one call per read where llhttp would call back per header
and per event.

The read timeout is watched by one timer per connection that is re-armed only when it fires: a
timer handle per wait would cost more than the rest of a small request's parsing. This module is
on the per-request hot path, and its cost is the point of the lean transport.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import TYPE_CHECKING, Final, cast

import httptools

from sidegate._native import ChunkedBody, HeadHeaders, response_head
from sidegate.errors import UpstreamProtocolError

if TYPE_CHECKING:
    from sidegate.upstream.lean_response import LeanResponse

HEADER_BLOCK_LIMIT: Final = 64 * 1024


class _HeaderBlockTooLargeError(Exception):
    """Raised inside a parser callback to stop parsing an oversized header block at once."""


class _InterimResponseError(Exception):
    """A 101 answer: we never ask to upgrade, so the stream is no longer HTTP we can read."""


class _StrayMessageError(Exception):
    """A second answer in the same read as the first: nobody asked for it."""


class LeanConnection(asyncio.Protocol):
    """The socket side: parser callbacks land here and are forwarded to the current response."""

    __slots__ = (
        "_between_messages",
        "_chunks",
        "_decoder",
        "_head_bytes",
        "_loop",
        "_on_idle_lost",
        "_parser",
        "_raw_headers",
        "_timer",
        "_timer_when",
        "closed",
        "idle_since",
        "last_rx",
        "requests",
        "response",
        "reusable",
        "transport",
    )

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        on_idle_lost: Callable[[LeanConnection], None] | None = None,
    ) -> None:
        self._loop = loop
        # Tells the pool at once when the peer closes a connection sitting idle, so its slot
        # is free and it is never handed out.
        self._on_idle_lost = on_idle_lost
        self._parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.response: LeanResponse | None = None
        self.closed = False
        # False once the connection must not carry another request (peer said close, stray
        # bytes, a response abandoned half-read, a HEAD answer the parser could not frame).
        self.reusable = True
        self.requests = 0
        self.idle_since = 0.0
        self.last_rx = 0.0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_when = 0.0
        # Per response, reset by start(): kept here so the parser callbacks touch one object.
        self._raw_headers: list[tuple[bytes, bytes]] = []
        self._head_bytes = 0
        self._between_messages = True  # llhttp holds no part of an answer
        self._chunks: ChunkedBody | None = None  # the body being read natively, if one is
        self._decoder = ChunkedBody()  # reused for each chunked answer: `_chunks` while read

    def start(self, response: LeanResponse) -> None:
        """Make `response` the one the next bytes belong to."""
        self.response = response
        self._raw_headers = []
        self._head_bytes = 0
        self._chunks = None

    # asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.reusable = False
        self._stop_watching()
        response = self.response
        if response is not None:
            response.on_connection_lost(exc)
        elif self._on_idle_lost is not None:
            self._on_idle_lost(self)

    def eof_received(self) -> bool | None:
        self.reusable = False
        return None  # let the transport close; connection_lost() settles the response

    def data_received(self, data: bytes) -> None:
        self.last_rx = self._loop.time()
        response = self.response
        if response is None or response.complete:
            # Bytes nobody asked for: the framing can no longer be trusted.
            self.reusable = False
            self.abort()
            return
        response.received_any = True
        chunks = self._chunks
        if chunks is not None:
            self._take_chunks(response, chunks, data)
            return
        if not response.headers_done:
            if self._between_messages and not response.head_request:
                head = response_head(data, HEADER_BLOCK_LIMIT)
                if head is not None:
                    # Unpacked by hand: a call with `*head` builds a list and takes the slow path.
                    status, keep_alive, headers, head_len, chunked = head
                    self._take_head(response, data, status, keep_alive, headers, head_len, chunked)
                    return
            self._head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _HeaderBlockTooLargeError):
                self._protocol_error(response, "the upstream sent an oversized header block")
            elif isinstance(exc.__context__, _InterimResponseError):
                self._protocol_error(response, "the upstream switched protocols unasked")
            elif isinstance(exc.__context__, _StrayMessageError):
                self.abort()  # the answer itself is complete and stays good
            else:
                raise
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._protocol_error(response, f"the upstream sent malformed HTTP: {exc}")
        else:
            if not response.headers_done and self._head_bytes > HEADER_BLOCK_LIMIT:
                self._protocol_error(response, "the upstream sent an oversized header block")

    def _take_head(
        self,
        response: LeanResponse,
        data: bytes,
        status: int,
        keep_alive: bool,
        headers: HeadHeaders,
        head_len: int,
        chunked: bool,
    ) -> None:
        """What the parser callbacks would do for an answer that is all of `data`, or for a
        chunked answer's head (its body is read natively from here on)."""
        rest = data[head_len:] if len(data) > head_len else b""
        response.on_head(status, headers, alone=not rest)
        if not keep_alive:
            self.reusable = False
        if chunked:
            chunks = self._chunks = self._decoder
            chunks.reset()
            if rest:
                self._take_chunks(response, chunks, rest)
            return
        if rest:
            response.on_piece(rest)
        response.on_complete()

    def _take_chunks(self, response: LeanResponse, chunks: ChunkedBody, data: bytes) -> None:
        payload, used = chunks.feed(data)
        if payload:
            response.on_piece(payload)  # before any error: the upstream did send it
        broken = chunks.error
        if broken is not None:
            self._chunks = None
            self._protocol_error(response, f"the upstream sent a malformed chunked body: {broken}")
            return
        if chunks.done:
            self._chunks = None
            if used < len(data):
                self.abort()  # bytes nobody asked for: the answer itself is complete and good
            response.on_complete()

    # httptools callbacks (called from feed_data, so self.response is set)

    def on_message_begin(self) -> None:
        self._between_messages = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self._raw_headers.append((name, value))

    def on_headers_complete(self) -> None:
        response = self.response
        assert response is not None
        if response.complete:
            raise _StrayMessageError
        # Bytes fed so far bound the header block from above; sum it only when that bound
        # is over the limit (a large first read can hold the headers and much of the body).
        if self._head_bytes > HEADER_BLOCK_LIMIT and _block_size(self._raw_headers) > (
            HEADER_BLOCK_LIMIT
        ):
            raise _HeaderBlockTooLargeError
        status = self._parser.get_status_code()
        if status < 200:
            if status == 101:
                raise _InterimResponseError
            # 100 Continue / 103 Early Hints: the real answer follows on the same stream.
            self._raw_headers = []
            response.interim = True
            return
        response.on_headers(status, self._raw_headers)

    def on_body(self, body: bytes) -> None:
        response = self.response
        assert response is not None
        response.on_piece(body)

    def on_message_complete(self) -> None:
        response = self.response
        assert response is not None
        self._between_messages = True
        if response.interim:
            response.interim = False
            return
        if not self._parser.should_keep_alive():
            self.reusable = False
        response.on_complete()

    # helpers

    def usable(self) -> bool:
        # Every way a connection ends passes through abort(), eof_received() or
        # connection_lost(), which clear `reusable` first: no need to ask the transport.
        return self.reusable and not self.closed

    def watch(self, deadline: float) -> None:
        """Make sure the current response's idle check runs no later than `deadline`."""
        timer = self._timer
        if timer is not None:
            if self._timer_when <= deadline:
                return  # an earlier check is armed; it re-arms for the rest when it fires
            timer.cancel()
        self._timer_when = deadline
        self._timer = self._loop.call_at(deadline, self._check_idle)

    def _check_idle(self) -> None:
        self._timer = None
        response = self.response
        if response is not None:
            response.check_idle(self)

    def _stop_watching(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def abort(self) -> None:
        self.reusable = False
        self._stop_watching()
        transport = self.transport
        if transport is not None and not transport.is_closing():
            transport.abort()

    def _protocol_error(self, response: LeanResponse, message: str) -> None:
        response.fail(UpstreamProtocolError(message))
        self.abort()


def _block_size(raw_headers: list[tuple[bytes, bytes]]) -> int:
    return sum(len(name) + len(value) + 4 for name, value in raw_headers)
