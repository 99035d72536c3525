//! `access_line`: the access log's line for one request, as bytes (see `access_line`), and
//! `sqlite_time`: the spend table's text for an instant (see `utc_text`).

use std::borrow::Cow;

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

use crate::access_line::{write_line, AccessFields};
use crate::utc_text::write_sqlite_micros;

/// The JSON line (newline included) for one proxied request logged at `created`.
#[pyfunction]
#[pyo3(name = "access_line")]
#[allow(clippy::too_many_arguments)]
pub(crate) fn py_access_line<'py>(
    py: Python<'py>,
    created: f64,
    warning: bool,
    request_id: &Bound<'py, PyString>,
    trace_id: Option<Bound<'py, PyString>>,
    span_id: Option<Bound<'py, PyString>>,
    tenant: &Bound<'py, PyString>,
    key_id: Option<Bound<'py, PyString>>,
    model: &Bound<'py, PyString>,
    upstream: &Bound<'py, PyString>,
    status: i64,
    input_tokens: i64,
    output_tokens: i64,
    cost_usd: f64,
    latency_ms: f64,
    cache: &Bound<'py, PyString>,
    attempts: i64,
) -> Bound<'py, PyBytes> {
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
    let mut out = Vec::with_capacity(384);
    write_line(&mut out, created, warning, &fields);
    PyBytes::new(py, &out)
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
