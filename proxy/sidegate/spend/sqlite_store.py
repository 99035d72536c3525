"""The SQLite spend store: one connection on one thread of its own (sqlite3 blocks)."""

from __future__ import annotations

import asyncio
import math
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Final

from sidegate.spend.rows import COLUMNS, SpendRow, SpendStoreError, utc

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS spend (
    id INTEGER PRIMARY KEY,
    created_at TEXT NOT NULL,  -- UTC, 'YYYY-MM-DD HH:MM:SS.ffffff' (compares with datetime())
    request_id TEXT NOT NULL,
    tenant TEXT NOT NULL,
    key_id TEXT,
    model TEXT NOT NULL,
    served_model TEXT NOT NULL,
    upstream TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cost_usd REAL NOT NULL,
    latency_ms REAL NOT NULL,
    status INTEGER NOT NULL,
    cache TEXT NOT NULL,
    trace_id TEXT
);
CREATE INDEX IF NOT EXISTS spend_created_at ON spend (created_at);
"""
_INSERT: Final = (
    f"INSERT INTO spend ({', '.join(COLUMNS)}) VALUES ({', '.join('?' for _ in COLUMNS)})"
)
SQLITE_TIME: Final = "%Y-%m-%d %H:%M:%S.%f"


class _Timestamps:
    """`SQLITE_TIME` text for a batch's times: rows of one batch share their second, so the
    date part is formatted once per second rather than once per row."""

    __slots__ = ("_prefix", "_second")

    def __init__(self) -> None:
        self._second = -1
        self._prefix = ""

    def __call__(self, timestamp: float) -> str:
        # The split datetime.fromtimestamp makes, so the text is the very same to the µs.
        fraction, whole = math.modf(timestamp)
        micros, second = round(fraction * 1e6), int(whole)
        if micros >= 1_000_000:
            micros, second = micros - 1_000_000, second + 1
        elif micros < 0:
            micros, second = micros + 1_000_000, second - 1
        if second != self._second:
            self._second = second
            self._prefix = utc(second).strftime("%Y-%m-%d %H:%M:%S.")
        return f"{self._prefix}{micros:06d}"


def connect(path: str) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=10.0)
    # Several workers may write one file: WAL lets readers and one writer proceed together.
    connection.execute("PRAGMA journal_mode=WAL")
    # With WAL, NORMAL never corrupts the file; a power cut may lose the last commits, which
    # the batching (rows queued up to flush_interval) already accepts. FULL fsyncs every batch,
    # costing the serving process CPU and stalls on the one core it shares with the writer.
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.executescript(SCHEMA)
    return connection


class SqliteStore:
    def __init__(self, path: str) -> None:
        self._path = path
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sidegate-spend")
        self._connection: sqlite3.Connection | None = None

    async def write(self, rows: Sequence[SpendRow]) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self._write, list(rows))

    def _write(self, rows: list[SpendRow]) -> None:
        stamp = _Timestamps()
        records = [(stamp(r.created_at), *r[1:]) for r in rows]
        try:
            if self._connection is None:
                self._connection = connect(self._path)
            with self._connection:
                self._connection.executemany(_INSERT, records)
        except sqlite3.Error as exc:
            raise SpendStoreError(f"sqlite {self._path}: {exc}") from exc

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._thread, self._close)
        self._thread.shutdown(wait=True)

    def _close(self) -> None:
        if self._connection is not None:
            self._connection.close()
            self._connection = None
