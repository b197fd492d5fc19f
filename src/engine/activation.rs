//! The MLP activation of one layer, as the forward pass applies it: the config's kind, and for
//! xIELU the layer's own parameters (for gpt-oss' clamped SwiGLU, the config's).

use candle_core::{DType, Tensor};

use super::config::{Activation, ModelConfig};
use super::error::{EngineError, Result};
use super::weights::TensorSource;

/// One layer's activation function.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum LayerActivation {
    Silu,
    GeluTanh,
    Gelu,
    Relu2,
    XIelu(XIelu),
    /// gpt-oss: `g·σ(alpha·g)` with `g = min(gate, limit)`, and the up projection it
    /// multiplies clamped to `±limit` plus 1.
    ClampedSwiglu {
        alpha: f32,
        limit: f32,
    },
}

impl LayerActivation {
    /// The config's activation for layer `prefix` (`model.layers.3.`): xIELU reads its
    /// parameters from `mlp.act_fn.*` there.
    pub fn load(config: &ModelConfig, src: &dyn TensorSource, prefix: &str) -> Result<Self> {
        Ok(match config.activation {
            Activation::XIelu => Self::XIelu(XIelu::load(src, &format!("{prefix}mlp.act_fn."))?),
            Activation::ClampedSwiglu => {
                // `ModelConfig::validate` checked they come together.
                let clamp = config.swiglu_clamp.ok_or_else(|| {
                    EngineError::Device("a clamped SwiGLU without its parameters".into())
                })?;
                Self::ClampedSwiglu {
                    alpha: clamp.alpha as f32,
                    limit: clamp.limit as f32,
                }
            }
            kind => Self::without_parameters(kind).ok_or_else(|| {
                EngineError::Device(format!("the activation {kind:?} needs parameters"))
            })?,
        })
    }

    /// `kind` where it needs no parameters (all but xIELU).
    pub fn without_parameters(kind: Activation) -> Option<Self> {
        match kind {
            Activation::Silu => Some(Self::Silu),
            Activation::GeluTanh => Some(Self::GeluTanh),
            Activation::Gelu => Some(Self::Gelu),
            Activation::Relu2 => Some(Self::Relu2),
            Activation::XIelu | Activation::ClampedSwiglu => None,
        }
    }

    /// Whether `act(x) > 0` exactly where `x > 0`, so that NAS can read the sign of the
    /// activation's input (SiLU, GELU, ReLU²). xIELU is positive again far below 0, so its NAS
    /// reads the activation itself (METHOD §2: `1[a > 0]`).
    pub fn positive_with_input(&self) -> bool {
        !matches!(self, Self::XIelu(_))
    }

    /// `act(x)` with candle's ops (the generic path).
    pub fn apply(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Self::Silu => candle_nn::ops::silu(x)?,
            Self::GeluTanh => x.gelu()?,
            Self::Gelu => x.gelu_erf()?,
            Self::Relu2 => x.relu()?.sqr()?,
            Self::XIelu(p) => p.apply_tensor(x)?,
            Self::ClampedSwiglu { alpha, limit } => {
                let g = x.minimum(f64::from(*limit))?;
                (&g * candle_nn::ops::sigmoid(&g.affine(f64::from(*alpha), 0.0)?)?)?
            }
        })
    }

    /// What a gated MLP feeds its down projection: `act·up`, or with the clamped SwiGLU
    /// `act·(clamp(up, ±limit) + 1)`.
    pub fn gated_product(&self, act: &Tensor, up: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Self::ClampedSwiglu { limit, .. } => {
                let limit = f64::from(*limit);
                (act * up.clamp(-limit, limit)?.affine(1.0, 1.0)?)?
            }
            _ => (act * up)?,
        })
    }
}

/// xIELU (Huang & Schlag 2024, arXiv 2411.13010; Apertus) with one layer's parameters, as
/// transformers' `XIELUActivation` computes it:
///
/// ```text
/// x > 0:  α_p·x² + β·x
/// x ≤ 0:  (expm1(min(x, ε)) − x)·α_n + β·x
/// ```
///
/// with `α_p = softplus(alpha_p)` and `α_n = β + softplus(alpha_n)` from the stored values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct XIelu {
    pub alpha_p: f32,
    pub alpha_n: f32,
    pub beta: f32,
    pub eps: f32,
}

impl XIelu {
    /// transformers' defaults for `beta` and `eps`, for checkpoints that do not store them.
    const DEFAULT_BETA: f32 = 0.5;
    const DEFAULT_EPS: f32 = -1e-6;

    /// From the stored (pre-softplus) `alpha_p` and `alpha_n`.
    pub fn from_stored(alpha_p: f32, alpha_n: f32, beta: f32, eps: f32) -> Self {
        Self {
            alpha_p: softplus(alpha_p),
            alpha_n: beta + softplus(alpha_n),
            beta,
            eps,
        }
    }

    /// `alpha_p` and `alpha_n` (`[1]`), and `beta` and `eps` (scalars) where stored, under
    /// `prefix` (`model.layers.3.mlp.act_fn.`).
    fn load(src: &dyn TensorSource, prefix: &str) -> Result<Self> {
        let value = |name: &str, shape: &[usize], default: Option<f32>| -> Result<f32> {
            let name = format!("{prefix}{name}");
            if let (Some(default), false) = (default, src.contains(&name)) {
                return Ok(default);
            }
            let tensor = src.load(&name, shape, DType::F32, &candle_core::Device::Cpu)?;
            Ok(tensor.flatten_all()?.to_vec1::<f32>()?[0])
        };
        Ok(Self::from_stored(
            value("alpha_p", &[1], None)?,
            value("alpha_n", &[1], None)?,
            value("beta", &[], Some(Self::DEFAULT_BETA))?,
            value("eps", &[], Some(Self::DEFAULT_EPS))?,
        ))
    }

    /// One value, in transformers' order of operations.
    #[inline(always)]
    pub fn apply(&self, x: f32) -> f32 {
        if x > 0.0 {
            self.alpha_p * x * x + self.beta * x
        } else {
            (x.min(self.eps).exp_m1() - x) * self.alpha_n + self.beta * x
        }
    }

    /// Over a tensor, computed in f32 whatever its dtype: `expm1` near 0 loses everything in
    /// a half type (and candle has no `expm1`: `exp − 1` in f32 is within 1e-7 of it).
    fn apply_tensor(&self, x: &Tensor) -> Result<Tensor> {
        let x32 = x.to_dtype(DType::F32)?;
        let linear = x32.affine(f64::from(self.beta), 0.0)?;
        let positive = (x32.sqr()?.affine(f64::from(self.alpha_p), 0.0)? + &linear)?;
        let below = x32.minimum(self.eps)?.exp()?.affine(1.0, -1.0)?;
        let negative = ((below - &x32)?.affine(f64::from(self.alpha_n), 0.0)? + &linear)?;
        let zero = x32.zeros_like()?;
        let out = x32.gt(&zero)?.where_cond(&positive, &negative)?;
        Ok(out.to_dtype(x.dtype())?)
    }
}

/// `softplus` as torch computes it (`log1p(exp(x))`, `x` itself above 20).
fn softplus(x: f32) -> f32 {
    if x > 20.0 { x } else { x.exp().ln_1p() }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn xielu() -> XIelu {
        // transformers' initial values: softplus⁻¹(0.8) and softplus⁻¹(0.8 − 0.5).
        let inverse_softplus = |y: f32| y.exp_m1().ln();
        XIelu::from_stored(inverse_softplus(0.8), inverse_softplus(0.3), 0.5, -1e-6)
    }

    #[test]
    fn xielu_matches_hand_computed_values() {
        let p = xielu();
        assert!((p.alpha_p - 0.8).abs() < 1e-6 && (p.alpha_n - 0.8).abs() < 1e-6);
        // x = 2: 0.8·4 + 0.5·2 = 4.2.
        assert!((p.apply(2.0) - 4.2).abs() < 1e-5);
        // x = −1: (e⁻¹ − 1 + 1)·0.8 − 0.5 = 0.8/e − 0.5 = −0.20570.
        assert!((p.apply(-1.0) - (0.8 / std::f32::consts::E - 0.5)).abs() < 1e-6);
        // x = −4: (e⁻⁴ − 1 + 4)·0.8 − 2 = 0.41465: positive again far below 0.
        assert!((p.apply(-4.0) - ((-4f32).exp() + 3.0) * 0.8 + 2.0).abs() < 1e-5);
        assert!(p.apply(-4.0) > 0.0);
        // Just below 0 the ELU part is ~x²/2 and the linear part leads: negative.
        assert!(p.apply(-1e-4) < 0.0);
        // At 0 itself the ELU part's ε leaves a trace below 0: not active.
        assert!(p.apply(0.0) < 0.0 && p.apply(0.0) > -1e-6);
        assert!(!LayerActivation::XIelu(p).positive_with_input());
        assert!(LayerActivation::Silu.positive_with_input());
    }

    #[test]
    fn xielu_on_tensors_matches_the_scalar_form() {
        let p = xielu();
        let xs: Vec<f32> = (-80..=80)
            .map(|i| i as f32 * 0.1)
            .chain([-1e-5, 1e-5])
            .collect();
        let tensor = Tensor::from_slice(&xs, xs.len(), &candle_core::Device::Cpu).unwrap();
        let ours = LayerActivation::XIelu(p)
            .apply(&tensor)
            .unwrap()
            .to_vec1::<f32>()
            .unwrap();
        for (x, y) in xs.iter().zip(ours) {
            assert!(
                (y - p.apply(*x)).abs() <= 1e-6 * (1.0 + y.abs()),
                "x = {x}: {y} vs {}",
                p.apply(*x)
            );
            assert_eq!(y > 0.0, p.apply(*x) > 0.0, "sign at x = {x}");
        }
    }

    #[test]
    fn softplus_follows_torch() {
        assert!((softplus(0.0) - std::f32::consts::LN_2).abs() < 1e-7);
        assert_eq!(softplus(25.0), 25.0);
        assert!((softplus(-3.0) - 0.048587352).abs() < 1e-8);
    }
}
