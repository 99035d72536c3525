"""Native text for accounting: the access log's line (the line the JSON formatter writes for the
same request), the spend table's time (the text `datetime` writes) and a head's date (the text
`email.utils.formatdate` writes)."""

from __future__ import annotations

import asyncio
import io
import logging
from datetime import UTC, datetime
from email.utils import formatdate
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st

from sidegate._native import AccessLines, http_date_line, sqlite_time
from sidegate.auth import Tenant
from sidegate.exchange import Exchange
from sidegate.observability.access import AccessLog
from sidegate.observability.logging import JsonFormatter, JsonLineHandler, configure_logging
from sidegate.spend.report import SQLITE_TIME

# Client text: quotes, backslashes, control characters and non-ASCII all reach the log.
TEXT = st.text(st.characters(exclude_categories=("Cs",)), max_size=40)
IDS = st.none() | TEXT
# Unix seconds from 1970 to 2200, with sub-millisecond fractions (rounding edges included).
CREATED = st.floats(0, 7_258_118_400, allow_nan=False) | st.integers(0, 7_258_118_400).map(
    lambda second: second + 0.9995
)
COUNTS = st.integers(0, 2**40)
AMOUNTS = st.floats(0, 1e7, allow_nan=False) | st.sampled_from([0.0, 7.2e-6, 0.125, 2.675e-8])


def access_line(*fields: Any, **named: Any) -> bytes:
    """One request's line, as `AccessLines` holds it."""
    lines = AccessLines(1 << 20)
    assert lines.add(*fields, **named)  # the first line since the last take
    return lines.take()


def formatted(created: float, level: int, fields: dict[str, object]) -> dict[str, object]:
    record = logging.LogRecord("sidegate.access", level, "", 0, "request", None, None)
    record.created = created
    record.__dict__.update(fields)
    parsed: dict[str, object] = orjson.loads(JsonFormatter().format(record))
    return parsed


# The contract's fields in the line's order, as the access log passes them (by name).
FIELD_STRATEGIES: dict[str, st.SearchStrategy[Any]] = {
    "request_id": TEXT,
    "trace_id": IDS,
    "span_id": IDS,
    "tenant": TEXT,
    "key_id": IDS,
    "model": TEXT,
    "upstream": TEXT,
    "status": st.integers(100, 599),
    "input_tokens": COUNTS,
    "output_tokens": COUNTS,
    "cost_usd": AMOUNTS,
    "latency_ms": AMOUNTS,
    "cache": st.sampled_from(["hit", "miss"]),
    "attempts": st.integers(0, 9),
}


@settings(max_examples=300, deadline=None)
@given(
    created=CREATED,
    warning=st.booleans(),
    given_fields=st.fixed_dictionaries(FIELD_STRATEGIES),
)
def test_the_native_line_is_the_formatters_line(
    created: float, warning: bool, given_fields: dict[str, Any]
) -> None:
    line = access_line(created, warning, **given_fields)
    assert line.endswith(b"}\n") and line.count(b"\n") == 1
    # What the Python path logged: the same fields in the contract's order, the amounts rounded.
    fields = {
        **{name: given_fields[name] for name in FIELD_STRATEGIES},
        "cost_usd": round(given_fields["cost_usd"], 8),
        "latency_ms": round(given_fields["latency_ms"], 3),
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


@settings(max_examples=500, deadline=None)
@given(seconds=st.integers(-86_400 * 365, 7_258_118_400))
def test_a_head_date_is_the_text_formatdate_writes(seconds: int) -> None:
    expected = b"Date: " + formatdate(seconds, usegmt=True).encode() + b"\r\n"
    assert http_date_line(seconds) == expected


def test_lines_are_held_until_taken_and_a_full_buffer_asks_to_be_written() -> None:
    lines = AccessLines(2000)
    fields = ("r", None, None, "acme", None, "m", "u", 200, 1, 1, 0.0, 0.0, "miss", 1)
    assert lines.add(0.0, False, *fields)  # first since the last take: schedule a write
    assert not lines.add(1.0, False, *fields)  # already scheduled
    assert len(lines) < 2000
    while not lines.add(2.0, False, *fields):  # until write_at bytes are pending
        pass
    assert len(lines) >= 2000
    taken = lines.take()
    assert len(lines) == 0 and taken.count(b"\n") == len(taken.splitlines())
    assert lines.add(3.0, False, *fields)


async def test_the_lines_of_one_loop_turn_go_out_in_one_write() -> None:
    configure_logging("json", "info")
    handler = logging.getLogger("sidegate").handlers[0]
    assert isinstance(handler, JsonLineHandler)
    writes: list[str] = []

    class Recording(io.StringIO):
        def write(self, text: str) -> int:
            writes.append(text)
            return len(text)

    handler.setStream(Recording())
    for index in range(3):
        exchange = Exchange(f"req_{index}", Tenant("acme", None, None), "chat", 0.0)
        exchange.status = 200
        AccessLog().request(exchange, latency_seconds=0.001)
    assert writes == []  # held for the end of the loop turn
    await asyncio.sleep(0)
    assert len(writes) == 1
    assert [orjson.loads(line)["request_id"] for line in writes[0].splitlines()] == [
        "req_0",
        "req_1",
        "req_2",
    ]
