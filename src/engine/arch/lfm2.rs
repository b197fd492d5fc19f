//! LFM2 and LFM3 (Liquid AI's on-device models): most layers mix tokens with a short convolution
//! (see `engine::short_conv`), the others with attention with per-head q/k norms; a gated SiLU
//! MLP; names of their own ([`NAMES`], [`NAMES3`]), the final norm among them
//! (`embedding_norm`). LFM2's MLP width follows Liquid's block arithmetic; LFM3 adds sliding
//! attention layers, "proportional" rotary on the full ones, a sigmoid gate per head, and norms
//! after each part as before it.

use crate::engine::config::{
    Activation, Architecture, HfFields, LayerAttention, LayerMixer, ModelConfig, NormLayout,
    QkNorm, ShortConvolution,
};
use crate::engine::error::{EngineError, Result};
use crate::engine::weights::{NameTable, Stored};

pub fn config(f: &HfFields) -> Result<ModelConfig> {
    if f.bool_or("conv_bias", false)? {
        return Err(EngineError::config(
            f.path,
            "short convolutions with biases (\"conv_bias\": true) are not supported",
        ));
    }
    // Older configs name the MLP's width `block_ff_dim`.
    let width_key = if f.json.get("block_ff_dim").is_some() {
        "block_ff_dim"
    } else {
        "intermediate_size"
    };
    let mut dims = f.dims_with_mlp(width_key)?;
    dims.intermediate_size = mlp_width(f, dims.intermediate_size)?;
    dims.rms_norm_eps = f.f64_or("norm_eps", 1e-5)?;
    let rope = f.rope("full_attention", 1_000_000.0)?;
    let layers = super::mixed_layers(&mixers(f, dims.num_layers)?, &rope);
    let mut config = dims.into_config(Architecture::Lfm2, layers);
    config.tie_word_embeddings = match f.json.get("tie_embedding") {
        Some(_) => f.bool_or("tie_embedding", true)?,
        None => f.bool_or("tie_word_embeddings", true)?,
    };
    config.qk_norm = QkNorm::PerHead;
    config.activation = Activation::Silu;
    config.short_conv = Some(ShortConvolution {
        taps: f.opt_usize("conv_L_cache")?.unwrap_or(3),
    });
    config.bos_token_id = f.bos_token_id();
    Ok(config)
}

/// LFM3: `layer_types` of "conv", "sliding_attention" (window `sliding_window`, 256 where
/// unsaid) and "full_attention", each attention kind its own rotary (`rope_parameters` keyed by
/// kind; the full layers' "proportional"); a gate per head; sandwich norms.
pub fn config3(f: &HfFields) -> Result<ModelConfig> {
    if f.bool_or("conv_bias", false)? || f.bool_or("attention_bias", false)? {
        return Err(EngineError::config(
            f.path,
            "biases (\"conv_bias\" or \"attention_bias\": true) are not supported",
        ));
    }
    let mut dims = f.dims()?;
    dims.head_dim = f.opt_usize("head_dim")?.unwrap_or(128);
    dims.rms_norm_eps = f.f64_or("norm_eps", 1e-5)?;
    let window = match f.json.get("sliding_window") {
        None => Some(256),
        Some(_) => f.opt_usize("sliding_window")?,
    };
    let full = f.rope("full_attention", 1_000_000.0)?;
    let sliding = f.rope("sliding_attention", 10_000.0)?;
    let n = dims.num_layers;
    // (mixer, slides)
    let names = [
        ("conv", (LayerMixer::ShortConv, false)),
        ("sliding_attention", (LayerMixer::Attention, true)),
        ("full_attention", (LayerMixer::Attention, false)),
    ];
    let kinds = match super::layer_kinds(f, n, &names)? {
        Some(kinds) => kinds,
        None => (0..n)
            .map(|i| match i % 4 {
                2 => names[2].1,
                0 if i > 0 => names[1].1,
                _ => names[0].1,
            })
            .collect(),
    };
    let layers = kinds
        .into_iter()
        .map(|(mixer, slides)| LayerAttention {
            sliding_window: if slides { window } else { None },
            rope: if slides {
                sliding.clone()
            } else {
                full.clone()
            },
            mixer,
            heads: None,
        })
        .collect();
    let mut config = dims.into_config(Architecture::Lfm3, layers);
    config.tie_word_embeddings = f.bool_or("tie_word_embeddings", true)?;
    config.qk_norm = QkNorm::PerHead;
    config.activation = Activation::Silu;
    if f.bool_or("use_sandwich_norm", true)? {
        config.norm_layout = NormLayout::Sandwich;
    }
    config.attention_head_gate = f.bool_or("use_attention_gate", true)?;
    config.short_conv = Some(ShortConvolution {
        taps: f.opt_usize("conv_L_cache")?.unwrap_or(7),
    });
    config.bos_token_id = f.bos_token_id();
    Ok(config)
}

/// transformers' `Lfm2MLP`: with `block_auto_adjust_ff_dim` (the default) two thirds of the
/// configured width, times `block_ffn_dim_multiplier` (1 where unsaid) and rounded up to a
/// multiple of `block_multiple_of` (256) — the rounding only where a multiplier is set.
fn mlp_width(f: &HfFields, configured: usize) -> Result<usize> {
    if !f.bool_or("block_auto_adjust_ff_dim", true)? {
        return Ok(configured);
    }
    let width = 2 * configured / 3;
    let multiplier = match f.json.get("block_ffn_dim_multiplier") {
        None => Some(1.0),
        Some(_) => f.opt_f64("block_ffn_dim_multiplier")?,
    };
    let Some(multiplier) = multiplier else {
        return Ok(width);
    };
    let width = (multiplier * width as f64) as usize;
    let multiple = f.opt_usize("block_multiple_of")?.unwrap_or(256).max(1);
    Ok(width.div_ceil(multiple) * multiple)
}

/// Each layer's mixer: `layer_types` ("conv" / "full_attention"), else attention in
/// `full_attn_idxs` and convolutions elsewhere (every layer attends where neither is given).
fn mixers(f: &HfFields, num_layers: usize) -> Result<Vec<LayerMixer>> {
    let names = [
        ("conv", LayerMixer::ShortConv),
        ("full_attention", LayerMixer::Attention),
    ];
    if let Some(mixers) = super::layer_kinds(f, num_layers, &names)? {
        return Ok(mixers);
    }
    let Some(list) = f
        .json
        .get("full_attn_idxs")
        .and_then(serde_json::Value::as_array)
    else {
        return Ok(vec![LayerMixer::Attention; num_layers]);
    };
    let attention = list
        .iter()
        .map(|v| v.as_u64().map(|i| i as usize).filter(|&i| i < num_layers))
        .collect::<Option<Vec<_>>>()
        .ok_or_else(|| {
            EngineError::config(
                f.path,
                format!("\"full_attn_idxs\" must list layers below {num_layers}"),
            )
        })?;
    Ok((0..num_layers)
        .map(|i| {
            if attention.contains(&i) {
                LayerMixer::Attention
            } else {
                LayerMixer::ShortConv
            }
        })
        .collect())
}

/// LFM2's names for what the decoder asks in Llama's.
pub const NAMES: NameTable = NameTable {
    family: "LFM2",
    prefix: "model.",
    fixed: &[
        ("model.embed_tokens.weight", "embed_tokens.weight"),
        ("model.norm.weight", "embedding_norm.weight"),
    ],
    lm_head: "lm_head.weight",
    layers: "layers",
    norms: &[
        ("input_layernorm", "operator_norm"),
        ("post_attention_layernorm", "ffn_norm"),
        ("self_attn.q_norm", "self_attn.q_layernorm"),
        ("self_attn.k_norm", "self_attn.k_layernorm"),
    ],
    parts: &[
        ("self_attn.q_proj", "self_attn.q_proj", Stored::AsAsked),
        ("self_attn.k_proj", "self_attn.k_proj", Stored::AsAsked),
        ("self_attn.v_proj", "self_attn.v_proj", Stored::AsAsked),
        ("self_attn.o_proj", "self_attn.out_proj", Stored::AsAsked),
        ("mlp.gate_proj", "feed_forward.w1", Stored::AsAsked),
        ("mlp.up_proj", "feed_forward.w3", Stored::AsAsked),
        ("mlp.down_proj", "feed_forward.w2", Stored::AsAsked),
        ("conv.in_proj", "conv.in_proj", Stored::AsAsked),
        ("conv.conv", "conv.conv", Stored::AsAsked),
        ("conv.out_proj", "conv.out_proj", Stored::AsAsked),
    ],
};

/// LFM3's: Qwen3's attention names (and the gate's), LFM2's for the rest, and the norms after
/// each part.
pub const NAMES3: NameTable = NameTable {
    family: "LFM3",
    norms: &[
        ("input_layernorm", "operator_norm"),
        ("post_attention_layernorm", "post_operator_norm"),
        ("pre_feedforward_layernorm", "ffn_norm"),
        ("post_feedforward_layernorm", "post_ffn_norm"),
        ("self_attn.q_norm", "self_attn.q_norm"),
        ("self_attn.k_norm", "self_attn.k_norm"),
    ],
    parts: &[
        ("self_attn.q_proj", "self_attn.q_proj", Stored::AsAsked),
        ("self_attn.k_proj", "self_attn.k_proj", Stored::AsAsked),
        ("self_attn.v_proj", "self_attn.v_proj", Stored::AsAsked),
        ("self_attn.o_proj", "self_attn.o_proj", Stored::AsAsked),
        (
            "self_attn.gate_proj",
            "self_attn.gate_proj",
            Stored::AsAsked,
        ),
        ("mlp.gate_proj", "feed_forward.w1", Stored::AsAsked),
        ("mlp.up_proj", "feed_forward.w3", Stored::AsAsked),
        ("mlp.down_proj", "feed_forward.w2", Stored::AsAsked),
        ("conv.in_proj", "conv.in_proj", Stored::AsAsked),
        ("conv.conv", "conv.conv", Stored::AsAsked),
        ("conv.out_proj", "conv.out_proj", Stored::AsAsked),
    ],
    ..NAMES
};

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::engine::config::{LayerMixer, ModelConfig};

    fn config(extra: serde_json::Value) -> Result<ModelConfig, String> {
        let mut json = serde_json::json!({
            "model_type": "lfm2", "hidden_size": 64, "num_hidden_layers": 4,
            "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 100,
        });
        json.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        ModelConfig::from_hf_json(&json, Path::new("config.json")).map_err(|e| e.to_string())
    }

    #[test]
    fn the_mlp_width_follows_the_block_arithmetic() {
        // LFM2-1.2B's: block_ff_dim 12288 → 8192 (already a multiple of 256).
        let c = config(serde_json::json!({ "block_ff_dim": 12288, "full_attn_idxs": [1, 3] }));
        assert_eq!(c.unwrap().intermediate_size, 8192);
        // int(2·1000/3) = 666, × 1.5 = 999, up to 1024.
        let c = config(serde_json::json!({
            "intermediate_size": 1000, "block_ffn_dim_multiplier": 1.5,
        }));
        assert_eq!(c.unwrap().intermediate_size, 1024);
        // No multiplier: no rounding; no adjustment: as configured.
        let c = config(serde_json::json!({
            "intermediate_size": 1000, "block_ffn_dim_multiplier": null,
        }));
        assert_eq!(c.unwrap().intermediate_size, 666);
        let c = config(serde_json::json!({
            "intermediate_size": 1000, "block_auto_adjust_ff_dim": false,
        }));
        assert_eq!(c.unwrap().intermediate_size, 1000);
    }

    #[test]
    fn layer_kinds_come_from_either_list_and_biases_are_refused() {
        let c = config(serde_json::json!({ "intermediate_size": 96, "full_attn_idxs": [1, 3] }))
            .unwrap();
        let convs: Vec<bool> = c
            .layers
            .iter()
            .map(|l| l.mixer == LayerMixer::ShortConv)
            .collect();
        assert_eq!(convs, [true, false, true, false]);
        let c = config(serde_json::json!({
            "intermediate_size": 96, "full_attn_idxs": [7],
        }));
        assert!(c.unwrap_err().contains("below 4"));
        let c = config(serde_json::json!({ "intermediate_size": 96, "conv_bias": true }));
        assert!(c.unwrap_err().contains("conv_bias"));
    }
}
