"""The lean transport against a real aiohttp server on 127.0.0.1: framing, pooling, whole answers
(its event streams: test_lean_streaming.py).

Every test runs on asyncio's own event loop and on uvloop's.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from tests.unit.both_loops import on_both_loops
from tests.unit.serving import serving

from sidegate._native import HeadHeaders, request_head
from sidegate.errors import UpstreamTimeoutError
from sidegate.upstream.headers import (
    ForwardedHeaders,
    GatewayHeaders,
    upstream_request_headers,
)
from sidegate.upstream.lean import LeanTransport
from sidegate.upstream.transport import Timeouts

TIMEOUTS = Timeouts(connect=5.0, read=10.0)
NO_GATEWAY = GatewayHeaders(())


@asynccontextmanager
async def lean(limit: int = 4) -> AsyncIterator[LeanTransport]:
    transport = LeanTransport(max_connections_per_endpoint=limit, idle_expiry_seconds=30.0)
    try:
        yield transport
    finally:
        await transport.close()


@asynccontextmanager
async def serve(*routes: web.RouteDef) -> AsyncIterator[TestServer]:
    app = web.Application()
    app.add_routes(routes)
    async with serving(app) as server:
        yield server


def peer_port(request: web.Request) -> str:
    peer = request.transport.get_extra_info("peername") if request.transport else None
    return str(peer[1]) if peer else "?"


async def echo(request: web.Request) -> web.Response:
    body = await request.read()
    return web.json_response(
        {
            "method": request.method,
            "path_qs": request.path_qs,
            "host": request.host,
            "x_custom": request.headers.get("X-Custom"),
            "authorization": request.headers.get("Authorization"),
            "content_length": request.headers.get("Content-Length"),
            "body": body.decode(),
            "peer": peer_port(request),
        },
        headers={"X-Upstream": "echo"},
    )


@on_both_loops
async def test_post_round_trip() -> None:
    async with serve(web.post("/v1/chat/completions", echo)) as server, lean() as transport:
        url = str(server.make_url("/v1/chat/completions?x=1"))
        response = await transport.send(
            "POST",
            url,
            [("X-Custom", "yes"), ("Content-Type", "application/json")],
            b"{}",
            TIMEOUTS,
        )
        assert response.status == 200
        assert response.headers["x-upstream"] == "echo"
        assert response.headers["CONTENT-TYPE"].startswith("application/json")
        seen = json.loads(await response.read())
        response.close()
        assert seen["method"] == "POST"
        assert seen["path_qs"] == "/v1/chat/completions?x=1"
        assert seen["host"] == f"127.0.0.1:{server.port}"
        assert seen["x_custom"] == "yes"
        assert seen["content_length"] == "2"
        assert seen["body"] == "{}"


@on_both_loops
async def test_get_has_no_body() -> None:
    async with serve(web.get("/v1/models", echo)) as server, lean() as transport:
        response = await transport.send(
            "GET", str(server.make_url("/v1/models")), [], b"", TIMEOUTS
        )
        seen = json.loads(await response.read())
        assert seen["method"] == "GET"
        assert seen["content_length"] is None
        assert seen["body"] == ""


@on_both_loops
async def test_caller_framing_headers_are_replaced() -> None:
    async with serve(web.post("/echo", echo)) as server, lean() as transport:
        response = await transport.send(
            "POST",
            str(server.make_url("/echo")),
            [("Host", "evil.example"), ("Content-Length", "999"), ("Connection", "close")],
            b"hello",
            TIMEOUTS,
        )
        seen = json.loads(await response.read())
        assert seen["host"] == f"127.0.0.1:{server.port}"
        assert seen["content_length"] == "5"
        assert seen["body"] == "hello"


@on_both_loops
async def test_header_line_breaks_are_refused() -> None:
    async with serve(web.post("/echo", echo)) as server, lean() as transport:
        with pytest.raises(ValueError, match="line break"):
            await transport.send(
                "POST", str(server.make_url("/echo")), [("X-A", "1\r\nX-B: 2")], b"", TIMEOUTS
            )


def client_headers(lines: str) -> HeadHeaders:
    """A client's headers as the lean server's native reader takes them."""
    read = request_head(f"POST /v1/chat/completions HTTP/1.1\r\n{lines}\r\n".encode(), 65536)
    assert read is not None
    return read[2]


@pytest.mark.parametrize("size", [2, 20_000, 300_000])
@on_both_loops
async def test_a_clients_natively_read_headers_go_up_with_the_gateways_own(size: int) -> None:
    # Small bodies leave in one piece with the head, larger ones after it: the same request.
    client = client_headers(
        "Host: gw\r\nAuthorization: Bearer sk-client\r\nX-Custom: kept\r\nContent-Length: 0\r\n"
    )
    headers = upstream_request_headers(client, (("Authorization", "Bearer sk-up"),))
    body = b"{" + b" " * (size - 2) + b"}"
    async with serve(web.post("/echo", echo)) as server, lean() as transport:
        response = await transport.send(
            "POST", str(server.make_url("/echo")), headers, body, TIMEOUTS
        )
        seen = json.loads(await response.read())
        response.close()
        assert seen["host"] == f"127.0.0.1:{server.port}"
    assert seen["x_custom"] == "kept"
    assert seen["authorization"] == "Bearer sk-up"  # never the client's key
    assert seen["content_length"] == str(size)
    assert seen["body"].encode() == body


@pytest.mark.parametrize("size", [2, 300_000])
@on_both_loops
async def test_a_request_sent_at_once_goes_up_with_the_same_headers(size: int) -> None:
    # `send_now` frames a natively read head's headers itself, with the gateway's own.
    client = client_headers("Host: gw\r\nAuthorization: Bearer sk-client\r\nX-Custom: kept\r\n")
    gateway = GatewayHeaders([("Authorization", "Bearer sk-up")])
    body = b"{" + b" " * (size - 2) + b"}"
    async with serve(web.post("/echo", echo)) as server, lean() as transport:
        url = str(server.make_url("/echo"))
        (await transport.send("POST", url, [], b"{}", TIMEOUTS)).close()  # leaves one idle
        await asyncio.sleep(0.05)
        sent = transport.send_now("POST", url, client, gateway, body, TIMEOUTS)
        assert sent is not None
        response = await sent.answer()
        seen = json.loads(await response.read())
        response.close()
        assert seen["host"] == f"127.0.0.1:{server.port}"
    assert seen["x_custom"] == "kept"
    assert seen["authorization"] == "Bearer sk-up"
    assert seen["content_length"] == str(size)
    assert seen["body"].encode() == body


@on_both_loops
async def test_a_line_break_in_the_gateways_own_headers_is_refused_too() -> None:
    # The gateway's headers beside a client's natively read ones are framed once per upstream:
    # checked as carefully as any other.
    added = GatewayHeaders([("Authorization", "Bearer sk-up\r\nX-B: 2")])
    async with serve(web.post("/echo", echo)) as server, lean() as transport:
        with pytest.raises(ValueError, match="line break"):
            await transport.send(
                "POST",
                str(server.make_url("/echo")),
                ForwardedHeaders(client_headers("X-Client: 1\r\n"), added),
                b"",
                TIMEOUTS,
            )


@on_both_loops
async def test_keep_alive_reuses_the_connection() -> None:
    async with serve(web.post("/echo", echo)) as server, lean() as transport:
        url = str(server.make_url("/echo"))
        peers = []
        for _ in range(3):
            response = await transport.send("POST", url, [], b"x", TIMEOUTS)
            peers.append(json.loads(await response.read())["peer"])
            response.close()
        assert len(set(peers)) == 1
        assert transport.connections(url) == 1


@on_both_loops
async def test_many_headers_with_repeats() -> None:
    async def cookies(request: web.Request) -> web.Response:
        response = web.Response(text="ok")
        response.headers.add("Set-Cookie", "a=1")
        response.headers.add("Set-Cookie", "b=2")
        return response

    async with serve(web.get("/c", cookies)) as server, lean() as transport:
        response = await transport.send("GET", str(server.make_url("/c")), [], b"", TIMEOUTS)
        assert await response.read() == b"ok"
        assert response.headers.getall("set-cookie") == ["a=1", "b=2"]


@on_both_loops
async def test_large_content_length_body() -> None:
    blob = bytes(range(256)) * 8192  # 2 MiB: many socket reads

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=blob)

    async with serve(web.get("/big", big)) as server, lean() as transport:
        url = str(server.make_url("/big"))
        response = await transport.send("GET", url, [], b"", TIMEOUTS)
        assert response.headers["Content-Length"] == str(len(blob))
        assert response.read_now() is None  # not all of it has arrived: read() waits
        assert await response.read() == blob
        again = await transport.send("GET", url, [], b"", TIMEOUTS)
        assert len(await again.read()) == len(blob)
        assert transport.connections(url) == 1


@on_both_loops
async def test_bodyless_answers_keep_the_connection() -> None:
    async def no_content(request: web.Request) -> web.Response:
        return web.Response(status=204)

    async with (
        serve(web.post("/echo", echo), web.delete("/gone", no_content)) as server,
        lean() as transport,
    ):
        url = str(server.make_url("/echo"))
        head = await transport.send("HEAD", url.replace("/echo", "/gone"), [], b"", TIMEOUTS)
        assert head.status == 405  # aiohttp answers HEAD on a DELETE-only route with 405
        assert await head.read() == b""
        empty = await transport.send("DELETE", str(server.make_url("/gone")), [], b"", TIMEOUTS)
        assert empty.status == 204
        assert await empty.read() == b""
        after = await transport.send("POST", url, [], b"z", TIMEOUTS)
        assert json.loads(await after.read())["body"] == "z"


@on_both_loops
async def test_pool_bound_makes_the_next_request_wait() -> None:
    arrived: list[str] = []
    gate = asyncio.Event()

    async def slow(request: web.Request) -> web.Response:
        arrived.append(peer_port(request))
        await gate.wait()
        return web.Response(text=f"done {len(arrived)}")

    async with serve(web.post("/slow", slow)) as server, lean(limit=1) as transport:
        url = str(server.make_url("/slow"))
        first = asyncio.create_task(transport.send("POST", url, [], b"1", TIMEOUTS))
        second = asyncio.create_task(transport.send("POST", url, [], b"2", TIMEOUTS))
        for _ in range(200):
            if arrived:
                break
            await asyncio.sleep(0.01)
        for _ in range(10):
            await asyncio.sleep(0.01)
        assert len(arrived) == 1  # the second request is queued in the client, not sent
        assert not second.done()
        assert transport.connections(url) == 1
        gate.set()
        response = await first
        assert await response.read() == b"done 1"
        follow = await second
        assert await follow.read() == b"done 2"
        assert arrived[0] == arrived[1]  # handed over on the same connection


@on_both_loops
async def test_waiter_cancelled_while_queued_frees_nothing_twice() -> None:
    async with serve(web.post("/echo", echo)) as server, lean(limit=1) as transport:
        url = str(server.make_url("/echo"))
        held = await transport.send("POST", url, [], b"1", TIMEOUTS)
        queued = asyncio.create_task(transport.send("POST", url, [], b"2", TIMEOUTS))
        await asyncio.sleep(0.01)
        queued.cancel()
        with pytest.raises(asyncio.CancelledError):
            await queued
        await held.read()
        for body in (b"3", b"4"):
            response = await transport.send("POST", url, [], body, TIMEOUTS)
            assert json.loads(await response.read())["body"] == body.decode()
        assert transport.connections(url) == 1


@on_both_loops
async def test_waiting_for_a_connection_is_bounded_by_the_connect_timeout() -> None:
    async with serve(web.post("/echo", echo)) as server, lean(limit=1) as transport:
        url = str(server.make_url("/echo"))
        held = await transport.send("POST", url, [], b"1", TIMEOUTS)
        with pytest.raises(UpstreamTimeoutError, match="came free"):
            await transport.send("POST", url, [], b"2", Timeouts(connect=0.1, read=10.0))
        await held.read()
        response = await transport.send("POST", url, [], b"3", TIMEOUTS)
        assert json.loads(await response.read())["body"] == "3"
        assert transport.connections(url) == 1


@on_both_loops
async def test_abandoned_stream_is_not_pooled() -> None:
    upstream_saw_disconnect = asyncio.Event()

    async def endless(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        try:
            for n in range(10_000):
                await response.write(f"data: {n}\n\n".encode())
                await asyncio.sleep(0.005)
        except (ConnectionResetError, asyncio.CancelledError):
            upstream_saw_disconnect.set()
            raise
        return response

    async with (
        serve(web.post("/stream", endless), web.post("/echo", echo)) as server,
        lean() as transport,
    ):
        stream_url = str(server.make_url("/stream"))
        response = await transport.send("POST", stream_url, [], b"{}", TIMEOUTS)
        assert (await anext(response.iter_body())).startswith(b"data: 0")
        response.close()  # a client went away mid-stream
        response.close()  # idempotent
        await asyncio.wait_for(upstream_saw_disconnect.wait(), 10)
        assert transport.connections(stream_url) == 0
        after = await transport.send("POST", str(server.make_url("/echo")), [], b"ok", TIMEOUTS)
        assert json.loads(await after.read())["body"] == "ok"


@on_both_loops
async def test_close_drops_pooled_connections() -> None:
    async with serve(web.post("/echo", echo)) as server:
        url = str(server.make_url("/echo"))
        transport = LeanTransport(max_connections_per_endpoint=2, idle_expiry_seconds=30.0)
        response = await transport.send("POST", url, [], b"x", TIMEOUTS)
        await response.read()
        assert transport.connections(url) == 1
        await transport.close()
        assert transport.connections(url) == 0


@on_both_loops
async def test_an_answer_that_came_whole_is_read_without_waiting() -> None:
    async with serve(web.post("/v1/chat/completions", echo)) as server, lean() as transport:
        url = str(server.make_url("/v1/chat/completions"))
        response = await transport.send("POST", url, [], b"{}", TIMEOUTS)
        for _ in range(100):  # the body follows the head, usually in the same read
            if response.complete:
                break
            await asyncio.sleep(0.01)
        body = response.read_now()
        assert body is not None and json.loads(body)["body"] == "{}"
        again = await transport.send("POST", url, [], b"[]", TIMEOUTS)  # the connection is back
        assert json.loads(await again.read())["body"] == "[]"
        assert transport.connections(url) == 1


@on_both_loops
async def test_send_now_writes_only_on_an_idle_pooled_connection() -> None:
    seen: list[str] = []

    async def count(request: web.Request) -> web.Response:
        seen.append(await request.text())
        return await echo_text(request)

    async with serve(web.post("/v1/chat/completions", count)) as server, lean() as transport:
        url = str(server.make_url("/v1/chat/completions"))
        # No connection yet: nothing is sent, and the caller must `send`.
        assert transport.send_now("POST", url, {}, NO_GATEWAY, b"first", TIMEOUTS) is None
        await asyncio.sleep(0.05)
        assert seen == []
        warm = await transport.send("POST", url, [], b"warm", TIMEOUTS)
        assert await warm.read() == b"warm"
        warm.close()
        sent = transport.send_now("POST", url, {}, NO_GATEWAY, b"now", TIMEOUTS)
        assert sent is not None
        response = await sent.answer()
        assert response.status == 200
        assert await response.read() == b"now"
        response.close()
        assert seen == ["warm", "now"]
        assert transport.connections(url) == 1  # the pooled connection, used again


async def echo_text(request: web.Request) -> web.Response:
    return web.Response(body=(await request.read()))
