"""The lean transport's native reading of chunked answers (a stream's), against raw upstreams:
however the bytes are cut, what comes after the body, and broken framing.

Every test runs on asyncio's own event loop and on uvloop's.
"""

from __future__ import annotations

import asyncio

import pytest
from tests.unit.raw_upstream import TIMEOUTS, UpstreamFactory, forever, on_both_loops

from sidegate.errors import UpstreamProtocolError
from sidegate.upstream.lean import LeanTransport

CHUNKED_HEAD = (
    b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n"
)
CHUNKED_BODY = (
    b'10;ext=1\r\ndata: {"n": 1}\n\n\r\ne\r\ndata: [DONE]\n\n\r\n0\r\nX-Trailer: dropped\r\n\r\n'
)


@pytest.mark.parametrize(
    ("head_whole", "cut"),
    [(True, 0), (True, 1), (True, 3), (True, 7), (False, 7)],
    ids=["one-write", "body-bytewise", "body-by-3", "body-by-7", "head-cut-too"],
)
@on_both_loops
async def test_a_chunked_answer_reads_the_same_however_its_bytes_are_cut(
    upstream_factory: UpstreamFactory, transport: LeanTransport, head_whole: bool, cut: int
) -> None:
    # A stream's head usually comes whole and its body is read natively from there; a head
    # cut short goes to llhttp. Either way the payload is the chunks' and the connection is
    # pooled once the trailers are read.
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while await upstream.read_request(reader) is not None:
            answer = CHUNKED_BODY if head_whole else CHUNKED_HEAD + CHUNKED_BODY
            if head_whole:
                writer.write(CHUNKED_HEAD + (b"" if cut else CHUNKED_BODY))
                await writer.drain()
                await asyncio.sleep(0.01)
                if not cut:
                    continue
            for at in range(0, len(answer), cut):
                writer.write(answer[at : at + cut])
                await writer.drain()
                await asyncio.sleep(0)

    upstream = await upstream_factory(handler)
    for _ in range(2):
        response = await transport.send("POST", upstream.url, [], b"{}", TIMEOUTS)
        assert response.status == 200
        assert response.headers["Content-Type"] == "text/event-stream"
        assert await response.read() == b'data: {"n": 1}\n\ndata: [DONE]\n\n'
    assert upstream.connections == 1


@pytest.mark.parametrize(
    "tail",
    [b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nstray", b"\r\n"],
    ids=["second-answer", "stray-line-end"],
)
@on_both_loops
async def test_bytes_after_a_chunked_answer_spoil_only_the_connection(
    upstream_factory: UpstreamFactory, transport: LeanTransport, tail: bytes
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        while await upstream.read_request(reader) is not None:
            writer.write(CHUNKED_HEAD + CHUNKED_BODY + tail)
            await writer.drain()

    upstream = await upstream_factory(handler)
    for _ in range(2):
        response = await transport.send("POST", upstream.url, [], b"{}", TIMEOUTS)
        assert await response.read() == b'data: {"n": 1}\n\ndata: [DONE]\n\n'
    assert upstream.connections == 2


@pytest.mark.parametrize(
    "body",
    [b"5\r\nhello\n", b"5\nhello\r\n0\r\n\r\n", b"5\r\nhelloXX0\r\n\r\n"],
    ids=["bare-lf-after-data", "bare-lf-after-size", "no-crlf-after-data"],
)
@on_both_loops
async def test_broken_chunk_framing_mid_stream_is_a_protocol_error(
    upstream_factory: UpstreamFactory, transport: LeanTransport, body: bytes
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await upstream.read_request(reader)
        writer.write(CHUNKED_HEAD + b"3\r\nabc\r\n")
        await writer.drain()
        await asyncio.sleep(0.05)
        writer.write(body)
        await writer.drain()
        await forever()

    upstream = await upstream_factory(handler)
    response = await transport.send("POST", upstream.url, [], b"{}", TIMEOUTS)
    pieces = response.iter_body()
    assert await anext(pieces) == b"abc"
    with pytest.raises(UpstreamProtocolError, match="chunk"):
        async for _ in pieces:
            pass
    assert transport.connections(upstream.url) == 0


@on_both_loops
async def test_events_before_broken_framing_in_the_same_read_still_reach_the_reader(
    upstream_factory: UpstreamFactory, transport: LeanTransport
) -> None:
    async def handler(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, n: int) -> None:
        await upstream.read_request(reader)
        writer.write(CHUNKED_HEAD + b"3\r\nabc\r\n4\r\ndefg\r\nZZ")
        await writer.drain()
        await forever()

    upstream = await upstream_factory(handler)
    response = await transport.send("POST", upstream.url, [], b"{}", TIMEOUTS)
    got: list[bytes] = []
    with pytest.raises(UpstreamProtocolError, match="chunk size"):
        async for piece in response.iter_body():
            got.append(piece)
    assert b"".join(got) == b"abcdefg"
