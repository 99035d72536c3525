"""The streaming-latency lane: time to the first event and the gaps between paced events.

A few concurrent clients open streams back to back for a fixed time. For each stream we record
when the first SSE event completed (from sending the request) and the gap between consecutive
events; `[DONE]` is left out since it follows the last token at once.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field

import aiohttp
import uvloop
from bench.harness.systems import Target

DONE = b"data: [DONE]"


@dataclass
class PacedResult:
    streams: int = 0
    failures: int = 0
    ttfb_ms: list[float] = field(default_factory=list)
    gaps_ms: list[float] = field(default_factory=list)


async def _one_stream(session: aiohttp.ClientSession, target: Target, out: PacedResult) -> None:
    headers = {"Content-Type": "application/json"}
    if target.auth:
        headers["Authorization"] = f"Bearer {target.auth}"
    started = time.perf_counter()
    last: float | None = None
    pending = b""
    async with session.post(target.url, data=target.body, headers=headers) as answer:
        if answer.status != 200:
            await answer.read()
            out.failures += 1
            return
        async for piece in answer.content.iter_any():
            now = time.perf_counter()
            pending += piece
            *events, pending = pending.split(b"\n\n")
            for event in events:
                if event.startswith(DONE):
                    continue
                if last is None:
                    out.ttfb_ms.append((now - started) * 1000)
                else:
                    out.gaps_ms.append((now - last) * 1000)
                last = now
    out.streams += 1


async def _client(target: Target, deadline: float, out: PacedResult) -> None:
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        while time.perf_counter() < deadline:
            try:
                await _one_stream(session, target, out)
            except (aiohttp.ClientError, TimeoutError):
                out.failures += 1


async def _run(target: Target, concurrency: int, seconds: float) -> PacedResult:
    out = PacedResult()
    deadline = time.perf_counter() + seconds
    await asyncio.gather(*(_client(target, deadline, out) for _ in range(concurrency)))
    return out


def run(target: Target, concurrency: int, seconds: float) -> PacedResult:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(_run(target, concurrency, seconds))
