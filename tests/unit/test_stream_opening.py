"""A relayed stream opened from the upstream connection's callback (`relay.OpenOnHead`): what
the client gets, and in how many writes."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest
from tests.unit.client_state import ClientState

from sidegate._native import response_head
from sidegate.auth import Tenant
from sidegate.exchange import Exchange
from sidegate.lean_server.messages import LeanRequest
from sidegate.relay import OpenOnHead

_HEAD = (
    b"HTTP/1.1 200 OK\r\nServer: upstream\r\nContent-Type: text/event-stream\r\n"
    b"Transfer-Encoding: chunked\r\nopenai-processing-ms: 7\r\n\r\n"
)
_EVENT = b'data: {"choices":[{"delta":{"content":"hi"}}]}\n\n'
_LIMITS = b"x-ratelimit-limit-requests: 5\r\n"


@dataclass
class _Connection(ClientState):
    """The writing half of a client connection: what went out, write by write, and what
    waits for the end of the loop's turn."""

    written: list[bytes] = field(default_factory=list)
    pending: list[bytes] = field(default_factory=list)

    def send_soon(self, data: bytes) -> None:
        self.pending.append(data)

    def send_joining(self, data: bytes) -> bool:
        if self.closed:
            return False
        self.pending.append(data)
        if len(self.pending) == 1:
            self.flush()
        return not self.writing_paused

    def send_through(self, data: bytes) -> bool:
        if self.closed:
            return False
        self.pending.append(data)
        self.flush()
        return not self.writing_paused

    def flush(self) -> None:
        if self.pending:
            self.written.append(b"".join(self.pending))
            self.pending.clear()


@dataclass
class _Answer:
    status: int
    headers: object


def _opened(connection: _Connection | None = None) -> tuple[_Connection, OpenOnHead, object]:
    connection = connection or _Connection()
    request = LeanRequest(connection, None, "POST", "/v1/chat/completions", None, None)  # type: ignore[arg-type]
    exchange = Exchange("req-7", Tenant("t", None, None), "chat", 10.0)
    hook = OpenOnHead(request, exchange, _LIMITS, hide_usage=False, sent_at=10.002)  # type: ignore[arg-type]
    parsed = response_head(_HEAD, 65536)
    assert parsed is not None
    sink = hook(_Answer(parsed[0], parsed[2]))  # type: ignore[arg-type]
    return connection, hook, sink


def test_a_stream_head_carries_what_the_upstream_and_the_gateway_say() -> None:
    connection, hook, sink = _opened()
    assert sink is not None and hook.response is not None and hook.framer is not None
    assert len(connection.pending) == 1
    head = connection.pending[0]
    assert head.startswith(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n")
    assert b"openai-processing-ms: 7\r\n" in head and b"Server:" not in head
    assert b"Cache-Control: no-cache\r\nx-request-id: req-7\r\nx-cache: miss\r\n" in head
    # The 2 ms before the request went upstream are the gateway's own.
    assert b"x-sidegate-overhead-ms: 2.000\r\n" in head and _LIMITS in head
    assert head.endswith(b"Transfer-Encoding: chunked\r\n\r\n")


def test_the_head_leaves_with_the_first_event_in_one_write() -> None:
    connection, _, sink = _opened()
    assert not connection.written
    assert sink(_EVENT) is True  # type: ignore[operator]
    assert len(connection.written) == 1 and not connection.pending
    assert connection.written[0].endswith(b"\r\n\r\n%x\r\n%b\r\n" % (len(_EVENT), _EVENT))
    assert sink(_EVENT) is True  # type: ignore[operator]
    assert connection.written[1:] == [b"%x\r\n%b\r\n" % (len(_EVENT), _EVENT)]


def test_an_answer_that_is_no_event_stream_is_left_to_the_task() -> None:
    connection = _Connection()
    request = LeanRequest(connection, None, "POST", "/v1/chat/completions", None, None)  # type: ignore[arg-type]
    exchange = Exchange("req-8", Tenant("t", None, None), "chat", 10.0)
    hook = OpenOnHead(request, exchange, b"", hide_usage=False, sent_at=10.0)  # type: ignore[arg-type]
    json_head = _HEAD.replace(b"text/event-stream", b"application/json")
    parsed = response_head(json_head, 65536)
    assert parsed is not None
    assert hook(_Answer(parsed[0], parsed[2])) is None  # type: ignore[arg-type]
    assert hook.response is None and not connection.written and not connection.pending


@pytest.mark.parametrize(
    ("connection", "framing"),
    [
        (_Connection(http11=False), b"\r\nConnection: close\r\n\r\n"),
        (
            _Connection(draining=True),
            b"\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        ),
        (
            _Connection(keep_alive=False),
            b"\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        ),
    ],
    ids=["http/1.0", "draining", "client-closes"],
)
def test_a_stream_that_ends_its_connection_says_so(connection: _Connection, framing: bytes) -> None:
    _, hook, sink = _opened(connection)
    assert sink is not None and hook.response is not None
    head = connection.pending[0]
    assert head.endswith(framing) and head.count(b"\r\n\r\n") == 1
    if not connection.http11:
        assert not connection.keep_alive  # the stream ends where the connection does
    assert sink(_EVENT) is True  # type: ignore[operator]
    # An HTTP/1.0 client reads the events as they are, to the connection's end.
    event = _EVENT if not connection.http11 else b"%x\r\n%b\r\n" % (len(_EVENT), _EVENT)
    assert connection.written == [head + event]


def test_the_first_event_to_a_client_that_has_gone_stops_the_relay() -> None:
    connection, hook, sink = _opened()
    connection.closed = True
    assert sink(_EVENT) is False  # type: ignore[operator]
    assert hook.framer is not None and not hook.framer.done
