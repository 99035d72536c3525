"""A request as the lean server's reader saw it, queued on its connection until answered."""

from __future__ import annotations

import contextvars
from typing import TYPE_CHECKING

from aiohttp.typedefs import Handler

from sidegate._native import HeadHeaders

if TYPE_CHECKING:
    from sidegate.early import HeadStart
    from sidegate.lean_server.messages import LeanRequest


class ParsedRequest:
    """A request as the parser saw it; `lean` is set when a hot route serves it."""

    __slots__ = (
        "body",
        "complete",
        "context",
        "early",
        "expects_continue",
        "handler",
        "headers",
        "held",
        "keep_alive",
        "lean",
        "method",
        "url",
        "version",
    )

    def __init__(
        self, method: bytes, url: bytes, headers: list[tuple[str, str]] | HeadHeaders
    ) -> None:
        self.method = method
        self.url = url
        self.headers = headers
        self.version = "1.1"
        self.keep_alive = True
        self.lean: LeanRequest | None = None
        self.handler: Handler | None = None
        # How far a hot route's handler got before its task (sidegate.early), and the context
        # it began in.
        self.early: HeadStart | None = None
        self.context: contextvars.Context | None = None
        self.held = False  # its handler waits for the whole body, to start early
        self.body: list[bytes] = []
        self.complete = False
        self.expects_continue = False

    def reserialized(self) -> bytes:
        """The request as aiohttp should see it: its body de-chunked, with its length."""
        lines = [b"%s %s HTTP/%s\r\n" % (self.method, self.url, self.version.encode())]
        headers = self.headers
        pairs = headers.items() if isinstance(headers, HeadHeaders) else headers
        for name, value in pairs:
            if name.lower() not in ("content-length", "transfer-encoding", "expect"):
                lines.append(f"{name}: {value}\r\n".encode("latin-1"))
        body = b"".join(self.body)
        if body or self.method not in (b"GET", b"HEAD", b"DELETE", b"OPTIONS"):
            lines.append(b"Content-Length: %d\r\n" % len(body))
        lines.append(b"\r\n")
        lines.append(body)
        return b"".join(lines)
