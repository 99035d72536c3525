"""The SQLite spend log: rows handed to a native writer thread, which never takes the GIL.

Written on the event loop, each transaction held the loop (~0.1 ms for 8 rows and a commit)
while requests that arrived meanwhile waited, and the rows cost the loop ~35k instructions a
request. A Python thread was no cure: the sqlite3 module gives the GIL up and takes it back
around every row, and each hand-over waits for the busy loop. The writer
(`_native.SqliteSpendWriter`, `native/src/spend/`) owns its own SQLite connection: it writes
whatever is queued in one transaction when `batch_size` rows are queued or `flush_interval`
passes, waits out another worker's write on its own thread (busy timeout), and checkpoints
every `CHECKPOINT_ROWS` rows itself (RESTART, so the write-ahead log starts over).

The gateway process must not open the spend file with Python's sqlite3 while the writer runs:
two SQLite libraries in one process do not share their POSIX locks, and closing either's file
drops the other's locks. Readers in other processes (`sidegate spend`) are safe.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

from sidegate._native import SqliteSpendWriter

log = logging.getLogger("sidegate.spend")

# Rows written between two checkpoints (a few MB of write-ahead log).
CHECKPOINT_ROWS: Final = 10_000
# How long one write waits for another worker's write to the same file (on the writer thread).
BUSY_TIMEOUT_S: Final = 5.0
# On shutdown, how long the last rows may take before they are given up (and logged).
CLOSE_TIMEOUT_S: Final = 10.0
# How often what went wrong on the writer thread is logged.
REPORT_INTERVAL_S: Final = 1.0


class SqliteSpendLog:
    def __init__(
        self,
        path: str,
        *,
        batch_size: int = 500,
        flush_interval: float = 1.0,
        max_pending: int = 100_000,
        checkpoint_rows: int = CHECKPOINT_ROWS,
    ) -> None:
        self._writer = SqliteSpendWriter(
            path,
            batch_size=batch_size,
            flush_interval=flush_interval,
            max_pending=max_pending,
            checkpoint_rows=checkpoint_rows,
            busy_timeout=BUSY_TIMEOUT_S,
        )
        self._task: asyncio.Task[None] | None = None
        # `SpendSink.record` is the writer's own method: no Python frame on the request path.
        self.record = self._writer.record

    @property
    def pending(self) -> int:
        return self._writer.pending

    @property
    def written(self) -> int:
        return self._writer.written

    @property
    def checkpoints(self) -> int:
        return self._writer.checkpoints

    def start(self) -> None:
        self._task = asyncio.create_task(self._report(), name="sidegate-spend-report")

    async def flush(self) -> bool:
        """Write what is queued now; False (rows kept) if the database refused."""
        done = await asyncio.to_thread(self._writer.flush, CLOSE_TIMEOUT_S)
        self._log_events()
        return done

    async def close(self) -> None:
        """Stop the writer once it has written what is left (a graceful shutdown loses no
        row unless the database refuses them until `CLOSE_TIMEOUT_S`)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None
        lost = await asyncio.to_thread(self._writer.close, CLOSE_TIMEOUT_S)
        self._log_events()
        if lost:
            log.error(
                "spend rows not written at shutdown",
                extra={"event": "spend_rows_lost", "lost": lost},
            )

    async def _report(self) -> None:
        while True:
            await asyncio.sleep(REPORT_INTERVAL_S)
            self._log_events()

    def _log_events(self) -> None:
        for kind, error, count, retry_in in self._writer.take_events():
            if kind == "write_failed":
                log.warning(
                    "spend log write failed; rows kept for retry",
                    extra={
                        "event": "spend_write_failed",
                        "error": error[:300],
                        "pending": count,
                        "retry_in_s": retry_in,
                    },
                )
            elif kind == "rows_dropped":
                log.error(
                    "spend log dropped rows (database unreachable, queue full)",
                    extra={"event": "spend_rows_dropped", "dropped": count},
                )
            else:
                log.warning(
                    "spend log checkpoint failed; the write-ahead log keeps the rows",
                    extra={"event": "spend_checkpoint_failed", "error": error[:300]},
                )
