//! Mixture-of-experts MLPs (OLMoE, Qwen2-MoE, Qwen3-MoE, Mixtral, Granite MoE, gpt-oss, Gemma 4):
//! a router sends each token to its `per_token` best experts, each a gated MLP of its own, and
//! sums their outputs with the router's softmax weights (Qwen2-MoE adds a shared expert that
//! every token runs; Gemma 4 runs its dense MLP beside the mixture, which plays that part).
//!
//! A layer's neurons are all its experts' (`experts × d_ff`; METHOD §1 read for mixtures, a
//! *choice* the paper does not face): by default an expert's neurons are inactive — 0 in NAS
//! and NAV — at the tokens the router does not send to it, so a sentence's pooled states say
//! which experts it used as well as how; with [`ExpertPooling::RoutedTokens`] each expert is
//! pooled over its routed tokens only (the weights renormalized over them). Routing runs on the
//! host (the router's `[tokens, experts]` scores are small); each expert then runs on its own
//! tokens only.
//!
//! [`ExpertPooling::RoutedTokens`]: super::capture::ExpertPooling::RoutedTokens

use std::sync::Arc;

use candle_core::{DType, Device, Tensor};
use candle_nn::{Linear, Module};

use super::activation::LayerActivation;
use super::capture::NavSource;
use super::config::{Experts, ModelConfig};
use super::cpu_ops::{FusedMlp, HostPooling, Span};
use super::decoder::{BatchInput, Ctx, RmsNorm, linear};
use super::error::{EngineError, Result};
use super::mxfp4;
use super::weights::TensorSource;

pub(super) struct MoeMlp {
    /// `[experts, d_model]`, f32.
    router: Tensor,
    /// gpt-oss: `[experts]`, f32, added to the router's logits.
    router_bias: Option<Tensor>,
    experts: Vec<Expert>,
    per_token: usize,
    normalize_top_k: bool,
    activation: LayerActivation,
    d_ff: usize,
    /// The expert every token runs: Qwen2-MoE's shared expert with its gate `[1, d_model]`,
    /// or Gemma 4's dense MLP beside the mixture (no gate).
    shared: Option<(Expert, Option<Linear>)>,
    /// Gemma 4: each expert's output weight is also multiplied by its own factor.
    expert_scales: Option<Vec<f32>>,
    /// Gemma 4: the norms of a mixture beside the dense MLP.
    beside: Option<BesideNorms>,
}

/// Gemma 4's norms around a mixture that runs beside the dense MLP (the shared expert).
struct BesideNorms {
    /// The router's input: the residual stream normed without weights (the router's own
    /// input scale is folded into its weights).
    router_input: RmsNorm,
    /// The experts' input, also from the residual stream.
    experts_input: RmsNorm,
    /// On the dense MLP's output and on the experts', before the two are added.
    dense_output: RmsNorm,
    experts_output: RmsNorm,
}

struct Expert {
    /// gate and up stacked: `[2·d_ff, d_model]`.
    gate_up: Linear,
    down: Linear,
}

impl Expert {
    /// A gated MLP of width `d_ff` on `hidden` values, stored as three matrices (gate, up and
    /// down, by name).
    fn load(
        src: &dyn TensorSource,
        [gate, up, down]: [String; 3],
        d_ff: usize,
        hidden: usize,
        ctx: &Ctx,
    ) -> Result<Self> {
        Ok(Self {
            gate_up: linear(src, &[(gate, d_ff), (up, d_ff)], hidden, false, ctx)?,
            down: linear(src, &[(down, hidden)], d_ff, false, ctx)?,
        })
    }
}

/// An expert's work on its tokens: the gate, the activation and `act·up`, `[tokens, d_ff]`.
struct ExpertRun {
    gate: Tensor,
    act: Tensor,
    product: Tensor,
}

/// How a checkpoint stores a layer's router and experts.
enum Layout {
    /// OLMoE, Qwen3-MoE: `mlp.gate`, `mlp.experts.{e}.{gate,up,down}_proj`.
    PerExpert,
    /// Mixtral: `block_sparse_moe.gate`, `block_sparse_moe.experts.{e}.w1` (gate), `w3` (up),
    /// `w2` (down).
    BlockSparse,
    /// transformers 5's own: `mlp.experts.gate_up_proj` `[experts, 2·d_ff, d_model]` and
    /// `mlp.experts.down_proj` `[experts, d_model, d_ff]`.
    Stacked,
    /// Granite MoE: the same stacks as `block_sparse_moe.input_linear.weight` and
    /// `output_linear.weight`, the router `block_sparse_moe.router.layer.weight`.
    GraniteStacked,
    /// GGUF files (as the reader names them): `mlp.experts.gate_proj.weight` and
    /// `up_proj.weight` `[experts, d_ff, d_model]`, `down_proj.weight` `[experts, d_model,
    /// d_ff]`.
    StackedApart,
    /// gpt-oss: `mlp.router.{weight,bias}`; `mlp.experts.gate_up_proj` `[experts, d_model,
    /// 2·d_ff]` with gate and up interleaved (column `2i` gate, `2i + 1` up) and
    /// `down_proj` `[experts, d_ff, d_model]`, each with a `_bias`; or in MXFP4, `_blocks`
    /// and `_scales` of the `[out, in]` matrices.
    GptOss,
    /// Gemma 4: beside the MLP, on the layer itself: `router.proj`, `router.scale`,
    /// `router.per_expert_scale`, and `experts.gate_up_proj` / `experts.down_proj` stacked
    /// as transformers 5 stores them.
    Gemma4,
}

impl MoeMlp {
    /// Layer `p` (`model.layers.3.`)'s router and experts.
    pub(super) fn load(
        src: &dyn TensorSource,
        p: &str,
        config: &ModelConfig,
        mixture: &Experts,
        activation: LayerActivation,
        ctx: &Ctx,
    ) -> Result<Self> {
        let (h, f, count) = (config.hidden_size, config.intermediate_size, mixture.count);
        let layout = if mixture.beside_dense {
            Layout::Gemma4
        } else if src.contains(&format!("{p}mlp.router.weight")) {
            Layout::GptOss
        } else if src.contains(&format!("{p}block_sparse_moe.gate.weight")) {
            Layout::BlockSparse
        } else if src.contains(&format!("{p}block_sparse_moe.router.layer.weight")) {
            Layout::GraniteStacked
        } else if src.contains(&format!("{p}mlp.experts.gate_up_proj")) {
            Layout::Stacked
        } else if src.contains(&format!("{p}mlp.experts.gate_proj.weight")) {
            Layout::StackedApart
        } else {
            Layout::PerExpert
        };
        let router_name = match layout {
            Layout::BlockSparse => format!("{p}block_sparse_moe.gate.weight"),
            Layout::GptOss => format!("{p}mlp.router.weight"),
            Layout::GraniteStacked => format!("{p}block_sparse_moe.router.layer.weight"),
            Layout::Gemma4 => format!("{p}router.proj.weight"),
            _ => format!("{p}mlp.gate.weight"),
        };
        // In f32 whatever the compute dtype: the router is small, and a bf16 score moves a
        // token to another expert where two are close, flipping all their neurons at once.
        let mut router = src.load(&router_name, &[count, h], DType::F32, &ctx.device)?;
        let mut expert_scales = None;
        if let Layout::Gemma4 = layout {
            // Gemma 4 scales the router's normed input by `scale / √d_model`: folded in.
            let scale = src.load(&format!("{p}router.scale"), &[h], DType::F32, &ctx.device)?;
            let scale = (scale * (h as f64).powf(-0.5))?.unsqueeze(0)?;
            router = router.broadcast_mul(&scale)?;
            let name = format!("{p}router.per_expert_scale");
            expert_scales = Some(
                src.load(&name, &[count], DType::F32, &Device::Cpu)?
                    .to_vec1()?,
            );
        }
        let router_bias = mixture
            .biased
            .then(|| {
                src.load(
                    &format!("{p}mlp.router.bias"),
                    &[count],
                    DType::F32,
                    &ctx.device,
                )
            })
            .transpose()?;
        let experts = match layout {
            Layout::GptOss => gpt_oss_experts(src, p, h, f, count, ctx)?,
            Layout::PerExpert | Layout::BlockSparse => (0..count)
                .map(|e| {
                    let names = match layout {
                        Layout::BlockSparse => ["w1", "w3", "w2"]
                            .map(|w| format!("{p}block_sparse_moe.experts.{e}.{w}")),
                        _ => ["gate_proj", "up_proj", "down_proj"]
                            .map(|w| format!("{p}mlp.experts.{e}.{w}")),
                    };
                    Expert::load(src, names, f, h, ctx)
                })
                .collect::<Result<Vec<_>>>()?,
            Layout::Stacked | Layout::StackedApart | Layout::GraniteStacked | Layout::Gemma4 => {
                let load = |name: &str, shape: &[usize]| {
                    src.load(&format!("{p}{name}"), shape, ctx.dtype, &ctx.device)
                };
                let (gate_up, down) = match layout {
                    Layout::GraniteStacked => (
                        load("block_sparse_moe.input_linear.weight", &[count, 2 * f, h])?,
                        load("block_sparse_moe.output_linear.weight", &[count, h, f])?,
                    ),
                    Layout::Stacked => (
                        load("mlp.experts.gate_up_proj", &[count, 2 * f, h])?,
                        load("mlp.experts.down_proj", &[count, h, f])?,
                    ),
                    Layout::Gemma4 => (
                        load("experts.gate_up_proj", &[count, 2 * f, h])?,
                        load("experts.down_proj", &[count, h, f])?,
                    ),
                    _ => {
                        let gate = load("mlp.experts.gate_proj.weight", &[count, f, h])?;
                        let up = load("mlp.experts.up_proj.weight", &[count, f, h])?;
                        (
                            Tensor::cat(&[gate, up], 1)?,
                            load("mlp.experts.down_proj.weight", &[count, h, f])?,
                        )
                    }
                };
                (0..count)
                    .map(|e| {
                        Ok(Expert {
                            gate_up: Linear::new(matrix(gate_up.get(e)?, ctx)?, None),
                            down: Linear::new(matrix(down.get(e)?, ctx)?, None),
                        })
                    })
                    .collect::<Result<Vec<_>>>()?
            }
        };
        Ok(Self {
            router,
            router_bias,
            experts,
            // `ModelConfig::validate` checked it is 1..=count.
            per_token: mixture.per_token,
            normalize_top_k: mixture.normalize_top_k,
            activation,
            d_ff: f,
            shared: mixture
                .shared_d_ff
                .map(|shared| -> Result<_> {
                    // Gemma 4's dense MLP beside the mixture, or Qwen2-MoE's gated shared expert.
                    let stem = if mixture.beside_dense {
                        format!("{p}mlp.")
                    } else {
                        format!("{p}mlp.shared_expert.")
                    };
                    let names = ["gate_proj", "up_proj", "down_proj"].map(|w| format!("{stem}{w}"));
                    let expert = Expert::load(src, names, shared, h, ctx)?;
                    if mixture.beside_dense {
                        return Ok((expert, None));
                    }
                    let gate = linear(
                        src,
                        &[(format!("{p}mlp.shared_expert_gate"), 1)],
                        h,
                        false,
                        ctx,
                    )?;
                    Ok((expert, Some(gate)))
                })
                .transpose()?,
            expert_scales,
            beside: mixture
                .beside_dense
                .then(|| -> Result<_> {
                    let norm = |name: &str| {
                        RmsNorm::load(src, &format!("{p}{name}.weight"), h, config, ctx)
                    };
                    Ok(BesideNorms {
                        router_input: RmsNorm::unweighted(h, config.rms_norm_eps, ctx)?,
                        experts_input: norm("pre_feedforward_layernorm_2")?,
                        dense_output: norm("post_feedforward_layernorm_1")?,
                        experts_output: norm("post_feedforward_layernorm_2")?,
                    })
                })
                .transpose()?,
        })
    }

    /// The mixture's output `[rows, cols, d_model]` for `x` (the MLP's normed input; Gemma
    /// 4's experts and router read `residual`, the stream before that norm), and with `pool`
    /// the pooled NAS and NAV of every expert's neurons: `[b, 2, experts·d_ff]`, or with the
    /// CPU kernels added to the batch's sink.
    pub(super) fn forward(
        &self,
        x: &Tensor,
        residual: &Tensor,
        pool: Option<(&BatchInput, NavSource)>,
        layer: usize,
    ) -> Result<(Tensor, Option<Tensor>)> {
        let (rows, cols, h) = x.dims3()?;
        let n = rows * cols;
        let mlp_in = x.reshape((n, h))?;
        let (router_in, flat) = match &self.beside {
            Some(norms) => (
                norms.router_input.forward(residual)?.reshape((n, h))?,
                norms.experts_input.forward(residual)?.reshape((n, h))?,
            ),
            None => (mlp_in.clone(), mlp_in.clone()),
        };
        let mut scores = router_in.to_dtype(DType::F32)?.matmul(&self.router.t()?)?;
        if let Some(bias) = &self.router_bias {
            scores = scores.broadcast_add(bias)?;
        }
        let scores = scores.to_vec2::<f32>()?;
        let routes = self.route(&scores);
        let device = x.device();
        let mut out = flat.zeros_like()?;
        let b = pool.map_or(0, |(input, _)| input.pooling.spans.len());
        let sentence_of = pool.map(|(input, _)| sentence_of_token(input, n));
        // With the CPU kernels (a packed batch and its sink), each expert's pools are written
        // in the fused MLP pass at its neurons' place; otherwise they are products here.
        let kernels = pool.filter(|(input, _)| input.sink.is_some());
        let (mut nas, mut nav) = (Vec::new(), Vec::new());
        for (e, (expert, (tokens, weights))) in self.experts.iter().zip(routes).enumerate() {
            if tokens.is_empty() {
                if pool.is_some() && kernels.is_none() {
                    let zeros = Tensor::zeros((b, self.d_ff), DType::F32, device)?;
                    nas.push(zeros.clone());
                    nav.push(zeros);
                }
                continue;
            }
            let chosen = tokens.len();
            let index = Tensor::from_slice(&tokens, chosen, device)?;
            let x = flat.index_select(&index, 0)?;
            let product = match (kernels, pool, &sentence_of) {
                (Some((input, nav_source)), _, Some(sentence_of)) => {
                    let pooling = expert_pooling(input, &tokens, sentence_of)?;
                    self.fused(expert, &x, input, nav_source, pooling, layer, e * self.d_ff)?
                }
                (_, Some((input, nav_source)), Some(sentence_of)) => {
                    let run = self.run(expert, &x)?;
                    let (expert_nas, expert_nav) =
                        self.pools(&run, &tokens, input, nav_source, sentence_of)?;
                    nas.push(expert_nas);
                    nav.push(expert_nav);
                    run.product
                }
                _ => self.run(expert, &x)?.product,
            };
            let weights = Tensor::from_slice(&weights, (chosen, 1), device)?;
            let y = expert
                .down
                .forward(&product)?
                .broadcast_mul(&weights.to_dtype(flat.dtype())?)?;
            out = out.index_add(&index, &y, 0)?;
        }
        if let Some(norms) = &self.beside {
            out = norms.experts_output.forward(&out)?;
        }
        if let Some((expert, gate)) = &self.shared {
            // After the routed experts, as transformers adds it; its neurons follow theirs.
            let offset = self.experts.len() * self.d_ff;
            let product = match (kernels, pool, &sentence_of) {
                (Some((input, nav_source)), ..) => {
                    let pooling = input.pooling.clone();
                    self.fused(expert, &mlp_in, input, nav_source, pooling, layer, offset)?
                }
                (_, Some((input, nav_source)), Some(sentence_of)) => {
                    let run = self.run(expert, &mlp_in)?;
                    let every: Vec<u32> = (0..n as u32).collect();
                    let (shared_nas, shared_nav) =
                        self.pools(&run, &every, input, nav_source, sentence_of)?;
                    nas.push(shared_nas);
                    nav.push(shared_nav);
                    run.product
                }
                _ => self.run(expert, &mlp_in)?.product,
            };
            let y = expert.down.forward(&product)?;
            let y = match (gate, &self.beside) {
                (Some(gate), _) => {
                    y.broadcast_mul(&candle_nn::ops::sigmoid(&gate.forward(&mlp_in)?)?)?
                }
                (None, Some(norms)) => norms.dense_output.forward(&y)?,
                (None, None) => y,
            };
            out = (y + out)?;
        }
        let out = out.reshape((rows, cols, h))?;
        if pool.is_none() || kernels.is_some() {
            return Ok((out, None));
        }
        let nas = Tensor::cat(&nas, 1)?;
        let nav = Tensor::cat(&nav, 1)?;
        Ok((out, Some(Tensor::stack(&[nas, nav], 1)?)))
    }

    /// The CPU kernels' one pass over an expert's tokens `x`: `act(gate)·up`, and its NAS and
    /// NAV pools added to the batch's sink at `offset` in the layer's neurons.
    #[allow(clippy::too_many_arguments)]
    fn fused(
        &self,
        expert: &Expert,
        x: &Tensor,
        input: &BatchInput,
        nav_source: NavSource,
        pooling: Arc<HostPooling>,
        layer: usize,
        offset: usize,
    ) -> Result<Tensor> {
        let gate_up = expert.gate_up.forward(x)?;
        let f = gate_up.dim(1)? / 2;
        let sink = input.sink.clone().ok_or_else(|| {
            EngineError::Device("this batch has no sink for pooled states".into())
        })?;
        Ok(gate_up.narrow(1, 0, f)?.apply_op2_no_bwd(
            &gate_up.narrow(1, f, f)?,
            &FusedMlp {
                gated: true,
                activation: self.activation,
                nav_source,
                pool: pooling,
                sink,
                layer,
                neuron_offset: offset,
            },
        )?)
    }

    /// An expert's gate, activation and `act·up` on `x` (its tokens' rows).
    fn run(&self, expert: &Expert, x: &Tensor) -> Result<ExpertRun> {
        let gate_up = expert.gate_up.forward(x)?;
        let f = gate_up.dim(1)? / 2;
        let gate = gate_up.narrow(1, 0, f)?;
        let up = gate_up.narrow(1, f, f)?;
        let act = self.activation.apply(&gate)?;
        let product = self.activation.gated_product(&act, &up)?;
        Ok(ExpertRun { gate, act, product })
    }

    /// Pooled NAS and NAV `[b, d_ff]` of an expert that ran on `tokens` (rows of the batch's
    /// flattened token axis): its other tokens count as inactive.
    fn pools(
        &self,
        run: &ExpertRun,
        tokens: &[u32],
        input: &BatchInput,
        nav_source: NavSource,
        sentence_of: &[Option<usize>],
    ) -> Result<(Tensor, Tensor)> {
        let (b, chosen) = (input.pooling.spans.len(), tokens.len());
        // `[b, chosen]`: each chosen token's pooling weight in its sentence's row.
        let mut matrix = vec![0f32; b * chosen];
        for (i, routed) in expert_weights(input, tokens, sentence_of)
            .into_iter()
            .enumerate()
        {
            if let Some((s, weight)) = routed {
                matrix[s * chosen + i] = weight;
            }
        }
        let matrix = Tensor::from_vec(matrix, (b, chosen), run.gate.device())?;
        let sign = if self.activation.positive_with_input() {
            &run.gate
        } else {
            &run.act
        };
        let active = sign.gt(&sign.zeros_like()?)?.to_dtype(DType::F32)?;
        let magnitude = match nav_source {
            NavSource::Activation => run.act.abs()?,
            NavSource::ActivationTimesUp => run.product.abs()?,
        };
        Ok((
            matrix.matmul(&active)?,
            matrix.matmul(&magnitude.to_dtype(DType::F32)?)?,
        ))
    }

    /// For each expert, the tokens sent to it and their weights: the router's softmax over the
    /// experts (f32), the `per_token` largest, renormalized over those where the family does,
    /// as transformers computes them.
    fn route(&self, scores: &[Vec<f32>]) -> Vec<(Vec<u32>, Vec<f32>)> {
        let mut routes = vec![(Vec::new(), Vec::new()); self.experts.len()];
        let mut order: Vec<usize> = Vec::with_capacity(self.experts.len());
        for (token, logits) in scores.iter().enumerate() {
            let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            let exps: Vec<f32> = logits.iter().map(|&l| (l - max).exp()).collect();
            let sum: f32 = exps.iter().sum();
            let probs: Vec<f32> = exps.iter().map(|&e| e / sum).collect();
            order.clear();
            order.extend(0..probs.len());
            // Highest first; exact ties (which real scores do not meet) to the lower index.
            order.sort_by(|&a, &b| probs[b].total_cmp(&probs[a]).then(a.cmp(&b)));
            let chosen = &order[..self.per_token];
            let total: f32 = chosen.iter().map(|&e| probs[e]).sum();
            for &e in chosen {
                let weight = if self.normalize_top_k {
                    probs[e] / total
                } else {
                    probs[e]
                };
                let weight = match &self.expert_scales {
                    Some(scales) => weight * scales[e],
                    None => weight,
                };
                routes[e].0.push(token as u32);
                routes[e].1.push(weight);
            }
        }
        routes
    }
}

/// gpt-oss' experts, gate and up taken apart into the `[gate; up]` rows the others have, from
/// plain tensors or MXFP4 blocks, or from a GGUF file's gate and up stored apart.
fn gpt_oss_experts(
    src: &dyn TensorSource,
    p: &str,
    h: usize,
    f: usize,
    count: usize,
    ctx: &Ctx,
) -> Result<Vec<Expert>> {
    let name = |part: &str| format!("{p}mlp.experts.{part}");
    // f32 on the host until each expert is cut out and moved (one copy of a layer at a time:
    // a gpt-oss-120b layer's experts are 13 GB in f32).
    let host = |part: &str, shape: &[usize]| src.load(&name(part), shape, DType::F32, &Device::Cpu);
    let gate_up = if src.contains(&name("gate_proj.weight")) {
        // GGUF files: `[experts, out, in]`, gate and up apart, each with a bias.
        GateUp::Apart {
            gate: host("gate_proj.weight", &[count, f, h])?,
            up: host("up_proj.weight", &[count, f, h])?,
            gate_bias: host("gate_proj.bias", &[count, f])?,
            up_bias: host("up_proj.bias", &[count, f])?,
        }
    } else {
        GateUp::Interleaved {
            weight: gpt_oss_matrices(src, &name("gate_up_proj"), count, 2 * f, h)?,
            bias: host("gate_up_proj_bias", &[count, 2 * f])?,
        }
    };
    let (down, down_bias) = if src.contains(&name("down_proj.weight")) {
        (
            host("down_proj.weight", &[count, h, f])?,
            host("down_proj.bias", &[count, h])?,
        )
    } else {
        (
            gpt_oss_matrices(src, &name("down_proj"), count, h, f)?,
            host("down_proj_bias", &[count, h])?,
        )
    };
    let on_device =
        |t: Tensor| -> Result<Tensor> { Ok(t.to_dtype(ctx.dtype)?.to_device(&ctx.device)?) };
    (0..count)
        .map(|e| {
            let (w, b) = match &gate_up {
                GateUp::Interleaved { weight, bias } => {
                    // Interleaved rows (g0, u0, g1, u1, …) → all gates, then all ups.
                    let apart = |t: Tensor, width: usize| -> Result<Tensor> {
                        Ok(t.reshape((f, 2, width))?
                            .transpose(0, 1)?
                            .contiguous()?
                            .reshape((2 * f, width))?)
                    };
                    (
                        apart(weight.get(e)?, h)?,
                        apart(bias.get(e)?.reshape((2 * f, 1))?, 1)?.reshape(2 * f)?,
                    )
                }
                GateUp::Apart {
                    gate,
                    up,
                    gate_bias,
                    up_bias,
                } => (
                    Tensor::cat(&[gate.get(e)?, up.get(e)?], 0)?,
                    Tensor::cat(&[gate_bias.get(e)?, up_bias.get(e)?], 0)?,
                ),
            };
            Ok(Expert {
                gate_up: Linear::new(matrix(on_device(w)?, ctx)?, Some(on_device(b)?)),
                down: Linear::new(
                    matrix(on_device(down.get(e)?)?, ctx)?,
                    Some(on_device(down_bias.get(e)?)?),
                ),
            })
        })
        .collect()
}

/// How a gpt-oss layer's gate and up projections are stored, on the host.
enum GateUp {
    /// transformers' checkpoints: `[experts, 2·d_ff, d_model]`, gate and up rows in turn.
    Interleaved { weight: Tensor, bias: Tensor },
    /// GGUF files: `[experts, d_ff, d_model]` each.
    Apart {
        gate: Tensor,
        up: Tensor,
        gate_bias: Tensor,
        up_bias: Tensor,
    },
}

/// A transformers checkpoint's `[experts, out, in]` matrices, f32 on the host: from MXFP4
/// blocks where the checkpoint has them, else stored `[experts, in, out]`.
fn gpt_oss_matrices(
    src: &dyn TensorSource,
    name: &str,
    count: usize,
    out: usize,
    input: usize,
) -> Result<Tensor> {
    if src.contains(&format!("{name}_blocks")) {
        return mxfp4_matrices(src, name, count, out, input);
    }
    let stored = src.load(name, &[count, input, out], DType::F32, &Device::Cpu)?;
    Ok(stored.transpose(1, 2)?.contiguous()?)
}

/// `[experts, out, in]` f32 on the host from `{name}_blocks` `[experts, out, in/32, 16]` and
/// `{name}_scales` `[experts, out, in/32]` (see [`mxfp4`]).
fn mxfp4_matrices(
    src: &dyn TensorSource,
    name: &str,
    count: usize,
    out: usize,
    input: usize,
) -> Result<Tensor> {
    if !input.is_multiple_of(32) {
        return Err(EngineError::weights(
            src.origin(),
            format!(
                "\"{name}\" in MXFP4 needs an input width that is a multiple of 32, not {input}"
            ),
        ));
    }
    let groups = input / 32;
    let bytes = |suffix: &str, shape: &[usize]| -> Result<Vec<u8>> {
        let tensor = src.load(&format!("{name}_{suffix}"), shape, DType::U8, &Device::Cpu)?;
        Ok(tensor.flatten_all()?.to_vec1::<u8>()?)
    };
    let blocks = bytes("blocks", &[count, out, groups, mxfp4::BLOCK_BYTES])?;
    let scales = bytes("scales", &[count, out, groups])?;
    let values = mxfp4::dequantize(&blocks, &scales);
    Ok(Tensor::from_vec(values, (count, out, input), &Device::Cpu)?)
}

/// One expert's `[out, in]` matrix, laid out for the CPU's matmuls as `linear` lays them.
fn matrix(weight: Tensor, ctx: &Ctx) -> Result<Tensor> {
    Ok(if ctx.device.is_cpu() {
        weight.t()?.contiguous()?.t()?
    } else {
        weight.contiguous()?
    })
}

/// An expert's tokens (ascending rows of a packed batch) as the fused MLP pass pools them:
/// one span per sentence over the gathered rows (empty where the sentence sent it none).
fn expert_pooling(
    input: &BatchInput,
    tokens: &[u32],
    sentence_of: &[Option<usize>],
) -> Result<Arc<HostPooling>> {
    let mut counts = vec![0usize; input.pooling.spans.len()];
    let mut weights = Vec::with_capacity(tokens.len());
    for routed in expert_weights(input, tokens, sentence_of) {
        let (sentence, weight) = routed.ok_or_else(|| {
            EngineError::Device("a packed batch has a token outside every sentence".into())
        })?;
        counts[sentence] += 1;
        weights.push(weight);
    }
    let mut start = 0;
    let spans: Vec<Span> = counts
        .into_iter()
        .map(|len| {
            let span = Span { start, len };
            start += len;
            span
        })
        .collect();
    Ok(Arc::new(HostPooling {
        spans: spans.into(),
        last: vec![0.0; weights.len()],
        weights,
    }))
}

/// Each of an expert's `tokens`: its sentence and pooling weight (`None` in padding). With the
/// routed-tokens reading a sentence's weights are renormalized to sum to 1 over the tokens it
/// sent to this expert, so that the expert is pooled over those alone.
fn expert_weights(
    input: &BatchInput,
    tokens: &[u32],
    sentence_of: &[Option<usize>],
) -> Vec<Option<(usize, f32)>> {
    let mut routed: Vec<Option<(usize, f32)>> = tokens
        .iter()
        .map(|&token| {
            let token = token as usize;
            sentence_of[token].map(|s| (s, input.pooling.weights[token]))
        })
        .collect();
    if input.routed_only {
        let mut sums = vec![0f64; input.pooling.spans.len()];
        for &(s, weight) in routed.iter().flatten() {
            sums[s] += f64::from(weight);
        }
        for (s, weight) in routed.iter_mut().flatten() {
            // A sentence whose pooled tokens this expert never saw keeps weight 0.
            if sums[*s] > 0.0 {
                *weight = (f64::from(*weight) / sums[*s]) as f32;
            }
        }
    }
    routed
}

/// For each token of the flattened batch, its sentence (`None` in padding and gaps).
fn sentence_of_token(input: &BatchInput, n: usize) -> Vec<Option<usize>> {
    let mut sentence = vec![None; n];
    for (s, span) in input.pooling.spans.iter().enumerate() {
        for slot in sentence.iter_mut().skip(span.start).take(span.len) {
            *slot = Some(s);
        }
    }
    sentence
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mixture(per_token: usize, normalize_top_k: bool) -> MoeMlp {
        let device = candle_core::Device::Cpu;
        let expert = || Expert {
            gate_up: Linear::new(Tensor::zeros((2, 1), DType::F32, &device).unwrap(), None),
            down: Linear::new(Tensor::zeros((1, 1), DType::F32, &device).unwrap(), None),
        };
        MoeMlp {
            router: Tensor::zeros((3, 1), DType::F32, &device).unwrap(),
            router_bias: None,
            experts: vec![expert(), expert(), expert()],
            per_token,
            normalize_top_k,
            activation: LayerActivation::Silu,
            d_ff: 1,
            shared: None,
            expert_scales: None,
            beside: None,
        }
    }

    /// Two sentences of three tokens, mean-pooled (1/3 each); an expert chosen by tokens 0
    /// and 2 of the first and token 4 of the second. All tokens: 1/3 each, the others count
    /// as 0. Routed tokens only: 1/2 and 1/2 in the first, 1 in the second.
    #[test]
    fn routed_tokens_renormalize_each_sentence_by_hand() {
        let third = 1.0 / 3.0;
        let pooling = || HostPooling {
            spans: vec![Span { start: 0, len: 3 }, Span { start: 3, len: 3 }].into(),
            weights: vec![third; 6],
            last: vec![0.0, 0.0, 1.0, 0.0, 0.0, 1.0],
        };
        let tokens = [0u32, 2, 4];
        let sentence_of = [Some(0), Some(0), Some(0), Some(1), Some(1), Some(1)];
        let all = expert_weights(
            &BatchInput::pooling_only(pooling(), false),
            &tokens,
            &sentence_of,
        );
        assert_eq!(
            all,
            vec![Some((0, third)), Some((0, third)), Some((1, third))]
        );
        let routed = expert_weights(
            &BatchInput::pooling_only(pooling(), true),
            &tokens,
            &sentence_of,
        );
        assert_eq!(routed, vec![Some((0, 0.5)), Some((0, 0.5)), Some((1, 1.0))]);
    }

    /// Logits ln 1, ln 2, ln 5 give probabilities 0.125, 0.25, 0.625.
    #[test]
    fn routing_takes_the_largest_softmax_weights() {
        let scores = vec![
            vec![0.0, 2f32.ln(), 5f32.ln()],
            vec![5f32.ln(), 2f32.ln(), 0.0],
        ];
        let routes = mixture(2, false).route(&scores);
        assert_eq!(routes[0].0, vec![1]);
        assert_eq!(routes[1].0, vec![0, 1]);
        assert_eq!(routes[2].0, vec![0]);
        assert!((routes[2].1[0] - 0.625).abs() < 1e-6);
        assert!((routes[1].1[0] - 0.25).abs() < 1e-6);
        // Renormalized over the two chosen: 0.625 / 0.875 and 0.25 / 0.875.
        let routes = mixture(2, true).route(&scores);
        assert!((routes[2].1[0] - 0.625 / 0.875).abs() < 1e-6);
        assert!((routes[1].1[0] - 0.25 / 0.875).abs() < 1e-6);
        // Equal scores: the lower expert.
        let routes = mixture(1, true).route(&[vec![1.0, 1.0, 0.0]]);
        assert_eq!((routes[0].0.len(), routes[1].0.len()), (1, 0));
        assert!((routes[0].1[0] - 1.0).abs() < 1e-6);
        // Gemma 4: after renormalizing, each expert's own factor (the choice is not moved).
        let mut scaled = mixture(2, true);
        scaled.expert_scales = Some(vec![1.0, 3.0, 0.5]);
        let routes = scaled.route(&scores);
        assert_eq!(routes[1].0, vec![0, 1]);
        assert!((routes[2].1[0] - 0.5 * 0.625 / 0.875).abs() < 1e-6);
        assert!((routes[1].1[0] - 3.0 * 0.25 / 0.875).abs() < 1e-6);
    }
}
