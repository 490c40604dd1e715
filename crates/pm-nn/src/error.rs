//! The error type of pm-nn: everything a caller can cause (network configuration, shapes,
//! weight and checkpoint files, non-finite numbers) comes back as an [`Error`] naming the field
//! and the fix; candle and pm-core errors are wrapped.

use std::path::PathBuf;

/// Everything a caller of pm-nn can get wrong (shapes, configs, weight files), plus candle's own
/// errors passed through.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A tensor argument has the wrong rank, size or dtype.
    #[error("{what}: got shape/dtype {got}, expected {expected}")]
    Shape {
        /// Which argument (e.g. `"conv3d input"`).
        what: &'static str,
        /// What was passed.
        got: String,
        /// What is accepted.
        expected: String,
    },
    /// A configuration value is out of range.
    #[error("config field `{field}` = {value}: {expected}")]
    Config {
        /// Name of the field, as written in the config.
        field: &'static str,
        /// The offending value.
        value: String,
        /// What is accepted, and how to fix it.
        expected: String,
    },
    /// A weight file does not match the network it is loaded into.
    #[error("weights file {path}: {what}")]
    Weights {
        /// The file.
        path: String,
        /// What differs (config field, missing tensor, wrong shape).
        what: String,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
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
    /// An error raised inside candle.
    #[error(transparent)]
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
