//! Phi-3 / Phi-3.5 (text): Llama with q, k, v stored as one `qkv_proj` and gate, up as one
//! `gate_up_proj`, an optional sliding window on every layer, and LongRoPE in the long-context
//! variants. Phi-4-mini turns only part of each head (`partial_rotary_factor`).

use crate::engine::config::{Activation, Architecture, HfFields, ModelConfig};
use crate::engine::error::Result;

pub fn config(f: &HfFields) -> Result<ModelConfig> {
    let dims = f.dims()?;
    let partial_rotary = f.partial_rotary(dims.head_dim, 1.0)?;
    let window = f.opt_usize("sliding_window")?;
    let layers =
        super::uniform_layers(dims.num_layers, window, f.rope("full_attention", 10_000.0)?);
    let mut config = dims.into_config(Architecture::Phi3, layers);
    config.tie_word_embeddings = f.bool_or("tie_word_embeddings", false)?;
    config.fused_projections = true;
    config.partial_rotary = partial_rotary;
    config.activation = f.activation(&["hidden_act"], Activation::Silu)?;
    config.bos_token_id = f.bos_token_id();
    Ok(config)
}
