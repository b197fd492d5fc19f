//! Qwen3: Qwen2 without q/k/v biases (unless `attention_bias`) and with per-head RMSNorm on q and k.

use crate::engine::config::{
    Activation, Architecture, HfFields, LayerAttention, ModelConfig, QkNorm,
};
use crate::engine::error::Result;

pub fn config(f: &HfFields) -> Result<ModelConfig> {
    let dims = f.dims()?;
    let rope = f.rope("full_attention", 10_000.0)?;
    let window = f.opt_usize("sliding_window")?;
    let sliding = super::qwen2::sliding_layers(f, dims.num_layers)?;
    let layers = LayerAttention::per_layer(&sliding, window, &rope, &rope);
    let mut config = dims.into_config(Architecture::Qwen3, layers);
    config.tie_word_embeddings = f.bool_or("tie_word_embeddings", false)?;
    super::attention_bias(f, &mut config)?;
    config.qk_norm = QkNorm::PerHead;
    config.activation = f.activation(&["hidden_act"], Activation::Silu)?;
    config.bos_token_id = f.bos_token_id();
    Ok(config)
}
