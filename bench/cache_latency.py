"""Latency of a cache hit against a miss, through a real gateway, for each cache backend.

    python -m bench.cache_latency [--requests 300] [--upstream-latency-ms 0]
                                  [--backends memory,redis]

Starts a mock upstream, a redis-server (for the redis backend; skipped when not installed) and
one `sidegate serve` per backend, all on loopback. For each backend it sends, one at a time on
one keep-alive connection, `--requests` misses (distinct prompts, `temperature: 0`, so each is
looked up, forwarded and stored) interleaved with as many hits (prompts stored at warm-up), so
noise on a shared machine falls on both alike, non-streamed and streamed, and prints the
client-side latency percentiles of each. With the default
`--upstream-latency-ms 0` a miss costs only the mock's own work, so the gap is the least a hit
saves; a real model adds its whole latency to every miss.
"""

from __future__ import annotations

import argparse
import http.client
import json
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

CONFIG = """
upstreams:
  mock: {{provider: openai, endpoints: ["http://127.0.0.1:{upstream}/v1"]}}
models:
  gpt-4o-mini: {{upstream: mock, upstream_model: mock-gpt}}
auth: {{mode: none}}
state: {{backend: memory, url: "redis://127.0.0.1:{redis}/0"}}
cache: {{enabled: true, backend: {backend}, max_entries: 100000}}
telemetry: {{log_level: warning}}
"""
PROMPT = "Benchmark prompt {index}: how long does an answer take when it is already known?"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited early")
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    raise RuntimeError(f"{process.args!r} did not listen on {port}")


@contextmanager
def running(args: list[str], port: int, log: Path) -> Iterator[None]:
    with log.open("wb") as out:
        process = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT)
    try:
        wait_for_port(port, process)
        time.sleep(0.2)  # listening is not yet serving: let the app finish starting
        yield
    finally:
        process.terminate()
        try:
            process.wait(10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def timed_request(
    connection: http.client.HTTPConnection, body: bytes, stream: bool
) -> tuple[float, str]:
    """Milliseconds to the last byte, and the x-cache value."""
    started = time.perf_counter()
    connection.request(
        "POST", "/v1/chat/completions", body=body, headers={"Content-Type": "application/json"}
    )
    response = connection.getresponse()
    payload = response.read()
    elapsed = (time.perf_counter() - started) * 1000
    if response.status != 200 or (stream and not payload.endswith(b"[DONE]\n\n")):
        raise RuntimeError(f"unexpected answer {response.status}: {payload[:200]!r}")
    return elapsed, response.getheader("x-cache") or "-"


def percentiles(values: list[float]) -> str:
    ordered = sorted(values)
    cuts = statistics.quantiles(ordered, n=100, method="inclusive")
    mean = statistics.fmean(ordered)
    return f"p50 {cuts[49]:7.3f}  p90 {cuts[89]:7.3f}  p99 {cuts[98]:7.3f}  mean {mean:7.3f}"


def bench_backend(port: int, requests: int, label: str) -> None:
    """Misses and hits interleaved one for one, so machine noise falls on both alike."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        for stream in (False, True):
            kind = "stream" if stream else "whole "

            def body(index: int, stream: bool = stream, kind: str = kind) -> bytes:
                prompt = PROMPT.format(index=f"{label}-{kind}-{index}")
                return json.dumps(
                    {
                        "model": "gpt-4o-mini",
                        "temperature": 0,
                        "stream": stream,
                        "messages": [{"role": "user", "content": prompt}],
                    }
                ).encode()

            stored = 20
            for index in range(stored):  # warm-up; these are the entries hits will find
                timed_request(connection, body(index), stream)
            misses: list[float] = []
            hits: list[float] = []
            for index in range(requests):
                elapsed, cache = timed_request(connection, body(stored + index), stream)
                if cache != "miss":
                    raise RuntimeError(f"expected a miss, got {cache}")
                misses.append(elapsed)
                elapsed, cache = timed_request(connection, body(index % stored), stream)
                if cache != "hit":
                    raise RuntimeError(f"expected a hit, got {cache}")
                hits.append(elapsed)
            print(f"{label:7} {kind} miss (ms): {percentiles(misses)}")
            print(f"{label:7} {kind} hit  (ms): {percentiles(hits)}")
            ratio = statistics.median(misses) / statistics.median(hits)
            print(f"{label:7} {kind} median miss/hit: {ratio:.2f}x")
    finally:
        connection.close()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--upstream-latency-ms", type=int, default=0)
    parser.add_argument("--backends", default="memory,redis")
    args = parser.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    sidegate = [sys.executable, "-m", "sidegate.cli"]
    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory()))
        upstream, redis = free_port(), free_port()
        mock = [*sidegate, "mock-upstream", "--port", str(upstream)]
        mock += ["--latency-ms", str(args.upstream_latency_ms)]
        stack.enter_context(running(mock, upstream, work / "mock.log"))
        if "redis" in backends:
            if shutil.which("redis-server") is None:
                print("redis-server is not installed: skipping the redis backend")
                backends.remove("redis")
            else:
                server = ["redis-server", "--port", str(redis), "--bind", "127.0.0.1"]
                server += ["--save", "", "--appendonly", "no", "--dir", str(work)]
                stack.enter_context(running(server, redis, work / "redis.log"))
        print(
            f"{args.requests} requests each, one at a time, upstream latency "
            f"{args.upstream_latency_ms} ms; client-side time to the last byte"
        )
        for backend in backends:
            port = free_port()
            config = work / f"{backend}.yaml"
            config.write_text(CONFIG.format(upstream=upstream, redis=redis, backend=backend))
            serve = [*sidegate, "serve", "--config", str(config), "--port", str(port)]
            with running(serve, port, work / f"{backend}.log"):
                bench_backend(port, args.requests, backend)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
