//! The shared decoder forward pass, with neuron capture reduced inside it.
//!
//! Llama, Mistral, Qwen2/3 and Gemma 2/3 differ only in the switches of [`ModelConfig`]
//! (biases, q/k norms, Gemma's norms and soft-capping, per-layer windows and rotary bases), so
//! one implementation serves them all. It follows transformers' eager attention path so that
//! its numbers can be checked against it (tests/parity.rs).

use candle_core::{D, DType, Device, IndexOp, Module, Tensor};
use candle_nn::Linear;

use super::capture::NavSource;
use super::config::{Activation, LayerAttention, ModelConfig, Rope, RopeScaling};
use super::error::{EngineError, Result};
use super::weights::TensorSource;

/// A batch of right-padded sentences and the pooling weights of each.
pub struct BatchInput {
    /// `[b, t]` u32 token ids, right-padded.
    pub ids: Tensor,
    /// `[b, 1, t]` f32 pooling weights for neuron states (zero on padding).
    pub pool_weights: Tensor,
    /// `[b, 2, t]` f32: row 0 the pooling weights, row 1 one-hot on the last token (hidden states).
    pub hidden_weights: Tensor,
}

/// Pooled states of one batch, on the model's device, in f32.
pub struct BatchCapture {
    /// `[b, layers, d_ff]` pooled `1[act(gate) > 0]`.
    pub nas: Tensor,
    /// `[b, layers, d_ff]` pooled magnitude (see [`NavSource`]).
    pub nav: Tensor,
    /// `[b, layers + 1, d_model]` pooled residual stream (embeddings first).
    pub hidden_pooled: Tensor,
    /// `[b, layers + 1, d_model]` residual stream at the last token.
    pub hidden_last: Tensor,
}

impl BatchCapture {
    /// Everything in one `[b, 2·layers·d_ff + 2·(layers+1)·d_model]` f32 tensor, rows
    /// `nas | nav | hidden_pooled | hidden_last`, so one copy brings a batch to the host.
    pub fn packed(&self) -> Result<Tensor> {
        let parts = [&self.nas, &self.nav, &self.hidden_pooled, &self.hidden_last]
            .into_iter()
            .map(|t| t.flatten_from(1))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Tensor::cat(&parts, 1)?)
    }
}

struct RmsNorm {
    /// For Gemma already `1 + w`.
    weight: Tensor,
    eps: f32,
}

impl RmsNorm {
    fn load(
        src: &dyn TensorSource,
        name: &str,
        size: usize,
        cfg: &ModelConfig,
        ctx: &Ctx,
    ) -> Result<Self> {
        // Norm weights are applied in f32 so Gemma's `1 + w` is exact.
        let weight = src.load(name, &[size], DType::F32, &ctx.device)?;
        let weight = if cfg.gemma_norms {
            (weight + 1.0)?
        } else {
            weight
        };
        Ok(Self {
            weight: weight.to_dtype(ctx.dtype)?,
            eps: cfg.rms_norm_eps as f32,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::rms_norm(
            &x.contiguous()?,
            &self.weight,
            self.eps,
        )?)
    }
}

struct Attention {
    q: Linear,
    k: Linear,
    v: Linear,
    o: Linear,
    q_norm: Option<RmsNorm>,
    k_norm: Option<RmsNorm>,
    num_heads: usize,
    num_kv_heads: usize,
    head_dim: usize,
    scale: f64,
    softcap: Option<f64>,
}

struct Mlp {
    gate: Linear,
    up: Linear,
    down: Linear,
    activation: Activation,
}

struct Layer {
    input_norm: RmsNorm,
    /// Llama: the norm before the MLP. Gemma: the norm of the attention output.
    post_attention_norm: RmsNorm,
    /// Gemma only: the norms before and after the MLP.
    gemma_ffn_norms: Option<(RmsNorm, RmsNorm)>,
    attention: Attention,
    mlp: Mlp,
    /// Index into `Decoder::attention_kinds`.
    kind: usize,
}

pub struct Decoder {
    config: ModelConfig,
    embed: Tensor,
    layers: Vec<Layer>,
    final_norm: RmsNorm,
    lm_head: Option<Tensor>,
    /// The distinct per-layer attention settings (Gemma 3 has two).
    attention_kinds: Vec<LayerAttention>,
    ctx: Ctx,
}

struct Ctx {
    device: Device,
    dtype: DType,
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
        let prefix = model_prefix(src);
        let (h, f) = (config.hidden_size, config.intermediate_size);
        let embed = src.load(
            &format!("{prefix}embed_tokens.weight"),
            &[config.vocab_size, h],
            dtype,
            device,
        )?;
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
            let gemma_ffn_norms = if config.gemma_norms {
                Some((
                    norm("pre_feedforward_layernorm", h)?,
                    norm("post_feedforward_layernorm", h)?,
                ))
            } else {
                None
            };
            let (q_norm, k_norm) = if config.qk_norm {
                (
                    Some(norm("self_attn.q_norm", config.head_dim)?),
                    Some(norm("self_attn.k_norm", config.head_dim)?),
                )
            } else {
                (None, None)
            };
            let q_out = config.num_heads * config.head_dim;
            let kv_out = config.num_kv_heads * config.head_dim;
            let bias = config.qkv_bias;
            layers.push(Layer {
                input_norm: norm("input_layernorm", h)?,
                post_attention_norm: norm("post_attention_layernorm", h)?,
                gemma_ffn_norms,
                attention: Attention {
                    q: linear(src, &format!("{p}self_attn.q_proj"), q_out, h, bias, &ctx)?,
                    k: linear(src, &format!("{p}self_attn.k_proj"), kv_out, h, bias, &ctx)?,
                    v: linear(src, &format!("{p}self_attn.v_proj"), kv_out, h, bias, &ctx)?,
                    o: linear(src, &format!("{p}self_attn.o_proj"), h, q_out, false, &ctx)?,
                    q_norm,
                    k_norm,
                    num_heads: config.num_heads,
                    num_kv_heads: config.num_kv_heads,
                    head_dim: config.head_dim,
                    scale: config.attention_scale,
                    softcap: config.attn_logit_softcapping,
                },
                mlp: Mlp {
                    gate: linear(src, &format!("{p}mlp.gate_proj"), f, h, false, &ctx)?,
                    up: linear(src, &format!("{p}mlp.up_proj"), f, h, false, &ctx)?,
                    down: linear(src, &format!("{p}mlp.down_proj"), h, f, false, &ctx)?,
                    activation: config.activation,
                },
                kind,
            });
        }
        let final_norm = RmsNorm::load(src, &format!("{prefix}norm.weight"), h, config, &ctx)?;
        let lm_head = ["lm_head.weight", "language_model.lm_head.weight"]
            .into_iter()
            .find(|name| src.contains(name))
            .map(|name| src.load(name, &[config.vocab_size, h], dtype, device))
            .transpose()?;
        Ok(Self {
            config: config.clone(),
            embed,
            layers,
            final_norm,
            lm_head,
            attention_kinds,
            ctx,
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

    /// Runs a batch and returns only pooled states: per-token activations are reduced with
    /// the pooling weights layer by layer, on the device.
    pub fn forward_capture(
        &self,
        input: &BatchInput,
        nav_source: NavSource,
    ) -> Result<BatchCapture> {
        let mut nas = Vec::with_capacity(self.layers.len());
        let mut nav = Vec::with_capacity(self.layers.len());
        let mut hidden = Vec::with_capacity(self.layers.len() + 1);
        let pool = |h: &Tensor| -> Result<Tensor> {
            Ok(input
                .hidden_weights
                .matmul(&h.to_dtype(DType::F32)?.contiguous()?)?)
        };
        let mut capture = |layer_out: LayerOutput| -> Result<()> {
            if let Some(MlpStates::Pooled(pooled)) = &layer_out.mlp {
                nas.push(pooled.i((.., 0..1, ..))?);
                nav.push(pooled.i((.., 1..2, ..))?);
            }
            if let Some(MlpStates::Raw(gate, act, up)) = layer_out.mlp {
                let magnitude_source = match nav_source {
                    NavSource::Activation => act.clone(),
                    NavSource::ActivationTimesUp => (&act * &up)?,
                };
                // A device-side zero: comparing with an f64 scalar would copy it from the host
                // in every layer.
                let zero =
                    Tensor::zeros((), gate.dtype(), gate.device())?.broadcast_as(gate.shape())?;
                let active = gate.gt(&zero)?.to_dtype(DType::F32)?;
                nas.push(input.pool_weights.matmul(&active)?);
                let magnitude = magnitude_source.abs()?;
                nav.push(
                    input
                        .pool_weights
                        .matmul(&magnitude.to_dtype(DType::F32)?.contiguous()?)?,
                );
            }
            hidden.push(pool(&layer_out.hidden)?);
            Ok(())
        };
        self.run_layers(
            &input.ids,
            Some((&input.pool_weights, nav_source)),
            &mut capture,
        )?;
        Ok(BatchCapture {
            nas: Tensor::cat(&nas, 1)?,
            nav: Tensor::cat(&nav, 1)?,
            hidden_pooled: Tensor::cat(
                &hidden
                    .iter()
                    .map(|h| h.i((.., 0..1, ..)))
                    .collect::<candle_core::Result<Vec<_>>>()?,
                1,
            )?,
            hidden_last: Tensor::cat(
                &hidden
                    .iter()
                    .map(|h| h.i((.., 1..2, ..)))
                    .collect::<candle_core::Result<Vec<_>>>()?,
                1,
            )?,
        })
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
        let mut last = None;
        self.run_layers(ids, None, &mut |out: LayerOutput| {
            last = Some(out.hidden);
            Ok(())
        })?;
        let hidden = last.ok_or_else(|| EngineError::Device("model has no layers".into()))?;
        let (b, t, _) = hidden.dims3()?;
        let normed = self.final_norm.forward(&hidden)?;
        let mut logits = normed.broadcast_matmul(&head.t()?)?.to_dtype(DType::F32)?;
        if let Some(cap) = self.config.final_logit_softcapping {
            logits = ((logits / cap)?.tanh()? * cap)?;
        }
        let logprobs = candle_nn::ops::log_softmax(&logits.i((.., 0..t - 1, ..))?, D::Minus1)?;
        let targets = ids.i((.., 1..t))?.contiguous()?.unsqueeze(2)?;
        Ok(logprobs.gather(&targets, 2)?.reshape((b, t - 1))?)
    }

    /// Embeddings, then each layer; `on_layer` sees every hidden state (embeddings first) and
    /// each layer's MLP gate, activation and up projection.
    fn run_layers(
        &self,
        ids: &Tensor,
        pool: Option<(&Tensor, NavSource)>,
        on_layer: &mut dyn FnMut(LayerOutput) -> Result<()>,
    ) -> Result<()> {
        let (b, t) = ids.dims2()?;
        let mut h = self.embed.index_select(&ids.flatten_all()?, 0)?.reshape((
            b,
            t,
            self.config.hidden_size,
        ))?;
        if let Some(scale) = self.config.embedding_scale {
            // transformers rounds the normalizer to the compute dtype first.
            let scale = Tensor::new(scale as f32, &self.ctx.device)?.to_dtype(self.ctx.dtype)?;
            h = h.broadcast_mul(&scale)?;
        }
        on_layer(LayerOutput {
            hidden: h.clone(),
            mlp: None,
        })?;
        let tables = self
            .attention_kinds
            .iter()
            .map(|kind| AttentionTables::new(kind, t, &self.config, &self.ctx))
            .collect::<Result<Vec<_>>>()?;
        for layer in &self.layers {
            let tables = &tables[layer.kind];
            let attn_in = layer.input_norm.forward(&h)?;
            let mut attn_out = layer.attention.forward(&attn_in, tables)?;
            let mlp_in;
            match &layer.gemma_ffn_norms {
                Some((pre_ffn, _)) => {
                    attn_out = layer.post_attention_norm.forward(&attn_out)?;
                    h = (h + attn_out)?;
                    mlp_in = pre_ffn.forward(&h)?;
                }
                None => {
                    h = (h + attn_out)?;
                    mlp_in = layer.post_attention_norm.forward(&h)?;
                }
            }
            let gate = layer.mlp.gate.forward(&mlp_in)?;
            let up = layer.mlp.up.forward(&mlp_in)?;
            let fused = match pool {
                Some((weights, nav_source)) => {
                    fused_mlp(&gate, &up, weights, layer.mlp.activation, nav_source)?
                }
                _ => None,
            };
            if let Some((product, pooled)) = fused {
                let mut mlp_out = layer.mlp.down.forward(&product)?;
                if let Some((_, post_ffn)) = &layer.gemma_ffn_norms {
                    mlp_out = post_ffn.forward(&mlp_out)?;
                }
                h = (h + mlp_out)?;
                on_layer(LayerOutput {
                    hidden: h.clone(),
                    mlp: Some(MlpStates::Pooled(pooled)),
                })?;
                continue;
            }
            let act = match layer.mlp.activation {
                Activation::Silu => candle_nn::ops::silu(&gate)?,
                Activation::GeluTanh => gate.gelu()?,
                Activation::Gelu => gate.gelu_erf()?,
            };
            let mut mlp_out = layer.mlp.down.forward(&(&act * &up)?)?;
            if let Some((_, post_ffn)) = &layer.gemma_ffn_norms {
                mlp_out = post_ffn.forward(&mlp_out)?;
            }
            h = (h + mlp_out)?;
            on_layer(LayerOutput {
                hidden: h.clone(),
                mlp: Some(MlpStates::Raw(gate, act, up)),
            })?;
        }
        Ok(())
    }
}

struct LayerOutput {
    hidden: Tensor,
    mlp: Option<MlpStates>,
}

enum MlpStates {
    /// `(gate pre-activation, act(gate), up)`, each `[b, t, d_ff]`.
    Raw(Tensor, Tensor, Tensor),
    /// Already pooled by the fused CPU kernel: `[b, 2, d_ff]`, rows NAS and NAV.
    Pooled(Tensor),
}

/// Rotary tables and the additive attention mask for one kind of layer and sequence length.
struct AttentionTables {
    cos: Tensor,
    sin: Tensor,
    /// `[t, t]`, 0 where attention is allowed, -inf elsewhere (causal, optionally windowed).
    mask: Tensor,
}

impl AttentionTables {
    fn new(kind: &LayerAttention, t: usize, cfg: &ModelConfig, ctx: &Ctx) -> Result<Self> {
        let inv_freq = inverse_frequencies(&kind.rope, cfg.head_dim);
        let half = inv_freq.len();
        // f32 as transformers computes them: position × inverse frequency, then cos and sin.
        let mut cos = Vec::with_capacity(t * half);
        let mut sin = Vec::with_capacity(t * half);
        for pos in 0..t {
            for &f in &inv_freq {
                let angle = pos as f32 * f;
                cos.push(angle.cos());
                sin.push(angle.sin());
            }
        }
        let cos = Tensor::from_vec(cos, (t, half), &ctx.device)?.to_dtype(ctx.dtype)?;
        let sin = Tensor::from_vec(sin, (t, half), &ctx.device)?.to_dtype(ctx.dtype)?;
        let mask: Vec<f32> = (0..t)
            .flat_map(|i| {
                (0..t).map(move |j| {
                    let visible = j <= i && kind.sliding_window.is_none_or(|w| i - j < w);
                    if visible { 0.0 } else { f32::NEG_INFINITY }
                })
            })
            .collect();
        let mask = Tensor::from_vec(mask, (t, t), &ctx.device)?;
        Ok(Self { cos, sin, mask })
    }
}

/// `1 / θ^(2i/d)`, rescaled as the config's rope scaling says (transformers' formulas, in f32).
fn inverse_frequencies(rope: &Rope, head_dim: usize) -> Vec<f32> {
    let base = rope.theta as f32;
    let plain = (0..head_dim / 2).map(|i| 1.0 / base.powf((2 * i) as f32 / head_dim as f32));
    match rope.scaling {
        RopeScaling::None => plain.collect(),
        RopeScaling::Linear { factor } => plain.map(|f| f / factor as f32).collect(),
        RopeScaling::Llama3 {
            factor,
            low_freq_factor,
            high_freq_factor,
            original_max_position_embeddings: old_context,
        } => {
            let (factor, low, high, old) = (
                factor as f32,
                low_freq_factor as f32,
                high_freq_factor as f32,
                old_context as f32,
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
    fn forward(&self, x: &Tensor, tables: &AttentionTables) -> Result<Tensor> {
        let (b, t, _) = x.dims3()?;
        let (h, kvh, d) = (self.num_heads, self.num_kv_heads, self.head_dim);
        let heads =
            |proj: &Linear, n: usize, norm: &Option<RmsNorm>, rotate: bool| -> Result<Tensor> {
                let mut y = proj.forward(x)?.reshape((b, t, n, d))?;
                if let Some(norm) = norm {
                    y = norm.forward(&y)?;
                }
                let y = y.transpose(1, 2)?.contiguous()?;
                Ok(if rotate {
                    candle_nn::rotary_emb::rope(&y, &tables.cos, &tables.sin)?
                } else {
                    y
                })
            };
        let q = heads(&self.q, h, &self.q_norm, true)?;
        let k = heads(&self.k, kvh, &self.k_norm, true)?;
        let v = heads(&self.v, kvh, &None, false)?;
        // Grouped-query attention without copying keys: fold the query heads that share a
        // key/value head into the sequence axis.
        let group = h / kvh;
        let q = q.reshape((b, kvh, group * t, d))?;
        let mut scores = (q.matmul(&k.t()?)? * self.scale)?;
        if let Some(cap) = self.softcap {
            scores = ((scores / cap)?.tanh()? * cap)?;
        }
        let scores = scores
            .to_dtype(DType::F32)?
            .reshape((b, h, t, t))?
            .broadcast_add(&tables.mask)?;
        let probs = candle_nn::ops::softmax_last_dim(&scores)?.to_dtype(v.dtype())?;
        let out = probs
            .reshape((b, kvh, group * t, t))?
            .matmul(&v)?
            .reshape((b, h, t, d))?
            .transpose(1, 2)?
            .reshape((b, t, h * d))?;
        Ok(self.o.forward(&out)?)
    }
}

fn linear(
    src: &dyn TensorSource,
    name: &str,
    out_dim: usize,
    in_dim: usize,
    bias: bool,
    ctx: &Ctx,
) -> Result<Linear> {
    let weight = src.load(
        &format!("{name}.weight"),
        &[out_dim, in_dim],
        ctx.dtype,
        &ctx.device,
    )?;
    let bias = if bias {
        Some(src.load(&format!("{name}.bias"), &[out_dim], ctx.dtype, &ctx.device)?)
    } else {
        None
    };
    Ok(Linear::new(weight, bias))
}

/// On the CPU in f32 (SiLU or GELU-tanh): `act(gate)·up` for the down projection and the
/// NAS/NAV pools of the layer, all in one pass over gate and up, sentences in parallel.
/// `None` elsewhere (GPU, other dtypes, exact GELU): the caller then uses generic tensor ops.
fn fused_mlp(
    gate: &Tensor,
    up: &Tensor,
    weights: &Tensor,
    activation: Activation,
    nav_source: NavSource,
) -> Result<Option<(Tensor, Tensor)>> {
    let usable = activation != Activation::Gelu
        && gate.device().is_cpu()
        && gate.dtype() == DType::F32
        && up.dtype() == DType::F32
        && gate.is_contiguous()
        && up.is_contiguous()
        && weights.is_contiguous();
    if !usable {
        return Ok(None);
    }
    let (b, t, f) = gate.dims3()?;
    let out = gate.apply_op3_no_bwd(
        up,
        weights,
        &FusedMlp {
            activation,
            nav_source,
        },
    )?;
    let product = out.narrow(0, 0, b * t * f)?.reshape((b, t, f))?;
    // A copy, not a view: a view would keep the whole `b·t·f` output of every layer alive
    // until the batch ends.
    let pooled = out
        .narrow(0, b * t * f, b * 2 * f)?
        .reshape((b, 2, f))?
        .copy()?;
    Ok(Some((product, pooled)))
}

/// Output (flat): `act(g)·u` for every token (`b·t·f`), then per sentence the pooled
/// `Σ_t w·1[g > 0]` and `Σ_t w·|act(g)|` (or `|act(g)·u|`) (`b·2·f`).
struct FusedMlp {
    activation: Activation,
    nav_source: NavSource,
}

impl FusedMlp {
    /// `act` over a row, written to `out`: the same formulas as candle's `silu` and `gelu`, so
    /// both paths agree. (A vectorisable polynomial `exp` within 2 ulp was tried: 2% faster, but
    /// it flipped a demo-model NAS decision whose gate is > 1e-5 from zero, so parity lost.)
    fn act_row(&self, gate: &[f32], out: &mut [f32]) {
        match self.activation {
            Activation::Silu => {
                for (o, &x) in out.iter_mut().zip(gate) {
                    *o = x / (1.0 + (-x).exp());
                }
            }
            _ => {
                const SQRT_TWO_OVER_PI: f32 = 0.797_884_6;
                for (o, &x) in out.iter_mut().zip(gate) {
                    *o = 0.5 * x * (1.0 + (SQRT_TWO_OVER_PI * x * (1.0 + 0.044715 * x * x)).tanh());
                }
            }
        }
    }
}

impl candle_core::CustomOp3 for FusedMlp {
    fn name(&self) -> &'static str {
        "fused-mlp-pool"
    }

    fn cpu_fwd(
        &self,
        gate: &candle_core::CpuStorage,
        gate_layout: &candle_core::Layout,
        up: &candle_core::CpuStorage,
        up_layout: &candle_core::Layout,
        weights: &candle_core::CpuStorage,
        weights_layout: &candle_core::Layout,
    ) -> candle_core::Result<(candle_core::CpuStorage, candle_core::Shape)> {
        use candle_core::CpuStorage;
        let (CpuStorage::F32(gate), CpuStorage::F32(up), CpuStorage::F32(weights)) =
            (gate, up, weights)
        else {
            candle_core::bail!("fused-mlp-pool expects f32 tensors");
        };
        let (b, t, f) = gate_layout.shape().dims3()?;
        if up_layout.shape().dims() != [b, t, f] || weights_layout.shape().elem_count() != b * t {
            candle_core::bail!("fused-mlp-pool: shapes do not match");
        }
        let gate = &gate[gate_layout.start_offset()..][..b * t * f];
        let up = &up[up_layout.start_offset()..][..b * t * f];
        let weights = &weights[weights_layout.start_offset()..][..b * t];
        let mut out = vec![0f32; b * t * f + b * 2 * f];
        let (products, pools) = out.split_at_mut(b * t * f);
        // Sentences are independent: one per task, spread over the CPU cores.
        use rayon::prelude::*;
        products
            .par_chunks_mut(t * f)
            .zip(pools.par_chunks_mut(2 * f))
            .enumerate()
            .for_each(|(sentence, (products, pooled))| {
                let (nas, nav) = pooled.split_at_mut(f);
                for token in 0..t {
                    let row = (sentence * t + token) * f;
                    let (g, u) = (&gate[row..row + f], &up[row..row + f]);
                    let product = &mut products[token * f..(token + 1) * f];
                    let w = weights[sentence * t + token];
                    // One simple loop per step, so that each vectorises.
                    self.act_row(g, product);
                    let pool = w != 0.0;
                    if pool {
                        for (n, &x) in nas.iter_mut().zip(g) {
                            *n += if x > 0.0 { w } else { 0.0 };
                        }
                        if self.nav_source == NavSource::Activation {
                            for (v, &a) in nav.iter_mut().zip(product.iter()) {
                                *v += w * a.abs();
                            }
                        }
                    }
                    for (p, &x) in product.iter_mut().zip(u) {
                        *p *= x;
                    }
                    if pool && self.nav_source == NavSource::ActivationTimesUp {
                        for (v, &p) in nav.iter_mut().zip(product.iter()) {
                            *v += w * p.abs();
                        }
                    }
                }
            });
        Ok((
            CpuStorage::F32(out),
            candle_core::Shape::from(b * t * f + b * 2 * f),
        ))
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

    /// The fused kernel gives what the generic ops (used on GPUs) give.
    #[test]
    fn fused_mlp_matches_the_generic_path() {
        let device = Device::Cpu;
        let gate = Tensor::randn(0f32, 1.0, (2, 4, 6), &device).unwrap();
        let up = Tensor::randn(0f32, 1.0, (2, 4, 6), &device).unwrap();
        let weights = Tensor::rand(0f32, 1.0, (2, 1, 4), &device).unwrap();
        let max_diff = |a: Tensor, b: Tensor| -> f32 {
            (a - b)
                .unwrap()
                .abs()
                .unwrap()
                .max_all()
                .unwrap()
                .to_scalar()
                .unwrap()
        };
        for activation in [Activation::Silu, Activation::GeluTanh] {
            for nav_source in [NavSource::Activation, NavSource::ActivationTimesUp] {
                let (product, pooled) = fused_mlp(&gate, &up, &weights, activation, nav_source)
                    .unwrap()
                    .unwrap();
                let act = match activation {
                    Activation::Silu => candle_nn::ops::silu(&gate).unwrap(),
                    _ => gate.gelu().unwrap(),
                };
                let expected_product = (&act * &up).unwrap();
                let magnitude = match nav_source {
                    NavSource::Activation => act.clone(),
                    NavSource::ActivationTimesUp => expected_product.clone(),
                };
                let nas = weights
                    .matmul(&gate.gt(0f64).unwrap().to_dtype(DType::F32).unwrap())
                    .unwrap();
                let nav = weights.matmul(&magnitude.abs().unwrap()).unwrap();
                assert!(max_diff(product, expected_product) < 1e-6, "{activation:?}");
                assert!(max_diff(pooled, Tensor::cat(&[nas, nav], 1).unwrap()) < 1e-5);
            }
        }
        // Exact GELU and other dtypes take the generic path.
        let none = fused_mlp(
            &gate,
            &up,
            &weights,
            Activation::Gelu,
            NavSource::Activation,
        );
        assert!(none.unwrap().is_none());
        let half = gate.to_dtype(DType::BF16).unwrap();
        let none = fused_mlp(
            &half,
            &up,
            &weights,
            Activation::Silu,
            NavSource::Activation,
        );
        assert!(none.unwrap().is_none());
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
    }
}
