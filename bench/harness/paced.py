"""The streaming-latency lane: time to the first event and the gaps between paced events.

A few concurrent clients open streams back to back for a fixed time. For each stream we record
when the first SSE event completed (from sending the request) and the gap between consecutive
events; `[DONE]` is left out since it follows the last token at once.

The mock upstream runs with `--stamp-events`: each of its writes leads with an SSE comment
giving, on the machine's monotonic clock, when the request reached it and when the write left.
Where those comments come through (a relay that re-frames events drops them), two figures free
of the mock's own time are kept beside the raw ones: the net TTFB (less the mock's time from the
request to its first write) and each gap's stretch (the gap less the gap between the mock's two
writes). The mock's pacing jitter (about a millisecond at p99) then no longer sits in both terms
of "system minus direct".

`run_paired` measures a system and direct together: each client opens its streams to the two in
turn, so both meet the host in the same state. Block against block (ten seconds of one, then ten
of the other) the host drifted between them by as much as the target for added TTFB (direct's
own TTFB moved from 1.11 to 1.54 ms between rounds on one host), and that drift went straight
into "system minus direct".

The clients start spread over one round of turns (timed with a first stream) rather than all
at once. Started together they stay in step, since every stream lasts as long: each system
then met its requests in bursts, and a burst queued at the mock upstream too, so direct's own
TTFB (1.1-1.2 ms against 0.57 spread) grew by what a slow relay spared the mock by delaying
its requests. In step, nginx added 0.17-0.32 ms and Sidegate 0.29-0.42; spread, 0.08 and 0.63.

Each client pauses 20-60 ms (at random) after every stream before its next request. Back to
back, a client's next request met the mock upstream still finishing the stream just ended (on
the load core), so it queued behind that, by however much the system in front of it had
delayed the stream's end: direct's own TTFB read 1.42 ms beside nginx and 1.10 beside Sidegate
in one run, and "system minus direct" took that difference in. With the pause direct read
1.22-1.25 ms beside every system.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass, field

import aiohttp
import uvloop
from bench.harness.systems import Target

DONE = b"data: [DONE]"
# A client's pause after each stream, drawn uniformly (seconds); see the module's docstring.
THINK_SECONDS = (0.02, 0.06)
STAMP = b": mock-timing "


@dataclass
class PacedResult:
    streams: int = 0
    failures: int = 0
    ttfb_ms: list[float] = field(default_factory=list)
    gaps_ms: list[float] = field(default_factory=list)
    net_ttfb_ms: list[float] = field(default_factory=list)
    stretches_ms: list[float] = field(default_factory=list)
    # The net TTFB's two halves: sending the request -> the mock has it; the mock's first
    # write -> the client has the first event. Which one a relay lengthens says which of its
    # paths (request handling, or the answer's head and first event) costs the time.
    request_legs_ms: list[float] = field(default_factory=list)
    answer_legs_ms: list[float] = field(default_factory=list)


def _stamp(comment: bytes) -> tuple[int, int] | None:
    """(arrived_ns, sent_ns) from the mock's comment, None when it does not read."""
    fields = dict(part.split(b"=", 1) for part in comment[len(STAMP) :].split() if b"=" in part)
    try:
        return int(fields[b"arrived_ns"]), int(fields[b"sent_ns"])
    except (KeyError, ValueError):
        return None


async def _one_stream(session: aiohttp.ClientSession, target: Target, out: PacedResult) -> None:
    headers = {"Content-Type": "application/json"}
    if target.auth:
        headers["Authorization"] = f"Bearer {target.auth}"
    started = time.monotonic_ns()
    last: int | None = None
    stamp: tuple[int, int] | None = None  # the mock's, for the next event
    last_sent: int | None = None
    pending = b""
    async with session.post(target.url, data=target.body, headers=headers) as answer:
        if answer.status != 200:
            await answer.read()
            out.failures += 1
            return
        async for piece in answer.content.iter_any():
            now = time.monotonic_ns()
            pending += piece
            *events, pending = pending.split(b"\n\n")
            for event in events:
                if event.startswith(STAMP):
                    stamp = _stamp(event)
                    continue
                if event.startswith(DONE):
                    continue
                sent = stamp[1] if stamp else None
                if last is None:
                    out.ttfb_ms.append((now - started) / 1e6)
                    if stamp:
                        request_leg, answer_leg = stamp[0] - started, now - stamp[1]
                        out.net_ttfb_ms.append((request_leg + answer_leg) / 1e6)
                        out.request_legs_ms.append(request_leg / 1e6)
                        out.answer_legs_ms.append(answer_leg / 1e6)
                else:
                    out.gaps_ms.append((now - last) / 1e6)
                    if sent is not None and last_sent is not None:
                        out.stretches_ms.append((now - last - (sent - last_sent)) / 1e6)
                last, last_sent = now, sent
    out.streams += 1


async def _client(
    turns: list[tuple[Target, PacedResult]], deadline: float, delay: float = 0.0, seed: int = 0
) -> None:
    """Opens streams until the deadline, taking the targets in turn, with a short pause
    after each."""
    pauses = random.Random(seed)
    await asyncio.sleep(delay)
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while time.perf_counter() < deadline:
            for target, out in turns:
                try:
                    await _one_stream(session, target, out)
                except (aiohttp.ClientError, TimeoutError):
                    out.failures += 1
                await asyncio.sleep(pauses.uniform(*THINK_SECONDS))


async def _stream_seconds(target: Target) -> float:
    """How long one stream to `target` takes (0 if it fails: the clients then start at once)."""
    started = time.perf_counter()
    probe = PacedResult()
    try:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60)) as session:
            await _one_stream(session, target, probe)
    except (aiohttp.ClientError, TimeoutError):
        return 0.0
    return time.perf_counter() - started if probe.streams else 0.0


async def _run(turns: list[tuple[Target, PacedResult]], concurrency: int, seconds: float) -> None:
    """`concurrency` clients for each target: taking turns, the clients start one target
    apart, so each target has about `concurrency` streams open at any time, as when measured
    alone (with half as many clients it would idle between streams, and idling costs a relay
    a wake-up on every event). They start spread over one round of turns (a stream to
    each target and the pauses after them), as long as the first stream to the last target
    took."""
    stream = await _stream_seconds(turns[-1][0])
    period = (stream + sum(THINK_SECONDS) / 2) * len(turns) if stream else 0.0
    deadline = time.perf_counter() + seconds
    shifts = [shift for _ in range(concurrency) for shift in range(len(turns))]
    clients = [
        _client(
            turns[shift:] + turns[:shift], deadline, delay=index * period / len(shifts), seed=index
        )
        for index, shift in enumerate(shifts)
    ]
    await asyncio.gather(*clients)


def run(target: Target, concurrency: int, seconds: float) -> PacedResult:
    out = PacedResult()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_run([(target, out)], concurrency, seconds))
    return out


def run_paired(
    target: Target, reference: Target, concurrency: int, seconds: float
) -> tuple[PacedResult, PacedResult]:
    """`target` and `reference` (direct) measured together, stream by stream in turn."""
    out, reference_out = PacedResult(), PacedResult()
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(_run([(target, out), (reference, reference_out)], concurrency, seconds))
    return out, reference_out
