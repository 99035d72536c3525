"""The spend log's queue, store and report, without a gateway."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path

import pytest
from tests.unit.spend_rows import row

from sidegate.settings import ConfigError, parse_settings
from sidegate.spend import SpendLog, SpendRow, SpendStoreError, parse_since, summarize


class FlakyStore:
    """Refuses the first `failures` writes, like a database that is restarting."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.rows: list[SpendRow] = []
        self.closed = False

    async def write(self, rows: Sequence[SpendRow]) -> None:
        if self.failures:
            self.failures -= 1
            raise SpendStoreError("database is restarting")
        self.rows.extend(rows)

    async def close(self) -> None:
        self.closed = True


async def test_rows_wait_while_the_database_is_down_and_keep_their_order() -> None:
    store = FlakyStore(failures=2)
    spend = SpendLog(store, batch_size=2)
    rows = [row(f"t{i}") for i in range(5)]
    for item in rows:
        spend.record(*item)
    assert not await spend.flush()
    assert not await spend.flush()
    assert spend.pending == 5
    assert await spend.flush()
    assert store.rows == rows


class CountingStore(FlakyStore):
    """Keeps the size of every transaction."""

    def __init__(self) -> None:
        super().__init__(failures=0)
        self.sizes: list[int] = []

    async def write(self, rows: Sequence[SpendRow]) -> None:
        self.sizes.append(len(rows))
        await super().write(rows)


async def test_the_writer_keeps_up_in_transactions_no_larger_than_a_batch() -> None:
    store = CountingStore()
    spend = SpendLog(store, batch_size=50, flush_interval=0.01)
    spend.start()
    for turn in range(300):  # 40 requests finish in every turn of the loop
        for i in range(40):
            spend.record(*row(f"t{turn}-{i}"))
        await asyncio.sleep(0)
    assert spend.pending < 400  # not 300 x 30 rows behind
    assert max(store.sizes) <= 50
    await spend.close()
    assert len(store.rows) == 300 * 40


async def test_rows_arriving_during_a_write_wait_for_the_next_one() -> None:
    store = CountingStore()
    spend = SpendLog(store, batch_size=50, flush_interval=0.05)
    spend.start()
    for turn in range(400):  # a few requests finish in every turn of the loop
        for i in range(3):
            spend.record(*row(f"t{turn}-{i}"))
        await asyncio.sleep(0)
    await spend.close()
    assert len(store.rows) == 1200
    # Chasing the queue would commit the 3 rows of each turn on their own (400 commits).
    assert len(store.sizes) <= 1200 / 8


async def test_close_writes_what_is_left_and_closes_the_store() -> None:
    store = FlakyStore(failures=0)
    spend = SpendLog(store, flush_interval=3600)
    spend.start()
    spend.record(*row()._replace(latency_ms=12.3456789))
    await spend.close()
    assert len(store.rows) == 1 and store.closed
    assert store.rows[0].latency_ms == 12.346  # kept to the microsecond


class SlowStore(FlakyStore):
    """A database across the network: each write takes a while (Postgres)."""

    def __init__(self) -> None:
        super().__init__(failures=0)
        self.writing = asyncio.Event()

    async def write(self, rows: Sequence[SpendRow]) -> None:
        self.writing.set()
        await asyncio.sleep(0.2)
        await super().write(rows)


async def test_close_lets_a_batch_on_its_way_to_the_database_arrive() -> None:
    store = SlowStore()
    spend = SpendLog(store, batch_size=2, flush_interval=3600)
    spend.start()
    spend.record(*row("t0"))
    spend.record(*row("t1"))  # wakes the writer
    await store.writing.wait()
    spend.record(*row("t2"))
    await spend.close()
    assert [r.tenant for r in store.rows] == ["t0", "t1", "t2"]


async def test_a_refused_batch_that_no_longer_fits_the_queue_is_counted_as_dropped() -> None:
    store = FlakyStore(failures=1)
    spend = SpendLog(store, batch_size=100, max_pending=4)
    for i in range(3):
        spend.record(*row(f"t{i}"))

    async def write_while_rows_arrive(rows: Sequence[SpendRow]) -> None:
        for i in range(3, 6):
            spend.record(*row(f"t{i}"))  # the queue fills while the batch is out
        raise SpendStoreError("database is restarting")

    store.write = write_while_rows_arrive  # type: ignore[method-assign]
    assert not await spend.flush()
    assert spend.pending == 4
    assert spend.dropped == 2


async def test_a_full_queue_drops_the_oldest_rows() -> None:
    store = FlakyStore(failures=0)
    spend = SpendLog(store, max_pending=3)
    for i in range(5):
        spend.record(*row(f"t{i}"))
    assert spend.dropped == 2
    await spend.flush()
    assert [r.tenant for r in store.rows] == ["t2", "t3", "t4"]


def test_a_missing_sqlite_file_is_an_error_not_an_empty_report(tmp_path: Path) -> None:
    with pytest.raises(SpendStoreError):
        summarize(f"sqlite:///{tmp_path / 'none.db'}", 60, "tenant")


@pytest.mark.parametrize(
    ("text", "seconds"), [("90s", 90), ("15m", 900), ("1h", 3600), ("2d", 172800)]
)
def test_since_windows(text: str, seconds: float) -> None:
    assert parse_since(text) == seconds


@pytest.mark.parametrize("text", ["", "1", "h", "1y", "-1h"])
def test_bad_since_windows(text: str) -> None:
    with pytest.raises(ValueError, match="--since"):
        parse_since(text)


@pytest.mark.parametrize("url", ["mysql://x/y", "sqlite://relative.db", "spend.db"])
def test_unsupported_database_urls_are_config_errors(url: str) -> None:
    text = f"""
upstreams: {{mock: {{provider: mock}}}}
models: {{m: {{upstream: mock}}}}
spend: {{database_url: "{url}"}}
"""
    with pytest.raises(ConfigError, match=r"spend\.database_url"):
        parse_settings(text, {})
