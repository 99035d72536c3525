"""The tracing seam: a server span per request, a client span per upstream attempt.

`NoTracing` costs nothing; an OpenTelemetry implementation plugs in behind the same methods.
`attempt()` yields the headers to add to the upstream request (W3C `traceparent`).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import AbstractContextManager, contextmanager
from typing import Protocol

from sidegate.exchange import Exchange


class Tracing(Protocol):
    def request(
        self, headers: Mapping[str, str], exchange: Exchange
    ) -> AbstractContextManager[None]: ...

    def attempt(
        self, exchange: Exchange, upstream: str, endpoint: str
    ) -> AbstractContextManager[list[tuple[str, str]]]: ...

    def shutdown(self) -> None: ...


class NoTracing:
    @contextmanager
    def request(self, headers: Mapping[str, str], exchange: Exchange) -> Iterator[None]:
        yield

    @contextmanager
    def attempt(
        self, exchange: Exchange, upstream: str, endpoint: str
    ) -> Iterator[list[tuple[str, str]]]:
        yield []

    def shutdown(self) -> None:
        return None
