use thiserror::Error;

/// Everything that can go wrong in the tasks crate. Messages name the value.
#[derive(Debug, Error)]
pub enum Error {
    #[error("unknown task '{name}' (known: {known})")]
    UnknownTask { name: String, known: String },
    #[error("task '{task}' has levels 1..={max}, not {level}")]
    LevelOutOfRange { task: String, level: u32, max: u32 },
    #[error("{file}:{line}: {message}")]
    BadLine {
        file: String,
        line: usize,
        message: String,
    },
    #[error("{path}: {source}")]
    Io {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid mixture: {0}")]
    Mixture(String),
}

/// Result alias for the tasks crate.
pub type Result<T> = std::result::Result<T, Error>;
