//! The error type of pm-core: everything a caller can cause (configuration values, files,
//! shapes, non-finite numbers) comes back as an [`Error`] naming the field and the fix.

use std::path::PathBuf;

/// Errors a caller of pm-core can cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A parameter or configuration value is out of its allowed range.
    #[error("invalid `{field}` = {value}: expected {expected}")]
    Invalid {
        /// Dotted name of the field, e.g. `cosmology.omega_m`.
        field: String,
        /// The offending value, as the user wrote it.
        value: String,
        /// What would be accepted.
        expected: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong, and the fix where there is one.
        reason: String,
    },
    /// An array has the wrong shape or element type.
    #[error("{what} has {found}, expected {expected}")]
    Shape {
        /// What the array is (e.g. `white noise file w.npy`).
        what: String,
        /// The shape or dtype found.
        found: String,
        /// The shape or dtype expected.
        expected: String,
    },
    /// A computation met a NaN or infinity (reported instead of propagating it silently).
    #[error("non-finite value in {what}: {detail}")]
    NonFinite {
        /// Which quantity.
        what: String,
        /// Where, and the likely cause.
        detail: String,
    },
    /// The CUDA device could not be used (no feature, driver, GPU or NVRTC; docs/cuda.md).
    #[error(transparent)]
    Cuda(#[from] crate::device::CudaError),
}

/// `Result` with pm-core's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// Shorthand for [`Error::Invalid`].
    pub fn invalid(field: impl Into<String>, value: impl ToString, expected: impl Into<String>) -> Self {
        Error::Invalid {
            field: field.into(),
            value: value.to_string(),
            expected: expected.into(),
        }
    }
    /// Refuses an array that does not have `len` values ([`Error::Shape`], the expected length
    /// described as `len_desc`, e.g. `box.mesh³`) or that holds a NaN or infinity
    /// ([`Error::NonFinite`], naming the first bad flat index). `what` names the array.
    pub fn check_array<T: crate::float::Real>(what: &str, data: &[T], len: usize, len_desc: &str) -> Result<()> {
        if data.len() != len {
            return Err(Error::Shape {
                what: what.into(),
                found: format!("{} values", data.len()),
                expected: format!("{len} = {len_desc}"),
            });
        }
        Error::check_finite(what, data)
    }
    /// Refuses an array that holds a NaN or infinity ([`Error::NonFinite`], naming the first bad
    /// flat index).
    pub fn check_finite<T: crate::float::Real>(what: &str, data: &[T]) -> Result<()> {
        match data.iter().position(|v| !v.is_finite()) {
            Some(i) => Err(Error::NonFinite {
                what: what.into(),
                detail: format!("value {} at flat index {i}", data[i]),
            }),
            None => Ok(()),
        }
    }
    /// Shorthand for [`Error::File`].
    pub fn file(path: impl Into<PathBuf>, reason: impl Into<String>) -> Self {
        Error::File {
            path: path.into(),
            reason: reason.into(),
        }
    }
}
