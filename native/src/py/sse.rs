//! `sse_usage_at`, `sse_done_marker` and `sse_complete`: what the relay reads in an SSE stream
//! (`sse_scan`).

use pyo3::prelude::*;

use crate::sse_scan::{complete_events, has_done_marker, usage_at};

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

/// `(end, crlf, done, usage)`, as Python gets it.
type CompleteTuple = (usize, bool, bool, Option<(usize, usize)>);

/// `(end, crlf, done, usage)` of the events complete in `data` (`sse_scan::complete_events`),
/// or None while no event has ended.
#[pyfunction]
#[pyo3(name = "sse_complete")]
pub(crate) fn py_sse_complete(
    data: &[u8],
    crlf: Option<bool>,
    done: bool,
) -> Option<CompleteTuple> {
    complete_events(data, crlf, done).map(|found| (found.end, found.crlf, found.done, found.usage))
}
