//! The alignment score on vectors, through the public API, against a brute-force reference.

use std::time::Instant;

use neuronxa::analysis::{
    SimilarityMatrix, chance_score, cosine_matrix, nearest_neighbours, normalize_rows, score,
};

/// Deterministic pseudo-random numbers in [-1, 1) (xorshift), so the tests need no seed policy.
fn noise(state: &mut u64) -> f32 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    ((*state >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
}

/// Pivot vectors and their "translations": the same vectors plus noise of the given size.
fn paired_vectors(n: usize, d: usize, noise_size: f32, seed: u64) -> (Vec<f32>, Vec<f32>) {
    let mut state = seed;
    let pivot: Vec<f32> = (0..n * d).map(|_| noise(&mut state)).collect();
    let other = pivot
        .iter()
        .map(|value| value + noise_size * noise(&mut state))
        .collect();
    (pivot, other)
}

/// METHOD.md §4 written as plainly as possible.
fn reference_score(a: &[f32], b: &[f32], n: usize, d: usize) -> f64 {
    let cosine = |i: usize, j: usize| {
        let (x, y) = (&a[i * d..(i + 1) * d], &b[j * d..(j + 1) * d]);
        let dot: f64 = x
            .iter()
            .zip(y)
            .map(|(p, q)| f64::from(*p) * f64::from(*q))
            .sum();
        let nx: f64 = x.iter().map(|p| f64::from(*p).powi(2)).sum::<f64>().sqrt();
        let ny: f64 = y.iter().map(|q| f64::from(*q).powi(2)).sum::<f64>().sqrt();
        if nx == 0.0 || ny == 0.0 {
            0.0
        } else {
            dot / (nx * ny)
        }
    };
    let matched = (0..n)
        .filter(|&i| {
            let c = cosine(i, i);
            (0..n).all(|j| j == i || (c > cosine(i, j) && c > cosine(j, i)))
        })
        .count();
    matched as f64 / n as f64
}

fn mutual_nn(a: &[f32], b: &[f32], n: usize, d: usize) -> f64 {
    let a = normalize_rows(a, n, d).expect("a");
    let b = normalize_rows(b, n, d).expect("b");
    score(&cosine_matrix(&a, &b).expect("cosines")).mutual_nn
}

#[test]
fn agrees_with_the_plain_definition_across_noise_levels() {
    let (n, d) = (60, 96);
    for (seed, noise_size) in [(1, 0.0), (2, 0.5), (3, 1.0), (4, 2.0), (5, 8.0)] {
        let (a, b) = paired_vectors(n, d, noise_size, seed);
        let got = mutual_nn(&a, &b, n, d);
        let want = reference_score(&a, &b, n, d);
        assert_eq!(got, want, "noise {noise_size}");
    }
}

#[test]
fn less_noise_aligns_better() {
    let (n, d) = (80, 64);
    let scores: Vec<f64> = [0.2, 1.0, 3.0, 20.0]
        .iter()
        .map(|&size| {
            let (a, b) = paired_vectors(n, d, size, 11);
            mutual_nn(&a, &b, n, d)
        })
        .collect();
    assert_eq!(scores[0], 1.0);
    assert!(scores.windows(2).all(|w| w[0] >= w[1]), "{scores:?}");
    assert!(scores[3] < 0.2, "{scores:?}");
}

#[test]
fn binary_activation_states_with_duplicates_and_silent_sentences() {
    // NAS vectors are 0/1: duplicated sentences give exactly equal cosines, silent ones zero.
    let (n, d) = (6, 32);
    let mut state = 99;
    let mut a: Vec<f32> = (0..n * d)
        .map(|_| f32::from(noise(&mut state) > 0.3))
        .collect();
    a[3 * d..4 * d].fill(0.0); // sentence 3: no neuron active
    let b_source = a.clone();
    a.copy_within(0..d, 5 * d); // pivot sentence 5 duplicates sentence 0
    let mut b = b_source;
    b.copy_within(0..d, 5 * d);
    let rows = normalize_rows(&a, n, d).expect("a");
    assert_eq!(rows.zero_rows(), 1);
    let sim = cosine_matrix(&rows, &normalize_rows(&b, n, d).expect("b")).expect("sim");
    assert!(sim.values().iter().all(|v| v.is_finite()));
    let result = score(&sim);
    assert_eq!(result.matched, vec![false, true, true, false, true, false]);
    assert_eq!((result.zero_rows, result.zero_columns), (1, 1));
    assert_eq!(result.mutual_nn, reference_score(&a, &b, n, d));
    let nn = nearest_neighbours(&sim);
    assert!(nn.forward[0].tied && nn.forward[3].tied);
    assert_eq!(nn.forward[1].index, 1);
}

#[test]
fn nearest_neighbour_tells_what_was_matched_instead() {
    let sim = SimilarityMatrix::from_values(3, vec![0.2, 0.9, 0.1, 0.3, 0.8, 0.1, 0.0, 0.1, 0.7])
        .expect("matrix");
    let nn = nearest_neighbours(&sim);
    assert_eq!(nn.forward[0].index, 1);
    assert_eq!(nn.forward[0].similarity, 0.9);
    assert_eq!(nn.backward[0].index, 1); // column 0's best row is 1 (0.3)
    assert_eq!(nn.backward[1].index, 0); // column 1's best row is 0 (0.9)
    assert_eq!(score(&sim).matched, vec![false, false, true]);
}

#[test]
fn chance_is_low_and_reproducible() {
    let (n, d) = (100, 64);
    let (a, b) = paired_vectors(n, d, 0.3, 5);
    let sim = cosine_matrix(
        &normalize_rows(&a, n, d).expect("a"),
        &normalize_rows(&b, n, d).expect("b"),
    )
    .expect("sim");
    assert_eq!(score(&sim).mutual_nn, 1.0);
    let chances: Vec<f64> = (0..5).map(|seed| chance_score(&sim, seed)).collect();
    assert!(chances.iter().all(|&c| c <= 0.1), "{chances:?}");
    assert_eq!(chance_score(&sim, 3), chances[3]);
}

#[test]
fn size_of_a_real_model_layer_is_fast_enough() {
    // Llama-3.1-8B: d_ff = 14 336; 100 sentences is the paper's setting.
    let (n, d) = (100, 14_336);
    let (a, b) = paired_vectors(n, d, 1.0, 21);
    let start = Instant::now();
    let score = mutual_nn(&a, &b, n, d);
    let elapsed = start.elapsed();
    assert_eq!(score, 1.0);
    assert!(elapsed.as_secs_f64() < 5.0, "took {elapsed:?}");
}

/// The largest size the program supports; run with `cargo test -- --ignored` to time it.
#[test]
#[ignore = "takes seconds: timing of n = 1000, d = 14 336"]
fn largest_supported_size() {
    let (n, d) = (1000, 14_336);
    let (a, b) = paired_vectors(n, d, 3.0, 8);
    let na = normalize_rows(&a, n, d).expect("a");
    let nb = normalize_rows(&b, n, d).expect("b");
    let start = Instant::now();
    let sim = cosine_matrix(&na, &nb).expect("sim");
    let matrix_time = start.elapsed();
    let result = score(&sim);
    println!(
        "n={n} d={d}: cosine matrix {matrix_time:?}, total {:?}, mutual NN {}",
        start.elapsed(),
        result.mutual_nn
    );
}

#[test]
fn duplicates_far_apart_in_a_large_matrix_still_tie() {
    // The matrix product may sum cells of different tiles in different orders; the tie between
    // two identical translations must survive that.
    let (n, d) = (97, 4099);
    let (a, mut b) = paired_vectors(n, d, 0.5, 77);
    b.copy_within(10 * d..11 * d, 90 * d);
    let sim = cosine_matrix(
        &normalize_rows(&a, n, d).expect("a"),
        &normalize_rows(&b, n, d).expect("b"),
    )
    .expect("sim");
    assert_eq!(sim.get(10, 10), sim.get(10, 90));
    let result = score(&sim);
    assert!(!result.matched[10]);
    assert_eq!(result.matched.iter().filter(|&&m| m).count(), n - 2);
    assert_eq!(result.mutual_nn, reference_score(&a, &b, n, d));
}
