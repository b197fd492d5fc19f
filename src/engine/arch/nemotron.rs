//! Nemotron (NVIDIA's Nemotron-4 and Minitron, e.g. Nemotron-4-Mini-Hindi): Llama's names with
//! "1p" LayerNorms (`x̂·(1 + w) + b`), rotary on half of each head, optional biases, and a
//! non-gated MLP `down(relu(up(h))²)`.

use crate::engine::config::{Architecture, HfFields, ModelConfig};
use crate::engine::error::Result;

pub fn config(f: &HfFields) -> Result<ModelConfig> {
    let mut config = super::relu2_layer_norm_config(f, Architecture::Nemotron, "norm_eps", false)?;
    config.partial_rotary = f.partial_rotary(config.head_dim, 0.5)?;
    config.norm_plus_one = true;
    Ok(config)
}

/// What makes a Nemotron model, from `config.json` or GGUF alike.
pub(crate) fn family_traits(config: &mut ModelConfig) {
    super::relu2_layer_norm_traits(config);
    config.norm_plus_one = true;
}
