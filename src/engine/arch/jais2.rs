//! Jais 2 (Inception's Arabic–English models): Llama's names and rotary attention with
//! LayerNorms (weight and bias), biases on every projection by default, and a non-gated MLP
//! `down(relu(up(h))²)`.

use crate::engine::config::{Architecture, HfFields, ModelConfig};
use crate::engine::error::Result;

pub fn config(f: &HfFields) -> Result<ModelConfig> {
    super::relu2_layer_norm_config(f, Architecture::Jais2, "layer_norm_eps", true)
}

/// What makes a Jais 2 model, from `config.json` or GGUF alike.
pub(crate) fn family_traits(config: &mut ModelConfig) {
    super::relu2_layer_norm_traits(config);
}
