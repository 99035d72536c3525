"""Process lifecycle: the embedded default, draining on SIGTERM, clients that go away."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import aiohttp
import openai

from tests.e2e.procs import Process, http_get, http_status, metric_value

LONG_TEXT = " ".join(f"word{i}" for i in range(60))  # ~120 tokens: ~2.4 s at 50 tokens/s


def test_serve_without_config_answers_as_mock_gpt(spawn: Callable[..., Process]) -> None:
    gateway = spawn("serve")
    with openai.OpenAI(base_url=gateway.url + "/v1", api_key="anything") as client:
        reply = client.chat.completions.create(
            model="mock-gpt", messages=[{"role": "user", "content": "Hello, Sidegate!"}]
        )
        assert reply.choices[0].message.content == "Hello, Sidegate!"
        assert [m.id for m in client.models.list()] == ["mock-gpt"]


def test_invalid_config_is_rejected_before_the_port_opens(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("server: {port: 1}\nupstreams: {u: {provider: mock, timeout: 3}}\n")
    done = subprocess.run(
        [sys.executable, "-m", "sidegate.cli", "serve", "--config", str(config)],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 1
    assert "upstreams.u.timeout: unknown key" in done.stderr


def _paced_config(write_config: Callable[[str], Path], upstream: Process, drain: float) -> Path:
    return write_config(f"""
        server: {{drain_timeout_seconds: {drain}}}
        upstreams:
          paced: {{endpoints: ["{upstream.url}/v1"], timeout_seconds: 5}}
        models:
          slow: {{upstream: paced}}
    """)


async def test_sigterm_drains_in_flight_streams_then_exits_zero(
    paced_upstream: Process,
    spawn: Callable[..., Process],
    write_config: Callable[[str], Path],
) -> None:
    gateway = spawn("serve", "--config", str(_paced_config(write_config, paced_upstream, 20)))
    async with openai.AsyncOpenAI(base_url=gateway.url + "/v1", api_key="x") as client:
        stream = await client.chat.completions.create(
            model="slow", messages=[{"role": "user", "content": LONG_TEXT}], stream=True
        )
        pieces: list[str] = []
        async for chunk in stream:
            if chunk.choices:
                pieces.append(chunk.choices[0].delta.content or "")
            if len(pieces) == 5:
                gateway.popen.send_signal(signal.SIGTERM)
                await asyncio.sleep(0.3)
                # Draining: no new connections are accepted.
                assert http_status(gateway.url + "/health") is None
        assert "".join(pieces) == LONG_TEXT
    assert await asyncio.to_thread(gateway.popen.wait, 20) == 0


async def test_client_disconnect_cancels_the_upstream_request(
    paced_upstream: Process,
    spawn: Callable[..., Process],
    write_config: Callable[[str], Path],
) -> None:
    gateway = spawn("serve", "--config", str(_paced_config(write_config, paced_upstream, 5)))
    body = {"model": "slow", "stream": True, "messages": [{"role": "user", "content": LONG_TEXT}]}
    async with (
        aiohttp.ClientSession() as session,
        session.post(gateway.url + "/v1/chat/completions", json=body) as response,
    ):
        assert response.status == 200
        await response.content.readline()
        await response.content.readline()
        response.close()  # the client goes away mid-stream
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        _, metrics = http_get(gateway.url + "/metrics")
        text = metrics.decode()
        if metric_value(text, "llm_requests_total", model="slow", status="499"):
            break
        await asyncio.sleep(0.1)
    assert metric_value(text, "llm_requests_total", model="slow", status="499") == 1.0
    assert metric_value(text, "llm_active_requests", model="slow") == 0.0


def test_workers_do_not_outlive_a_killed_parent(spawn: Callable[..., Process]) -> None:
    gateway = spawn("serve", "--workers", "2")
    pid = gateway.popen.pid
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    assert len(children) == 2
    gateway.popen.send_signal(signal.SIGKILL)
    gateway.popen.wait(10)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(Path(f"/proc/{c}").exists() for c in children):
        time.sleep(0.05)
    alive = [c for c in children if Path(f"/proc/{c}").exists()]
    assert alive == [], "workers kept running (and holding the port) after the parent died"
