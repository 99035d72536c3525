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

create_exception!(
    _native,
    InvalidBodyError,
    NativeError,
    "A request body the proxy cannot serve; ``args`` is ``(message, param)``."
);

pub(crate) fn to_py(err: CoreError) -> PyErr {
    match err {
        CoreError::InvalidBody { message, param } => InvalidBodyError::new_err((message, param)),
        other => NativeError::new_err(other.to_string()),
    }
}

pub(crate) fn register(py: Python<'_>, m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("NativeError", py.get_type::<NativeError>())?;
    m.add("InvalidBodyError", py.get_type::<InvalidBodyError>())
}
