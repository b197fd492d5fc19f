//! One description of a decoder model, whatever file it came from.
//!
//! Each architecture file in `arch/` reads its own `config.json` flavour into [`ModelConfig`];
//! the GGUF reader fills the same struct from GGUF metadata. The decoder only ever sees this.

use std::path::Path;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::error::{EngineError, Result};

/// Multimodal wrappers whose `config.json` keeps the language model's settings in
/// `text_config`: Gemma 3 (4B and up), Gemma 4 and Mistral 3 (Mistral Small 3.x, Magistral,
/// around a Mistral or Ministral 3 language model), …
const TEXT_CONFIG_WRAPPERS: &[&str] = &[
    "gemma3",
    "gemma4",
    "mistral3",
    "qwen3_5",
    "qwen3_5_moe",
    "apertus1p5",
    "exaone4_5",
];

/// The decoder families this engine can run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Architecture {
    Llama,
    Mistral,
    Qwen2,
    Qwen3,
    Gemma,
    Gemma2,
    Gemma3,
    Gemma4,
    Olmo2,
    Phi3,
    SmolLm3,
    Granite,
    Cohere,
    Gpt2,
    Bloom,
    Cohere2,
    Olmo3,
    Olmo,
    StableLm,
    Xglm,
    GptNeoX,
    Falcon,
    Apertus,
    Jais2,
    Nemotron,
    Olmoe,
    Qwen3Moe,
    Mixtral,
    Glm,
    Glm4,
    Qwen2Moe,
    Exaone4,
    Helium,
    Arcee,
    Ministral3,
    GptOss,
    GraniteMoe,
    Qwen35,
    Qwen35Moe,
    Apertus15,
    GraniteSwa,
    Lfm2,
    Lfm3,
    OlmoHybrid,
}

impl Architecture {
    pub const ALL: [Architecture; 44] = [
        Self::Llama,
        Self::Mistral,
        Self::Qwen2,
        Self::Qwen3,
        Self::Gemma,
        Self::Gemma2,
        Self::Gemma3,
        Self::Gemma4,
        Self::Olmo2,
        Self::Phi3,
        Self::SmolLm3,
        Self::Granite,
        Self::Cohere,
        Self::Gpt2,
        Self::Bloom,
        Self::Cohere2,
        Self::Olmo3,
        Self::Olmo,
        Self::StableLm,
        Self::Xglm,
        Self::GptNeoX,
        Self::Falcon,
        Self::Apertus,
        Self::Jais2,
        Self::Nemotron,
        Self::Olmoe,
        Self::Qwen3Moe,
        Self::Mixtral,
        Self::Glm,
        Self::Glm4,
        Self::Qwen2Moe,
        Self::Exaone4,
        Self::Helium,
        Self::Arcee,
        Self::Ministral3,
        Self::GptOss,
        Self::GraniteMoe,
        Self::Qwen35,
        Self::Qwen35Moe,
        Self::Apertus15,
        Self::GraniteSwa,
        Self::Lfm2,
        Self::Lfm3,
        Self::OlmoHybrid,
    ];

    /// Hugging Face `model_type` values accepted for this architecture.
    pub fn model_types(self) -> &'static [&'static str] {
        match self {
            Self::Llama => &["llama"],
            Self::Mistral => &["mistral"],
            Self::Qwen2 => &["qwen2"],
            Self::Qwen3 => &["qwen3"],
            Self::Gemma => &["gemma"],
            Self::Gemma2 => &["gemma2"],
            Self::Gemma3 => &["gemma3_text", "gemma3"],
            // `gemma4`: a wrapper's `text_config` that does not name its own type.
            Self::Gemma4 => &["gemma4_text", "gemma4"],
            Self::Olmo2 => &["olmo2"],
            Self::Phi3 => &["phi3"],
            Self::SmolLm3 => &["smollm3"],
            Self::Granite => &["granite"],
            Self::Cohere => &["cohere"],
            Self::Gpt2 => &["gpt2"],
            Self::Bloom => &["bloom"],
            Self::Cohere2 => &["cohere2"],
            Self::Olmo3 => &["olmo3"],
            Self::Olmo => &["olmo"],
            Self::StableLm => &["stablelm"],
            Self::Xglm => &["xglm"],
            Self::GptNeoX => &["gpt_neox"],
            Self::Falcon => &["falcon"],
            Self::Apertus => &["apertus"],
            Self::Jais2 => &["jais2"],
            Self::Nemotron => &["nemotron"],
            Self::Olmoe => &["olmoe"],
            Self::Qwen3Moe => &["qwen3_moe"],
            Self::Mixtral => &["mixtral"],
            Self::Glm => &["glm"],
            Self::Glm4 => &["glm4"],
            Self::Qwen2Moe => &["qwen2_moe"],
            // EXAONE 4.5's language model was `exaone4_5_text` in its first releases.
            Self::Exaone4 => &["exaone4", "exaone4_5_text"],
            Self::Helium => &["helium"],
            Self::Arcee => &["arcee"],
            Self::Ministral3 => &["ministral3"],
            Self::GptOss => &["gpt_oss"],
            Self::GraniteMoe => &["granitemoe"],
            Self::Qwen35 => &["qwen3_5_text"],
            Self::Qwen35Moe => &["qwen3_5_moe_text"],
            Self::Apertus15 => &["apertus1p5_text"],
            Self::GraniteSwa => &["granite_swa"],
            Self::Lfm2 => &["lfm2"],
            Self::Lfm3 => &["lfm3"],
            Self::OlmoHybrid => &["olmo_hybrid"],
        }
    }

    pub fn from_model_type(model_type: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|a| a.model_types().contains(&model_type))
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Llama => "Llama",
            Self::Mistral => "Mistral",
            Self::Qwen2 => "Qwen2",
            Self::Qwen3 => "Qwen3",
            Self::Gemma => "Gemma",
            Self::Gemma2 => "Gemma 2",
            Self::Gemma3 => "Gemma 3",
            Self::Gemma4 => "Gemma 4",
            Self::Olmo2 => "OLMo 2",
            Self::Phi3 => "Phi-3",
            Self::SmolLm3 => "SmolLM3",
            Self::Granite => "Granite",
            Self::Cohere => "Cohere",
            Self::Gpt2 => "GPT-2",
            Self::Bloom => "BLOOM",
            Self::Cohere2 => "Cohere 2",
            Self::Olmo3 => "OLMo 3",
            Self::Olmo => "OLMo",
            Self::StableLm => "StableLM",
            Self::Xglm => "XGLM",
            Self::GptNeoX => "GPT-NeoX",
            Self::Falcon => "Falcon",
            Self::Apertus => "Apertus",
            Self::Jais2 => "Jais 2",
            Self::Nemotron => "Nemotron",
            Self::Olmoe => "OLMoE",
            Self::Qwen3Moe => "Qwen3-MoE",
            Self::Mixtral => "Mixtral",
            Self::Glm => "GLM",
            Self::Glm4 => "GLM-4",
            Self::Qwen2Moe => "Qwen2-MoE",
            Self::Exaone4 => "EXAONE 4",
            Self::Helium => "Helium",
            Self::Arcee => "Arcee",
            Self::Ministral3 => "Ministral 3",
            Self::GptOss => "gpt-oss",
            Self::GraniteMoe => "Granite MoE",
            Self::Qwen35 => "Qwen3.5",
            Self::Qwen35Moe => "Qwen3.5-MoE",
            Self::Apertus15 => "Apertus 1.5",
            Self::GraniteSwa => "Granite SWA",
            Self::Lfm2 => "LFM2",
            Self::Lfm3 => "LFM3",
            Self::OlmoHybrid => "OLMo Hybrid",
        }
    }

    /// Human-readable list for error messages.
    pub fn supported_list() -> String {
        let wrappers = TEXT_CONFIG_WRAPPERS
            .iter()
            .filter(|w| Self::from_model_type(w).is_none())
            .map(|w| format!("{w} (its language model)"));
        Self::ALL
            .iter()
            .map(|a| a.model_types().join("/"))
            .chain(wrappers)
            .collect::<Vec<_>>()
            .join(", ")
    }

    /// The architecture a `config.json` describes, and the part of it that describes the
    /// language model: a multimodal wrapper's `text_config` (Gemma 3, Mistral 3), whose
    /// vision tower's weights are then left alone.
    pub fn of_config<'a>(json: &'a Value, path: &Path) -> Result<(Self, &'a Value)> {
        fn model_type(json: &Value) -> Option<&str> {
            json.get("model_type").and_then(Value::as_str)
        }
        let top =
            model_type(json).ok_or_else(|| EngineError::config(path, "no \"model_type\" field"))?;
        let (json, found) = match json.get("text_config") {
            Some(text) if TEXT_CONFIG_WRAPPERS.contains(&top) => {
                (text, model_type(text).unwrap_or(top))
            }
            _ => (json, top),
        };
        let arch =
            Self::from_model_type(found).ok_or_else(|| EngineError::UnsupportedArchitecture {
                path: path.to_path_buf(),
                found: if found == top {
                    top.to_string()
                } else {
                    format!("{top} around {found}")
                },
                supported: Self::supported_list(),
            })?;
        Ok((arch, json))
    }
}

impl std::fmt::Display for Architecture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// The FFN activation applied to `gate_proj(h)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Activation {
    Silu,
    /// GELU with the tanh approximation (`gelu_pytorch_tanh`, Gemma).
    GeluTanh,
    /// Exact (erf) GELU.
    Gelu,
    /// ReLU squared (`relu2`: Jais 2, Nemotron).
    Relu2,
    /// xIELU (Apertus): quadratic above 0, an ELU-like branch below, with parameters of its
    /// own in every layer (read with the weights, see [`XIelu`](super::activation::XIelu)). Unlike the others it is not
    /// positive exactly where its input is: it turns positive again far below 0.
    XIelu,
    /// gpt-oss' experts: `g·σ(α·g)` of the gate clamped above, times the up projection
    /// clamped on both sides plus 1 (parameters in [`ModelConfig::swiglu_clamp`]).
    ClampedSwiglu,
}

impl Activation {
    pub fn from_hf(name: &str) -> Option<Self> {
        match name {
            "silu" | "swish" => Some(Self::Silu),
            "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast" => Some(Self::GeluTanh),
            "gelu" => Some(Self::Gelu),
            "xielu" => Some(Self::XIelu),
            "relu2" => Some(Self::Relu2),
            _ => None,
        }
    }
}

/// A mixture-of-experts MLP: a router scores `count` gated experts per token and the
/// `per_token` best run, their outputs summed with the router's softmax weights (renormalized
/// over the chosen ones where `normalize_top_k`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Experts {
    pub count: usize,
    pub per_token: usize,
    pub normalize_top_k: bool,
    /// Qwen2-MoE: one more gated MLP of this width that every token runs, its output scaled by
    /// `sigmoid(w·h)`; its neurons follow the experts'.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shared_d_ff: Option<usize>,
    /// gpt-oss: the router and every expert's two projections add a bias.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub biased: bool,
    /// Gemma 4 (26B A4B): the shared expert is the layer's dense MLP (`mlp.*`, without a gate)
    /// beside the mixture; the experts read the residual stream through a norm of their own,
    /// the router through a norm and a scale, each expert's output is scaled by a learned
    /// factor, and both outputs are normed before they are added.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub beside_dense: bool,
}

/// The parameters of [`Activation::ClampedSwiglu`]: the sigmoid's gain `alpha` and the clamp
/// `limit` (gpt-oss' `swiglu_alpha` and `swiglu_limit`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
pub struct SwigluClamp {
    pub alpha: f64,
    pub limit: f64,
}

/// How rotary frequencies are rescaled for long contexts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum RopeScaling {
    None,
    Linear {
        factor: f64,
    },
    Llama3 {
        factor: f64,
        low_freq_factor: f64,
        high_freq_factor: f64,
        original_max_position_embeddings: f64,
    },
    /// Phi-3's LongRoPE with its short factors, which transformers uses while a sentence fits
    /// in `original_max_position_embeddings` (longer ones are refused, see
    /// [`ModelConfig::sentence_token_limit`]). cos and sin are multiplied by
    /// `attention_factor`, which scales queries and keys alike.
    LongRope {
        short_factor: Vec<f64>,
        original_max_position_embeddings: usize,
        attention_factor: f64,
    },
    /// Each inverse frequency divided by its own entry: llama.cpp's `rope_freqs` table, which
    /// is how GGUF files carry llama 3's scaling.
    FrequencyDivisors {
        divisors: Vec<f64>,
    },
    /// No rotation at all (SmolLM3's NoPE layers): every frequency is 0, so cos is 1 and sin 0.
    NoRotation,
    /// "Proportional" rotary (LFM3's, Gemma 4's global layers): the frequencies of the whole
    /// head for its first `⌊fraction · head_dim / 2⌋` pairs, 0 for the others (they do not
    /// turn), all divided by `factor`.
    Proportional {
        fraction: f64,
        factor: f64,
    },
    /// YaRN: frequencies blended between interpolated (÷ factor) and original along a ramp
    /// between the dimensions that turn `beta_fast` and `beta_slow` times over the original
    /// context; cos and sin are multiplied by `attention_factor`.
    Yarn {
        factor: f64,
        original_max_position_embeddings: f64,
        beta_fast: f64,
        beta_slow: f64,
        attention_factor: f64,
        truncate: bool,
    },
}

impl RopeScaling {
    /// How many of a head's `head_dim / 2` pairs turn under "proportional" rotary:
    /// transformers' `int(fraction · head_dim // 2)`.
    pub fn proportional_pairs(fraction: f64, head_dim: usize) -> usize {
        (fraction * head_dim as f64 / 2.0).floor() as usize
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Rope {
    pub theta: f64,
    pub scaling: RopeScaling,
}

impl Rope {
    /// No rotation at all (the base does not matter).
    pub fn no_rotation() -> Self {
        Self {
            theta: 10_000.0,
            scaling: RopeScaling::NoRotation,
        }
    }
}

impl LayerAttention {
    /// One entry per layer from which layers slide: a sliding layer sees the last `window`
    /// positions (all of them when `None`) with the `local` rotary settings, the others see
    /// everything with the `global` ones.
    pub fn per_layer(
        sliding: &[bool],
        window: Option<usize>,
        local: &Rope,
        global: &Rope,
    ) -> Vec<Self> {
        sliding
            .iter()
            .map(|&is_sliding| Self {
                sliding_window: if is_sliding { window } else { None },
                rope: if is_sliding { local } else { global }.clone(),
                mixer: LayerMixer::Attention,
                heads: None,
            })
            .collect()
    }
}

/// Where each layer's RMSNorms sit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum NormLayout {
    /// Llama: before attention and before the MLP.
    Pre,
    /// Gemma 2 and 3: before and after both attention and the MLP.
    Sandwich,
    /// OLMo 2: only on the outputs of attention and of the MLP, before each residual add.
    Post,
    /// Cohere (and StableLM, Falcon 7B): one norm whose output feeds attention and the MLP side
    /// by side; both outputs are added to the residual stream.
    Parallel,
    /// GPT-NeoX (and Falcon 40B): attention and the MLP side by side, each on its own norm of
    /// the layer's input.
    ParallelTwoNorms,
}

/// RMSNorm on queries and keys after their projections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum QkNorm {
    Off,
    /// One norm of `head_dim` applied to every head (Qwen3, Gemma 3).
    PerHead,
    /// One norm over all heads' values together (OLMo 2).
    AllHeads,
}

/// Attention settings that may differ from layer to layer (Gemma's local/global layers).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LayerAttention {
    /// `Some(w)`: a token sees at most the last `w` positions (itself included).
    pub sliding_window: Option<usize>,
    pub rope: Rope,
    /// How the layer mixes its tokens; window and rotary mean something for attention only.
    #[serde(default, skip_serializing_if = "LayerMixer::is_attention")]
    pub mixer: LayerMixer,
    /// Heads of the layer's own shape, where not the model's (Gemma 4's global layers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub heads: Option<LayerHeads>,
}

/// Where a layer's keys and values come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KvProjection {
    /// Its own key and value projections.
    Own,
    /// Its own key projection, which also gives the values (Gemma 4's global layers).
    KeysAsValues,
    /// Those of an earlier layer (Gemma 4's last layers): the layer projects queries only.
    Reused,
}

impl KvProjection {
    /// Key and value projections the layer has: 2, 1 or 0.
    pub fn count(self) -> usize {
        match self {
            Self::Own => 2,
            Self::KeysAsValues => 1,
            Self::Reused => 0,
        }
    }
}

/// A layer's attention heads where they differ from the model's `head_dim` and
/// `num_key_value_heads` (Gemma 4's global layers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerHeads {
    pub head_dim: usize,
    pub kv_heads: usize,
    /// No value projection: the values are the keys' projection (before the key norm).
    pub values_from_keys: bool,
}

/// What mixes a layer's tokens.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
pub enum LayerMixer {
    #[default]
    Attention,
    /// [`ModelConfig::linear_attention`] (the Gated DeltaNet layers of Qwen3.5, OLMo Hybrid).
    LinearAttention,
    /// [`ModelConfig::short_conv`] (the convolution layers of LFM2 and LFM3).
    ShortConv,
}

impl LayerMixer {
    pub fn is_attention(&self) -> bool {
        *self == Self::Attention
    }
}

/// The Gated DeltaNet of Qwen3.5 and OLMo Hybrid, the token mixer of the layers marked
/// [`LayerMixer::LinearAttention`]: queries, keys and values through a causal depthwise convolution
/// of `conv_kernel` taps, then a recurrent state per value head updated by the gated delta rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LinearAttention {
    pub conv_kernel: usize,
    pub key_heads: usize,
    pub key_head_dim: usize,
    /// A multiple of `key_heads`: each key head serves that many value heads in turn.
    pub value_heads: usize,
    pub value_head_dim: usize,
    /// OLMo Hybrid: β = 2σ(b), so that the state's eigenvalues may turn negative.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub negative_eigenvalues: bool,
    /// The gated output norm's epsilon where it is not the model's (OLMo Hybrid: 1e-5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_norm_eps: Option<f64>,
    /// OLMo Hybrid's names: q, k, v, a, b and the gate projected apart (`q_proj` … `g_proj`),
    /// `o_proj` and `o_norm`; else Qwen3.5's (`in_proj_qkv`, `in_proj_z`, …, `out_proj`, `norm`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub separate_projections: bool,
}

impl LinearAttention {
    /// Width of the convolved queries, keys and values together.
    pub fn conv_dim(&self) -> usize {
        2 * self.key_heads * self.key_head_dim + self.value_dim()
    }

    /// Width of all value heads together.
    pub fn value_dim(&self) -> usize {
        self.value_heads * self.value_head_dim
    }

    /// Width of everything projected from the layer's input: q, k and v, the output gate, and
    /// β's and the decay's inputs (one per value head each).
    pub fn projected_width(&self) -> usize {
        self.conv_dim() + self.value_dim() + 2 * self.value_heads
    }

    /// Weights of the projections in and out for a model of width `hidden`.
    pub fn projection_parameters(&self, hidden: usize) -> u64 {
        ((self.projected_width() + self.value_dim()) * hidden) as u64
    }
}

/// LFM2's and LFM3's short convolution, the token mixer of the layers marked [`LayerMixer::ShortConv`]:
/// `B·x` convolved causally over the last `taps` tokens, gated by `C`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ShortConvolution {
    pub taps: usize,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ModelConfig {
    pub architecture: Architecture,
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub max_position_embeddings: usize,
    pub tie_word_embeddings: bool,
    /// Bias on the q, k and v projections (Qwen2).
    pub qkv_bias: bool,
    /// Bias on attention's output projection alone: Llama's `attention_bias` (and that of
    /// most of its successors) puts one on q, k, v and o, Qwen2's biases stop at v.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub o_bias: bool,
    pub qk_norm: QkNorm,
    pub norm_layout: NormLayout,
    /// Gemma: RMSNorm multiplies by `(1 + w)`.
    pub norm_plus_one: bool,
    /// Cohere: the norms subtract the mean first (a LayerNorm without bias).
    pub norm_centered: bool,
    /// Cohere: rotary pairs are neighbouring dimensions (0 and 1, 2 and 3, …), not the two
    /// halves of a head.
    pub rope_interleaved: bool,
    /// Multiply the logits by this (Cohere's `logit_scale`, 1 / Granite's `logits_scaling`).
    pub logit_scale: Option<f64>,
    /// A gated MLP (`act(gate)·up`, every family but GPT-2); otherwise `act(up)`, and the
    /// neurons are those of `up` (METHOD §1: `a = act_fn(fc_in(h))`).
    pub mlp_gated: bool,
    /// GPT-2: the norms add a bias, and so do the attention output and both MLP projections.
    pub norm_bias: bool,
    pub linear_bias: bool,
    /// GPT-2: learned position embeddings added to the token embeddings (no rotary).
    pub learned_positions: bool,
    /// XGLM: fixed sinusoidal position embeddings (fairseq's, from position 2) added to the
    /// token embeddings (no rotary).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sinusoidal_positions: bool,
    /// BLOOM: a norm right after the token embeddings.
    pub embedding_norm: bool,
    /// BLOOM: ALiBi, a per-head bias of `slope · key position` on the attention scores, in
    /// place of any position embedding.
    pub alibi: bool,
    /// Phi-3: q, k and v stored as one `qkv_proj`, gate and up as one `gate_up_proj`.
    pub fused_projections: bool,
    /// GLM: gate and up stored as one `gate_up_proj` (q, k and v apart).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub fused_gate_up: bool,
    /// Rotary on the first `n` dimensions of each head only (Phi-4-mini's
    /// `partial_rotary_factor`); `None`: on all of them. (Left out of the serialized config
    /// when `None`, so the fingerprints of other models stay as they were.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partial_rotary: Option<usize>,
    /// OLMo (1): the norms are LayerNorms without weight or bias (`F.layer_norm(x, None, None)`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub norm_unweighted: bool,
    /// OLMo (1)'s `clip_qkv`: q, k and v are clamped to `[-c, c]` right after projection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qkv_clip: Option<f64>,
    pub activation: Activation,
    /// The parameters of [`Activation::ClampedSwiglu`] (gpt-oss), and only there.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub swiglu_clamp: Option<SwigluClamp>,
    /// gpt-oss: a learned logit per query head (`self_attn.sinks`) joins each softmax over
    /// the keys, taking a share of the attention that goes nowhere.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub attention_sinks: bool,
    /// Ministral 3: from this position on, queries are scaled up (Llama 4's attention scaling,
    /// `1 + β·log(1 + ⌊p / n⌋)`), which the decoder does not do; before it the scale is 1.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub query_scaling_from: Option<usize>,
    /// A mixture of experts in every layer's MLP (OLMoE, Qwen3-MoE, Mixtral):
    /// `intermediate_size` is then one expert's width. (Left out of the serialized config when
    /// `None`, so the fingerprints of dense models stay as they were.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub experts: Option<Experts>,
    /// Multiply the token embeddings by this (Gemma: sqrt(hidden_size), Granite's
    /// `embedding_multiplier`).
    pub embedding_scale: Option<f64>,
    /// Multiply attention's and the MLP's outputs by this before each residual add (Granite).
    pub residual_scale: Option<f64>,
    /// Scale of q·k (1/sqrt(head_dim), or Gemma's 1/sqrt(query_pre_attn_scalar)).
    pub attention_scale: f64,
    pub attn_logit_softcapping: Option<f64>,
    pub final_logit_softcapping: Option<f64>,
    /// One entry per layer.
    pub layers: Vec<LayerAttention>,
    /// The token mixer of the layers marked [`LayerMixer::LinearAttention`] (Qwen3.5, OLMo
    /// Hybrid).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linear_attention: Option<LinearAttention>,
    /// Where the norms of the linear-attention layers sit, where not as the others' (OLMo
    /// Hybrid: before each part, its attention layers' after).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub linear_norm_layout: Option<NormLayout>,
    /// The token mixer of the layers marked [`LayerMixer::ShortConv`] (LFM2, LFM3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_conv: Option<ShortConvolution>,
    /// Apertus 1.5: the output head keeps only the first this many ids (the text's; the
    /// multimodal codes after them have input embeddings only). `None`: all `vocab_size`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_vocab_size: Option<usize>,
    /// LFM3: each head's output is multiplied by a sigmoid of its own projection of the
    /// layer's (normed) input (`self_attn.gate_proj`, `[heads, d_model]`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub attention_head_gate: bool,
    /// Qwen3.5: `q_proj` also gives a gate per query dimension (stored after each head's
    /// queries), and attention's output is multiplied by its sigmoid before `o_proj`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub attention_output_gate: bool,
    /// Gemma 4: the values are RMS-normed per head (without weights), as queries and keys.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub value_norm: bool,
    /// Gemma 4 (E2B, E4B): the last this many layers have no keys and values of their own;
    /// each reuses those of the last earlier layer of its kind (see [`Self::kv_source`]).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub kv_shared_layers: usize,
    /// Gemma 4 (E2B, E4B): a small embedding per layer added after each layer's MLP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_layer_input: Option<PerLayerInput>,
    /// Gemma 4: each layer's output is multiplied by a scalar stored with it (`layer_scalar`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub layer_scalar: bool,
    pub bos_token_id: Option<u32>,
}

fn is_zero(n: &usize) -> bool {
    *n == 0
}

/// Gemma 4's per-layer embeddings (PLE): a table of `width` values per layer and token id
/// (`embed_tokens_per_layer`, `vocab` rows), mixed with a projection of the token embeddings;
/// after each layer's MLP, `h += norm(proj(act(gate(h)) · e_l))`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PerLayerInput {
    pub width: usize,
    pub vocab: usize,
}

impl ModelConfig {
    /// Reads a Hugging Face `config.json` and dispatches on its `model_type`.
    pub fn from_hf_file(path: &Path) -> Result<Self> {
        let text = std::fs::read_to_string(path).map_err(|e| EngineError::io(path, e))?;
        let json: Value = serde_json::from_str(&text)
            .map_err(|e| EngineError::config(path, format!("not valid JSON: {e}")))?;
        Self::from_hf_json(&json, path)
    }

    pub fn from_hf_json(json: &Value, path: &Path) -> Result<Self> {
        let quantization = json
            .get("quantization_config")
            .and_then(|q| q.get("quant_method"))
            .and_then(Value::as_str);
        let (arch, json) = Architecture::of_config(json, path)?;
        // Quantized checkpoints store other tensors than the ones the decoder loads; gpt-oss'
        // MXFP4 experts are expanded by the loader.
        if let Some(method) = quantization
            && !(arch == Architecture::GptOss && method == "mxfp4")
        {
            return Err(EngineError::config(
                path,
                format!(
                    "the weights are quantized (\"quant_method\": \"{method}\"), which is not \
                     supported; use the unquantized checkpoint, or a GGUF file of the model"
                ),
            ));
        }
        let fields = HfFields { json, path };
        let config = match arch {
            Architecture::Llama => super::arch::llama::config(&fields)?,
            Architecture::Mistral => super::arch::mistral::config(&fields)?,
            Architecture::Qwen2 => super::arch::qwen2::config(&fields)?,
            Architecture::Qwen3 => super::arch::qwen3::config(&fields)?,
            Architecture::Gemma => super::arch::gemma::config(&fields)?,
            Architecture::Gemma2 => super::arch::gemma2::config(&fields)?,
            Architecture::Gemma3 => super::arch::gemma3::config(&fields)?,
            Architecture::Gemma4 => super::arch::gemma4::config(&fields)?,
            Architecture::Olmo2 => super::arch::olmo2::config(&fields)?,
            Architecture::Phi3 => super::arch::phi3::config(&fields)?,
            Architecture::SmolLm3 => super::arch::smollm3::config(&fields)?,
            Architecture::Granite => super::arch::granite::config(&fields)?,
            Architecture::Cohere => super::arch::cohere::config(&fields)?,
            Architecture::Gpt2 => super::arch::gpt2::config(&fields)?,
            Architecture::Bloom => super::arch::bloom::config(&fields)?,
            Architecture::Cohere2 => super::arch::cohere::config2(&fields)?,
            Architecture::Olmo3 => super::arch::olmo2::config3(&fields)?,
            Architecture::Olmo => super::arch::olmo::config(&fields)?,
            Architecture::StableLm => super::arch::stablelm::config(&fields)?,
            Architecture::Xglm => super::arch::xglm::config(&fields)?,
            Architecture::GptNeoX => super::arch::gpt_neox::config(&fields)?,
            Architecture::Falcon => super::arch::falcon::config(&fields)?,
            Architecture::Apertus => super::arch::apertus::config(&fields)?,
            Architecture::Jais2 => super::arch::jais2::config(&fields)?,
            Architecture::Nemotron => super::arch::nemotron::config(&fields)?,
            Architecture::Olmoe => super::arch::olmoe::config(&fields)?,
            Architecture::Qwen3Moe => super::arch::qwen3_moe::config(&fields)?,
            Architecture::Mixtral => super::arch::mixtral::config(&fields)?,
            Architecture::Glm => super::arch::glm::config(&fields)?,
            Architecture::Glm4 => super::arch::glm::config4(&fields)?,
            Architecture::Qwen2Moe => super::arch::qwen2_moe::config(&fields)?,
            Architecture::Exaone4 => super::arch::exaone4::config(&fields)?,
            Architecture::Helium => super::arch::helium::config(&fields)?,
            Architecture::Arcee => super::arch::arcee::config(&fields)?,
            Architecture::Ministral3 => super::arch::mistral::config3(&fields)?,
            Architecture::GptOss => super::arch::gpt_oss::config(&fields)?,
            Architecture::GraniteMoe => super::arch::granite::config_moe(&fields)?,
            Architecture::Qwen35 => super::arch::qwen3_5::config(&fields)?,
            Architecture::Qwen35Moe => super::arch::qwen3_5::config_moe(&fields)?,
            Architecture::Apertus15 => super::arch::apertus::config_1p5(&fields)?,
            Architecture::GraniteSwa => super::arch::granite::config_swa(&fields)?,
            Architecture::Lfm2 => super::arch::lfm2::config(&fields)?,
            Architecture::Lfm3 => super::arch::lfm2::config3(&fields)?,
            Architecture::OlmoHybrid => super::arch::olmo2::config_hybrid(&fields)?,
        };
        config.validate(path)?;
        Ok(config)
    }

    /// Catches configs whose numbers cannot describe a working model.
    pub fn validate(&self, path: &Path) -> Result<()> {
        let bad = |m: String| Err(EngineError::config(path, m));
        if let Some(experts) = &self.experts
            && (experts.count == 0 || experts.per_token == 0 || experts.per_token > experts.count)
        {
            return bad(format!(
                "{} experts per token of {} is not a mixture of experts",
                experts.per_token, experts.count
            ));
        }
        if let Some(experts) = &self.experts
            && experts.beside_dense
            && experts.shared_d_ff.is_none()
        {
            return bad("a mixture beside a dense MLP without the MLP's width".into());
        }
        let linear_layers = self.layers_mixed_by(LayerMixer::LinearAttention) > 0;
        match &self.linear_attention {
            None if linear_layers => {
                return bad("linear-attention layers without their dimensions".into());
            }
            Some(linear)
                if linear.conv_kernel == 0
                    || linear.key_heads == 0
                    || linear.key_head_dim == 0
                    || linear.value_head_dim == 0
                    || linear.value_heads == 0
                    || !linear.value_heads.is_multiple_of(linear.key_heads) =>
            {
                return bad(format!(
                    "linear attention with {} key heads of {} and {} value heads of {}, \
                     convolution of {}: every size must be > 0 and the value heads a multiple \
                     of the key heads",
                    linear.key_heads,
                    linear.key_head_dim,
                    linear.value_heads,
                    linear.value_head_dim,
                    linear.conv_kernel
                ));
            }
            _ => {}
        }
        match &self.short_conv {
            None if self.layers_mixed_by(LayerMixer::ShortConv) > 0 => {
                return bad("short-convolution layers without their width".into());
            }
            Some(conv) if conv.taps == 0 => {
                return bad("a short convolution of 0 taps".into());
            }
            _ => {}
        }
        if (self.activation == Activation::ClampedSwiglu) != self.swiglu_clamp.is_some() {
            return bad("a clamped SwiGLU needs its alpha and limit, and only it has them".into());
        }
        if self.num_layers == 0 || self.hidden_size == 0 || self.intermediate_size == 0 {
            return bad("num_hidden_layers, hidden_size and intermediate_size must be > 0".into());
        }
        if self.num_heads == 0
            || self.num_kv_heads == 0
            || !self.num_heads.is_multiple_of(self.num_kv_heads)
        {
            return bad(format!(
                "num_attention_heads ({}) must be a positive multiple of num_key_value_heads ({})",
                self.num_heads, self.num_kv_heads
            ));
        }
        if self.head_dim == 0 || !self.head_dim.is_multiple_of(2) {
            return bad(format!("head_dim ({}) must be even and > 0", self.head_dim));
        }
        if self.layers.len() != self.num_layers {
            return bad(format!(
                "{} per-layer attention entries for {} layers",
                self.layers.len(),
                self.num_layers
            ));
        }
        if self.vocab_size == 0 {
            return bad("vocab_size must be > 0".into());
        }
        if let Some(rows) = self.output_vocab_size
            && (rows == 0 || rows > self.vocab_size)
        {
            return bad(format!(
                "output_vocab_size ({rows}) must be between 1 and vocab_size ({})",
                self.vocab_size
            ));
        }
        if let Some(rotary) = self.partial_rotary
            && (rotary == 0 || !rotary.is_multiple_of(2) || rotary > self.head_dim)
        {
            return bad(format!(
                "rotary on {rotary} of each head's {} dimensions: it must be even, > 0 and at \
                 most head_dim",
                self.head_dim
            ));
        }
        for (i, layer) in self.layers.iter().enumerate() {
            let heads = self.heads_of(layer);
            if heads.head_dim == 0
                || !heads.head_dim.is_multiple_of(2)
                || heads.kv_heads == 0
                || !self.num_heads.is_multiple_of(heads.kv_heads)
            {
                return bad(format!(
                    "layer {i} has heads of {} with {} key/value heads: head_dim must be even \
                     and > 0, and the {} query heads a multiple of the key/value heads",
                    heads.head_dim, heads.kv_heads, self.num_heads
                ));
            }
            if !self.has_own_kv(i) && self.kv_source(i).is_none() {
                return bad(format!(
                    "layer {i} reuses the keys and values of an earlier layer of its kind \
                     (\"num_kv_shared_layers\": {}), but none comes before it",
                    self.kv_shared_layers
                ));
            }
        }
        let rotary = self.rotary_dims();
        for layer in &self.layers {
            if let RopeScaling::LongRope { short_factor, .. } = &layer.rope.scaling
                && short_factor.len() != rotary / 2
            {
                return bad(format!(
                    "rope scaling \"longrope\" has {} short factors for {rotary} rotary \
                     dimensions (needs {})",
                    short_factor.len(),
                    rotary / 2
                ));
            }
        }
        Ok(())
    }

    /// Where layer `mixer`'s norms sit.
    pub fn norm_layout_of(&self, mixer: LayerMixer) -> NormLayout {
        match (mixer, self.linear_norm_layout) {
            (LayerMixer::LinearAttention, Some(layout)) => layout,
            _ => self.norm_layout,
        }
    }

    /// The heads of layer `layer`: its own where it has them, else the model's.
    pub fn heads_of(&self, layer: &LayerAttention) -> LayerHeads {
        layer.heads.unwrap_or(LayerHeads {
            head_dim: self.head_dim,
            kv_heads: self.num_kv_heads,
            values_from_keys: false,
        })
    }

    /// The layer whose keys and values layer `layer` reuses (Gemma 4's last
    /// [`Self::kv_shared_layers`]): the last one before them of the same kind. `None` for a
    /// layer with keys and values of its own, or where no such layer exists.
    pub fn kv_source(&self, layer: usize) -> Option<usize> {
        let first_shared = self.num_layers.checked_sub(self.kv_shared_layers)?;
        if layer < first_shared {
            return None;
        }
        let kind = self.layers.get(layer)?;
        (0..first_shared.min(self.layers.len()))
            .rev()
            .find(|&j| self.layers[j] == *kind)
    }

    /// Whether layer `layer` has keys and values of its own (all but Gemma 4's shared layers).
    pub fn has_own_kv(&self, layer: usize) -> bool {
        layer + self.kv_shared_layers < self.num_layers
    }

    /// Which of the key and value projections layer `i` (of kind `layer`) has.
    pub fn kv_projection(&self, i: usize, layer: &LayerAttention) -> KvProjection {
        match (self.has_own_kv(i), self.heads_of(layer).values_from_keys) {
            (false, _) => KvProjection::Reused,
            (true, true) => KvProjection::KeysAsValues,
            (true, false) => KvProjection::Own,
        }
    }

    /// How many layers `mixer` mixes.
    pub fn layers_mixed_by(&self, mixer: LayerMixer) -> usize {
        self.layers
            .iter()
            .filter(|layer| layer.mixer == mixer)
            .count()
    }

    /// Rows of the output head: `output_vocab_size` where the head is pruned, else `vocab_size`.
    pub fn output_rows(&self) -> usize {
        self.output_vocab_size.unwrap_or(self.vocab_size)
    }

    /// The most tokens a sentence may have, and the config field that sets it.
    /// How many dimensions of each head rotary turns.
    pub fn rotary_dims(&self) -> usize {
        self.partial_rotary.unwrap_or(self.head_dim)
    }

    pub fn sentence_token_limit(&self) -> (usize, &'static str) {
        let long_rope = self.layers.iter().find_map(|l| match l.rope.scaling {
            RopeScaling::LongRope {
                original_max_position_embeddings,
                ..
            } => Some(original_max_position_embeddings),
            _ => None,
        });
        match (long_rope, self.query_scaling_from) {
            // Past it transformers switches to LongRoPE's long factors, which we do not run.
            (Some(original), _) if original < self.max_position_embeddings => {
                (original, "original_max_position_embeddings of its LongRoPE")
            }
            (_, Some(from)) if from < self.max_position_embeddings => {
                (from, "the position where its Llama 4 query scaling starts")
            }
            _ => (self.max_position_embeddings, "max_position_embeddings"),
        }
    }

    /// The neurons of one layer, whose states are captured: `d_ff`, or every expert's in a
    /// mixture of experts.
    pub fn neurons_per_layer(&self) -> usize {
        match &self.experts {
            Some(experts) => {
                experts.count * self.intermediate_size + experts.shared_d_ff.unwrap_or(0)
            }
            None => self.intermediate_size,
        }
    }

    /// Parameter count of the decoder (embeddings included, lm_head only when untied).
    pub fn parameter_count(&self) -> u64 {
        let (h, f, v) = (
            self.hidden_size as u64,
            self.intermediate_size as u64,
            self.vocab_size as u64,
        );
        let bias = |on: bool, n: u64| if on { n } else { 0 };
        // One norm of `h` values, and its bias where the family has one.
        let norm = bias(!self.norm_unweighted, h) + bias(self.norm_bias, h);
        // Attention's weights in layer `i`: its heads' shapes, its own keys and values or none.
        let attention = |i: usize, layer: &LayerAttention| {
            let heads = self.heads_of(layer);
            let d = heads.head_dim as u64;
            let q = self.num_heads as u64 * d;
            let kv = heads.kv_heads as u64 * d;
            let kv_projections = self.kv_projection(i, layer).count() as u64;
            h * q
                + kv_projections * h * kv
                + q * h
                + bias(self.attention_output_gate, h * q)
                + bias(self.attention_head_gate, h * self.num_heads as u64)
                + bias(self.qkv_bias, q + kv_projections * kv)
                + bias(self.linear_bias || self.o_bias, h)
                + match self.qk_norm {
                    QkNorm::Off => 0,
                    QkNorm::PerHead => d + bias(kv_projections > 0, d),
                    QkNorm::AllHeads => q + kv,
                }
                + bias(self.attention_sinks, self.num_heads as u64)
        };
        let gates = if self.mlp_gated { 2 } else { 1 };
        // xIELU's alpha_p, alpha_n, beta and eps, stored in every layer.
        let activation = bias(self.activation == Activation::XIelu, 4);
        let one_mlp = (gates + 1) * h * f + bias(self.linear_bias, gates * f + h) + activation;
        // A mixture: every expert's MLP and the router's `[experts, h]` (with their biases
        // where the family has them).
        let mlp = match &self.experts {
            Some(experts) => {
                // Qwen2-MoE's shared expert has a gate row; Gemma 4's dense MLP none, but the
                // router's scale and per-expert scales, and three more norms.
                let count = experts.count as u64;
                let shared = experts
                    .shared_d_ff
                    .map_or(0, |s| 3 * h * s as u64 + bias(!experts.beside_dense, h));
                let beside = bias(experts.beside_dense, h + count + 3 * norm);
                let biases = bias(experts.biased, gates * f + h + 1);
                count * (one_mlp + h + biases) + shared + beside
            }
            None => one_mlp,
        };
        let norms = norm
            * match self.norm_layout {
                NormLayout::Sandwich => 4,
                NormLayout::Pre | NormLayout::Post | NormLayout::ParallelTwoNorms => 2,
                NormLayout::Parallel => 1,
            };
        // Qwen3.5's linear-attention layers have a Gated DeltaNet in attention's place.
        let (linear_layers, linear) = match &self.linear_attention {
            Some(linear) => {
                // The convolution, A_log and dt_bias per value head, the gated norm.
                let small = linear.conv_dim() * linear.conv_kernel
                    + 2 * linear.value_heads
                    + linear.value_head_dim;
                let count = self.layers_mixed_by(LayerMixer::LinearAttention) as u64;
                let projections = linear.projection_parameters(self.hidden_size);
                (count, projections + small as u64)
            }
            None => (0, 0),
        };
        // LFM2's short-convolution layers: B, C and x, the convolution, and back.
        let conv_layers = self.layers_mixed_by(LayerMixer::ShortConv) as u64;
        let conv = self
            .short_conv
            .as_ref()
            .map_or(0, |c| 4 * h * h + h * c.taps as u64);
        let attention_weights: u64 = (self.layers.iter().enumerate())
            .filter(|(_, layer)| layer.mixer.is_attention())
            .map(|(i, layer)| attention(i, layer))
            .sum();
        let mixers = attention_weights + linear_layers * linear + conv_layers * conv;
        // Gemma 4: the scalar of each layer, and the per-layer embeddings' table, projection
        // and norm, with each layer's gate, projection and norm.
        let per_layer_input = self.per_layer_input.map_or(0, |ple| {
            let (p, all) = (ple.width as u64, (ple.width * self.num_layers) as u64);
            ple.vocab as u64 * all + h * all + p + self.num_layers as u64 * (2 * h * p + h)
        });
        let per_layer = mlp + norms + bias(self.layer_scalar, 1);
        let head = if self.tie_word_embeddings {
            0
        } else {
            self.output_rows() as u64 * h
        };
        let positions = bias(
            self.learned_positions,
            self.max_position_embeddings as u64 * h,
        );
        let embedding_norm = bias(self.embedding_norm, norm);
        v * h
            + positions
            + embedding_norm
            + self.num_layers as u64 * per_layer
            + mixers
            + per_layer_input
            + norm
            + head
    }

    /// Multiply-accumulate FLOPs of one token through the decoder (no lm_head), for `seq_len`
    /// tokens of context on average: 2·params of the matmuls + attention scores and values.
    pub fn forward_flops_per_token(&self, mean_context: f64) -> f64 {
        let (h, f) = (self.hidden_size as f64, self.intermediate_size as f64);
        let mlp_matrices = if self.mlp_gated { 3.0 } else { 2.0 };
        // A mixture runs its chosen experts, and its router.
        let mlp_matrices = match &self.experts {
            Some(e) => {
                let shared = e.shared_d_ff.map_or(0.0, |s| (3 * s + 1) as f64 / f);
                e.per_token as f64 * mlp_matrices + e.count as f64 / f + shared
            }
            None => mlp_matrices,
        };
        let attention = |i: usize, layer: &LayerAttention| {
            let heads = self.heads_of(layer);
            let q = (self.num_heads * heads.head_dim) as f64;
            let kv = (heads.kv_heads * heads.head_dim) as f64;
            let kv_projections = self.kv_projection(i, layer).count() as f64;
            let gate = if self.attention_output_gate {
                h * q
            } else {
                0.0
            } + if self.attention_head_gate {
                h * self.num_heads as f64
            } else {
                0.0
            };
            2.0 * (h * q + kv_projections * h * kv + q * h + gate) + 2.0 * 2.0 * q * mean_context
        };
        let mlp = 2.0 * mlp_matrices * h * f;
        // A Gated DeltaNet layer: its projections, and per value head three products of the
        // key with the `key × value` state (read, update, query), whatever the context.
        let (linear_layers, linear) = match &self.linear_attention {
            Some(l) => {
                let state = (l.value_heads * l.key_head_dim * l.value_head_dim) as f64;
                let count = self.layers_mixed_by(LayerMixer::LinearAttention) as f64;
                let projections = l.projection_parameters(self.hidden_size) as f64;
                (count, 2.0 * projections + 2.0 * 3.0 * state)
            }
            None => (0.0, 0.0),
        };
        let conv_layers = self.layers_mixed_by(LayerMixer::ShortConv) as f64;
        let conv = self
            .short_conv
            .as_ref()
            .map_or(0.0, |c| 2.0 * (4.0 * h * h + h * c.taps as f64));
        let layers = self.num_layers as f64;
        let attention: f64 = (self.layers.iter().enumerate())
            .filter(|(_, layer)| layer.mixer.is_attention())
            .map(|(i, layer)| attention(i, layer))
            .sum();
        // Gemma 4's per-layer embeddings: the projection of the embeddings, and each layer's
        // gate and projection.
        let per_layer_input = self.per_layer_input.map_or(0.0, |ple| {
            let p = ple.width as f64;
            2.0 * (h * p * layers + layers * 2.0 * h * p)
        });
        layers * mlp + attention + per_layer_input + linear_layers * linear + conv_layers * conv
    }
}

/// Typed access to the fields of a Hugging Face `config.json`, with errors naming the file.
pub struct HfFields<'a> {
    pub json: &'a Value,
    pub path: &'a Path,
}

impl HfFields<'_> {
    pub fn usize(&self, key: &str) -> Result<usize> {
        self.opt_usize(key)?
            .ok_or_else(|| EngineError::config(self.path, format!("missing field \"{key}\"")))
    }

    /// `key`, else `fallback` (the older name some checkpoints use).
    pub fn usize_either(&self, key: &str, fallback: &str) -> Result<usize> {
        match self.opt_usize(key)? {
            Some(n) => Ok(n),
            None => self.usize(fallback),
        }
    }

    pub fn opt_usize(&self, key: &str) -> Result<Option<usize>> {
        match self.json.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_u64().map(|n| Some(n as usize)).ok_or_else(|| {
                EngineError::config(
                    self.path,
                    format!("field \"{key}\" must be a non-negative integer, found {v}"),
                )
            }),
        }
    }

    pub fn f64_or(&self, key: &str, default: f64) -> Result<f64> {
        Ok(self.opt_f64(key)?.unwrap_or(default))
    }

    pub fn opt_f64(&self, key: &str) -> Result<Option<f64>> {
        match self.json.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(v) => v.as_f64().map(Some).ok_or_else(|| {
                EngineError::config(
                    self.path,
                    format!("field \"{key}\" must be a number, found {v}"),
                )
            }),
        }
    }

    pub fn bool_or(&self, key: &str, default: bool) -> Result<bool> {
        match self.json.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(v) => Err(EngineError::config(
                self.path,
                format!("field \"{key}\" must be true or false, found {v}"),
            )),
        }
    }

    pub fn activation(&self, keys: &[&str], default: Activation) -> Result<Activation> {
        for key in keys {
            if let Some(v) = self.json.get(*key).and_then(Value::as_str) {
                return Activation::from_hf(v).ok_or_else(|| {
                    EngineError::config(
                        self.path,
                        format!("unsupported activation \"{v}\" in \"{key}\" (supported: silu, gelu, gelu_pytorch_tanh, relu2, xielu)"),
                    )
                });
            }
        }
        Ok(default)
    }

    /// `bos_token_id`, which may be an integer, a list, or absent.
    pub fn bos_token_id(&self) -> Option<u32> {
        match self.json.get("bos_token_id")? {
            Value::Number(n) => n.as_u64().map(|v| v as u32),
            Value::Array(a) => a.first()?.as_u64().map(|v| v as u32),
            _ => None,
        }
    }

    /// The common dimensions of every decoder family.
    pub fn dims(&self) -> Result<Dims> {
        self.dims_with_mlp("intermediate_size")
    }

    /// [`Self::dims`] with the MLP's width read from `mlp_key` (a mixture that has no dense
    /// width: `moe_intermediate_size`).
    pub fn dims_with_mlp(&self, mlp_key: &str) -> Result<Dims> {
        let hidden_size = self.usize("hidden_size")?;
        let num_heads = self.usize("num_attention_heads")?;
        let num_kv_heads = self.opt_usize("num_key_value_heads")?.unwrap_or(num_heads);
        if num_heads == 0 {
            return Err(EngineError::config(self.path, "num_attention_heads is 0"));
        }
        let head_dim = self
            .opt_usize("head_dim")?
            .unwrap_or(hidden_size / num_heads);
        Ok(Dims {
            vocab_size: self.usize("vocab_size")?,
            hidden_size,
            intermediate_size: self.usize(mlp_key)?,
            num_layers: self.usize("num_hidden_layers")?,
            num_heads,
            num_kv_heads,
            head_dim,
            rms_norm_eps: self.f64_or("rms_norm_eps", 1e-6)?,
            max_position_embeddings: self.opt_usize("max_position_embeddings")?.unwrap_or(4096),
        })
    }

    /// The rotary settings of the given layer kind (`"full_attention"` / `"sliding_attention"`).
    ///
    /// Reads transformers ≥ 5 `rope_parameters` (flat, or keyed by layer kind) and the older
    /// `rope_theta` + `rope_scaling` fields.
    pub fn rope(&self, layer_kind: &str, default_theta: f64) -> Result<Rope> {
        if let Some(params) = self.json.get("rope_parameters").filter(|v| v.is_object()) {
            let params = params.get(layer_kind).unwrap_or(params);
            let theta = params
                .get("rope_theta")
                .and_then(Value::as_f64)
                .unwrap_or(default_theta);
            return Ok(Rope {
                theta,
                scaling: self.rope_scaling(Some(params))?,
            });
        }
        Ok(Rope {
            theta: self.f64_or("rope_theta", default_theta)?,
            scaling: self.rope_scaling(self.json.get("rope_scaling"))?,
        })
    }

    fn rope_scaling(&self, params: Option<&Value>) -> Result<RopeScaling> {
        let Some(params) = params.filter(|v| v.is_object()) else {
            return Ok(RopeScaling::None);
        };
        let kind = params
            .get("rope_type")
            .or_else(|| params.get("type"))
            .and_then(Value::as_str)
            .unwrap_or("default");
        let num = |key: &str| -> Result<f64> {
            params.get(key).and_then(Value::as_f64).ok_or_else(|| {
                EngineError::config(
                    self.path,
                    format!("rope scaling \"{kind}\" needs a numeric \"{key}\""),
                )
            })
        };
        match kind {
            "default" => Ok(RopeScaling::None),
            "linear" => Ok(RopeScaling::Linear {
                factor: num("factor")?,
            }),
            "llama3" => Ok(RopeScaling::Llama3 {
                factor: num("factor")?,
                low_freq_factor: num("low_freq_factor")?,
                high_freq_factor: num("high_freq_factor")?,
                original_max_position_embeddings: num("original_max_position_embeddings")?,
            }),
            // "su" is what the first Phi-3 configs called it.
            "longrope" | "su" => self.long_rope(params),
            "yarn" => self.yarn(params),
            "proportional" => Ok(RopeScaling::Proportional {
                fraction: params
                    .get("partial_rotary_factor")
                    .and_then(Value::as_f64)
                    .unwrap_or(1.0),
                factor: params.get("factor").and_then(Value::as_f64).unwrap_or(1.0),
            }),
            other => Err(EngineError::config(
                self.path,
                format!(
                    "unsupported rope scaling \"{other}\" (supported: default, linear, llama3, longrope, yarn, proportional)"
                ),
            )),
        }
    }

    /// LongRoPE as transformers reads it: `original_max_position_embeddings` in the rope
    /// parameters or at the top level; the attention factor given, or from
    /// `factor` = max / original positions.
    fn long_rope(&self, params: &Value) -> Result<RopeScaling> {
        let short_factor = params
            .get("short_factor")
            .and_then(Value::as_array)
            .and_then(|list| list.iter().map(Value::as_f64).collect::<Option<Vec<_>>>())
            .ok_or_else(|| {
                EngineError::config(
                    self.path,
                    "rope scaling \"longrope\" needs a list of numbers \"short_factor\"",
                )
            })?;
        let original = match params
            .get("original_max_position_embeddings")
            .and_then(Value::as_u64)
        {
            Some(n) => n as usize,
            None => self.usize("original_max_position_embeddings")?,
        };
        if original == 0 {
            return Err(EngineError::config(
                self.path,
                "original_max_position_embeddings is 0",
            ));
        }
        let factor = match params.get("factor").and_then(Value::as_f64) {
            Some(factor) => factor,
            None => {
                self.opt_usize("max_position_embeddings")?
                    .unwrap_or(original) as f64
                    / original as f64
            }
        };
        let attention_factor = match params.get("attention_factor").and_then(Value::as_f64) {
            Some(given) => given,
            None if factor <= 1.0 => 1.0,
            None => (1.0 + factor.ln() / (original as f64).ln()).sqrt(),
        };
        Ok(RopeScaling::LongRope {
            short_factor,
            original_max_position_embeddings: original,
            attention_factor,
        })
    }

    /// YaRN as transformers reads it (`_compute_yarn_parameters`).
    fn yarn(&self, params: &Value) -> Result<RopeScaling> {
        let get = |key: &str| params.get(key).and_then(Value::as_f64);
        let original = match get("original_max_position_embeddings") {
            Some(n) => n,
            None => self.usize("original_max_position_embeddings")? as f64,
        };
        let factor = match get("factor") {
            Some(f) => f,
            None => self.usize("max_position_embeddings")? as f64 / original,
        };
        let attention_factor = match (
            get("attention_factor"),
            get("mscale"),
            get("mscale_all_dim"),
        ) {
            (Some(given), _, _) => given,
            (None, Some(m), Some(all)) if m != 0.0 && all != 0.0 => {
                yarn_mscale(factor, m) / yarn_mscale(factor, all)
            }
            _ => yarn_mscale(factor, 1.0),
        };
        Ok(RopeScaling::Yarn {
            factor,
            original_max_position_embeddings: original,
            beta_fast: get("beta_fast").filter(|b| *b != 0.0).unwrap_or(32.0),
            beta_slow: get("beta_slow").filter(|b| *b != 0.0).unwrap_or(1.0),
            attention_factor,
            truncate: params
                .get("truncate")
                .and_then(Value::as_bool)
                .unwrap_or(true),
        })
    }

    /// How many dimensions of each head rotary turns, from `partial_rotary_factor` (in
    /// `rope_parameters`, `rope_scaling` or at the top; `default` where none says), as
    /// transformers reads it: `int(head_dim · factor)`. `None` when that is all of them.
    pub fn partial_rotary(&self, head_dim: usize, default: f64) -> Result<Option<usize>> {
        let in_rope = ["rope_parameters", "rope_scaling"]
            .iter()
            .find_map(|key| self.json.get(*key)?.get("partial_rotary_factor")?.as_f64());
        let factor = match (in_rope, self.opt_f64("rotary_pct")?) {
            (Some(factor), _) => factor,
            // GPT-NeoX's name for it.
            (None, Some(pct)) => pct,
            (None, None) => self.f64_or("partial_rotary_factor", default)?,
        };
        if !(factor > 0.0 && factor <= 1.0) {
            return Err(EngineError::config(
                self.path,
                format!("\"partial_rotary_factor\" is {factor}; it must be in (0, 1]"),
            ));
        }
        let rotary = (head_dim as f64 * factor) as usize;
        Ok((rotary != head_dim).then_some(rotary))
    }

    /// Which layers slide: `layer_types` where given, else every `sliding_window_pattern`-th
    /// layer (or every `period`-th, the family's default) is global and the others slide.
    pub fn sliding_or_every(&self, num_layers: usize, period: usize) -> Result<Vec<bool>> {
        if let Some(types) = self.layer_types(num_layers)? {
            return Ok(types);
        }
        let period = self
            .opt_usize("sliding_window_pattern")?
            .unwrap_or(period)
            .max(1);
        Ok((0..num_layers).map(|i| (i + 1) % period != 0).collect())
    }

    /// Per-layer attention kinds from transformers ≥ 4.5x `layer_types`, if present.
    pub fn layer_types(&self, num_layers: usize) -> Result<Option<Vec<bool>>> {
        let names = [("sliding_attention", true), ("full_attention", false)];
        super::arch::layer_kinds(self, num_layers, &names)
    }
}

/// YaRN's `get_mscale`: the attention factor of a context stretched `scale` times (`m` = 1
/// when the config names none).
pub(crate) fn yarn_mscale(scale: f64, m: f64) -> f64 {
    if scale <= 1.0 {
        1.0
    } else {
        0.1 * m * scale.ln() + 1.0
    }
}

/// Dimensions every decoder family shares.
pub struct Dims {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_layers: usize,
    pub num_heads: usize,
    pub num_kv_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub max_position_embeddings: usize,
}

impl Dims {
    /// A Llama-like config from these dimensions; architecture files adjust the rest.
    pub fn into_config(
        self,
        architecture: Architecture,
        layers: Vec<LayerAttention>,
    ) -> ModelConfig {
        ModelConfig {
            architecture,
            vocab_size: self.vocab_size,
            hidden_size: self.hidden_size,
            intermediate_size: self.intermediate_size,
            num_layers: self.num_layers,
            num_heads: self.num_heads,
            num_kv_heads: self.num_kv_heads,
            head_dim: self.head_dim,
            rms_norm_eps: self.rms_norm_eps,
            max_position_embeddings: self.max_position_embeddings,
            tie_word_embeddings: false,
            qkv_bias: false,
            o_bias: false,
            qk_norm: QkNorm::Off,
            norm_layout: NormLayout::Pre,
            norm_plus_one: false,
            norm_centered: false,
            rope_interleaved: false,
            logit_scale: None,
            mlp_gated: true,
            experts: None,
            query_scaling_from: None,
            norm_bias: false,
            linear_bias: false,
            learned_positions: false,
            sinusoidal_positions: false,
            embedding_norm: false,
            alibi: false,
            fused_projections: false,
            fused_gate_up: false,
            partial_rotary: None,
            norm_unweighted: false,
            qkv_clip: None,
            activation: Activation::Silu,
            swiglu_clamp: None,
            attention_sinks: false,
            embedding_scale: None,
            residual_scale: None,
            attention_scale: 1.0 / (self.head_dim as f64).sqrt(),
            attn_logit_softcapping: None,
            final_logit_softcapping: None,
            layers,
            linear_attention: None,
            output_vocab_size: None,
            linear_norm_layout: None,
            short_conv: None,
            attention_head_gate: false,
            attention_output_gate: false,
            value_norm: false,
            kv_shared_layers: 0,
            per_layer_input: None,
            layer_scalar: false,
            bos_token_id: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rope_of(json: Value) -> RopeScaling {
        let fields = HfFields {
            json: &json,
            path: Path::new("config.json"),
        };
        fields.rope("full_attention", 10_000.0).unwrap().scaling
    }

    #[test]
    fn longrope_attention_factor_follows_transformers() {
        // Phi-3-mini-128k: 131072 / 4096 = 32, sqrt(1 + ln 32 / ln 4096) = 1.19024...
        let scaling = rope_of(serde_json::json!({
            "max_position_embeddings": 131072,
            "original_max_position_embeddings": 4096,
            "rope_scaling": {"type": "su", "short_factor": [1.0, 1.5], "long_factor": [2.0, 3.0]},
        }));
        let RopeScaling::LongRope {
            short_factor,
            original_max_position_embeddings,
            attention_factor,
        } = scaling
        else {
            panic!("not LongRoPE: {scaling:?}")
        };
        assert_eq!(short_factor, [1.0, 1.5]);
        assert_eq!(original_max_position_embeddings, 4096);
        let expected = (1.0f64 + 32f64.ln() / 4096f64.ln()).sqrt();
        assert!((attention_factor - expected).abs() < 1e-12);
        assert!((attention_factor - 1.190_238).abs() < 1e-6);
    }

    #[test]
    fn yarn_attention_factor_follows_transformers() {
        let attention = |scaling: RopeScaling| match scaling {
            RopeScaling::Yarn {
                attention_factor, ..
            } => attention_factor,
            other => panic!("not YaRN: {other:?}"),
        };
        // Qwen-style: factor 4 → 0.1 · ln 4 + 1.
        let plain = rope_of(serde_json::json!({
            "rope_scaling": {"rope_type": "yarn", "factor": 4.0,
                "original_max_position_embeddings": 32768},
        }));
        assert!((attention(plain) - (0.1 * 4f64.ln() + 1.0)).abs() < 1e-12);
        // DeepSeek-style mscale / mscale_all_dim, and the context from the top level.
        let deepseek = rope_of(serde_json::json!({
            "original_max_position_embeddings": 4096,
            "rope_scaling": {"type": "yarn", "factor": 40.0, "mscale": 0.707,
                "mscale_all_dim": 0.707},
        }));
        assert!((attention(deepseek) - 1.0).abs() < 1e-12);
    }

    #[test]
    fn longrope_takes_a_given_attention_factor_and_none_without_extension() {
        let given = rope_of(serde_json::json!({
            "rope_parameters": {"rope_type": "longrope", "rope_theta": 10000.0,
                "short_factor": [1.0], "long_factor": [1.0], "attention_factor": 1.25,
                "original_max_position_embeddings": 4096},
        }));
        assert!(
            matches!(given, RopeScaling::LongRope { attention_factor, .. } if attention_factor == 1.25)
        );
        let unextended = rope_of(serde_json::json!({
            "max_position_embeddings": 4096,
            "original_max_position_embeddings": 4096,
            "rope_scaling": {"type": "longrope", "short_factor": [1.0], "long_factor": [1.0]},
        }));
        assert!(
            matches!(unextended, RopeScaling::LongRope { attention_factor, .. } if attention_factor == 1.0)
        );
    }

    /// gpt-oss-20b's released `config.json` (MXFP4 experts, legacy rope keys): its layers
    /// alternate a 128-token window with full attention, and the parameter count is the one
    /// hand-summed here, the 20.91B of OpenAI's gpt-oss model card.
    #[test]
    fn gpt_oss_20b_reads_as_released() {
        let sliding = (0..24)
            .map(|i| {
                if i % 2 == 0 {
                    "sliding_attention"
                } else {
                    "full_attention"
                }
            })
            .collect::<Vec<_>>();
        let json = serde_json::json!({
            "architectures": ["GptOssForCausalLM"], "attention_bias": true,
            "experts_per_token": 4, "head_dim": 64, "hidden_act": "silu", "hidden_size": 2880,
            "intermediate_size": 2880, "layer_types": sliding,
            "max_position_embeddings": 131072, "model_type": "gpt_oss",
            "num_attention_heads": 64, "num_experts_per_tok": 4, "num_hidden_layers": 24,
            "num_key_value_heads": 8, "num_local_experts": 32,
            "quantization_config": {"quant_method": "mxfp4"}, "rms_norm_eps": 1e-05,
            "rope_scaling": {"beta_fast": 32.0, "beta_slow": 1.0, "factor": 32.0,
                "original_max_position_embeddings": 4096, "rope_type": "yarn", "truncate": false},
            "rope_theta": 150000, "sliding_window": 128, "swiglu_limit": 7.0,
            "tie_word_embeddings": false, "vocab_size": 201088
        });
        let config = ModelConfig::from_hf_json(&json, Path::new("config.json")).unwrap();
        assert_eq!(config.architecture, Architecture::GptOss);
        assert_eq!(config.layers[0].sliding_window, Some(128));
        assert_eq!(config.layers[1].sliding_window, None);
        assert!(matches!(
            config.layers[1].rope.scaling,
            RopeScaling::Yarn {
                factor: 32.0,
                truncate: false,
                ..
            }
        ));
        assert_eq!(config.neurons_per_layer(), 32 * 2880);
        // Embeddings and the untied head 2·201088·2880; per layer: attention 2880·4096·2 +
        // 2880·512·2, biases 4096 + 2·512 + 2880, 64 sinks; 32 experts of 3·2880² weights,
        // 2·2880 + 2880 biases and a router row of 2880 with its bias; two norms; a final norm.
        let per_layer = 2 * 2880 * 4096
            + 2 * 2880 * 512
            + 4096
            + 1024
            + 2880
            + 64
            + 32 * (3 * 2880 * 2880 + 3 * 2880 + 2880 + 1)
            + 2 * 2880;
        let expected = 2 * 201_088 * 2880 + 24 * per_layer + 2880;
        assert_eq!(config.parameter_count(), expected);
        assert_eq!(expected, 20_914_757_184);
        // Any other quantization is refused by name.
        let mut gptq = json.clone();
        gptq["quantization_config"] = serde_json::json!({"quant_method": "gptq"});
        let error = ModelConfig::from_hf_json(&gptq, Path::new("config.json")).unwrap_err();
        assert!(
            error.to_string().contains("\"quant_method\": \"gptq\""),
            "{error}"
        );
        // A clamp that is not positive would break NAS's reading of the gate's sign.
        let mut unclamped = json.clone();
        unclamped["swiglu_limit"] = serde_json::json!(0.0);
        let error = ModelConfig::from_hf_json(&unclamped, Path::new("config.json")).unwrap_err();
        assert!(error.to_string().contains("swiglu_limit"), "{error}");
    }
}
