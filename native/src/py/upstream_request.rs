//! `splice_body`: the body an upstream gets, the gateway's edits spliced into the client's.

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::upstream_request::{spliced_body, BodyEdit};

/// The client's JSON object `body` with the upstream's `model` name (JSON-escaped, without
/// quotes; None keeps the client's) at `model_span`, and usage asked for first in the object
/// when `add_usage`; None when that cannot be spliced (the caller parses and writes it).
#[pyfunction]
#[pyo3(name = "splice_body")]
pub(crate) fn py_splice_body<'py>(
    py: Python<'py>,
    body: &[u8],
    model_span: Option<(usize, usize)>,
    model: Option<&[u8]>,
    add_usage: bool,
) -> Option<Bound<'py, PyBytes>> {
    let edit = BodyEdit {
        model_span,
        model,
        add_usage,
    };
    spliced_body(body, &edit).map(|spliced| PyBytes::new(py, &spliced))
}
