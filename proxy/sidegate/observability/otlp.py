"""OTLP/HTTP span export with a direct protobuf encoder.

The SDK's OTLP exporter builds a protobuf object per span, attribute and value in Python: about
90 us per span, on the batch thread but holding the GIL the event loop needs, which doubled the
gateway's CPU per request. Our spans use a small part of the schema (ids, name, kind, times,
scalar attributes, status), so they are written straight to the wire format here, several
times faster. `tests/unit/test_observability_otlp.py` decodes the output with the official
`opentelemetry-proto` classes and compares it field by field with the SDK encoder's.

Field numbers: opentelemetry/proto/trace/v1/trace.proto and common/v1/common.proto.
"""

from __future__ import annotations

import logging
import struct
import threading
import urllib.error
import urllib.request
from collections.abc import Iterable, Mapping, Sequence
from typing import Final

from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult
from opentelemetry.util.types import AttributeValue

log = logging.getLogger("sidegate.tracing")

_LEN: Final = 2  # wire type: length-delimited
_FIXED64: Final = 1
_VARINT: Final = 0
_FIXED32: Final = 5
_SMALL: Final = tuple(bytes((i,)) for i in range(0x80))
_FLAGS_TAG: Final = bytes((0x85, 0x01))  # field 16, fixed32: a tag past 127 takes two bytes
_HAS_IS_REMOTE: Final = 0x100
_IS_REMOTE: Final = 0x200
# Attempts per batch: a collector restarting is retried, one that is gone is given up on.
_ATTEMPTS: Final = 3
_RETRY_STATUSES: Final = frozenset({429, 502, 503, 504})


def _varint(value: int) -> bytes:
    if 0 <= value < 0x80:
        return _SMALL[value]
    if value < 0:
        value += 1 << 64  # int64 negatives are ten-byte two's complement
    out = bytearray()
    while value > 0x7F:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _field(number: int, payload: bytes) -> bytes:
    size = len(payload)
    # Every field number here is below 16, so its tag is one byte.
    return _SMALL[number << 3 | _LEN] + (_SMALL[size] if size < 0x80 else _varint(size)) + payload


def _string(number: int, text: str) -> bytes:
    return _field(number, text.encode("utf-8")) if text else b""


def _any_value(value: AttributeValue) -> bytes:
    if isinstance(value, bool):
        return bytes((2 << 3 | _VARINT, 1 if value else 0))
    if isinstance(value, int):
        return bytes((3 << 3 | _VARINT,)) + _varint(value)
    if isinstance(value, float):
        return bytes((4 << 3 | _FIXED64,)) + struct.pack("<d", value)
    if isinstance(value, str):
        return _field(1, value.encode("utf-8"))
    if isinstance(value, Sequence):  # an ArrayValue (field 5) of AnyValues (field 1 each)
        return _field(5, b"".join(_field(1, _any_value(item)) for item in value))
    return _field(1, str(value).encode("utf-8"))


# Encoded attributes by (field, key, text value): model, tenant, provider... repeat on every
# span, so most attributes are one dict lookup. Owned by one exporter; bounded.
Cache = dict[tuple[int, str, str], bytes]
_CACHE_MAX: Final = 4096


def _attributes(
    number: int, attributes: Mapping[str, AttributeValue] | None, cache: Cache
) -> bytes:
    if not attributes:
        return b""
    out = []
    for key, value in attributes.items():
        text = value if type(value) is str else ""
        encoded = cache.get((number, key, text))
        if encoded is None:
            encoded = _field(number, _string(1, key) + _field(2, _any_value(value)))
            if not text:  # only the key's part is reusable
                encoded = _string(1, key)
            if len(cache) < _CACHE_MAX:
                cache[number, key, text] = encoded
        if not text:
            encoded = _field(number, encoded + _field(2, _any_value(value)))
        out.append(encoded)
    return b"".join(out)


def _span(span: ReadableSpan, cache: Cache) -> bytes:
    context = span.get_span_context()
    if context is None:
        return b""
    parts = [
        _field(1, context.trace_id.to_bytes(16, "big")),
        _field(2, context.span_id.to_bytes(8, "big")),
    ]
    if context.trace_state:
        parts.append(_string(3, ",".join(f"{k}={v}" for k, v in context.trace_state.items())))
    flags = _HAS_IS_REMOTE
    if span.parent is not None:
        parts.append(_field(4, span.parent.span_id.to_bytes(8, "big")))
        if span.parent.is_remote:
            flags |= _IS_REMOTE
    parts.append(_string(5, span.name))
    parts.append(bytes((6 << 3 | _VARINT, span.kind.value + 1)))  # proto kinds start at 1
    parts.append(
        struct.pack(
            "<BQBQ", 7 << 3 | _FIXED64, span.start_time or 0, 8 << 3 | _FIXED64, span.end_time or 0
        )
    )
    parts.append(_attributes(9, span.attributes, cache))
    if span.dropped_attributes:
        parts.append(bytes((10 << 3 | _VARINT,)) + _varint(span.dropped_attributes))
    for event in span.events:
        body = struct.pack("<BQ", 1 << 3 | _FIXED64, event.timestamp) + _string(2, event.name)
        parts.append(_field(11, body + _attributes(3, event.attributes, cache)))
    status = span.status  # always present, even when unset, as the SDK's encoder writes it
    code = status.status_code.value
    body = _string(2, status.description or "")
    if code:
        body += bytes((3 << 3 | _VARINT, code))
    parts.append(_field(15, body))
    parts.append(_FLAGS_TAG + struct.pack("<I", flags))
    return b"".join(parts)


def encode_spans(spans: Iterable[ReadableSpan], cache: Cache | None = None) -> bytes:
    """An `ExportTraceServiceRequest`: spans grouped by resource, then instrumentation scope."""
    cache = {} if cache is None else cache
    groups: dict[int, tuple[ReadableSpan, dict[tuple[str, str], list[bytes]]]] = {}
    for span in spans:
        resource_id = id(span.resource)
        if resource_id not in groups:
            groups[resource_id] = (span, {})
        scope = span.instrumentation_scope
        key = (scope.name, scope.version or "") if scope is not None else ("", "")
        groups[resource_id][1].setdefault(key, []).append(_span(span, cache))
    out = []
    for first, scopes in groups.values():
        resource = _field(1, _attributes(1, first.resource.attributes, cache))
        scope_spans = b"".join(
            _field(
                2,
                _field(1, _string(1, name) + _string(2, version))
                + b"".join(_field(2, encoded) for encoded in encoded_spans),
            )
            for (name, version), encoded_spans in scopes.items()
        )
        schema = _string(3, first.resource.schema_url)
        out.append(_field(1, resource + scope_spans + schema))
    return b"".join(out)


class OtlpHttpSpanExporter(SpanExporter):
    """POSTs batches to `<endpoint>/v1/traces` as `application/x-protobuf` (OTLP/HTTP)."""

    def __init__(
        self, url: str, *, headers: Mapping[str, str] | None = None, timeout: float = 5.0
    ) -> None:
        self._url = url
        self._headers = {**(headers or {}), "Content-Type": "application/x-protobuf"}
        self._timeout = timeout
        self._stopped = threading.Event()
        self._cache: Cache = {}

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        if self._stopped.is_set():
            return SpanExportResult.FAILURE
        body = encode_spans(spans, self._cache)
        delay = 0.5
        for attempt in range(1, _ATTEMPTS + 1):
            problem = self._post(body)
            if problem is None:
                return SpanExportResult.SUCCESS
            retry, reason = problem
            if not retry or attempt == _ATTEMPTS:
                log.warning(
                    "spans not exported",
                    extra={"event": "trace_export_failed", "error": reason, "spans": len(spans)},
                )
                return SpanExportResult.FAILURE
            # Waits end early on shutdown, so a stop is never held up by a dead collector.
            if self._stopped.wait(delay):
                return SpanExportResult.FAILURE
            delay *= 2
        return SpanExportResult.FAILURE

    def _post(self, body: bytes) -> tuple[bool, str] | None:
        """None on success, else (worth retrying, why)."""
        request = urllib.request.Request(self._url, data=body, headers=self._headers)
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as response:
                response.read()
                return None
        except urllib.error.HTTPError as error:
            return error.code in _RETRY_STATUSES, f"HTTP {error.code} from {self._url}"
        except (urllib.error.URLError, OSError) as error:
            return True, f"{self._url}: {error}"

    def shutdown(self) -> None:
        self._stopped.set()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True
