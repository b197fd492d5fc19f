//! Helium (Kyutai's models for the 24 official EU languages): Llama with rotary on
//! neighbouring pairs (as Cohere) and q/k/v biases where `attention_bias` (never on the output
//! projection).

use crate::engine::config::{Activation, Architecture, HfFields, ModelConfig};
use crate::engine::error::Result;

pub fn config(f: &HfFields) -> Result<ModelConfig> {
    super::reject_mlp_bias(f)?;
    let dims = f.dims()?;
    let layers = super::uniform_layers(dims.num_layers, None, f.rope("full_attention", 10_000.0)?);
    let mut config = dims.into_config(Architecture::Helium, layers);
    config.tie_word_embeddings = f.bool_or("tie_word_embeddings", false)?;
    config.qkv_bias = f.bool_or("attention_bias", false)?;
    config.rope_interleaved = true;
    config.activation = f.activation(&["hidden_act"], Activation::Silu)?;
    config.bos_token_id = f.bos_token_id();
    Ok(config)
}
