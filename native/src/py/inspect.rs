use pyo3::prelude::*;

use super::errors::to_py;
use crate::cache_key::to_hex;
use crate::inspect::{inspect, Endpoint, Options};
use crate::tokens::Encoding;

/// Bodies shorter than this are inspected without releasing the GIL: the release costs more.
const DETACH_MIN_BYTES: usize = 16 * 1024;

type FactsTuple = (
    String,
    bool,
    bool,
    Option<i64>,
    i64,
    Option<f64>,
    i64,
    String,
);

/// Everything the request path needs from `body`, as one tuple (see `_native.pyi`).
#[pyfunction]
#[pyo3(name = "inspect", signature = (body, endpoint, encoding=None, count_tokens=true))]
pub(crate) fn py_inspect(
    py: Python<'_>,
    body: &[u8],
    endpoint: &str,
    encoding: Option<&str>,
    count_tokens: bool,
) -> PyResult<FactsTuple> {
    let endpoint = endpoint.parse::<Endpoint>().map_err(to_py)?;
    let encoding = encoding
        .map(str::parse::<Encoding>)
        .transpose()
        .map_err(to_py)?;
    let options = Options {
        encoding,
        count_tokens,
    };
    let run = || inspect(body, endpoint, options);
    let facts = if body.len() < DETACH_MIN_BYTES {
        run()
    } else {
        py.detach(run)
    };
    let f = facts.map_err(to_py)?;
    let key = to_hex(f.cache_key);
    Ok((
        f.model,
        f.stream,
        f.include_usage,
        f.max_tokens,
        f.n,
        f.temperature,
        f.prompt_tokens,
        key,
    ))
}

/// The encoding OpenAI uses for `model`; unknown models get o200k_base.
#[pyfunction]
#[pyo3(name = "encoding_for_model")]
pub(crate) fn py_encoding_for_model(model: &str) -> &'static str {
    Encoding::for_model(model).name()
}
