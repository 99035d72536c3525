//! `request_head` and `response_head`: the lean server's common request and the lean client's
//! common answers (whole, or a chunked stream's head), each read in one call (see `http_head`).

use pyo3::exceptions::{PyKeyError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyString, PyTuple};

use crate::header_block::push_line;
use crate::header_rules::{forwarded_lines, returned_block, returned_headers};
use crate::http_head::{answer_start, plain_request, Plain};
use crate::stream_head::{event_stream_head, StreamStamp};
use crate::upstream_request::request_bytes;

/// `(target, keep_alive, headers, head_len, content_length)` for a whole plain `POST` at the
/// start of `data`, headers as a `HeadHeaders` over a copy of the head; None when llhttp
/// should read the bytes instead.
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
    let headers = HeadHeaders::of(data, &plain);
    let fields = (
        PyBytes::new(py, plain.start),
        plain.keep_alive,
        Bound::new(py, headers)?,
        plain.head_len,
        plain.content_length,
    );
    fields.into_pyobject(py).map(Some)
}

/// `(status, keep_alive, headers, head_len, chunked)` when `data` is exactly one whole answer
/// framed by `Content-Length` (its body is `data[head_len:]`), or starts with the head of a
/// chunked one (`chunked` true; its body, for a `ChunkedBody`, starts at `data[head_len:]`);
/// None when llhttp should read it.
#[pyfunction]
#[pyo3(name = "response_head")]
pub(crate) fn py_response_head<'py>(
    py: Python<'py>,
    data: &[u8],
    head_limit: usize,
) -> PyResult<Option<Bound<'py, PyTuple>>> {
    let Some((plain, chunked)) = answer_start(data, head_limit) else {
        return Ok(None);
    };
    let headers = HeadHeaders::of(data, &plain);
    let fields = (
        plain.start,
        plain.keep_alive,
        Bound::new(py, headers)?,
        plain.head_len,
        chunked,
    );
    fields.into_pyobject(py).map(Some)
}

fn latin1<'py>(py: Python<'py>, bytes: &[u8]) -> Bound<'py, PyString> {
    match std::str::from_utf8(bytes) {
        Ok(text) if text.is_ascii() => PyString::new(py, text),
        _ => PyString::new(py, &bytes.iter().map(|&byte| char::from(byte)).collect::<String>()),
    }
}

/// A message's headers as a read-only, case-insensitive multidict (the part of
/// `CIMultiDictProxy` the gateway reads), kept as the head's bytes: a lookup decodes only
/// the value it returns, and `forwarded()` frames what the upstream gets without making a
/// Python string per header.
#[pyclass(frozen, mapping, name = "HeadHeaders", module = "sidegate._native")]
pub(crate) struct HeadHeaders {
    head: Vec<u8>,
    /// `(name start, name end, value start, value end)` in `head`.
    spans: Vec<[usize; 4]>,
}

impl HeadHeaders {
    /// The headers of the message `plain` read at the start of `data`.
    fn of<S>(data: &[u8], plain: &Plain<'_, S>) -> Self {
        let (head, headers) = (&data[..plain.head_len], &plain.headers);
        let base = head.as_ptr() as usize;
        let offset = |part: &[u8]| part.as_ptr() as usize - base;
        let spans = headers
            .iter()
            .map(|(name, value)| {
                let (name_at, value_at) = (offset(name), offset(value));
                [
                    name_at,
                    name_at + name.len(),
                    value_at,
                    value_at + value.len(),
                ]
            })
            .collect();
        Self {
            head: head.to_vec(),
            spans,
        }
    }

    fn pairs(&self) -> impl ExactSizeIterator<Item = (&[u8], &[u8])> {
        self.spans
            .iter()
            .map(|[a, b, c, d]| (&self.head[*a..*b], &self.head[*c..*d]))
    }

    fn values_of<'s>(&'s self, name: &'s str) -> impl Iterator<Item = &'s [u8]> + 's {
        self.pairs()
            .filter(move |(own, _)| own.eq_ignore_ascii_case(name.as_bytes()))
            .map(|(_, value)| value)
    }
}

#[pymethods]
impl HeadHeaders {
    #[pyo3(signature = (name, default=None))]
    fn get<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        default: Option<Bound<'py, PyAny>>,
    ) -> Bound<'py, PyAny> {
        match self.values_of(name).next() {
            Some(value) => latin1(py, value).into_any(),
            None => default.unwrap_or_else(|| py.None().into_bound(py)),
        }
    }

    #[pyo3(signature = (name, default=None))]
    fn getone<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        match (self.values_of(name).next(), default) {
            (Some(value), _) => Ok(latin1(py, value).into_any()),
            (None, Some(default)) => Ok(default),
            (None, None) => Err(PyKeyError::new_err(name.to_owned())),
        }
    }

    #[pyo3(signature = (name, default=None))]
    fn getall<'py>(
        &self,
        py: Python<'py>,
        name: &str,
        default: Option<Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyAny>> {
        let values: Vec<_> = self
            .values_of(name)
            .map(|value| latin1(py, value))
            .collect();
        match (values.is_empty(), default) {
            (false, _) => Ok(PyList::new(py, values)?.into_any()),
            (true, Some(default)) => Ok(default),
            (true, None) => Err(PyKeyError::new_err(name.to_owned())),
        }
    }

    fn __getitem__<'py>(&self, py: Python<'py>, name: &str) -> PyResult<Bound<'py, PyString>> {
        match self.values_of(name).next() {
            Some(value) => Ok(latin1(py, value)),
            None => Err(PyKeyError::new_err(name.to_owned())),
        }
    }

    fn __contains__(&self, name: &Bound<'_, PyAny>) -> bool {
        name.extract::<&str>()
            .is_ok_and(|name| self.values_of(name).next().is_some())
    }

    fn __len__(&self) -> usize {
        self.spans.len()
    }

    fn __iter__<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
        self.keys(py)?.try_iter().map(Bound::into_any)
    }

    fn keys<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, self.pairs().map(|(name, _)| latin1(py, name)))
    }

    fn values<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, self.pairs().map(|(_, value)| latin1(py, value)))
    }

    fn items<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(
            py,
            self.pairs()
                .map(|(name, value)| (latin1(py, name), latin1(py, value))),
        )
    }

    /// `name: value\r\n` for each header an upstream gets (`header_rules`), as bytes.
    fn forwarded<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        let headers: Vec<_> = self.pairs().collect();
        PyBytes::new(py, &forwarded_lines(&headers))
    }

    /// The request an upstream gets with these as its client's headers: `start` (request line
    /// and `Host`), the lines `forwarded()` gives, `own` (the gateway's lines), the length of
    /// `body`, then `body` itself unless `with_body` is false. `start` and `own` are the
    /// caller's, checked for line breaks.
    #[pyo3(signature = (start, own, body, with_body=true))]
    fn request<'py>(
        &self,
        py: Python<'py>,
        start: &[u8],
        own: &[u8],
        body: &[u8],
        with_body: bool,
    ) -> Bound<'py, PyBytes> {
        let headers: Vec<_> = self.pairs().collect();
        PyBytes::new(py, &request_bytes(start, &headers, own, body, with_body))
    }

    /// The answer headers the client gets (`header_rules::returned_headers`) as a new dict,
    /// the upstream's request id under `x-upstream-request-id`; none named in `written`, the
    /// lines the gateway adds itself.
    #[pyo3(signature = (written=None))]
    fn returned<'py>(
        &self,
        py: Python<'py>,
        written: Option<&[u8]>,
    ) -> PyResult<Bound<'py, PyDict>> {
        let headers: Vec<_> = self.pairs().collect();
        let (kept, upstream_id) = returned_headers(&headers, written.unwrap_or_default());
        let dict = PyDict::new(py);
        for (name, value) in kept {
            dict.set_item(latin1(py, name), latin1(py, value))?;
        }
        if let Some(id) = upstream_id {
            dict.set_item("x-upstream-request-id", latin1(py, id))?;
        }
        Ok(dict)
    }

    /// The header block a client gets for this answer (`header_rules::returned_block`): the
    /// lines it keeps, values byte for byte, then `written`, the gateway's own lines.
    fn returned_block<'py>(&self, py: Python<'py>, written: &[u8]) -> Bound<'py, PyBytes> {
        let headers: Vec<_> = self.pairs().collect();
        PyBytes::new(py, &returned_block(&headers, written))
    }

    /// The whole head of the event stream relaying this answer to the client
    /// (`stream_head::event_stream_head`), or None when this answer is no event stream.
    #[allow(clippy::too_many_arguments)]
    fn event_stream_head<'py>(
        &self,
        py: Python<'py>,
        status_line: &[u8],
        request_id: &str,
        cache: &str,
        overhead_seconds: f64,
        lines: &[u8],
        tail: &[u8],
    ) -> Option<Bound<'py, PyBytes>> {
        let headers: Vec<_> = self.pairs().collect();
        let stamp = StreamStamp {
            request_id: request_id.as_bytes(),
            cache: cache.as_bytes(),
            overhead_seconds,
            lines,
        };
        event_stream_head(&headers, status_line, &stamp, tail).map(|head| PyBytes::new(py, &head))
    }

    fn __repr__(&self) -> String {
        let names: Vec<_> = self
            .pairs()
            .map(|(name, _)| String::from_utf8_lossy(name))
            .collect();
        format!("<HeadHeaders {}>", names.join(", "))
    }
}

/// The header lines of `headers` (`name: value\r\n` each, UTF-8, in the dict's order);
/// ValueError when a name or value holds a line break. A value that is not a string is
/// written as `str()` writes it.
#[pyfunction]
#[pyo3(name = "header_block")]
pub(crate) fn py_header_block<'py>(
    py: Python<'py>,
    headers: &Bound<'py, PyDict>,
) -> PyResult<Bound<'py, PyBytes>> {
    let mut block = Vec::with_capacity(64 * headers.len());
    for (name, value) in headers.iter() {
        let name = name.cast_into::<PyString>()?;
        let value = match value.cast_into::<PyString>() {
            Ok(text) => text,
            Err(other) => other.into_inner().str()?,
        };
        push_line(&mut block, name.to_str()?, value.to_str()?)
            .map_err(|_| PyValueError::new_err("a response header holds a line break"))?;
    }
    Ok(PyBytes::new(py, &block))
}
