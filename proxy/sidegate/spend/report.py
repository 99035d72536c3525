"""`sidegate spend`: who spent what since when, read back from the spend log."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from sidegate.spend.rows import SpendStoreError, postgres_conninfo, sqlite_path, utc

# --by choices -> column (a fixed map: the column name is never taken from user input).
GROUPS: Final = {"tenant": "tenant", "model": "model", "key": "key_id", "upstream": "upstream"}
_UNITS: Final = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}
_SINCE: Final = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
# `created_at` as the writer stores it (`_native.sqlite_time`): text SQLite's date functions read.
SQLITE_TIME: Final = "%Y-%m-%d %H:%M:%S.%f"


@dataclass(frozen=True, slots=True)
class Summary:
    group: str
    requests: int
    input_tokens: int
    output_tokens: int
    cost_usd: float
    errors: int


def parse_since(text: str) -> float:
    """`90s`, `15m`, `1h`, `7d`, `2w` -> seconds."""
    match = _SINCE.match(text.strip())
    if match is None:
        raise ValueError(f"--since {text!r}: expected a number and a unit (s, m, h, d, w)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def _query(column: str, placeholder: str) -> str:
    return (
        f"SELECT COALESCE({column}, '-'), COUNT(*), COALESCE(SUM(input_tokens), 0),"
        " COALESCE(SUM(output_tokens), 0), COALESCE(SUM(cost_usd), 0),"
        " SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END)"
        f" FROM spend WHERE created_at >= {placeholder}"
        f" GROUP BY 1 ORDER BY 5 DESC, 2 DESC, 1"
    )


def summarize(database_url: str, since_seconds: float, by: str) -> list[Summary]:
    column = GROUPS[by]
    cutoff = utc(time.time() - since_seconds)
    path = sqlite_path(database_url)
    if path is not None:
        # Imported here: the gateway process writes with the native writer's own SQLite and
        # should not carry Python's too (~1 MB resident) for a report it never runs.
        import sqlite3

        if not Path(path).is_file():
            raise SpendStoreError(f"no spend log at {path} (spend.database_url)")
        try:
            connection = sqlite3.connect(path, timeout=10.0)
            try:
                rows = connection.execute(
                    _query(column, "?"), (cutoff.strftime(SQLITE_TIME),)
                ).fetchall()
            finally:
                connection.close()
        except sqlite3.Error as exc:
            raise SpendStoreError(f"sqlite {path}: {exc}") from exc
    else:
        import psycopg

        try:
            with psycopg.connect(postgres_conninfo(database_url), connect_timeout=5) as conn:
                rows = conn.execute(_query(column, "%s"), (cutoff,)).fetchall()
        except psycopg.Error as exc:
            raise SpendStoreError(f"postgresql: {exc}") from exc
    return [
        Summary(str(g), int(n), int(i), int(o), float(c), int(e or 0)) for g, n, i, o, c, e in rows
    ]
