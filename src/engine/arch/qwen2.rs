//! Qwen2 / Qwen2.5: Llama with biases on q, k and v, and optional sliding layers.

use crate::engine::config::{Activation, Architecture, HfFields, LayerAttention, ModelConfig};
use crate::engine::error::Result;

pub fn config(f: &HfFields) -> Result<ModelConfig> {
    let dims = f.dims()?;
    let rope = f.rope("full_attention", 10_000.0)?;
    let sliding = sliding_layers(f, dims.num_layers)?;
    let window = f.opt_usize("sliding_window")?;
    let layers = LayerAttention::per_layer(&sliding, window, &rope, &rope);
    let mut config = dims.into_config(Architecture::Qwen2, layers);
    config.tie_word_embeddings = f.bool_or("tie_word_embeddings", false)?;
    config.qkv_bias = true;
    config.activation = f.activation(&["hidden_act"], Activation::Silu)?;
    config.bos_token_id = f.bos_token_id();
    Ok(config)
}

/// Which layers use the sliding window: `layer_types` when given, else the older
/// `use_sliding_window` + `max_window_layers` rule of transformers.
pub(super) fn sliding_layers(f: &HfFields, num_layers: usize) -> Result<Vec<bool>> {
    if let Some(types) = f.layer_types(num_layers)? {
        return Ok(types);
    }
    let enabled = f.bool_or("use_sliding_window", false)?;
    let first = f.opt_usize("max_window_layers")?.unwrap_or(num_layers);
    Ok((0..num_layers).map(|i| enabled && i >= first).collect())
}
