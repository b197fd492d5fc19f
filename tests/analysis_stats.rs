//! Correlations checked against published values (R's cor.test and lm, Anscombe 1973).

use neuronxa::analysis::{AnalysisError, correlate};

/// R's `mtcars$mpg` (Motor Trend 1974), in row order.
const MTCARS_MPG: [f64; 32] = [
    21.0, 21.0, 22.8, 21.4, 18.7, 18.1, 14.3, 24.4, 22.8, 19.2, 17.8, 16.4, 17.3, 15.2, 10.4, 10.4,
    14.7, 32.4, 30.4, 33.9, 21.5, 15.5, 15.2, 13.3, 19.2, 27.3, 26.0, 30.4, 15.8, 19.7, 15.0, 21.4,
];
/// R's `mtcars$wt` (1000 lbs).
const MTCARS_WT: [f64; 32] = [
    2.620, 2.875, 2.320, 3.215, 3.440, 3.460, 3.570, 3.190, 3.150, 3.440, 3.440, 4.070, 3.730,
    3.780, 5.250, 5.424, 5.345, 2.200, 1.615, 1.835, 2.465, 3.520, 3.435, 3.840, 3.845, 1.935,
    2.140, 1.513, 3.170, 2.770, 3.570, 2.780,
];

fn close(got: f64, want: f64, tolerance: f64, what: &str) {
    assert!(
        (got - want).abs() <= tolerance,
        "{what}: got {got}, published {want}"
    );
}

#[test]
fn mtcars_mpg_against_weight_matches_r() {
    // cor.test(mtcars$mpg, mtcars$wt): t = -9.559, df = 30, p-value = 1.294e-10,
    // 95 percent confidence interval: -0.9338264 -0.7440872, cor -0.8676594
    let result = correlate(&MTCARS_WT, &MTCARS_MPG, 2000, 1).expect("correlate");
    assert_eq!(result.n, 32);
    close(result.pearson_r, -0.8676594, 5e-8, "r");
    close(result.t_statistic, -9.559, 5e-4, "t");
    close(result.p_value, 1.294e-10, 5e-14, "p");
    close(result.ci95_fisher.0, -0.9338264, 5e-8, "CI low");
    close(result.ci95_fisher.1, -0.7440872, 5e-8, "CI high");
    // lm(mpg ~ wt): (Intercept) 37.2851, wt -5.3445
    close(result.intercept, 37.2851, 5e-5, "intercept");
    close(result.slope, -5.3445, 5e-5, "slope");
    // cor.test(..., method = "spearman"): S = 10292, p-value = 1.488e-11, rho -0.886422
    // (R warns that with ties it cannot compute an exact p-value and uses the t approximation.)
    close(result.spearman_rho, -0.886422, 5e-7, "rho");
    close(result.spearman_p, 1.488e-11, 5e-15, "Spearman p");
    let (low, high) = result.bootstrap_ci95;
    assert!(
        low < result.pearson_r && result.pearson_r < high,
        "{low} {high}"
    );
    assert!(low > -0.97 && high < -0.7, "bootstrap CI {low} {high}");
}

#[test]
fn anscombe_quartet_all_give_r_0_816() {
    // Anscombe (1973): the four sets share mean, variance, r ≈ 0.816 and y = 3.00 + 0.500 x.
    let x = [10.0, 8.0, 13.0, 9.0, 11.0, 14.0, 6.0, 4.0, 12.0, 7.0, 5.0];
    let y1 = [
        8.04, 6.95, 7.58, 8.81, 8.33, 9.96, 7.24, 4.26, 10.84, 4.82, 5.68,
    ];
    let y2 = [
        9.14, 8.14, 8.74, 8.77, 9.26, 8.10, 6.13, 3.10, 9.13, 7.26, 4.74,
    ];
    let y3 = [
        7.46, 6.77, 12.74, 7.11, 7.81, 8.84, 6.08, 5.39, 8.15, 6.42, 5.73,
    ];
    let x4 = [8.0, 8.0, 8.0, 8.0, 8.0, 8.0, 8.0, 19.0, 8.0, 8.0, 8.0];
    let y4 = [
        6.58, 5.76, 7.71, 8.84, 8.47, 7.04, 5.25, 12.50, 5.56, 7.91, 6.89,
    ];
    let first = correlate(&x, &y1, 500, 2).expect("set 1");
    close(first.pearson_r, 0.81642, 5e-6, "set 1 r");
    for (name, xs, ys) in [("2", &x, &y2), ("3", &x, &y3), ("4", &x4, &y4)] {
        let result = correlate(xs, ys, 500, 2).expect("set");
        close(result.pearson_r, 0.816, 1e-3, &format!("set {name} r"));
        close(result.slope, 0.500, 1e-3, &format!("set {name} slope"));
        close(
            result.intercept,
            3.00,
            3e-3,
            &format!("set {name} intercept"),
        );
    }
}

#[test]
fn women_height_weight_matches_r_and_a_perfect_monotone_rank() {
    // cor.test(women$height, women$weight): t = 37.855, df = 13, p-value = 1.091e-14,
    // 95 percent confidence interval: 0.9860970 0.9985447, cor 0.9954948
    let height: Vec<f64> = (58..=72).map(f64::from).collect();
    let weight = [
        115.0, 117.0, 120.0, 123.0, 126.0, 129.0, 132.0, 135.0, 139.0, 142.0, 146.0, 150.0, 154.0,
        159.0, 164.0,
    ];
    let result = correlate(&height, &weight, 1000, 3).expect("women");
    close(result.pearson_r, 0.9954948, 5e-8, "r");
    close(result.t_statistic, 37.855, 5e-4, "t");
    close(result.p_value, 1.091e-14, 5e-18, "p");
    close(result.ci95_fisher.0, 0.9860970, 5e-8, "CI low");
    close(result.ci95_fisher.1, 0.9985447, 5e-8, "CI high");
    // lm(weight ~ height): (Intercept) -87.52, height 3.45
    close(result.intercept, -87.51667, 5e-5, "intercept");
    close(result.slope, 3.45, 1e-9, "slope");
    // Both strictly increasing: Spearman is exactly 1, its p-value 0.
    assert_eq!(result.spearman_rho, 1.0);
    assert_eq!(result.spearman_p, 0.0);
}

#[test]
fn spearman_uses_average_ranks_for_ties() {
    // Ranks of x: 1, 2.5, 2.5, 4, 5 — of y: 1, 2, 3, 4.5, 4.5. Pearson of these ranks by hand:
    // mean 3 each; deviations x (-2, -.5, -.5, 1, 2), y (-2, -1, 0, 1.5, 1.5);
    // Σdxdy = 4 + .5 + 0 + 1.5 + 3 = 9; Σdx² = 9.5; Σdy² = 9.5 → ρ = 9 / 9.5.
    let x = [1.0, 2.0, 2.0, 3.0, 4.0];
    let y = [10.0, 20.0, 30.0, 40.0, 40.0];
    let result = correlate(&x, &y, 100, 4).expect("ties");
    close(result.spearman_rho, 9.0 / 9.5, 1e-12, "rho");
}

#[test]
fn perfect_and_smallest_cases() {
    let result = correlate(&[1.0, 2.0, 3.0], &[2.0, 4.0, 6.0], 200, 5).expect("line");
    assert_eq!(result.pearson_r, 1.0);
    assert_eq!(result.p_value, 0.0);
    assert_eq!(result.ci95_fisher, (1.0, 1.0));
    assert_eq!(result.bootstrap_ci95, (1.0, 1.0));
    close(result.slope, 2.0, 1e-12, "slope");
    // n = 3, imperfect: Fisher's standard error is infinite, so the interval is all of (-1, 1).
    let result = correlate(&[1.0, 2.0, 3.0], &[1.0, 3.0, 2.0], 200, 5).expect("n=3");
    close(result.pearson_r, 0.5, 1e-12, "r");
    assert_eq!(result.ci95_fisher, (-1.0, 1.0));
    // t = 0.5·√(1/0.75) on 1 df: p = 1 − 2·atan(t)/π (Cauchy) = 2/3.
    close(result.p_value, 2.0 / 3.0, 1e-12, "p with 1 df");
}

#[test]
fn bootstrap_is_seeded() {
    let first = correlate(&MTCARS_WT, &MTCARS_MPG, 300, 42).expect("a");
    let again = correlate(&MTCARS_WT, &MTCARS_MPG, 300, 42).expect("b");
    let other = correlate(&MTCARS_WT, &MTCARS_MPG, 300, 43).expect("c");
    assert_eq!(first.bootstrap_ci95, again.bootstrap_ci95);
    assert_ne!(first.bootstrap_ci95, other.bootstrap_ci95);
}

#[test]
fn bad_inputs_say_what_is_wrong() {
    let error = correlate(&[1.0, 2.0], &[1.0, 2.0], 10, 0).expect_err("n=2");
    assert!(matches!(error, AnalysisError::TooFewPoints { n: 2 }));
    assert!(error.to_string().contains("at least 3"), "{error}");
    let error = correlate(&[1.0, 1.0, 1.0], &[1.0, 2.0, 3.0], 10, 0).expect_err("x constant");
    assert_eq!(
        error.to_string(),
        "x has zero variance (all values equal): the correlation is undefined"
    );
    let error = correlate(&[1.0, 2.0, 3.0], &[5.0, 5.0, 5.0], 10, 0).expect_err("y constant");
    assert!(
        error.to_string().starts_with("y has zero variance"),
        "{error}"
    );
    let error = correlate(&[2.0; 4], &[5.0; 4], 10, 0).expect_err("both");
    assert!(error.to_string().starts_with("both x and y"), "{error}");
    assert!(correlate(&[1.0, 2.0, 3.0], &[1.0, 2.0], 10, 0).is_err());
    let error = correlate(&[1.0, f64::NAN, 3.0], &[1.0, 2.0, 3.0], 10, 0).expect_err("nan");
    assert!(error.to_string().contains("index 1"), "{error}");
    // Constant up to rounding: an error in words, not a panic inside the t distribution.
    assert!(correlate(&[0.2, 0.2, 0.2], &[0.1, 0.5, 0.3], 100, 0).is_err());
    // No resamples: everything but the bootstrap interval, which is left undefined.
    let no_bootstrap = correlate(&[1.0, 2.0, 3.0], &[1.0, 3.0, 2.0], 0, 0).unwrap();
    assert!((no_bootstrap.pearson_r - 0.5).abs() < 1e-12);
    assert!(no_bootstrap.bootstrap_ci95.0.is_nan() && no_bootstrap.bootstrap_ci95.1.is_nan());
}
