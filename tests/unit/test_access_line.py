"""Native text for accounting: the access log's line (the line the JSON formatter writes for the
same request) and the spend table's time (the text `datetime` writes)."""

from __future__ import annotations

import io
import logging
from datetime import UTC, datetime

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from sidegate._native import access_line, sqlite_time
from sidegate.auth import Tenant
from sidegate.exchange import Exchange
from sidegate.observability.access import AccessLog
from sidegate.observability.logging import JsonFormatter, JsonLineHandler, configure_logging
from sidegate.spend.sqlite_store import SQLITE_TIME

# Client text: quotes, backslashes, control characters and non-ASCII all reach the log.
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
IDS = st.none() | TEXT
# Unix seconds from 1970 to 2200, with sub-millisecond fractions (rounding edges included).
CREATED = st.floats(0, 7_258_118_400, allow_nan=False) | st.integers(0, 7_258_118_400).map(
    lambda second: second + 0.9995
)
COUNTS = st.integers(0, 2**40)
AMOUNTS = st.floats(0, 1e7, allow_nan=False) | st.sampled_from([0.0, 7.2e-6, 0.125, 2.675e-8])


def formatted(created: float, level: int, fields: dict[str, object]) -> dict[str, object]:
    record = logging.LogRecord("sidegate.access", level, "", 0, "request", None, None)
    record.created = created
    record.__dict__.update(fields)
    parsed: dict[str, object] = orjson.loads(JsonFormatter().format(record))
    return parsed


@settings(max_examples=300, deadline=None)
@given(
    created=CREATED,
    warning=st.booleans(),
    request_id=TEXT,
    trace_id=IDS,
    span_id=IDS,
    tenant=TEXT,
    key_id=IDS,
    model=TEXT,
    upstream=TEXT,
    status=st.integers(100, 599),
    tokens=st.tuples(COUNTS, COUNTS),
    cost_usd=AMOUNTS,
    latency_ms=AMOUNTS,
    cache=st.sampled_from(["hit", "miss"]),
    attempts=st.integers(0, 9),
)
def test_the_native_line_is_the_formatters_line(
    created: float,
    warning: bool,
    request_id: str,
    trace_id: str | None,
    span_id: str | None,
    tenant: str,
    key_id: str | None,
    model: str,
    upstream: str,
    status: int,
    tokens: tuple[int, int],
    cost_usd: float,
    latency_ms: float,
    cache: str,
    attempts: int,
) -> None:
    line = access_line(
        created,
        warning,
        request_id,
        trace_id,
        span_id,
        tenant,
        key_id,
        model,
        upstream,
        status,
        *tokens,
        cost_usd,
        latency_ms,
        cache,
        attempts,
    )
    assert line.endswith(b"}\n") and line.count(b"\n") == 1
    fields = {
        "request_id": request_id,
        "trace_id": trace_id,
        "span_id": span_id,
        "tenant": tenant,
        "key_id": key_id,
        "model": model,
        "upstream": upstream,
        "status": status,
        "input_tokens": tokens[0],
        "output_tokens": tokens[1],
        "cost_usd": round(cost_usd, 8),
        "latency_ms": round(latency_ms, 3),
        "cache": cache,
        "attempts": attempts,
    }
    level = logging.WARNING if warning else logging.INFO
    parsed = orjson.loads(line)
    expected = formatted(created, level, fields)
    assert list(parsed) == list(expected)
    assert parsed == expected


def test_a_lone_surrogate_in_a_claim_is_replaced_not_fatal() -> None:
    tenant = "t\ud800"
    line = access_line(0.0, False, "r", None, None, tenant, None, "m", "u", 200, 1, 1, 0, 0, "", 1)
    logged = orjson.loads(line)["tenant"]
    assert logged.startswith("t") and set(logged[1:]) == {"\ufffd"}


def test_the_access_log_writes_the_native_line_through_the_json_handler() -> None:
    configure_logging("json", "info")
    handler = logging.getLogger("sidegate").handlers[0]
    assert isinstance(handler, JsonLineHandler)
    stream = io.StringIO()
    handler.setStream(stream)
    exchange = Exchange("req_9", Tenant("acme", None, "a1b2"), "chat", 0.0, model="fast")
    exchange.upstream, exchange.status, exchange.cost_usd = "up", 502, 0.123456789
    exchange.attempts.extend(["http://a", "http://b"])
    AccessLog().request(exchange, latency_seconds=0.0123456)
    handler.flush()
    logged = orjson.loads(stream.getvalue())
    assert logged["level"] == "warning" and logged["logger"] == "sidegate.access"
    assert logged["request_id"] == "req_9" and logged["tenant"] == "acme"
    assert logged["cost_usd"] == 0.12345679 and logged["latency_ms"] == 12.346
    assert logged["attempts"] == 2 and logged["status"] == 502


@settings(max_examples=500, deadline=None)
@given(created=CREATED | st.floats(-86_400 * 365, 0, allow_nan=False))
def test_the_spend_time_is_the_text_datetime_writes(created: float) -> None:
    assert sqlite_time(created) == datetime.fromtimestamp(created, UTC).strftime(SQLITE_TIME)
