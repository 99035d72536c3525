//! `sse_usage_at` and `sse_done_marker`: what the relay reads in an SSE stream (`sse_scan`).

use pyo3::prelude::*;

use crate::sse_scan::{has_done_marker, usage_at};

/// `(start, end)` of the first `"usage"\s*:\s*{` in `data` from `start`, or None.
#[pyfunction]
#[pyo3(name = "sse_usage_at", signature = (data, start=0))]
pub(crate) fn py_sse_usage_at(data: &[u8], start: usize) -> Option<(usize, usize)> {
    usage_at(data, start)
}

/// Whether a line of `data` is `data: [DONE]`.
#[pyfunction]
#[pyo3(name = "sse_done_marker")]
pub(crate) fn py_sse_done_marker(data: &[u8]) -> bool {
    has_done_marker(data)
}
