//! Correlation of alignment scores with downstream task accuracies (METHOD.md §7).
//!
//! - Pearson r with a two-sided t-test on n − 2 degrees of freedom and a Fisher-z 95 % interval
//!   (as R's `cor.test`).
//! - Spearman ρ = Pearson r of the ranks, ties given their average rank; its p-value uses the
//!   same t approximation (as R does when there are ties, and as SciPy always does), not an
//!   exact permutation distribution.
//! - A percentile bootstrap 95 % interval for r: pairs resampled with replacement, seeded.
//!   Resamples in which x or y is constant (r undefined) are drawn again.
//! - The least-squares line y = intercept + slope · x.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

use super::error::{AnalysisError, Result};

#[derive(Debug, Clone, PartialEq)]
pub struct Correlation {
    /// Number of (x, y) pairs.
    pub n: usize,
    pub pearson_r: f64,
    /// t statistic of r, on n − 2 degrees of freedom (±∞ when |r| = 1).
    pub t_statistic: f64,
    /// Two-sided p-value of r against 0.
    pub p_value: f64,
    /// 95 % interval of r by Fisher's z; (−1, 1) for n = 3, where its standard error is infinite.
    pub ci95_fisher: (f64, f64),
    pub spearman_rho: f64,
    /// Two-sided p-value of ρ (t approximation, n − 2 degrees of freedom).
    pub spearman_p: f64,
    /// Percentile bootstrap 95 % interval of r.
    pub bootstrap_ci95: (f64, f64),
    /// Least-squares slope of y on x.
    pub slope: f64,
    pub intercept: f64,
}

/// Correlates `x` (e.g. NeuronXA scores) with `y` (task accuracies), pair by pair.
///
/// Errors when the lengths differ, n < 3, a value is not finite, x or y has zero variance, or
/// With `bootstrap_samples` = 0 the bootstrap interval is (NaN, NaN).
/// The fewest pairs a correlation is computed for (the t-test has n − 2 degrees of freedom).
pub const MIN_POINTS: usize = 3;

pub fn correlate(x: &[f64], y: &[f64], bootstrap_samples: usize, seed: u64) -> Result<Correlation> {
    if x.len() != y.len() {
        return Err(AnalysisError::InvalidInput(format!(
            "x has {} values but y has {}: they must be paired",
            x.len(),
            y.len()
        )));
    }
    let n = x.len();
    if n < MIN_POINTS {
        return Err(AnalysisError::TooFewPoints { n });
    }
    for (name, values) in [("x", x), ("y", y)] {
        if let Some(index) = values.iter().position(|value| !value.is_finite()) {
            return Err(AnalysisError::NonFinite {
                what: name.to_string(),
                position: format!("index {index}"),
            });
        }
    }
    let zero_x = variance_sum(x) == 0.0;
    let zero_y = variance_sum(y) == 0.0;
    if zero_x || zero_y {
        let which = match (zero_x, zero_y) {
            (true, true) => "both x and y",
            (true, false) => "x",
            _ => "y",
        };
        return Err(AnalysisError::ZeroVariance {
            which: which.to_string(),
        });
    }
    let pearson_r = pearson(x, y);
    let (t_statistic, p_value) = t_test(pearson_r, n)?;
    let spearman_rho = pearson(&average_ranks(x), &average_ranks(y));
    let (_, spearman_p) = t_test(spearman_rho, n)?;
    let (mean_x, mean_y) = (mean(x), mean(y));
    let slope = covariance_sum(x, y) / variance_sum(x);
    Ok(Correlation {
        n,
        pearson_r,
        t_statistic,
        p_value,
        ci95_fisher: fisher_interval(pearson_r, n)?,
        spearman_rho,
        spearman_p,
        // No resamples asked for (r at every layer, say): no interval.
        bootstrap_ci95: if bootstrap_samples == 0 {
            (f64::NAN, f64::NAN)
        } else {
            bootstrap_interval(x, y, bootstrap_samples, seed)?
        },
        slope,
        intercept: mean_y - slope * mean_x,
    })
}

fn mean(values: &[f64]) -> f64 {
    values.iter().sum::<f64>() / values.len() as f64
}

/// Σ (x − x̄)², two-pass for accuracy.
fn variance_sum(values: &[f64]) -> f64 {
    let m = mean(values);
    values.iter().map(|v| (v - m) * (v - m)).sum()
}

fn covariance_sum(x: &[f64], y: &[f64]) -> f64 {
    let (mx, my) = (mean(x), mean(y));
    x.iter().zip(y).map(|(a, b)| (a - mx) * (b - my)).sum()
}

/// Pearson r, clamped to [−1, 1] against rounding; the caller ensures non-zero variances.
fn pearson(x: &[f64], y: &[f64]) -> f64 {
    let r = covariance_sum(x, y) / (variance_sum(x) * variance_sum(y)).sqrt();
    r.clamp(-1.0, 1.0)
}

/// t = r √((n − 2)/(1 − r²)) and its two-sided p-value on n − 2 degrees of freedom.
fn t_test(r: f64, n: usize) -> Result<(f64, f64)> {
    // Values equal up to rounding (all ranks tied, say) leave r undefined.
    if !r.is_finite() {
        return Err(AnalysisError::ZeroVariance {
            which: "x or y (constant up to rounding)".to_string(),
        });
    }
    if r.abs() >= 1.0 {
        return Ok((r.signum() * f64::INFINITY, 0.0));
    }
    let df = (n - 2) as f64;
    let t = r * (df / (1.0 - r * r)).sqrt();
    let distribution = StudentsT::new(0.0, 1.0, df)
        .map_err(|error| AnalysisError::Compute(format!("Student t with {df} df: {error}")))?;
    // The survival function keeps its precision far in the tail (p ~ 1e-15), unlike 1 − cdf.
    Ok((t, (2.0 * distribution.sf(t.abs())).min(1.0)))
}

fn fisher_interval(r: f64, n: usize) -> Result<(f64, f64)> {
    if r.abs() >= 1.0 {
        return Ok((r, r));
    }
    if n <= 3 {
        return Ok((-1.0, 1.0));
    }
    let z_975 = Normal::new(0.0, 1.0)
        .map_err(|error| AnalysisError::Compute(error.to_string()))?
        .inverse_cdf(0.975);
    let z = r.atanh();
    let half_width = z_975 / ((n - 3) as f64).sqrt();
    Ok(((z - half_width).tanh(), (z + half_width).tanh()))
}

/// Ranks 1..=n, tied values sharing the mean of the ranks they span.
fn average_ranks(values: &[f64]) -> Vec<f64> {
    let mut order: Vec<usize> = (0..values.len()).collect();
    order.sort_by(|&a, &b| values[a].total_cmp(&values[b]));
    let mut ranks = vec![0.0; values.len()];
    let mut start = 0;
    while start < order.len() {
        let mut end = start + 1;
        while end < order.len() && values[order[end]] == values[order[start]] {
            end += 1;
        }
        // Positions start..end (0-based) hold ranks start+1..=end; their mean:
        let average = (start + 1 + end) as f64 / 2.0;
        for &index in &order[start..end] {
            ranks[index] = average;
        }
        start = end;
    }
    ranks
}

fn bootstrap_interval(x: &[f64], y: &[f64], samples: usize, seed: u64) -> Result<(f64, f64)> {
    let n = x.len();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut estimates = Vec::with_capacity(samples);
    let mut resample_x = vec![0.0; n];
    let mut resample_y = vec![0.0; n];
    // Even for n = 3 about 1 draw in 9 is constant; 100 tries per kept sample is ample.
    let max_draws = samples.saturating_mul(100);
    let mut draws = 0;
    while estimates.len() < samples && draws < max_draws {
        draws += 1;
        for k in 0..n {
            let pick = rng.random_range(0..n);
            resample_x[k] = x[pick];
            resample_y[k] = y[pick];
        }
        if variance_sum(&resample_x) > 0.0 && variance_sum(&resample_y) > 0.0 {
            estimates.push(pearson(&resample_x, &resample_y));
        }
    }
    if estimates.len() < samples {
        return Err(AnalysisError::InvalidInput(format!(
            "bootstrap: only {} of {draws} resamples had non-constant x and y",
            estimates.len()
        )));
    }
    estimates.sort_by(f64::total_cmp);
    Ok((quantile(&estimates, 0.025), quantile(&estimates, 0.975)))
}

/// Quantile of sorted values with linear interpolation (R's default, type 7).
fn quantile(sorted: &[f64], probability: f64) -> f64 {
    let position = probability * (sorted.len() - 1) as f64;
    let below = position.floor() as usize;
    let above = (below + 1).min(sorted.len() - 1);
    let weight = position - below as f64;
    sorted[below] * (1.0 - weight) + sorted[above] * weight
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn average_ranks_share_ties() {
        assert_eq!(
            average_ranks(&[10.0, 20.0, 10.0, 30.0, 20.0, 10.0]),
            vec![2.0, 4.5, 2.0, 6.0, 4.5, 2.0]
        );
        assert_eq!(average_ranks(&[3.0, 1.0, 2.0]), vec![3.0, 1.0, 2.0]);
    }

    #[test]
    fn quantile_type_7() {
        let sorted = [1.0, 2.0, 3.0, 4.0, 5.0];
        assert_eq!(quantile(&sorted, 0.5), 3.0);
        assert_eq!(quantile(&sorted, 0.25), 2.0);
        assert!((quantile(&sorted, 0.1) - 1.4).abs() < 1e-12);
        assert_eq!(quantile(&[7.0], 0.975), 7.0);
    }
}
