//! The PyO3 skin: convert arguments, run the core with the GIL released, convert results.

use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::header_rules;

mod access;
mod chunked;
mod errors;
mod http_head;
mod inspect;
mod metric;
mod ratelimit;
mod spend;
mod sse;
mod tokens;
mod upstream_request;

#[pymodule(gil_used = false)]
fn _native(py: Python<'_>, m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<tokens::PyTokenizer>()?;
    m.add_class::<inspect::PyRequestFacts>()?;
    m.add_class::<ratelimit::PyPolicy>()?;
    m.add_class::<ratelimit::PyDecision>()?;
    m.add_class::<ratelimit::PyLimiter>()?;
    m.add_class::<ratelimit::PyLimitShape>()?;
    m.add_class::<ratelimit::PyLimitTicket>()?;
    m.add_class::<http_head::HeadHeaders>()?;
    m.add_class::<chunked::PyChunkedBody>()?;
    m.add_class::<spend::PySpendWriter>()?;
    m.add_class::<access::PyAccessLines>()?;
    m.add_class::<metric::PyMetricValue>()?;
    m.add_class::<metric::PyBucketObserver>()?;
    m.add("HOP_BY_HOP", PyTuple::new(py, header_rules::HOP_BY_HOP)?)?;
    m.add("CLIENT_ONLY", PyTuple::new(py, header_rules::CLIENT_ONLY)?)?;
    m.add("UPSTREAM_ONLY", PyTuple::new(py, header_rules::UPSTREAM_ONLY)?)?;
    m.add_function(wrap_pyfunction!(access::py_sqlite_time, m)?)?;
    m.add_function(wrap_pyfunction!(access::py_http_date_line, m)?)?;
    m.add_function(wrap_pyfunction!(inspect::py_inspect, m)?)?;
    m.add_function(wrap_pyfunction!(inspect::py_encoding_for_model, m)?)?;
    m.add_function(wrap_pyfunction!(inspect::py_cache_key, m)?)?;
    m.add_function(wrap_pyfunction!(inspect::py_usage_counts, m)?)?;
    m.add_function(wrap_pyfunction!(http_head::py_request_head, m)?)?;
    m.add_function(wrap_pyfunction!(http_head::py_response_head, m)?)?;
    m.add_function(wrap_pyfunction!(http_head::py_header_block, m)?)?;
    m.add_function(wrap_pyfunction!(upstream_request::py_splice_body, m)?)?;
    m.add_function(wrap_pyfunction!(sse::py_sse_usage_at, m)?)?;
    m.add_function(wrap_pyfunction!(sse::py_sse_done_marker, m)?)?;
    m.add_function(wrap_pyfunction!(sse::py_sse_complete, m)?)?;
    m.add_function(wrap_pyfunction!(chunked::py_chunk_frame, m)?)?;
    m.add_function(wrap_pyfunction!(tokens::py_set_prompt_memo_capacity, m)?)?;
    m.add_function(wrap_pyfunction!(tokens::py_prompt_memo_len, m)?)?;
    errors::register(py, m)?;
    Ok(())
}
