//! The PyO3 skin: convert arguments, run the core with the GIL released, convert results.

use pyo3::prelude::*;

mod errors;
mod tokens;

#[pymodule(gil_used = false)]
fn _native(py: Python<'_>, m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<tokens::PyTokenizer>()?;
    errors::register(py, m)?;
    Ok(())
}
