use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::errors::to_py;
use crate::tokens::Encoding;

/// Texts shorter than this are encoded without releasing the GIL: the release costs more.
const DETACH_MIN_BYTES: usize = 4096;

#[pyclass(frozen, name = "Tokenizer", module = "sidegate._native")]
pub(crate) struct PyTokenizer {
    encoding: Encoding,
}

#[pymethods]
impl PyTokenizer {
    #[new]
    fn py_new(encoding: &str) -> PyResult<Self> {
        let encoding = encoding.parse::<Encoding>().map_err(to_py)?;
        Ok(Self { encoding })
    }

    #[getter]
    fn name(&self) -> &'static str {
        self.encoding.name()
    }

    #[pyo3(name = "count")]
    fn py_count(&self, py: Python<'_>, text: &str) -> usize {
        let encoding = self.encoding;
        if text.len() < DETACH_MIN_BYTES {
            return encoding.count(text);
        }
        py.detach(|| encoding.count(text))
    }

    /// The bytes `tokens` stand for (pieces of one character may split across tokens).
    #[pyo3(name = "decode_bytes")]
    fn py_decode_bytes<'py>(
        &self,
        py: Python<'py>,
        tokens: Vec<u32>,
    ) -> PyResult<Bound<'py, PyBytes>> {
        let bytes = self.encoding.decode_bytes(&tokens).map_err(to_py)?;
        Ok(PyBytes::new(py, &bytes))
    }

    #[pyo3(name = "encode")]
    fn py_encode(&self, py: Python<'_>, text: &str) -> Vec<u32> {
        let encoding = self.encoding;
        if text.len() < DETACH_MIN_BYTES {
            return encoding.encode(text);
        }
        py.detach(|| encoding.encode(text))
    }
}
