//! What is captured from each FFN neuron and how a sentence's tokens are pooled into one vector
//! (METHOD.md §2–§3). Every pooling is a weight per token, so the decoder reduces activations
//! with one small matmul per layer, on the device, and never keeps per-token states.

use serde::{Deserialize, Serialize};

/// How a sentence's token states become one vector.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum Pooling {
    /// Position-weighted mean, `w_t = t / (T(T+1)/2)` (MEXA, SGPT). The paper's choice.
    #[default]
    Weighted,
    /// Plain mean over tokens.
    Mean,
    /// The last token only.
    Last,
}

impl Pooling {
    pub const ALL: [Pooling; 3] = [Self::Weighted, Self::Mean, Self::Last];

    pub fn label(self) -> &'static str {
        match self {
            Self::Weighted => "position-weighted mean",
            Self::Mean => "mean",
            Self::Last => "last token",
        }
    }
}

/// What the neuron-activation-value variant (NAV) takes the magnitude of.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum NavSource {
    /// `|act_fn(gate_proj(h))|` (METHOD.md §2, the default).
    #[default]
    Activation,
    /// `|act_fn(gate_proj(h)) · up_proj(h)|`, the input of `down_proj` (a *choice* of §2).
    ActivationTimesUp,
}

impl NavSource {
    pub fn label(self) -> &'static str {
        match self {
            Self::Activation => "|act(gate)|",
            Self::ActivationTimesUp => "|act(gate)·up|",
        }
    }

    /// The label for a model whose MLP is gated or not: without a gate (GPT-2, BLOOM,
    /// Apertus, …) the neurons are `act(fc_in)`, and with no `up` both sources are that.
    pub fn label_for(self, gated: bool) -> &'static str {
        match (gated, self) {
            (true, _) => self.label(),
            (false, Self::Activation) => "|act(fc_in)|",
            (false, Self::ActivationTimesUp) => "|act(fc_in)| (no up)",
        }
    }
}

/// How a mixture of experts' neurons are pooled (a *choice* METHOD does not face, the paper's
/// models being dense; no effect on dense models).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum ExpertPooling {
    /// Over all the sentence's tokens, an expert's neurons inactive (0) at the tokens the router
    /// did not send to it: the states say which experts a sentence used as well as how.
    #[default]
    AllTokens,
    /// Over the tokens routed to the expert only, the pooling weights renormalized over them:
    /// how its neurons behave where it runs (0 where the sentence never used it).
    RoutedTokens,
}

impl ExpertPooling {
    pub const ALL: [ExpertPooling; 2] = [Self::AllTokens, Self::RoutedTokens];

    pub fn label(self) -> &'static str {
        match self {
            Self::AllTokens => "all tokens",
            Self::RoutedTokens => "routed tokens only",
        }
    }

    fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// Settings that change the captured states (and so are part of a cache key).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub struct CaptureSettings {
    pub pooling: Pooling,
    /// Drop tokens the tokenizer inserted (BOS, …) before pooling; positions are renumbered
    /// over the kept tokens. Default: keep them, as MEXA's code does.
    pub skip_special_tokens: bool,
    pub nav_source: NavSource,
    /// Mixtures of experts only. (Left out of the serialized settings at its default, so that
    /// the cache keys of earlier runs stay as they were.)
    #[serde(default, skip_serializing_if = "ExpertPooling::is_default")]
    pub expert_pooling: ExpertPooling,
}

/// The pooling weights of one sentence over its `ids.len()` token positions.
///
/// Returns `None` when no token is left to pool (a sentence of special tokens only).
pub fn token_weights(special: &[bool], pooling: Pooling, skip_special: bool) -> Option<Vec<f32>> {
    let kept: Vec<usize> = (0..special.len())
        .filter(|&t| !(skip_special && special[t]))
        .collect();
    let count = kept.len();
    if count == 0 {
        return None;
    }
    let mut weights = vec![0f32; special.len()];
    match pooling {
        Pooling::Weighted => {
            // Positions 1..=count over kept tokens; the sum of positions is count(count+1)/2.
            let total = (count * (count + 1)) as f64 / 2.0;
            for (rank, &t) in kept.iter().enumerate() {
                weights[t] = ((rank + 1) as f64 / total) as f32;
            }
        }
        Pooling::Mean => {
            for &t in &kept {
                weights[t] = (1.0 / count as f64) as f32;
            }
        }
        Pooling::Last => weights[kept[count - 1]] = 1.0,
    }
    Some(weights)
}

/// A one-hot weight on the last kept token (the MEXA "last token" embedding).
pub fn last_token_weights(special: &[bool], skip_special: bool) -> Option<Vec<f32>> {
    token_weights(special, Pooling::Last, skip_special)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn weighted_pooling_weights_grow_with_position_and_sum_to_one() {
        let w = token_weights(&[false; 4], Pooling::Weighted, false).unwrap();
        // T = 4: 1/10, 2/10, 3/10, 4/10
        assert_eq!(w, vec![0.1, 0.2, 0.3, 0.4]);
    }

    #[test]
    fn skipping_special_tokens_renumbers_positions() {
        let special = [true, false, false];
        let w = token_weights(&special, Pooling::Weighted, true).unwrap();
        assert_eq!(w[0], 0.0);
        assert!((w[1] - 1.0 / 3.0).abs() < 1e-7 && (w[2] - 2.0 / 3.0).abs() < 1e-7);
        let kept_all = token_weights(&special, Pooling::Weighted, false).unwrap();
        assert!((kept_all[0] - 1.0 / 6.0).abs() < 1e-7);
    }

    #[test]
    fn mean_and_last() {
        assert_eq!(
            token_weights(&[false; 2], Pooling::Mean, false).unwrap(),
            vec![0.5, 0.5]
        );
        assert_eq!(
            token_weights(&[false, false, true], Pooling::Last, true).unwrap(),
            vec![0.0, 1.0, 0.0]
        );
    }

    #[test]
    fn nothing_left_to_pool_is_none() {
        assert!(token_weights(&[true], Pooling::Mean, true).is_none());
        assert!(token_weights(&[], Pooling::Mean, false).is_none());
    }
}
