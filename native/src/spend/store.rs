//! The spend table in one SQLite file: schema, pragmas, one transaction per batch, checkpoints.

use std::path::Path;
use std::time::Duration;

use rusqlite::{params, Connection, TransactionBehavior};

use super::SpendRecord;
use crate::utc_text::write_sqlite_micros;

pub const SCHEMA: &str = "
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
";

const INSERT: &str = "INSERT INTO spend (created_at, request_id, tenant, key_id, model, \
    served_model, upstream, input_tokens, output_tokens, cost_usd, latency_ms, status, cache, \
    trace_id) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)";

pub struct SqliteSpend {
    connection: Connection,
    time_text: Vec<u8>,
}

impl SqliteSpend {
    /// Opens (creating file and table when missing) a connection for appending rows.
    ///
    /// WAL lets several workers' writers and readers share the file; with WAL, `synchronous =
    /// NORMAL` never corrupts it (a power cut may lose the last commits, as the batching does
    /// anyway). The automatic checkpoint is off: `checkpoint` runs between batches instead. A
    /// small page cache, since rows are only appended (the default 2 MiB fills with pages
    /// never read again). `busy` is how long a write waits for another worker's.
    pub fn open(path: &Path, busy: Duration) -> rusqlite::Result<Self> {
        let connection = Connection::open(path)?;
        connection.busy_timeout(busy)?;
        connection.pragma_update(None, "journal_mode", "WAL")?;
        connection.execute_batch(
            "PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0; \
             PRAGMA cache_size = -256;",
        )?;
        connection.execute_batch(SCHEMA)?;
        Ok(Self { connection, time_text: Vec::with_capacity(32) })
    }

    /// Appends `rows` in one transaction: all of them or, on an error, none.
    pub fn write(&mut self, rows: &[SpendRecord]) -> rusqlite::Result<()> {
        let transaction = self.connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        {
            let mut insert = transaction.prepare_cached(INSERT)?;
            for row in rows {
                self.time_text.clear();
                write_sqlite_micros(&mut self.time_text, row.created_at);
                let created_at = std::str::from_utf8(&self.time_text).unwrap_or_default();
                insert.execute(params![
                    created_at,
                    row.request_id,
                    row.tenant,
                    row.key_id,
                    row.model,
                    row.served_model,
                    row.upstream,
                    row.input_tokens,
                    row.output_tokens,
                    row.cost_usd,
                    row.latency_ms,
                    row.status,
                    row.cache,
                    row.trace_id,
                ])?;
            }
        }
        transaction.commit()
    }

    /// Copies the write-ahead log into the database and lets the log start over.
    ///
    /// RESTART, not PASSIVE: under steady writes a passive checkpoint never finds the log fully
    /// copied, so the log never starts over (400 MB after 200,000 rows, its memory-mapped index
    /// growing the process). RESTART waits (up to the busy timeout) for other workers' writes.
    pub fn checkpoint(&self) -> rusqlite::Result<()> {
        self.connection.query_row("PRAGMA wal_checkpoint(RESTART)", [], |_| Ok(()))
    }
}
