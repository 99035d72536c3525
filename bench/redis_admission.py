"""The added cost of one Redis admission: the state call alone, and through a real gateway.

    python -m bench.redis_admission [--calls 5000] [--requests 2000]

1. The call alone, in one process on one connection: `acquire` (the admission script: block
   list, budget, rpm and tpm buckets, a concurrency lease — one EVALSHA round trip) and the
   settle, for the memory backend (the native table) and for a local redis-server.
2. Through a gateway: three `sidegate serve` processes — no plan (nothing to check), a plan on
   the memory backend, the same plan on Redis — each sent `--requests` chat completions one at
   a time on one keep-alive connection, and `x-sidegate-overhead-ms` (time inside Sidegate,
   upstream excluded) read from every answer. The limits are high enough that nothing is
   refused, so every request runs the whole admission. Settling runs after the answer, in its
   own task, so it shows up in CPU but not in the answer's latency.
"""

from __future__ import annotations

import argparse
import asyncio
import http.client
import json
import shutil
import statistics
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from bench.cache_latency import free_port, percentiles, running
from redis import asyncio as aioredis

from sidegate.limits.memory import MemoryState
from sidegate.limits.model import Acquire, Bucket, Release
from sidegate.limits.policy import buckets, slots
from sidegate.limits.redis_state import RedisState
from sidegate.settings import PlanSettings, StateSettings

PLAN = PlanSettings(rpm=10**8, tpm=10**10, max_concurrent=10**6, daily_budget_usd=10**6)
CONFIG = """
upstreams:
  mock: {{provider: openai, endpoints: ["http://127.0.0.1:{upstream}/v1"]}}
models:
  gpt-4o-mini: {{upstream: mock, upstream_model: mock-gpt,
                price_per_1k: {{input: 0.00015, output: 0.0006}}}}
plans:
  big: {{rpm: 100000000, tpm: 10000000000, max_concurrent: 1000000, daily_budget_usd: 1000000}}
tenants:
  acme: {{keys: [sk-bench]{plan}}}
state: {{backend: {backend}, url: "redis://127.0.0.1:{redis}/0"}}
cache: {{enabled: false}}
telemetry: {{log_level: warning}}
"""


async def _time_calls(state: MemoryState | RedisState, calls: int) -> tuple[list[float], ...]:
    admit_us: list[float] = []
    settle_us: list[float] = []
    for i in range(calls):
        acquire = Acquire(
            "acme",
            f"r{i}",
            buckets(PLAN, "gpt-4o-mini", 120),
            slots(PLAN, "gpt-4o-mini"),
            PLAN.daily_budget_usd,
            120,
        )
        started = time.perf_counter()
        decision = await state.acquire(acquire)
        admitted = time.perf_counter()
        assert decision.admitted
        trued = tuple(
            Bucket(b.key, b.kind, b.capacity, b.per_minute, -20 if b.kind == "tokens" else 0)
            for b in acquire.buckets
        )
        await state.release(Release("acme", f"r{i}", trued, acquire.slots, 0.0001, -20))
        settled = time.perf_counter()
        admit_us.append((admitted - started) * 1e6)
        settle_us.append((settled - admitted) * 1e6)
    return admit_us, settle_us


async def bench_calls(calls: int, redis_port: int | None) -> None:
    print(f"state call alone, {calls} sequential admissions (microseconds):")
    states: list[tuple[str, MemoryState | RedisState]] = [("memory", MemoryState())]
    if redis_port is not None:
        url = f"redis://127.0.0.1:{redis_port}/0"
        states.append(("redis", RedisState(StateSettings(backend="redis", url=url))))
    if redis_port is not None:
        # The floor: one PING through the same client, so the script's own share shows.
        client = aioredis.Redis.from_url(f"redis://127.0.0.1:{redis_port}/0")
        pings: list[float] = []
        for _ in range(calls + 200):
            started = time.perf_counter()
            await client.ping()
            pings.append((time.perf_counter() - started) * 1e6)
        await client.aclose()
        print(f"  redis  PING  : {percentiles(pings[200:])}")
    for label, state in states:
        await _time_calls(state, 200)  # warm-up: script load, connection
        admit, settle = await _time_calls(state, calls)
        print(f"  {label:6} admit : {percentiles(admit)}")
        print(f"  {label:6} settle: {percentiles(settle)}")
        await state.close()


def overheads(port: int, requests: int) -> tuple[list[float], list[float]]:
    """(x-sidegate-overhead-ms, client-side ms) of each request."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    inside: list[float] = []
    client: list[float] = []
    try:
        for i in range(requests):
            body = json.dumps(
                {
                    "model": "gpt-4o-mini",
                    "max_tokens": 16,
                    "messages": [{"role": "user", "content": f"admission bench {i}"}],
                }
            ).encode()
            started = time.perf_counter()
            connection.request(
                "POST",
                "/v1/chat/completions",
                body=body,
                headers={"Content-Type": "application/json", "Authorization": "Bearer sk-bench"},
            )
            response = connection.getresponse()
            payload = response.read()
            client.append((time.perf_counter() - started) * 1000)
            if response.status != 200:
                raise RuntimeError(f"unexpected answer {response.status}: {payload[:200]!r}")
            inside.append(float(response.getheader("x-sidegate-overhead-ms") or "nan"))
    finally:
        connection.close()
    return inside, client


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--requests", type=int, default=2000)
    args = parser.parse_args()
    sidegate = [sys.executable, "-m", "sidegate.cli"]
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        upstream, redis = free_port(), free_port()
        stack.enter_context(
            running([*sidegate, "mock-upstream", "--port", str(upstream)], upstream, work / "m")
        )
        have_redis = shutil.which("redis-server") is not None
        if have_redis:
            server = ["redis-server", "--port", str(redis), "--bind", "127.0.0.1"]
            server += ["--save", "", "--appendonly", "no", "--dir", str(work)]
            stack.enter_context(running(server, redis, work / "redis.log"))
        asyncio.run(bench_calls(args.calls, redis if have_redis else None))
        print(f"through a gateway, {args.requests} requests one at a time (milliseconds):")
        lanes = [("no plan", "memory", ""), ("memory", "memory", ", plan: big")]
        if have_redis:
            lanes.append(("redis", "redis", ", plan: big"))
        medians: dict[str, float] = {}
        for label, backend, plan in lanes:
            port = free_port()
            config = work / f"{backend}{len(plan)}.yaml"
            config.write_text(
                CONFIG.format(upstream=upstream, redis=redis, backend=backend, plan=plan)
            )
            serve = [*sidegate, "serve", "--config", str(config), "--port", str(port)]
            with running(serve, port, work / f"{label}.log"):
                overheads(port, 200)  # warm-up
                inside, client = overheads(port, args.requests)
            medians[label] = statistics.median(inside)
            print(f"  {label:8} overhead: {percentiles(inside)}")
            print(f"  {label:8} client  : {percentiles(client)}")
        if "redis" in medians:
            added = (medians["redis"] - medians["memory"]) * 1000
            print(f"median overhead added by Redis over memory: {added:.0f} us")
        added = (medians["memory"] - medians["no plan"]) * 1000
        print(f"median overhead added by memory limits over no plan: {added:.0f} us")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
