//! `SqliteSpendWriter`: the spend log's SQLite writer thread (see `crate::spend`).

use std::path::PathBuf;
use std::time::Duration;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::spend::{SpendEvent, SpendRecord, SpendWriter, WriterOptions};

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

    /// Queues one row, its values in the table's column order (no I/O). `latency_ms` is
    /// rounded to the microsecond here. Positional, and no row object: this runs at the end
    /// of every request, and building a `SpendRow` cost more than queueing it.
    #[allow(clippy::too_many_arguments)] // the table's columns, one argument each
    #[pyo3(signature = (created_at, request_id, tenant, key_id, model, served_model, upstream, input_tokens, output_tokens, cost_usd, latency_ms, status, cache, trace_id, /))]
    fn record(
        &self,
        created_at: f64,
        request_id: &str,
        tenant: &str,
        key_id: Option<&str>,
        model: &str,
        served_model: &str,
        upstream: &str,
        input_tokens: i64,
        output_tokens: i64,
        cost_usd: f64,
        latency_ms: f64,
        status: i64,
        cache: &str,
        trace_id: Option<&str>,
    ) {
        self.writer.record(&SpendRecord {
            created_at,
            request_id,
            tenant,
            key_id,
            model,
            served_model,
            upstream,
            input_tokens,
            output_tokens,
            cost_usd,
            latency_ms: (latency_ms * 1000.0).round() / 1000.0,
            status,
            cache,
            trace_id,
        });
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
