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

    /// A GPU this build cannot run on (its kernels were built for a newer one): worth saying
    /// where `auto` falls back to the CPU, unlike a machine with no GPU at all.
    #[error("device: {0}")]
    UnsupportedGpu(String),

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
        candle_core::Error::Context { inner, context } => {
            format!("{context}: {}", candle_message(inner))
        }
        other => other.to_string(),
    }
}

/// What a CUDA driver error means for the user, for the codes that come from the machine
/// rather than from us: no GPU, a driver too old, kernels built for another GPU.
pub fn cuda_advice(message: &str) -> Option<&'static str> {
    const ADVICE: &[(&[&str], &str)] = &[
        (
            &["CUDA_ERROR_NO_DEVICE"],
            "no GPU is visible to this program: check `nvidia-smi` and CUDA_VISIBLE_DEVICES",
        ),
        (
            &[
                "CUDA_ERROR_INSUFFICIENT_DRIVER",
                "CUDA_ERROR_SYSTEM_DRIVER_MISMATCH",
                "CUDA_ERROR_COMPAT_NOT_SUPPORTED_ON_DEVICE",
                "CUDA_ERROR_UNSUPPORTED_PTX_VERSION",
            ],
            "the NVIDIA driver is older than this build's CUDA 13.0 needs (driver 580 or newer): \
             update the driver, or build against the CUDA the driver supports",
        ),
        (
            &["CUDA_ERROR_NO_BINARY_FOR_GPU", "CUDA_ERROR_INVALID_PTX"],
            "this program's GPU kernels were not built for this GPU: rebuild with \
             CUDA_COMPUTE_CAP set to its compute capability (scripts/build-cuda.sh)",
        ),
        (
            &["CUDA_ERROR_INVALID_DEVICE"],
            "there is no GPU with that number: `nvidia-smi -L` lists them",
        ),
    ];
    ADVICE
        .iter()
        .find(|(codes, _)| codes.iter().any(|code| message.contains(code)))
        .map(|(_, advice)| *advice)
}

/// `DriverError(CUDA_ERROR_NO_DEVICE, "no CUDA-capable device is detected")`, as cudarc's
/// errors print, made a sentence: `no CUDA-capable device is detected (CUDA_ERROR_NO_DEVICE)`.
pub fn tidy_driver_error(message: &str) -> String {
    let Some(start) = message.find("DriverError(") else {
        return message.to_string();
    };
    let inner = &message[start + "DriverError(".len()..];
    let Some((code, rest)) = inner.split_once(", \"") else {
        return message.to_string();
    };
    let Some((text, after)) = rest.split_once("\")") else {
        return message.to_string();
    };
    format!("{}{text} ({code}){after}", &message[..start])
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn driver_errors_read_as_sentences_with_advice() {
        let raw = "DriverError(CUDA_ERROR_NO_DEVICE, \"no CUDA-capable device is detected\")";
        assert_eq!(
            tidy_driver_error(&format!("cannot open: {raw}")),
            "cannot open: no CUDA-capable device is detected (CUDA_ERROR_NO_DEVICE)"
        );
        assert!(cuda_advice(raw).unwrap().contains("nvidia-smi"));
        let old_driver = "DriverError(CUDA_ERROR_INSUFFICIENT_DRIVER, \"CUDA driver version is \
                          insufficient for CUDA runtime version\")";
        assert!(
            cuda_advice(old_driver)
                .unwrap()
                .contains("driver 580 or newer")
        );
        let other_gpu = "DriverError(CUDA_ERROR_NO_BINARY_FOR_GPU, \"no kernel image is \
                         available for execution on the device\")";
        assert!(cuda_advice(other_gpu).unwrap().contains("CUDA_COMPUTE_CAP"));
        // Not from the machine: left as it is.
        assert_eq!(cuda_advice("shape mismatch in matmul"), None);
        assert_eq!(tidy_driver_error("shape mismatch"), "shape mismatch");
    }

    #[test]
    fn a_kernel_that_does_not_fit_the_gpu_is_said_in_words() {
        let error = EngineError::Candle(candle_core::Error::Msg(
            "DriverError(CUDA_ERROR_NO_BINARY_FOR_GPU, \"no kernel image is available\")".into(),
        ));
        let mapped = crate::engine::model::map_device_error(error).to_string();
        assert!(
            mapped.contains("no kernel image is available (CUDA_ERROR_NO_BINARY_FOR_GPU)"),
            "{mapped}"
        );
        assert!(mapped.contains("CUDA_COMPUTE_CAP"), "{mapped}");
    }
}
