//! The shared decoder forward pass, with neuron capture reduced inside it.
//!
//! Llama, Mistral, Qwen2/3, Gemma 1/2/3/4, OLMo 2/3, Phi-3, SmolLM3, Granite, Cohere 1/2, GPT-2
//! and BLOOM differ only in the switches of [`ModelConfig`] (biases, q/k norms, where the norms
//! sit, Gemma's `1 + w` and soft-capping, fused projections, per-layer windows, rotary bases,
//! scalings and NoPE layers, Granite's multipliers, Cohere's parallel block, centred norms and
//! interleaved rotary pairs, GPT-2's learned positions and non-gated MLP, BLOOM's ALiBi and
//! embedding norm, Gemma 4's heads per layer, reused keys and values, value norms, per-layer
//! embeddings and layer scalars), so one implementation serves them all. The CPU kernels cover all but GPT-2
//! and BLOOM, which run on the generic ops. It follows transformers' eager attention path so that
//! its numbers can be checked against it (tests/parity.rs).

use std::sync::Arc;

use candle_core::{D, DType, Device, IndexOp, Module, Tensor};
use candle_nn::Linear;

use super::activation::LayerActivation;
use super::capture::NavSource;
use super::config::{
    Activation, KvProjection, LayerAttention, LayerMixer, ModelConfig, NormLayout, QkNorm, Rope,
    RopeScaling,
};
use super::cpu_ops::{self, CaptureLayout, HostNorm, HostPooling, PoolSink, RopeTable, Span};
use super::cuda_capture::{self, CapturePool, KernelActivation};
use super::cuda_delta_rule;
use super::cuda_fused;
use super::delta_net::GatedDeltaNet;
use super::error::{EngineError, Result};
use super::moe::MoeMlp;
use super::short_conv::ShortConv;
use super::stages::{StageClock, timed};
use super::weights::{PartialRotaryWeights, QUERY_GATE, QueryGateSplit, TensorSource};

/// The stage of the CPU kernels' residual step: the add, the norm and the pools in one pass.
const RESIDUAL_STAGE: &str = "residual adds, norms, pooled hidden states";
/// The stage of the generic ops' norms (their residual adds and pooled hidden states are
/// stages of their own; see [`StageClock`]).
const NORM_STAGE: &str = "norms";

/// One sentence of a batch: its tokens and how each counts in the pools.
pub struct SentenceInput<'a> {
    pub ids: &'a [u32],
    /// Per token: its weight in the pooled states.
    pub weights: Vec<f32>,
    /// Per token: its weight in the "last token" hidden state.
    pub last: Vec<f32>,
}

/// A batch of sentences, laid out for the decoder's path: packed back to back for the CPU
/// kernels, right-padded to the longest for the generic tensor ops.
pub struct BatchInput {
    /// `[1, n]` (packed) or `[b, t]` (padded) u32 token ids.
    ids: Tensor,
    packed: bool,
    /// Where each sentence is on the flattened token axis, and its pooling weights.
    pub(super) pooling: Arc<HostPooling>,
    /// Padded layout only: `[b, 1, t]` pooling weights and `[b, 2, t]` (pooling weights, last
    /// token) on the device.
    device_weights: Option<(Tensor, Tensor)>,
    /// Packed layout only: where the CPU kernels write the pooled states.
    pub(super) sink: Option<Arc<PoolSink>>,
    /// A mixture's experts pool over their routed tokens only (see
    /// [`ExpertPooling`](super::capture::ExpertPooling)).
    pub(super) routed_only: bool,
}

impl BatchInput {
    /// Pooling alone, for tests of what reads it (no ids, no device tensors).
    #[cfg(test)]
    pub(super) fn pooling_only(pooling: HostPooling, routed_only: bool) -> Self {
        Self {
            ids: Tensor::zeros(0, DType::U32, &Device::Cpu).expect("an empty tensor"),
            packed: true,
            pooling: Arc::new(pooling),
            device_weights: None,
            sink: None,
            routed_only,
        }
    }

    /// Whole rows of `[b, t]` ids, nothing pooled (for next-token probabilities).
    fn unpooled(ids: &Tensor) -> Result<Self> {
        let (b, t) = ids.dims2()?;
        let spans = (0..b).map(|r| Span {
            start: r * t,
            len: t,
        });
        Ok(Self {
            ids: ids.clone(),
            packed: false,
            pooling: Arc::new(HostPooling {
                spans: spans.collect(),
                weights: Vec::new(),
                last: Vec::new(),
            }),
            device_weights: None,
            sink: None,
            routed_only: false,
        })
    }
}

pub(super) struct RmsNorm {
    /// In f32 (for Gemma already `1 + w`): norms compute in f32 whatever the weights' dtype,
    /// as transformers does, and hand on the compute dtype.
    weight: Tensor,
    out_dtype: DType,
    eps: f32,
    /// Subtract the mean first (Cohere, GPT-2).
    centered: bool,
    /// Added after the scaling (GPT-2's LayerNorm), in f32.
    bias: Option<Tensor>,
    /// The same weights on the host, for the CPU kernels (f32 on the CPU only).
    host: Option<Arc<HostNorm>>,
}

impl RmsNorm {
    pub(super) fn load(
        src: &dyn TensorSource,
        name: &str,
        size: usize,
        cfg: &ModelConfig,
        ctx: &Ctx,
    ) -> Result<Self> {
        // Norm weights are applied in f32 so Gemma's `1 + w` is exact.
        let weight = if cfg.norm_unweighted {
            Tensor::ones(size, DType::F32, &ctx.device)?
        } else {
            src.load(name, &[size], DType::F32, &ctx.device)?
        };
        let weight = if cfg.norm_plus_one {
            (weight + 1.0)?
        } else {
            weight
        };
        let bias = if cfg.norm_bias {
            let name = name.strip_suffix(".weight").unwrap_or(name);
            Some(src.load(&format!("{name}.bias"), &[size], DType::F32, &ctx.device)?)
        } else {
            None
        };
        Self::new(weight, bias, cfg.rms_norm_eps, cfg.norm_centered, ctx)
    }

    /// A norm without weights (Gemma 4's value norm): `x / rms(x)`.
    pub(super) fn unweighted(size: usize, eps: f64, ctx: &Ctx) -> Result<Self> {
        let weight = Tensor::ones(size, DType::F32, &ctx.device)?;
        Self::new(weight, None, eps, false, ctx)
    }

    /// From f32 weights (and bias) on the device, with a host copy for the CPU kernels.
    fn new(
        weight: Tensor,
        bias: Option<Tensor>,
        eps: f64,
        centered: bool,
        ctx: &Ctx,
    ) -> Result<Self> {
        let eps = eps as f32;
        let host = if ctx.has_cpu_kernels() {
            Some(Arc::new(HostNorm {
                weight: weight.to_vec1()?,
                eps,
                centered,
                bias: bias.as_ref().map(Tensor::to_vec1).transpose()?,
            }))
        } else {
            None
        };
        Ok(Self {
            weight,
            out_dtype: ctx.dtype,
            eps,
            centered,
            bias,
            host,
        })
    }

    pub(super) fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let mut x = x.to_dtype(DType::F32)?.contiguous()?;
        if self.centered {
            // A LayerNorm without bias is an RMSNorm of the centred values.
            x = x.broadcast_sub(&x.mean_keepdim(D::Minus1)?)?;
        }
        let mut y = candle_nn::ops::rms_norm(&x, &self.weight, self.eps)?;
        if let Some(bias) = &self.bias {
            y = y.broadcast_add(bias)?;
        }
        Ok(y.to_dtype(self.out_dtype)?)
    }
}

struct Attention {
    /// q, k and v stacked: `[(heads + 2·kv_heads)·head_dim, d_model]`.
    qkv: Linear,
    o: Linear,
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    /// The q and k norms span all heads together (OLMo 2), not each head.
    qk_norm_all_heads: bool,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
    scale: f64,
    softcap: Option<f64>,
    /// OLMo (1): q, k and v clamped to `[-c, c]` after projection.
    clip: Option<f64>,
    /// BLOOM's ALiBi slopes, one per head, for the CPU kernel (the generic ops have them in
    /// the mask).
    alibi: Option<Arc<[f32]>>,
    /// gpt-oss' sink logits, one per head: on the host for the CPU kernel, and `[1, heads, 1,
    /// 1]` f32 on the device for the generic ops.
    sinks: Option<(Arc<[f32]>, Tensor)>,
    /// Qwen3.5: the stacked projection ends with a gate per query dimension, and the output
    /// is multiplied by its sigmoid before `o`.
    output_gate: bool,
    /// LFM3: a gate per head from the attention's input, `[heads, d_model]`; each head's output
    /// is multiplied by its sigmoid before `o`.
    head_gate: Option<Linear>,
    /// Gemma 4: each head's values RMS-normed, without weights.
    value_norm: Option<RmsNorm>,
    /// Where the keys and values come from.
    kv: KvProjection,
}

/// A layer's keys and values, kept for the later layers that reuse them (Gemma 4): as the
/// CPU kernel reads them (`[n, kv_heads·d]`, normed, rotary not yet turned) or as the generic
/// ops do (`[b, kv_heads, t, d]`, turned).
#[derive(Clone)]
struct KeysValues {
    k: Tensor,
    v: Tensor,
}

/// Gemma 4's per-layer embeddings, mixed once per batch into `[rows, cols, layers, width]`.
struct PerLayerEmbeddings {
    /// `[vocab, layers·width]`.
    table: Tensor,
    /// From the token embeddings to `layers·width`.
    projection: Linear,
    /// Over each layer's `width` values.
    norm: RmsNorm,
    width: usize,
}

/// Gemma 4's use of its per-layer embedding after a layer's MLP:
/// `h + norm(projection(act(gate(h)) · e))`.
struct PerLayerBlock {
    gate: Linear,
    projection: Linear,
    norm: RmsNorm,
    activation: LayerActivation,
}

/// How a layer mixes its tokens.
enum Mixer {
    Attention(Attention),
    /// Qwen3.5's linear-attention layers.
    DeltaNet(GatedDeltaNet),
    /// LFM2's short-convolution layers.
    ShortConv(ShortConv),
}

/// A layer's MLP: one, or a mixture of experts.
enum LayerMlp {
    Dense(Mlp),
    Experts(Box<MoeMlp>),
}

struct Mlp {
    /// gate and up stacked: `[2·d_ff, d_model]`; up alone `[d_ff, d_model]` when not gated.
    gate_up: Linear,
    down: Linear,
    activation: LayerActivation,
    /// `act(gate)·up`; otherwise `act(up)` (GPT-2), and `up` plays the gate's part in NAS.
    gated: bool,
}

/// A layer's norms; which exist depends on the config's [`NormLayout`].
struct Layer {
    /// Before attention (none in OLMo 2).
    input_norm: Option<RmsNorm>,
    /// On attention's output, before the residual add (Gemma 2/3, OLMo 2).
    attention_out_norm: Option<RmsNorm>,
    /// Before the MLP (none in OLMo 2).
    mlp_norm: Option<RmsNorm>,
    /// On the MLP's output, before the residual add (Gemma 2/3, OLMo 2).
    mlp_out_norm: Option<RmsNorm>,
    mixer: Mixer,
    mlp: LayerMlp,
    /// Index into `Decoder::attention_kinds`.
    kind: usize,
    /// Gemma 4: the per-layer embedding's block after the MLP.
    per_layer_input: Option<PerLayerBlock>,
    /// Gemma 4: the layer's output is multiplied by this.
    scalar: Option<f64>,
    /// The earlier layer whose keys and values this one reuses (Gemma 4).
    kv_from: Option<usize>,
    /// A later layer reuses this one's keys and values: keep them for the pass.
    keeps_kv: bool,
}

pub struct Decoder {
    config: ModelConfig,
    embed: Tensor,
    /// GPT-2's learned position embeddings `[positions, d_model]`.
    embed_positions: Option<Tensor>,
    /// BLOOM's norm of the token embeddings.
    embed_norm: Option<RmsNorm>,
    /// Gemma 4's per-layer embeddings.
    per_layer_embeddings: Option<PerLayerEmbeddings>,
    layers: Vec<Layer>,
    final_norm: RmsNorm,
    lm_head: Option<Tensor>,
    /// The distinct per-layer attention settings (Gemma 3 has two).
    attention_kinds: Vec<LayerAttention>,
    ctx: Ctx,
    /// Use the kernels of [`cpu_ops`] (on by default for f32 on the CPU).
    cpu_kernels: bool,
    /// Pool NAS and NAV with the kernel of [`cuda_capture`] where the generic ops run (CUDA,
    /// once checked at load; tests on the CPU).
    capture_kernel: bool,
    /// Run linear attention's recurrence with the kernel of [`cuda_delta_rule`] where the
    /// generic ops run (CUDA, once checked at load; tests on the CPU).
    delta_rule_kernel: bool,
    /// Compute the MLP's `act(gate)·up`, attention's head layout and its softmax with the
    /// kernels of [`cuda_fused`] where the generic ops run (CUDA, once checked at load; tests
    /// on the CPU).
    fused_kernels: bool,
    /// Times each stage of the forward pass (benchmarks only; see [`StageClock`]).
    stage_clock: Option<Arc<StageClock>>,
}

pub(super) struct Ctx {
    pub(super) device: Device,
    pub(super) dtype: DType,
}

impl Ctx {
    /// Whether the kernels of [`cpu_ops`] can run here: f32 on the CPU.
    fn has_cpu_kernels(&self) -> bool {
        self.device.is_cpu() && self.dtype == DType::F32
    }
}

impl Decoder {
    pub fn load(
        config: &ModelConfig,
        src: &dyn TensorSource,
        device: &Device,
        dtype: DType,
    ) -> Result<Self> {
        let ctx = Ctx {
            device: device.clone(),
            dtype,
        };
        let split;
        let src = if config.attention_output_gate {
            split = QueryGateSplit::new(src, config);
            &split as &dyn TensorSource
        } else {
            src
        };
        let reordered;
        let src = match config.partial_rotary {
            Some(rotary) => {
                reordered = PartialRotaryWeights::new(src, config, rotary);
                &reordered as &dyn TensorSource
            }
            None => src,
        };
        let prefix = model_prefix(src);
        let (h, f) = (config.hidden_size, config.intermediate_size);
        let embed = src.load(
            &format!("{prefix}embed_tokens.weight"),
            &[config.vocab_size, h],
            dtype,
            device,
        )?;
        let embed_positions = if config.learned_positions {
            Some(src.load(
                &format!("{prefix}embed_positions.weight"),
                &[config.max_position_embeddings, h],
                dtype,
                device,
            )?)
        } else if config.sinusoidal_positions {
            let n = config.max_position_embeddings;
            let table = super::arch::xglm::sinusoidal_positions(n, h);
            Some(Tensor::from_vec(table, (n, h), device)?.to_dtype(dtype)?)
        } else {
            None
        };
        let embed_norm = config
            .embedding_norm
            .then(|| RmsNorm::load(src, &format!("{prefix}embed_norm.weight"), h, config, &ctx))
            .transpose()?;
        let alibi_slopes: Option<Arc<[f32]>> = config
            .alibi
            .then(|| super::arch::bloom::alibi_slopes(config.num_heads).into());
        let mut attention_kinds: Vec<LayerAttention> = Vec::new();
        let mut layers = Vec::with_capacity(config.num_layers);
        for (i, attention_kind) in config.layers.iter().enumerate() {
            let kind = match attention_kinds.iter().position(|k| k == attention_kind) {
                Some(k) => k,
                None => {
                    attention_kinds.push(attention_kind.clone());
                    attention_kinds.len() - 1
                }
            };
            let p = format!("{prefix}layers.{i}.");
            let norm = |name: &str, size: usize| {
                RmsNorm::load(src, &format!("{p}{name}.weight"), size, config, &ctx)
            };
            let [input_norm, attention_out_norm, mlp_norm, mlp_out_norm] =
                layer_norm_names(config.norm_layout_of(attention_kind.mixer))
                    .map(|name| name.map(|name| norm(name, h)).transpose());
            // The MLP's activation (with its own parameters in xIELU's case); Gemma 4's
            // per-layer block applies the same one.
            let activation = LayerActivation::load(config, src, &p)?;
            let heads = config.heads_of(attention_kind);
            let head_dim = heads.head_dim;
            let q_out = config.num_heads * head_dim;
            let kv_out = heads.kv_heads * head_dim;
            let kv = config.kv_projection(i, attention_kind);
            let own_kv = kv != KvProjection::Reused;
            let qk_norms = || -> Result<_> {
                Ok(match config.qk_norm {
                    QkNorm::Off => (None, None),
                    QkNorm::PerHead => (
                        Some(norm("self_attn.q_norm", head_dim)?),
                        own_kv
                            .then(|| norm("self_attn.k_norm", head_dim))
                            .transpose()?,
                    ),
                    QkNorm::AllHeads => (
                        Some(norm("self_attn.q_norm", q_out)?),
                        Some(norm("self_attn.k_norm", kv_out)?),
                    ),
                })
            };
            let bias = config.qkv_bias;
            let fused_gate_up = config.fused_projections || config.fused_gate_up;
            let (mut qkv_parts, mut gate_up_parts) = if config.fused_projections {
                (
                    vec![(format!("{p}self_attn.qkv_proj"), q_out + 2 * kv_out)],
                    if config.mlp_gated {
                        vec![(format!("{p}mlp.gate_up_proj"), 2 * f)]
                    } else {
                        vec![(format!("{p}mlp.up_proj"), f)]
                    },
                )
            } else {
                let kv_parts = [
                    (format!("{p}self_attn.k_proj"), kv_out),
                    (format!("{p}self_attn.v_proj"), kv_out),
                ];
                (
                    std::iter::once((format!("{p}self_attn.q_proj"), q_out))
                        .chain(kv_parts.into_iter().take(kv.count()))
                        .collect(),
                    if config.mlp_gated {
                        vec![
                            (format!("{p}mlp.gate_proj"), f),
                            (format!("{p}mlp.up_proj"), f),
                        ]
                    } else {
                        vec![(format!("{p}mlp.up_proj"), f)]
                    },
                )
            };
            if fused_gate_up && config.mlp_gated {
                gate_up_parts = vec![(format!("{p}mlp.gate_up_proj"), 2 * f)];
            }
            if config.attention_output_gate {
                qkv_parts.push((format!("{p}{QUERY_GATE}"), q_out));
            }
            let mixer = match (&config.linear_attention, &config.short_conv) {
                (Some(dims), _) if attention_kind.mixer == LayerMixer::LinearAttention => {
                    Mixer::DeltaNet(GatedDeltaNet::load(src, &p, config, dims, &ctx)?)
                }
                (_, Some(conv)) if attention_kind.mixer == LayerMixer::ShortConv => {
                    Mixer::ShortConv(ShortConv::load(src, &p, config, conv, &ctx)?)
                }
                _ => {
                    let (q_norm, k_norm) = qk_norms()?;
                    Mixer::Attention(Attention {
                        qkv: linear(src, &qkv_parts, h, bias, &ctx)?,
                        o: linear(
                            src,
                            &[(format!("{p}self_attn.o_proj"), h)],
                            q_out,
                            config.linear_bias || config.o_bias,
                            &ctx,
                        )?,
                        q_norm,
                        k_norm,
                        qk_norm_all_heads: config.qk_norm == QkNorm::AllHeads,
                        num_heads: config.num_heads,
                        num_kv_heads: heads.kv_heads,
                        head_dim,
                        scale: config.attention_scale,
                        softcap: config.attn_logit_softcapping,
                        clip: config.qkv_clip,
                        alibi: alibi_slopes.clone(),
                        sinks: config
                            .attention_sinks
                            .then(|| -> Result<_> {
                                let name = format!("{p}self_attn.sinks");
                                let host: Vec<f32> = src
                                    .load(&name, &[config.num_heads], DType::F32, &Device::Cpu)?
                                    .to_vec1()?;
                                let shape = (1, config.num_heads, 1, 1);
                                let on_device = Tensor::from_slice(&host, shape, device)?;
                                Ok((host.into(), on_device))
                            })
                            .transpose()?,
                        output_gate: config.attention_output_gate,
                        head_gate: config
                            .attention_head_gate
                            .then(|| {
                                let name = format!("{p}self_attn.gate_proj");
                                linear(src, &[(name, config.num_heads)], h, false, &ctx)
                            })
                            .transpose()?,
                        value_norm: (config.value_norm && own_kv)
                            .then(|| RmsNorm::unweighted(head_dim, config.rms_norm_eps, &ctx))
                            .transpose()?,
                        kv,
                    })
                }
            };
            let per_layer_input = config
                .per_layer_input
                .map(|ple| -> Result<_> {
                    Ok(PerLayerBlock {
                        gate: linear(
                            src,
                            &[(format!("{p}per_layer_input_gate"), ple.width)],
                            h,
                            false,
                            &ctx,
                        )?,
                        projection: linear(
                            src,
                            &[(format!("{p}per_layer_projection"), h)],
                            ple.width,
                            false,
                            &ctx,
                        )?,
                        norm: norm("post_per_layer_input_norm", h)?,
                        activation,
                    })
                })
                .transpose()?;
            let scalar = config
                .layer_scalar
                .then(|| -> Result<f64> {
                    let name = format!("{p}layer_scalar");
                    let value: Vec<f32> =
                        src.load(&name, &[1], DType::F32, &Device::Cpu)?.to_vec1()?;
                    Ok(f64::from(value[0]))
                })
                .transpose()?;
            layers.push(Layer {
                input_norm: input_norm?,
                attention_out_norm: attention_out_norm?,
                mlp_norm: mlp_norm?,
                mlp_out_norm: mlp_out_norm?,
                mixer,
                mlp: match &config.experts {
                    Some(experts) => LayerMlp::Experts(Box::new(MoeMlp::load(
                        src, &p, config, experts, activation, &ctx,
                    )?)),
                    None => LayerMlp::Dense(Mlp {
                        gate_up: linear(src, &gate_up_parts, h, config.linear_bias, &ctx)?,
                        down: linear(
                            src,
                            &[(format!("{p}mlp.down_proj"), h)],
                            f,
                            config.linear_bias,
                            &ctx,
                        )?,
                        activation,
                        gated: config.mlp_gated,
                    }),
                },
                kind,
                per_layer_input,
                scalar,
                kv_from: config.kv_source(i),
                keeps_kv: (0..config.num_layers).any(|j| config.kv_source(j) == Some(i)),
            });
        }
        let per_layer_embeddings = config
            .per_layer_input
            .map(|ple| -> Result<_> {
                let all = ple.width * config.num_layers;
                Ok(PerLayerEmbeddings {
                    table: src.load(
                        &format!("{prefix}embed_tokens_per_layer.weight"),
                        &[ple.vocab, all],
                        dtype,
                        device,
                    )?,
                    projection: linear(
                        src,
                        &[(format!("{prefix}per_layer_model_projection"), all)],
                        h,
                        false,
                        &ctx,
                    )?,
                    norm: RmsNorm::load(
                        src,
                        &format!("{prefix}per_layer_projection_norm.weight"),
                        ple.width,
                        config,
                        &ctx,
                    )?,
                    width: ple.width,
                })
            })
            .transpose()?;
        let final_norm = RmsNorm::load(src, &format!("{prefix}norm.weight"), h, config, &ctx)?;
        let lm_head = ["lm_head.weight", "language_model.lm_head.weight"]
            .into_iter()
            .find(|name| src.contains(name))
            .map(|name| src.load(name, &[config.output_rows(), h], dtype, device))
            .transpose()?;
        Ok(Self {
            config: config.clone(),
            embed,
            embed_positions,
            embed_norm,
            per_layer_embeddings,
            layers,
            final_norm,
            lm_head,
            attention_kinds,
            cpu_kernels: ctx.has_cpu_kernels(),
            // The kernel reads gate and up side by side; a non-gated MLP pools generically.
            capture_kernel: config.mlp_gated && use_cuda_capture(&ctx, config.activation),
            delta_rule_kernel: use_cuda_delta_rule(&ctx, config),
            fused_kernels: use_cuda_fused(&ctx, config.activation),
            stage_clock: None,
            ctx,
        })
    }

    /// Times every stage of the forward passes on `clock` from now on (`None`: stops). The
    /// device is synchronised around each stage, which slows the passes: for benchmarks only.
    pub fn set_stage_clock(&mut self, clock: Option<Arc<StageClock>>) {
        self.stage_clock = clock;
    }

    /// Pools NAS and NAV with the capture kernel wherever the generic ops run (off: with the
    /// generic ops). On by default on CUDA once checked at load; tests turn it on on the CPU,
    /// where the kernel's definition in Rust runs in its place, to check how the decoder uses
    /// it. Ignored while the CPU kernels are on.
    pub fn set_capture_kernel(&mut self, enabled: bool) {
        self.capture_kernel = enabled;
    }

    /// Runs linear attention's recurrence with the delta rule kernel wherever the generic ops
    /// run (off: token by token with tensor ops). On by default on CUDA once checked at load;
    /// tests turn it on on the CPU, where the kernel's definition in Rust runs in its place.
    /// Ignored while the CPU kernels are on, and for models without linear attention.
    pub fn set_delta_rule_kernel(&mut self, enabled: bool) {
        self.delta_rule_kernel = enabled;
    }

    /// Computes the MLP's `act(gate)·up`, attention's head layout and its softmax with the
    /// fused kernels wherever the generic ops run (off: with candle's ops). On by default on CUDA once
    /// checked at load; tests turn them on on the CPU, where their definitions in Rust run in
    /// their place. Ignored while the CPU kernels are on.
    pub fn set_fused_kernels(&mut self, enabled: bool) {
        self.fused_kernels = enabled;
    }

    /// Whether the generic path uses the fused kernels (see [`Self::set_fused_kernels`]).
    pub fn uses_fused_kernels(&self) -> bool {
        self.fused_kernels && !self.cpu_kernels
    }

    /// The kernels a forward pass uses beside candle's ops.
    fn kernels(&self) -> Kernels {
        Kernels {
            cpu: self.cpu_kernels,
            capture: self.uses_capture_kernel(),
            fused: self.uses_fused_kernels(),
        }
    }

    /// Whether the generic path pools with the capture kernel (see [`Self::set_capture_kernel`]).
    pub fn uses_capture_kernel(&self) -> bool {
        self.capture_kernel && !self.cpu_kernels
    }

    /// How NAS and NAV are pooled here, in words (for benchmarks and logs).
    pub fn capture_path(&self) -> &'static str {
        if self.cpu_kernels {
            "CPU kernels"
        } else if self.uses_capture_kernel() {
            "CUDA capture kernel"
        } else {
            "generic tensor ops"
        }
    }

    /// How linear attention's recurrence runs here, in words (for benchmarks and logs); `None`
    /// for a model without linear attention.
    pub fn delta_rule_path(&self) -> Option<&'static str> {
        self.config.linear_attention.as_ref()?;
        Some(if self.cpu_kernels {
            "CPU kernels"
        } else if self.delta_rule_kernel {
            "CUDA delta rule kernel"
        } else {
            "tensor ops, token by token"
        })
    }

    /// The CPU kernels are on by default for f32 on the CPU; off, the CPU runs the generic
    /// tensor ops the GPUs use (padded batches), which is how the two are checked against
    /// each other. Ignored elsewhere.
    pub fn set_cpu_kernels(&mut self, enabled: bool) {
        self.cpu_kernels = enabled && self.ctx.has_cpu_kernels();
    }

    /// Lays out a batch for this decoder: packed for the CPU kernels, right-padded otherwise.
    pub fn batch_input(&self, sentences: &[SentenceInput<'_>]) -> Result<BatchInput> {
        let device = &self.ctx.device;
        let b = sentences.len();
        let longest = sentences.iter().map(|s| s.ids.len()).max().unwrap_or(0);
        let packed = self.cpu_kernels;
        let mut spans = Vec::with_capacity(b);
        let mut start = 0;
        for sentence in sentences {
            spans.push(Span {
                start,
                len: sentence.ids.len(),
            });
            start += if packed { sentence.ids.len() } else { longest };
        }
        let tokens = start;
        let mut ids = vec![0u32; tokens];
        let mut weights = vec![0f32; tokens];
        let mut last = vec![0f32; tokens];
        for (sentence, span) in sentences.iter().zip(&spans) {
            let range = span.start..span.start + span.len;
            if sentence.weights.len() != span.len || sentence.last.len() != span.len {
                return Err(EngineError::Device(
                    "pooling weights do not match the sentence".into(),
                ));
            }
            ids[range.clone()].copy_from_slice(sentence.ids);
            weights[range.clone()].copy_from_slice(&sentence.weights);
            last[range].copy_from_slice(&sentence.last);
        }
        let device_weights = if packed {
            None
        } else {
            let mut hidden = vec![0f32; b * 2 * longest];
            for (row, span) in spans.iter().enumerate() {
                let range = span.start..span.start + span.len;
                hidden[row * 2 * longest..][..span.len].copy_from_slice(&weights[range.clone()]);
                hidden[(row * 2 + 1) * longest..][..span.len].copy_from_slice(&last[range]);
            }
            Some((
                Tensor::from_slice(&weights, (b, 1, longest), device)?,
                Tensor::from_vec(hidden, (b, 2, longest), device)?,
            ))
        };
        let ids = if packed {
            Tensor::from_vec(ids, (1, tokens), device)?
        } else {
            Tensor::from_vec(ids, (b, longest), device)?
        };
        let sink = packed.then(|| Arc::new(PoolSink::new(self.capture_layout(), b)));
        Ok(BatchInput {
            ids,
            packed,
            sink,
            pooling: Arc::new(HostPooling {
                spans: spans.into(),
                weights,
                last,
            }),
            device_weights,
            routed_only: false,
        })
    }

    pub fn config(&self) -> &ModelConfig {
        &self.config
    }

    pub fn device(&self) -> &Device {
        &self.ctx.device
    }

    pub fn dtype(&self) -> DType {
        self.ctx.dtype
    }

    /// Whether [`Self::next_token_logprobs`] can run (an `lm_head`, or tied embeddings).
    pub fn has_lm_head(&self) -> bool {
        self.lm_head.is_some() || self.config.tie_word_embeddings
    }

    /// Where each pooled state sits in a sentence's row of [`Self::forward_capture`].
    pub fn capture_layout(&self) -> CaptureLayout {
        CaptureLayout {
            layers: self.config.num_layers,
            d_ff: self.config.neurons_per_layer(),
            d_model: self.config.hidden_size,
        }
    }

    /// Runs a batch and returns only pooled states, reduced with the pooling weights layer by
    /// layer on the device: one f32 row per sentence, `[b, width]` as [`CaptureLayout`] says
    /// (`nas | nav | hidden_pooled | hidden_last`), so one copy brings a batch to the host.
    pub fn forward_capture(&self, input: &BatchInput, nav_source: NavSource) -> Result<Tensor> {
        let mut nas = Vec::with_capacity(self.layers.len());
        let mut nav = Vec::with_capacity(self.layers.len());
        let mut hidden = Vec::with_capacity(self.layers.len() + 1);
        self.run_layers(input, Some(nav_source), &mut |out: LayerOutput| {
            if let Some(pooled) = out.mlp_pooled {
                nas.push(pooled.i((.., 0..1, ..))?.flatten_from(1)?);
                nav.push(pooled.i((.., 1..2, ..))?.flatten_from(1)?);
            }
            if let Some(pooled) = out.hidden_pooled {
                hidden.push(pooled);
            }
            Ok(())
        })?;
        if let Some(sink) = &input.sink {
            // The CPU kernels wrote every pooled state in place.
            let rows = std::mem::take(&mut *sink.rows.lock().map_err(|_| {
                EngineError::Device("a kernel panicked while writing pooled states".into())
            })?);
            let width = sink.layout.width();
            return Ok(Tensor::from_vec(
                rows,
                (input.pooling.spans.len(), width),
                &self.ctx.device,
            )?);
        }
        let rows = |k: usize| {
            hidden
                .iter()
                .map(|h| h.i((.., k..k + 1, ..))?.flatten_from(1))
                .collect::<candle_core::Result<Vec<_>>>()
        };
        let parts = [nas, nav, rows(0)?, rows(1)?].concat();
        timed(
            self.stage_clock.as_deref(),
            "pooled states gathered into rows",
            || Ok(Tensor::cat(&parts, 1)?),
        )
    }

    /// The forward pass without capture (no pools, no NAS/NAV), returning the last residual
    /// stream: benchmarks set it beside [`Self::forward_capture`] to tell the capture's cost
    /// from the model's own.
    pub fn forward_plain(&self, input: &BatchInput) -> Result<Tensor> {
        self.run_layers(input, None, &mut |_| Ok(()))
    }

    /// Natural-log probability of each next token, `[b, t-1]` f32, for bits-per-byte.
    pub fn next_token_logprobs(&self, ids: &Tensor) -> Result<Tensor> {
        let head = match (&self.lm_head, self.config.tie_word_embeddings) {
            (Some(head), _) => head,
            (None, true) => &self.embed,
            (None, false) => {
                return Err(EngineError::weights(
                    "lm_head.weight",
                    "the checkpoint has no lm_head and does not tie embeddings",
                ));
            }
        };
        let hidden = self.run_layers(&BatchInput::unpooled(ids)?, None, &mut |_| Ok(()))?;
        let (b, t, _) = hidden.dims3()?;
        let normed = self.final_norm.forward(&hidden)?;
        let mut logits = normed.broadcast_matmul(&head.t()?)?.to_dtype(DType::F32)?;
        if let Some(scale) = self.config.logit_scale {
            logits = (logits * scale)?;
        }
        if let Some(cap) = self.config.final_logit_softcapping {
            logits = ((logits / cap)?.tanh()? * cap)?;
        }
        let logprobs = candle_nn::ops::log_softmax(&logits.i((.., 0..t - 1, ..))?, D::Minus1)?;
        let targets = ids.i((.., 1..t))?.contiguous()?;
        // A pruned head (Apertus 1.5) has no probability for the ids after it.
        let rows = logits.dim(2)?;
        let past_head = targets.max_all()?.to_scalar::<u32>()? as usize;
        if past_head >= rows {
            return Err(EngineError::Device(format!(
                "token id {past_head} has no row in the output head ({rows} rows): its \
                 probability cannot be read"
            )));
        }
        let targets = targets.unsqueeze(2)?;
        Ok(logprobs.gather(&targets, 2)?.reshape((b, t - 1))?)
    }

    /// Embeddings, then each layer; returns the last residual stream `[rows, cols, d_model]`.
    /// With `capture`, `on_layer` gets the pooled residual stream after the embeddings and
    /// after each layer, and each layer's pooled NAS and NAV.
    fn run_layers(
        &self,
        input: &BatchInput,
        capture: Option<NavSource>,
        on_layer: &mut dyn FnMut(LayerOutput) -> Result<()>,
    ) -> Result<Tensor> {
        let kernels = self.kernels();
        if input.packed && !kernels.cpu {
            return Err(EngineError::Device(
                "a packed batch needs the CPU kernels".into(),
            ));
        }
        let clock = self.stage_clock.as_deref();
        let h = timed(clock, "embeddings", || self.embed_tokens(input))?;
        let per_layer_inputs = self
            .per_layer_embeddings
            .as_ref()
            .map(|ple| timed(clock, "embeddings", || ple.mix(&h, &input.ids)))
            .transpose()?;
        // The residual stream stays in f32 with bf16/f16 weights: rounding it to 8 bits of
        // mantissa at every add is most of what moves a bf16 run's NAS decisions away from f32.
        let h = h.to_dtype(DType::F32)?;
        let pool = capture.map(|nav_source| (input, nav_source));
        let first_norm = self
            .layers
            .first()
            .and_then(|layer| layer.input_norm.as_ref());
        let step = self.residual(&h, None, first_norm, input, pool.map(|_| 0))?;
        on_layer(LayerOutput {
            hidden_pooled: step.pooled,
            mlp_pooled: None,
        })?;
        let mut h = step.h;
        let mut normed = step.normed;
        let longest = input.pooling.spans.iter().map(|s| s.len).max().unwrap_or(0);
        let positions = if input.packed {
            longest
        } else {
            input.ids.dim(1)?
        };
        // Rotary tables and masks for the kinds of layer that attend (none for the linear
        // attention and convolution layers).
        let tables = timed(clock, "attention: rotary tables and masks", || {
            self.attention_kinds
                .iter()
                .map(|kind| {
                    kind.mixer
                        .is_attention()
                        .then(|| {
                            AttentionTables::new(
                                kind,
                                positions,
                                &self.config,
                                &self.ctx,
                                kernels.cpu,
                            )
                        })
                        .transpose()
                })
                .collect::<Result<Vec<_>>>()
        })?;
        let two_norms = self.config.norm_layout == NormLayout::ParallelTwoNorms;
        let mut kept_kv: Vec<Option<KeysValues>> = vec![None; self.layers.len()];
        for (i, layer) in self.layers.iter().enumerate() {
            let attn_in = normed_or_raw(
                normed.take(),
                &h,
                layer.input_norm.is_some(),
                self.ctx.dtype,
            )?;
            // GPT-NeoX, Falcon 40B: the MLP's own norm of the layer's input, before attention
            // adds to it.
            let parallel_mlp_in = if two_norms {
                let step = self.residual(&h, None, layer.mlp_norm.as_ref(), input, None)?;
                Some(normed_or_raw(step.normed, &h, true, self.ctx.dtype)?)
            } else {
                None
            };
            let mut attn_out = match &layer.mixer {
                Mixer::Attention(attention) => {
                    let tables = tables[layer.kind].as_ref().ok_or_else(|| {
                        EngineError::Device("an attention layer without rotary tables".into())
                    })?;
                    let reused = layer.kv_from.and_then(|j| kept_kv[j].as_ref());
                    let (out, kv) =
                        attention.forward(&attn_in, tables, input, kernels, clock, reused)?;
                    if layer.keeps_kv {
                        kept_kv[i] = Some(kv);
                    }
                    out
                }
                Mixer::DeltaNet(net) => timed(clock, "linear attention", || {
                    net.forward(
                        &attn_in,
                        &input.pooling.spans,
                        kernels.cpu,
                        self.delta_rule_kernel,
                    )
                })?,
                Mixer::ShortConv(conv) => timed(clock, "short convolution", || {
                    conv.forward(&attn_in, &input.pooling.spans, kernels.cpu)
                })?,
            };
            if let Some(norm) = &layer.attention_out_norm {
                attn_out = timed(clock, NORM_STAGE, || norm.forward(&attn_out))?;
            }
            if let Some(scale) = self.config.residual_scale {
                attn_out = attn_out.affine(scale, 0.0)?;
            }
            let mlp_norm = layer.mlp_norm.as_ref().filter(|_| !two_norms);
            let step = self.residual(&h, Some(&attn_out), mlp_norm, input, None)?;
            h = step.h;
            // Side by side (Cohere, StableLM, GPT-NeoX, Falcon): the MLP reads the layer's
            // input, and both outputs are added (attention's first, as transformers does).
            let mlp_in = match (parallel_mlp_in, self.config.norm_layout) {
                (Some(mlp_in), _) => mlp_in,
                (None, NormLayout::Parallel) => attn_in,
                (None, _) => {
                    normed_or_raw(step.normed, &h, layer.mlp_norm.is_some(), self.ctx.dtype)?
                }
            };
            let (mut mlp_out, mlp_pooled) = match &layer.mlp {
                LayerMlp::Dense(mlp) => {
                    let (product, pooled) = mlp.forward(&mlp_in, pool, kernels, i, clock)?;
                    let down = timed(clock, "MLP: down projection", || {
                        Ok(mlp.down.forward(&product)?)
                    })?;
                    (down, pooled)
                }
                LayerMlp::Experts(mixture) => timed(clock, "MLP: mixture of experts", || {
                    mixture.forward(&mlp_in, &h, pool, i)
                })?,
            };
            if let Some(norm) = &layer.mlp_out_norm {
                mlp_out = timed(clock, NORM_STAGE, || norm.forward(&mlp_out))?;
            }
            if let Some(scale) = self.config.residual_scale {
                mlp_out = mlp_out.affine(scale, 0.0)?;
            }
            let next_norm = self
                .layers
                .get(i + 1)
                .and_then(|next| next.input_norm.as_ref());
            let slot = pool.map(|_| i + 1);
            let step = if layer.per_layer_input.is_none() && layer.scalar.is_none() {
                self.residual(&h, Some(&mlp_out), next_norm, input, slot)?
            } else {
                // Gemma 4: the per-layer embedding's block and the layer's scalar come after
                // the MLP's residual add; the next norm and the pools after them.
                let added = self.residual(&h, Some(&mlp_out), None, input, None)?;
                let mut h = added.h;
                if let (Some(block), Some(inputs)) = (&layer.per_layer_input, &per_layer_inputs) {
                    let delta = timed(clock, "per-layer embeddings", || {
                        block.forward(&h, &inputs.i((.., .., i, ..))?, self.ctx.dtype)
                    })?;
                    h = (h + delta.to_dtype(DType::F32)?)?;
                }
                if let Some(scalar) = layer.scalar {
                    h = h.affine(scalar, 0.0)?;
                }
                self.residual(&h, None, next_norm, input, slot)?
            };
            h = step.h;
            normed = step.normed;
            on_layer(LayerOutput {
                hidden_pooled: step.pooled,
                mlp_pooled,
            })?;
        }
        Ok(h)
    }

    /// The token embeddings `[rows, cols, d_model]` in the model's dtype: scaled, with
    /// learned positions added and normed where the model has them.
    fn embed_tokens(&self, input: &BatchInput) -> Result<Tensor> {
        let (rows, cols) = input.ids.dims2()?;
        let mut h = self
            .embed
            .index_select(&input.ids.flatten_all()?, 0)?
            .reshape((rows, cols, self.config.hidden_size))?;
        if let Some(scale) = self.config.embedding_scale {
            // transformers rounds the normalizer to the compute dtype first.
            let scale = Tensor::new(scale as f32, &self.ctx.device)?.to_dtype(self.ctx.dtype)?;
            h = h.broadcast_mul(&scale)?;
        }
        if let Some(positions) = &self.embed_positions {
            h = if input.packed {
                // Sentences one after another: a token's position is its place in its span.
                let mut ids = vec![0u32; rows * cols];
                for span in input.pooling.spans.iter() {
                    let Some(span_ids) = ids.get_mut(span.start..span.start + span.len) else {
                        return Err(EngineError::Device("a span runs past its batch".into()));
                    };
                    for (position, id) in span_ids.iter_mut().enumerate() {
                        *id = position as u32;
                    }
                }
                let ids = Tensor::from_vec(ids, rows * cols, &self.ctx.device)?;
                let added = positions.index_select(&ids, 0)?;
                (h + added.reshape((rows, cols, self.config.hidden_size))?)?
            } else {
                // Right-padded rows: a token's position is its column.
                h.broadcast_add(&positions.narrow(0, 0, cols)?.unsqueeze(0)?)?
            };
        }
        if let Some(norm) = &self.embed_norm {
            h = norm.forward(&h)?;
        }
        Ok(h)
    }

    /// `h + delta` (or `h`), its RMSNorm under `norm`, and with `slot` (0 for the embeddings,
    /// `l + 1` after layer `l`) its pools (pooling weights, last token): `[b, 2, d]`, or with
    /// the CPU kernels written to the batch's sink in the same pass.
    fn residual(
        &self,
        h: &Tensor,
        delta: Option<&Tensor>,
        norm: Option<&RmsNorm>,
        input: &BatchInput,
        slot: Option<usize>,
    ) -> Result<ResidualStep> {
        let clock = self.stage_clock.as_deref();
        if self.cpu_kernels {
            return timed(clock, RESIDUAL_STAGE, || {
                self.residual_cpu_kernel(h, delta, norm, input, slot)
            });
        }
        let h = timed(clock, "residual adds", || {
            Ok(match delta {
                Some(delta) => (h + delta.to_dtype(DType::F32)?)?,
                None => h.clone(),
            })
        })?;
        let normed = timed(clock, NORM_STAGE, || {
            norm.map(|norm| norm.forward(&h)).transpose()
        })?;
        let pooled = timed(clock, "pooled hidden states", || {
            slot.map(|_| {
                let (_, hidden_weights) = device_weights(input)?;
                Ok(hidden_weights.matmul(&h.to_dtype(DType::F32)?.contiguous()?)?)
            })
            .transpose()
        })?;
        Ok(ResidualStep { h, normed, pooled })
    }

    /// [`Self::residual`] by the CPU kernel: the add, the norm and the pools in one pass.
    fn residual_cpu_kernel(
        &self,
        h: &Tensor,
        delta: Option<&Tensor>,
        norm: Option<&RmsNorm>,
        input: &BatchInput,
        slot: Option<usize>,
    ) -> Result<ResidualStep> {
        let host_norm = match norm {
            Some(norm) => Some(norm.host.clone().ok_or_else(|| {
                EngineError::Device("CPU kernels without host norm weights".into())
            })?),
            None => None,
        };
        let (rows, cols, d) = h.dims3()?;
        let n = rows * cols;
        let op = cpu_ops::Residual {
            add: delta.is_some(),
            norm: host_norm,
            pool: slot
                .map(|slot| Ok::<_, EngineError>((input.pooling.clone(), sink(input)?, slot)))
                .transpose()?,
            spans: input.pooling.spans.clone(),
        };
        let flat_h = h.reshape((n, d))?;
        let out = match delta {
            Some(delta) => flat_h.apply_op2_no_bwd(&delta.reshape((n, d))?, &op)?,
            None => flat_h.apply_op1_no_bwd(&cpu_ops::ResidualStart(op))?,
        };
        Ok(ResidualStep {
            h: out.narrow(0, 0, n * d)?.reshape((rows, cols, d))?,
            normed: norm
                .map(|_| out.narrow(0, n * d, n * d)?.reshape((rows, cols, d)))
                .transpose()?,
            pooled: None,
        })
    }
}

/// Whether to use one of our CUDA kernels: on CUDA, unless the environment `variable` is
/// `generic` (benchmarks compare the two paths), and only where `verify` finds that the kernel
/// agrees with the generic ops on this device; else a warning says why and what runs instead.
fn use_cuda_kernel(
    ctx: &Ctx,
    variable: &str,
    kernel: &str,
    instead: &str,
    verify: impl FnOnce() -> std::result::Result<(), String>,
) -> bool {
    if !ctx.device.is_cuda() || std::env::var_os(variable).is_some_and(|v| v == "generic") {
        return false;
    }
    match verify() {
        Ok(()) => true,
        Err(why) => {
            tracing::warn!("not using the {kernel} ({why}); {instead}");
            false
        }
    }
}

/// Whether to pool with the CUDA capture kernel (`NEURONXA_CUDA_CAPTURE=generic`: not).
fn use_cuda_capture(ctx: &Ctx, activation: Activation) -> bool {
    use_cuda_kernel(
        ctx,
        "NEURONXA_CUDA_CAPTURE",
        "CUDA capture kernel",
        "pooling with the generic ops",
        || cuda_capture::verify(&ctx.device, ctx.dtype, activation),
    )
}

/// Whether to compute the MLP's `act(gate)·up`, attention's head layout and its softmax with
/// the fused CUDA kernels (`NEURONXA_CUDA_FUSED=generic`: not).
fn use_cuda_fused(ctx: &Ctx, activation: Activation) -> bool {
    use_cuda_kernel(
        ctx,
        "NEURONXA_CUDA_FUSED",
        "fused CUDA kernels",
        "running candle's ops",
        || cuda_fused::verify(&ctx.device, ctx.dtype, activation),
    )
}

/// Whether to run the delta rule with the CUDA kernel, for a model with linear attention
/// (`NEURONXA_CUDA_DELTA_RULE=generic`: not).
fn use_cuda_delta_rule(ctx: &Ctx, config: &ModelConfig) -> bool {
    let Some(linear) = &config.linear_attention else {
        return false;
    };
    use_cuda_kernel(
        ctx,
        "NEURONXA_CUDA_DELTA_RULE",
        "CUDA delta rule kernel",
        "running the recurrence with tensor ops",
        || cuda_delta_rule::verify(&ctx.device, linear.key_head_dim),
    )
}

/// The input of attention or the MLP: the residual step's normed stream where the layer has a
/// norm there, else the residual stream itself (OLMo 2).
fn normed_or_raw(
    normed: Option<Tensor>,
    h: &Tensor,
    has_norm: bool,
    dtype: DType,
) -> Result<Tensor> {
    if !has_norm {
        return Ok(h.to_dtype(dtype)?);
    }
    normed.ok_or_else(|| EngineError::Device("the residual step lost a layer's norm".into()))
}

/// The packed layout's sink for pooled states.
fn sink(input: &BatchInput) -> Result<Arc<PoolSink>> {
    input
        .sink
        .clone()
        .ok_or_else(|| EngineError::Device("this batch has no sink for pooled states".into()))
}

/// The padded layout's pooling weights on the device.
fn device_weights(input: &BatchInput) -> Result<&(Tensor, Tensor)> {
    input
        .device_weights
        .as_ref()
        .ok_or_else(|| EngineError::Device("this batch has no pooling weights".into()))
}

/// The kernels a forward pass uses beside candle's tensor ops.
#[derive(Debug, Clone, Copy)]
struct Kernels {
    /// The CPU kernels of [`cpu_ops`] (f32 on the CPU); the others do not apply then.
    cpu: bool,
    /// NAS and NAV pooled by the kernel of [`cuda_capture`].
    capture: bool,
    /// The MLP's `act(gate)·up`, attention's head layout and its softmax by the kernels of
    /// [`cuda_fused`].
    fused: bool,
}

struct ResidualStep {
    h: Tensor,
    normed: Option<Tensor>,
    pooled: Option<Tensor>,
}

struct LayerOutput {
    /// `[b, 2, d_model]`: the residual stream pooled and at the last token.
    hidden_pooled: Option<Tensor>,
    /// `[b, 2, d_ff]`: pooled NAS and NAV.
    mlp_pooled: Option<Tensor>,
}

impl PerLayerEmbeddings {
    /// Each token's input for every layer, `[rows, cols, layers, width]` in the compute dtype:
    /// the normed projection of its embedding `h` (already scaled) and its row of the table
    /// (scaled by √width), averaged over √2 as transformers does.
    fn mix(&self, h: &Tensor, ids: &Tensor) -> Result<Tensor> {
        let (rows, cols, hidden) = h.dims3()?;
        let shape = (rows, cols, (), self.width);
        let projected = (self.projection.forward(h)? * (hidden as f64).powf(-0.5))?;
        let projected = self.norm.forward(&projected.reshape(shape)?)?;
        let table = self
            .table
            .index_select(&ids.flatten_all()?, 0)?
            .reshape(shape)?;
        // transformers rounds the scale to the table's dtype first.
        let scale = Tensor::new((self.width as f32).sqrt(), h.device())?.to_dtype(table.dtype())?;
        let table = table.broadcast_mul(&scale)?;
        Ok(((projected + table)? * 0.5f64.sqrt())?)
    }
}

impl PerLayerBlock {
    /// `norm(projection(act(gate(h)) · input))` for the residual stream `h` (f32) and the
    /// layer's per-layer input `[rows, cols, width]`.
    fn forward(&self, h: &Tensor, input: &Tensor, dtype: DType) -> Result<Tensor> {
        let gate = self.gate.forward(&h.to_dtype(dtype)?)?;
        let mixed = self.activation.apply(&gate)?.mul(input)?;
        self.norm.forward(&self.projection.forward(&mixed)?)
    }
}

impl Mlp {
    /// What NAS reads the sign of: the gate where the activation is positive exactly where it
    /// is (the sign of a value that rounding cannot move), else the activation.
    fn nas_sign<'a>(&self, gate: &'a Tensor, act: &'a Tensor) -> &'a Tensor {
        if self.activation.positive_with_input() {
            gate
        } else {
            act
        }
    }

    /// The CPU kernel's one pass: `act(gate)·up` (or `act(gate)` when not gated, `up` then
    /// the same tensor) and the NAS and NAV pools of `layer` into the batch's sink.
    fn fused(
        &self,
        gate: &Tensor,
        up: &Tensor,
        input: &BatchInput,
        nav_source: NavSource,
        layer: usize,
    ) -> Result<Tensor> {
        Ok(gate.apply_op2_no_bwd(
            up,
            &cpu_ops::FusedMlp {
                gated: self.gated,
                activation: self.activation,
                nav_source,
                pool: input.pooling.clone(),
                sink: sink(input)?,
                layer,
                neuron_offset: 0,
            },
        )?)
    }

    /// `act(gate)·up` for the down projection and, when capturing, the pooled NAS and NAV
    /// of `layer` (`[b, 2, d_ff]`, or with the CPU kernels written to the batch's sink).
    fn forward(
        &self,
        x: &Tensor,
        pool: Option<(&BatchInput, NavSource)>,
        kernels: Kernels,
        layer: usize,
        clock: Option<&StageClock>,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let gate_up = timed(clock, "MLP: gate/up projection", || {
            Ok(self.gate_up.forward(x)?)
        })?;
        if kernels.cpu && pool.is_some() {
            return timed(
                clock,
                "MLP: activation, NAS/NAV pooling (CPU kernel)",
                || self.forward_after_projection(gate_up, pool, kernels, layer, None),
            );
        }
        self.forward_after_projection(gate_up, pool, kernels, layer, clock)
    }

    /// [`Self::forward`] from the gate/up projection on.
    fn forward_after_projection(
        &self,
        gate_up: Tensor,
        pool: Option<(&BatchInput, NavSource)>,
        kernels: Kernels,
        layer: usize,
        clock: Option<&StageClock>,
    ) -> Result<(Tensor, Option<Tensor>)> {
        if !self.gated {
            // METHOD §1 for non-gated MLPs: the neurons are act(fc_in(h)), which is also what
            // goes on to the down projection (so both NAV sources are |act|).
            if let (Some((input, nav_source)), true) = (pool, kernels.cpu) {
                let (rows, cols, f) = gate_up.dims3()?;
                let fc_in = gate_up.reshape((rows * cols, f))?;
                let act = self.fused(&fc_in, &fc_in, input, nav_source, layer)?;
                return Ok((act.reshape((rows, cols, f))?, None));
            }
            let act = self.activation.apply(&gate_up)?;
            let Some((input, _)) = pool else {
                return Ok((act, None));
            };
            let (pool_weights, _) = device_weights(input)?;
            let sign = self.nas_sign(&gate_up, &act);
            let pooled = generic_pools(sign, &act, &act, pool_weights, NavSource::Activation)?;
            return Ok((act, Some(pooled)));
        }
        let (rows, cols, f2) = gate_up.dims3()?;
        let f = f2 / 2;
        let gate = gate_up.narrow(2, 0, f)?;
        let up = gate_up.narrow(2, f, f)?;
        match pool {
            Some((input, nav_source)) if kernels.cpu => {
                let n = rows * cols;
                let gate_up = gate_up.reshape((n, 2 * f))?;
                let (gate, up) = (gate_up.narrow(1, 0, f)?, gate_up.narrow(1, f, f)?);
                let product = self.fused(&gate, &up, input, nav_source, layer)?;
                Ok((product.reshape((rows, cols, f))?, None))
            }
            _ => {
                let kernel_activation = KernelActivation::of(&self.activation);
                let (act, product) = timed(clock, "MLP: activation × up", || {
                    match kernel_activation.filter(|_| kernels.fused) {
                        Some(activation) => Ok((
                            None,
                            gate_up
                                .contiguous()?
                                .apply_op1_no_bwd(&cuda_fused::GatedProduct { activation })?,
                        )),
                        None => {
                            let act = self.activation.apply(&gate)?;
                            let product = self.activation.gated_product(&act, &up)?;
                            Ok((Some(act), product))
                        }
                    }
                })?;
                let Some((input, nav_source)) = pool else {
                    return Ok((product, None));
                };
                let (pool_weights, _) = device_weights(input)?;
                let pooled = timed(clock, "MLP: NAS/NAV pooling", || {
                    match kernel_activation.filter(|_| kernels.capture) {
                        Some(activation) => {
                            capture_pool(&gate_up, pool_weights, activation, nav_source)
                        }
                        None => {
                            let act = match act {
                                Some(act) => act,
                                None => self.activation.apply(&gate)?,
                            };
                            let sign = self.nas_sign(&gate, &act);
                            generic_pools(sign, &act, &product, pool_weights, nav_source)
                        }
                    }
                })?;
                Ok((product, Some(pooled)))
            }
        }
    }
}

/// Pooled NAS and NAV `[b, 2, f]` (f32) of a gated MLP with the capture kernel, from its
/// gate/up projection `[b, t, 2f]` and pooling weights `[b, 1, t]`.
fn capture_pool(
    gate_up: &Tensor,
    pool_weights: &Tensor,
    activation: KernelActivation,
    nav_source: NavSource,
) -> Result<Tensor> {
    Ok(gate_up.contiguous()?.apply_op2_no_bwd(
        pool_weights,
        &CapturePool {
            activation,
            nav_source,
        },
    )?)
}

/// Pooled NAS and NAV `[b, 2, f]` (f32) with the generic ops: `sign` (whose values above 0
/// are the active neurons: the gate, or the activation itself, see
/// [`LayerActivation::positive_with_input`]), `act` and `product` (`act·up`) `[b, t, f]`,
/// pooling weights `[b, 1, t]`.
pub(super) fn generic_pools(
    sign: &Tensor,
    act: &Tensor,
    product: &Tensor,
    pool_weights: &Tensor,
    nav_source: NavSource,
) -> Result<Tensor> {
    let magnitude = match nav_source {
        NavSource::Activation => act.abs()?,
        NavSource::ActivationTimesUp => product.abs()?,
    };
    // A device-side zero: comparing with an f64 scalar would copy it from the host in every
    // layer.
    let zero = Tensor::zeros((), sign.dtype(), sign.device())?.broadcast_as(sign.shape())?;
    let active = sign.gt(&zero)?.to_dtype(DType::F32)?;
    let nas = pool_weights.matmul(&active)?;
    let nav = pool_weights.matmul(&magnitude.to_dtype(DType::F32)?.contiguous()?)?;
    Ok(Tensor::cat(&[nas, nav], 1)?)
}

/// Rotary tables and the additive attention mask for one kind of layer: on the host for the
/// CPU kernels, as tensors for the generic ops.
struct AttentionTables {
    rope: Arc<RopeTable>,
    window: Option<usize>,
    /// Generic ops only: cos and sin `[t, d/2]`, and the `[t, t]` mask (0 where attention is
    /// allowed, -inf elsewhere: causal, optionally windowed).
    tensors: Option<(Tensor, Tensor, Tensor)>,
}

impl AttentionTables {
    fn new(
        kind: &LayerAttention,
        t: usize,
        cfg: &ModelConfig,
        ctx: &Ctx,
        host_only: bool,
    ) -> Result<Self> {
        // Partial rotary: the frequencies of the turned dimensions, then 0 (cos 1, sin 0) for
        // the others, which `PartialRotaryWeights` moved to the end of each half.
        let head_dim = cfg.heads_of(kind).head_dim;
        let rotary_dims = cfg.partial_rotary.unwrap_or(head_dim);
        let inv_freq = inverse_frequencies(&kind.rope, rotary_dims);
        let turned = inv_freq.len();
        let half = head_dim / 2;
        // LongRoPE's and YaRN's attention factor multiplies cos and sin of the turned pairs.
        let factor = rotary_attention_factor(&kind.rope) as f32;
        // f32 as transformers computes them: position × inverse frequency, then cos and sin.
        let mut cos = Vec::with_capacity(t * half);
        let mut sin = Vec::with_capacity(t * half);
        for pos in 0..t {
            for &f in &inv_freq {
                let angle = pos as f32 * f;
                cos.push(angle.cos() * factor);
                sin.push(angle.sin() * factor);
            }
            cos.extend(std::iter::repeat_n(1.0, half - turned));
            sin.extend(std::iter::repeat_n(0.0, half - turned));
        }
        let tensors = if host_only {
            None
        } else {
            // ALiBi (BLOOM) adds `slope · j` for key j, one slope per head: `[heads, t, t]`.
            let slopes = if cfg.alibi {
                super::arch::bloom::alibi_slopes(cfg.num_heads)
            } else {
                vec![0.0]
            };
            let mask: Vec<f32> = slopes
                .iter()
                .flat_map(|&slope| {
                    (0..t).flat_map(move |i| {
                        (0..t).map(move |j| {
                            let visible = j <= i && kind.sliding_window.is_none_or(|w| i - j < w);
                            if visible {
                                slope * j as f32
                            } else {
                                f32::NEG_INFINITY
                            }
                        })
                    })
                })
                .collect();
            let mask_shape = if cfg.alibi {
                vec![slopes.len(), t, t]
            } else {
                vec![t, t]
            };
            Some((
                Tensor::from_slice(&cos, (t, half), &ctx.device)?.to_dtype(ctx.dtype)?,
                Tensor::from_slice(&sin, (t, half), &ctx.device)?.to_dtype(ctx.dtype)?,
                Tensor::from_vec(mask, mask_shape, &ctx.device)?,
            ))
        };
        Ok(Self {
            rope: Arc::new(RopeTable {
                cos,
                sin,
                half,
                // Partial rotary on neighbouring pairs (GLM) was made halves at load.
                interleaved: cfg.rope_interleaved && cfg.partial_rotary.is_none(),
            }),
            window: kind.sliding_window,
            tensors,
        })
    }
}

/// `1 / θ^(2i/d)`, rescaled as the config's rope scaling says (transformers' formulas, in f32).
fn inverse_frequencies(rope: &Rope, head_dim: usize) -> Vec<f32> {
    let base = rope.theta as f32;
    let plain = (0..head_dim / 2).map(|i| 1.0 / base.powf((2 * i) as f32 / head_dim as f32));
    match &rope.scaling {
        RopeScaling::None => plain.collect(),
        RopeScaling::NoRotation => vec![0.0; head_dim / 2],
        RopeScaling::Proportional { fraction, factor } => {
            let turned = RopeScaling::proportional_pairs(*fraction, head_dim);
            plain
                .enumerate()
                .map(|(i, f)| if i < turned { f / *factor as f32 } else { 0.0 })
                .collect()
        }
        RopeScaling::Yarn {
            factor,
            original_max_position_embeddings: context,
            beta_fast,
            beta_slow,
            truncate,
            ..
        } => {
            // transformers' `_compute_yarn_parameters`: the ramp's ends in f64, the rest in f32.
            let dim = head_dim as f64;
            let correction = |rotations: f64| {
                dim * (context / (rotations * 2.0 * std::f64::consts::PI)).ln()
                    / (2.0 * rope.theta.ln())
            };
            let (mut low, mut high) = (correction(*beta_fast), correction(*beta_slow));
            if *truncate {
                (low, high) = (low.floor(), high.ceil());
            }
            let (low, mut high) = (low.max(0.0) as f32, high.min(dim - 1.0) as f32);
            if low == high {
                high += 0.001;
            }
            let factor = *factor as f32;
            (0..head_dim / 2)
                .map(|i| {
                    let pos_freq = base.powf((2 * i) as f32 / head_dim as f32);
                    let extrapolation = 1.0 / pos_freq;
                    let interpolation = 1.0 / (factor * pos_freq);
                    let ramp = ((i as f32 - low) / (high - low)).clamp(0.0, 1.0);
                    let keep = 1.0 - ramp;
                    interpolation * (1.0 - keep) + extrapolation * keep
                })
                .collect()
        }
        // transformers: 1 / (factor · θ^(2i/d)).
        RopeScaling::LongRope { short_factor, .. } => (0..head_dim / 2)
            .map(|i| 1.0 / (short_factor[i] as f32 * base.powf((2 * i) as f32 / head_dim as f32)))
            .collect(),
        RopeScaling::Linear { factor } => plain.map(|f| f / *factor as f32).collect(),
        RopeScaling::FrequencyDivisors { divisors } => {
            plain.zip(divisors).map(|(f, d)| f / *d as f32).collect()
        }
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings: old_context,
        } => {
            let (factor, low, high, old) = (
                *factor as f32,
                *low_freq_factor as f32,
                *high_freq_factor as f32,
                *old_context as f32,
            );
            let low_freq_wavelen = old / low;
            let high_freq_wavelen = old / high;
            plain
                .map(|f| {
                    let wavelen = 2.0 * std::f32::consts::PI / f;
                    if wavelen < high_freq_wavelen {
                        f
                    } else if wavelen > low_freq_wavelen {
                        f / factor
                    } else {
                        let smooth = (old / wavelen - low) / (high - low);
                        (1.0 - smooth) * f / factor + smooth * f
                    }
                })
                .collect()
        }
    }
}

impl Attention {
    /// A q or k norm on `y` `[..., heads, head_dim]`: per head, or over all heads together.
    fn norm_heads(&self, norm: &RmsNorm, y: &Tensor) -> Result<Tensor> {
        if !self.qk_norm_all_heads {
            return norm.forward(y);
        }
        let dims = y.dims();
        let (heads, d) = (dims[dims.len() - 2], dims[dims.len() - 1]);
        let mut flat = dims[..dims.len() - 2].to_vec();
        flat.push(heads * d);
        Ok(norm.forward(&y.reshape(flat)?)?.reshape(dims)?)
    }

    /// q, k and v stacked, clamped where the model says so.
    fn project(&self, x: &Tensor) -> Result<Tensor> {
        let qkv = self.qkv.forward(x)?;
        Ok(match self.clip {
            Some(c) => qkv.clamp(-c, c)?,
            None => qkv,
        })
    }

    /// Heads in the stacked projection: queries, keys, values (where the layer has its own),
    /// and any output gates.
    fn stacked_heads(&self) -> usize {
        let h = self.num_heads;
        h + self.kv.count() * self.num_kv_heads + if self.output_gate { h } else { 0 }
    }

    /// Where the values start in the stacked projection (the keys' place where the keys are
    /// the values too).
    fn value_head(&self) -> usize {
        match self.kv {
            KvProjection::KeysAsValues => self.num_heads,
            KvProjection::Own | KvProjection::Reused => self.num_heads + self.num_kv_heads,
        }
    }

    /// The layer's output, and its keys and values (those of `reused` where the layer reuses
    /// an earlier one's).
    fn forward(
        &self,
        x: &Tensor,
        tables: &AttentionTables,
        input: &BatchInput,
        kernels: Kernels,
        clock: Option<&StageClock>,
        reused: Option<&KeysValues>,
    ) -> Result<(Tensor, KeysValues)> {
        let reused = match (self.kv, reused) {
            (KvProjection::Reused, None) => {
                return Err(EngineError::Device(
                    "a layer that reuses keys and values was given none".into(),
                ));
            }
            (KvProjection::Reused, reused) => reused,
            _ => None,
        };
        if kernels.cpu {
            return timed(clock, "attention (CPU kernel)", || {
                self.forward_cpu_kernel(x, tables, input, reused)
            });
        }
        let (b, t, _) = x.dims3()?;
        let (h, kvh, d) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let stacked = self.stacked_heads();
        let (cos, sin, mask) = tables
            .tensors
            .as_ref()
            .ok_or_else(|| EngineError::Device("attention tables built for the CPU".into()))?;
        let qkv = timed(clock, "attention: q/k/v projection", || {
            Ok(self.project(x)?.reshape((b, t, stacked, d))?)
        })?;
        let heads =
            |first: usize, n: usize, norm: &Option<RmsNorm>, rotate: bool| -> Result<Tensor> {
                if kernels.fused && norm.is_none() {
                    let op = cuda_fused::HeadLayout {
                        first,
                        heads: n,
                        rotate,
                        interleaved: tables.rope.interleaved,
                    };
                    return Ok(qkv.apply_op3_no_bwd(cos, sin, &op)?);
                }
                let mut y = qkv.narrow(2, first, n)?;
                if let Some(norm) = norm {
                    y = self.norm_heads(norm, &y)?;
                }
                let y = y.transpose(1, 2)?.contiguous()?;
                Ok(if rotate {
                    if tables.rope.interleaved {
                        candle_nn::rotary_emb::rope_i(&y, cos, sin)?
                    } else {
                        candle_nn::rotary_emb::rope(&y, cos, sin)?
                    }
                } else {
                    y
                })
            };
        let (q, kv) = timed(clock, "attention: q/k norms, rotary, head layout", || {
            let q = heads(0, h, &self.q_norm, true)?;
            let kv = match reused {
                Some(kv) => kv.clone(),
                None => KeysValues {
                    k: heads(h, kvh, &self.k_norm, true)?,
                    v: heads(self.value_head(), kvh, &self.value_norm, false)?,
                },
            };
            Ok((q, kv))
        })?;
        let out = self.attend(&q, &kv.k, &kv.v, mask, kernels.fused, clock)?;
        let out = timed(clock, "attention: output gates and projection", || {
            let gate = self
                .output_gate
                .then(|| {
                    let first = h + self.kv.count() * kvh;
                    qkv.narrow(2, first, h)?.reshape((b, t, h * d))
                })
                .transpose()?;
            let out = self.apply_output_gate(out, gate)?;
            let out = self.apply_head_gate(out, x)?;
            Ok(self.o.forward(&out)?)
        })?;
        Ok((out, kv))
    }

    /// The CPU kernel's attention (f32 on the CPU): packed or padded rows, rotary inside.
    fn forward_cpu_kernel(
        &self,
        x: &Tensor,
        tables: &AttentionTables,
        input: &BatchInput,
        reused: Option<&KeysValues>,
    ) -> Result<(Tensor, KeysValues)> {
        let (b, t, _) = x.dims3()?;
        let (h, kvh, d) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let stacked = self.stacked_heads();
        let n = b * t;
        let qkv = self.project(x)?.reshape((n, stacked * d))?;
        // Column ranges of the stacked projection: the kernel reads strided rows.
        let part = |first: usize, heads: usize, norm: &Option<RmsNorm>| -> Result<Tensor> {
            let y = qkv.narrow(1, first * d, heads * d)?;
            Ok(match norm {
                Some(norm) => self
                    .norm_heads(norm, &y.reshape((n, heads, d))?)?
                    .reshape((n, heads * d))?,
                None => y,
            })
        };
        let q = part(0, h, &self.q_norm)?;
        let kv = match reused {
            Some(kv) => kv.clone(),
            None => KeysValues {
                k: part(h, kvh, &self.k_norm)?,
                v: part(self.value_head(), kvh, &self.value_norm)?,
            },
        };
        let out = q.apply_op3_no_bwd(
            &kv.k,
            &kv.v,
            &cpu_ops::Attention {
                spans: input.pooling.spans.clone(),
                heads: h,
                kv_heads: kvh,
                head_dim: d,
                scale: self.scale as f32,
                softcap: self.softcap.map(|c| c as f32),
                window: tables.window,
                rope: tables.rope.clone(),
                alibi: self.alibi.clone(),
                sinks: self.sinks.as_ref().map(|(host, _)| host.clone()),
            },
        )?;
        let gate = self
            .output_gate
            .then(|| qkv.narrow(1, (h + self.kv.count() * kvh) * d, h * d))
            .transpose()?;
        let out = self.apply_output_gate(out, gate)?;
        let out = self.apply_head_gate(out.reshape((b, t, h * d))?, x)?;
        Ok((self.o.forward(&out)?, kv))
    }

    /// Softmax attention of `q` `[b, heads, t, d]` over `k` and `v` `[b, kv_heads, t, d]` under
    /// the additive `mask`: `[b, t, heads·d]`. With `fused`, the softmax by the kernel of
    /// [`cuda_fused`] (not with sinks).
    fn attend(
        &self,
        q: &Tensor,
        k: &Tensor,
        v: &Tensor,
        mask: &Tensor,
        fused: bool,
        clock: Option<&StageClock>,
    ) -> Result<Tensor> {
        let (b, h, t, d) = q.dims4()?;
        let kvh = self.num_kv_heads;
        // Grouped-query attention without copying keys: fold the query heads that share a
        // key/value head into the sequence axis.
        let group = h / kvh;
        let scores = timed(clock, "attention: scores", || {
            let q = q.reshape((b, kvh, group * t, d))?;
            Ok(q.matmul(&k.t()?)?.reshape((b, h, t, t))?)
        })?;
        let probs = timed(clock, "attention: softmax", || {
            Ok(match &self.sinks {
                None if fused => scores.apply_op2_no_bwd(
                    mask,
                    &cuda_fused::MaskedSoftmax {
                        scale: self.scale as f32,
                        softcap: self.softcap.map(|c| c as f32),
                    },
                )?,
                sinks => attention_probs(
                    &scores,
                    mask,
                    self.scale,
                    self.softcap,
                    sinks.as_ref().map(|(_, sinks)| sinks),
                )?,
            }
            .to_dtype(v.dtype())?)
        })?;
        timed(clock, "attention: values, head layout", || {
            Ok(probs
                .reshape((b, kvh, group * t, t))?
                .matmul(v)?
                .reshape((b, h, t, d))?
                .transpose(1, 2)?
                .reshape((b, t, h * d))?)
        })
    }

    /// `out` `[b, t, heads·head_dim]` with each head's part times `σ(g·x)` where the layer
    /// has a gate per head (LFM3), else as it is.
    fn apply_head_gate(&self, out: Tensor, x: &Tensor) -> Result<Tensor> {
        let Some(gate) = &self.head_gate else {
            return Ok(out);
        };
        let (b, t, _) = out.dims3()?;
        let scale = candle_nn::ops::sigmoid(&gate.forward(x)?)?.unsqueeze(3)?;
        Ok(out
            .reshape((b, t, self.num_heads, self.head_dim))?
            .broadcast_mul(&scale)?
            .reshape((b, t, self.num_heads * self.head_dim))?)
    }

    /// `out · σ(gate)` where the layer has an output gate (same shapes), else `out`.
    fn apply_output_gate(&self, out: Tensor, gate: Option<Tensor>) -> Result<Tensor> {
        Ok(match gate {
            Some(gate) => (out * candle_nn::ops::sigmoid(&gate)?)?,
            None => out,
        })
    }
}

/// Attention's probabilities `[b, heads, t, t]` (f32) with candle's ops, from the scores
/// `q·kᵀ` in the compute dtype: scaled and soft-capped in that dtype, then the additive `mask`
/// (`[t, t]`, or `[heads, t, t]`) and the softmax in f32, with each head's `sinks` `[heads, 1]`
/// as one more key whose value is nothing.
pub(super) fn attention_probs(
    scores: &Tensor,
    mask: &Tensor,
    scale: f64,
    softcap: Option<f64>,
    sinks: Option<&Tensor>,
) -> Result<Tensor> {
    let (b, h, t, _) = scores.dims4()?;
    let mut scores = (scores * scale)?;
    if let Some(cap) = softcap {
        scores = ((scores / cap)?.tanh()? * cap)?;
    }
    let scores = scores.to_dtype(DType::F32)?.broadcast_add(mask)?;
    Ok(match sinks {
        Some(sinks) => {
            let column = sinks.broadcast_as((b, h, t, 1))?.contiguous()?;
            let with_sink = Tensor::cat(&[&scores, &column], 3)?;
            candle_nn::ops::softmax_last_dim(&with_sink)?
                .narrow(3, 0, t)?
                .contiguous()?
        }
        None => candle_nn::ops::softmax_last_dim(&scores)?,
    })
}

/// Projections that read the same input, stacked into one matmul (`[Σ out, in]`): q, k and
/// v; gate and up. `parts` are `(name, out_dim)`.
pub(super) fn linear(
    src: &dyn TensorSource,
    parts: &[(String, usize)],
    in_dim: usize,
    bias: bool,
    ctx: &Ctx,
) -> Result<Linear> {
    let load = |suffix: &str, shape: &dyn Fn(usize) -> Vec<usize>| -> Result<Tensor> {
        let tensors = parts
            .iter()
            .map(|(name, out_dim)| {
                src.load(
                    &format!("{name}.{suffix}"),
                    &shape(*out_dim),
                    ctx.dtype,
                    &ctx.device,
                )
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&tensors, 0)?)
    };
    let mut weight = load("weight", &|out_dim| vec![out_dim, in_dim])?;
    if ctx.device.is_cpu() {
        // `Linear` multiplies by `weight.t()`. Stored as the transpose of a contiguous
        // `[in, out]`, that is a plain row-major matrix, which gemm reads without repacking
        // it on every call (candle's GPU matmuls take either layout as it comes).
        weight = weight.t()?.contiguous()?.t()?;
    }
    let bias = if bias {
        Some(load("bias", &|out_dim| vec![out_dim])?)
    } else {
        None
    };
    Ok(Linear::new(weight, bias))
}

/// The checkpoint names of a layer's norms under `layout`: before attention, on its output,
/// before the MLP, on its output.
fn layer_norm_names(layout: NormLayout) -> [Option<&'static str>; 4] {
    match layout {
        NormLayout::Pre => [
            Some("input_layernorm"),
            None,
            Some("post_attention_layernorm"),
            None,
        ],
        NormLayout::Sandwich => [
            Some("input_layernorm"),
            Some("post_attention_layernorm"),
            Some("pre_feedforward_layernorm"),
            Some("post_feedforward_layernorm"),
        ],
        NormLayout::Post => [
            None,
            Some("post_attention_layernorm"),
            None,
            Some("post_feedforward_layernorm"),
        ],
        // The MLP reads attention's input.
        NormLayout::Parallel => [Some("input_layernorm"), None, None, None],
        // The MLP's norm reads the layer's input, as attention's does.
        NormLayout::ParallelTwoNorms => [
            Some("input_layernorm"),
            None,
            Some("post_attention_layernorm"),
            None,
        ],
    }
}

/// What the rotary tables multiply cos and sin by (LongRoPE's and YaRN's attention factor,
/// else 1), as transformers does.
fn rotary_attention_factor(rope: &Rope) -> f64 {
    match rope.scaling {
        RopeScaling::LongRope {
            attention_factor, ..
        }
        | RopeScaling::Yarn {
            attention_factor, ..
        } => attention_factor,
        _ => 1.0,
    }
}

/// Where the decoder's tensors live: `model.` for text checkpoints, deeper for multimodal ones.
fn model_prefix(src: &dyn TensorSource) -> &'static str {
    ["model.", "model.language_model.", "language_model.model."]
        .into_iter()
        .find(|p| src.contains(&format!("{p}embed_tokens.weight")))
        .unwrap_or("model.")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn proportional_rotary_turns_the_first_pairs_at_the_whole_heads_frequencies() {
        // head_dim 8, half the pairs: θ^(-0/8) and θ^(-2/8), then two still pairs; ÷ 2.
        let rope = Rope {
            theta: 10_000.0,
            scaling: RopeScaling::Proportional {
                fraction: 0.5,
                factor: 2.0,
            },
        };
        let f = inverse_frequencies(&rope, 8);
        assert_eq!(f.len(), 4);
        assert!((f[0] - 0.5).abs() < 1e-7);
        assert!((f[1] - 0.1 / 2.0).abs() < 1e-7, "{f:?}");
        assert_eq!(&f[2..], &[0.0, 0.0]);
    }

    #[test]
    fn llama3_scaling_keeps_high_frequencies_and_divides_low_ones() {
        let rope = Rope {
            theta: 500_000.0,
            scaling: RopeScaling::Llama3 {
                factor: 8.0,
                low_freq_factor: 1.0,
                high_freq_factor: 4.0,
                original_max_position_embeddings: 8192.0,
            },
        };
        let plain = inverse_frequencies(
            &Rope {
                theta: 500_000.0,
                scaling: RopeScaling::None,
            },
            128,
        );
        let scaled = inverse_frequencies(&rope, 128);
        assert_eq!(scaled[0], plain[0]);
        assert!((scaled[63] - plain[63] / 8.0).abs() < 1e-12);

        // The same scaling as a GGUF file carries it (llama.cpp's `rope_freqs`: each
        // frequency's divisor) gives the same frequencies.
        let divisors: Vec<f64> = plain
            .iter()
            .zip(&scaled)
            .map(|(p, s)| f64::from(*p) / f64::from(*s))
            .collect();
        let table = inverse_frequencies(
            &Rope {
                theta: 500_000.0,
                scaling: RopeScaling::FrequencyDivisors { divisors },
            },
            128,
        );
        for (t, s) in table.iter().zip(&scaled) {
            assert!((t - s).abs() <= 1e-6 * s.abs(), "{t} vs {s}");
        }
    }
}
