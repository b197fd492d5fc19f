//! Nemotron (NVIDIA's Nemotron-4 and Minitron, e.g. Nemotron-4-Mini-Hindi): Llama's names with
//! "1p" LayerNorms (`x̂·(1 + w) + b`), rotary on half of each head, optional biases, and a
//! non-gated MLP `down(relu(up(h))²)`.

use crate::engine::config::{Activation, Architecture, HfFields, ModelConfig};
use crate::engine::error::Result;

pub fn config(f: &HfFields) -> Result<ModelConfig> {
    let mut dims = f.dims()?;
    dims.rms_norm_eps = f.f64_or("norm_eps", 1e-5)?;
    let partial_rotary = f.partial_rotary(dims.head_dim, 0.5)?;
    let layers = super::uniform_layers(dims.num_layers, None, f.rope("full_attention", 10_000.0)?);
    let mut config = dims.into_config(Architecture::Nemotron, layers);
    config.partial_rotary = partial_rotary;
    config.tie_word_embeddings = f.bool_or("tie_word_embeddings", false)?;
    super::attention_and_mlp_bias(f, &mut config, false)?;
    family_traits(&mut config);
    config.activation = f.activation(&["hidden_act"], Activation::Relu2)?;
    config.bos_token_id = f.bos_token_id();
    Ok(config)
}

/// What makes a Nemotron model, from `config.json` or GGUF alike.
pub(crate) fn family_traits(config: &mut ModelConfig) {
    config.norm_centered = true;
    config.norm_bias = true;
    config.norm_plus_one = true;
    config.mlp_gated = false;
    config.activation = Activation::Relu2;
}
