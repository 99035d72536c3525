"""Queueing a spend row from Python: what every request pays at its end."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import Measure
from sidegate._native import SqliteSpendWriter

# A row as the recorder hands it over (ids as Sidegate makes them; a tenant with a key).
ROW = (
    "req_3f9a12c4b8e1000000012abc",
    "acme",
    "k-7f3c",
    "gpt-4o-mini",
    "gpt-4o-mini-2024-07-18",
    "openai",
    412,
    96,
    0.0001194,
    183.4166,
    200,
    "miss",
    "4bf92f3577b34da6a3ce929d0e0e4736",
)


@pytest.fixture
def writer(tmp_path: Path) -> Iterator[SqliteSpendWriter]:
    # The writer thread runs as in serving, so the queue is emptied as it fills.
    spend = SqliteSpendWriter(
        tmp_path / "spend.db",
        batch_size=500,
        flush_interval=1.0,
        max_pending=100_000,
        checkpoint_rows=10_000,
        busy_timeout=5.0,
    )
    yield spend
    spend.close(30.0)


def test_record(measure: Measure, writer: SqliteSpendWriter) -> None:
    record = writer.record
    created_at, (request_id, tenant, key_id, model, served, upstream, *rest) = time.time(), ROW
    input_tokens, output_tokens, cost, latency, status, cache, trace_id = rest
    measure(
        "spend-record",
        "SqliteSpendWriter.record",
        lambda: record(
            created_at,
            request_id,
            tenant,
            key_id,
            model,
            served,
            upstream,
            input_tokens,
            output_tokens,
            cost,
            latency,
            status,
            cache,
            trace_id,
        ),
    )
