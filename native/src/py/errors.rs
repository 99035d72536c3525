use pyo3::create_exception;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::CoreError;

create_exception!(
    _native,
    NativeError,
    PyValueError,
    "Base of every error raised by sidegate._native."
);

pub(crate) fn to_py(err: CoreError) -> PyErr {
    NativeError::new_err(err.to_string())
}

pub(crate) fn register(py: Python<'_>, m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("NativeError", py.get_type::<NativeError>())
}
