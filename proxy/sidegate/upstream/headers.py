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
# Connection values at most this long are remembered once parsed: a client's value is its own
# text, and the cache must not hold its (up to 64 KiB) header lines.
_REMEMBERED_LENGTH: Final = 64


def _named_in_connection(headers: Mapping[str, str]) -> frozenset[str]:
    value = headers.get("Connection") or headers.get("connection")
    if not value:
        return _NONE_NAMED
    if len(value) > _REMEMBERED_LENGTH:
        return _connection_tokens(value)
    return _remembered_tokens(value)


def _connection_tokens(value: str) -> frozenset[str]:
    return frozenset(token.strip().lower() for token in value.split(",") if token.strip())


# The same few values (`keep-alive`) on almost every message: each is parsed once.
_remembered_tokens: Final = functools.lru_cache(maxsize=256)(_connection_tokens)


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
