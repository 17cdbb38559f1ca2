//! The report's one error type.

use std::path::PathBuf;

/// What can go wrong reading runs or writing a report.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The folder is missing, or holds none of a run's files.
    #[error("{dir}: not a run folder: {reason}")]
    NotARun {
        /// The folder as given.
        dir: PathBuf,
        /// Why, in a few words.
        reason: String,
    },
    /// A run file exists but cannot be understood (config.toml that is not TOML).
    #[error("{path}: {message}")]
    BadFile {
        /// The file.
        path: PathBuf,
        /// What is wrong with it.
        message: String,
    },
    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },
    /// Drawing a plot failed.
    #[error("cannot draw the plot '{plot}': {message}")]
    Plot {
        /// The plot's title.
        plot: String,
        /// What plotters said.
        message: String,
    },
}

impl Error {
    /// True when the error is the caller's input (a folder that is not a
    /// run, a run file that cannot be read as one), not a failure to write.
    pub fn is_bad_input(&self) -> bool {
        matches!(self, Error::NotARun { .. } | Error::BadFile { .. })
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

/// The report's result type.
pub type Result<T> = std::result::Result<T, Error>;
