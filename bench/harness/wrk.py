"""Drive wrk (one thread, on the load generator's core) and read the JSON line post.lua prints."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from bench.harness.systems import LOAD_CPUS, Target

WRK = shutil.which("wrk") or "/usr/bin/wrk"
SCRIPT = Path(__file__).with_name("post.lua")
# Set to "1", post.lua adds the headers the openai Python SDK sends (about seventeen in all,
# against wrk's four): what a gateway parses, filters and forwards for a real client.
SDK_HEADERS_ENV = "BENCH_SDK_HEADERS"
SDK_HEADERS_HELP = "send the openai SDK's request headers (default: wrk's four)"


def send_sdk_headers() -> None:
    os.environ[SDK_HEADERS_ENV] = "1"  # wrk inherits it


MARK = "WRKJSON "


@dataclass(frozen=True)
class WrkResult:
    requests: int
    seconds: float
    errors: int
    non2xx: int
    latency_us: dict[str, float]

    @property
    def ok_requests(self) -> int:
        return max(self.requests - self.non2xx, 0)

    @property
    def rps(self) -> float:
        return self.ok_requests / self.seconds if self.seconds else 0.0


def command(target: Target, concurrency: int, seconds: float, body_file: Path) -> list[str]:
    duration = f"{max(round(seconds), 1)}s"  # wrk takes whole seconds
    return [
        "taskset",
        "-c",
        LOAD_CPUS,
        WRK,
        "-t1",
        f"-c{concurrency}",
        f"-d{duration}",
        "--timeout",
        "10s",
        "-s",
        str(SCRIPT),
        target.url,
        "--",
        str(body_file),
        target.auth,
    ]


def start(target: Target, concurrency: int, seconds: float, workdir: Path) -> subprocess.Popen[str]:
    with tempfile.NamedTemporaryFile("wb", dir=workdir, suffix=".json", delete=False) as body:
        body.write(target.body)
    argv = command(target, concurrency, seconds, Path(body.name))
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def finish(popen: subprocess.Popen[str], seconds: float) -> WrkResult:
    output, _ = popen.communicate(timeout=seconds + 60)
    for line in output.splitlines():
        if line.startswith(MARK):
            raw = json.loads(line[len(MARK) :])
            latency = {key[:-3]: float(raw[key]) for key in raw if key.endswith("_us")}
            errors = raw["connect_errors"] + raw["read_errors"] + raw["write_errors"]
            return WrkResult(
                requests=raw["requests"],
                seconds=raw["duration_us"] / 1e6,
                errors=errors + raw["timeouts"],
                non2xx=raw["non2xx"],
                latency_us=latency,
            )
    raise RuntimeError(f"wrk printed no result:\n{output[-800:]}")


def run(target: Target, concurrency: int, seconds: float, workdir: Path) -> WrkResult:
    return finish(start(target, concurrency, seconds, workdir), seconds)
