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
# A row's values, in `SpendRow`'s order, as `SpendSink.record` takes them.
SpendFields = tuple[
    float, str, str, str | None, str, str, str, int, int, float, float, int, str, str | None
]


class SpendSink(Protocol):
    """A running spend log: rows in, written in the background."""

    def record(self, *row: *SpendFields) -> None:
        """Queue one row, in `SpendRow`'s field order (`latency_ms` not yet rounded: the sink
        keeps it to the microsecond). Positional, with no row object to build: this runs at
        the end of every request."""

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
