//! Errors of the engine: every one names the file or input it is about.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },

    #[error("{path}: {message}")]
    Config { path: PathBuf, message: String },

    /// `supported` lists what the reader of that kind of file knows (Hugging Face `model_type`s
    /// for `config.json`, llama.cpp's architecture names for GGUF).
    #[error("unsupported architecture '{found}' in {path}; supported: {supported}")]
    UnsupportedArchitecture {
        path: PathBuf,
        found: String,
        supported: String,
    },

    #[error("no tokenizer for the model in {path}: {message}")]
    Tokenizer { path: PathBuf, message: String },

    #[error("weights {path}: {message}")]
    Weights { path: PathBuf, message: String },

    #[error("GGUF file {path}: {message}")]
    Gguf { path: PathBuf, message: String },

    #[error("model '{id}' is not in the local Hugging Face cache ({cache}); {hint}")]
    NotInCache {
        id: String,
        cache: PathBuf,
        hint: String,
    },

    #[error("download of '{what}' failed: {message}")]
    Download { what: String, message: String },

    #[error("sentence {index} is empty")]
    EmptySentence { index: usize },

    #[error(
        "sentence {index} has {tokens} tokens, more than this model's limit of {limit} ({limit_source})"
    )]
    SentenceTooLong {
        index: usize,
        tokens: usize,
        limit: usize,
        limit_source: &'static str,
    },

    #[error(
        "sentence {index}: the forward pass gave NaN or infinity ({place}); in bf16 or f16 an \
         activation can overflow, so try f32 (--dtype f32), else the weights hold such values"
    )]
    NonFinite { index: usize, place: String },

    #[error("device: {0}")]
    Device(String),

    #[error("out of memory: {0}")]
    OutOfMemory(String),

    #[error("cancelled")]
    Cancelled,

    #[error("tensor computation failed: {}", candle_message(.0))]
    Candle(#[from] candle_core::Error),
}

impl EngineError {
    pub fn config(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Config {
            path: path.into(),
            message: message.into(),
        }
    }

    pub fn weights(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Weights {
            path: path.into(),
            message: message.into(),
        }
    }

    pub fn gguf(path: impl Into<PathBuf>, message: impl Into<String>) -> Self {
        Self::Gguf {
            path: path.into(),
            message: message.into(),
        }
    }

    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Self::Io {
            path: path.into(),
            source,
        }
    }
}

/// A candle error without the backtrace candle attaches when `RUST_BACKTRACE` is set: users
/// need what went wrong, not the frames.
pub fn candle_message(error: &candle_core::Error) -> String {
    match error {
        candle_core::Error::WithBacktrace { inner, .. } => candle_message(inner),
        other => other.to_string(),
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
