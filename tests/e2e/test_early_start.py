"""Requests that start early: sent upstream from the socket's callback, before their task.

On the lean server a whole request on an idle client connection goes upstream at once when a
pooled upstream connection is idle (`sidegate.early`); its task takes over after the write.
Each test warms the gateway's upstream connections first, so the requests it checks take that
path, and checks that what users see is what the ordinary path gives: limits, failover, the
gateway's headers, and a client that leaves before its answer.
"""

from __future__ import annotations

import json
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path

import openai
import orjson
import pytest

from tests.e2e.procs import Process, free_port, http_get, metric_value, start

KEY = "sk-early-acme"
TIGHT_KEY = "sk-early-tight"
SINGLE_KEY = "sk-early-single"


def user(text: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": text}]


def _gateway(
    spawn: Callable[..., Process], write_config: Callable[[str], Path], endpoints: list[str]
) -> Process:
    listed = ", ".join(f'"{url}"' for url in endpoints)
    config = write_config(f"""
        upstreams:
          pool: {{endpoints: [{listed}], timeout_seconds: 5}}
        models:
          m: {{upstream: pool}}
        plans:
          tight: {{rpm: 3, burst: 3}}
          single: {{max_concurrent: 1}}
        tenants:
          acme: {{keys: ["{KEY}"]}}
          tight: {{plan: tight, keys: ["{TIGHT_KEY}"]}}
          single: {{plan: single, keys: ["{SINGLE_KEY}"]}}
    """)
    return spawn("serve", "--config", str(config))


def _client(gateway: Process, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=key, max_retries=0)


def _metric(gateway: Process, name: str, **labels: str) -> float:
    _, body = http_get(gateway.url + "/metrics")
    return metric_value(body.decode(), name, **labels) or 0.0


def _access_lines(gateway: Process) -> list[dict[str, object]]:
    lines = []
    for line in gateway.output().splitlines():
        if line.startswith("{"):
            record = json.loads(line)
            if record.get("logger") == "sidegate.access" or "attempts" in record:
                lines.append(record)
    return lines


def test_a_refusal_is_answered_and_counted_once(
    mock_upstream: Process, spawn: Callable[..., Process], write_config: Callable[[str], Path]
) -> None:
    gateway = _gateway(spawn, write_config, [f"{mock_upstream.url}/v1"])
    with _client(gateway, TIGHT_KEY) as client:
        refused = None
        for index in range(6):
            try:
                client.chat.completions.create(model="m", messages=user(f"turn {index}"))
            except openai.RateLimitError as error:
                refused = error
                break
    assert refused is not None, "the plan's rpm never refused"
    assert refused.response.headers["x-ratelimit-limit-requests"] == "3"
    assert refused.response.headers["x-request-id"]
    assert refused.body is not None
    assert _metric(gateway, "llm_rate_limited_total", tenant="tight", limit="requests") == 1.0


def test_a_client_that_leaves_before_its_answer_frees_its_slot(
    mock_upstream: Process, spawn: Callable[..., Process], write_config: Callable[[str], Path]
) -> None:
    gateway = _gateway(spawn, write_config, [f"{mock_upstream.url}/v1"])
    with _client(gateway, SINGLE_KEY) as client:
        assert client.chat.completions.create(model="m", messages=user("warm")).choices
        body = orjson.dumps({"model": "m", "messages": user("!sleep 300 gone")})
        host, port = gateway.url.removeprefix("http://").split(":")
        with socket.create_connection((host, int(port)), timeout=5) as leaving:
            leaving.sendall(
                b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n"
                + f"Authorization: Bearer {SINGLE_KEY}\r\n".encode()
                + b"Content-Type: application/json\r\n"
                + b"Content-Length: %d\r\n\r\n" % len(body)
                + body
            )
        deadline = time.monotonic() + 10
        while _metric(gateway, "llm_requests_total", tenant="single", status="499") < 1:
            assert time.monotonic() < deadline, "the departure was never recorded"
            time.sleep(0.05)
        # The one concurrency slot came back: the next request is admitted, not refused.
        reply = client.chat.completions.create(model="m", messages=user("still here"))
    assert reply.choices[0].message.content == "still here"
    assert _metric(gateway, "llm_active_requests", model="m") == 0.0


def _head_and_part_of_the_body(gateway: Process, key: str) -> tuple[socket.socket, bytes]:
    """A connection holding a request's head and half its body; the other half is returned."""
    body = orjson.dumps({"model": "m", "messages": user("slow upload")})
    host, port = gateway.url.removeprefix("http://").split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    sock.sendall(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n"
        + f"Authorization: Bearer {key}\r\n".encode()
        + b"Content-Type: application/json\r\n"
        + b"Content-Length: %d\r\n\r\n" % len(body)
        + body[:10]
    )
    return sock, body[10:]


def test_a_client_that_leaves_mid_upload_is_recorded(
    mock_upstream: Process, spawn: Callable[..., Process], write_config: Callable[[str], Path]
) -> None:
    gateway = _gateway(spawn, write_config, [f"{mock_upstream.url}/v1"])
    sock, _ = _head_and_part_of_the_body(gateway, KEY)
    time.sleep(0.1)
    sock.close()
    deadline = time.monotonic() + 10
    while _metric(gateway, "llm_requests_total", tenant="acme", status="499") < 1:
        assert time.monotonic() < deadline, "the departure was never recorded"
        time.sleep(0.05)


def test_sigterm_waits_for_a_request_still_uploading(
    mock_upstream: Process, spawn: Callable[..., Process], write_config: Callable[[str], Path]
) -> None:
    gateway = _gateway(spawn, write_config, [f"{mock_upstream.url}/v1"])
    sock, rest = _head_and_part_of_the_body(gateway, KEY)
    with sock:
        time.sleep(0.1)
        gateway.popen.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        sock.sendall(rest)
        answer = b""
        while b"slow upload" not in answer:
            piece = sock.recv(65536)
            assert piece, f"the connection closed before the answer: {answer!r}"
            answer += piece
    assert answer.startswith(b"HTTP/1.1 200")
    assert gateway.popen.wait(15) == 0


def test_the_first_attempt_fails_over_when_its_endpoint_dies(
    mock_upstream: Process,
    spawn: Callable[..., Process],
    write_config: Callable[[str], Path],
    tmp_path: Path,
) -> None:
    port = free_port()
    doomed = start(["mock-upstream", "--port", str(port)], port, tmp_path / "doomed.log")
    try:
        gateway = _gateway(spawn, write_config, [f"{doomed.url}/v1", f"{mock_upstream.url}/v1"])
        with _client(gateway) as client:
            for index in range(4):  # both endpoints now hold an idle connection
                client.chat.completions.create(model="m", messages=user(f"warm {index}"))
            doomed.stop(signal.SIGKILL)
            for index in range(6):
                reply = client.chat.completions.create(model="m", messages=user(f"after {index}"))
                assert reply.choices[0].message.content == f"after {index}"
    finally:
        doomed.stop(signal.SIGKILL)


def test_an_upstream_error_on_the_first_attempt_is_retried_on_the_next_endpoint(
    mock_upstream: Process, spawn: Callable[..., Process], write_config: Callable[[str], Path]
) -> None:
    other = mock_upstream.url.replace("127.0.0.1", "localhost")
    gateway = _gateway(spawn, write_config, [f"{mock_upstream.url}/v1", f"{other}/v1"])
    with _client(gateway) as client:
        for index in range(4):
            client.chat.completions.create(model="m", messages=user(f"warm {index}"))
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model="m", messages=user("!status 503 no"))
    assert caught.value.status_code == 503
    deadline = time.monotonic() + 5
    while not any(line.get("status") == 503 for line in _access_lines(gateway)):
        assert time.monotonic() < deadline, "no access log line for the 503"
        time.sleep(0.05)
    (line,) = [line for line in _access_lines(gateway) if line.get("status") == 503]
    assert line["attempts"] == 2


def test_a_stream_started_early_carries_the_gateways_headers(
    mock_upstream: Process, spawn: Callable[..., Process], write_config: Callable[[str], Path]
) -> None:
    gateway = _gateway(spawn, write_config, [f"{mock_upstream.url}/v1"])
    with _client(gateway) as client:
        client.chat.completions.create(model="m", messages=user("warm"))
        raw = client.chat.completions.with_raw_response.create(
            model="m",
            messages=user("!sleep 300 streamed"),
            stream=True,
            extra_headers={"x-request-id": "early-stream-1"},
        )
        text = "".join(
            chunk.choices[0].delta.content or "" for chunk in raw.parse() if chunk.choices
        )
    assert text == "streamed"
    assert raw.headers["x-request-id"] == "early-stream-1"
    assert raw.headers["x-cache"] == "miss"
    # Time spent inside the gateway: the upstream's 300 ms are not in it.
    assert 0.0 <= float(raw.headers["x-sidegate-overhead-ms"]) < 300.0


def test_a_stream_started_early_carries_the_limits_headers_and_a_bad_key_is_refused(
    mock_upstream: Process, spawn: Callable[..., Process], write_config: Callable[[str], Path]
) -> None:
    gateway = _gateway(spawn, write_config, [f"{mock_upstream.url}/v1"])
    with _client(gateway, TIGHT_KEY) as client:
        client.chat.completions.create(model="m", messages=user("warm"))
        raw = client.chat.completions.with_raw_response.create(
            model="m", messages=user("streamed"), stream=True
        )
        chunks = list(raw.parse())
    assert chunks and raw.headers["content-type"].startswith("text/event-stream")
    assert raw.headers["cache-control"] == "no-cache"
    assert raw.headers["x-ratelimit-limit-requests"] == "3"
    assert raw.headers["x-ratelimit-remaining-requests"] == "1"
    with (
        _client(gateway, "sk-early-wrong") as client,
        pytest.raises(openai.AuthenticationError) as refused,
    ):
        client.chat.completions.create(model="m", messages=user("who am i"))
    assert refused.value.status_code == 401
    assert isinstance(refused.value.body, dict) and refused.value.body["message"]
