"""The lean transport against a real aiohttp server on 127.0.0.1: framing, pooling, streaming.

Every test runs on asyncio's own event loop and on uvloop's.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer
from aiohttp.typedefs import Handler
from tests.unit.both_loops import on_both_loops
from tests.unit.serving import serving

from sidegate.errors import UpstreamTimeoutError
from sidegate.upstream.headers import ForwardedHeaders
from sidegate.upstream.lean import LeanTransport
from sidegate.upstream.transport import SentRequest, Timeouts, UpstreamResponse

TIMEOUTS = Timeouts(connect=5.0, read=10.0)


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


@on_both_loops
async def test_a_line_break_in_the_gateways_own_headers_is_refused_too() -> None:
    # The gateway's headers beside a client's natively read ones are framed once per upstream:
    # checked as carefully as any other.
    added = (("Authorization", "Bearer sk-up\r\nX-B: 2"), ("Accept-Encoding", "identity"))
    async with serve(web.post("/echo", echo)) as server, lean() as transport:
        with pytest.raises(ValueError, match="line break"):
            await transport.send(
                "POST",
                str(server.make_url("/echo")),
                ForwardedHeaders(b"X-Client: 1\r\n", added),
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


def gated_sse(gate: asyncio.Event, *, first: bool = True) -> Handler:
    """An SSE answer whose head (and first event, if `first`) is written before `gate` opens."""

    async def sse(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        if first:
            await response.write(b'data: {"n": 1}\n\n')
        await gate.wait()  # the client must have what came so far before the rest is written
        await response.write(b'data: {"n": 2}\n\n')
        await response.write(b"data: [DONE]\n\n")
        await response.write_eof()
        return response

    return sse


async def serves_the_next_stream(t: LeanTransport, url: str) -> int:
    """Send the next request after a stream: its answer must come whole; returns how many
    connections the pool holds for `url` (1: the stream's connection carried it)."""
    again = await t.send("POST", url, [], b"{}", TIMEOUTS)
    assert (await again.read()).endswith(b"data: [DONE]\n\n")
    return t.connections(url)


async def sent_on_a_pooled_connection(
    t: LeanTransport, url: str, gate: asyncio.Event
) -> SentRequest:
    """A request to a `gated_sse` route written at once (`send_now`), on the connection an
    earlier stream left in the pool; `gate` is closed again for it."""
    warm = await t.send("POST", url, [], b"{}", TIMEOUTS)
    gate.set()
    await warm.read()
    warm.close()
    gate.clear()
    sent = t.send_now("POST", url, [], b"{}", TIMEOUTS)
    assert sent is not None
    return sent


async def until(condition: Callable[[], object]) -> None:
    for _ in range(200):
        if condition():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met within 2 s")


@on_both_loops
async def test_sse_pieces_arrive_before_the_stream_ends() -> None:
    gate = asyncio.Event()
    async with serve(web.post("/v1/chat/completions", gated_sse(gate))) as server, lean() as t:
        url = str(server.make_url("/v1/chat/completions"))
        response = await t.send("POST", url, [], b"{}", TIMEOUTS)
        assert response.headers["Transfer-Encoding"] == "chunked"
        pieces = response.iter_body()
        assert await anext(pieces) == b'data: {"n": 1}\n\n'
        gate.set()
        rest = b"".join([piece async for piece in pieces])
        assert rest == b'data: {"n": 2}\n\ndata: [DONE]\n\n'
        response.close()
        # Read whole, so the connection went back to the pool and carries the next request.
        assert await serves_the_next_stream(t, url) == 1


@on_both_loops
async def test_pushed_pieces_reach_the_sink_while_the_body_is_still_open() -> None:
    gate = asyncio.Event()
    async with serve(web.post("/v1/chat/completions", gated_sse(gate))) as server, lean() as t:
        url = str(server.make_url("/v1/chat/completions"))
        response = await t.send("POST", url, [], b"{}", TIMEOUTS)
        got: list[bytes] = []
        pushing = asyncio.ensure_future(response.push_body(lambda piece: got.append(piece) or True))
        await until(lambda: got)
        assert got == [b'data: {"n": 1}\n\n'] and not pushing.done()
        gate.set()
        assert await pushing is True  # the body ended
        assert b"".join(got) == b'data: {"n": 1}\n\ndata: {"n": 2}\n\ndata: [DONE]\n\n'
        assert await serves_the_next_stream(t, url) == 1  # the connection was pooled


@on_both_loops
async def test_the_push_says_it_goes_idle_once_the_pieces_in_hand_are_handed_over() -> None:
    # The relay holds a stream's head back to join its first events; it must send them the
    # moment the push would wait, not at the end of a later turn of the loop.
    gate = asyncio.Event()
    async with serve(web.post("/v1/chat/completions", gated_sse(gate))) as server, lean() as t:
        url = str(server.make_url("/v1/chat/completions"))
        response = await t.send("POST", url, [], b"{}", TIMEOUTS)
        await asyncio.sleep(0.05)  # the first event is held by now
        seen: list[bytes | str] = []
        pushing = asyncio.ensure_future(
            response.push_body(
                lambda piece: seen.append(piece) or True, lambda: seen.append("idle")
            )
        )
        await until(lambda: "idle" in seen)
        assert seen == [b'data: {"n": 1}\n\n', "idle"] and not pushing.done()
        gate.set()
        assert await pushing is True
        # Pieces that came while it waited went straight to the sink: it never went idle again.
        assert seen[2:] and "idle" not in seen[2:]
        assert b"".join(p for p in seen[2:] if isinstance(p, bytes)).endswith(b"[DONE]\n\n")

        # An answer already whole when the push starts (a canned stream) never waits.
        gate.clear()
        gate.set()
        whole = await t.send("POST", url, [], b"{}", TIMEOUTS)
        await asyncio.sleep(0.05)
        seen.clear()
        assert await whole.push_body(
            lambda piece: seen.append(piece) or True, lambda: seen.append("idle")
        )
        assert "idle" not in seen and b"".join(p for p in seen if isinstance(p, bytes)).endswith(
            b"[DONE]\n\n"
        )


@pytest.mark.parametrize("pushed", [False, True], ids=["held-piece", "pushed-piece"])
@on_both_loops
async def test_a_lagging_sink_stops_the_push_and_the_next_call_goes_on(pushed: bool) -> None:
    # pushed: the push is waiting when the first piece comes (the connection's callback hands
    # it over); else the piece may already be held when the push starts.
    gate = asyncio.Event()
    route = web.post("/v1/chat/completions", gated_sse(gate, first=not pushed))
    async with serve(route) as server, lean() as t:
        url = str(server.make_url("/v1/chat/completions"))
        response = await t.send("POST", url, [], b"{}", TIMEOUTS)
        got: list[bytes] = []

        def lagging(piece: bytes) -> bool:
            got.append(piece)
            return False  # consumed, but send no more for now

        pushing = asyncio.ensure_future(response.push_body(lagging))
        if pushed:
            await asyncio.sleep(0.05)
            gate.set()
        assert await pushing is False
        assert len(got) == 1 and got[0].startswith(b"data: {")
        gate.set()
        assert await response.push_body(lambda piece: got.append(piece) or True) is True
        assert b"".join(got).endswith(b'data: {"n": 2}\n\ndata: [DONE]\n\n')


@on_both_loops
async def test_a_sink_that_raises_fails_the_push_not_the_connection_callback() -> None:
    gate = asyncio.Event()
    route = web.post("/v1/chat/completions", gated_sse(gate, first=False))
    async with serve(route) as server, lean() as t:
        url = str(server.make_url("/v1/chat/completions"))
        response = await t.send("POST", url, [], b"{}", TIMEOUTS)

        def broken(piece: bytes) -> bool:
            raise ValueError("cannot frame this")

        pushing = asyncio.ensure_future(response.push_body(broken))
        await asyncio.sleep(0.05)  # waiting for the first piece, which comes in a callback
        gate.set()
        with pytest.raises(ValueError, match="cannot frame this"):
            await pushing
        response.close()
        # The connection's callback went on parsing: the transport still serves requests.
        await serves_the_next_stream(t, url)


@on_both_loops
async def test_a_head_hook_sink_that_raises_fails_the_next_push() -> None:
    gate = asyncio.Event()
    async with serve(web.post("/v1/chat/completions", gated_sse(gate))) as server, lean() as t:
        url = str(server.make_url("/v1/chat/completions"))
        sent = await sent_on_a_pooled_connection(t, url, gate)
        tried: list[bytes] = []

        def broken(piece: bytes) -> bool:
            tried.append(piece)
            raise ValueError("cannot frame this")

        sent.on_head(lambda answer: broken)
        response = await sent.answer()
        await until(lambda: tried)
        # The piece it took is not lost without a word: the relay's push raises its error.
        with pytest.raises(ValueError, match="cannot frame this"):
            await response.push_body(lambda piece: True)
        response.close()
        gate.set()
        await serves_the_next_stream(t, url)


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
        assert transport.send_now("POST", url, [], b"first", TIMEOUTS) is None
        await asyncio.sleep(0.05)
        assert seen == []
        warm = await transport.send("POST", url, [], b"warm", TIMEOUTS)
        assert await warm.read() == b"warm"
        warm.close()
        sent = transport.send_now("POST", url, [], b"now", TIMEOUTS)
        assert sent is not None
        response = await sent.answer()
        assert response.status == 200
        assert await response.read() == b"now"
        response.close()
        assert seen == ["warm", "now"]
        assert transport.connections(url) == 1  # the pooled connection, used again


@pytest.mark.parametrize("takes_pieces", [True, False], ids=["sink", "no-sink"])
@on_both_loops
async def test_a_head_hook_sees_the_head_before_the_answer_returns(takes_pieces: bool) -> None:
    # The relay opens the client's stream from this hook; the pieces that come with the head
    # go to the sink it returns until `push_body` takes over, or wait for the reader.
    gate = asyncio.Event()
    async with serve(web.post("/v1/chat/completions", gated_sse(gate))) as server, lean() as t:
        url = str(server.make_url("/v1/chat/completions"))
        sent = await sent_on_a_pooled_connection(t, url, gate)
        heads: list[tuple[int, str]] = []
        hooked: list[bytes] = []

        def hook(answer: UpstreamResponse) -> Callable[[bytes], bool] | None:
            heads.append((answer.status, answer.headers["Content-Type"]))
            return (lambda piece: hooked.append(piece) or True) if takes_pieces else None

        sent.on_head(hook)
        response = await sent.answer()
        assert heads == [(200, "text/event-stream")]
        pushed: list[bytes] = []
        if takes_pieces:
            await until(lambda: hooked)
            assert hooked == [b'data: {"n": 1}\n\n']
        gate.set()
        assert await response.push_body(lambda piece: pushed.append(piece) or True) is True
        assert b"".join(hooked + pushed) == b'data: {"n": 1}\n\ndata: {"n": 2}\n\ndata: [DONE]\n\n'
        assert heads == [(200, "text/event-stream")]  # once
        assert await serves_the_next_stream(t, url) == 1


async def echo_text(request: web.Request) -> web.Response:
    return web.Response(body=(await request.read()))
