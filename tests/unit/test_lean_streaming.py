"""The lean transport's event streams against a real aiohttp server on 127.0.0.1: pieces as
they arrive, pushed to a sink (`push_body`), and the answer's head handed to a hook
(`SentRequest.on_head`) before `answer()` returns it.

Every test runs on asyncio's own event loop and on uvloop's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest
from aiohttp import web
from aiohttp.typedefs import Handler
from tests.unit.both_loops import on_both_loops
from tests.unit.test_lean_transport import TIMEOUTS, lean, serve

from sidegate.upstream.headers import GatewayHeaders
from sidegate.upstream.lean import LeanTransport
from sidegate.upstream.transport import SentRequest, UpstreamResponse


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
    sent = t.send_now("POST", url, {}, GatewayHeaders(()), b"{}", TIMEOUTS)
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


@on_both_loops
async def test_a_head_alone_wakes_the_reader_only_once_the_hook_took_the_first_piece() -> None:
    # The hook relays the first event itself; the reader, woken by a head that came alone,
    # would resume ahead of that event's read.
    gate = asyncio.Event()
    route = web.post("/v1/chat/completions", gated_sse(gate, first=False))
    async with serve(route) as server, lean() as t:
        url = str(server.make_url("/v1/chat/completions"))
        sent = await sent_on_a_pooled_connection(t, url, gate)
        seen: list[str] = []

        def hook(answer: UpstreamResponse) -> Callable[[bytes], bool]:
            seen.append("head")
            return lambda piece: seen.append(piece.decode()) or True

        sent.on_head(hook)
        answering = asyncio.ensure_future(sent.answer())
        await until(lambda: seen)
        await asyncio.sleep(0.05)
        assert seen == ["head"] and not answering.done()
        gate.set()
        response = await answering
        assert seen[0] == "head" and seen[1].startswith('data: {"n": 2}\n\n')
        rest: list[bytes] = []
        assert await response.push_body(lambda piece: rest.append(piece) or True) is True
        assert "".join(seen[1:]) + b"".join(rest).decode() == 'data: {"n": 2}\n\ndata: [DONE]\n\n'
        assert await serves_the_next_stream(t, url) == 1
