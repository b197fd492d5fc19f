//! gpt-oss (OpenAI's open-weight mixtures, gpt-oss-20b and -120b): Llama's pre-norm layout
//! with biases on q, k, v and o, a learned attention sink per head, sliding-window and full
//! layers in turn, YaRN rotary, and a mixture of experts in every layer whose router and
//! experts carry biases and whose experts run a clamped SwiGLU (see `engine::moe`). The
//! released checkpoints store the experts in MXFP4 (`*_blocks`, `*_scales`), which the loader
//! expands; unquantized ones (`gate_up_proj` `[experts, d_model, 2·d_ff]`) load as they are.

use crate::engine::config::{
    Activation, Architecture, Experts, HfFields, LayerAttention, LayerMixer, ModelConfig,
    SwigluClamp,
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
    let layers = sliding
        .into_iter()
        .map(|slides| LayerAttention {
            sliding_window: if slides { window } else { None },
            rope: rope.clone(),
            mixer: LayerMixer::Attention,
        })
        .collect();
    let mut config = dims.into_config(Architecture::GptOss, layers);
    config.tie_word_embeddings = f.bool_or("tie_word_embeddings", false)?;
    super::attention_bias_or(f, &mut config, true)?;
    config.attention_sinks = true;
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
    config.activation = Activation::ClampedSwiglu;
    config.swiglu_clamp = Some(clamp);
    config.experts = Some(Experts {
        count: f.usize_either("num_local_experts", "num_experts")?,
        per_token: f.usize_either("num_experts_per_tok", "experts_per_token")?,
        // A softmax over the chosen experts' logits: the same as renormalizing the softmax
        // over all of them.
        normalize_top_k: true,
        shared_d_ff: None,
        biased: true,
    });
    config.bos_token_id = f.bos_token_id();
    Ok(config)
}
