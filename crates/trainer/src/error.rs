//! The trainer's one error type.

use std::path::{Path, PathBuf};

use thiserror::Error;

/// Everything that can go wrong while configuring or running training.
///
/// [`Error::is_usage`] separates the user's mistakes (a bad config, a missing
/// file, an unknown task: exit code 2) from failures while running (exit 1).
#[derive(Debug, Error)]
pub enum Error {
    /// The config file could not be read.
    #[error("{path}: {source}")]
    ConfigFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The config file could not be parsed or has a key of the wrong type.
    #[error("{file}:{line}: {message}")]
    ConfigSyntax {
        file: String,
        line: usize,
        message: String,
    },
    /// A `--set` override is malformed or names an unknown key.
    #[error("--set {arg}: {message}")]
    Override { arg: String, message: String },
    /// A value that parses but makes no sense (names the key).
    #[error("{key}: {message}")]
    Invalid { key: String, message: String },
    /// A file or folder could not be read or written.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// A saved file (optimizer state, trainer state) does not hold what it should.
    #[error("{path}: {message}")]
    BadFile { path: PathBuf, message: String },
    /// A checkpoint could not be written; the checkpoints written before it
    /// are intact.
    #[error("could not write checkpoint {}: {source}; {}", dir.display(), previous_note(previous.as_deref()))]
    CheckpointWrite {
        dir: PathBuf,
        source: Box<Error>,
        previous: Option<PathBuf>,
    },
    /// Losses or gradients were NaN or infinite for too many steps in a row.
    #[error("{message}")]
    Diverged { message: String },
    /// Tensor maths failed.
    #[error(transparent)]
    Candle(#[from] candle_core::Error),
    /// The model or tokenizer could not be built, loaded or run.
    #[error(transparent)]
    Policy(#[from] policy::Error),
    /// A task or problem set could not be used.
    #[error(transparent)]
    Tasks(#[from] tasks::Error),
}

impl Error {
    /// True when the error is the user's input rather than a failure while
    /// running: the binary exits with code 2 for these.
    pub fn is_usage(&self) -> bool {
        match self {
            Error::ConfigFile { .. }
            | Error::ConfigSyntax { .. }
            | Error::Override { .. }
            | Error::Invalid { .. } => true,
            Error::Tasks(e) => e.is_bad_input(),
            _ => false,
        }
    }

    /// An I/O error on `path`.
    pub(crate) fn io(path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// A value that makes no sense for `key`.
    pub(crate) fn invalid(key: &str, message: impl Into<String>) -> Self {
        Error::Invalid {
            key: key.to_string(),
            message: message.into(),
        }
    }

    /// A saved file with unexpected contents.
    pub(crate) fn bad_file(path: &Path, message: impl Into<String>) -> Self {
        Error::BadFile {
            path: path.to_path_buf(),
            message: message.into(),
        }
    }
}

/// What a failed checkpoint write left to resume from.
fn previous_note(previous: Option<&Path>) -> String {
    match previous {
        Some(p) => format!("the previous checkpoint {} is intact", p.display()),
        None => "there is no earlier checkpoint".to_string(),
    }
}

/// Result alias for the trainer crate.
pub type Result<T> = std::result::Result<T, Error>;
