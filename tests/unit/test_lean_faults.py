"""The lean transport against misbehaving upstreams: raw `asyncio.start_server` on 127.0.0.1
(`raw_upstream.py`). Chunked answers have their own file, `test_lean_chunked.py`.

Every test runs on asyncio's own event loop and on uvloop's.
"""

from __future__ import annotations

import asyncio
import socket

import pytest
from tests.unit.raw_upstream import (
    OK,
    SHORT,
    TIMEOUTS,
    UpstreamFactory,
    forever,
    on_both_loops,
)

from sidegate.errors import (
    UpstreamConnectError,
    UpstreamProtocolError,
    UpstreamResetError,
    UpstreamTimeoutError,
)
from sidegate.upstream.lean import LeanTransport


@on_both_loops
async def test_close_mid_body_is_a_reset_after_first_byte(
    upstream_factory: UpstreamFactory, transport: LeanTransport
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await upstream.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n" + b"x" * 10)
        await writer.drain()

    upstream = await upstream_factory(handler)
    response = await transport.send("POST", upstream.url, [], b"{}", TIMEOUTS)
    assert response.status == 200
    pieces = response.iter_body()
    assert await anext(pieces) == b"x" * 10
    with pytest.raises(UpstreamResetError) as caught:
        await anext(pieces)
    assert caught.value.after_first_byte is True
    assert transport.connections(upstream.url) == 0


@on_both_loops
async def test_close_mid_chunked_body_fails_read(
    upstream_factory: UpstreamFactory, transport: LeanTransport
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await upstream.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n")
        await writer.drain()

    upstream = await upstream_factory(handler)
    response = await transport.send("POST", upstream.url, [], b"{}", TIMEOUTS)
    with pytest.raises(UpstreamResetError) as caught:
        await response.read()
    assert caught.value.after_first_byte is True


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 2x0 OK\r\nContent-Length: 0\r\n\r\n",
        b"hello there\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 5\r\n\r\nhello",
        b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: 5\r\n\r\nhello",
    ],
    ids=[
        "bad-status",
        "not-http",
        "two-lengths",
        "bad-chunk-size",
        "unasked-upgrade",
        "unreadable-coding",
        "not-gzip",
    ],
)
@on_both_loops
async def test_malformed_http_is_a_protocol_error(
    upstream_factory: UpstreamFactory, transport: LeanTransport, answer: bytes
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await upstream.read_request(reader)
        writer.write(answer)
        await writer.drain()
        await forever()

    upstream = await upstream_factory(handler)
    with pytest.raises(UpstreamProtocolError):
        response = await transport.send("POST", upstream.url, [], b"{}", TIMEOUTS)
        await response.read()
    assert transport.connections(upstream.url) == 0


@pytest.mark.parametrize("trickle", [False, True], ids=["one-write", "line-by-line"])
@on_both_loops
async def test_oversized_header_block_is_a_protocol_error(
    upstream_factory: UpstreamFactory, transport: LeanTransport, trickle: bool
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await upstream.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\n")
        lines = [f"X-Filler-{i}: {'v' * 100}\r\n".encode() for i in range(1000)]
        if trickle:
            for line in lines:
                writer.write(line)
                await writer.drain()
        else:
            writer.write(b"".join(lines))
        writer.write(b"Content-Length: 0\r\n\r\n")
        await writer.drain()
        await forever()

    upstream = await upstream_factory(handler)
    with pytest.raises(UpstreamProtocolError, match="oversized header block"):
        await transport.send("POST", upstream.url, [], b"{}", TIMEOUTS)


@on_both_loops
async def test_stall_after_headers_is_an_idle_timeout(
    upstream_factory: UpstreamFactory, transport: LeanTransport
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await upstream.read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc")
        await writer.drain()
        await forever()

    upstream = await upstream_factory(handler)
    response = await transport.send("POST", upstream.url, [], b"{}", SHORT)
    with pytest.raises(UpstreamTimeoutError, match="between body pieces"):
        await response.read()
    assert transport.connections(upstream.url) == 0


@on_both_loops
async def test_stall_before_status_line_is_a_first_byte_timeout(
    upstream_factory: UpstreamFactory, transport: LeanTransport
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await upstream.read_request(reader)
        await forever()

    upstream = await upstream_factory(handler)
    with pytest.raises(UpstreamTimeoutError, match="for the response to start"):
        await transport.send("POST", upstream.url, [], b"{}", SHORT)
    assert transport.connections(upstream.url) == 0


@on_both_loops
async def test_connection_refused(transport: LeanTransport) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(UpstreamConnectError, match="cannot connect"):
        await transport.send("GET", f"http://127.0.0.1:{port}/", [], b"", TIMEOUTS)
    assert transport.connections(f"http://127.0.0.1:{port}/") == 0


@on_both_loops
async def test_idle_connection_closed_by_peer_is_not_reused(
    upstream_factory: UpstreamFactory, transport: LeanTransport
) -> None:
    closed = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await upstream.read_request(reader)
        writer.write(OK)  # keep-alive framing, then the server drops the idle connection
        await writer.drain()
        writer.close()
        await writer.wait_closed()
        closed.set()

    upstream = await upstream_factory(handler)
    first = await transport.send("POST", upstream.url, [], b"1", TIMEOUTS)
    assert await first.read() == b"ok"
    await closed.wait()
    for _ in range(500):  # the pool drops the connection as soon as the loop sees the close
        if transport.connections(upstream.url) == 0:
            break
        await asyncio.sleep(0.01)
    assert transport.connections(upstream.url) == 0
    second = await transport.send("POST", upstream.url, [], b"2", TIMEOUTS)
    assert await second.read() == b"ok"
    assert upstream.connections == 2
    assert len(upstream.requests) == 2


@on_both_loops
async def test_reused_connection_closed_before_answer_is_retried_once(
    upstream_factory: UpstreamFactory, transport: LeanTransport
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await upstream.read_request(reader)
        writer.write(OK)
        await writer.drain()
        if n == 1:
            # The race every keep-alive client meets: the request went out just as the
            # server gave up on the idle connection; it is closed with no answer.
            await upstream.read_request(reader)
            return
        await forever()

    upstream = await upstream_factory(handler)
    first = await transport.send("POST", upstream.url, [], b"1", TIMEOUTS)
    assert await first.read() == b"ok"
    second = await transport.send("POST", upstream.url, [], b"2", TIMEOUTS)
    assert await second.read() == b"ok"
    assert upstream.connections == 2
    assert [r.endswith(b"2") for r in upstream.requests] == [False, True, True]


@on_both_loops
async def test_fresh_connection_closed_before_answer_is_not_retried(
    upstream_factory: UpstreamFactory, transport: LeanTransport
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await upstream.read_request(reader)

    upstream = await upstream_factory(handler)
    with pytest.raises(UpstreamResetError) as caught:
        await transport.send("POST", upstream.url, [], b"{}", TIMEOUTS)
    assert caught.value.after_first_byte is False
    assert upstream.connections == 1


@on_both_loops
async def test_connection_close_header_is_honoured(
    upstream_factory: UpstreamFactory, transport: LeanTransport
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while await upstream.read_request(reader) is not None:
            # Says close but leaves the socket open: the client must not send on it again.
            writer.write(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
            await writer.drain()

    upstream = await upstream_factory(handler)
    for _ in range(2):
        response = await transport.send("POST", upstream.url, [], b"{}", TIMEOUTS)
        assert await response.read() == b"ok"
    assert upstream.connections == 2


@pytest.mark.parametrize(
    "head",
    [b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n", b"HTTP/1.0 200 OK\r\n\r\n"],
    ids=["http11-close", "http10"],
)
@on_both_loops
async def test_close_delimited_body(
    upstream_factory: UpstreamFactory, transport: LeanTransport, head: bytes
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await upstream.read_request(reader)
        writer.write(head + b"first part, ")
        await writer.drain()
        writer.write(b"second part")
        await writer.drain()

    upstream = await upstream_factory(handler)
    for _ in range(2):
        response = await transport.send("POST", upstream.url, [], b"{}", TIMEOUTS)
        assert await response.read() == b"first part, second part"
    assert upstream.connections == 2


@on_both_loops
async def test_unasked_second_answer_spoils_only_the_connection(
    upstream_factory: UpstreamFactory, transport: LeanTransport
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while await upstream.read_request(reader) is not None:
            writer.write(OK + b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray")
            await writer.drain()

    upstream = await upstream_factory(handler)
    for _ in range(2):
        response = await transport.send("POST", upstream.url, [], b"{}", TIMEOUTS)
        assert await response.read() == b"ok"
    assert upstream.connections == 2


@on_both_loops
async def test_interim_100_continue_is_skipped(
    upstream_factory: UpstreamFactory, transport: LeanTransport
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while await upstream.read_request(reader) is not None:
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n" + OK)
            await writer.drain()

    upstream = await upstream_factory(handler)
    for _ in range(2):
        response = await transport.send("POST", upstream.url, [], b"{}", TIMEOUTS)
        assert response.status == 200
        assert await response.read() == b"ok"
    assert upstream.connections == 1


@on_both_loops
async def test_slow_consumer_pauses_the_upstream(upstream_factory: UpstreamFactory) -> None:
    total = 32 * 1024 * 1024
    sent = [0]

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await upstream.read_request(reader)
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {total}\r\n\r\n".encode())
        block = b"y" * 65536
        while sent[0] < total:
            writer.write(block)
            await writer.drain()
            sent[0] += len(block)

    upstream = await upstream_factory(handler)
    lean = LeanTransport(
        max_connections_per_endpoint=1, idle_expiry_seconds=30.0, max_buffered_bytes=128 * 1024
    )
    try:
        response = await lean.send("GET", upstream.url, [], b"", TIMEOUTS)
        received = len(await anext(response.iter_body()))
        for _ in range(20):
            await asyncio.sleep(0.01)
        # The client stopped reading: only socket buffers' worth got past the server's drain().
        assert sent[0] < total // 2
        async for piece in response.iter_body():
            received += len(piece)
        assert received == total
        assert sent[0] == total
    finally:
        await lean.close()


@on_both_loops
async def test_a_lagging_consumer_is_not_an_idle_upstream(
    upstream_factory: UpstreamFactory,
) -> None:
    total = 4 * 1024 * 1024

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await upstream.read_request(reader)
        writer.write(f"HTTP/1.1 200 OK\r\nContent-Length: {total}\r\n\r\n".encode())
        writer.write(b"z" * total)
        await writer.drain()
        await forever()

    upstream = await upstream_factory(handler)
    lean = LeanTransport(
        max_connections_per_endpoint=1, idle_expiry_seconds=30.0, max_buffered_bytes=64 * 1024
    )
    try:
        response = await lean.send("GET", upstream.url, [], b"", SHORT)
        pieces = response.iter_body()
        received = len(await anext(pieces))
        # Longer than the read timeout, with the socket paused by backpressure all along.
        await asyncio.sleep(SHORT.read * 2)
        async for piece in pieces:
            received += len(piece)
        assert received == total
    finally:
        await lean.close()


@on_both_loops
async def test_idle_connections_expire(upstream_factory: UpstreamFactory) -> None:
    client_left = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while await upstream.read_request(reader) is not None:
            writer.write(OK)
            await writer.drain()
        client_left.set()

    upstream = await upstream_factory(handler)
    lean = LeanTransport(max_connections_per_endpoint=2, idle_expiry_seconds=0.05)
    try:
        response = await lean.send("GET", upstream.url, [], b"", TIMEOUTS)
        assert await response.read() == b"ok"
        await asyncio.wait_for(client_left.wait(), 10)  # closed by the sweep, no request needed
        assert lean.connections(upstream.url) == 0
    finally:
        await lean.close()


@on_both_loops
async def test_transport_close_closes_idle_connections(upstream_factory: UpstreamFactory) -> None:
    client_left = asyncio.Event()

    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while await upstream.read_request(reader) is not None:
            writer.write(OK)
            await writer.drain()
        client_left.set()

    upstream = await upstream_factory(handler)
    lean = LeanTransport(max_connections_per_endpoint=2, idle_expiry_seconds=30.0)
    response = await lean.send("GET", upstream.url, [], b"", TIMEOUTS)
    assert await response.read() == b"ok"
    await lean.close()
    await asyncio.wait_for(client_left.wait(), 10)
    with pytest.raises(UpstreamConnectError, match="closed"):
        await lean.send("GET", upstream.url, [], b"", TIMEOUTS)
