"""One keep-alive HTTP/1.1 connection to an upstream: the socket's `asyncio.Protocol`.

It feeds every byte to one llhttp response parser (httptools) and hands the parser's callbacks to
the `LeanResponse` in flight (`lean_response.py`), which buffers body pieces for the consumer.

The read timeout is watched by one timer per connection that is re-armed only when it fires: a
timer handle per wait would cost more than the rest of a small request's parsing. This module is
on the per-request hot path, and its cost is the point of the lean transport.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Final, cast

import httptools

from sidegate.errors import UpstreamProtocolError

if TYPE_CHECKING:
    from sidegate.upstream.lean_response import LeanResponse

HEADER_BLOCK_LIMIT: Final = 64 * 1024


class _HeaderBlockTooLargeError(Exception):
    """Raised inside a parser callback to stop parsing an oversized header block at once."""


class _InterimResponseError(Exception):
    """A 101 answer: we never ask to upgrade, so the stream is no longer HTTP we can read."""


class LeanConnection(asyncio.Protocol):
    """The socket side: parser callbacks land here and are forwarded to the current response."""

    __slots__ = (
        "_loop",
        "_parser",
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

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
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

    def data_received(self, data: bytes) -> None:
        self.last_rx = self._loop.time()
        response = self.response
        if response is None or response.complete:
            # Bytes nobody asked for: the framing can no longer be trusted.
            self.reusable = False
            self.abort()
            return
        response.received_any = True
        if not response.headers_done:
            response.head_bytes += len(data)
        try:
            self._parser.feed_data(data)
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _HeaderBlockTooLargeError):
                self._protocol_error(response, "the upstream sent an oversized header block")
            elif isinstance(exc.__context__, _InterimResponseError):
                self._protocol_error(response, "the upstream switched protocols unasked")
            else:
                raise
        except (httptools.HttpParserError, httptools.HttpParserUpgrade) as exc:
            self._protocol_error(response, f"the upstream sent malformed HTTP: {exc}")
        else:
            if not response.headers_done and response.head_bytes > HEADER_BLOCK_LIMIT:
                self._protocol_error(response, "the upstream sent an oversized header block")

    # httptools callbacks (called from feed_data, so self.response is set)

    def on_message_begin(self) -> None:
        response = self.response
        if response is not None and response.complete:
            self.reusable = False

    def on_header(self, name: bytes, value: bytes) -> None:
        response = self.response
        assert response is not None
        response.raw_headers.append((name.decode("latin-1"), value.decode("latin-1")))
        response.header_bytes += len(name) + len(value) + 4

    def on_headers_complete(self) -> None:
        response = self.response
        assert response is not None
        status = self._parser.get_status_code()
        if response.header_bytes > HEADER_BLOCK_LIMIT:
            raise _HeaderBlockTooLargeError
        if status < 200:
            if status == 101:
                raise _InterimResponseError
            # 100 Continue / 103 Early Hints: the real answer follows on the same stream.
            response.raw_headers.clear()
            response.header_bytes = 0
            response.interim = True
            return
        response.on_headers(status, self._parser.get_http_version())

    def on_body(self, body: bytes) -> None:
        response = self.response
        assert response is not None
        response.on_piece(body)

    def on_message_complete(self) -> None:
        response = self.response
        assert response is not None
        if response.interim:
            response.interim = False
            return
        if not self._parser.should_keep_alive():
            self.reusable = False
        response.on_complete()

    # helpers

    def usable(self) -> bool:
        transport = self.transport
        return (
            self.reusable
            and not self.closed
            and transport is not None
            and not transport.is_closing()
        )

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
