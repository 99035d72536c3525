"""Which headers cross the gateway, in each direction."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Final, TypeAlias, overload

from sidegate import _native
from sidegate._native import HeadHeaders

# RFC 9110 §7.6.1 hop-by-hop headers. The rules live in the native core (`header_rules.rs`),
# which applies them itself to the heads its reader took; both paths read the same lists.
HOP_BY_HOP: Final = frozenset(_native.HOP_BY_HOP)
# Client credentials never reach an upstream; the upstream's own key is added instead.
_NOT_FORWARDED_UP: Final = HOP_BY_HOP | frozenset(_native.CLIENT_ONLY)
# What only the upstream's connection or answer means, and what the gateway writes itself.
_NOT_RETURNED: Final = HOP_BY_HOP | frozenset(_native.UPSTREAM_ONLY)
# The native readers' headers answer the read-only Mapping API (`get`, `items`, `in`, ...).
Mapping.register(HeadHeaders)
# A client's request headers, as either server read them (the stub cannot say HeadHeaders
# is a Mapping).
ClientHeaders: TypeAlias = Mapping[str, str] | HeadHeaders


_NONE_NAMED: Final[frozenset[str]] = frozenset()
# Connection values at most this long are remembered once parsed: a client's value is its own
# text, and the cache must not hold its (up to 64 KiB) header lines.
_REMEMBERED_LENGTH: Final = 64


def _named_in_connection(headers: Mapping[str, str]) -> frozenset[str]:
    """The names every Connection header lists (a multidict may hold several)."""
    getall = getattr(headers, "getall", None)
    value: str | None
    if getall is not None:
        value = ", ".join(getall("Connection", ()))
    else:
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


# Framing is the transport's: a caller's copies of these would contradict or duplicate it.
FRAMING_HEADERS: Final = frozenset({"host", "content-length", "transfer-encoding", "connection"})


def header_lines(headers: Iterable[tuple[str, str]]) -> bytes:
    """`name: value\r\n` for each header but the `FRAMING_HEADERS`; ValueError when a name
    or value holds a line break."""
    parts: list[str] = []
    lines = 0
    for name, value in headers:
        if name.lower() in FRAMING_HEADERS:
            continue
        parts += (name, ": ", value, "\r\n")
        lines += 1
    block = "".join(parts)
    # One count per separator catches a CR or LF smuggled into any name or value.
    if block.count("\n") != lines or block.count("\r") != lines:
        raise ValueError("a request header contains a line break")
    # surrogateescape round-trips the undecodable header bytes aiohttp's server let through.
    return block.encode("utf-8", "surrogateescape")


class GatewayHeaders:
    """What the gateway adds to a client's headers for one upstream: its key, and no encoding
    but identity. Made once per upstream, with its lines framed on first use (`lines()`,
    then `framed`)."""

    __slots__ = ("framed", "pairs")

    def __init__(self, auth: Iterable[tuple[str, str]]) -> None:
        self.pairs: tuple[tuple[str, str], ...] = (*auth, ("Accept-Encoding", "identity"))
        self.framed: bytes | None = None

    def lines(self) -> bytes:
        """`header_lines` of `pairs` (so ValueError when one holds a line break)."""
        if self.framed is None:
            self.framed = header_lines(self.pairs)
        return self.framed


class ForwardedHeaders(Sequence[tuple[str, str]]):
    """The headers an upstream gets when the client's came through the native reader: the
    client's part stays in `client`, which frames the lines an upstream gets itself
    (`HeadHeaders.request`, as the lean transport writes them); `added` are the gateway's own.
    As a sequence it reads as the list `upstream_request_headers` would give, for a transport
    that wants pairs."""

    __slots__ = ("_pairs", "added", "client")

    def __init__(self, client: HeadHeaders, added: GatewayHeaders) -> None:
        self.client = client
        self.added = added
        self._pairs: list[tuple[str, str]] | None = None

    @property
    def client_lines(self) -> bytes:
        """The client's headers an upstream gets, as `name: value\r\n` lines."""
        return self.client.forwarded()

    def _all(self) -> list[tuple[str, str]]:
        if self._pairs is None:
            lines = self.client_lines.decode("latin-1").split("\r\n")[:-1]
            client = [(name, value) for name, _, value in (ln.partition(": ") for ln in lines)]
            self._pairs = [*client, *self.added.pairs]
        return self._pairs

    @overload
    def __getitem__(self, index: int) -> tuple[str, str]: ...
    @overload
    def __getitem__(self, index: slice) -> Sequence[tuple[str, str]]: ...
    def __getitem__(self, index: int | slice) -> tuple[str, str] | Sequence[tuple[str, str]]:
        return self._all()[index]

    def __len__(self) -> int:
        return len(self._all())

    def __iter__(self) -> Iterator[tuple[str, str]]:
        return iter(self._all())


def upstream_request_headers(
    client: ClientHeaders, gateway: GatewayHeaders | Iterable[tuple[str, str]]
) -> Sequence[tuple[str, str]]:
    """The headers an upstream gets: the client's that cross, and `gateway`'s (or those of
    the upstream key pairs given)."""
    if not isinstance(gateway, GatewayHeaders):
        gateway = GatewayHeaders(gateway)
    if type(client) is HeadHeaders:
        return ForwardedHeaders(client, gateway)
    extra = _named_in_connection(client)
    headers = [
        (name, value)
        for name, value in client.items()
        if (low := name.lower()) not in _NOT_FORWARDED_UP and low not in extra
    ]
    headers.extend(gateway.pairs)
    return headers


def lines_headers(lines: bytes) -> dict[str, str]:
    """The headers of `name: value\\r\\n` lines, as `_native.header_block` writes them."""
    pairs = (line.partition(": ") for line in lines.decode().split("\r\n") if line)
    return {name: value for name, _, value in pairs}


def client_response_headers(upstream: Mapping[str, str], written: bytes = b"") -> dict[str, str]:
    """The upstream's answer headers the client gets; none named in `written`, the lines
    the gateway writes on the answer itself (its `x-ratelimit-*`)."""
    if isinstance(upstream, HeadHeaders):
        return upstream.returned(written)
    extra = _named_in_connection(upstream)
    if written:
        extra = extra | {name.lower() for name in lines_headers(written)}
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
