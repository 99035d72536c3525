"""The SQLite spend log: a native writer thread, off the event loop.

The database is read back with Python's sqlite3 only once the writer is closed, and another
writer is always another process: two SQLite libraries in one process must not share a file.
"""

from __future__ import annotations

import logging
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from tests.loop_turns import counting_turns
from tests.unit.spend_rows import row

from sidegate.spend import sqlite_log, summarize
from sidegate.spend.sqlite_log import SqliteSpendLog

HOLD_LOCK = """
import sqlite3, sys, time
connection = sqlite3.connect(sys.argv[1], isolation_level=None)
connection.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
time.sleep(float(sys.argv[2]))
connection.execute("COMMIT")
"""


def tenants(path: Path) -> list[str]:
    with sqlite3.connect(path) as reader:
        return [t for (t,) in reader.execute("SELECT tenant FROM spend ORDER BY id")]


def hold_write_lock(path: Path, seconds: float) -> subprocess.Popen[str]:
    """Another worker in the middle of a write to the same file, for `seconds`."""
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD_LOCK, str(path), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
    return holder


async def test_rows_are_summed_per_tenant_within_the_window(tmp_path: Path) -> None:
    path = tmp_path / "spend.db"
    spend = SqliteSpendLog(str(path))
    old = time.time() - 7200
    for item in (row("acme", 0.25), row("acme", 0.5), row("beta", 1.0), row("acme", 9, at=old)):
        spend.record(*item)
    await spend.close()
    url = f"sqlite:///{path}"
    summary = summarize(url, 3600, "tenant")
    assert [(s.group, s.requests, s.cost_usd) for s in summary] == [
        ("beta", 1, 1.0),
        ("acme", 2, 0.75),
    ]
    assert summarize(url, 3 * 3600, "model")[0].requests == 4


async def test_every_row_keeps_its_values_and_its_order(tmp_path: Path) -> None:
    path = tmp_path / "spend.db"
    spend = SqliteSpendLog(str(path), batch_size=64)
    rows = [row(f"t{index}", cost=index / 1000, at=1_700_000_000 + index) for index in range(150)]
    rows[7] = rows[7]._replace(key_id=None, trace_id="4bf92f3577b34da6a3ce929d0e0e4736")
    rows[8] = rows[8]._replace(latency_ms=12.3456789)  # kept to the microsecond
    for item in rows:
        spend.record(*item)
    await spend.close()
    assert spend.written == 150 and spend.pending == 0
    with sqlite3.connect(path) as reader:
        stored = reader.execute(
            "SELECT created_at, tenant, key_id, cost_usd, trace_id, latency_ms FROM spend"
            " ORDER BY id"
        ).fetchall()
    assert stored[0] == ("2023-11-14 22:13:20.000000", "t0", "abc123", 0.0, None, 12.5)
    assert stored[7][1:5] == ("t7", None, 0.007, "4bf92f3577b34da6a3ce929d0e0e4736")
    assert stored[8][5] == 12.346
    assert [tenant for _, tenant, *_ in stored] == [f"t{i}" for i in range(150)]
    assert stored[149][0] == "2023-11-14 22:15:49.000000"


async def test_another_writer_is_waited_out_off_the_event_loop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "spend.db"
    spend = SqliteSpendLog(str(path))
    spend.start()
    spend.record(*row("first"))
    assert await spend.flush()
    holder = hold_write_lock(path, 0.5)
    spend.record(*row("late"))
    async with counting_turns(0.005) as turns:
        with caplog.at_level(logging.WARNING, logger="sidegate.spend"):
            assert await spend.flush()  # written once the other writer commits
    holder.communicate(timeout=10)
    assert holder.returncode == 0
    assert turns.count >= 20  # the loop ran all the while the writer waited
    assert not caplog.records  # a busy file is not an incident
    await spend.close()
    assert tenants(path) == ["first", "late"]


async def test_rows_wait_while_the_file_cannot_be_written_and_the_failure_is_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "not-yet" / "spend.db"
    spend = SqliteSpendLog(str(path), max_pending=3)
    with caplog.at_level(logging.WARNING, logger="sidegate.spend"):
        for index in range(5):
            spend.record(*row(f"t{index}"))
        assert not await spend.flush()
    events = {record.event: record for record in caplog.records}  # type: ignore[attr-defined]
    assert events["spend_write_failed"].pending == 3  # type: ignore[attr-defined]
    assert events["spend_rows_dropped"].dropped == 2  # type: ignore[attr-defined]
    assert spend.pending == 3
    path.parent.mkdir()
    assert await spend.flush()
    await spend.close()
    assert tenants(path) == ["t2", "t3", "t4"]  # the oldest went when the queue was full


async def test_rows_the_database_refuses_until_shutdown_are_logged_as_lost(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_log, "BUSY_TIMEOUT_S", 0.05)
    monkeypatch.setattr(sqlite_log, "CLOSE_TIMEOUT_S", 0.3)
    path = tmp_path / "spend.db"
    spend = SqliteSpendLog(str(path))
    spend.record(*row("first"))
    assert await spend.flush()
    holder = hold_write_lock(path, 3)
    spend.record(*row("late"))
    with caplog.at_level(logging.ERROR, logger="sidegate.spend"):
        await spend.close()
    holder.communicate(timeout=10)
    lost = [r for r in caplog.records if getattr(r, "event", "") == "spend_rows_lost"]
    assert [r.lost for r in lost] == [1]  # type: ignore[attr-defined]
    assert tenants(path) == ["first"]


async def test_checkpoints_let_the_write_ahead_log_start_over(tmp_path: Path) -> None:
    path = tmp_path / "spend.db"
    # Written only when flushed, 1,000 rows a transaction: the log's size between checkpoints
    # does not hang on how the writer thread's wake-ups fall (many small commits write the same
    # last pages again and again).
    spend = SqliteSpendLog(
        str(path), checkpoint_rows=1_000, batch_size=10_000, flush_interval=3600.0
    )
    for part in range(20):
        for index in range(1_000):
            spend.record(*row(f"t{part}-{index}"))
        assert await spend.flush()
    assert spend.checkpoints >= 19
    # 20,000 rows leave ~6 MB of log when it never starts over.
    assert (tmp_path / "spend.db-wal").stat().st_size < 1_500_000
    await spend.close()
    with sqlite3.connect(path) as reader:
        assert reader.execute("SELECT count(*) FROM spend").fetchone() == (20_000,)
