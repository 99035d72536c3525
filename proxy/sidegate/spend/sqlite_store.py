"""The SQLite spend store: small transactions on the event loop's own thread.

sqlite3 blocks, so a writer thread looks natural; but the module gives the GIL up and takes it
back around every row, and on a busy loop each of those hand-overs waits for the loop's thread:
a thread cost ~40k instructions per request more than the write itself (callgrind, chat at
defaults). So rows are written on the loop thread in transactions of `BATCH_LIMIT` rows
(~0.1 ms each: at c=1 a longer hold showed in the p99), the spend log yielding to requests
between them. A file another worker is writing is not waited for (busy timeout 0):
`SpendStoreBusy` makes the spend log try again a moment later instead of blocking the loop.
SQLite's automatic checkpoint (copying the write-ahead log into the database, with an fsync)
would run inside a commit, on the loop, for tens of milliseconds: it is off, and a thread
checkpoints every `CHECKPOINT_ROWS` rows instead (one GIL hand-over per checkpoint, not per
row). It is a RESTART checkpoint: a PASSIVE one never blocks a writer, but under steady writes
it never finds the log fully copied either, so the log never started over: 400 MB on disk
after 200,000 rows, and its memory-mapped index growing the process's RSS. RESTART holds
writers off while it copies (the loop's writer gets `SpendStoreBusy` and tries again 20 ms
later) and the next transaction starts the log from its beginning.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import sqlite3
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from itertools import chain
from typing import Final

from sidegate._native import sqlite_time
from sidegate.spend.rows import COLUMNS, SpendRow, SpendStoreBusy, SpendStoreError

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
_ROW: Final = f"({', '.join('?' for _ in COLUMNS)})"
# Rows per INSERT statement, largest first: one statement for many rows binds the same values
# as one per row but steps, resets and releases the GIL once (callgrind, 30-row transactions:
# 26.9k -> 21.9k instructions a row). Only these sizes are prepared: each prepared size stays
# in the connection's statement cache, and one per row count up to 64 held 4 MB. 64 rows keep
# within SQLite's oldest bound of 999 variables.
_INSERT_SIZES: Final = (64, 32, 16, 8, 4, 2, 1)


@functools.cache
def _insert(rows: int) -> str:
    return f"INSERT INTO spend ({', '.join(COLUMNS)}) VALUES {', '.join([_ROW] * rows)}"


# `created_at` as `_native.sqlite_time` writes it (the text SQLite's date functions read).
SQLITE_TIME: Final = "%Y-%m-%d %H:%M:%S.%f"
# Rows per transaction: the time the loop is held for one write (~5 us a row). A power of
# two: the spend log doubles it under a backlog, and each size is then one INSERT statement.
BATCH_LIMIT: Final = 8
# Rows written between two checkpoints (a few MB of write-ahead log).
CHECKPOINT_ROWS: Final = 10_000
# Page cache of the writing connections (KiB). Rows are appended, so a write touches only the
# right edge of the table and of its index; SQLite's default (2 MiB a connection) only filled
# up with pages never read again, adding ~4 MB to the gateway's memory over its first minutes.
_SMALL_CACHE: Final = "PRAGMA cache_size = -256"

log = logging.getLogger("sidegate.spend")


def connect(path: str, timeout: float = 10.0) -> sqlite3.Connection:
    connection = sqlite3.connect(path, timeout=timeout)
    # Several workers may write one file: WAL lets readers and one writer proceed together.
    connection.execute("PRAGMA journal_mode=WAL")
    # With WAL, NORMAL never corrupts the file; a power cut may lose the last commits, which
    # the batching (rows queued up to flush_interval) already accepts. FULL fsyncs every batch,
    # costing the serving process CPU and stalls on the one core it shares with the writer.
    connection.execute("PRAGMA synchronous=NORMAL")
    connection.executescript(SCHEMA)
    return connection


class SqliteStore:
    batch_limit: Final = BATCH_LIMIT

    def __init__(self, path: str, *, checkpoint_rows: int = CHECKPOINT_ROWS) -> None:
        self._path = path
        self._connection: sqlite3.Connection | None = None
        self._checkpoint_rows = checkpoint_rows
        self._unchecked = 0
        self._checkpointer = ThreadPoolExecutor(1, thread_name_prefix="sidegate-checkpoint")
        self._checkpointing: asyncio.Future[None] | None = None
        self._checkpoint_connection: sqlite3.Connection | None = None
        self.checkpoints = 0

    async def write(self, rows: Sequence[SpendRow]) -> None:
        records = [(sqlite_time(r.created_at), *r[1:]) for r in rows]
        try:
            if self._connection is None:
                # Creating the file and its schema may wait for another worker doing the same.
                self._connection = connect(self._path)
                self._connection.execute("PRAGMA busy_timeout = 0")
                self._connection.execute("PRAGMA wal_autocheckpoint = 0")
                self._connection.execute(_SMALL_CACHE)
            with self._connection:
                start = 0
                for size in _INSERT_SIZES:
                    while len(records) - start >= size:
                        values = list(chain.from_iterable(records[start : start + size]))
                        self._connection.execute(_insert(size), values)
                        start += size
        except sqlite3.OperationalError as exc:
            code = getattr(exc, "sqlite_errorcode", 0) & 0xFF  # the primary code
            if code in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise SpendStoreBusy(f"sqlite {self._path}: {exc}") from exc
            raise SpendStoreError(f"sqlite {self._path}: {exc}") from exc
        except sqlite3.Error as exc:
            raise SpendStoreError(f"sqlite {self._path}: {exc}") from exc
        self._unchecked += len(records)
        running = self._checkpointing is not None and not self._checkpointing.done()
        if self._unchecked >= self._checkpoint_rows and not running:
            self._unchecked = 0
            loop = asyncio.get_running_loop()
            self._checkpointing = loop.run_in_executor(self._checkpointer, self._checkpoint)

    def _checkpoint(self) -> None:
        """On the checkpoint thread, with a connection of its own."""
        try:
            if self._checkpoint_connection is None:
                self._checkpoint_connection = sqlite3.connect(self._path, timeout=10.0)
                self._checkpoint_connection.execute(_SMALL_CACHE)
            self._checkpoint_connection.execute("PRAGMA wal_checkpoint(RESTART)").fetchall()
            self.checkpoints += 1
        except sqlite3.Error as exc:
            log.warning(
                "spend log checkpoint failed; the write-ahead log keeps the rows",
                extra={"event": "spend_checkpoint_failed", "error": str(exc)[:300]},
            )

    def _close_checkpointer(self) -> None:
        if self._checkpoint_connection is not None:
            self._checkpoint_connection.close()
            self._checkpoint_connection = None

    async def close(self) -> None:
        if self._checkpointing is not None:
            await self._checkpointing
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._checkpointer, self._close_checkpointer)
        self._checkpointer.shutdown(wait=True)
        if self._connection is not None:
            self._connection.close()
            self._connection = None
