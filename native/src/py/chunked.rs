//! `ChunkedBody`: a streamed answer's chunked body, read as it comes (see `chunked`).

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::chunked::ChunkedBody;

#[pyclass(name = "ChunkedBody", module = "sidegate._native")]
pub(crate) struct PyChunkedBody {
    body: ChunkedBody,
    payload: Vec<u8>,
}

#[pymethods]
impl PyChunkedBody {
    #[new]
    fn new() -> Self {
        Self { body: ChunkedBody::new(), payload: Vec::new() }
    }

    /// `(payload, used)`: the chunks' payload in `data` and how many of its bytes the body
    /// took (fewer than all only when it ended within them); ValueError for broken framing.
    fn feed<'py>(
        &mut self,
        py: Python<'py>,
        data: &[u8],
    ) -> PyResult<(Bound<'py, PyBytes>, usize)> {
        self.payload.clear();
        let used = self
            .body
            .feed(data, &mut self.payload)
            .map_err(|error| PyValueError::new_err(error.to_string()))?;
        Ok((PyBytes::new(py, &self.payload), used))
    }

    /// The last chunk and the trailers are read.
    #[getter]
    fn done(&self) -> bool {
        self.body.is_done()
    }
}
