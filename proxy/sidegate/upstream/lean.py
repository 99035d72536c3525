"""The lean upstream transport: HTTP/1.1 over `asyncio.Protocol`, llhttp parsing, keep-alive pools.

A general-purpose client spends most of a Python relay's CPU time per request on features a
gateway never uses (cookies, redirects, tracing hooks, multipart, per-request timeout tasks).
This transport does only what `sidegate.upstream.transport.Transport` promises: frame a request
with `Content-Length`, reuse connections per (scheme, host, port), and hand back the status, the
headers and the body pieces as they arrive.

A request that fails on a reused connection before any byte came back is retried once on a fresh
connection: the peer closed the idle connection as we sent, and nothing of the request was
processed (the same rule every HTTP/1.1 client applies).

Not supported, by design: egress proxies from the environment (HTTP(S)_PROXY), redirects,
decompression, HTTP/2, request-body streaming. Where an upstream needs one of those, use the
aiohttp transport.
"""

from __future__ import annotations

import asyncio
import functools
import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Final
from urllib.parse import urlsplit

from sidegate._native import HeadHeaders
from sidegate.errors import UpstreamConnectError, UpstreamResetError
from sidegate.upstream.headers import (
    ClientHeaders,
    ForwardedHeaders,
    GatewayHeaders,
    header_lines,
    upstream_request_headers,
)
from sidegate.upstream.lean_connection import LeanConnection
from sidegate.upstream.lean_pool import EndpointPool
from sidegate.upstream.lean_response import LeanResponse
from sidegate.upstream.transport import HeadHook, Timeouts, Transport, UpstreamResponse

_BODYLESS_METHODS: Final = frozenset({"GET", "HEAD", "DELETE", "OPTIONS", "TRACE"})
_DEFAULT_PORTS: Final = {"http": 80, "https": 443}
_TARGET_CACHE_SIZE: Final = 1024
# A body above this is written with writelines instead of being copied onto the head.
_COPY_BODY_LIMIT: Final = 16 * 1024


# Compared (and hashed, for `_head_start`'s cache) by identity: `LeanTransport` keeps one per URL.
@dataclass(frozen=True, slots=True, eq=False)
class _Target:
    key: tuple[str, str, int]
    host_header: str
    path: str
    post: bytes = b""  # `_head_start("POST", self)`: the gateway's every request


class LeanTransport:
    """`Transport` for HTTP/1.1 upstreams, plain or TLS (verified, with SNI, by default)."""

    def __init__(
        self,
        *,
        max_connections_per_endpoint: int = 100,
        idle_expiry_seconds: float = 30.0,
        ssl_context: ssl.SSLContext | None = None,
        ca_bundle: str | os.PathLike[str] | None = None,
        max_buffered_bytes: int = 256 * 1024,
    ) -> None:
        if max_connections_per_endpoint < 1:
            raise ValueError("max_connections_per_endpoint must be at least 1")
        if ssl_context is not None and ca_bundle is not None:
            raise ValueError("give either ssl_context or ca_bundle, not both")
        self._limit = max_connections_per_endpoint
        self._idle_expiry = idle_expiry_seconds
        self._ssl_context = ssl_context
        self._ca_bundle = ca_bundle
        self._max_buffered = max_buffered_bytes
        self._pools: dict[tuple[str, str, int], EndpointPool] = {}
        self._targets: dict[str, _Target] = {}
        self._closed = False

    async def send(
        self,
        method: str,
        url: str,
        headers: Sequence[tuple[str, str]],
        body: bytes,
        timeouts: Timeouts,
    ) -> LeanResponse:
        target = self._targets.get(url) or self._parse(url)
        pool = self._pools.get(target.key) or self._new_pool(target)
        request, rest = _frame(method, target, headers, body)
        conn = pool.take_idle() or await pool.acquire(timeouts.connect)
        return await self._sent(pool, conn, request, rest, timeouts, method).answer()

    def send_now(
        self,
        method: str,
        url: str,
        client_headers: ClientHeaders,
        gateway: GatewayHeaders,
        body: bytes,
        timeouts: Timeouts,
    ) -> LeanSentRequest | None:
        target = self._targets.get(url) or self._parse(url)
        pool = self._pools.get(target.key) or self._new_pool(target)
        if type(client_headers) is HeadHeaders and method == "POST":
            # No `ForwardedHeaders` between: the head start's every request comes this way.
            request, rest = _framed_natively(method, target, client_headers, gateway, body)
        else:
            headers = upstream_request_headers(client_headers, gateway)
            request, rest = _frame(method, target, headers, body)
        conn = pool.take_idle()
        if conn is None:
            return None
        return self._sent(pool, conn, request, rest, timeouts, method)

    def _sent(
        self,
        pool: EndpointPool,
        conn: LeanConnection,
        request: bytes,
        body: bytes,
        timeouts: Timeouts,
        method: str,
    ) -> LeanSentRequest:
        # Written before any object of the request is made: the upstream starts sooner.
        live = _write_on(conn, pool, request, body)
        sent = LeanSentRequest(pool, request, body, timeouts, self._max_buffered, method == "HEAD")
        sent.start_on(conn, live)
        return sent

    async def close(self) -> None:
        self._closed = True
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()

    def connections(self, url: str) -> int:
        """Connections open (or opening) to the endpoint of `url`: for metrics and tests."""
        pool = self._pools.get(self._parse(url).key)
        return 0 if pool is None else pool.open_connections

    def _parse(self, url: str) -> _Target:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        host = parts.hostname
        if scheme not in _DEFAULT_PORTS or not host:
            raise ValueError(f"not an http(s) URL: {url!r}")
        port = parts.port or _DEFAULT_PORTS[scheme]
        path = parts.path or "/"
        if parts.query:
            path = f"{path}?{parts.query}"
        host_header = parts.netloc.rpartition("@")[2]
        post = _request_start("POST", path, host_header)
        target = _Target((scheme, host, port), host_header, path, post)
        if len(self._targets) >= _TARGET_CACHE_SIZE:
            self._targets.clear()
        self._targets[url] = target
        return target

    def _new_pool(self, target: _Target) -> EndpointPool:
        if self._closed:
            # Keep the closed state sticky: a late request must not reopen connections.
            raise UpstreamConnectError("the upstream transport is closed")
        scheme, host, port = target.key
        pool = EndpointPool(
            asyncio.get_running_loop(),
            host=host,
            port=port,
            ssl_context=self._tls() if scheme == "https" else None,
            limit=self._limit,
            idle_expiry=self._idle_expiry,
        )
        self._pools[target.key] = pool
        return pool

    def _tls(self) -> ssl.SSLContext:
        if self._ssl_context is None:
            # Built on first use: loading the CA store is I/O, and plain-HTTP users never pay it.
            self._ssl_context = ssl.create_default_context(cafile=self._ca_bundle)
        return self._ssl_context


def _frame(
    method: str, target: _Target, headers: Sequence[tuple[str, str]], body: bytes
) -> tuple[bytes, bytes]:
    """The request's bytes, and what of its body is to be written after them (a body up to
    `_COPY_BODY_LIMIT` is copied in with the head, one write; a larger one follows it)."""
    if type(headers) is ForwardedHeaders and (body or method not in _BODYLESS_METHODS):
        return _framed_natively(method, target, headers.client, headers.added, body)
    with_body = len(body) <= _COPY_BODY_LIMIT
    rest = b"" if with_body else body
    lines = header_lines(headers)
    if body or method not in _BODYLESS_METHODS:
        end = b"Content-Length: %d\r\n\r\n" % len(body)
    else:
        end = b"\r\n"
    head = b"".join((_head_start(method, target), lines, end))
    return (head + body if with_body and body else head), rest


def _framed_natively(
    method: str, target: _Target, client: HeadHeaders, added: GatewayHeaders, body: bytes
) -> tuple[bytes, bytes]:
    """`_frame` for the client's headers as the native reader took them (it declined any head
    with a line break out of place), framed there in one call with the request line and the
    gateway's own headers, which are the same on every request to an upstream: framed (and
    checked) once."""
    with_body = len(body) <= _COPY_BODY_LIMIT
    start = target.post if method == "POST" else _head_start(method, target)
    own = added.framed or added.lines()
    return client.request(start, own, body, with_body), (b"" if with_body else body)


@functools.lru_cache(maxsize=_TARGET_CACHE_SIZE)
def _head_start(method: str, target: _Target) -> bytes:
    return _request_start(method, target.path, target.host_header)


def _request_start(method: str, path: str, host_header: str) -> bytes:
    """The request line and Host header."""
    first = f"{method} {path} HTTP/1.1\r\nHost: {host_header}\r\n"
    if first.count("\n") != 2 or first.count("\r") != 2:
        raise ValueError("a request path or host contains a line break")
    return first.encode("utf-8", "surrogateescape")


class LeanSentRequest:
    """A request written on a pooled connection, its answer still to come (`answer`)."""

    __slots__ = (
        "_body",
        "_head_request",
        "_max_buffered",
        "_pool",
        "_request",
        "_response",
        "_retried",
        "_reused",
        "_timeouts",
    )

    def __init__(
        self,
        pool: EndpointPool,
        request: bytes,
        body: bytes,
        timeouts: Timeouts,
        max_buffered: int,
        head_request: bool,
    ) -> None:
        self._pool = pool
        self._request = request
        self._body = body
        self._timeouts = timeouts
        self._max_buffered = max_buffered
        self._head_request = head_request
        self._reused = False
        self._retried = False
        self._response: LeanResponse | None = None

    def start_on(self, conn: LeanConnection, live: bool) -> None:
        """Read the answer from `conn`, which the request was written to (`_write_on`; not
        `live`: it was closed before the write)."""
        self._reused = conn.requests > 1
        response = LeanResponse(
            conn,
            self._pool,
            read_timeout=self._timeouts.read,
            max_buffered=self._max_buffered,
            head_request=self._head_request,
        )
        conn.start(response)
        self._response = response
        if not live:
            # Closed between acquire and now: the same case as a peer closing before answering.
            response.on_connection_lost(None)

    def on_head(self, hook: HeadHook) -> None:
        response = self._response
        if response is not None and not response.headers_done:
            response.head_hook = hook

    async def answer(self) -> LeanResponse:
        """The answer once its status line and headers are in; retried once on a fresh
        connection when a reused one closed before any byte came back."""
        while True:
            response = self._response
            assert response is not None
            try:
                while not response.headers_done:  # the head, or the failure that came first
                    if response.error is not None:
                        raise response.error
                    await response.wait()
            except UpstreamResetError:
                if self._reused and not self._retried and response.closed_before_answer:
                    self._retried = True
                    stale = response.detach()
                    assert stale is not None
                    conn = await self._pool.replace(stale, self._timeouts.connect)
                    self.start_on(conn, _write_on(conn, self._pool, self._request, self._body))
                    continue
                response.close()
                raise
            except BaseException:
                response.close()
                raise
            return response


def _write_on(conn: LeanConnection, pool: EndpointPool, request: bytes, rest: bytes) -> bool:
    """Write a request to `conn` (counted in its `requests`); False when it was closed."""
    conn.requests += 1
    transport = conn.transport
    if transport is None or not conn.usable():
        return False
    try:
        if rest:
            transport.writelines((request, rest))
        else:
            transport.write(request)
    except BaseException:
        conn.reusable = False
        pool.release(conn)
        raise
    return True


if TYPE_CHECKING:
    # mypy proves the structural fit with the interface the gateway programs against.
    def _conforms(transport: LeanTransport, response: LeanResponse) -> Transport:
        _: UpstreamResponse = response
        return transport
