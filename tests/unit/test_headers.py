"""Which headers cross the gateway: credentials and hop-by-hop headers never do."""

from __future__ import annotations

from multidict import CIMultiDict

from sidegate.upstream.headers import client_response_headers, upstream_request_headers


def test_the_upstream_gets_the_clients_headers_without_credentials_or_hops() -> None:
    client = CIMultiDict(
        [
            ("Host", "gw"),
            ("Authorization", "Bearer sk-client"),
            ("Content-Type", "application/json"),
            ("Connection", "keep-alive, X-Hop-Only"),
            ("X-Hop-Only", "1"),
            ("OpenAI-Organization", "org-1"),
            ("Accept-Encoding", "gzip"),
        ]
    )
    sent = upstream_request_headers(client, [("Authorization", "Bearer sk-upstream")])
    # The client's OpenAI organization would not match the upstream's key: it stays here.
    assert sent == [
        ("Content-Type", "application/json"),
        ("Authorization", "Bearer sk-upstream"),
        ("Accept-Encoding", "identity"),
    ]


def test_the_client_gets_the_upstreams_headers_without_hops_or_framing() -> None:
    for connection in ("close, x-hop", "X-Hop", " x-hop ,keep-alive"):
        upstream = CIMultiDict(
            [
                ("Content-Type", "application/json"),
                ("Content-Length", "12"),
                ("connection", connection),
                ("X-Hop", "1"),
                ("x-request-id", "up-1"),
                ("openai-processing-ms", "40"),
            ]
        )
        assert client_response_headers(upstream) == {
            "Content-Type": "application/json",
            "openai-processing-ms": "40",
            "x-upstream-request-id": "up-1",
        }


def test_without_a_connection_header_only_the_fixed_hops_are_dropped() -> None:
    upstream = {"Content-Type": "text/event-stream", "Transfer-Encoding": "chunked", "X-A": "1"}
    assert client_response_headers(upstream) == {"Content-Type": "text/event-stream", "X-A": "1"}


def test_a_long_connection_value_is_honoured_too() -> None:
    hops = [f"x-hop-{index}" for index in range(40)]
    upstream = {"Connection": ", ".join(hops), **{name: "1" for name in hops}, "X-Kept": "1"}
    assert client_response_headers(upstream) == {"X-Kept": "1"}
