"""Answers as the lean server writes them: framing, defaults and refused header values."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from email.utils import parsedate_to_datetime

import httptools
import pytest
from aiohttp import web
from tests.unit.client_state import ClientState

from sidegate.lean_server.messages import (
    LeanAnswer,
    LeanStream,
    encode_response,
    head,
    stream_head_tail,
)


class _Seen:
    def __init__(self) -> None:
        self.headers: dict[str, str] = {}
        self.body = b""
        self.complete = False

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers[name.decode().lower()] = value.decode()

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete = True


def _parse(wire: bytes) -> tuple[int, _Seen]:
    seen = _Seen()
    parser = httptools.HttpResponseParser(seen)
    parser.feed_data(wire)
    return parser.get_status_code(), seen


def test_a_response_is_framed_by_its_length_with_a_date() -> None:
    response = web.Response(body=b'{"ok":true}', status=201, headers={"x-cache": "miss"})
    status, seen = _parse(encode_response(response, keep_alive=True))
    assert status == 201
    assert seen.complete and seen.body == b'{"ok":true}'
    assert seen.headers["content-length"] == "11"
    assert seen.headers["content-type"] == "application/octet-stream"
    assert seen.headers["x-cache"] == "miss"
    # Today's date, as RFC 9110 writes it (the second may turn between the two reads).
    sent = parsedate_to_datetime(seen.headers["date"]).timestamp()
    assert seen.headers["date"].endswith(" GMT") and abs(sent - time.time()) < 2
    assert "connection" not in seen.headers


def test_a_closing_response_says_so_and_keeps_its_content_type() -> None:
    response = web.Response(body=b"{}", content_type="application/json")
    _, seen = _parse(encode_response(response, keep_alive=False))
    assert seen.headers["connection"] == "close"
    assert seen.headers["content-type"].startswith("application/json")


def test_framing_headers_from_the_handler_are_not_repeated() -> None:
    response = web.Response(body=b"abc", headers={"Content-Length": "99", "Date": "then"})
    wire = encode_response(response, keep_alive=True)
    assert wire.count(b"Content-Length") == 1 and wire.count(b"Date:") == 1
    assert _parse(wire)[1].body == b"abc"


@pytest.mark.parametrize("value", ["a\r\nSet-Cookie: x=1", "a\nb", "a\rb"])
def test_a_header_value_with_a_line_break_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="line break"):
        head(200, "OK", {"x-upstream": value}, b"")


@pytest.mark.parametrize("value", ["a\r\nSet-Cookie: x=1", "a\nb"])
def test_a_relayed_header_value_with_a_line_break_is_refused(value: str) -> None:
    with pytest.raises(ValueError, match="line break"):
        encode_response(LeanAnswer(200, {"x-upstream": value}, b"{}"), keep_alive=True)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "headers", "keep_alive"),
    [
        (200, {"Content-Type": "application/json", "x-cache": "miss"}, True),
        (429, {"content-type": "application/json", "x-request-id": "req_1"}, False),
        (200, {"x-cache": "hit"}, True),
        (599, {"Content-Type": "text/plain"}, True),
    ],
)
def test_a_relayed_answer_reads_as_the_same_response_would(
    status: int, headers: dict[str, str], keep_alive: bool
) -> None:
    body = b'{"id":"chatcmpl-1"}'
    relayed = LeanAnswer(status, dict(headers), body)
    answer = _parse(encode_response(relayed, keep_alive=keep_alive))  # type: ignore[arg-type]
    general = web.Response(body=body, status=status, headers=headers)
    expected = _parse(encode_response(general, keep_alive=keep_alive))
    assert answer[0] == expected[0] == status
    assert answer[1].body == expected[1].body == body
    # Both carry a date; the second may turn between the two encodings.
    assert answer[1].headers.pop("date") and expected[1].headers.pop("date")
    assert answer[1].headers == expected[1].headers


@dataclass
class _Connection(ClientState):
    """What a LeanStream writes through; `writing_paused` as the transport last said."""

    sent: list[bytes] = field(default_factory=list)
    drains: int = 0

    def send_soon(self, data: bytes) -> None:
        self.sent.append(data)

    def send_joining(self, data: bytes) -> bool:
        if self.closed:
            return False
        self.sent.append(data)
        return not self.writing_paused

    def writable(self) -> None:
        if self.closed:
            raise ConnectionResetError("Cannot write to closing transport")

    async def drain(self) -> None:
        self.drains += 1


def _event_stream(connection: _Connection) -> LeanStream:
    head = b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n"
    return LeanStream(connection, 200, head + stream_head_tail(connection))  # type: ignore[arg-type]


async def test_a_stream_waits_for_the_client_only_while_writing_is_paused() -> None:
    connection = _Connection()
    stream = _event_stream(connection)
    await stream.write(b"data: 1\n\n")
    assert connection.drains == 0
    connection.writing_paused = True  # the client stopped reading: its buffer filled up
    await stream.write(b"data: 2\n\n")
    await stream.write_eof()
    assert connection.drains == 2
    assert connection.sent[1:] == [b"9\r\ndata: 1\n\n\r\n", b"9\r\ndata: 2\n\n\r\n", b"0\r\n\r\n"]
    assert connection.sent[0].startswith(b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n")


async def test_a_relay_writing_from_a_callback_is_told_when_to_stop() -> None:
    connection = _Connection()
    stream = _event_stream(connection)
    assert stream.write_now(b"data: 1\n\n") is True
    connection.writing_paused = True  # the client's buffer filled with that write
    assert stream.write_now(b"data: 2\n\n") is False  # written, but wait before the next
    await stream.drain()
    assert connection.drains == 1
    assert connection.sent[1:] == [b"9\r\ndata: 1\n\n\r\n", b"9\r\ndata: 2\n\n\r\n"]
    connection.closed = True  # the client has gone
    assert stream.write_now(b"data: 3\n\n") is False
    with pytest.raises(ConnectionResetError):
        await stream.drain()
