"""Headers the native readers took: read like aiohttp's, passed on by the same rules.

`_native.HeadHeaders` stands in for `CIMultiDictProxy` on the requests and answers the native
readers take, and applies the rules of what crosses the gateway itself (`forwarded()` for the
upstream, `returned()` for the client); the aiohttp server and llhttp's path apply them in
Python to a `CIMultiDictProxy`. Both must pass on the same headers: credentials, cookies and
hop-by-hop headers never cross.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict, CIMultiDictProxy

from sidegate._native import HeadHeaders, request_head, response_head
from sidegate.upstream.headers import (
    ForwardedHeaders,
    client_response_headers,
    upstream_request_headers,
)

LIMIT = 64 * 1024
NAMES = st.sampled_from(
    [
        "Content-Type",
        "content-type",
        "Authorization",
        "API-Key",
        "x-api-key",
        "Cookie",
        "Connection",
        "Keep-Alive",
        "TE",
        "Proxy-Authorization",
        "Accept-Encoding",
        "X-Hop",
        "x-hop",
        "OpenAI-Organization",
        "X-Stainless-Lang",
        "User-Agent",
    ]
)
VALUES = st.one_of(
    st.sampled_from(["keep-alive", "x-hop", "X-Hop, keep-alive", " , x-Hop ,", "gzip", ""]),
    st.text(alphabet=st.sampled_from([*"az09 ,;=/", "\xe9", "\xff"]), max_size=10),
)


def _read(headers: list[tuple[str, str]]) -> HeadHeaders:
    head = "".join(f"{name}: {value}\r\n" for name, value in headers)
    data = f"POST /v1/chat/completions HTTP/1.1\r\n{head}\r\n".encode("latin-1")
    taken = request_head(data, LIMIT)
    assert taken is not None
    return taken[2]


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.tuples(NAMES, VALUES), max_size=10))
def test_the_native_headers_forward_what_the_python_rules_forward(
    headers: list[tuple[str, str]],
) -> None:
    # What llhttp would give: values without the blanks before them.
    headers = [(name, value.lstrip(" ")) for name, value in headers]
    native = _read(headers)
    sent = upstream_request_headers(native, [("Authorization", "Bearer sk-up")])
    expected = upstream_request_headers(
        CIMultiDictProxy(CIMultiDict(headers)), [("Authorization", "Bearer sk-up")]
    )
    assert isinstance(sent, ForwardedHeaders)
    assert list(sent) == expected
    kept = expected[:-2]  # the gateway's own two come last
    lines = b"".join(f"{name}: {value}\r\n".encode("latin-1") for name, value in kept)
    assert sent.client_lines == lines  # every byte as the client sent it
    # Framed whole for the lean transport: the same lines between its own parts.
    start, own = b"POST / HTTP/1.1\r\nHost: up\r\n", b"Authorization: Bearer sk-up\r\n"
    framed = native.request(start, own, b"{}")
    assert framed == start + lines + own + b"Content-Length: 2\r\n\r\n{}"
    assert native.request(start, own, b"{}", with_body=False) == framed[:-2]


def test_no_credential_or_hop_reaches_the_upstream() -> None:
    native = _read(
        [
            ("Host", "gw"),
            ("Authorization", "Bearer sk-client-secret"),
            ("api-key", "sk-client-secret"),
            ("Connection", "keep-alive, X-Private"),
            ("X-Private", "1"),
            ("Cookie", "session=1"),
            ("Content-Type", "application/json"),
            ("Content-Length", "0"),
        ]
    )
    sent = native.forwarded()
    assert sent == b"Content-Type: application/json\r\n"


ANSWER_NAMES = st.sampled_from(
    [
        "Content-Type",
        "Connection",
        "connection",
        "Keep-Alive",
        "Set-Cookie",
        "Server",
        "Date",
        "Content-Encoding",
        "X-Request-Id",
        "x-request-id",
        "x-upstream-request-id",
        "X-Hop",
        "x-hop",
        "openai-processing-ms",
        "x-ratelimit-remaining-requests",
    ]
)


def _answer_headers(headers: list[tuple[str, str]]) -> HeadHeaders | None:
    """The drawn headers as the native reader takes them from an answer's head; None when it
    leaves the head to llhttp (a Content-Length among them)."""
    headers = [(name, value.lstrip(" ")) for name, value in headers]
    head = "".join(f"{name}: {value}\r\n" for name, value in headers)
    data = f"HTTP/1.1 200 OK\r\n{head}Content-Length: 0\r\n\r\n".encode("latin-1")
    taken = response_head(data, LIMIT)
    return None if taken is None else taken[2]


@settings(max_examples=1500, deadline=None)
@given(st.lists(st.tuples(ANSWER_NAMES, VALUES), max_size=10))
def test_the_native_answer_headers_return_what_the_python_rules_return(
    headers: list[tuple[str, str]],
) -> None:
    native = _answer_headers(headers)
    if native is None:
        return
    expected = client_response_headers(CIMultiDictProxy(CIMultiDict(native.items())))
    returned = client_response_headers(native)
    assert returned == expected
    assert list(returned.items()) == list(expected.items())  # in the upstream's order


@pytest.mark.parametrize("name", ["authorization", "AUTHORIZATION", "Authorization"])
def test_lookups_ignore_case_like_aiohttps_headers(name: str) -> None:
    pairs = [("Authorization", "Bearer a"), ("X-Dup", "1"), ("x-dup", "2"), ("Caf", "\xe9")]
    native = _read(pairs)
    proxy = CIMultiDictProxy(CIMultiDict(pairs))
    assert native.get(name) == proxy.get(name) == "Bearer a"
    assert native[name] == proxy[name]
    assert (name in native) and (name in proxy)
    assert native.getall("X-DUP") == proxy.getall("X-DUP") == ["1", "2"]
    assert native.getone("x-dup") == proxy.getone("x-dup") == "1"
    assert native.get("caf") == "\xe9"
    assert native.get("missing") is None and native.get("missing", "d") == "d"
    assert native.getall("missing", []) == []
    assert 3 not in native
    with pytest.raises(KeyError):
        native["missing"]
    with pytest.raises(KeyError):
        native.getall("missing")
    assert len(native) == len(proxy) == 4
    assert native.items() == list(proxy.items()) == pairs
    assert native.values() == list(proxy.values())
    assert list(native) == native.keys() == [name for name, _ in pairs]  # each as it was sent


OWN_LINES = b"Cache-Control: no-cache\r\nx-request-id: req_1\r\nx-cache: miss\r\n"


@settings(max_examples=500, deadline=None)
@given(st.lists(st.tuples(ANSWER_NAMES, VALUES), max_size=10, unique_by=lambda h: h[0].lower()))
def test_a_relayed_streams_header_block_holds_what_the_python_rules_return_then_our_own(
    headers: list[tuple[str, str]],
) -> None:
    native = _answer_headers(headers)
    if native is None:
        return
    kept = client_response_headers(CIMultiDictProxy(CIMultiDict(native.items())), OWN_LINES)
    block = native.returned_block(OWN_LINES)
    assert block.endswith(OWN_LINES)
    lines = block[: -len(OWN_LINES)].decode("latin-1").split("\r\n")[:-1]
    pairs = [tuple(line.split(": ", 1)) for line in lines]
    assert dict(pairs) == kept
    assert len(pairs) == len(kept)  # (the upstream's own x-upstream-request-id is replaced)


def test_the_gateways_lines_replace_the_upstreams_whatever_their_case() -> None:
    data = (
        b"HTTP/1.1 200 OK\r\ncache-control: no-store\r\nX-Cache: hit\r\n"
        b"X-Request-Id: up-7\r\nContent-Type: text/event-stream\r\nContent-Length: 0\r\n\r\n"
    )
    taken = response_head(data, LIMIT)
    assert taken is not None
    assert taken[2].returned_block(OWN_LINES) == (
        b"Content-Type: text/event-stream\r\nx-upstream-request-id: up-7\r\n" + OWN_LINES
    )
