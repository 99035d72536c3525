"""Starting real `sidegate` processes on free loopback ports, and reading what they serve.

`tests.procs` has the general helpers (a free port, the `sidegate` command, a process run for
the length of a `with` block); these are the end-to-end suite's: a gateway kept for a module,
stopped with the signal a test chooses, and a `redis-server` a test can kill and restart.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from tests.procs import free_port, sidegate_command

__all__ = [
    "SIDEGATE",
    "Process",
    "RedisServer",
    "free_port",
    "http_get",
    "http_status",
    "metric_value",
    "start",
]

SIDEGATE = sidegate_command()


# The fields the contract promises on every proxied request's access line (DESIGN §3).
ACCESS_LINE_FIELDS: frozenset[str] = frozenset(
    (
        "timestamp",
        "level",
        "request_id",
        "trace_id",
        "span_id",
        "tenant",
        "model",
        "upstream",
        "status",
        "input_tokens",
        "output_tokens",
        "cost_usd",
        "latency_ms",
        "cache",
    )
)


def http_status(url: str) -> int | None:
    try:
        with urllib.request.urlopen(url, timeout=0.5) as response:
            return int(response.status)
    except urllib.error.HTTPError as error:
        return error.code
    except OSError:
        return None


def http_get(url: str, headers: dict[str, str] | None = None) -> tuple[int, bytes]:
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return int(response.status), response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.read()


@dataclass
class Process:
    popen: subprocess.Popen[bytes]
    url: str
    log_path: Path

    def output(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                return self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()
        return self.popen.returncode


def start(args: list[str], port: int, log_path: Path, ready_path: str = "/health") -> Process:
    with log_path.open("wb") as log:
        popen = subprocess.Popen(
            [*SIDEGATE, *args], stdout=log, stderr=subprocess.STDOUT, env={**os.environ}
        )
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if popen.poll() is not None:
            raise RuntimeError(f"{args[0]} exited early:\n{log_path.read_text()}")
        if http_status(url + ready_path) == 200:
            return Process(popen, url, log_path)
        time.sleep(0.05)
    popen.kill()
    raise RuntimeError(f"{args[0]} did not become ready:\n{log_path.read_text()}")


def scrape(gateway: Process, token: str | None = None) -> str:
    """The gateway's /metrics text (with the metrics token, when it needs one)."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    status, body = http_get(gateway.url + "/metrics", headers)
    assert status == 200
    return body.decode()


def metric_value(metrics_text: str, name: str, **labels: str) -> float | None:
    """The value of one sample in Prometheus text output, or None when absent."""
    for line in metrics_text.splitlines():
        if line.startswith("#") or not line.startswith(name):
            continue
        sample, _, value = line.rpartition(" ")
        if sample.split("{", 1)[0] != name:
            continue
        if all(f'{key}="{val}"' in sample for key, val in labels.items()):
            return float(value)
    return None


class RedisServer:
    """A real `redis-server` on a free loopback port that a test can stop and start again."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._directory = directory
        self._popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        args = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--dir",
            str(self._directory),
        ]
        with (self._directory / "redis.log").open("ab") as log:
            self._popen = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", self.port)) == 0:
                    return
            time.sleep(0.02)
        raise RuntimeError("redis-server did not start")

    def stop(self) -> None:
        if self._popen is not None and self._popen.poll() is None:
            self._popen.kill()
            self._popen.wait()
        self._popen = None
