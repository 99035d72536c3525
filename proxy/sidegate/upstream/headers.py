"""Which headers cross the gateway, in each direction."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from typing import Final

# RFC 9110 §7.6.1 hop-by-hop headers, plus those the gateway sets itself.
HOP_BY_HOP: Final = frozenset(
    {
        "connection",
        "keep-alive",
        "proxy-authenticate",
        "proxy-authorization",
        "proxy-connection",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
    }
)
# Client credentials never reach an upstream; the upstream's own key is added instead.
_NOT_FORWARDED_UP: Final = HOP_BY_HOP | {
    "host",
    "content-length",
    "authorization",
    "api-key",
    "x-api-key",
    "cookie",
    "accept-encoding",
    "content-encoding",
    "expect",
}
_NOT_RETURNED: Final = HOP_BY_HOP | {
    "content-length",
    "content-encoding",
    "date",
    "server",
    "set-cookie",
    "x-request-id",
}


_NONE_NAMED: Final[frozenset[str]] = frozenset()


def _named_in_connection(headers: Mapping[str, str]) -> frozenset[str]:
    value = headers.get("Connection") or headers.get("connection")
    return _connection_tokens(value) if value else _NONE_NAMED


@functools.lru_cache(maxsize=256)
def _connection_tokens(value: str) -> frozenset[str]:
    """The header names a `Connection` value lists: the same few values (`keep-alive`) on
    almost every message, parsed once each."""
    return frozenset(token.strip().lower() for token in value.split(",") if token.strip())


def upstream_request_headers(
    client: Mapping[str, str], auth: Iterable[tuple[str, str]]
) -> list[tuple[str, str]]:
    extra = _named_in_connection(client)
    headers = [
        (name, value)
        for name, value in client.items()
        if (low := name.lower()) not in _NOT_FORWARDED_UP and low not in extra
    ]
    headers.extend(auth)
    headers.append(("Accept-Encoding", "identity"))
    return headers


def client_response_headers(upstream: Mapping[str, str]) -> dict[str, str]:
    extra = _named_in_connection(upstream)
    headers: dict[str, str] = {}
    for name, value in upstream.items():
        low = name.lower()
        if low in _NOT_RETURNED or low in extra:
            continue
        headers[name] = value
    upstream_id = upstream.get("x-request-id")
    if upstream_id:
        headers["x-upstream-request-id"] = upstream_id
    return headers
