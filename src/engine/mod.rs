//! The engine: load a decoder LLM, run sentences through it, and capture every FFN neuron's
//! state pooled per sentence — reduced inside the forward pass, never kept per token.
//!
//! It knows nothing of corpora, scores or user interfaces.

pub mod activation;
pub mod anatomy;
pub mod arch;
pub mod capture;
pub mod causal_conv;
pub mod config;
pub mod cpu_ops;
pub mod cuda_capture;
pub mod cuda_delta_rule;
pub mod cuda_fused;
pub mod decoder;
pub mod delta_net;
pub mod device;
pub mod error;
pub mod extract;
pub mod gguf;
pub mod gguf_file;
mod gguf_pretokenize;
pub mod gguf_tokenizer;
pub mod hub;
pub mod memory;
pub mod model;
pub mod moe;
pub mod mxfp4;
pub mod quants;
pub mod short_conv;
pub mod stages;
pub mod states;
pub mod tokenizer;
pub mod transfer;
pub mod weights;

pub use capture::{CaptureSettings, ExpertPooling, NavSource, Pooling};
pub use config::{Architecture, ModelConfig};
pub use device::{DTypeChoice, DeviceChoice};
pub use error::{EngineError, Result};
pub use extract::{BatchProgress, ExtractOptions};
pub use model::{Model, ModelInfo, ModelSource};
pub use states::LanguageStates;
