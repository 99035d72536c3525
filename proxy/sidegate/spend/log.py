"""`SpendLog`: rows queued on the request path, written in batches by a background task
(PostgreSQL; SQLite has a writer thread of its own, `sqlite_log`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sidegate.settings import SpendSettings
from sidegate.spend.rows import (
    SpendFields,
    SpendRow,
    SpendSink,
    SpendStore,
    SpendStoreError,
    sqlite_path,
)

log = logging.getLogger("sidegate.spend")

# After a failed write, wait this long (doubling, capped) before trying again.
_RETRY_FIRST_S = 0.5
_RETRY_MAX_S = 30.0
# On shutdown, how long the last batches may take before the rest are given up (and logged).
_CLOSE_TIMEOUT_S = 10.0
_CLOSE_RETRY_S = 0.1


class SpendLog:
    def __init__(
        self,
        store: SpendStore,
        *,
        batch_size: int = 500,
        flush_interval: float = 1.0,
        max_pending: int = 100_000,
    ) -> None:
        self._store = store
        # Rows queued before the writer is woken early, and the most one transaction takes.
        self._batch_size = batch_size
        self._interval = flush_interval
        self._pending: deque[SpendRow] = deque(maxlen=max_pending)
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._retry = 0.0
        self.dropped = 0
        self.written = 0

    def record(self, *fields: *SpendFields) -> None:
        """Queue one row (no I/O here: this runs at the end of every request)."""
        row = SpendRow(*fields)
        row = row._replace(latency_ms=round(row.latency_ms, 3))
        pending = self._pending
        if len(pending) == pending.maxlen:
            self.dropped += 1  # the deque drops the oldest row
        pending.append(row)
        if len(pending) >= self._batch_size:
            self._wake.set()

    @property
    def pending(self) -> int:
        return len(self._pending)

    def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="sidegate-spend-writer")

    async def _run(self) -> None:
        while not self._stopping:
            if self._retry or len(self._pending) < self._batch_size:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), self._retry or self._interval)
            self._wake.clear()
            await self.flush()

    def _put_back(self, batch: list[SpendRow]) -> None:
        """Return a batch the database refused to the front of the queue; rows that no longer
        fit (the queue filled meanwhile) are the newest, which the deque drops: counted here."""
        pending = self._pending
        if pending.maxlen is not None:
            self.dropped += max(0, len(pending) + len(batch) - pending.maxlen)
        pending.extendleft(reversed(batch))

    async def flush(self) -> bool:
        """Write the rows queued now; False (rows kept) if the database refused.

        Rows recorded while it writes wait for the next wake-up: chasing them would commit a
        transaction for the two or three rows each turn of the loop brings, and a commit costs
        more than the rows."""
        remaining = len(self._pending)
        while remaining > 0 and self._pending:
            count = min(remaining, len(self._pending), self._batch_size)
            remaining -= count
            batch = [self._pending.popleft() for _ in range(count)]
            try:
                await self._store.write(batch)
            except asyncio.CancelledError:
                self._put_back(batch)  # counted as lost at shutdown rather than vanishing
                raise
            except SpendStoreError as exc:
                self._put_back(batch)
                self._retry = min(_RETRY_MAX_S, max(_RETRY_FIRST_S, self._retry * 2))
                log.warning(
                    "spend log write failed; rows kept for retry",
                    extra={
                        "event": "spend_write_failed",
                        "error": str(exc)[:300],
                        "pending": len(self._pending),
                        "retry_in_s": self._retry,
                    },
                )
                return False
            self.written += count
            self._retry = 0.0
            await asyncio.sleep(0)  # requests run between two batches
        if self.dropped:
            log.error(
                "spend log dropped rows (database unreachable, queue full)",
                extra={"event": "spend_rows_dropped", "dropped": self.dropped},
            )
            self.dropped = 0
        return True

    async def close(self) -> None:
        """Stop the writer and write what is left (a graceful shutdown loses no row).

        The writer is asked to stop, not cancelled: a batch it is sending (to Postgres, over
        the network) would be lost between the queue and the database."""
        done = False
        try:
            async with asyncio.timeout(_CLOSE_TIMEOUT_S):
                if self._task is not None:
                    self._stopping = True
                    self._wake.set()
                    await self._task
                    self._task = None
                # A refusal (the database restarting) is retried until the close timeout.
                done = await self.flush()
                while not done or self._pending:
                    if not done:
                        await asyncio.sleep(_CLOSE_RETRY_S)
                    done = await self.flush()
        except TimeoutError:
            done = False
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if not done:
            log.error(
                "spend rows not written at shutdown",
                extra={"event": "spend_rows_lost", "lost": len(self._pending)},
            )
        await self._store.close()


@asynccontextmanager
async def open_spend_log(settings: SpendSettings) -> AsyncIterator[SpendSink | None]:
    """The running spend log for the app's lifetime (None when `spend.enabled` is false)."""
    if not settings.enabled:
        yield None
        return
    spend: SpendSink
    path = sqlite_path(settings.database_url)
    if path is not None:
        from sidegate.spend.sqlite_log import SqliteSpendLog

        spend = SqliteSpendLog(
            path,
            batch_size=settings.batch_size,
            flush_interval=settings.flush_interval_seconds,
            max_pending=settings.max_pending,
        )
    else:
        from sidegate.spend.postgres_store import PostgresStore

        spend = SpendLog(
            PostgresStore(settings.database_url),
            batch_size=settings.batch_size,
            flush_interval=settings.flush_interval_seconds,
            max_pending=settings.max_pending,
        )
    spend.start()
    try:
        yield spend
    finally:
        await spend.close()
