"""Fixtures: real `sidegate serve` and `sidegate mock-upstream` processes."""

from __future__ import annotations

import shutil
import signal
import textwrap
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import openai
import pytest

from tests.e2e.procs import Process, RedisServer, free_port, start


@pytest.fixture
def spawn(tmp_path: Path) -> Iterator[Callable[..., Process]]:
    """Start sidegate processes; every one is stopped when the test ends."""
    started: list[Process] = []

    def _spawn(*args: str, port: int | None = None, ready_path: str = "/health") -> Process:
        port = port or free_port()
        log_path = tmp_path / f"proc-{len(started)}.log"
        process = start([*args, "--port", str(port)], port, log_path, ready_path)
        started.append(process)
        return process

    yield _spawn
    for process in started:
        process.stop(signal.SIGKILL)


@pytest.fixture(scope="module")
def mock_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    """One shared mock upstream for a test module."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("mock") / "mock.log"
    process = start(["mock-upstream", "--port", str(port)], port, log_path)
    yield process
    process.stop(signal.SIGKILL)


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[[str], Path]:
    def _write(text: str) -> Path:
        path = tmp_path / f"config-{time.monotonic_ns()}.yaml"
        path.write_text(textwrap.dedent(text))
        return path

    return _write


@pytest.fixture(scope="module")
def paced_upstream(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Process]:
    """A mock upstream that streams 50 tokens a second (for mid-stream events)."""
    port = free_port()
    log_path = tmp_path_factory.mktemp("paced") / "mock.log"
    args = ["mock-upstream", "--port", str(port), "--tokens-per-second", "50"]
    process = start(args, port, log_path)
    yield process
    process.stop(signal.SIGKILL)


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    """A fresh redis-server for one test (skipped where redis-server is not installed)."""
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (scripts/install-system-deps.sh installs it)")
    server = RedisServer(tmp_path)
    server.start()
    yield server
    server.stop()


@pytest.fixture
def sdk() -> Iterator[Callable[[Process, str], openai.OpenAI]]:
    """OpenAI clients for a gateway with a given key (no retries); closed when the test ends."""
    opened: list[openai.OpenAI] = []

    def _open(gateway: Process, key: str) -> openai.OpenAI:
        client = openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)
        opened.append(client)
        return client

    yield _open
    for client in opened:
        client.close()
