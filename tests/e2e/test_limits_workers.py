"""`--workers N` shares limits through Redis, and the `sidegate tenants` CLI blocks a tenant."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import openai

from tests.e2e.procs import SIDEGATE, Process, RedisServer

CONFIG = """
server: {{workers: {workers}}}
upstreams:
  local: {{provider: openai, endpoints: ["{upstream}/v1"]}}
models:
  gpt-4o-mini: {{upstream: local, upstream_model: mock-gpt}}
plans:
  ten: {{rpm: 10}}
tenants:
  acme: {{plan: ten, keys: ["sk-acme"]}}
state: {{backend: {backend}, url: "{redis}"}}
cache: {{enabled: false}}
admin: {{token: "admin-secret"}}
"""


def _status(client: openai.OpenAI, text: str) -> int:
    try:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": text}]
        )
    except openai.APIStatusError as error:
        return error.status_code
    return 200


def test_workers_share_one_limit_through_redis(
    spawn: Callable[..., Process],
    write_config: Callable[[str], Path],
    mock_upstream: Process,
    redis_server: RedisServer,
) -> None:
    config = write_config(
        CONFIG.format(
            workers=3, upstream=mock_upstream.url, backend="redis", redis=redis_server.url
        )
    )
    gateway = spawn("serve", "--config", str(config))
    started = time.monotonic()
    statuses = []
    for i in range(30):
        # A fresh connection each time, so the kernel spreads them over the workers.
        with openai.OpenAI(
            base_url=gateway.url + "/v1", api_key="sk-acme", max_retries=0
        ) as client:
            statuses.append(_status(client, f"hello {i}"))
    allowance = int((time.monotonic() - started) * 10 / 60) + 1
    assert 10 <= statuses.count(200) <= 10 + allowance
    assert statuses.count(429) == 30 - statuses.count(200)


def test_workers_on_memory_state_refuse_to_start(
    write_config: Callable[[str], Path], mock_upstream: Process
) -> None:
    config = write_config(
        CONFIG.format(workers=2, upstream=mock_upstream.url, backend="memory", redis="unused")
    )
    done = subprocess.run(
        [*SIDEGATE, "serve", "--config", str(config)], capture_output=True, timeout=30, check=False
    )
    assert done.returncode == 1
    assert b"state.backend: redis" in done.stderr


def test_cli_blocks_and_unblocks_a_tenant(
    spawn: Callable[..., Process],
    write_config: Callable[[str], Path],
    mock_upstream: Process,
    redis_server: RedisServer,
) -> None:
    config = write_config(
        CONFIG.format(
            workers=1, upstream=mock_upstream.url, backend="redis", redis=redis_server.url
        )
    )
    first, second = (spawn("serve", "--config", str(config)) for _ in range(2))

    def cli(*args: str) -> subprocess.CompletedProcess[bytes]:
        command = [*SIDEGATE, "tenants", *args, "--config", str(config), "--url", first.url]
        return subprocess.run(command, capture_output=True, timeout=30, check=False)

    assert cli("block", "acme").returncode == 0
    with openai.OpenAI(base_url=second.url + "/v1", api_key="sk-acme", max_retries=0) as client:
        assert _status(client, "blocked?") == 403  # the other replica refuses at once
        shown = cli("show", "acme")
        assert shown.returncode == 0 and b'"blocked": true' in shown.stdout
        assert cli("unblock", "acme").returncode == 0
        assert _status(client, "back") == 200
