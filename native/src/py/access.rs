//! `AccessLines`: the access log's lines, written natively (see `access_line`);
//! `sqlite_time` and `http_date_line`: the spend table's and a head's text for an instant (see
//! `utc_text`).

use std::borrow::Cow;

use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use crate::access_line::{write_line, AccessFields};
use crate::utc_text::{write_http_date_line, write_sqlite_micros};

/// The access log's lines not yet written: each request's JSON line (`access_line`) is
/// appended here natively, and `JsonLineHandler` takes them all for one write per event-loop
/// turn. Appending in place spares a bytes object, a Python call and a lock per request.
#[pyclass(frozen, name = "AccessLines", module = "sidegate._native")]
pub(crate) struct PyAccessLines {
    pending: Mutex<Vec<u8>>,
    write_at: usize,
}

#[pymethods]
impl PyAccessLines {
    #[new]
    fn py_new(write_at: usize) -> Self {
        Self {
            pending: Mutex::new(Vec::with_capacity(write_at.min(1 << 20))),
            write_at,
        }
    }

    /// Appends the line (newline included) for one proxied request logged at `created`.
    /// True when the caller must act: the line is the first since the last `take` (a write is
    /// to be scheduled), or `write_at` bytes are pending (they are to be written now).
    #[allow(clippy::too_many_arguments)] // the contract's fields, one argument each
    fn add(
        &self,
        created: f64,
        warning: bool,
        request_id: &Bound<'_, PyString>,
        trace_id: Option<Bound<'_, PyString>>,
        span_id: Option<Bound<'_, PyString>>,
        tenant: &Bound<'_, PyString>,
        key_id: Option<Bound<'_, PyString>>,
        model: &Bound<'_, PyString>,
        upstream: &Bound<'_, PyString>,
        status: i64,
        input_tokens: i64,
        output_tokens: i64,
        cost_usd: f64,
        latency_ms: f64,
        cache: &Bound<'_, PyString>,
        attempts: i64,
    ) -> bool {
        let (trace_id, span_id, key_id) = (
            trace_id.as_ref().map(text),
            span_id.as_ref().map(text),
            key_id.as_ref().map(text),
        );
        let fields = AccessFields {
            request_id: &text(request_id),
            trace_id: trace_id.as_deref(),
            span_id: span_id.as_deref(),
            tenant: &text(tenant),
            key_id: key_id.as_deref(),
            model: &text(model),
            upstream: &text(upstream),
            status,
            input_tokens,
            output_tokens,
            cost_usd,
            latency_ms,
            cache: &text(cache),
            attempts,
        };
        let mut pending = self.pending.lock();
        let first = pending.is_empty();
        write_line(&mut pending, created, warning, &fields);
        first || pending.len() >= self.write_at
    }

    /// The pending lines, end to end; none are pending afterwards.
    fn take<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let mut pending = self.pending.lock();
        let lines = PyBytes::new(py, &pending);
        pending.clear();
        lines
    }

    fn __len__(&self) -> usize {
        self.pending.lock().len()
    }
}

/// The UTF-8 of `value`; a lone surrogate (a JWT claim may carry one) becomes U+FFFD rather
/// than failing the request's accounting.
fn text<'a>(value: &'a Bound<'_, PyString>) -> Cow<'a, str> {
    match value.to_str() {
        Ok(utf8) => Cow::Borrowed(utf8),
        Err(_) => Cow::Owned(value.to_string_lossy().into_owned()),
    }
}

/// `datetime.fromtimestamp(created, UTC).strftime("%Y-%m-%d %H:%M:%S.%f")`.
#[pyfunction]
#[pyo3(name = "sqlite_time")]
pub(crate) fn py_sqlite_time(py: Python<'_>, created: f64) -> Bound<'_, PyString> {
    let mut out = Vec::with_capacity(32);
    write_sqlite_micros(&mut out, created);
    // Digits, dashes, colons, a dot and a space: always ASCII.
    PyString::new(py, std::str::from_utf8(&out).unwrap_or_default())
}

/// `b"Date: " + formatdate(seconds, usegmt=True).encode() + b"\r\n"`.
#[pyfunction]
#[pyo3(name = "http_date_line")]
pub(crate) fn py_http_date_line(py: Python<'_>, seconds: i64) -> Bound<'_, PyBytes> {
    let mut out = Vec::with_capacity(40);
    write_http_date_line(&mut out, seconds);
    PyBytes::new(py, &out)
}
