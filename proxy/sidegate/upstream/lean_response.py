"""An upstream answer read from a `LeanConnection`: status, headers, then body pieces.

Body pieces are buffered for the consumer as they arrive; the socket is paused while the consumer
lags by more than `max_buffered` bytes and resumed once it has drained to a quarter of that.
Waiting uses one future per wait, never `asyncio.wait_for` (a task per call). A relay can
instead have each piece pushed to it as it arrives (`push_body`), inside the connection's own
callback: no future, no task wake-up and no loop turn between an upstream read and the client
write.

Sidegate asks for `Accept-Encoding: identity`; an upstream that gzips (or deflates) its body
anyway is decoded here, piece by piece, so everything above reads plain bytes (the client gets
no Content-Encoding). Any other coding cannot be read: the answer fails as a protocol error,
which moves on to the next endpoint.
"""

from __future__ import annotations

import asyncio
import zlib
from collections import deque
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Final

from multidict import CIMultiDict, CIMultiDictProxy

from sidegate._native import HeadHeaders
from sidegate.errors import (
    UpstreamError,
    UpstreamProtocolError,
    UpstreamResetError,
    UpstreamTimeoutError,
)

if TYPE_CHECKING:
    from sidegate.upstream.lean_connection import LeanConnection
    from sidegate.upstream.lean_pool import EndpointPool
    from sidegate.upstream.transport import HeadHook


class LeanResponse:
    """An upstream answer: status and headers once they arrived, then the body as pieces.

    Implements `sidegate.upstream.transport.UpstreamResponse`; the response is its own body
    iterator, so no async generator (and no generator finaliser) is created per request.
    """

    __slots__ = (
        "_buffered",
        "_conn",
        "_decoder",
        "_high_water",
        "_loop",
        "_low_water",
        "_paused",
        "_pieces",
        "_pool",
        "_read_timeout",
        "_sink",
        "_sink_error",
        "_wait_start",
        "_waiter",
        "_wake_on_piece",
        "complete",
        "error",
        "head_hook",
        "head_request",
        "headers",
        "headers_done",
        "interim",
        "received_any",
        "status",
    )

    def __init__(
        self,
        conn: LeanConnection,
        pool: EndpointPool,
        *,
        read_timeout: float,
        max_buffered: int,
        head_request: bool,
    ) -> None:
        self._conn: LeanConnection | None = conn
        self._pool = pool
        self._loop = pool.loop
        self._read_timeout = read_timeout
        self._high_water = max_buffered
        self._low_water = max_buffered // 4
        self._pieces: deque[bytes] = deque()
        self._buffered = 0
        self._paused = False
        self._waiter: asyncio.Future[None] | None = None
        self._sink: Callable[[bytes], bool] | None = None
        self._sink_error: Exception | None = None
        self._wait_start = 0.0
        self._wake_on_piece = False
        self._decoder: zlib._Decompress | _Dropped | None = None  # a body encoded anyway
        self.head_request = head_request
        self.status = 0
        # Declared as the interface's type; the value is a CIMultiDict (getall works).
        self.headers: Mapping[str, str] = _EMPTY_HEADERS
        self.headers_done = False
        self.interim = False
        self.complete = False
        self.received_any = False
        self.error: UpstreamError | None = None
        self.head_hook: HeadHook | None = None

    # UpstreamResponse

    def iter_body(self) -> LeanResponse:
        return self

    def __aiter__(self) -> LeanResponse:
        return self

    async def __anext__(self) -> bytes:
        while True:
            pieces = self._pieces
            if pieces:
                piece = pieces.popleft()
                self._buffered -= len(piece)
                if self._paused and self._buffered <= self._low_water:
                    self._resume()
                return piece
            if self.error is not None:
                self.close()
                raise self.error
            if self.complete:
                self.close()
                raise StopAsyncIteration
            await self.wait()

    async def push_body(
        self, sink: Callable[[bytes], bool], idle: Callable[[], None] | None = None
    ) -> bool:
        error, self._sink_error = self._sink_error, None
        if error is not None:  # raised by a head hook's sink, before any push
            raise error
        while True:
            pieces = self._pieces
            while pieces:
                piece = pieces.popleft()
                self._buffered -= len(piece)
                if not sink(piece):
                    return False
            if self.error is not None:
                self.close()
                raise self.error
            if self.complete:
                self.close()
                return True
            if self._paused:
                self._resume()
            if idle is not None:
                idle()
            self._sink = sink
            try:
                await self.wait()  # woken by the body's end or failure, or by the sink's refusal
            finally:
                refused = self._sink is None  # `on_piece` let go of it
                self._sink = None
            if refused:
                error, self._sink_error = self._sink_error, None
                if error is not None:
                    raise error
                return False

    async def read(self) -> bytes:
        body = self.read_now()
        if body is not None:
            return body
        if self.error is not None:
            self.close()
            raise self.error
        return b"".join([piece async for piece in self])

    def read_now(self) -> bytes | None:
        if not self.complete or self.error is not None:
            return None
        pieces = self._pieces
        body = pieces.popleft() if len(pieces) == 1 else b"".join(pieces)
        pieces.clear()
        self._buffered = 0
        self.close()
        return body

    def close(self) -> None:
        conn = self._conn
        if conn is None:
            return
        self._conn = None
        conn.response = None
        if not self.complete or self.error is not None or self.head_request:
            # Never pool a connection whose framing is unknown: discard it.
            conn.reusable = False
        elif self._paused:
            self._resume_conn(conn)
        self._pool.release(conn)

    # used by the transport

    def detach(self) -> LeanConnection | None:
        """Give up the connection without releasing it (the caller reuses its pool slot)."""
        conn = self._conn
        self._conn = None
        if conn is not None:
            conn.response = None
        return conn

    @property
    def closed_before_answer(self) -> bool:
        """The peer closed without sending a byte: the request may be retried elsewhere."""
        return isinstance(self.error, UpstreamResetError) and not self.received_any

    # called by LeanConnection

    def on_headers(self, status: int, raw_headers: list[tuple[bytes, bytes]]) -> None:
        self.on_head(status, [(n.decode("latin-1"), v.decode("latin-1")) for n, v in raw_headers])

    def on_head(
        self, status: int, headers: list[tuple[str, str]] | HeadHeaders, alone: bool = False
    ) -> None:
        """`alone`: the read that brought the head brought none of the body."""
        self.status = status
        # HeadHeaders is registered as a Mapping, which its stub cannot say.
        self.headers = headers if type(headers) is HeadHeaders else CIMultiDict(headers)  # type: ignore[assignment]
        coding = self.headers.get("Content-Encoding")
        if coding is not None and not self._decode(coding):
            return
        self.headers_done = True
        if self.head_request:
            # llhttp cannot be told the request was HEAD and would wait for Content-Length
            # bytes that never come; the answer is complete now, the connection unusable.
            self.complete = True
            conn = self._conn
            if conn is not None:
                conn.reusable = False
        hook = self.head_hook
        self.head_hook = None
        if hook is not None and alone:
            self._sink = hook(self)
            if self._sink is not None:
                # The hook relays the events itself, and the loop's next read is most often the
                # first of them: the task, woken now, would resume its chain of coroutines (on
                # a core that idled, bench/README.md) ahead of it. It wakes after that piece.
                self._wake_on_piece = True
                return
        self._wake()
        if hook is not None and not alone:  # after the wake: what it leaves for the turn's
            self._sink = hook(self)  # end, the task (woken first) can still join; the pieces
            # that follow in this callback go to it

    def on_piece(self, piece: bytes) -> None:
        if self.complete:
            return
        if self._decoder is not None:
            try:
                piece = self._decoder.decompress(piece)
            except zlib.error:
                self._decoder = _Dropped()  # what else comes in this read goes nowhere
                self._unreadable("the upstream sent a body its Content-Encoding does not decode")
                return
            if not piece:
                return
        sink = self._sink
        if sink is not None:
            try:
                go_on = sink(piece)
            except Exception as error:  # raised in the parser's callback, it would kill the
                self._sink_error = error  # connection: `push_body` raises it instead
                go_on = False
            if not go_on:
                self._sink = None
                self._pause()  # the relay's reader lags: read no more until it caught up
                self._wake()
            elif self._wake_on_piece:
                self._wake()
            return
        self._pieces.append(piece)
        self._buffered += len(piece)
        if not self._paused and self._buffered > self._high_water:
            self._pause()
        if self._waiter is not None:
            self._wake()

    def on_complete(self) -> None:
        decoder, self._decoder = self._decoder, None
        if decoder is not None:
            tail = decoder.flush()
            if tail:
                self.on_piece(tail)
        self.complete = True
        if self._waiter is not None:
            self._wake()

    def on_connection_lost(self, exc: Exception | None) -> None:
        if self.complete or self.error is not None:
            return
        if self.headers_done and exc is None and self._close_delimited():
            self.complete = True
        elif not self.received_any:
            self.error = UpstreamResetError(
                "the upstream closed the connection before answering", after_first_byte=False
            )
        else:
            self.error = UpstreamResetError(
                "the upstream connection was lost mid-response", after_first_byte=True
            )
        self._wake()

    def _close_delimited(self) -> bool:
        """Without a length or chunked coding, the body ends where the connection does."""
        headers = self.headers
        return (
            "Content-Length" not in headers
            and "chunked" not in headers.get("Transfer-Encoding", "").lower()
        )

    def _decode(self, coding: str) -> bool:
        """Whether the body in `coding` can be read (decoded from here on, when it is not
        identity); when not, the answer fails."""
        name = coding.strip().lower()
        if name in ("", "identity"):
            return True
        if name in ("gzip", "x-gzip", "deflate"):
            self._decoder = zlib.decompressobj(32 + zlib.MAX_WBITS)  # gzip or zlib, by header
            return True
        self._unreadable(f"the upstream sent a body in {name!r} coding, though asked for identity")
        return False

    def _unreadable(self, message: str) -> None:
        conn = self._conn
        if conn is not None:
            conn.abort()
        self.fail(UpstreamProtocolError(message))

    def fail(self, error: UpstreamError) -> None:
        if self.error is None and not self.complete:
            self.error = error
        self._wake()

    # waiting

    def wait(self) -> asyncio.Future[None]:
        """A future done when more of the answer (or its failure) arrives, under the read
        timeout. A plain method, not a coroutine: every await of the request passes through
        each coroutine between it and the task, twice, so the caller awaits the future
        itself."""
        loop = self._loop
        waiter = loop.create_future()
        self._waiter = waiter
        self._wait_start = now = loop.time()
        conn = self._conn
        if conn is not None:
            conn.watch(now + self._read_timeout)
        return waiter

    def _wake(self) -> None:
        self._wake_on_piece = False  # any wake is the one a head hook deferred
        waiter = self._waiter
        if waiter is not None:
            self._waiter = None
            if not waiter.done():  # (cancelled with the request)
                waiter.set_result(None)

    def check_idle(self, conn: LeanConnection) -> None:
        """Called by the connection's timer: fail the wait if nothing came for too long."""
        if self._waiter is None or self._waiter.done() or self._conn is not conn:
            return
        # Bytes that arrived while the consumer was busy elsewhere do not count as activity.
        deadline = max(conn.last_rx, self._wait_start) + self._read_timeout
        if deadline > self._loop.time():
            conn.watch(deadline)
            return
        what = "between body pieces" if self.headers_done else "for the response to start"
        self.fail(
            UpstreamTimeoutError(f"the upstream sent nothing for {self._read_timeout:g}s {what}")
        )
        conn.abort()

    def _pause(self) -> None:
        conn = self._conn
        if not self._paused and conn is not None and conn.transport is not None:
            conn.transport.pause_reading()
            self._paused = True

    def _resume(self) -> None:
        conn = self._conn
        if conn is not None:
            self._resume_conn(conn)

    def _resume_conn(self, conn: LeanConnection) -> None:
        self._paused = False
        if conn.transport is not None and not conn.closed:
            conn.transport.resume_reading()


_EMPTY_HEADERS: Final[Mapping[str, str]] = CIMultiDictProxy(CIMultiDict())


class _Dropped:
    """The decoder of a body that failed to decode: the rest of it is dropped."""

    def decompress(self, data: bytes) -> bytes:
        return b""

    def flush(self) -> bytes:
        return b""
