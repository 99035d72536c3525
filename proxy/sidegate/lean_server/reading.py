"""The reading half of a lean client connection: requests as they come in, read whole by the
native reader (and begun at once, `sidegate.early`) or by llhttp's callbacks, and queued in
order for the connection (`sidegate.lean_server.connection.LeanConnection`) to start.
"""

from __future__ import annotations

import contextvars
from collections import deque
from typing import TYPE_CHECKING, Final

import httptools
from aiohttp.typedefs import Handler

from sidegate._native import request_head
from sidegate.early import HeadStart
from sidegate.inspection import INLINE_MAX_BYTES
from sidegate.lean_server.messages import LeanRequest
from sidegate.lean_server.parsed import ParsedRequest
from sidegate.lean_server.writing import ClientWriter
from sidegate.upstream.headers import ClientHeaders

if TYPE_CHECKING:
    from sidegate.lean_server.front import Front

HEADER_BLOCK_LIMIT: Final = 64 * 1024
PIPELINE_DEPTH: Final = 16  # requests queued on one connection before it stops reading


class HeadOverLimitError(Exception):
    pass


class RequestReader(ClientWriter):
    """Reads a connection's requests, which the connection starts (`_next`). The state in its
    slots is the reading's own; the connection sets the rest of what is declared below. (It
    subclasses the writing half only because two bases of a class cannot both have slots.)"""

    __slots__ = (
        "_between_messages",
        "_body_size",
        "_head_size",
        "_incoming",
        "_raw_headers",
        "_reading_paused",
        "_to_aiohttp",
        "_upgrade_refused",
        "_url",
        "keep_alive",
    )

    keep_alive: bool
    _front: Front
    _parser: httptools.HttpRequestParser
    _queue: deque[ParsedRequest]
    _incoming: ParsedRequest | None
    _between_messages: bool
    _url: bytes
    _raw_headers: list[tuple[str, str]]
    _head_size: int
    _body_size: int
    _reading_paused: bool
    _to_aiohttp: bool
    _upgrade_refused: bool
    _refusal: bytes | None
    _remote: str | None

    def _next(self) -> None:
        """Start the request at the head of the queue, if it can start (the connection's)."""
        raise NotImplementedError

    def _start_lean(self, parsed: ParsedRequest) -> LeanRequest:
        """The request its handler reads (the connection's: the request holds it)."""
        raise NotImplementedError

    def _take_plain(self, data: bytes) -> bytes:
        """Serve the whole plain requests for hot routes at the front of `data`, as the parser
        callbacks would; the rest is llhttp's."""
        front = self._front
        while data:
            plain = request_head(data, HEADER_BLOCK_LIMIT)
            if plain is None:
                return data
            url, keep_alive, headers, head_len, length = plain
            path = url.partition(b"?")[0]
            handler = front.hot_routes.get(path)
            if handler is None or length > front.max_body_bytes:
                return data
            end = head_len + length
            body = data[head_len:end]
            # With nothing before it, it may go upstream before it has any object of its own.
            early = self._start_early(path, headers, body) if not self._queue else None
            parsed = ParsedRequest(b"POST", url, headers)
            parsed.keep_alive = keep_alive
            if early is not None:
                parsed.context, parsed.early = early
            self._take(parsed, handler, body)
            data = data[end:]
            if self.closed or self._refusal is not None:
                return b""
        return data

    # Parser callbacks

    def on_message_begin(self) -> None:
        self._between_messages = False
        self._url = b""
        self._raw_headers = []
        self._head_size = 0
        self._body_size = 0

    def on_url(self, url: bytes) -> None:
        self._url += url
        self._head_size += len(url)
        if self._head_size > HEADER_BLOCK_LIMIT:
            raise HeadOverLimitError

    def on_header(self, name: bytes, value: bytes) -> None:
        # latin-1 keeps every byte as it came (and gives it back when re-serialized).
        self._raw_headers.append((name.decode("latin-1"), value.decode("latin-1")))
        self._head_size += len(name) + len(value) + 4
        if self._head_size > HEADER_BLOCK_LIMIT:
            raise HeadOverLimitError

    def on_headers_complete(self) -> None:
        parser = self._parser
        if parser.should_upgrade() and any(
            (n.lower() == "content-length" and v.strip() != "0") or n.lower() == "transfer-encoding"
            for n, v in self._raw_headers
        ):
            # llhttp would read the body as the upgraded protocol's bytes; it cannot be served.
            self._upgrade_refused = True
            return
        parsed = ParsedRequest(parser.get_method(), self._url, self._raw_headers)
        parsed.version = parser.get_http_version()
        parsed.keep_alive = parser.should_keep_alive()
        handler = None
        if not self._to_aiohttp and parsed.method == b"POST":
            handler = self._front.hot_routes.get(parsed.url.partition(b"?")[0])
        if parsed.version == "1.1":
            expect = next((v for n, v in self._raw_headers if n.lower() == "expect"), None)
            parsed.expects_continue = expect is not None and expect.lower() == "100-continue"
        self._take(parsed, handler)

    def _take(
        self, parsed: ParsedRequest, handler: Handler | None, whole: bytes | None = None
    ) -> None:
        """A request whose head is in (`whole`: with all of its body, from the native reader):
        queue it, and start it when it is a hot route's."""
        self._queue.append(parsed)
        parsed.handler = handler
        if handler is None:
            self._incoming = parsed
            self._to_aiohttp = True
        elif whole is None:
            self._incoming = parsed
            lean = self._start_lean(parsed)
            declared = lean.headers.get("Content-Length") or ""
            if (
                len(self._queue) == 1
                and declared.isdigit()
                and int(declared) <= INLINE_MAX_BYTES  # a larger body does not start early
                and lean.refusal is None
                and not parsed.expects_continue
                and not self._front.closing
                and self._front.early_starts.get(parsed.url.partition(b"?")[0]) is not None
            ):
                # A client that sends its body after the head (the openai SDK does): started
                # once the body is in, so that it can start early too.
                parsed.held = True
                return
        else:
            lean = self._start_lean(parsed)
            if whole:
                lean.add_body(whole)
            lean.finish_body()
            parsed.complete = True
        if len(self._queue) == 1:
            self._next()
        elif len(self._queue) > PIPELINE_DEPTH and self.transport is not None:
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
            parsed.body.append(body)
            if self._body_size > limit:
                # Handed over with the part in hand, over the limit already: aiohttp refuses it
                # as it refuses any such body (the app's 413, with its request ID). The rest is
                # read here and dropped, so the connection can carry on.
                self._incoming = None
                parsed.complete = True
                if self._queue[0] is parsed:
                    self._next()
            return
        if lean.refusal is not None:
            return
        lean.add_body(body)
        if self._body_size > limit:
            lean.refuse_body(limit, self._body_size)
            self.keep_alive = False  # the rest of the body is never read
            if parsed.held:  # it waits no more: its answer is a 413
                parsed.held = False
                self._next()

    def on_message_complete(self) -> None:
        self._between_messages = True
        parsed = self._incoming
        if parsed is None:
            return
        self._incoming = None
        parsed.complete = True
        lean = parsed.lean
        if lean is not None:
            lean.finish_body()
            if parsed.held:
                parsed.held = False
                body = lean.whole_body()
                path = parsed.url.partition(b"?")[0]
                early = None if body is None else self._start_early(path, lean.headers, body)
                if early is not None:
                    parsed.context, parsed.early = early
                self._next()
        elif self._queue and self._queue[0] is parsed:
            self._next()

    def _start_early(
        self, path: bytes, headers: ClientHeaders, body: bytes
    ) -> tuple[contextvars.Context, HeadStart] | None:
        """For a whole request with nothing before it on this connection: its hot route's
        start (sidegate.early), in the context its task will run in; None when it has none,
        or did nothing. `path`: the request target without its query."""
        door = self._front.early_starts.get(path)
        if door is None:
            return None
        context = contextvars.copy_context()
        early = context.run(door.start_early, headers, body)
        return None if early is None else (context, early)
