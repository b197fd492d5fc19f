//! OLMo 2: Llama's attention and MLP with RMSNorms only on their outputs (before each residual
//! add, none before), and one RMSNorm over all query heads (and one over all key heads).
//! OLMo 3: the same with sliding-window layers (three of four), each kind with its own rotary
//! settings (YaRN on the global ones in the long-context checkpoints).
//! OLMo Hybrid: OLMo 3's attention in every fourth layer, Gated DeltaNet linear attention (see
//! `engine::delta_net`) with its norms before each part in the others.

use crate::engine::config::{
    Activation, Architecture, HfFields, LayerAttention, LayerMixer, LinearAttention, ModelConfig,
    NormLayout, QkNorm, Rope, RopeScaling,
};
use crate::engine::error::Result;

pub fn config(f: &HfFields) -> Result<ModelConfig> {
    let dims = f.dims()?;
    let layers = super::uniform_layers(dims.num_layers, None, f.rope("full_attention", 10_000.0)?);
    shared(f, dims.into_config(Architecture::Olmo2, layers))
}

pub fn config3(f: &HfFields) -> Result<ModelConfig> {
    let dims = f.dims()?;
    let sliding = f.sliding_or_every(dims.num_layers, 4)?;
    let window = f.opt_usize("sliding_window")?.unwrap_or(4096);
    let global = f.rope("full_attention", 10_000.0)?;
    // Older configs give one `rope_theta` and a `rope_scaling` that transformers applies to the
    // global layers only.
    let local = if f.json.get("rope_parameters").is_some() {
        f.rope("sliding_attention", 10_000.0)?
    } else {
        Rope {
            theta: global.theta,
            scaling: RopeScaling::None,
        }
    };
    let layers = LayerAttention::per_layer(&sliding, Some(window), &local, &global);
    shared(f, dims.into_config(Architecture::Olmo3, layers))
}

/// OLMo Hybrid: `layer_types` of "linear_attention" and "full_attention" (else every fourth
/// full, the last at least); no rotary where the base is null (the released checkpoints), else
/// rotary on the attention layers; the linear dimensions as transformers defaults them from the
/// attention's.
pub fn config_hybrid(f: &HfFields) -> Result<ModelConfig> {
    let dims = f.dims()?;
    let n = dims.num_layers;
    let mixers = match super::layer_kinds(f, n, super::LINEAR_OR_FULL)? {
        Some(mixers) => mixers,
        None => {
            let mut mixers: Vec<LayerMixer> = (0..n)
                .map(|i| {
                    if i % 4 == 3 {
                        LayerMixer::Attention
                    } else {
                        LayerMixer::LinearAttention
                    }
                })
                .collect();
            if !mixers.contains(&LayerMixer::Attention)
                && let Some(last) = mixers.last_mut()
            {
                *last = LayerMixer::Attention;
            }
            mixers
        }
    };
    // A base of null (the released checkpoints') turns rotary off; one left out is
    // transformers' default.
    let null_base = |json: Option<&serde_json::Value>| {
        json.and_then(|j| j.get("rope_theta"))
            .is_some_and(serde_json::Value::is_null)
    };
    let rope = if null_base(f.json.get("rope_parameters")) || null_base(Some(f.json)) {
        Rope::no_rotation()
    } else {
        f.rope("full_attention", 10_000.0)?
    };
    let layers = super::mixed_layers(&mixers, &rope);
    let heads = dims.num_heads;
    let hidden = dims.hidden_size;
    let mut config = shared(f, dims.into_config(Architecture::OlmoHybrid, layers))?;
    let key_heads = f.opt_usize("linear_num_key_heads")?.unwrap_or(heads);
    let key_head_dim = match f.opt_usize("linear_key_head_dim")? {
        Some(d) => d,
        None => (0.75 * hidden as f64 / key_heads.max(1) as f64) as usize,
    };
    config.linear_attention = Some(LinearAttention {
        conv_kernel: f.opt_usize("linear_conv_kernel_dim")?.unwrap_or(4),
        key_heads,
        key_head_dim,
        value_heads: f.opt_usize("linear_num_value_heads")?.unwrap_or(heads),
        value_head_dim: f
            .opt_usize("linear_value_head_dim")?
            .unwrap_or(2 * key_head_dim),
        negative_eigenvalues: f.bool_or("linear_allow_neg_eigval", true)?,
        output_norm_eps: Some(1e-5),
        separate_projections: true,
    });
    config.linear_norm_layout = Some(NormLayout::Pre);
    Ok(config)
}

/// OLMo Hybrid's checkpoints name a layer's first norm `attention_layer_norm` and its second
/// `feedforward_layer_norm` (transformers renames them at load); either name is read.
pub const HYBRID_NORM_NAMES: &[(&str, &str)] = &[
    ("input_layernorm", "attention_layer_norm"),
    ("post_attention_layernorm", "feedforward_layer_norm"),
];

fn shared(f: &HfFields, mut config: ModelConfig) -> Result<ModelConfig> {
    super::reject_mlp_bias(f)?;
    config.tie_word_embeddings = f.bool_or("tie_word_embeddings", false)?;
    super::attention_bias(f, &mut config)?;
    family_traits(&mut config);
    config.activation = f.activation(&["hidden_act"], Activation::Silu)?;
    config.bos_token_id = f.bos_token_id();
    Ok(config)
}

/// What makes an OLMo 2 or 3 model, from `config.json` or GGUF alike.
pub(crate) fn family_traits(config: &mut ModelConfig) {
    config.qk_norm = QkNorm::AllHeads;
    config.norm_layout = NormLayout::Post;
}

#[cfg(test)]
mod hybrid_tests {
    use std::path::Path;

    use crate::engine::config::{LayerMixer, ModelConfig, NormLayout, Rope};

    #[test]
    fn released_hybrid_configs_have_no_rotary_and_default_linear_sizes() {
        // As the released 7B says it: no rope_theta, no layer_types, no linear sizes.
        let json = serde_json::json!({
            "model_type": "olmo_hybrid", "hidden_size": 64, "intermediate_size": 128,
            "num_hidden_layers": 6, "num_attention_heads": 4, "vocab_size": 100,
            "rope_parameters": { "rope_type": "default", "rope_theta": null },
        });
        let config = ModelConfig::from_hf_json(&json, Path::new("config.json")).unwrap();
        let linear: Vec<bool> = config
            .layers
            .iter()
            .map(|l| l.mixer == LayerMixer::LinearAttention)
            .collect();
        assert_eq!(linear, [true, true, true, false, true, true]);
        assert!(config.layers.iter().all(|l| l.rope == Rope::no_rotation()));
        let linear = config.linear_attention.as_ref().unwrap();
        // 0.75 · 64 / 4 = 12 wide keys, values twice that; β doubled; norms before each part.
        assert_eq!(
            (linear.key_heads, linear.key_head_dim, linear.value_head_dim),
            (4, 12, 24)
        );
        assert!(linear.negative_eigenvalues && linear.separate_projections);
        assert_eq!(
            config.norm_layout_of(LayerMixer::LinearAttention),
            NormLayout::Pre
        );
        assert_eq!(
            config.norm_layout_of(LayerMixer::Attention),
            NormLayout::Post
        );
        // A base left out is transformers' default, 10000.
        let mut json = json;
        json.as_object_mut().unwrap().remove("rope_parameters");
        let config = ModelConfig::from_hf_json(&json, Path::new("config.json")).unwrap();
        assert_eq!(config.layers[3].rope.theta, 10_000.0);
        assert_ne!(config.layers[3].rope, Rope::no_rotation());
    }
}
