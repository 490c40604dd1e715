//! The error type of pm-nn: everything a caller can cause (network configuration, shapes,
//! files, non-finite numbers) comes back as an [`Error`] naming the field and the fix; candle and
//! pm-core errors are wrapped.

use std::path::PathBuf;

/// Errors a caller of pm-nn can cause.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A configuration value is out of its allowed range.
    #[error("invalid `{field}` = {value}: expected {expected}")]
    Invalid {
        /// Dotted name of the field, e.g. `mlp.hidden`.
        field: String,
        /// The offending value, as the user wrote it.
        value: String,
        /// What would be accepted.
        expected: String,
    },
    /// An array or tensor has the wrong shape.
    #[error("{what} has {found}, expected {expected}")]
    Shape {
        /// What the array is.
        what: String,
        /// The shape found.
        found: String,
        /// The shape expected.
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
    /// A file (checkpoint, weights) could not be read or written.
    #[error("{path}: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong, and the fix where there is one.
        reason: String,
    },
    /// An error from candle (tensor op, device, safetensors).
    #[error("candle: {0}")]
    Candle(#[from] candle_core::Error),
    /// An error from pm-core (simulation configuration, arrays).
    #[error(transparent)]
    Core(#[from] pm_core::Error),
}

/// `Result` with pm-nn's [`Error`].
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
    /// Shorthand for [`Error::File`].
    pub fn file(path: impl Into<PathBuf>, reason: impl ToString) -> Self {
        Error::File {
            path: path.into(),
            reason: reason.to_string(),
        }
    }
}
