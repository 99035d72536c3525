"""The PostgreSQL spend store (psycopg 3, async): reconnects after a failure on the next batch."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import psycopg

from sidegate.spend.rows import COLUMNS, SpendRow, SpendStoreError, postgres_conninfo, utc

SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS spend (
    id BIGSERIAL PRIMARY KEY,
    created_at TIMESTAMPTZ NOT NULL,
    request_id TEXT NOT NULL,
    tenant TEXT NOT NULL,
    key_id TEXT,
    model TEXT NOT NULL,
    served_model TEXT NOT NULL,
    upstream TEXT NOT NULL,
    input_tokens INTEGER NOT NULL,
    output_tokens INTEGER NOT NULL,
    cost_usd DOUBLE PRECISION NOT NULL,
    latency_ms DOUBLE PRECISION NOT NULL,
    status INTEGER NOT NULL,
    cache TEXT NOT NULL,
    trace_id TEXT
);
CREATE INDEX IF NOT EXISTS spend_created_at ON spend (created_at);
"""
# Workers starting together must not race on CREATE TABLE (pg_type unique violation).
_SCHEMA_LOCK: Final = 0x5E_5E_5D
_INSERT: Final = (
    f"INSERT INTO spend ({', '.join(COLUMNS)}) VALUES ({', '.join('%s' for _ in COLUMNS)})"
)


class PostgresStore:
    def __init__(self, database_url: str) -> None:
        self._conninfo = postgres_conninfo(database_url)
        self._connection: psycopg.AsyncConnection[tuple[object, ...]] | None = None

    async def _connect(self) -> psycopg.AsyncConnection[tuple[object, ...]]:
        connection = await psycopg.AsyncConnection.connect(
            self._conninfo, autocommit=True, connect_timeout=5
        )
        async with connection.transaction():
            await connection.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
            await connection.execute(SCHEMA)
        return connection

    async def write(self, rows: Sequence[SpendRow]) -> None:
        records = [(utc(r.created_at), *r[1:]) for r in rows]
        try:
            if self._connection is None or self._connection.closed:
                self._connection = await self._connect()
            async with self._connection.transaction(), self._connection.cursor() as cursor:
                await cursor.executemany(_INSERT, records)
        except (psycopg.Error, OSError) as exc:
            await self.close()
            raise SpendStoreError(f"postgresql: {exc}") from exc

    async def close(self) -> None:
        if self._connection is not None:
            connection, self._connection = self._connection, None
            await connection.close()
