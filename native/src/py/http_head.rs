//! `request_head`: the lean server's common request read in one call (see `http_head`).

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use crate::http_head::plain_request;

/// `(target, keep_alive, headers, head_len, content_length)` for a whole plain `POST` at the
/// start of `data`, headers as `(name, value)` strings decoded as latin-1 (every byte kept);
/// None when llhttp should read the bytes instead.
#[pyfunction]
#[pyo3(name = "request_head")]
pub(crate) fn py_request_head<'py>(
    py: Python<'py>,
    data: &[u8],
    head_limit: usize,
) -> PyResult<Option<Bound<'py, PyTuple>>> {
    let Some(plain) = plain_request(data, head_limit) else {
        return Ok(None);
    };
    let headers = PyList::empty(py);
    for (name, value) in &plain.headers {
        headers.append((latin1(py, name), latin1(py, value)))?;
    }
    let target = PyBytes::new(py, plain.target);
    let fields = (
        target,
        plain.keep_alive,
        headers,
        plain.head_len,
        plain.content_length,
    );
    fields.into_pyobject(py).map(Some)
}

fn latin1<'py>(py: Python<'py>, bytes: &[u8]) -> Bound<'py, PyString> {
    match std::str::from_utf8(bytes) {
        Ok(text) if text.is_ascii() => PyString::new(py, text),
        _ => PyString::new(py, &bytes.iter().map(|&byte| char::from(byte)).collect::<String>()),
    }
}
