//! Llama 2 / 3 / 3.1 / 3.2 (and SmolLM2): RMSNorm, rotary with optional llama3 scaling, GQA,
//! SiLU-gated MLP.

use crate::engine::config::{Activation, Architecture, HfFields, ModelConfig};
use crate::engine::error::Result;

pub fn config(f: &HfFields) -> Result<ModelConfig> {
    super::reject_mlp_bias(f)?;
    let dims = f.dims()?;
    let layers = super::uniform_layers(dims.num_layers, None, f.rope("full_attention", 10_000.0)?);
    let mut config = dims.into_config(Architecture::Llama, layers);
    config.tie_word_embeddings = f.bool_or("tie_word_embeddings", false)?;
    super::attention_bias(f, &mut config)?;
    config.activation = f.activation(&["hidden_act"], Activation::Silu)?;
    config.bos_token_id = f.bos_token_id();
    Ok(config)
}
