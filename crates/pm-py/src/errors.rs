//! Errors as Python exceptions, with the CLI's one-line messages (the text after `error: ` that
//! `cosmograd` prints): a file that cannot be read is an `OSError`, every other error a caller can
//! cause (a value, a shape, a dtype, a non-finite number, a configuration key) a `ValueError`.

use pyo3::exceptions::{PyOSError, PyValueError};
use pyo3::PyErr;

/// An error that becomes a Python exception.
pub trait ToPyErr {
    /// The exception, its message the error's `Display` (one line).
    fn to_py(self) -> PyErr;
}

impl ToPyErr for pm_core::Error {
    fn to_py(self) -> PyErr {
        match self {
            pm_core::Error::File { .. } => PyOSError::new_err(self.to_string()),
            e => PyValueError::new_err(e.to_string()),
        }
    }
}

impl ToPyErr for pm_adjoint::Error {
    fn to_py(self) -> PyErr {
        match self {
            pm_adjoint::Error::Core(e) => e.to_py(),
            e => PyValueError::new_err(e.to_string()),
        }
    }
}

/// `map_err` argument: `result.map_err(py_err)?`.
pub fn py_err<E: ToPyErr>(e: E) -> PyErr {
    e.to_py()
}

/// A `ValueError` from pm-core's [`pm_core::Error::Invalid`] wording:
/// ``invalid `field` = value: expected ...``.
pub fn invalid(field: &str, value: impl ToString, expected: impl Into<String>) -> PyErr {
    pm_core::Error::invalid(field, value, expected).to_py()
}
