//! One file per architecture: each reads its `config.json` flavour into a [`ModelConfig`].
//!
//! The forward pass itself is shared (`engine::decoder`); these files say where a family
//! differs from Llama.
//!
//! [`ModelConfig`]: super::config::ModelConfig

pub mod bloom;
pub mod cohere;
pub mod gemma;
pub mod gemma2;
pub mod gemma3;
pub mod gpt2;
pub mod granite;
pub mod llama;
pub mod mistral;
pub mod olmo2;
pub mod phi3;
pub mod qwen2;
pub mod qwen3;
pub mod smollm3;

use super::config::{HfFields, LayerAttention, Rope};
use super::error::{EngineError, Result};

/// The same attention settings on every layer.
fn uniform_layers(n: usize, sliding_window: Option<usize>, rope: Rope) -> Vec<LayerAttention> {
    vec![
        LayerAttention {
            sliding_window,
            rope
        };
        n
    ]
}

/// Biased MLPs are not part of any supported family; refuse rather than ignore weights.
fn reject_mlp_bias(fields: &HfFields) -> Result<()> {
    if fields.bool_or("mlp_bias", false)? {
        return Err(EngineError::config(
            fields.path,
            "\"mlp_bias\": true is not supported",
        ));
    }
    Ok(())
}
