//! Mistral: Llama with an optional sliding attention window on every layer.

use crate::engine::config::{Activation, Architecture, HfFields, ModelConfig};
use crate::engine::error::Result;

pub fn config(f: &HfFields) -> Result<ModelConfig> {
    super::reject_mlp_bias(f)?;
    let dims = f.dims()?;
    let window = f.opt_usize("sliding_window")?;
    let layers =
        super::uniform_layers(dims.num_layers, window, f.rope("full_attention", 10_000.0)?);
    let mut config = dims.into_config(Architecture::Mistral, layers);
    config.tie_word_embeddings = f.bool_or("tie_word_embeddings", false)?;
    config.activation = f.activation(&["hidden_act"], Activation::Silu)?;
    config.bos_token_id = f.bos_token_id();
    Ok(config)
}
