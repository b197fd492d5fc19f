//! One file per architecture: each reads its `config.json` flavour into a [`ModelConfig`].
//!
//! The forward pass itself is shared (`engine::decoder`); these files say where a family
//! differs from Llama.
//!
//! [`ModelConfig`]: super::config::ModelConfig

pub mod apertus;
pub mod arcee;
pub mod bloom;
pub mod cohere;
pub mod exaone4;
pub mod falcon;
pub mod gemma;
pub mod gemma2;
pub mod gemma3;
pub mod gemma4;
pub mod glm;
pub mod gpt2;
pub mod gpt_neox;
pub mod gpt_oss;
pub mod granite;
pub mod helium;
pub mod jais2;
pub mod lfm2;
pub mod llama;
pub mod mistral;
pub mod mixtral;
pub mod nemotron;
pub mod olmo;
pub mod olmo2;
pub mod olmoe;
pub mod phi3;
pub mod qwen2;
pub mod qwen2_moe;
pub mod qwen3;
pub mod qwen3_5;
pub mod qwen3_moe;
pub mod smollm3;
pub mod stablelm;
pub mod xglm;

use super::config::Activation;
use super::config::{Architecture, Dims, HfFields, LayerAttention, LayerMixer, ModelConfig, Rope};
use super::error::{EngineError, Result};

/// The embeddings and final norm of families that keep Llama's names for them (under the
/// `model.` prefix of their name tables).
pub(crate) const LLAMA_FIXED: &[(&str, &str)] = &[
    ("model.embed_tokens.weight", "embed_tokens.weight"),
    ("model.norm.weight", "norm.weight"),
];

/// The same attention settings on every layer.
fn uniform_layers(n: usize, sliding_window: Option<usize>, rope: Rope) -> Vec<LayerAttention> {
    vec![
        LayerAttention {
            sliding_window,
            rope,
            mixer: LayerMixer::Attention,
            heads: None,
        };
        n
    ]
}

/// Each layer's kind from `layer_types`, by `names` (`(name in the config, kind)`), checked
/// against the layer count; `None` where the config has no list.
pub(crate) fn layer_kinds<T: Copy>(
    f: &HfFields,
    num_layers: usize,
    names: &[(&str, T)],
) -> Result<Option<Vec<T>>> {
    let Some(list) = f
        .json
        .get("layer_types")
        .and_then(serde_json::Value::as_array)
    else {
        return Ok(None);
    };
    if list.len() != num_layers {
        return Err(EngineError::config(
            f.path,
            format!(
                "\"layer_types\" has {} entries for {num_layers} layers",
                list.len()
            ),
        ));
    }
    list.iter()
        .map(|entry| {
            names
                .iter()
                .find(|(name, _)| entry.as_str() == Some(*name))
                .map(|(_, kind)| *kind)
                .ok_or_else(|| {
                    let known: Vec<String> = names
                        .iter()
                        .map(|(name, _)| format!("\"{name}\""))
                        .collect();
                    EngineError::config(
                        f.path,
                        format!(
                            "\"layer_types\" entry {entry} is none of {}",
                            known.join(", ")
                        ),
                    )
                })
        })
        .collect::<Result<Vec<_>>>()
        .map(Some)
}

/// Linear attention or attention, as Qwen3.5 and OLMo Hybrid name them in `layer_types`.
pub(crate) const LINEAR_OR_FULL: &[(&str, LayerMixer)] = &[
    ("linear_attention", LayerMixer::LinearAttention),
    ("full_attention", LayerMixer::Attention),
];

/// One entry per mixer: `rope` on every layer (attention's only reads it), no window.
pub(crate) fn mixed_layers(mixers: &[LayerMixer], rope: &Rope) -> Vec<LayerAttention> {
    mixers
        .iter()
        .map(|&mixer| LayerAttention {
            sliding_window: None,
            rope: rope.clone(),
            mixer,
            heads: None,
        })
        .collect()
}

/// The sizes of a GPT-2-style config, whose keys differ from Llama's (`n_embd`, `n_head`, …):
/// one head count for queries and keys, `d_ff` given or 4 × hidden.
struct LayerNormFamily {
    hidden_size: usize,
    num_heads: usize,
    /// One per query head unless the family says fewer (Falcon).
    num_kv_heads: Option<usize>,
    num_layers: usize,
    intermediate_size: Option<usize>,
    max_position_embeddings: usize,
}

impl LayerNormFamily {
    /// What GPT-2 and BLOOM share: LayerNorms with bias, biases on every projection, fused q,
    /// k and v, a non-gated MLP with the tanh GELU, tied embeddings, and no rotary embedding.
    fn config(self, f: &HfFields, architecture: Architecture) -> Result<ModelConfig> {
        let (hidden, heads) = (self.hidden_size, self.num_heads);
        if heads == 0 || !hidden.is_multiple_of(heads) {
            return Err(EngineError::config(
                f.path,
                format!("the hidden size ({hidden}) must be a multiple of the heads ({heads})"),
            ));
        }
        let dims = Dims {
            vocab_size: f.usize("vocab_size")?,
            hidden_size: hidden,
            intermediate_size: self.intermediate_size.unwrap_or(4 * hidden),
            num_layers: self.num_layers,
            num_heads: heads,
            num_kv_heads: self.num_kv_heads.unwrap_or(heads),
            head_dim: hidden / heads,
            rms_norm_eps: f.f64_or("layer_norm_epsilon", 1e-5)?,
            max_position_embeddings: self.max_position_embeddings,
        };
        let layers = uniform_layers(dims.num_layers, None, Rope::no_rotation());
        let mut config = dims.into_config(architecture, layers);
        config.tie_word_embeddings = f.bool_or("tie_word_embeddings", true)?;
        layer_norm_family(&mut config);
        config.bos_token_id = f.bos_token_id();
        Ok(config)
    }
}

/// What GPT-2 and BLOOM share, from `config.json` or GGUF alike: LayerNorms with bias, a bias
/// on every projection, q, k and v in one matrix, and a tanh-GELU MLP without a gate.
pub(crate) fn layer_norm_family(config: &mut ModelConfig) {
    config.norm_centered = true;
    config.norm_bias = true;
    config.qkv_bias = true;
    config.linear_bias = true;
    config.fused_projections = true;
    config.mlp_gated = false;
    config.activation = Activation::GeluTanh;
}

/// Llama's `attention_bias` (and that of the families that took it over): biases on q, k, v
/// and the output projection.
fn attention_bias(f: &HfFields, config: &mut ModelConfig) -> Result<()> {
    attention_bias_or(f, config, false)
}

/// [`attention_bias`] where the family's default is `default` (gpt-oss: on).
fn attention_bias_or(f: &HfFields, config: &mut ModelConfig, default: bool) -> Result<()> {
    let bias = f.bool_or("attention_bias", default)?;
    config.qkv_bias = bias;
    config.o_bias = bias;
    Ok(())
}

/// Llama's names and rotary attention with LayerNorms (weight and bias) and a non-gated ReLU²
/// MLP (Jais 2, Nemotron): the norm eps under `eps_key`, biases `bias_default` where the
/// config does not say.
fn relu2_layer_norm_config(
    f: &HfFields,
    architecture: Architecture,
    eps_key: &str,
    bias_default: bool,
) -> Result<ModelConfig> {
    let mut dims = f.dims()?;
    dims.rms_norm_eps = f.f64_or(eps_key, 1e-5)?;
    let layers = uniform_layers(dims.num_layers, None, f.rope("full_attention", 10_000.0)?);
    let mut config = dims.into_config(architecture, layers);
    config.tie_word_embeddings = f.bool_or("tie_word_embeddings", false)?;
    attention_and_mlp_bias(f, &mut config, bias_default)?;
    relu2_layer_norm_traits(&mut config);
    config.activation = f.activation(&["hidden_act"], Activation::Relu2)?;
    config.bos_token_id = f.bos_token_id();
    Ok(config)
}

/// LayerNorms with bias and a non-gated ReLU² MLP, from `config.json` or GGUF alike.
pub(crate) fn relu2_layer_norm_traits(config: &mut ModelConfig) {
    config.norm_centered = true;
    config.norm_bias = true;
    config.mlp_gated = false;
    config.activation = Activation::Relu2;
}

/// `attention_bias` (q, k, v and o) and `mlp_bias` (up and down), each `default` where not
/// given (Jais 2, Nemotron).
fn attention_and_mlp_bias(f: &HfFields, config: &mut ModelConfig, default: bool) -> Result<()> {
    let attention = f.bool_or("attention_bias", default)?;
    let mlp = f.bool_or("mlp_bias", default)?;
    if mlp && !attention {
        // `linear_bias` is the output projection's and the MLP's together.
        return Err(EngineError::config(
            f.path,
            "\"mlp_bias\": true with \"attention_bias\": false is not supported",
        ));
    }
    config.qkv_bias = attention;
    config.linear_bias = mlp;
    config.o_bias = attention && !mlp;
    Ok(())
}

/// Biased MLPs are not part of any supported family; refuse rather than ignore weights.
fn reject_mlp_bias(fields: &HfFields) -> Result<()> {
    if fields.bool_or("mlp_bias", false)? {
        return Err(EngineError::config(
            fields.path,
            "\"mlp_bias\": true is not supported",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    /// `RenamedWeights` tells full-model from bare-model checkpoints by the first fixed name,
    /// which must be the token embeddings; and every part the decoder asks for is named.
    #[test]
    fn name_tables_start_with_the_embeddings_and_name_every_part() {
        for table in [
            &super::gpt2::NAMES,
            &super::bloom::NAMES,
            &super::xglm::NAMES,
            &super::gpt_neox::NAMES,
            &super::falcon::NAMES,
            &super::falcon::NAMES_TWO_NORMS,
            &super::apertus::NAMES,
            &super::glm::NAMES4,
        ] {
            assert_eq!(
                table.fixed.first().map(|(asked, _)| *asked),
                Some("model.embed_tokens.weight"),
                "{}",
                table.family
            );
            for norm in ["input_layernorm", "post_attention_layernorm"] {
                assert!(
                    table.norms.iter().any(|(asked, _)| *asked == norm),
                    "{} names no {norm}",
                    table.family
                );
            }
            assert!(
                table
                    .parts
                    .iter()
                    .any(|(asked, ..)| *asked == "mlp.up_proj" || *asked == "mlp.gate_up_proj"),
                "{} names no up projection",
                table.family
            );
            for part in ["self_attn.o_proj", "mlp.down_proj"] {
                assert!(
                    table.parts.iter().any(|(asked, ..)| *asked == part),
                    "{} names no {part}",
                    table.family
                );
            }
        }
    }
}
