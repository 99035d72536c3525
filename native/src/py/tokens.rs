use pyo3::prelude::*;
use pyo3::types::PyBytes;

use super::errors::to_py;
use crate::tokens::{Encoding, PROMPT_MEMO};

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

    /// Prompt tokens of JSON-encoded `messages` (and `tools`) by OpenAI's chat formula.
    #[pyo3(name = "count_chat_json", signature = (messages, tools=None))]
    fn py_count_chat_json(
        &self,
        py: Python<'_>,
        messages: &[u8],
        tools: Option<&[u8]>,
    ) -> PyResult<i64> {
        let encoding = self.encoding;
        let run = || encoding.count_chat_json(messages, tools);
        let size = messages.len() + tools.map_or(0, <[u8]>::len);
        let count = if size < DETACH_MIN_BYTES {
            run()
        } else {
            py.detach(run)
        };
        count.map_err(to_py)
    }

    /// Tokens of the settled prefix of `text` and its length in characters (see the core's
    /// `count_prefix`): a streamed text's count is exact if the rest is carried over.
    #[pyo3(name = "count_prefix")]
    fn py_count_prefix(&self, py: Python<'_>, text: &str) -> (usize, usize) {
        let encoding = self.encoding;
        let run = || {
            let (tokens, consumed) = encoding.count_prefix(text);
            (
                tokens,
                text.get(..consumed).map_or(0, |head| head.chars().count()),
            )
        };
        if text.len() < DETACH_MIN_BYTES {
            return run();
        }
        py.detach(run)
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

/// Bound the memo of long prompt texts' counts to `capacity` texts (0 turns it off); returns
/// the previous bound.
#[pyfunction(name = "set_prompt_memo_capacity")]
pub(crate) fn py_set_prompt_memo_capacity(capacity: usize) -> usize {
    PROMPT_MEMO.set_capacity(capacity)
}

/// How many prompt texts' counts the memo holds now.
#[pyfunction(name = "prompt_memo_len")]
pub(crate) fn py_prompt_memo_len() -> usize {
    PROMPT_MEMO.len()
}
