//! GPT-2 (and models of its shape, such as mGPT): learned positions instead of rotary,
//! LayerNorms with bias, biases on every projection, and a non-gated MLP `act(c_fc(h))` whose
//! units are the neurons (METHOD §1). Its checkpoints store the projections as `Conv1D`
//! (`[in, out]`) under their own names; [`weights`] hands them to the decoder as the
//! Llama-style `[out, in]` tensors it asks for.

use crate::engine::config::{Activation, Architecture, HfFields, ModelConfig};
use crate::engine::error::{EngineError, Result};
use crate::engine::weights::{RenamedWeights, Stored, TensorSource, layer_tensor_parts};

pub fn config(f: &HfFields) -> Result<ModelConfig> {
    if f.bool_or("scale_attn_by_inverse_layer_idx", false)? {
        return Err(EngineError::config(
            f.path,
            "\"scale_attn_by_inverse_layer_idx\": true is not supported",
        ));
    }
    let mut config = super::LayerNormFamily {
        hidden_size: f.usize("n_embd")?,
        num_heads: f.usize("n_head")?,
        num_layers: f.usize("n_layer")?,
        intermediate_size: f.opt_usize("n_inner")?,
        max_position_embeddings: f.usize("n_positions")?,
    }
    .config(f, Architecture::Gpt2)?;
    if !f.bool_or("scale_attn_weights", true)? {
        config.attention_scale = 1.0;
    }
    config.learned_positions = true;
    config.activation = f.activation(&["activation_function"], Activation::GeluTanh)?;
    Ok(config)
}

/// A GPT-2 checkpoint seen through the decoder's names: `model.layers.3.self_attn.qkv_proj`
/// is `h.3.attn.c_attn`, transposed, and so on.
pub fn weights<S: TensorSource>(inner: S) -> RenamedWeights<S> {
    // `transformer.` for `GPT2LMHeadModel` checkpoints, nothing for bare `GPT2Model` ones.
    let prefix = if inner.contains("transformer.wte.weight") {
        "transformer."
    } else {
        ""
    };
    RenamedWeights::new(inner, "GPT-2", move |name| rename(prefix, name))
}

fn rename(p: &str, name: &str) -> Option<(String, Stored)> {
    let fixed = match name {
        "lm_head.weight" => return Some((name.to_string(), Stored::AsAsked)),
        "model.embed_tokens.weight" => "wte.weight",
        "model.embed_positions.weight" => "wpe.weight",
        "model.norm.weight" => "ln_f.weight",
        "model.norm.bias" => "ln_f.bias",
        _ => "",
    };
    if !fixed.is_empty() {
        return Some((format!("{p}{fixed}"), Stored::AsAsked));
    }
    let (layer, part, kind) = layer_tensor_parts(name)?;
    let (gpt2_part, conv1d) = match part {
        "input_layernorm" => ("ln_1", false),
        "post_attention_layernorm" => ("ln_2", false),
        "self_attn.qkv_proj" => ("attn.c_attn", true),
        "self_attn.o_proj" => ("attn.c_proj", true),
        "mlp.up_proj" => ("mlp.c_fc", true),
        "mlp.down_proj" => ("mlp.c_proj", true),
        _ => return None,
    };
    let layout = if conv1d && kind == "weight" {
        Stored::Transposed
    } else {
        Stored::AsAsked
    };
    Some((format!("{p}h.{layer}.{gpt2_part}.{kind}"), layout))
}
