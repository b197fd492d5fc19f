//! Jais 2 (Inception's Arabic–English models): Llama's names and rotary attention with
//! LayerNorms (weight and bias), biases on every projection by default, and a non-gated MLP
//! `down(relu(up(h))²)`.

use crate::engine::config::{Activation, Architecture, HfFields, ModelConfig};
use crate::engine::error::Result;

pub fn config(f: &HfFields) -> Result<ModelConfig> {
    let mut dims = f.dims()?;
    dims.rms_norm_eps = f.f64_or("layer_norm_eps", 1e-5)?;
    let layers = super::uniform_layers(dims.num_layers, None, f.rope("full_attention", 10_000.0)?);
    let mut config = dims.into_config(Architecture::Jais2, layers);
    config.tie_word_embeddings = f.bool_or("tie_word_embeddings", false)?;
    super::attention_and_mlp_bias(f, &mut config, true)?;
    family_traits(&mut config);
    config.activation = f.activation(&["hidden_act"], Activation::Relu2)?;
    config.bos_token_id = f.bos_token_id();
    Ok(config)
}

/// What makes a Jais 2 model, from `config.json` or GGUF alike.
pub(crate) fn family_traits(config: &mut ModelConfig) {
    config.norm_centered = true;
    config.norm_bias = true;
    config.mlp_gated = false;
    config.activation = Activation::Relu2;
}
