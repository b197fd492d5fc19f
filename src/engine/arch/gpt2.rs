//! GPT-2 (and models of its shape, such as mGPT): learned positions instead of rotary,
//! LayerNorms with bias, biases on every projection, and a non-gated MLP `act(c_fc(h))` whose
//! units are the neurons (METHOD §1). Its checkpoints store the projections as `Conv1D`
//! (`[in, out]`) under their own names; [`Gpt2Weights`] hands them to the decoder as the
//! Llama-style `[out, in]` tensors it asks for.

use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::engine::config::{
    Activation, Architecture, Dims, HfFields, ModelConfig, Rope, RopeScaling,
};
use crate::engine::error::{EngineError, Result};
use crate::engine::weights::TensorSource;

pub fn config(f: &HfFields) -> Result<ModelConfig> {
    if f.bool_or("scale_attn_by_inverse_layer_idx", false)? {
        return Err(EngineError::config(
            f.path,
            "\"scale_attn_by_inverse_layer_idx\": true is not supported",
        ));
    }
    let hidden_size = f.usize("n_embd")?;
    let num_heads = f.usize("n_head")?;
    if num_heads == 0 || !hidden_size.is_multiple_of(num_heads) {
        return Err(EngineError::config(
            f.path,
            format!("n_embd ({hidden_size}) must be a multiple of n_head ({num_heads})"),
        ));
    }
    let head_dim = hidden_size / num_heads;
    let dims = Dims {
        vocab_size: f.usize("vocab_size")?,
        hidden_size,
        intermediate_size: f.opt_usize("n_inner")?.unwrap_or(4 * hidden_size),
        num_layers: f.usize("n_layer")?,
        num_heads,
        num_kv_heads: num_heads,
        head_dim,
        rms_norm_eps: f.f64_or("layer_norm_epsilon", 1e-5)?,
        max_position_embeddings: f.usize("n_positions")?,
    };
    let no_rotation = Rope {
        theta: 10_000.0,
        scaling: RopeScaling::NoRotation,
    };
    let layers = super::uniform_layers(dims.num_layers, None, no_rotation);
    let mut config = dims.into_config(Architecture::Gpt2, layers);
    if !f.bool_or("scale_attn_weights", true)? {
        config.attention_scale = 1.0;
    }
    config.tie_word_embeddings = true;
    config.norm_centered = true;
    config.norm_bias = true;
    config.qkv_bias = true;
    config.linear_bias = true;
    config.mlp_gated = false;
    config.learned_positions = true;
    config.fused_projections = true;
    config.activation = f.activation(&["activation_function"], Activation::GeluTanh)?;
    config.bos_token_id = f.bos_token_id();
    Ok(config)
}

/// A GPT-2 checkpoint seen through the decoder's names: `model.layers.3.self_attn.qkv_proj`
/// is `h.3.attn.c_attn` (transposed), and so on.
pub struct Gpt2Weights<S> {
    inner: S,
    /// `transformer.` for `GPT2LMHeadModel` checkpoints, empty for bare `GPT2Model` ones.
    prefix: &'static str,
}

impl<S: TensorSource> Gpt2Weights<S> {
    pub fn new(inner: S) -> Self {
        let prefix = if inner.contains("transformer.wte.weight") {
            "transformer."
        } else {
            ""
        };
        Self { inner, prefix }
    }

    /// The checkpoint's name for a decoder name, and whether the tensor is a `Conv1D` weight
    /// stored transposed.
    fn checkpoint_name(&self, name: &str) -> Option<(String, bool)> {
        let p = self.prefix;
        let fixed = match name {
            "model.embed_tokens.weight" => Some("wte.weight"),
            "model.embed_positions.weight" => Some("wpe.weight"),
            "model.norm.weight" => Some("ln_f.weight"),
            "model.norm.bias" => Some("ln_f.bias"),
            _ => None,
        };
        if let Some(fixed) = fixed {
            return Some((format!("{p}{fixed}"), false));
        }
        let rest = name.strip_prefix("model.layers.")?;
        let (layer, rest) = rest.split_once('.')?;
        let (part, kind) = rest.rsplit_once('.')?;
        let (gpt2_part, conv) = match part {
            "input_layernorm" => ("ln_1", false),
            "post_attention_layernorm" => ("ln_2", false),
            "self_attn.qkv_proj" => ("attn.c_attn", true),
            "self_attn.o_proj" => ("attn.c_proj", true),
            "mlp.up_proj" => ("mlp.c_fc", true),
            "mlp.down_proj" => ("mlp.c_proj", true),
            _ => return None,
        };
        Some((
            format!("{p}h.{layer}.{gpt2_part}.{kind}"),
            conv && kind == "weight",
        ))
    }
}

impl<S: TensorSource> TensorSource for Gpt2Weights<S> {
    fn load(&self, name: &str, shape: &[usize], dtype: DType, device: &Device) -> Result<Tensor> {
        if name == "lm_head.weight" {
            return self.inner.load(name, shape, dtype, device);
        }
        let (stored, transposed) = self.checkpoint_name(name).ok_or_else(|| {
            EngineError::weights(self.origin(), format!("GPT-2 has no tensor for {name}"))
        })?;
        match (transposed, shape) {
            (true, &[rows, cols]) => Ok(self
                .inner
                .load(&stored, &[cols, rows], dtype, device)?
                .t()?
                .contiguous()?),
            _ => self.inner.load(&stored, shape, dtype, device),
        }
    }

    fn contains(&self, name: &str) -> bool {
        if name == "lm_head.weight" {
            return self.inner.contains(name);
        }
        self.checkpoint_name(name)
            .is_some_and(|(stored, _)| self.inner.contains(&stored))
    }

    fn origin(&self) -> &Path {
        self.inner.origin()
    }

    fn storage_dtype(&self) -> String {
        self.inner.storage_dtype()
    }
}
