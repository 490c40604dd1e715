//! The error type of pm-nn: one `thiserror` enum with the field at fault and the fix.

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
    /// An error raised inside candle.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
}

/// `Result` with [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
