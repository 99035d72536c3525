"""The request a hot-route handler sees on the lean server, and the answers it writes.

`LeanRequest` offers the parts of `aiohttp.web.Request` Sidegate's middlewares and pipeline use
(headers, `read()`, per-request state, `path`, `app`, `remote`), over a request httptools parsed.
Handlers answer with an ordinary `web.Response`, serialized here in one write, or stream
through `open_stream`, which gives an aiohttp `StreamResponse` on aiohttp and a chunked
`LeanStream` on the lean server: the pipeline does not know which server it runs under.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator, Mapping, MutableMapping
from http import HTTPStatus
from typing import TYPE_CHECKING, Any, Final

from aiohttp import web
from multidict import CIMultiDictProxy

from sidegate._native import HeadHeaders, chunk_frame, header_block, http_date_line
from sidegate.upstream.headers import lines_headers

if TYPE_CHECKING:
    from sidegate.lean_server.connection import LeanConnection

_NOT_COPIED: Final = frozenset({"content-length", "transfer-encoding", "connection", "date"})


class _DateLine:
    """`Date: ...\\r\\n`, formatted once per second."""

    __slots__ = ("_line", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._line = b""

    def line(self) -> bytes:
        now = int(time.time())
        if now != self._second:
            self._second = now
            self._line = http_date_line(now)
        return self._line


# The bound method: calling an instance goes through `__call__`'s slower slot.
date_line: Final = _DateLine().line


def _status_line(status: int, reason: str) -> bytes:
    return f"HTTP/1.1 {status} {reason}\r\n".encode("latin-1")


def _check_block(block: str, lines: int) -> None:
    # One scan for a line break smuggled into a name or value (response splitting).
    if block.count("\n") != lines or block.count("\r") != lines:
        raise ValueError("a response header holds a line break")


def head(status: int, reason: str, headers: Mapping[str, str], framing: bytes) -> bytes:
    """Status line and header block; `framing` holds the length or chunking header(s)."""
    lines = [
        f"{name}: {value}\r\n" for name, value in headers.items() if name.lower() not in _NOT_COPIED
    ]
    block = "".join(lines)
    _check_block(block, len(lines))
    return b"".join(
        (
            _status_line(status, reason),
            block.encode(),
            date_line(),
            framing,
            b"\r\n",
        )
    )


def encode_response(response: web.StreamResponse, *, keep_alive: bool) -> bytes:
    """A whole `web.Response` (or `LeanAnswer`) as bytes on the wire."""
    answer: object = response  # (typing.cast is a call, on every request)
    if type(answer) is LeanAnswer:
        return answer.encode(keep_alive=keep_alive)
    body = getattr(response, "body", None)
    if body is None:
        body = b""
    if not isinstance(body, (bytes, bytearray)):
        raise TypeError(f"the lean server sends bytes bodies, not {type(body).__name__}")
    headers = response.headers
    framing = b"Content-Length: %d\r\n" % len(body)
    if body and "Content-Type" not in headers:
        framing += b"Content-Type: application/octet-stream\r\n"
    if not keep_alive:
        framing += b"Connection: close\r\n"
    return head(response.status, response.reason, headers, framing) + body


class LeanAnswer:
    """A whole relayed answer on the lean server, without `web.Response`'s machinery: its
    headers stay the plain dict the pipeline built (names as the upstream spelled them, already
    stripped of what the server itself frames), encoded once by the connection.

    It offers what the middlewares use of a response (`status`, `headers`, `prepared`);
    `lines` are more header lines, already written (the limits' `x-ratelimit-*`)."""

    __slots__ = ("body", "headers", "lines", "status")
    prepared: Final = False

    def __init__(
        self, status: int, headers: dict[str, str], body: bytes, lines: bytes = b""
    ) -> None:
        self.status = status
        self.headers = headers
        self.body = body
        self.lines = lines

    @property
    def reason(self) -> str:
        return _reason(self.status)

    def encode(self, *, keep_alive: bool) -> bytes:
        headers = self.headers
        framing = b"Content-Length: %d\r\n" % len(self.body)
        if self.body and not _names_content_type(headers):
            framing += b"Content-Type: application/octet-stream\r\n"
        if not keep_alive:
            framing += b"Connection: close\r\n"
        line = _answer_line(self.status)
        block = header_block(headers)
        return b"".join((line, block, self.lines, date_line(), framing, b"\r\n", self.body))


_OK_LINE: Final = b"HTTP/1.1 200 OK\r\n"
# A stream's framing header(s), with the blank line that ends its head.
_CHUNKED: Final = b"Transfer-Encoding: chunked\r\n\r\n"
_CHUNKED_CLOSING: Final = b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
_CLOSING: Final = b"Connection: close\r\n\r\n"


def _answer_line(status: int) -> bytes:
    return _OK_LINE if status == 200 else _status_line(status, _reason(status))


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""


def _names_content_type(headers: dict[str, str]) -> bool:
    if "Content-Type" in headers or "content-type" in headers:
        return True
    return any(name.lower() == "content-type" for name in headers)


def whole_answer(
    request: web.Request, status: int, headers: dict[str, str], body: bytes, lines: bytes = b""
) -> web.StreamResponse:
    """A whole answer for whichever server the request came in on. `headers` must hold none
    of the framing headers (length, chunking, connection, date): the server writes those.
    `lines` are more headers as `name: value\\r\\n` lines (the lean server writes them as
    they are)."""
    lean: object = request
    if isinstance(lean, LeanRequest):
        # It has the parts of a response the middlewares and the lean server use.
        answer: web.StreamResponse = LeanAnswer(status, headers, body, lines)  # type: ignore[assignment]
        return answer
    if lines:
        headers.update(lines_headers(lines))
    return web.Response(body=body, status=status, headers=headers)


def body_in_hand(request: web.Request) -> bytes | None:
    """The request's whole body when the lean server already holds it (a plain request
    usually comes whole), without `read()`'s coroutine; else None."""
    lean: object = request
    return lean.whole_body() if type(lean) is LeanRequest else None


class LeanRequest(MutableMapping[str, Any]):
    """One parsed request; its body may still be arriving when the handler starts."""

    __slots__ = (
        "_body",
        "_complete",
        "_state",
        "_waiter",
        "app",
        "connection",
        "headers",
        "method",
        "path",
        "refusal",
        "remote",
    )

    def __init__(
        self,
        connection: LeanConnection,
        app: web.Application,
        method: str,
        path: str,
        headers: CIMultiDictProxy[str] | HeadHeaders,
        remote: str | None,
    ) -> None:
        self.connection = connection
        self.app = app
        self.method = method
        self.path = path
        self.headers = headers
        self.remote = remote
        # What `read()` raises instead of giving the body: it is over the limit, or unreadable.
        self.refusal: Exception | None = None
        self._body: list[bytes] = []
        self._complete = False
        self._waiter: asyncio.Future[None] | None = None
        self._state: dict[str, Any] = {}

    def add_body(self, piece: bytes) -> None:
        self._body.append(piece)

    def finish_body(self) -> None:
        self._complete = True
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_result(None)

    async def read(self) -> bytes:
        if not self._complete:  # a refused body is complete: nothing more of it is kept
            self._waiter = asyncio.get_running_loop().create_future()
            await self._waiter
        if self.refusal is not None:
            raise self.refusal
        body = self.whole_body()
        assert body is not None  # complete, and not refused
        return body

    def whole_body(self) -> bytes | None:
        """The body when all of it is in (and within the limit), as `read()` would give it;
        else None."""
        if not self._complete or self.refusal is not None:
            return None
        body = self._body
        return body[0] if len(body) == 1 else b"".join(body)

    def refuse_body(self, limit: int, size: int) -> None:
        """The body outgrew the limit: `read()` raises 413, and the rest is never kept."""
        self.refuse(web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=size))

    def refuse(self, error: Exception) -> None:
        """`read()` raises `error` (a body over the limit, or one whose framing is broken)
        rather than give the body; the rest is never kept."""
        self.refusal = error
        self._body.clear()
        self.finish_body()

    # Per-request state, as on aiohttp's request (`request[KEY]`).
    def __getitem__(self, key: str) -> Any:
        return self._state[key]

    def __setitem__(self, key: str, value: Any) -> None:
        self._state[key] = value

    def __delitem__(self, key: str) -> None:
        del self._state[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._state)

    def __len__(self) -> int:
        return len(self._state)

    def __contains__(self, key: object) -> bool:
        return key in self._state

    def get(self, key: str, default: Any = None) -> Any:
        return self._state.get(key, default)


class LeanStream:
    """A streamed answer written straight to the connection, chunked (close-delimited for an
    HTTP/1.0 client). Already sent when the handler gets it, like a prepared StreamResponse.

    Like `LeanAnswer` it offers what the middlewares and the server use of a response
    (`status`, `headers`, `prepared`) without `web.StreamResponse`'s machinery: a stream's head
    goes out from the upstream connection's callback, and building a `StreamResponse` there
    (its header multidict, cookies, compression state) was the largest cost before the client's
    first event."""

    __slots__ = ("_chunked", "_connection", "finished", "status")

    def __init__(self, connection: LeanConnection, status: int, head: bytes) -> None:
        """`head`: the whole head, ended by `stream_head_tail(connection)`; written now."""
        self.status = status
        self._connection = connection
        self._chunked = connection.http11
        if not self._chunked:
            connection.keep_alive = False  # the stream ends when the connection does
        connection.send_soon(head)
        connection.stream_started = True
        self.finished = False

    @property
    def headers(self) -> dict[str, str]:
        """Sent already: a middleware that checks `prepared` first never adds to these."""
        return {}

    @property
    def prepared(self) -> bool:
        return True

    async def prepare(self, request: web.BaseRequest) -> None:
        return None

    async def write(self, data: bytes | bytearray | memoryview) -> None:
        if not data:
            return
        piece = bytes(data)
        if self._chunked:
            piece = chunk_frame(piece)
        connection = self._connection
        connection.send_soon(piece)  # raises once the client has gone
        if connection.writing_paused:  # only then: each drain() call creates a coroutine
            await connection.drain()

    def write_now(self, data: bytes) -> bool:
        """Write `data` from a plain callback: at once, or with a write already pending in this
        turn (a canned stream's head, events and last chunk then go in one system call); False
        when the client's buffer is full or the client has gone: await `drain()` before writing
        more (it raises `ConnectionResetError` for a client that has gone)."""
        if self._chunked:
            data = chunk_frame(data)  # natively: bytes' % parses its format each call
        return self._connection.send_joining(data)

    def end_now(self, data: bytes) -> bool:
        """`write_now` of the stream's last events with the body's end joined to them: the
        client has the whole answer now, whenever the upstream gets round to ending its own
        body. Nothing may be written after it."""
        if self._chunked:
            data = chunk_frame(data) + b"0\r\n\r\n"
        self.finished = True
        return self._connection.send_joining(data)

    def write_through(self, data: bytes) -> bool:
        """`write_now`, with what waits for the end of this turn (the head) sent now, in the
        same write."""
        if self._chunked:
            data = chunk_frame(data)
        return self._connection.send_through(data)

    def send_pending(self) -> None:
        """Send now what waits for the end of this turn of the loop (the head, events joined to
        it): for a relay about to wait on its upstream, the end of the turn is later."""
        self._connection.flush()

    async def drain(self) -> None:
        connection = self._connection
        connection.writable()  # raises for a client that has gone, or is going
        await connection.drain()

    async def write_eof(self, data: bytes = b"") -> None:
        if self.finished:
            return
        if data:
            await self.write(data)
        self.finished = True
        connection = self._connection
        if self._chunked:
            connection.send_soon(b"0\r\n\r\n")
        if connection.writing_paused or connection.closed:
            await connection.drain()


def stream_head_tail(connection: LeanConnection) -> bytes:
    """What ends a stream's head: the date, the framing (chunked; close-delimited for an
    HTTP/1.0 client), `Connection: close` when the connection ends with the stream, and the
    blank line."""
    if not connection.http11:
        return date_line() + _CLOSING
    closing = connection.draining or not connection.keep_alive  # the client asked, say
    return date_line() + (_CHUNKED_CLOSING if closing else _CHUNKED)


async def open_stream(
    request: web.Request, status: int, headers: dict[str, str], lines: bytes = b""
) -> web.StreamResponse:
    """Start a streamed answer on whichever server the request came in on (`headers` and
    `lines` as for `whole_answer`)."""
    lean: object = request
    if isinstance(lean, LeanRequest):
        connection = lean.connection
        head = b"".join(
            (_answer_line(status), header_block(headers), lines, stream_head_tail(connection))
        )
        # It has the parts of a response the middlewares and the lean server use.
        stream: web.StreamResponse = LeanStream(connection, status, head)  # type: ignore[assignment]
        return stream
    if lines:
        headers.update(lines_headers(lines))
    response = web.StreamResponse(status=status, headers=headers)
    await response.prepare(request)
    return response


def open_relayed_stream(
    request: web.Request,
    status: int,
    upstream_headers: Mapping[str, str],
    request_id: str,
    cache: str,
    overhead_seconds: float,
    lines: bytes,
) -> LeanStream | None:
    """On the lean server, the stream relaying an event stream whose head the native reader
    took: its whole head (the upstream's headers the client gets, no caching, the gateway's
    request id, cache status and overhead, then the limits' `lines`) made in one native call.
    None elsewhere (then `open_stream`), or when the answer is no event stream."""
    lean: object = request
    upstream: object = upstream_headers
    if type(lean) is not LeanRequest or type(upstream) is not HeadHeaders:
        return None
    connection = lean.connection
    head = upstream.event_stream_head(
        _answer_line(status),
        request_id,
        cache,
        overhead_seconds,
        lines,
        stream_head_tail(connection),
    )
    return None if head is None else LeanStream(connection, status, head)
