//! Gemma (1): Llama's layout with Gemma's `(1 + w)` RMSNorms, GELU-tanh gate and embeddings
//! scaled by sqrt(hidden).

use crate::engine::config::{Activation, Architecture, HfFields, ModelConfig};
use crate::engine::error::Result;

pub fn config(f: &HfFields) -> Result<ModelConfig> {
    let dims = f.dims()?;
    let layers = super::uniform_layers(dims.num_layers, None, f.rope("full_attention", 10_000.0)?);
    let head_dim = dims.head_dim;
    let hidden = dims.hidden_size;
    let mut config = dims.into_config(Architecture::Gemma, layers);
    super::gemma2::apply_gemma_common(f, &mut config, head_dim, hidden)?;
    // The released configs say "gelu", which transformers has always run as the tanh GELU.
    if config.activation == Activation::Gelu {
        config.activation = Activation::GeluTanh;
    }
    Ok(config)
}
