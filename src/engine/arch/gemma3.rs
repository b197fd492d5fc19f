//! Gemma 3 (text): Gemma 2's norms plus per-head q/k RMSNorm; five local layers for each global
//! one, local layers with their own rotary base and no scaling.

use crate::engine::config::{
    Architecture, HfFields, LayerAttention, ModelConfig, NormLayout, QkNorm, Rope, RopeScaling,
};
use crate::engine::error::Result;

pub fn config(f: &HfFields) -> Result<ModelConfig> {
    let dims = f.dims()?;
    let global_rope = f.rope("full_attention", 1_000_000.0)?;
    let local_rope = if f.json.get("rope_parameters").is_some() {
        f.rope("sliding_attention", 10_000.0)?
    } else {
        Rope {
            theta: f.f64_or("rope_local_base_freq", 10_000.0)?,
            scaling: RopeScaling::None,
        }
    };
    let window = f.opt_usize("sliding_window")?.unwrap_or(4096);
    let sliding = match f.layer_types(dims.num_layers)? {
        Some(types) => types,
        None => {
            let pattern = f.opt_usize("sliding_window_pattern")?.unwrap_or(6).max(1);
            (0..dims.num_layers)
                .map(|i| (i + 1) % pattern != 0)
                .collect()
        }
    };
    let layers = sliding
        .into_iter()
        .map(|is_sliding| {
            if is_sliding {
                LayerAttention {
                    sliding_window: Some(window),
                    rope: local_rope.clone(),
                }
            } else {
                LayerAttention {
                    sliding_window: None,
                    rope: global_rope.clone(),
                }
            }
        })
        .collect();
    let head_dim = dims.head_dim;
    let hidden = dims.hidden_size;
    let mut config = dims.into_config(Architecture::Gemma3, layers);
    super::gemma2::apply_gemma_common(f, &mut config, head_dim, hidden)?;
    config.norm_layout = NormLayout::Sandwich;
    config.qk_norm = QkNorm::PerHead;
    config.attn_logit_softcapping = f.opt_f64("attn_logit_softcapping")?;
    config.final_logit_softcapping = f.opt_f64("final_logit_softcapping")?;
    Ok(config)
}
