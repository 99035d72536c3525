//! `ChunkedBody`: a streamed answer's chunked body, read as it comes (see `chunked`).

use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::chunked::{frame_chunk, ChunkError, ChunkedBody};

#[pyclass(name = "ChunkedBody", module = "sidegate._native")]
pub(crate) struct PyChunkedBody {
    body: ChunkedBody,
    payload: Vec<u8>,
    error: Option<ChunkError>,
}

#[pymethods]
impl PyChunkedBody {
    #[new]
    fn new() -> Self {
        Self { body: ChunkedBody::new(), payload: Vec::new(), error: None }
    }

    /// `(payload, used)`: the chunks' payload in `data` and how many of its bytes the body
    /// took (fewer than all only when it ended within them). Broken framing is not raised:
    /// what came before it is the upstream's and is in `payload`; `error` then says what broke.
    fn feed<'py>(&mut self, py: Python<'py>, data: &[u8]) -> (Bound<'py, PyBytes>, usize) {
        self.payload.clear();
        let used = match self.body.feed(data, &mut self.payload) {
            Ok(used) => used,
            Err(error) => {
                self.error = Some(error);
                data.len()
            }
        };
        (PyBytes::new(py, &self.payload), used)
    }

    /// Read a new body from its start, as a new `ChunkedBody` would (one per connection is
    /// reused: making one costs more than reading an event's chunk).
    fn reset(&mut self) {
        self.body = ChunkedBody::new();
        self.payload.clear();
        self.error = None;
    }

    /// What broke the framing, once it broke; None before.
    #[getter]
    fn error(&self) -> Option<String> {
        self.error.map(|error| error.to_string())
    }

    /// The last chunk and the trailers are read.
    #[getter]
    fn done(&self) -> bool {
        self.body.is_done()
    }
}

/// `data` as one chunk of a chunked body: `b"%x\r\n%b\r\n" % (len(data), data)`.
#[pyfunction]
#[pyo3(name = "chunk_frame")]
pub(crate) fn py_chunk_frame<'py>(py: Python<'py>, data: &[u8]) -> Bound<'py, PyBytes> {
    let mut framed = Vec::new();
    frame_chunk(data, &mut framed);
    PyBytes::new(py, &framed)
}
