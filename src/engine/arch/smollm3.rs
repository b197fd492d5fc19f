//! SmolLM3: Llama with NoPE layers (no rotary embedding on every `no_rope_layer_interval`-th
//! layer, or as `no_rope_layers` lists them) and optional sliding windows.

use crate::engine::config::{
    Activation, Architecture, HfFields, LayerAttention, LayerMixer, ModelConfig, Rope,
};
use crate::engine::error::{EngineError, Result};

pub fn config(f: &HfFields) -> Result<ModelConfig> {
    super::reject_mlp_bias(f)?;
    let dims = f.dims()?;
    let n = dims.num_layers;
    let rope = f.rope("full_attention", 2_000_000.0)?;
    let uses_rope = match f.json.get("no_rope_layers").and_then(|v| v.as_array()) {
        Some(list) => {
            if list.len() != n {
                return Err(EngineError::config(
                    f.path,
                    format!(
                        "\"no_rope_layers\" has {} entries for {n} layers",
                        list.len()
                    ),
                ));
            }
            list.iter()
                .map(|v| match v.as_u64() {
                    Some(flag @ (0 | 1)) => Ok(flag == 1),
                    _ => Err(EngineError::config(
                        f.path,
                        format!("\"no_rope_layers\" holds {v}; it lists 1 (rotary) or 0 (none)"),
                    )),
                })
                .collect::<Result<Vec<_>>>()?
        }
        None => {
            let interval = f.opt_usize("no_rope_layer_interval")?.unwrap_or(4).max(1);
            (0..n).map(|i| (i + 1) % interval != 0).collect()
        }
    };
    let window = f
        .bool_or("use_sliding_window", false)?
        .then(|| f.opt_usize("sliding_window"))
        .transpose()?
        .flatten();
    let sliding = match f.layer_types(n)? {
        Some(types) => types,
        None => uses_rope.iter().map(|rope| !rope).collect(),
    };
    let layers = uses_rope
        .into_iter()
        .zip(sliding)
        .map(|(rotary, is_sliding)| LayerAttention {
            sliding_window: if is_sliding { window } else { None },
            rope: if rotary {
                rope.clone()
            } else {
                Rope::no_rotation()
            },
            mixer: LayerMixer::Attention,
            heads: None,
        })
        .collect();
    let mut config = dims.into_config(Architecture::SmolLm3, layers);
    config.tie_word_embeddings = f.bool_or("tie_word_embeddings", true)?;
    super::attention_bias(f, &mut config)?;
    config.activation = f.activation(&["hidden_act"], Activation::Silu)?;
    config.bos_token_id = f.bos_token_id();
    Ok(config)
}
