//! gpt-oss (OpenAI's open-weight mixtures, gpt-oss-20b and -120b): Llama's pre-norm layout
//! with biases on q, k, v and o, a learned attention sink per head, sliding-window and full
//! layers in turn, YaRN rotary, and a mixture of experts in every layer whose router and
//! experts carry biases and whose experts run a clamped SwiGLU (see `engine::moe`). The
//! released checkpoints store the experts in MXFP4 (`*_blocks`, `*_scales`), which the loader
//! expands; unquantized ones (`gate_up_proj` `[experts, d_model, 2·d_ff]`) load as they are.

use crate::engine::config::{
    Activation, Architecture, Experts, HfFields, LayerAttention, ModelConfig, SwigluClamp,
};
use crate::engine::error::{EngineError, Result};

pub fn config(f: &HfFields) -> Result<ModelConfig> {
    let dims = f.dims()?;
    let n = dims.num_layers;
    // transformers' default: even layers slide, odd ones see everything.
    let sliding = match f.layer_types(n)? {
        Some(types) => types,
        None => (0..n).map(|i| i % 2 == 0).collect(),
    };
    let window = f.opt_usize("sliding_window")?;
    if window.is_none() && sliding.contains(&true) {
        return Err(EngineError::config(
            f.path,
            "sliding-window layers but no \"sliding_window\"",
        ));
    }
    let rope = f.rope("full_attention", 150_000.0)?;
    let layers = LayerAttention::per_layer(&sliding, window, &rope, &rope);
    let mut config = dims.into_config(Architecture::GptOss, layers);
    config.tie_word_embeddings = f.bool_or("tie_word_embeddings", false)?;
    super::attention_bias_or(f, &mut config, true)?;
    let clamp = SwigluClamp {
        alpha: f.f64_or("swiglu_alpha", 1.702)?,
        limit: f.f64_or("swiglu_limit", 7.0)?,
    };
    // NAS reads the gate's sign, which the clamp keeps only with a positive limit.
    if !(clamp.limit > 0.0 && clamp.alpha > 0.0) {
        return Err(EngineError::config(
            f.path,
            format!(
                "\"swiglu_limit\" ({}) and \"swiglu_alpha\" ({}) must be positive",
                clamp.limit, clamp.alpha
            ),
        ));
    }
    family_traits(
        &mut config,
        clamp,
        f.usize_either("num_local_experts", "num_experts")?,
        f.usize_either("num_experts_per_tok", "experts_per_token")?,
    );
    config.bos_token_id = f.bos_token_id();
    Ok(config)
}

/// What every gpt-oss has, read from `config.json` or from GGUF: attention sinks, the clamped
/// SwiGLU, and a mixture of `count` experts, `per_token` of them per token, router and experts
/// with biases.
pub fn family_traits(config: &mut ModelConfig, clamp: SwigluClamp, count: usize, per_token: usize) {
    config.attention_sinks = true;
    config.activation = Activation::ClampedSwiglu;
    config.swiglu_clamp = Some(clamp);
    config.experts = Some(Experts {
        beside_dense: false,
        count,
        per_token,
        // A softmax over the chosen experts' logits: the same as renormalizing the softmax
        // over all of them.
        normalize_top_k: true,
        shared_d_ff: None,
        biased: true,
    });
}
