"""The tracing seam: a server span per request, a client span per upstream attempt.

`NoTracing` (no `telemetry.otlp_endpoint`) builds no span: it only reads the client's
`traceparent` so log lines carry the client's trace id, and the header itself reaches the
upstream unchanged. `otel.OtelTracing` is the OpenTelemetry implementation. `attempt()` yields
the headers to add to the upstream request (W3C `traceparent`), replacing the client's.
"""

from __future__ import annotations

from collections.abc import Mapping
from contextlib import AbstractContextManager, nullcontext
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


def client_trace_id(traceparent: str | None) -> str | None:
    """The trace id of a valid W3C `traceparent` (`00-<32 hex>-<16 hex>-<2 hex>`), else None."""
    if not traceparent or len(traceparent) < 55:
        return None
    parts = traceparent.strip().split("-")
    if len(parts) < 4 or len(parts[0]) != 2 or parts[0] == "ff":
        return None
    trace_id, parent_id = parts[1].lower(), parts[2].lower()
    if len(trace_id) != 32 or len(parent_id) != 16 or not _is_hex(trace_id + parent_id):
        return None
    if trace_id == "0" * 32 or parent_id == "0" * 16:
        return None
    return trace_id


def _is_hex(text: str) -> bool:
    return all(c in "0123456789abcdef" for c in text)


class NoTracing:
    # Plain null contexts, made once: a generator-based context manager per request and per
    # attempt costs more than all the rest of this class.
    _NO_SPAN: AbstractContextManager[None] = nullcontext()
    _NO_HEADERS: AbstractContextManager[list[tuple[str, str]]] = nullcontext([])

    def request(
        self, headers: Mapping[str, str], exchange: Exchange
    ) -> AbstractContextManager[None]:
        exchange.trace_id = client_trace_id(headers.get("traceparent"))
        return self._NO_SPAN

    def attempt(
        self, exchange: Exchange, upstream: str, endpoint: str
    ) -> AbstractContextManager[list[tuple[str, str]]]:
        return self._NO_HEADERS  # the list is never added to: `if trace:` reads it

    def shutdown(self) -> None:
        return None
