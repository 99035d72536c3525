"""What a user of the `sidegate` command sees when something is wrong: one line naming the
problem and a non-zero exit, never a traceback, and a demo run that leaves no file behind."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Iterator
from pathlib import Path

import openai
import pytest

from tests.e2e.procs import SIDEGATE, free_port
from tests.procs import run_process

MOCK_ONLY = "upstreams: {u: {provider: mock}}\nmodels: {m: {upstream: u}}\n"


def sidegate(
    *args: str, env: dict[str, str] | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*SIDEGATE, *args],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
        env={**os.environ, **(env or {})},
        cwd=cwd,
    )


def only_line(stderr: str) -> str:
    assert "Traceback" not in stderr
    lines = stderr.splitlines()
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.fixture
def busy_port() -> Iterator[int]:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        yield holder.getsockname()[1]


ENV_CONFIG = """
server: {port: "${PORT:-19101}"}
upstreams: {mock: {provider: mock, api_key: "${UPSTREAM_KEY}"}}
models: {mock-gpt: {upstream: mock}}
tenants: {acme: {keys: ["${ACME_KEY}"]}}
"""


@pytest.mark.parametrize("key", ["[abc", "12345", "yes", "0x1F"])
def test_check_config_keeps_a_filled_in_key_as_it_is(tmp_path: Path, key: str) -> None:
    config = tmp_path / "env.yaml"
    config.write_text(ENV_CONFIG)
    done = sidegate("check-config", str(config), env={"UPSTREAM_KEY": key, "ACME_KEY": key})
    assert done.returncode == 0, done.stderr
    assert done.stdout == f"{config}: ok (1 models, 1 tenants)\n"


def test_serve_answers_a_key_that_looks_like_a_number(tmp_path: Path) -> None:
    config = tmp_path / "env.yaml"
    config.write_text(ENV_CONFIG)
    port = free_port()
    env = {**os.environ, "PORT": str(port), "UPSTREAM_KEY": "x", "ACME_KEY": "12345"}
    args = [*SIDEGATE, "serve", "--config", str(config)]
    with run_process(args, f"http://127.0.0.1:{port}/health", env=env, cwd=tmp_path) as gateway:
        with openai.OpenAI(base_url=gateway.url + "/v1", api_key="12345") as client:
            reply = client.chat.completions.create(
                model="mock-gpt", messages=[{"role": "user", "content": "hi"}]
            )
        assert reply.choices[0].message.content == "hi"


def test_a_filled_in_port_that_is_no_number_is_a_config_error(tmp_path: Path) -> None:
    config = tmp_path / "env.yaml"
    config.write_text(ENV_CONFIG)
    done = sidegate(
        "check-config", str(config), env={"UPSTREAM_KEY": "x", "ACME_KEY": "k", "PORT": "[80"}
    )
    assert done.returncode == 1
    assert only_line(done.stderr).startswith(
        f"sidegate: invalid configuration ({config}): server.port: "
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["serve", "--port", "70000"],
            "argument --port: Input should be less than or equal to 65535",
        ),
        (["serve", "--port", "-1"], "argument --port: Input should be greater than or equal to 0"),
        (
            ["serve", "--workers", "0"],
            "argument --workers: Input should be greater than or equal to 1",
        ),
        (
            ["serve", "--workers", "-3"],
            "argument --workers: Input should be greater than or equal to 1",
        ),
        (
            ["mock-upstream", "--port", "70000"],
            "argument --port: Input should be less than or equal to 65535",
        ),
    ],
)
def test_out_of_range_flags_exit_2_before_starting(
    args: list[str], message: str, tmp_path: Path
) -> None:
    done = sidegate(*args, cwd=tmp_path)
    assert done.returncode == 2
    assert "Traceback" not in done.stderr
    assert done.stderr.splitlines()[-1] == f"sidegate {args[0]}: error: {message}"
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("workers", ["1", "2"])
def test_serve_on_a_busy_port_says_so(busy_port: int, workers: str, tmp_path: Path) -> None:
    done = sidegate("serve", "--port", str(busy_port), "--workers", workers, cwd=tmp_path)
    assert done.returncode == 1
    assert only_line(done.stderr) == (
        f"sidegate: cannot listen on 127.0.0.1:{busy_port}: Address already in use"
    )


def test_mock_upstream_on_a_busy_port_says_so(busy_port: int) -> None:
    done = sidegate("mock-upstream", "--port", str(busy_port))
    assert done.returncode == 1
    assert only_line(done.stderr) == (
        f"sidegate mock-upstream: cannot listen on 127.0.0.1:{busy_port}: Address already in use"
    )


def test_serve_without_config_leaves_nothing_on_disk(tmp_path: Path) -> None:
    port = free_port()
    args = [*SIDEGATE, "serve", "--port", str(port)]
    with run_process(args, f"http://127.0.0.1:{port}/health", cwd=tmp_path) as gateway:
        with openai.OpenAI(base_url=gateway.url + "/v1", api_key="unused") as client:
            for _ in range(3):
                client.chat.completions.create(
                    model="mock-gpt", messages=[{"role": "user", "content": "hi"}]
                )
    assert list(tmp_path.iterdir()) == []


def test_spend_without_config_asks_for_one(tmp_path: Path) -> None:
    done = sidegate("spend", "--since", "1h", cwd=tmp_path)
    assert done.returncode == 2
    assert only_line(done.stderr) == (
        "sidegate spend: --config FILE is required (the embedded default keeps no spend log)"
    )


@pytest.mark.parametrize(
    "section",
    [
        "auth: {mode: jwt, jwt: {jwks_url: 'http://127.0.0.1:9/jwks', issuer: i, audience: a}}",
        "state: {backend: redis, redis: {url: 'redis://127.0.0.1:9/0', fail_open: true}}",
    ],
)
def test_check_config_accepts_the_nested_jwt_and_redis_sections(
    tmp_path: Path, section: str
) -> None:
    config = tmp_path / "nested.yaml"
    config.write_text(MOCK_ONLY + section + "\n")
    done = sidegate("check-config", str(config))
    assert done.returncode == 0, done.stderr


def test_check_config_refuses_a_key_given_twice_differently(tmp_path: Path) -> None:
    config = tmp_path / "twice.yaml"
    config.write_text(
        MOCK_ONLY + "state: {backend: redis, url: 'redis://a/0', redis: {url: 'redis://b/0'}}\n"
    )
    done = sidegate("check-config", str(config))
    assert done.returncode == 1
    assert only_line(done.stderr) == (
        f"sidegate: invalid configuration ({config}): state: redis.url and url differ; give it once"
    )
