//! OLMo (1, e.g. OLMo-1.7-7B, one of the MEXA paper's models): Llama's attention and MLP with
//! LayerNorms that have neither weight nor bias, and q, k and v optionally clamped to
//! `[-clip_qkv, clip_qkv]` right after their projections.

use crate::engine::config::{Activation, Architecture, HfFields, ModelConfig};
use crate::engine::error::{EngineError, Result};

pub fn config(f: &HfFields) -> Result<ModelConfig> {
    super::reject_mlp_bias(f)?;
    let mut dims = f.dims()?;
    // transformers' OlmoLayerNorm has its eps fixed at 1e-5.
    dims.rms_norm_eps = 1e-5;
    let layers = super::uniform_layers(dims.num_layers, None, f.rope("full_attention", 10_000.0)?);
    let mut config = dims.into_config(Architecture::Olmo, layers);
    config.tie_word_embeddings = f.bool_or("tie_word_embeddings", false)?;
    super::attention_bias(f, &mut config)?;
    config.activation = f.activation(&["hidden_act"], Activation::Silu)?;
    family_traits(&mut config);
    config.qkv_clip = match f.json.get("clip_qkv") {
        None | Some(serde_json::Value::Null) => None,
        Some(value) => match value.as_f64() {
            Some(clip) if clip > 0.0 => Some(clip),
            _ => {
                return Err(EngineError::config(
                    f.path,
                    format!("\"clip_qkv\" is {value}; it must be a positive number or null"),
                ));
            }
        },
    };
    config.bos_token_id = f.bos_token_id();
    Ok(config)
}

/// What makes an OLMo (1) model, from `config.json` or GGUF alike.
pub(crate) fn family_traits(config: &mut ModelConfig) {
    config.norm_centered = true;
    config.norm_unweighted = true;
}
