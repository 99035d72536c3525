"""The spend log: one row per request (who, which model and upstream, tokens, cost, latency,
status, cache, trace id — never the key itself), in SQLite by default or PostgreSQL.

Rows are queued in memory by `record` (no I/O on the request path) and written in batches in
the background (SQLite: a native writer thread, `sqlite_log`; PostgreSQL: an asyncio task,
`SpendLog`); `close()` writes what is left, so a graceful shutdown loses nothing. While the
database is unreachable rows wait (up to `max_pending`, then the oldest go).
"""

from sidegate.spend.log import SpendLog, open_spend_log
from sidegate.spend.report import GROUPS, Summary, parse_since, summarize
from sidegate.spend.rows import SpendRow, SpendSink, SpendStoreError

__all__ = [
    "GROUPS",
    "SpendLog",
    "SpendRow",
    "SpendSink",
    "SpendStoreError",
    "Summary",
    "open_spend_log",
    "parse_since",
    "summarize",
]
