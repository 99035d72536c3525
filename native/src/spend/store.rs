//! The spend table in one SQLite file: schema, pragmas, one transaction per batch, checkpoints.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior};

use super::SpendRecord;
use crate::utc_text::SqliteMicros;

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

const COLUMNS: &str = "created_at, request_id, tenant, key_id, model, served_model, upstream, \
    input_tokens, output_tokens, cost_usd, latency_ms, status, cache, trace_id";
const FIELDS: usize = 14;
// Rows per INSERT statement, largest first: one statement for many rows binds the same values
// but is started, stepped and reset once (a fifth fewer instructions a row at 32).
const ROWS_PER_INSERT: [usize; 3] = [32, 8, 1];

fn insert_sql(rows: usize) -> String {
    let row = format!("({})", vec!["?"; FIELDS].join(", "));
    format!("INSERT INTO spend ({COLUMNS}) VALUES {}", vec![row; rows].join(", "))
}

pub struct SqliteSpend {
    connection: Connection,
    inserts: [String; 3],
    times: SqliteMicros,
    time_text: Vec<u8>,
    time_ends: Vec<usize>,
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
             PRAGMA cache_size = -64;",
        )?;
        connection.execute_batch(SCHEMA)?;
        Ok(Self {
            connection,
            inserts: ROWS_PER_INSERT.map(insert_sql),
            times: SqliteMicros::default(),
            time_text: Vec::with_capacity(32 * 26),
            time_ends: Vec::with_capacity(32),
        })
    }

    /// Appends `rows` in one transaction (all of them or, on an error, none); returns how many.
    pub fn write<'r>(
        &mut self,
        mut rows: impl Iterator<Item = SpendRecord<'r>>,
    ) -> rusqlite::Result<usize> {
        let transaction = self.connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut written = 0;
        let mut group = Vec::with_capacity(ROWS_PER_INSERT[0]);
        loop {
            group.clear();
            group.extend(rows.by_ref().take(ROWS_PER_INSERT[0]));
            if group.is_empty() {
                break;
            }
            let mut rest = group.as_slice();
            for (size, sql) in ROWS_PER_INSERT.iter().zip(&self.inserts) {
                if rest.len() < *size {
                    continue;
                }
                let mut insert = transaction.prepare_cached(sql)?;
                while rest.len() >= *size {
                    let (these, after) = rest.split_at(*size);
                    // The rows' time texts, end to end: bound values borrow them until the
                    // execute.
                    self.time_text.clear();
                    self.time_ends.clear();
                    for row in these {
                        self.times.write(&mut self.time_text, row.created_at);
                        self.time_ends.push(self.time_text.len());
                    }
                    let texts = std::str::from_utf8(&self.time_text).unwrap_or_default();
                    let mut start = 0;
                    for (index, (row, end)) in these.iter().zip(&self.time_ends).enumerate() {
                        let created_at = texts.get(start..*end).unwrap_or_default();
                        bind(&mut insert, index * FIELDS, created_at, row)?;
                        start = *end;
                    }
                    insert.raw_execute()?;
                    rest = after;
                }
            }
            written += group.len();
        }
        transaction.commit()?;
        Ok(written)
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

/// Binds one row's values after the first `offset` parameters of a multi-row INSERT.
fn bind(
    insert: &mut rusqlite::CachedStatement<'_>,
    offset: usize,
    created_at: &str,
    row: &SpendRecord<'_>,
) -> rusqlite::Result<()> {
    let at = |field: usize| offset + field;
    insert.raw_bind_parameter(at(1), created_at)?;
    insert.raw_bind_parameter(at(2), row.request_id)?;
    insert.raw_bind_parameter(at(3), row.tenant)?;
    insert.raw_bind_parameter(at(4), row.key_id)?;
    insert.raw_bind_parameter(at(5), row.model)?;
    insert.raw_bind_parameter(at(6), row.served_model)?;
    insert.raw_bind_parameter(at(7), row.upstream)?;
    insert.raw_bind_parameter(at(8), row.input_tokens)?;
    insert.raw_bind_parameter(at(9), row.output_tokens)?;
    insert.raw_bind_parameter(at(10), row.cost_usd)?;
    insert.raw_bind_parameter(at(11), row.latency_ms)?;
    insert.raw_bind_parameter(at(12), row.status)?;
    insert.raw_bind_parameter(at(13), row.cache)?;
    insert.raw_bind_parameter(at(14), row.trace_id)
}
