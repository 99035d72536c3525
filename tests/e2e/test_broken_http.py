"""Requests a gateway cannot serve as sent, on both servers (`server.http: lean` and `aiohttp`):
a body over the limit on a connection that served other routes before, broken framing, heads
no parser accepts. The client gets an OpenAI-shaped error, and the log stays one JSON object
per line.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import openai
import orjson
import pytest

from tests.answers import Answer, Answers
from tests.e2e.procs import Process, free_port, start

KEY = "sk-broken-http-key"

CONFIG = """
server: {{http: {http}, max_body_bytes: 4096}}
upstreams:
  local: {{provider: openai, endpoints: ["{upstream}/v1"]}}
models:
  gpt-4o-mini: {{upstream: local, upstream_model: mock-gpt}}
tenants:
  acme: {{keys: ["{key}"]}}
"""


@pytest.fixture(scope="module", params=["lean", "aiohttp"])
def gateway(
    request: pytest.FixtureRequest,
    mock_upstream: Process,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Process]:
    directory = tmp_path_factory.mktemp(f"broken-http-{request.param}")
    config = directory / "config.yaml"
    config.write_text(CONFIG.format(http=request.param, upstream=mock_upstream.url, key=KEY))
    port = free_port()
    process = start(
        ["serve", "--config", str(config), "--port", str(port)], port, directory / "log"
    )
    yield process
    process.stop()


def _client(gateway: Process) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=KEY, max_retries=0, timeout=30)


def _refused_as_too_large(client: openai.OpenAI, content: str) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": content}]
        )
    assert caught.value.status_code == 413
    assert isinstance(caught.value.body, dict)
    assert caught.value.body["code"] == "request_too_large"
    assert caught.value.response.headers["x-request-id"].startswith("req_")


def _reply(client: openai.OpenAI, content: str) -> str | None:
    answer = client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": content}]
    )
    return answer.choices[0].message.content


def test_the_sdk_gets_a_413_for_a_body_over_the_limit_after_listing_models(
    gateway: Process,
) -> None:
    with _client(gateway) as client:
        assert [model.id for model in client.models.list()] == ["gpt-4o-mini"]
        _refused_as_too_large(client, "x" * 5000)  # on the connection that listed the models
        assert _reply(client, "still here") == "still here"


def test_a_body_over_the_default_limit_is_a_413_on_fresh_and_reused_connections(
    spawn: Callable[..., Process], write_config: Callable[[str], Path], mock_upstream: Process
) -> None:
    text = CONFIG.format(http="lean", upstream=mock_upstream.url, key=KEY)
    config = write_config(text.replace(", max_body_bytes: 4096", ""))
    gateway = spawn("serve", "--config", str(config))
    over = "x" * (10 * 1024 * 1024 + 1000)
    with _client(gateway) as client:
        _refused_as_too_large(client, over)
    with _client(gateway) as client:
        client.models.list()
        _refused_as_too_large(client, over)
        assert _reply(client, "then a small one") == "then a small one"


def _ask(gateway: Process, data: bytes, count: int = 1) -> list[Answer]:
    """Send raw bytes on a new connection; the first `count` answers (fewer if it closes)."""
    host, port = gateway.url.removeprefix("http://").split(":")
    answers = Answers()
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(data)
        while answers.completed() < count:
            received = sock.recv(65536)
            if not received:
                break
            answers.feed(received)
    return [answer for answer in answers.answers if answer.complete]


MODELS = f"GET /v1/models HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {KEY}\r\n\r\n".encode()
CHAT = f"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {KEY}\r\n".encode()
BIG = orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x" * 5000}]})
# What each request sends, and the statuses its last answer may have: a header block over the
# lean server's limit is a 431, aiohttp's limit is on one line (400).
REFUSED = {
    "bad-length": (CHAT + b"Content-Length: abc\r\n\r\n{}", {400}),
    "negative-length": (CHAT + b"Content-Length: -1\r\n\r\n{}", {400}),
    "oversized-header": (
        b"GET /health HTTP/1.1\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n",
        {400, 431},
    ),
    "bad-chunk": (CHAT + b"Transfer-Encoding: chunked\r\n\r\nZZ\r\nabc\r\n0\r\n\r\n", {400}),
    "length-and-chunked": (
        CHAT + b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        {400},
    ),
    "bad-length-after-models": (MODELS + CHAT + b"Content-Length: abc\r\n\r\n{}", {400}),
    "over-the-limit-after-models": (
        MODELS + CHAT + b"Content-Length: %d\r\n\r\n%s" % (len(BIG), BIG),
        {413},
    ),
}


def test_refused_requests_are_answered_and_logged_as_one_json_object_per_line(
    gateway: Process,
) -> None:
    for name, (data, statuses) in REFUSED.items():
        *_, answer = _ask(gateway, data, count=data.count(b" HTTP/1.1\r\n"))
        assert answer.status in statuses, name
        error = answer.json()["error"]
        assert isinstance(error, dict) and error["type"] == "invalid_request_error", name
    time.sleep(0.2)  # the access lines of a loop turn are written at its end
    lines = gateway.output().splitlines()
    assert not [line for line in lines if "Traceback" in line]
    logged = [orjson.loads(line) for line in lines]
    assert all(isinstance(entry, dict) for entry in logged)
    # Said, not silenced: a warning with its reason, and without a traceback.
    unreadable = [e for e in logged if e["message"] == "unreadable request"]
    assert unreadable and all(e["level"] == "warning" and e["reason"] for e in unreadable)
    assert not [e for e in logged if "exception" in e]
