//! `request_head` and `response_head`: the lean server's common request and the lean client's
//! common answer, each read in one call (see `http_head`).

use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyString, PyTuple};

use crate::http_head::{plain_request, plain_response};

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
    let fields = (
        PyBytes::new(py, plain.start),
        plain.keep_alive,
        header_list(py, &plain.headers)?,
        plain.head_len,
        plain.content_length,
    );
    fields.into_pyobject(py).map(Some)
}

/// `(status, keep_alive, headers, head_len)` when `data` is exactly one whole answer framed
/// by `Content-Length` (its body is `data[head_len:]`); None when llhttp should read it.
#[pyfunction]
#[pyo3(name = "response_head")]
pub(crate) fn py_response_head<'py>(
    py: Python<'py>,
    data: &[u8],
    head_limit: usize,
) -> PyResult<Option<Bound<'py, PyTuple>>> {
    let Some(plain) = plain_response(data, head_limit) else {
        return Ok(None);
    };
    let fields = (
        plain.start,
        plain.keep_alive,
        header_list(py, &plain.headers)?,
        plain.head_len,
    );
    fields.into_pyobject(py).map(Some)
}

fn header_list<'py>(py: Python<'py>, headers: &[(&[u8], &[u8])]) -> PyResult<Bound<'py, PyList>> {
    let list = PyList::empty(py);
    for (name, value) in headers {
        list.append((latin1(py, name), latin1(py, value)))?;
    }
    Ok(list)
}

fn latin1<'py>(py: Python<'py>, bytes: &[u8]) -> Bound<'py, PyString> {
    match std::str::from_utf8(bytes) {
        Ok(text) if text.is_ascii() => PyString::new(py, text),
        _ => PyString::new(py, &bytes.iter().map(|&byte| char::from(byte)).collect::<String>()),
    }
}
