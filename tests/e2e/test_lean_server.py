"""The lean server on the wire: what a client that is not the openai SDK may send it.

Raw sockets against a real `sidegate serve` (the lean server is the default): keep-alive
connections that mix hot and other routes, pipelining, chunked bodies, `Expect: 100-continue`,
HTTP/1.0, malformed and oversized requests, and a client that leaves mid-stream.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import orjson
import pytest

from tests.answers import Answer, Answers
from tests.e2e.procs import Process, free_port, http_get, metric_value, start

KEY = "sk-lean-server-key"

CONFIG = """
server: {{max_body_bytes: 4096}}
upstreams:
  local: {{provider: openai, endpoints: ["{upstream}/v1"]}}
  paced: {{provider: openai, endpoints: ["{paced}/v1"]}}
models:
  gpt-4o-mini: {{upstream: local, upstream_model: mock-gpt}}
  slow-gpt: {{upstream: paced, upstream_model: mock-gpt}}
tenants:
  acme: {{keys: ["{key}"]}}
"""


@pytest.fixture(scope="module")
def gateway(
    mock_upstream: Process, paced_upstream: Process, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Process]:
    process = _serve(CONFIG, tmp_path_factory.mktemp("lean-server"), mock_upstream, paced_upstream)
    yield process
    process.stop()


def _serve(config_text: str, directory: Path, upstream: Process, paced: Process) -> Process:
    config = directory / "config.yaml"
    config.write_text(config_text.format(upstream=upstream.url, paced=paced.url, key=KEY))
    port = free_port()
    return start(
        ["serve", "--config", str(config), "--port", str(port)], port, directory / "serve.log"
    )


class Wire:
    """A raw client connection that reads answers with llhttp."""

    def __init__(self, gateway: Process) -> None:
        host, port = gateway.url.removeprefix("http://").split(":")
        self.sock = socket.create_connection((host, int(port)), timeout=10)
        self._answers = Answers()
        self.closed = False

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def read(self, count: int) -> list[Answer]:
        """Read until `count` answers are complete (or the server closes)."""
        while self._answers.completed() < count and not self.closed:
            data = self.sock.recv(65536)
            if not data:
                self.closed = True
                last = self._answers.answers[-1] if self._answers.answers else None
                if last is not None and not {"content-length", "transfer-encoding"} & set(
                    last.headers
                ):
                    last.complete = True  # close-delimited: the end of the stream ends it
                break
            self._answers.feed(data)
        done = [a for a in self._answers.answers if a.complete]
        self._answers.answers = [a for a in self._answers.answers if not a.complete]
        return done

    def closed_by_server(self) -> bool:
        try:
            return self.sock.recv(1) == b""
        except ConnectionResetError:
            return True


def chat(
    content: str, *, stream: bool = False, version: str = "1.1", model: str = "gpt-4o-mini"
) -> bytes:
    messages = [{"role": "user", "content": content}]
    body = orjson.dumps({"model": model, "messages": messages, "stream": stream})
    return (
        f"POST /v1/chat/completions HTTP/{version}\r\nHost: gw\r\n"
        f"Authorization: Bearer {KEY}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


HEALTH = b"GET /health HTTP/1.1\r\nHost: gw\r\n\r\n"
MODELS = f"GET /v1/models HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {KEY}\r\n\r\n".encode()


def reply_text(answer: Answer) -> object:
    choices = answer.json()["choices"]
    assert isinstance(choices, list)
    return choices[0]["message"]["content"]


@pytest.fixture
def wire(gateway: Process) -> Iterator[Wire]:
    connection = Wire(gateway)
    yield connection
    connection.sock.close()


def test_one_connection_serves_hot_and_other_routes_in_turn(wire: Wire) -> None:
    for request, expected in [
        (chat("first"), "first"),
        (HEALTH, None),
        (chat("after health"), "after health"),
        (MODELS, None),
        (chat("last"), "last"),
    ]:
        wire.send(request)
        (answer,) = wire.read(1)
        assert answer.status == 200
        if expected is not None:
            assert reply_text(answer) == expected
            assert answer.headers["x-request-id"].startswith("req_")
    assert not wire.closed


def test_pipelined_requests_are_answered_in_order(wire: Wire) -> None:
    wire.send(chat("one") + chat("two") + HEALTH + chat("three") + MODELS)
    answers = wire.read(5)
    assert [a.status for a in answers] == [200] * 5
    assert [reply_text(answers[i]) for i in (0, 1, 3)] == ["one", "two", "three"]
    assert answers[2].json() == {"status": "ok"}
    assert answers[4].json()["object"] == "list"


def test_a_chunked_request_body_is_read_whole(wire: Wire) -> None:
    body = orjson.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n"
        f"Authorization: Bearer {KEY}\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    chunks = b"".join(
        b"%x\r\n%s\r\n" % (len(body[i : i + 7]), body[i : i + 7]) for i in range(0, len(body), 7)
    )
    wire.send(head + chunks + b"0\r\n\r\n")
    (answer,) = wire.read(1)
    assert answer.status == 200
    assert reply_text(answer) == "hi"


def test_expect_100_continue_gets_an_interim_answer(wire: Wire) -> None:
    request = chat("continue")
    head, _, body = request.partition(b"\r\n\r\n")
    wire.send(head + b"\r\nExpect: 100-continue\r\n\r\n")
    interim = wire.sock.recv(4096)
    assert interim.startswith(b"HTTP/1.1 100 Continue\r\n\r\n")
    wire.send(body)
    (answer,) = wire.read(1)
    assert answer.status == 200
    assert reply_text(answer) == "continue"


def test_http_10_stream_is_delimited_by_close(wire: Wire) -> None:
    wire.send(chat("old client", stream=True, version="1.0"))
    (answer,) = wire.read(1)
    assert answer.status == 200
    assert "transfer-encoding" not in answer.headers
    assert answer.body.rstrip().endswith(b"data: [DONE]")
    assert wire.closed


def test_malformed_http_is_a_400_and_the_connection_closes(wire: Wire) -> None:
    wire.send(b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: nope\r\n\r\n")
    (answer,) = wire.read(1)
    assert answer.status == 400
    assert answer.json()["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert answer.headers["connection"] == "close"
    assert wire.closed_by_server()


def test_malformed_http_after_a_request_aiohttp_served_is_still_openai_shaped(
    wire: Wire,
) -> None:
    # `/v1/models` is aiohttp's: the rest of the connection is then read by aiohttp as well.
    wire.send(MODELS + b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: nope\r\n\r\n")
    first, second = wire.read(2)
    assert first.status == 200
    assert second.status == 400
    assert second.headers["content-type"].startswith("application/json")
    assert second.json()["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert wire.closed_by_server()


def test_an_oversized_header_block_is_a_431(wire: Wire) -> None:
    wire.send(b"POST /v1/chat/completions HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n")
    (answer,) = wire.read(1)
    assert answer.status == 431
    assert wire.closed_by_server()


def test_a_body_over_the_limit_is_refused_before_it_is_read(wire: Wire) -> None:
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n"
        f"Authorization: Bearer {KEY}\r\nContent-Length: 100000\r\n\r\n"
    ).encode()
    wire.send(head)  # the 100 KB body is never sent: the answer must not wait for it
    (answer,) = wire.read(1)
    assert answer.status == 413
    assert answer.json()["error"]["code"] == "request_too_large"  # type: ignore[index]
    assert answer.headers["x-request-id"]
    assert wire.closed_by_server()


def test_a_chunked_body_over_the_limit_is_a_413(wire: Wire) -> None:
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n"
        f"Authorization: Bearer {KEY}\r\nTransfer-Encoding: chunked\r\n\r\n"
    ).encode()
    wire.send(head + b"1000\r\n" + b"x" * 4096 + b"\r\n" + b"10\r\n" + b"y" * 16 + b"\r\n")
    (answer,) = wire.read(1)
    assert answer.status == 413


def test_a_body_over_the_limit_after_a_request_aiohttp_served_is_a_413(wire: Wire) -> None:
    # `/v1/models` is aiohttp's: the connection's later requests are read for aiohttp too.
    wire.send(MODELS)
    (models,) = wire.read(1)
    assert models.status == 200
    wire.send(chat("x" * 5000))
    (answer,) = wire.read(1)
    assert answer.status == 413
    assert answer.json()["error"]["code"] == "request_too_large"  # type: ignore[index]
    assert answer.headers["x-request-id"].startswith("req_")
    wire.send(chat("still served"))  # the refused body was read to its end: the stream is whole
    (after,) = wire.read(1)
    assert reply_text(after) == "still served"


def test_a_pipelined_body_over_the_limit_after_aiohttps_request_is_a_413_in_turn(
    wire: Wire,
) -> None:
    wire.send(MODELS + chat("x" * 5000) + chat("after"))
    answers = wire.read(3)
    assert [a.status for a in answers] == [200, 413, 200]
    assert answers[1].json()["error"]["code"] == "request_too_large"  # type: ignore[index]
    assert reply_text(answers[2]) == "after"


def test_a_malformed_chunk_is_an_openai_shaped_400_and_the_connection_closes(wire: Wire) -> None:
    wire.send(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n"
        + f"Authorization: Bearer {KEY}\r\nTransfer-Encoding: chunked\r\n\r\n".encode()
        + b"ZZ\r\nabc\r\n0\r\n\r\n"
    )
    (answer,) = wire.read(1)
    assert answer.status == 400
    assert answer.json()["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert answer.headers["x-request-id"].startswith("req_")
    assert answer.headers["connection"] == "close"
    assert wire.closed_by_server()


def test_a_malformed_chunk_after_its_request_was_answered_is_a_400(wire: Wire) -> None:
    wire.send(
        b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer wrong\r\n"
        b'Transfer-Encoding: chunked\r\n\r\n5\r\n{"mod\r\n'
    )
    (refused,) = wire.read(1)  # the key is refused before the body is in
    assert refused.status == 401
    wire.send(b"ZZ\r\nabc\r\n0\r\n\r\n")
    (answer,) = wire.read(1)
    assert answer.status == 400
    assert answer.json()["error"]["type"] == "invalid_request_error"  # type: ignore[index]
    assert wire.closed_by_server()


def test_a_client_leaving_mid_stream_is_recorded_and_the_server_carries_on(
    gateway: Process,
) -> None:
    def cancelled() -> float:
        _, text = http_get(gateway.url + "/metrics")
        found = metric_value(text.decode(), "llm_requests_total", tenant="acme", status="499")
        return found or 0.0

    before = cancelled()
    leaving = Wire(gateway)
    # The paced upstream streams 50 tokens a second: this answer takes about two seconds.
    leaving.send(chat("word " * 100, stream=True, model="slow-gpt"))
    assert leaving.sock.recv(100).startswith(b"HTTP/1.1 200")
    leaving.sock.close()
    deadline = time.monotonic() + 10
    while cancelled() <= before:
        assert time.monotonic() < deadline, "the departure was never recorded"
        time.sleep(0.05)
    staying = Wire(gateway)
    try:
        staying.send(chat("still here"))
        (answer,) = staying.read(1)
    finally:
        staying.sock.close()
    assert reply_text(answer) == "still here"


def test_a_client_that_reads_slowly_gets_the_whole_stream_in_order(
    mock_upstream: Process, paced_upstream: Process, tmp_path: Path
) -> None:
    # Big enough (~1 MB of events) to fill the kernel's buffers and the server's, so the relay
    # must stop and wait for this client rather than drop or reorder events.
    roomy = _serve(
        CONFIG.replace("max_body_bytes: 4096", "max_body_bytes: 65536"),
        tmp_path,
        mock_upstream,
        paced_upstream,
    )
    text = " ".join(f"w{n}" for n in range(5000))
    try:
        host, port = roomy.url.removeprefix("http://").split(":")
        sock = socket.socket()
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        sock.settimeout(10)
        sock.connect((host, int(port)))
        sock.sendall(chat(text, stream=True))
        time.sleep(0.5)  # read nothing while the upstream's events pile up
        answers = Answers()
        while answers.completed() < 1:
            data = sock.recv(2048)
            assert data, "the server closed the stream early"
            answers.feed(data)
        sock.close()
    finally:
        roomy.stop()
    (answer,) = answers.answers
    events = [e for e in answer.body.split(b"\n\n") if e]
    assert events[-1] == b"data: [DONE]"
    chunks = [orjson.loads(e.removeprefix(b"data: ")) for e in events[:-1]]
    content = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])
    assert content == text


def test_an_idle_keep_alive_connection_is_closed_after_the_timeout(
    spawn: Callable[..., Process], write_config: Callable[[str], Path], mock_upstream: Process
) -> None:
    config = CONFIG.format(upstream=mock_upstream.url, paced=mock_upstream.url, key=KEY)
    config = config.replace("max_body_bytes: 4096", "keepalive_timeout_seconds: 1")
    gateway = spawn("serve", "--config", str(write_config(config)))
    idle = Wire(gateway)
    try:
        idle.send(chat("then nothing"))
        (answer,) = idle.read(1)
        assert answer.status == 200
        started = time.monotonic()
        idle.sock.settimeout(10)
        assert idle.closed_by_server()
        assert time.monotonic() - started >= 0.9
    finally:
        idle.sock.close()


@pytest.fixture(scope="module")
def aiohttp_gateway(
    mock_upstream: Process, paced_upstream: Process, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Process]:
    """The same gateway on aiohttp's server alone (`server.http: aiohttp`)."""
    text = CONFIG.replace("server: {{", "server: {{http: aiohttp, ")
    directory = tmp_path_factory.mktemp("aiohttp-server")
    process = _serve(text, directory, mock_upstream, paced_upstream)
    yield process
    process.stop()


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"POST /v1/chat/completions HTTP/1.1\r\nContent-Length: nope\r\n\r\n",
        b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03 / HTTP/1.1\r\n\r\n",
        b"POST /v1/chat/completions HTTP/1.1\r\nX-Big: " + b"a" * 70_000 + b"\r\n\r\n",
    ],
    ids=["bad-length", "not-http", "oversized-header"],
)
def test_aiohttps_server_answers_unreadable_requests_in_openai_shape(
    aiohttp_gateway: Process, request_bytes: bytes
) -> None:
    wire = Wire(aiohttp_gateway)
    try:
        wire.send(request_bytes)
        (answer,) = wire.read(1)
        assert answer.status == 400
        assert answer.headers["content-type"].startswith("application/json")
        error = answer.json()["error"]
        assert isinstance(error, dict)
        assert error["type"] == "invalid_request_error"
        assert "Traceback" not in str(error["message"])
        assert wire.closed_by_server()
    finally:
        wire.sock.close()


def test_a_streams_body_ends_with_its_done_whenever_the_upstream_ends_its_own(
    gateway: Process,
) -> None:
    """The client's answer is whole at `[DONE]`: an upstream that keeps its body open a while
    longer (`!linger`) does not hold the client's open."""
    wire = Wire(gateway)
    wire.sock.settimeout(3.0)  # the upstream lingers 6 s: only an answer ended early comes in
    wire.send(chat("!linger 6000 all at once", stream=True))
    try:
        (answer,) = wire.read(1)
    finally:
        wire.sock.close()
    assert answer.status == 200
    assert answer.body.endswith(b"data: [DONE]\n\n")
    assert b'"content":" once"' in answer.body
