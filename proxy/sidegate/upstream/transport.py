"""The one small interface every upstream transport implements.

Send a request; get the status, the headers and an async iterator of body pieces. Routes and
policy see only this, so the general-purpose client can be swapped for a leaner one.

Errors are raised as `sidegate.errors.UpstreamError` subclasses only:
- `UpstreamConnectError`: refused, unreachable, DNS or TLS handshake failure (nothing was sent);
- `UpstreamTimeoutError`: connect, first-byte (`read_timeout` waiting for the status line) or
  idle (`read_timeout` between body pieces) timeout;
- `UpstreamResetError(after_first_byte=...)`: the connection dropped;
- `UpstreamProtocolError`: the upstream spoke malformed HTTP.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from sidegate.upstream.headers import ClientHeaders, GatewayHeaders


@dataclass(frozen=True, slots=True)
class Timeouts:
    """Per-attempt limits. There is deliberately no total: long streams must not be cut."""

    connect: float = 10.0
    read: float = 60.0  # waiting for the first byte, and then between body pieces


class UpstreamResponse(Protocol):
    status: int
    headers: Mapping[str, str]  # case-insensitive lookup

    def iter_body(self) -> AsyncIterator[bytes]:
        """Body pieces as they arrive (not re-chunked); ends when the body is complete."""
        ...

    async def read(self) -> bytes:
        """The whole body."""
        ...

    def read_now(self) -> bytes | None:
        """The whole body when all of it has arrived, taken as `read` takes it; else None,
        without waiting. A whole answer usually comes with its head, and `read` is a
        coroutine."""
        ...

    async def push_body(
        self, sink: Callable[[bytes], bool], idle: Callable[[], None] | None = None
    ) -> bool:
        """Hand each body piece to `sink` in order, as soon as it arrives (the lean transport
        calls it from the connection's own callback, so `sink` must not block and should not
        raise). Returns True once the body has ended; False as soon as `sink` returns False
        (it consumed the piece, but its reader lags): the caller waits for the reader, then
        calls again to go on. `idle`, when given, is called each time every piece in hand has
        been handed over and more must be waited for: the moment to send what `sink` held
        back. Mixing it with `iter_body` on one answer is not supported."""
        ...

    def close(self) -> None:
        """Release the connection: back to the pool when the body was read whole,
        discarded otherwise (never returned half-read). Idempotent."""
        ...


# Called with the answer the moment its head is in, from the connection's own callback; it
# returns the sink its body's pieces go to until a reader takes over (`push_body`), or None.
HeadHook = Callable[["UpstreamResponse"], Callable[[bytes], bool] | None]


class SentRequest(Protocol):
    async def answer(self) -> UpstreamResponse:
        """Return once the status line and headers have arrived (as `send` does)."""
        ...

    def on_head(self, hook: HeadHook) -> None:
        """Have `hook` called once with the answer when its head arrives, before `answer`
        returns it (where the head is in already, or the request is sent again, it is not
        called). A plain callback, run in the connection's own: it must not raise. When the
        head came alone and the hook returned a sink, `answer` returns once the sink has taken
        the first piece (or the answer ended or failed): the hook's relay goes first."""
        ...


class Transport(Protocol):
    async def send(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        timeouts: Timeouts,
    ) -> UpstreamResponse:
        """Send one request and return once the status line and headers have arrived."""
        ...

    def send_now(
        self,
        method: str,
        url: str,
        client_headers: ClientHeaders,
        gateway: GatewayHeaders,
        body: bytes,
        timeouts: Timeouts,
    ) -> SentRequest | None:
        """`send`'s request, with the headers `upstream_request_headers(client_headers,
        gateway)` gives, written at once when that needs no waiting (a pooled connection is
        idle), for a caller that is in no task yet; None, having sent nothing, otherwise. (A
        transport may frame the headers of a head the native reader took itself.)"""
        ...

    async def close(self) -> None:
        """Close every pooled connection."""
        ...
