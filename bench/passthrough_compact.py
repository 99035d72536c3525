"""The compact path: a gateway's critical path in straight-line Python over Sidegate's natives.

Between the tunnel floor (bytes passed unread) and Sidegate sits this: each whole request is
read with Sidegate's native head parser, its key looked up, its body inspected and its prompt
tokens counted (`inspect_request`), usage asked for on a stream, and a fresh request framed and
written upstream; the answer's head is parsed natively, a head of our own written with the
first body bytes, and each later piece scanned for usage as it passes. What a gateway also
does but no byte waits for (counting, metrics) runs after the writes (`call_soon`).

It is no gateway: one upstream connection per client connection, no limits, no failover, and
the upstream's chunked framing is passed on as it came. It shows what the work that must come
before the first byte costs when it is written as a few calls in a row: the added TTFB a
restructured request path could reach. Usage: passthrough_compact.py --port 8004 --upstream
http://127.0.0.1:8000
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from typing import Final, cast

import relay_server
from sidegate._native import ChunkedBody, request_head, response_head, sse_usage_at
from sidegate.errors import InvalidRequestError
from sidegate.inspection import inspect_request

HEAD_LIMIT: Final = 64 * 1024
WANT_USAGE: Final = b'"stream_options":{"include_usage":true},'
# A key table as a gateway holds one; the benchmark's pass-through targets send no key.
KEYS: Final = {"Bearer sk-bench-tenant-0001": "bench"}
_REQUEST_HEAD: Final = (
    b"POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n"
)
_ANSWER_HEAD: Final = b"HTTP/1.1 %d OK\r\nContent-Type: %s\r\nx-request-id: %s\r\n%s\r\n\r\n"
_CHUNKED: Final = b"Transfer-Encoding: chunked"
REQUEST_IDS = itertools.count(1)
PROMPT_TOKENS: Counter[str | None] = Counter()
USAGE_EVENTS: Counter[str | None] = Counter()


class _Upstream(asyncio.Protocol):
    """The upstream side: one answer at a time, for the client connection that opened it."""

    def __init__(self, client: _Client) -> None:
        self._client = client
        self.transport: asyncio.Transport | None = None
        self._body: ChunkedBody | None = None  # the chunked answer being relayed

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        client = self._client.transport
        if client is None:
            return
        if self._body is None:
            # Whole answers framed by Content-Length come in one read here; any other is
            # passed on as it came.
            head = response_head(data, HEAD_LIMIT)
            if head is None:  # a head cut by the read, or an answer it declines: as it came
                client.write(data)
                return
            status, _, headers, head_len, chunked = head
            body = data[head_len:]
            kind = headers.get("Content-Type") or "application/json"
            framing = _CHUNKED if chunked else b"Content-Length: %d" % len(body)
            own = _ANSWER_HEAD % (status, kind.encode("latin-1"), self._client.request_id, framing)
            client.write(own + body)
            if chunked:
                self._body = ChunkedBody()
                self._track(body)
            return
        client.write(data)
        self._track(data)

    def _track(self, data: bytes) -> None:
        body = self._body
        if body is None:
            return
        payload, _ = body.feed(data)
        if sse_usage_at(payload) is not None:
            asyncio.get_running_loop().call_soon(_note_usage, self._client.tenant)
        if body.done or body.error is not None:
            self._body = None

    def connection_lost(self, exc: Exception | None) -> None:
        if self._client.transport is not None:
            self._client.transport.close()


class _Client(asyncio.Protocol):
    def __init__(self, host: str, port: int) -> None:
        self._host, self._port = host, port
        self._host_line = f"{host}:{port}".encode()
        self.transport: asyncio.Transport | None = None
        self._upstream: _Upstream | None = None
        self._early: list[bytes] | None = []
        self.request_id = b""
        self.tenant: str | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)
        asyncio.get_running_loop().create_task(self._connect())

    async def _connect(self) -> None:
        upstream = await relay_server.connect_upstream(
            self.transport, lambda: _Upstream(self), self._host, self._port
        )
        if upstream is None:
            return
        self._upstream = upstream
        early, self._early = self._early or [], None
        for data in early:
            self.data_received(data)

    def data_received(self, data: bytes) -> None:
        upstream = self._upstream.transport if self._upstream is not None else None
        if upstream is None:
            if self._early is not None:
                self._early.append(data)
            return
        upstream.write(self._request(data))

    def _request(self, data: bytes) -> bytes:
        """The bytes for the upstream: a fresh request for each whole plain request at the
        start of `data`, the rest as it came (a request cut by the read, one that is not a
        chat request)."""
        plain = request_head(data, HEAD_LIMIT)
        if plain is None:
            return data
        target, _, headers, head_len, length = plain
        end = head_len + length
        body = data[head_len:end]
        self.tenant = KEYS.get(headers.get("Authorization") or "")
        try:
            facts = inspect_request(body, "chat", hash_body=False)
        except InvalidRequestError:
            fresh = data[:end]
        else:
            if facts.stream and not facts.include_usage:
                brace = body.index(b"{") + 1  # a JSON object, as inspection found
                body = b"".join((body[:brace], WANT_USAGE, body[brace:]))
            self.request_id = b"req_%012x" % next(REQUEST_IDS)
            asyncio.get_running_loop().call_soon(_note_prompt, self.tenant, facts.prompt_tokens)
            fresh = _REQUEST_HEAD % (target, self._host_line, len(body)) + body
        return fresh + self._request(data[end:]) if len(data) > end else fresh

    def connection_lost(self, exc: Exception | None) -> None:
        if self._upstream is not None and self._upstream.transport is not None:
            self._upstream.transport.close()


def _note_prompt(tenant: str | None, tokens: int) -> None:
    PROMPT_TOKENS[tenant] += tokens


def _note_usage(tenant: str | None) -> None:
    USAGE_EVENTS[tenant] += 1


if __name__ == "__main__":
    relay_server.run(__doc__, _Client)
