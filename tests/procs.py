"""Start real processes for tests: a free port, and a process that is ready when a URL answers.

from tests.procs import free_port, run_process, sidegate_command

port = free_port()
with run_process([*sidegate_command(), "mock-upstream", "--port", str(port)],
                 f"http://127.0.0.1:{port}/health") as proc:
    ...                     # proc.url is the ready URL's origin; proc.output() the log so far
"""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO
from urllib.parse import urlsplit


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def sidegate_command() -> list[str]:
    """The `sidegate` console script of the interpreter running the tests."""
    script = Path(sys.executable).parent / "sidegate"
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "sidegate.cli"]


@dataclass
class Process:
    popen: subprocess.Popen[bytes]
    url: str  # scheme://host:port of the ready URL
    _log: IO[bytes]

    def output(self) -> str:
        """Everything the process wrote to stdout and stderr so far."""
        self._log.flush()
        self._log.seek(0)
        return self._log.read().decode("utf-8", "replace")


class ProcessFailed(AssertionError):
    pass


@contextlib.contextmanager
def run_process(
    args: Sequence[str],
    ready_url: str,
    *,
    timeout: float = 30.0,
    env: Mapping[str, str] | None = None,
    cwd: str | Path | None = None,
    stop_timeout: float = 10.0,
) -> Iterator[Process]:
    """Run `args`, wait until `ready_url` answers 2xx, yield, then SIGTERM (SIGKILL if stuck).

    Output goes to a temporary file rather than a pipe, so a chatty process never blocks on a
    full pipe; failures (exit before ready, not ready in time) carry that output.
    """
    parts = urlsplit(ready_url)
    with tempfile.TemporaryFile() as log:
        popen = subprocess.Popen(
            list(args),
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env=dict(env) if env is not None else None,
            cwd=cwd,
        )
        process = Process(popen=popen, url=f"{parts.scheme}://{parts.netloc}", _log=log)
        try:
            _wait_ready(process, ready_url, timeout)
            yield process
        finally:
            _stop(popen, stop_timeout)


def _wait_ready(process: Process, url: str, timeout: float) -> None:
    # No proxy: a test's traffic stays on 127.0.0.1 whatever the environment says.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        code = process.popen.poll()
        if code is not None:
            raise ProcessFailed(
                f"process exited with {code} before {url} answered:\n{process.output()}"
            )
        try:
            with opener.open(url, timeout=1.0) as response:
                if 200 <= response.status < 300:
                    return
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            pass
        time.sleep(0.05)
    raise ProcessFailed(f"{url} did not answer within {timeout}s:\n{process.output()}")


def _stop(popen: subprocess.Popen[bytes], timeout: float) -> None:
    if popen.poll() is not None:
        return
    popen.terminate()
    try:
        popen.wait(timeout)
    except subprocess.TimeoutExpired:
        popen.kill()
        popen.wait()
