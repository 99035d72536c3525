//! `SqliteSpendWriter`: the spend log's SQLite writer thread (see `crate::spend`).

use std::path::PathBuf;
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::spend::{SpendEvent, SpendRecord, SpendWriter, WriterOptions};

const ROW_FIELDS: usize = 14;

#[pyclass(frozen, name = "SqliteSpendWriter", module = "sidegate._native")]
pub(crate) struct PySpendWriter {
    writer: SpendWriter,
}

fn seconds(value: f64, name: &str) -> PyResult<Duration> {
    Duration::try_from_secs_f64(value)
        .map_err(|_| PyValueError::new_err(format!("{name} must be a number of seconds >= 0")))
}

#[pymethods]
impl PySpendWriter {
    #[new]
    #[pyo3(signature = (path, *, batch_size, flush_interval, max_pending, checkpoint_rows, busy_timeout))]
    fn py_new(
        path: PathBuf,
        batch_size: usize,
        flush_interval: f64,
        max_pending: usize,
        checkpoint_rows: u64,
        busy_timeout: f64,
    ) -> PyResult<Self> {
        let options = WriterOptions {
            batch_size: batch_size.max(1),
            flush_interval: seconds(flush_interval, "flush_interval")?,
            max_pending: max_pending.max(1),
            checkpoint_rows: checkpoint_rows.max(1),
            busy_timeout: seconds(busy_timeout, "busy_timeout")?,
        };
        Ok(Self { writer: SpendWriter::start(path, options)? })
    }

    /// Queues one `SpendRow` (a 14-field tuple in the table's column order).
    fn record(&self, row: &Bound<'_, PyTuple>) -> PyResult<()> {
        if row.len() != ROW_FIELDS {
            return Err(PyValueError::new_err("a spend row has 14 fields"));
        }
        let record = SpendRecord {
            created_at: row.get_borrowed_item(0)?.extract()?,
            request_id: row.get_borrowed_item(1)?.extract()?,
            tenant: row.get_borrowed_item(2)?.extract()?,
            key_id: row.get_borrowed_item(3)?.extract()?,
            model: row.get_borrowed_item(4)?.extract()?,
            served_model: row.get_borrowed_item(5)?.extract()?,
            upstream: row.get_borrowed_item(6)?.extract()?,
            input_tokens: row.get_borrowed_item(7)?.extract()?,
            output_tokens: row.get_borrowed_item(8)?.extract()?,
            cost_usd: row.get_borrowed_item(9)?.extract()?,
            latency_ms: row.get_borrowed_item(10)?.extract()?,
            status: row.get_borrowed_item(11)?.extract()?,
            cache: row.get_borrowed_item(12)?.extract()?,
            trace_id: row.get_borrowed_item(13)?.extract()?,
        };
        self.writer.record(record);
        Ok(())
    }

    #[getter]
    fn pending(&self) -> usize {
        self.writer.pending()
    }

    #[getter]
    fn written(&self) -> u64 {
        self.writer.written()
    }

    #[getter]
    fn checkpoints(&self) -> u64 {
        self.writer.checkpoints()
    }

    /// `(kind, error, count, retry_in_s)` for each thing to log since the last call: kinds
    /// `write_failed` (count: rows pending), `rows_dropped`, `checkpoint_failed`.
    fn take_events(&self) -> Vec<(&'static str, String, u64, f64)> {
        self.writer
            .take_events()
            .into_iter()
            .map(|event| match event {
                SpendEvent::WriteFailed { error, pending, retry_in } => {
                    ("write_failed", error, pending as u64, retry_in.as_secs_f64())
                }
                SpendEvent::RowsDropped { dropped } => ("rows_dropped", String::new(), dropped, 0.0),
                SpendEvent::CheckpointFailed { error } => ("checkpoint_failed", error, 0, 0.0),
            })
            .collect()
    }

    /// Writes what is queued now, waiting at most `timeout` seconds (blocks: tests and
    /// shutdown only); True when the queue was emptied.
    fn flush(&self, py: Python<'_>, timeout: f64) -> PyResult<bool> {
        let timeout = seconds(timeout, "timeout")?;
        Ok(py.detach(|| self.writer.flush(timeout)))
    }

    /// Stops the thread once it has written what is left (trying for at most `timeout`
    /// seconds); returns the rows it could not write. Blocks: call it off the event loop.
    fn close(&self, py: Python<'_>, timeout: f64) -> PyResult<usize> {
        let timeout = seconds(timeout, "timeout")?;
        Ok(py.detach(|| self.writer.close(timeout)))
    }
}
