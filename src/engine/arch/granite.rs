//! Granite (3.x, dense and MoE): Llama with four multipliers — on the embeddings, as the
//! attention scale, on each sub-layer's output before the residual add, and dividing the
//! logits. Granite MoE (3.0/3.1 1B-A400M, 3B-A800M) puts a mixture of gated SiLU experts in
//! every layer's MLP (see `engine::moe`), the chosen experts' weights a softmax over their
//! logits. Granite SWA ("granite-swash") slides a window over most layers, gives every head a
//! learned sink, and each layer its own rotary base (0: none).

use crate::engine::config::{
    Activation, Architecture, HfFields, LayerAttention, LayerMixer, ModelConfig, Rope,
};
use crate::engine::error::{EngineError, Result};

pub fn config(f: &HfFields) -> Result<ModelConfig> {
    family_config(f, Architecture::Granite, true)
}

pub fn config_moe(f: &HfFields) -> Result<ModelConfig> {
    let mut config = family_config(f, Architecture::GraniteMoe, false)?;
    config.experts = Some(super::mixtral::top_k_experts(f)?);
    Ok(config)
}

/// Granite SWA: the window (128 where the config says nothing) on the sliding layers, every
/// fourth from layer 0 full unless `layer_types` says otherwise; `layer_rope_theta` a base per
/// layer, 0 for no rotary; a sink per head, as gpt-oss' (transformers scales attention's output
/// by σ(logsumexp − sink), which is the same as a softmax with one more key and no value).
pub fn config_swa(f: &HfFields) -> Result<ModelConfig> {
    let mut config = family_config(f, Architecture::GraniteSwa, true)?;
    let n = config.num_layers;
    let window = match f.json.get("sliding_window") {
        None => Some(128),
        Some(_) => f.opt_usize("sliding_window")?,
    };
    let sliding = match f.layer_types(n)? {
        Some(sliding) => sliding,
        None => (0..n).map(|i| i % 4 != 0).collect(),
    };
    let rope = f.rope("full_attention", 10_000.0)?;
    let thetas = match f
        .json
        .get("layer_rope_theta")
        .and_then(serde_json::Value::as_array)
    {
        None => vec![rope.theta; n],
        Some(list) => {
            let thetas = list
                .iter()
                .map(serde_json::Value::as_f64)
                .collect::<Option<Vec<_>>>()
                .filter(|thetas| thetas.len() == n && thetas.iter().all(|t| *t >= 0.0));
            thetas.ok_or_else(|| {
                EngineError::config(
                    f.path,
                    format!("\"layer_rope_theta\" must hold {n} numbers ≥ 0, one per layer"),
                )
            })?
        }
    };
    config.layers = sliding
        .iter()
        .zip(&thetas)
        .map(|(&slides, &theta)| LayerAttention {
            sliding_window: if slides { window } else { None },
            rope: if theta == 0.0 {
                Rope::no_rotation()
            } else {
                Rope {
                    theta,
                    scaling: rope.scaling.clone(),
                }
            },
            mixer: LayerMixer::Attention,
            heads: None,
        })
        .collect();
    config.attention_sinks = true;
    Ok(config)
}

/// What both read alike; transformers' default for `tie_word_embeddings` differs (dense: tied).
fn family_config(f: &HfFields, architecture: Architecture, tied: bool) -> Result<ModelConfig> {
    super::reject_mlp_bias(f)?;
    let dims = f.dims()?;
    let layers = super::uniform_layers(dims.num_layers, None, f.rope("full_attention", 10_000.0)?);
    let mut config = dims.into_config(architecture, layers);
    config.tie_word_embeddings = f.bool_or("tie_word_embeddings", tied)?;
    super::attention_bias(f, &mut config)?;
    config.activation = f.activation(&["hidden_act"], Activation::Silu)?;
    config.embedding_scale = Some(f.f64_or("embedding_multiplier", 1.0)?);
    config.attention_scale = f.f64_or("attention_multiplier", config.attention_scale)?;
    config.residual_scale = Some(f.f64_or("residual_multiplier", 1.0)?);
    config.logit_scale = Some(1.0 / f.f64_or("logits_scaling", 1.0)?);
    config.bos_token_id = f.bos_token_id();
    Ok(config)
}
