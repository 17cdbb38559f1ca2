use thiserror::Error;

/// Everything that can go wrong in the tasks crate. Messages name the value.
#[derive(Debug, Error)]
pub enum Error {
    #[error("unknown task '{name}' (known: {known})")]
    UnknownTask { name: String, known: String },
    #[error("task '{task}' has levels 1..={max}, not {level}")]
    LevelOutOfRange { task: String, level: u32, max: u32 },
    #[error("unknown split '{name}' (known: train, heldout)")]
    UnknownSplit { name: String },
    #[error("{task} level {level} {split} has problems 0..{size}, not index {index}")]
    IndexOutOfRange {
        task: String,
        level: u32,
        split: &'static str,
        index: u64,
        size: u64,
    },
    #[error("{file}:{line}: {message}")]
    BadLine {
        file: String,
        line: usize,
        message: String,
    },
    /// A file could not be read; the I/O error is the source.
    #[error("cannot read {path}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid mixture: {0}")]
    Mixture(String),
    /// A generator kept producing held-out prompts; its level has too few
    /// distinct problems for a training split.
    #[error("{task} level {level}: no training problem found for index {index} after {attempts} draws (every one was held out)")]
    Exhausted {
        task: String,
        level: u32,
        index: u64,
        attempts: u32,
    },
}

impl Error {
    /// True when the error is the caller's input (a name, a level, an index,
    /// a line of a file, a mixture entry) rather than a failure while running.
    pub fn is_bad_input(&self) -> bool {
        !matches!(self, Error::Io { .. } | Error::Exhausted { .. })
    }
}

/// Result alias for the tasks crate.
pub type Result<T> = std::result::Result<T, Error>;
