//! Qwen3.5 and Qwen3.5-MoE: most layers mix tokens with a Gated DeltaNet (linear attention with a recurrent
//! state, see `engine::delta_net`), every `full_attention_interval`-th (4) with full attention
//! whose output is gated (`q_proj` gives a gate beside each head's queries); per-head q/k norms,
//! rotary on a quarter of each head, every norm `1 + w`. Released as a vision wrapper
//! (`qwen3_5` around `qwen3_5_text`), whose language model is read here.

use crate::engine::config::{
    Activation, Architecture, Dims, HfFields, LayerMixer, LinearAttention, ModelConfig, QkNorm,
};
use crate::engine::error::Result;

pub fn config(f: &HfFields) -> Result<ModelConfig> {
    text_model(f, f.dims()?, Architecture::Qwen35)
}

/// Qwen3.5-MoE (`qwen3_5_moe` around `qwen3_5_moe_text`): the same mixers, and in every layer
/// a mixture as Qwen2-MoE's (a shared expert scaled by `sigmoid(w·h)`), its top-k weights
/// always renormalized.
pub fn config_moe(f: &HfFields) -> Result<ModelConfig> {
    let dims = f.dims_with_mlp("moe_intermediate_size")?;
    let mut config = text_model(f, dims, Architecture::Qwen35Moe)?;
    let shared = f.usize("shared_expert_intermediate_size")?;
    super::qwen3_moe::qwen_experts(f, &mut config, Architecture::Qwen35Moe, Some(shared))?;
    if let Some(experts) = &mut config.experts {
        experts.normalize_top_k = true;
    }
    Ok(config)
}

fn text_model(f: &HfFields, mut dims: Dims, architecture: Architecture) -> Result<ModelConfig> {
    // transformers' default, not hidden / heads.
    dims.head_dim = f.opt_usize("head_dim")?.unwrap_or(256);
    let rope = f.rope("full_attention", 10_000.0)?;
    let layers = super::mixed_layers(&mixers(f, dims.num_layers)?, &rope);
    let partial_rotary = f.partial_rotary(dims.head_dim, 0.25)?;
    let mut config = dims.into_config(architecture, layers);
    config.partial_rotary = partial_rotary;
    config.tie_word_embeddings = f.bool_or("tie_word_embeddings", false)?;
    super::attention_bias(f, &mut config)?;
    family_traits(
        &mut config,
        LinearAttention {
            conv_kernel: f.opt_usize("linear_conv_kernel_dim")?.unwrap_or(4),
            key_heads: f.opt_usize("linear_num_key_heads")?.unwrap_or(16),
            key_head_dim: f.opt_usize("linear_key_head_dim")?.unwrap_or(128),
            value_heads: f.opt_usize("linear_num_value_heads")?.unwrap_or(32),
            value_head_dim: f.opt_usize("linear_value_head_dim")?.unwrap_or(128),
            negative_eigenvalues: false,
            output_norm_eps: None,
            separate_projections: false,
        },
    );
    config.activation = f.activation(&["hidden_act"], Activation::Silu)?;
    config.bos_token_id = f.bos_token_id();
    Ok(config)
}

/// What every Qwen3.5 has, read from `config.json` or from GGUF metadata: per-head q/k norms,
/// norms of `1 + w`, attention's output gate, and its Gated DeltaNet's sizes.
pub(crate) fn family_traits(config: &mut ModelConfig, linear_attention: LinearAttention) {
    config.qk_norm = QkNorm::PerHead;
    config.norm_plus_one = true;
    config.attention_output_gate = true;
    config.linear_attention = Some(linear_attention);
}

/// Each layer's mixer: `layer_types`, else linear attention but in every
/// `full_attention_interval`-th (4).
fn mixers(f: &HfFields, num_layers: usize) -> Result<Vec<LayerMixer>> {
    if let Some(mixers) = super::layer_kinds(f, num_layers, super::LINEAR_OR_FULL)? {
        return Ok(mixers);
    }
    let interval = f.opt_usize("full_attention_interval")?.unwrap_or(4).max(1);
    Ok((0..num_layers)
        .map(|i| {
            if (i + 1) % interval == 0 {
                LayerMixer::Attention
            } else {
                LayerMixer::LinearAttention
            }
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use crate::engine::config::{Architecture, LayerMixer, ModelConfig};

    fn text(extra: serde_json::Value) -> serde_json::Value {
        let mut json = serde_json::json!({
            "model_type": "qwen3_5_text", "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 8, "num_attention_heads": 4, "num_key_value_heads": 2,
            "head_dim": 16, "vocab_size": 100,
        });
        json.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        json
    }

    #[test]
    fn three_linear_layers_in_four_by_default_and_the_wrapper_is_read() {
        let wrapper = serde_json::json!({ "model_type": "qwen3_5", "text_config": text(serde_json::json!({})) });
        let config = ModelConfig::from_hf_json(&wrapper, Path::new("config.json")).unwrap();
        assert_eq!(config.architecture, Architecture::Qwen35);
        let linear: Vec<bool> = config
            .layers
            .iter()
            .map(|l| l.mixer == LayerMixer::LinearAttention)
            .collect();
        assert_eq!(linear, [true, true, true, false, true, true, true, false]);
        assert_eq!(config.partial_rotary, Some(4));
        let linear = config.linear_attention.unwrap();
        assert_eq!((linear.key_heads, linear.value_heads), (16, 32));
        assert_eq!(linear.conv_dim(), 2 * 16 * 128 + 32 * 128);
    }

    #[test]
    fn layer_types_are_checked() {
        let json = text(serde_json::json!({ "layer_types": vec!["linear_attention"; 8] }));
        let config = ModelConfig::from_hf_json(&json, Path::new("config.json")).unwrap();
        assert!(
            config
                .layers
                .iter()
                .all(|l| l.mixer == LayerMixer::LinearAttention)
        );
        let bad = text(serde_json::json!({ "layer_types": vec!["mamba"; 8] }));
        let err = ModelConfig::from_hf_json(&bad, Path::new("config.json")).unwrap_err();
        assert!(err.to_string().contains("mamba"), "{err}");
        let short = text(serde_json::json!({ "layer_types": vec!["full_attention"; 3] }));
        let err = ModelConfig::from_hf_json(&short, Path::new("config.json")).unwrap_err();
        assert!(err.to_string().contains("3 entries for 8 layers"), "{err}");
        let ragged = text(serde_json::json!({
            "linear_num_key_heads": 3, "linear_num_value_heads": 4,
        }));
        let err = ModelConfig::from_hf_json(&ragged, Path::new("config.json")).unwrap_err();
        assert!(
            err.to_string().contains("multiple of the key heads"),
            "{err}"
        );
    }
}
