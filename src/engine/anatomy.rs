//! What the engine recognised in a model, in words: the lines `neuronxa inspect` prints after
//! the summary, so that a user can check that their checkpoint was read as it is.

use super::config::{Activation, LayerMixer, ModelConfig, NormLayout, QkNorm, Rope, RopeScaling};

impl ModelConfig {
    /// Attention, positions, norms, MLP and any scales, a line each.
    pub fn anatomy(&self) -> Vec<String> {
        let mut lines = vec![self.attention_line()];
        lines.extend(self.linear_attention_line());
        if let Some(conv) = &self.short_conv {
            lines.push(format!(
                "short convolution: in {} of {} layers, B·x over the last {} tokens, gated by C",
                self.layers_mixed_by(LayerMixer::ShortConv),
                self.num_layers,
                conv.taps
            ));
        }
        lines.push(self.positions_line());
        lines.push(self.norms_line());
        lines.push(self.mlp_line());
        if let Some(scales) = self.scales_line() {
            lines.push(scales);
        }
        if let Some(ple) = self.per_layer_input {
            lines.push(format!(
                "per-layer embeddings: {} values per layer and token ({} ids), mixed with a \
                 projection of the embeddings and added after each MLP through a gate",
                ple.width, ple.vocab
            ));
        }
        if let Some(rows) = self.output_vocab_size {
            lines.push(format!(
                "output head: the first {rows} of {} ids (the others are inputs only)",
                self.vocab_size
            ));
        }
        lines
    }

    fn attention_line(&self) -> String {
        let mut parts = vec![format!(
            "attention: {} heads ({} key/value), head_dim {}",
            self.num_heads, self.num_kv_heads, self.head_dim
        )];
        match (self.qkv_bias, self.o_bias && !self.linear_bias) {
            (true, true) => parts.push("q/k/v and output biases".into()),
            (true, false) => parts.push("q/k/v biases".into()),
            (false, true) => parts.push("an output bias".into()),
            (false, false) => {}
        }
        match self.qk_norm {
            QkNorm::Off => {}
            QkNorm::PerHead => parts.push("q/k norms per head".into()),
            QkNorm::AllHeads => parts.push("q/k norms over all heads".into()),
        }
        if let Some(clip) = self.qkv_clip {
            parts.push(format!("q/k/v clipped to ±{clip}"));
        }
        let usual = 1.0 / (self.head_dim as f64).sqrt();
        if (self.attention_scale - usual).abs() > 1e-9 * usual {
            parts.push(format!(
                "scores × {} (not 1/√head_dim)",
                short(self.attention_scale)
            ));
        }
        if let Some(cap) = self.attn_logit_softcapping {
            parts.push(format!("scores soft-capped at {cap}"));
        }
        if self.attention_sinks {
            parts.push("a learned sink per head".into());
        }
        if self.attention_head_gate {
            parts.push("each head's output gated by σ(its own projection of the input)".into());
        }
        if self.attention_output_gate {
            parts.push("output gated by σ(a gate beside each head's queries)".into());
        }
        if self.value_norm {
            parts.push("values normed per head".into());
        }
        // Layers with heads of their own shape (Gemma 4's global layers), grouped.
        for (heads, count) in counted(self.layers.iter().filter_map(|layer| layer.heads)) {
            let values = if heads.values_from_keys {
                ", values from the keys' projection"
            } else {
                ""
            };
            parts.push(format!(
                "{count} layer{} with heads of {} ({} key/value{values})",
                if count == 1 { "" } else { "s" },
                heads.head_dim,
                heads.kv_heads
            ));
        }
        if self.kv_shared_layers > 0 {
            parts.push(format!(
                "the last {} layers reuse the keys and values of the last earlier layer of \
                 their kind",
                self.kv_shared_layers
            ));
        }
        let attention = self.layers_mixed_by(LayerMixer::Attention);
        if attention < self.num_layers {
            parts.push(format!("in {attention} of {} layers", self.num_layers));
        }
        parts.join(", ")
    }

    /// Qwen3.5's Gated DeltaNet layers, if any.
    fn linear_attention_line(&self) -> Option<String> {
        let linear = self.linear_attention.as_ref()?;
        Some(format!(
            "linear attention: Gated DeltaNet in {} of {} layers, {} key heads of {} for {} \
             value heads of {}, a causal convolution of {} taps, output gated by an RMSNorm",
            self.layers_mixed_by(LayerMixer::LinearAttention),
            self.num_layers,
            linear.key_heads,
            linear.key_head_dim,
            linear.value_heads,
            linear.value_head_dim,
            linear.conv_kernel
        ))
    }

    fn positions_line(&self) -> String {
        if self.alibi {
            return "positions: ALiBi".into();
        }
        if self.learned_positions {
            return format!("positions: learned ({})", self.max_position_embeddings);
        }
        if self.sinusoidal_positions {
            return "positions: sinusoidal (fixed)".into();
        }
        let dims = match self.partial_rotary {
            Some(rotary) => format!("{rotary} of {} dimensions", self.head_dim),
            // Heads of more than one width (Gemma 4).
            None if self.layers.iter().any(|layer| layer.heads.is_some()) => {
                "all dimensions".into()
            }
            None => format!("all {} dimensions", self.head_dim),
        };
        let pairs = if self.rope_interleaved {
            ", adjacent pairs"
        } else {
            ""
        };
        // Layer kinds in order of first appearance, with how many layers each has (linear
        // attention layers have no positions of their own).
        let kinds = counted(
            self.layers
                .iter()
                .filter(|layer| layer.mixer.is_attention()),
        );
        let kinds: Vec<String> = kinds
            .iter()
            .map(|(kind, count)| {
                let window = match kind.sliding_window {
                    Some(w) => format!(", window {w}"),
                    None => String::new(),
                };
                let layers = match *count {
                    n if n == self.layers_mixed_by(LayerMixer::Attention) => String::new(),
                    1 => "1 layer: ".into(),
                    n => format!("{n} layers: "),
                };
                let head_dim = self.heads_of(kind).head_dim;
                let rope = rope_words(&kind.rope, self.partial_rotary.unwrap_or(head_dim));
                format!("{layers}{rope}{window}")
            })
            .collect();
        format!(
            "positions: rotary on {dims} of each head{pairs}; {}",
            kinds.join("; ")
        )
    }

    fn norms_line(&self) -> String {
        let kind = match (self.norm_centered, self.norm_unweighted, self.norm_bias) {
            (_, true, _) => "LayerNorm without weight or bias",
            (true, false, true) => "LayerNorm with bias",
            (true, false, false) => "LayerNorm without bias",
            (false, _, _) if self.norm_plus_one => "RMSNorm (scaled by 1 + w)",
            (false, _, _) => "RMSNorm",
        };
        let place = match self.norm_layout {
            NormLayout::Pre => "before attention and before the MLP",
            NormLayout::Sandwich => "before and after attention and the MLP",
            NormLayout::Post => "after attention and after the MLP",
            NormLayout::Parallel => "one, feeding attention and the MLP side by side",
            NormLayout::ParallelTwoNorms => "one each for attention and the MLP, side by side",
        };
        let embedding = if self.embedding_norm {
            "; one on the embeddings"
        } else {
            ""
        };
        format!("norms: {kind}, {place}{embedding}")
    }

    fn mlp_line(&self) -> String {
        let activation = match self.activation {
            Activation::Silu => "SiLU".into(),
            Activation::GeluTanh => "GELU (tanh)".into(),
            Activation::Gelu => "GELU (erf)".into(),
            Activation::Relu2 => "ReLU²".into(),
            Activation::XIelu => "xIELU (with its own parameters in every layer)".into(),
            Activation::ClampedSwiglu => match self.swiglu_clamp {
                Some(c) => format!(
                    "clamped SwiGLU (g·σ({}·g), the gate capped at {}, times up clamped to ±{} plus 1)",
                    c.alpha, c.limit, c.limit
                ),
                None => "clamped SwiGLU".into(),
            },
        };
        let (kind, neurons) = if self.mlp_gated {
            ("gated", "act(gate)")
        } else {
            ("not gated", "act(fc_in)")
        };
        let biased_experts = self.experts.as_ref().is_some_and(|e| e.biased);
        let biases = if self.linear_bias || biased_experts {
            ", with biases"
        } else {
            ""
        };
        let experts = match &self.experts {
            Some(e) => {
                let shared = match (e.shared_d_ff, e.beside_dense) {
                    (Some(width), true) => format!(
                        "; beside them the dense MLP of {width} on every token (its own norms, \
                         its neurons last), the experts' outputs scaled per expert"
                    ),
                    (Some(width), false) => format!(
                        "; a shared expert of {width} on every token, gated, its neurons last"
                    ),
                    (None, _) => String::new(),
                };
                format!(
                    "; {} experts of {} ({} per token{}), an expert's neurons inactive where \
                     it is not chosen{shared}",
                    e.count,
                    self.intermediate_size,
                    e.per_token,
                    if e.normalize_top_k {
                        ", weights renormalized"
                    } else {
                        ""
                    }
                )
            }
            None => String::new(),
        };
        format!(
            "MLP: {kind}, {activation}{biases}{experts}; neurons {} × {} layers, states of \
             {neurons}",
            self.neurons_per_layer(),
            self.num_layers
        )
    }

    fn scales_line(&self) -> Option<String> {
        let mut parts = Vec::new();
        if let Some(scale) = self.embedding_scale {
            parts.push(format!("embeddings × {}", short(scale)));
        }
        if let Some(scale) = self.residual_scale {
            parts.push(format!("residual additions × {}", short(scale)));
        }
        if self.layer_scalar {
            parts.push("each layer's output × its stored scalar".into());
        }
        if let Some(scale) = self.logit_scale {
            parts.push(format!("logits × {}", short(scale)));
        }
        if let Some(cap) = self.final_logit_softcapping {
            parts.push(format!("logits soft-capped at {cap}"));
        }
        (!parts.is_empty()).then(|| format!("scales: {}", parts.join(", ")))
    }
}

/// The distinct items in order of first appearance, each with how often it appears.
fn counted<T: PartialEq>(items: impl Iterator<Item = T>) -> Vec<(T, usize)> {
    let mut counts: Vec<(T, usize)> = Vec::new();
    for item in items {
        match counts.iter_mut().find(|(seen, _)| *seen == item) {
            Some((_, count)) => *count += 1,
            None => counts.push((item, 1)),
        }
    }
    counts
}

/// A number with at most four decimals, without trailing zeros (8, 45.2548, 0.22).
fn short(value: f64) -> String {
    let text = format!("{value:.4}");
    text.trim_end_matches('0').trim_end_matches('.').to_string()
}

/// A rotary setting in words, for heads turning `rotary_dims` dimensions: "θ 10000",
/// "θ 500000, llama3 ×8", "no rotary".
fn rope_words(rope: &Rope, rotary_dims: usize) -> String {
    let theta = format!("θ {}", rope.theta);
    match &rope.scaling {
        RopeScaling::None => theta,
        RopeScaling::NoRotation => "no rotary".into(),
        RopeScaling::Proportional { fraction, factor } => {
            let scaled = if *factor == 1.0 {
                String::new()
            } else {
                format!(" ÷{factor}")
            };
            let turned = RopeScaling::proportional_pairs(*fraction, rotary_dims);
            let pairs = rotary_dims / 2;
            format!("{theta}{scaled}, proportional: {turned} of {pairs} pairs turn")
        }
        RopeScaling::Linear { factor } => format!("{theta}, linear ×{factor}"),
        RopeScaling::Llama3 { factor, .. } => format!("{theta}, llama3 ×{factor}"),
        RopeScaling::FrequencyDivisors { .. } => format!("{theta}, per-frequency divisors"),
        RopeScaling::LongRope {
            original_max_position_embeddings,
            ..
        } => format!(
            "{theta}, LongRoPE short factors (sentences up to {original_max_position_embeddings} tokens)"
        ),
        RopeScaling::Yarn {
            factor,
            original_max_position_embeddings,
            ..
        } => format!("{theta}, YaRN ×{factor} (original {original_max_position_embeddings})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::config::{Architecture, Dims, LayerAttention};

    fn llama() -> ModelConfig {
        let dims = Dims {
            vocab_size: 10,
            hidden_size: 64,
            intermediate_size: 128,
            num_layers: 4,
            num_heads: 4,
            num_kv_heads: 2,
            head_dim: 16,
            rms_norm_eps: 1e-6,
            max_position_embeddings: 512,
        };
        let rope = Rope {
            theta: 10_000.0,
            scaling: RopeScaling::None,
        };
        let layers = LayerAttention::per_layer(
            &[true, true, true, false],
            Some(8),
            &rope,
            &Rope::no_rotation(),
        );
        dims.into_config(Architecture::Llama, layers)
    }

    #[test]
    fn layer_kinds_are_counted_and_partial_rotary_named() {
        let mut config = llama();
        config.partial_rotary = Some(12);
        let lines = config.anatomy();
        assert_eq!(
            lines[1],
            "positions: rotary on 12 of 16 dimensions of each head; 3 layers: θ 10000, window 8; \
             1 layer: no rotary"
        );
        assert_eq!(
            lines[2],
            "norms: RMSNorm, before attention and before the MLP"
        );
        assert!(
            lines[3].starts_with("MLP: gated, SiLU; neurons 128 × 4 layers"),
            "{lines:?}"
        );
        assert_eq!(lines.len(), 4, "no scales: {lines:?}");
    }

    #[test]
    fn linear_attention_layers_are_named_and_have_no_positions() {
        let mut config = llama();
        for layer in &mut config.layers[..3] {
            layer.mixer = LayerMixer::LinearAttention;
        }
        config.attention_output_gate = true;
        config.linear_attention = Some(crate::engine::config::LinearAttention {
            conv_kernel: 4,
            key_heads: 2,
            key_head_dim: 8,
            value_heads: 4,
            value_head_dim: 12,
            negative_eigenvalues: false,
            output_norm_eps: None,
            separate_projections: false,
        });
        let lines = config.anatomy();
        assert!(
            lines[0].ends_with(
                "output gated by σ(a gate beside each head's queries), in 1 of 4 layers"
            ),
            "{lines:?}"
        );
        assert_eq!(
            lines[1],
            "linear attention: Gated DeltaNet in 3 of 4 layers, 2 key heads of 8 for 4 value \
             heads of 12, a causal convolution of 4 taps, output gated by an RMSNorm"
        );
        assert_eq!(
            lines[2],
            "positions: rotary on all 16 dimensions of each head; no rotary"
        );
    }

    #[test]
    fn proportional_rotary_says_how_many_pairs_turn() {
        let rope = Rope {
            theta: 1e6,
            scaling: RopeScaling::Proportional {
                fraction: 0.25,
                factor: 1.0,
            },
        };
        assert_eq!(
            rope_words(&rope, 16),
            "θ 1000000, proportional: 2 of 8 pairs turn"
        );
    }

    #[test]
    fn layer_norm_families_say_so() {
        let mut config = llama();
        config.alibi = true;
        config.norm_centered = true;
        config.norm_bias = true;
        config.mlp_gated = false;
        config.activation = Activation::GeluTanh;
        config.logit_scale = Some(0.25);
        let lines = config.anatomy();
        assert_eq!(lines[1], "positions: ALiBi");
        assert!(
            lines[2].starts_with("norms: LayerNorm with bias"),
            "{lines:?}"
        );
        assert!(lines[3].contains("not gated, GELU (tanh)") && lines[3].contains("act(fc_in)"));
        assert_eq!(lines[4], "scales: logits × 0.25");
    }
}
