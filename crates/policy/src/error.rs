use std::path::PathBuf;

use thiserror::Error;

/// Everything that can go wrong in the policy crate. Messages name the
/// offending file, key, tensor or value.
#[derive(Debug, Error)]
pub enum Error {
    /// A tensor operation failed (shape mismatch, device error, ...).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    /// Reading or writing a file failed.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },

    /// A JSON file could not be parsed or does not have the expected shape.
    #[error("{path}: {source}")]
    Json {
        path: PathBuf,
        source: serde_json::Error,
    },

    /// A model configuration value is missing, out of range or unsupported.
    #[error("model config: {0}")]
    Config(String),

    /// The `architectures` / `model_type` of a config.json is not one verity implements.
    #[error(
        "unsupported architecture '{name}' (supported: LlamaForCausalLM, Qwen2ForCausalLM, Qwen3ForCausalLM)"
    )]
    UnknownArchitecture { name: String },

    /// A weight the model needs is in none of the checkpoint files.
    #[error("{dir}: missing tensor '{name}' (looked in {files})")]
    MissingTensor {
        dir: PathBuf,
        name: String,
        files: String,
    },

    /// A weight exists but has the wrong shape for the config.
    #[error("{file}: tensor '{name}' has shape {found:?}, the config needs {expected:?}")]
    TensorShape {
        file: PathBuf,
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },

    /// A safetensors file could not be read or written.
    #[error("{path}: {message}")]
    Safetensors { path: PathBuf, message: String },

    /// A device string such as "cuda:0" could not be used.
    #[error("device '{name}': {message}")]
    Device { name: String, message: String },

    /// Inputs to a forward pass, scoring or generation call are inconsistent.
    #[error("invalid input: {0}")]
    Input(String),

    /// A tokenizer file is missing, malformed or inconsistent.
    #[error("{path}: {message}")]
    Tokenizer { path: PathBuf, message: String },

    /// Encoding or decoding text failed.
    #[error("tokenizer: {0}")]
    Tokenize(String),

    /// A chat template failed to compile or render.
    #[error("chat template: {0}")]
    ChatTemplate(String),

    /// A GGUF file is unreadable, truncated, or holds something verity cannot
    /// load (an architecture, tensor type or tokenizer it does not know).
    #[error("{path}: {message}")]
    Gguf { path: PathBuf, message: String },

    /// A hub repository could not be resolved to a local folder.
    #[error("hub repo '{repo}': {message}")]
    Hub { repo: String, message: String },
}

/// Result alias for the policy crate.
pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io {
            path: path.into(),
            source,
        }
    }

    pub(crate) fn json(path: impl Into<PathBuf>, source: serde_json::Error) -> Self {
        Error::Json {
            path: path.into(),
            source,
        }
    }
}
