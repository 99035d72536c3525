"""The lean server's one-call request reader agrees with llhttp on every request it takes.

`_native.request_head` serves the common request (a whole plain POST) without llhttp and
declines the rest. Whatever it takes, llhttp must read the same way: target, headers (every
byte of their values), keep-alive and where the request ends. Requests are generated around
the places HTTP parsers differ: line ends, framing headers, blanks and bytes in values.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import httptools
from hypothesis import given, settings
from hypothesis import strategies as st

from sidegate._native import request_head

LIMIT = 64 * 1024


@dataclass
class _Llhttp:
    """What llhttp reads of the first request in some bytes."""

    url: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)
    body: bytes = b""
    keep_alive: bool | None = None
    complete: bool = False
    parser: httptools.HttpRequestParser | None = None

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_headers_complete(self) -> None:
        assert self.parser is not None
        self.keep_alive = self.parser.should_keep_alive()  # as the lean server reads it

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
    lines = [f"{method} {target} HTTP/{version}"]
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
    assert read.headers == headers
    assert read.body == data[head_len : head_len + length]
    assert read.keep_alive == keep_alive


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
    assert headers[1] == ("Authorization", "Bearer sk-x")
    assert request_head(head + body[:-1], LIMIT) is None  # the body is still on its way
    chunked = b"POST /v1/chat/completions HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n"
    assert request_head(chunked, LIMIT) is None
    assert request_head(head + body, len(head) - 1) is None  # over the header-block limit
