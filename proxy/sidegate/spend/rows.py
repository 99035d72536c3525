"""The spend row, its table, and how a URL picks the store."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Final, NamedTuple, Protocol


class SpendStoreError(Exception):
    """The spend database could not be reached or written."""


class SpendRow(NamedTuple):
    created_at: float  # time.time() when the request ended
    request_id: str
    tenant: str
    key_id: str | None
    model: str
    served_model: str
    upstream: str
    input_tokens: int
    output_tokens: int
    cost_usd: float
    latency_ms: float
    status: int
    cache: str
    trace_id: str | None


COLUMNS: Final = SpendRow._fields


class SpendSink(Protocol):
    """A running spend log: rows in, written in the background."""

    def record(self, row: SpendRow) -> None: ...

    @property
    def pending(self) -> int: ...

    def start(self) -> None: ...

    async def close(self) -> None: ...


class SpendStore(Protocol):
    async def write(self, rows: Sequence[SpendRow]) -> None:
        """Insert the rows in one transaction; raises `SpendStoreError`."""
        ...

    async def close(self) -> None: ...


def utc(timestamp: float) -> datetime:
    return datetime.fromtimestamp(timestamp, UTC)


def sqlite_path(database_url: str) -> str | None:
    """`sqlite:///rel.db` -> `rel.db`, `sqlite:////abs.db` -> `/abs.db`; None if not SQLite."""
    prefix = "sqlite:///"
    return database_url[len(prefix) :] if database_url.startswith(prefix) else None


def postgres_conninfo(database_url: str) -> str:
    """libpq accepts postgres:// and postgresql://; drop an SQLAlchemy-style `+driver`."""
    scheme, sep, rest = database_url.partition("://")
    return "postgresql" + sep + rest if scheme.startswith("postgres") else database_url
