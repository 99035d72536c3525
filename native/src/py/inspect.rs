use pyo3::prelude::*;
use pyo3::types::PyString;

use super::errors::to_py;
use crate::cache_key::to_hex;
use crate::inspect::{inspect, Endpoint, Facts, Options};
use crate::tokens::Encoding;

/// Bodies shorter than this are inspected without releasing the GIL: the release costs more.
const DETACH_MIN_BYTES: usize = 16 * 1024;

/// What the request path needs from a body (see `sidegate.inspection`).
#[pyclass(frozen, get_all, name = "RequestFacts", module = "sidegate._native")]
pub(crate) struct PyRequestFacts {
    model: Py<PyString>,
    stream: bool,
    include_usage: bool,
    max_tokens: Option<i64>,
    n: i64,
    temperature: Option<f64>,
    prompt_tokens: i64,
    body_hash: Option<Py<PyString>>,
    model_span: Option<(usize, usize)>,
}

impl PyRequestFacts {
    fn from_core(py: Python<'_>, facts: Facts) -> Self {
        Self {
            model: PyString::new(py, &facts.model).unbind(),
            stream: facts.stream,
            include_usage: facts.include_usage,
            max_tokens: facts.max_tokens,
            n: facts.n,
            temperature: facts.temperature,
            prompt_tokens: facts.prompt_tokens,
            body_hash: facts
                .cache_key
                .map(|key| PyString::new(py, &to_hex(key)).unbind()),
            model_span: facts.model_span,
        }
    }
}

#[pymethods]
impl PyRequestFacts {
    #[new]
    #[allow(clippy::too_many_arguments)] // mirrors the fields, as a dataclass would
    #[pyo3(signature = (
        model, stream, include_usage, max_tokens, n, temperature, prompt_tokens, body_hash,
        model_span=None
    ))]
    fn py_new(
        model: Py<PyString>,
        stream: bool,
        include_usage: bool,
        max_tokens: Option<i64>,
        n: i64,
        temperature: Option<f64>,
        prompt_tokens: i64,
        body_hash: Option<Py<PyString>>,
        model_span: Option<(usize, usize)>,
    ) -> Self {
        Self {
            model,
            stream,
            include_usage,
            max_tokens,
            n,
            temperature,
            prompt_tokens,
            body_hash,
            model_span,
        }
    }

    /// The tokens a limit holds for this request until its answer is counted: the prompt
    /// plus `max_tokens` for each of `n` choices (at least one). Wide enough for any fields.
    #[getter]
    fn reservation(&self) -> i128 {
        i128::from(self.prompt_tokens)
            + i128::from(self.max_tokens.unwrap_or(0)) * i128::from(self.n.max(1))
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let repr = |value: Bound<'_, PyAny>| -> PyResult<String> { Ok(value.repr()?.to_string()) };
        Ok(format!(
            "RequestFacts(model={}, stream={}, include_usage={}, max_tokens={}, n={}, \
             temperature={}, prompt_tokens={}, body_hash={}, model_span={})",
            repr(self.model.bind(py).clone().into_any())?,
            repr(self.stream.into_pyobject(py)?.to_owned().into_any())?,
            repr(self.include_usage.into_pyobject(py)?.to_owned().into_any())?,
            repr(self.max_tokens.into_pyobject(py)?)?,
            self.n,
            repr(self.temperature.into_pyobject(py)?)?,
            self.prompt_tokens,
            repr(self.body_hash.as_ref().map(|hash| hash.bind(py)).into_pyobject(py)?)?,
            repr(self.model_span.into_pyobject(py)?.into_any())?,
        ))
    }
}

/// Everything the request path needs from `body`, in one call (see `_native.pyi`).
#[pyfunction]
#[pyo3(name = "inspect", signature = (body, endpoint, encoding=None, count_tokens=true, hash_body=true))]
pub(crate) fn py_inspect(
    py: Python<'_>,
    body: &[u8],
    endpoint: &str,
    encoding: Option<&str>,
    count_tokens: bool,
    hash_body: bool,
) -> PyResult<PyRequestFacts> {
    let endpoint = endpoint.parse::<Endpoint>().map_err(to_py)?;
    let encoding = encoding
        .map(str::parse::<Encoding>)
        .transpose()
        .map_err(to_py)?;
    let options = Options {
        encoding,
        count_tokens,
        cache_key: hash_body,
    };
    let run = || inspect(body, endpoint, options);
    let facts = if body.len() < DETACH_MIN_BYTES {
        run()
    } else {
        py.detach(run)
    };
    facts
        .map(|facts| PyRequestFacts::from_core(py, facts))
        .map_err(to_py)
}

/// The cache key of `body` alone (hex), without validating its shape beyond JSON.
#[pyfunction]
#[pyo3(name = "cache_key")]
pub(crate) fn py_cache_key(py: Python<'_>, body: &[u8], endpoint: &str) -> PyResult<String> {
    let run = || crate::cache_key::cache_key_of_body(endpoint, body);
    let key = if body.len() < DETACH_MIN_BYTES {
        run()
    } else {
        py.detach(run)
    };
    key.map(to_hex).map_err(to_py)
}

/// The encoding OpenAI uses for `model`; unknown models get o200k_base.
#[pyfunction]
#[pyo3(name = "encoding_for_model")]
pub(crate) fn py_encoding_for_model(model: &str) -> &'static str {
    Encoding::for_model(model).name()
}

/// `(prompt_tokens, completion_tokens)` from an answer's top-level `usage` object.
#[pyfunction]
#[pyo3(name = "usage_counts")]
pub(crate) fn py_usage_counts(body: &[u8]) -> (Option<i64>, Option<i64>) {
    crate::usage::usage_counts(body)
}
