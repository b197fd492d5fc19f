//! Arcee (AFM-4.5B): Llama's attention and norms with a non-gated ReLU² MLP
//! `down(relu(up(h))²)`.

use crate::engine::config::{Activation, Architecture, HfFields, ModelConfig};
use crate::engine::error::Result;

pub fn config(f: &HfFields) -> Result<ModelConfig> {
    super::reject_mlp_bias(f)?;
    let dims = f.dims()?;
    let layers = super::uniform_layers(dims.num_layers, None, f.rope("full_attention", 10_000.0)?);
    let mut config = dims.into_config(Architecture::Arcee, layers);
    config.tie_word_embeddings = f.bool_or("tie_word_embeddings", false)?;
    super::attention_bias(f, &mut config)?;
    config.mlp_gated = false;
    config.activation = f.activation(&["hidden_act"], Activation::Relu2)?;
    config.bos_token_id = f.bos_token_id();
    Ok(config)
}
