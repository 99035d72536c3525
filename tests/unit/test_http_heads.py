"""The one-call readers agree with llhttp on every message they take.

`_native.request_head` reads the lean server's common request (a whole plain POST) and
`_native.response_head` the lean client's common answer (whole, framed by Content-Length)
without llhttp, and decline the rest. Whatever they take, llhttp must read the same way: target
or status, headers (every byte of their values), keep-alive and where the message ends.
Messages are generated around the places HTTP parsers differ: line ends, framing headers,
blanks and bytes in values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httptools
from hypothesis import given, settings
from hypothesis import strategies as st

from sidegate._native import ChunkedBody, request_head, response_head

LIMIT = 64 * 1024


@dataclass
class _Llhttp:
    """What llhttp reads of the first request in some bytes."""

    url: bytes = b""
    status: int = 0
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    keep_alive: bool | None = None
    complete: bool = False
    parser: httptools.HttpRequestParser | httptools.HttpResponseParser | None = None

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        assert self.parser is not None
        self.keep_alive = self.parser.should_keep_alive()  # as the lean server reads it
        if isinstance(self.parser, httptools.HttpResponseParser):
            self.status = self.parser.get_status_code()

    def on_body(self, body: bytes) -> None:
        self.body += body

    def on_message_complete(self) -> None:
        self.complete = True


def _llhttp(data: bytes) -> _Llhttp:
    read = _Llhttp()
    read.parser = httptools.HttpRequestParser(read)
    read.parser.feed_data(data)
    return read


NAMES = st.sampled_from(
    [
        "Host",
        "Authorization",
        "X-Stainless-Lang",
        "Content-Type",
        "Connection",
        "Content-Length",
        "content-length",
        "Transfer-Encoding",
        "Expect",
        "Upgrade",
        "X Bad",
        "X-Empty",
    ]
)
VALUES = st.one_of(
    st.sampled_from(["close", "keep-alive", "Upgrade", "chunked", "100-continue", "2", " 2 "]),
    st.text(
        alphabet=st.sampled_from([*"az09 \t,;=/\"'", "\x7f", "\x80", "\xe9", "\xff", "\r"]),
        max_size=12,
    ),
)
ENDS = st.sampled_from(["\r\n", "\r\n", "\r\n", "\n"])


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    method = draw(st.sampled_from(["POST", "POST", "GET"]))
    target = draw(st.sampled_from(["/v1/chat/completions", "/v1/embeddings?api-version=1", "/x"]))
    version = draw(st.sampled_from(["1.1", "1.1", "1.0"]))
    return draw(_message(f"{method} {target} HTTP/{version}"))


@st.composite
def answers(draw: st.DrawFn) -> bytes:
    version = draw(st.sampled_from(["1.1", "1.1", "1.0"]))
    status = draw(st.sampled_from(["200 OK", "429 Too Many", "503 ", "204 No Content", "100 C"]))
    return draw(_message(f"HTTP/{version} {status}"))


@st.composite
def _message(draw: st.DrawFn, first_line: str) -> bytes:
    lines = [first_line]
    body = draw(st.binary(max_size=40))
    if draw(st.booleans()):
        lines.append(f"Content-Length: {len(body)}")
    for _ in range(draw(st.integers(0, 6))):
        lines.append(f"{draw(NAMES)}:{draw(st.sampled_from(['', ' ', '  ']))}{draw(VALUES)}")
    end = draw(ENDS)
    data = (end.join(lines) + end + end).encode("latin-1") + body
    cut = draw(st.integers(0, len(data)))
    return data[:cut] if draw(st.booleans()) else data


@settings(max_examples=3000, deadline=None)
@given(requests())
def test_what_the_native_reader_takes_llhttp_reads_the_same_way(data: bytes) -> None:
    taken = request_head(data, LIMIT)
    if taken is None:
        return
    target, keep_alive, headers, head_len, length = taken
    read = _llhttp(data[: head_len + length])
    assert read.complete
    assert read.url == target
    assert read.headers == headers.items()
    assert read.body == data[head_len : head_len + length]
    assert read.keep_alive == keep_alive


@settings(max_examples=3000, deadline=None)
@given(answers())
def test_what_the_native_reader_takes_of_an_answer_llhttp_reads_the_same_way(data: bytes) -> None:
    taken = response_head(data, LIMIT)
    if taken is None:
        return
    status, keep_alive, headers, head_len, chunked = taken
    read = _Llhttp()
    read.parser = httptools.HttpResponseParser(read)
    try:
        read.parser.feed_data(data)
    except httptools.HttpParserError:
        assert chunked  # only a chunked body, read apart from its head, may be broken
    assert read.status == status
    assert read.headers == headers.items()
    assert read.keep_alive == keep_alive
    if not chunked:
        assert read.complete
        assert read.body == data[head_len:]
        return
    body = ChunkedBody()
    payload, _ = body.feed(data[head_len:])
    if body.error is None:  # what the native reader accepts, llhttp reads alike
        assert read.body == payload
        assert read.complete == body.done


def test_an_sdk_request_is_taken_and_an_unusual_one_left_to_llhttp() -> None:
    body = b'{"model":"gpt-4o-mini","messages":[]}'
    head = (
        "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer sk-x\r\n"
        f"X-Stainless-Retry-Count: 0\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode()
    taken = request_head(head + body + b"GET /health HTTP/1.1\r\n\r\n", LIMIT)
    assert taken is not None
    target, keep_alive, headers, head_len, length = taken
    assert (target, keep_alive, head_len, length) == (
        b"/v1/chat/completions",
        True,
        len(head),
        len(body),
    )
    assert headers.items()[1] == ("Authorization", "Bearer sk-x")
    assert request_head(head + body[:-1], LIMIT) is None  # the body is still on its way
    chunked = b"POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    assert request_head(chunked, LIMIT) is None
    assert request_head(head + body, len(head) - 1) is None  # over the header-block limit


def test_a_reset_chunked_body_reads_the_next_answer_from_its_start() -> None:
    body = ChunkedBody()
    assert body.feed(b"zz\r\n")[0] == b"" and body.error is not None
    body.reset()
    assert body.error is None and not body.done
    assert body.feed(b"5\r\nhello\r\n0\r\n\r\n") == (b"hello", 15)
    assert body.done
    body.reset()
    assert not body.done
    assert body.feed(b"2\r\nhi\r\n") == (b"hi", 7)
