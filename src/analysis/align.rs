//! Alignment of two languages at one layer (METHOD.md §4): cosine similarities between the
//! sentence vectors of the two sides, and the fraction of pairs that are strict mutual nearest
//! neighbours.
//!
//! Rows of a [`SimilarityMatrix`] are the first side's sentences (the pivot), columns the
//! second side's. Sentence `i` of one side is the translation of sentence `i` of the other.
//!
//! Zero vectors (no neuron ever active) have no direction: their cosine with anything is 0, and
//! they are counted in the result. With n ≥ 2 such a sentence is never matched, because its
//! whole row (or column) ties at 0. For n = 1 the criterion is vacuous (there is nothing to
//! beat), so the single pair is defined as matched iff neither of its vectors is zero — the
//! same outcome a zero vector has for larger n.

use rand::SeedableRng;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;

use super::error::{AnalysisError, Result};

/// Row-wise L2-normalised copy of an `n × d` matrix of sentence vectors.
#[derive(Debug, Clone, PartialEq)]
pub struct NormalizedRows {
    values: Vec<f32>,
    rows: usize,
    dim: usize,
    zero: Vec<bool>,
}

impl NormalizedRows {
    /// Rows already normalised by [`normalize_rows_in_place`], with the zero flags it returned.
    pub fn from_normalized(values: Vec<f32>, dim: usize, zero: Vec<bool>) -> Result<Self> {
        let rows = zero.len();
        if rows.checked_mul(dim) != Some(values.len()) {
            return Err(AnalysisError::InvalidInput(format!(
                "expected {rows} × {dim} normalised values, got {}",
                values.len()
            )));
        }
        Ok(Self {
            values,
            rows,
            dim,
            zero,
        })
    }

    /// Number of rows (sentences).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Length of each vector.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// Row `i`, of unit length unless it was zero; `None` past the end.
    pub fn row(&self, i: usize) -> Option<&[f32]> {
        (i < self.rows).then(|| &self.values[i * self.dim..(i + 1) * self.dim])
    }

    /// All rows, row-major.
    pub fn values(&self) -> &[f32] {
        &self.values
    }

    /// Whether row `i` was the zero vector.
    pub fn is_zero(&self, i: usize) -> bool {
        self.zero.get(i).copied().unwrap_or(false)
    }

    /// How many rows were the zero vector (left as zero).
    pub fn zero_rows(&self) -> usize {
        self.zero.iter().filter(|&&zero| zero).count()
    }
}

/// L2-normalises each of the `n` rows of the row-major `n × d` matrix `x`.
///
/// Zero rows stay zero and are flagged. Errors when `x` does not hold `n × d` values or holds a
/// NaN or infinity (which would make every cosine of that sentence meaningless).
pub fn normalize_rows(x: &[f32], n: usize, d: usize) -> Result<NormalizedRows> {
    let mut values = x.to_vec();
    let zero = normalize_rows_in_place(&mut values, n, d)?;
    Ok(NormalizedRows {
        values,
        rows: n,
        dim: d,
        zero,
    })
}

/// [`normalize_rows`] in place: `x` becomes the normalised rows; returns which were zero.
pub fn normalize_rows_in_place(x: &mut [f32], n: usize, d: usize) -> Result<Vec<bool>> {
    if n.checked_mul(d) != Some(x.len()) {
        return Err(AnalysisError::InvalidInput(format!(
            "expected {n} × {d} sentence-vector values, got {}",
            x.len()
        )));
    }
    use rayon::prelude::*;
    let mut zero = vec![d == 0; n];
    if d > 0 {
        x.par_chunks_mut(d)
            .zip(zero.par_iter_mut())
            .enumerate()
            .try_for_each(|(row_index, (row, zero))| normalize_row(row, row_index, zero))?;
    }
    Ok(zero)
}

/// One row of [`normalize_rows_in_place`].
fn normalize_row(row: &mut [f32], row_index: usize, zero: &mut bool) -> Result<()> {
    let norm = pulp::Arch::new().dispatch(ScaleToUnitLength { row: &mut *row });
    // The norm is finite exactly when every value is: no f32 squared overflows an f64.
    if !norm.is_finite() {
        let column = row.iter().position(|value| !value.is_finite());
        return Err(AnalysisError::NonFinite {
            what: "a sentence vector".to_string(),
            position: format!("sentence {row_index}, component {}", column.unwrap_or(0)),
        });
    }
    if norm == 0.0 {
        // -0.0 and 0.0 alike become 0.0.
        row.fill(0.0);
        *zero = true;
    }
    Ok(())
}

/// Divides a row by its L2 norm (in f64: 14 336 squared activations lose bits in f32) where
/// that is finite and not zero; gives the norm.
///
/// This and [`FixedOrderDot`] are `pulp` operations, built for the widest vector instructions
/// the CPU has (AVX2 or AVX-512 on x86-64, found at run time) where the rest of the crate
/// targets baseline x86-64: the same operations in the same order, so the same bits, on each.
struct ScaleToUnitLength<'a> {
    row: &'a mut [f32],
}

impl pulp::WithSimd for ScaleToUnitLength<'_> {
    type Output = f64;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> f64 {
        let norm = sum_of_products(self.row, self.row).sqrt();
        if norm.is_finite() && norm != 0.0 {
            let inverse = 1.0 / norm;
            for value in self.row.iter_mut() {
                *value = (f64::from(*value) * inverse) as f32;
            }
        }
        norm
    }
}

/// `Σ left[i] · right[i]` in f64 (see [`sum_of_products`]).
struct FixedOrderDot<'a> {
    left: &'a [f32],
    right: &'a [f32],
}

impl pulp::WithSimd for FixedOrderDot<'_> {
    type Output = f64;

    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> f64 {
        sum_of_products(self.left, self.right)
    }
}

/// Running sums side by side: enough of them that the additions need not wait on each other
/// (four AVX-512 registers of f64).
const SUM_LANES: usize = 32;

/// `Σ left[i] · right[i]` in f64, always in the same order: `SUM_LANES` running sums, each
/// over every `SUM_LANES`-th product, added pairwise, then the tail. Each f32 product is exact
/// in f64, so equal inputs give bit-identical sums wherever they come from.
#[inline(always)]
fn sum_of_products(left: &[f32], right: &[f32]) -> f64 {
    let mut lanes = [0.0f64; SUM_LANES];
    let (left_chunks, right_chunks) = (left.chunks_exact(SUM_LANES), right.chunks_exact(SUM_LANES));
    let tail: f64 = left_chunks
        .remainder()
        .iter()
        .zip(right_chunks.remainder())
        .map(|(&x, &y)| f64::from(x) * f64::from(y))
        .sum();
    for (x, y) in left_chunks.zip(right_chunks) {
        for lane in 0..SUM_LANES {
            lanes[lane] += f64::from(x[lane]) * f64::from(y[lane]);
        }
    }
    let mut width = SUM_LANES;
    while width > 1 {
        width /= 2;
        for lane in 0..width {
            lanes[lane] += lanes[lane + width];
        }
    }
    lanes[0] + tail
}

/// Square matrix of cosine similarities, rows = first side's sentences, columns = second's.
#[derive(Debug, Clone, PartialEq)]
pub struct SimilarityMatrix {
    n: usize,
    values: Vec<f64>,
    zero_rows: Vec<bool>,
    zero_columns: Vec<bool>,
}

impl SimilarityMatrix {
    /// A matrix from `n × n` row-major similarities (no vector is taken as zero).
    /// Errors for n = 0, a wrong number of values, or a non-finite value.
    pub fn from_values(n: usize, values: Vec<f64>) -> Result<SimilarityMatrix> {
        if n == 0 {
            return Err(AnalysisError::InvalidInput(
                "a similarity matrix needs at least one sentence pair".to_string(),
            ));
        }
        if n.checked_mul(n) != Some(values.len()) {
            return Err(AnalysisError::InvalidInput(format!(
                "expected {n} × {n} similarities, got {}",
                values.len()
            )));
        }
        if let Some(index) = values.iter().position(|value| !value.is_finite()) {
            return Err(AnalysisError::NonFinite {
                what: "similarity matrix".to_string(),
                position: format!("row {}, column {}", index / n, index % n),
            });
        }
        Ok(SimilarityMatrix {
            n,
            values,
            zero_rows: vec![false; n],
            zero_columns: vec![false; n],
        })
    }

    /// Number of sentence pairs.
    pub fn n(&self) -> usize {
        self.n
    }

    /// Similarity of row sentence `i` and column sentence `j`; `None` out of range.
    pub fn get(&self, i: usize, j: usize) -> Option<f64> {
        (i < self.n && j < self.n).then(|| self.values[i * self.n + j])
    }

    /// Row `i`: similarities of first-side sentence `i` with every second-side sentence.
    pub fn row(&self, i: usize) -> Option<&[f64]> {
        (i < self.n).then(|| &self.values[i * self.n..(i + 1) * self.n])
    }

    /// All similarities, row-major.
    pub fn values(&self) -> &[f64] {
        &self.values
    }

    /// Whether first-side sentence `i` had a zero vector.
    pub fn is_zero_row(&self, i: usize) -> bool {
        self.zero_rows.get(i).copied().unwrap_or(false)
    }

    /// Whether second-side sentence `j` had a zero vector.
    pub fn is_zero_column(&self, j: usize) -> bool {
        self.zero_columns.get(j).copied().unwrap_or(false)
    }

    /// The same matrix with the two sides swapped.
    pub fn transposed(&self) -> SimilarityMatrix {
        let n = self.n;
        let values = (0..n * n)
            .map(|index| self.values[(index % n) * n + index / n])
            .collect();
        SimilarityMatrix {
            n,
            values,
            zero_rows: self.zero_columns.clone(),
            zero_columns: self.zero_rows.clone(),
        }
    }

    fn at(&self, i: usize, j: usize) -> f64 {
        self.values[i * self.n + j]
    }
}

/// Entries this close to their row's or column's maximum are recomputed exactly (see below).
/// About 100 × the largest f32 matrix-product error measured for unit vectors with 14 336
/// non-negative components (1.3e-7), so no entry that could be the maximum is missed.
const NEAR_TIE: f64 = 1e-5;

/// Cosine similarities of every row of `a` with every row of `b` (same n, same d).
///
/// The bulk is an f32 matrix product (a multithreaded CPU GEMM). The strict criterion then only
/// depends on the entries near each row's and column's maximum, and a GEMM may sum different
/// cells in a different order, so two identical vectors could differ in the last bit and break
/// a true tie. Those entries are therefore recomputed in f64 with one fixed summation order:
/// identical vectors give identical cosines, and the ranking near the top is exact.
pub fn cosine_matrix(a: &NormalizedRows, b: &NormalizedRows) -> Result<SimilarityMatrix> {
    if a.rows != b.rows {
        return Err(AnalysisError::InvalidInput(format!(
            "the two sides must have the same number of sentences: {} and {}",
            a.rows, b.rows
        )));
    }
    if a.dim != b.dim {
        return Err(AnalysisError::InvalidInput(format!(
            "the two sides' vectors differ in length: {} and {}",
            a.dim, b.dim
        )));
    }
    let n = a.rows;
    if n == 0 {
        return Err(AnalysisError::InvalidInput(
            "no sentences to compare".to_string(),
        ));
    }
    let mut values = product_with_transpose(a, b);
    refine_near_maxima(a, b, &mut values);
    Ok(SimilarityMatrix {
        n,
        values,
        zero_rows: a.zero.clone(),
        zero_columns: b.zero.clone(),
    })
}

/// `NEURONXA_SCORING_GEMM=single`: products already running on a rayon thread (the scoring's
/// layers side by side) use one thread each instead of sharing all of them, for A/B benchmarks
/// of the nested parallelism on many cores (`scripts/gpu_check.py --scoring-bench`).
fn single_threaded_products() -> bool {
    static SINGLE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *SINGLE
        .get_or_init(|| std::env::var("NEURONXA_SCORING_GEMM").is_ok_and(|value| value == "single"))
}

/// `a · bᵀ` as f64, from one f32 GEMM straight from the rows' buffers (the GEMM candle's CPU
/// matmul uses, without copying the rows into tensors first).
fn product_with_transpose(a: &NormalizedRows, b: &NormalizedRows) -> Vec<f64> {
    let (m, n, k) = (a.rows, b.rows, a.dim);
    let mut out = vec![0.0f32; m * n];
    if k > 0 && m > 0 && n > 0 {
        let parallelism = match rayon::current_num_threads() {
            1 => gemm::Parallelism::None,
            _ if single_threaded_products() && rayon::current_thread_index().is_some() => {
                gemm::Parallelism::None
            }
            threads => gemm::Parallelism::Rayon(threads),
        };
        // SAFETY: `a` holds m rows and `b` n rows of k values each, row-major (as
        // `NormalizedRows` are made), so a[i][p] at a + i·k + p and bᵀ[p][j] at b + j·k + p stay
        // inside them, and `out` holds the m × n values written at out + i·n + j.
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                out.as_mut_ptr(),
                1,
                n as isize,
                false,
                a.values.as_ptr(),
                1,
                k as isize,
                b.values.as_ptr(),
                k as isize,
                1,
                0.0,
                1.0,
                false,
                false,
                false,
                parallelism,
            );
        }
    }
    out.into_iter().map(f64::from).collect()
}

fn refine_near_maxima(a: &NormalizedRows, b: &NormalizedRows, values: &mut [f64]) {
    let n = a.rows;
    let mut row_max = vec![f64::NEG_INFINITY; n];
    let mut column_max = vec![f64::NEG_INFINITY; n];
    for i in 0..n {
        for j in 0..n {
            let value = values[i * n + j];
            row_max[i] = row_max[i].max(value);
            column_max[j] = column_max[j].max(value);
        }
    }
    let refine_rows = |first_row: usize, rows: &mut [f64]| {
        for (offset, row) in rows.chunks_mut(n).enumerate() {
            let i = first_row + offset;
            for (j, value) in row.iter_mut().enumerate() {
                let near_maximum =
                    *value >= row_max[i] - NEAR_TIE || *value >= column_max[j] - NEAR_TIE;
                // A zero vector's cosine is exactly 0 already.
                if near_maximum && !a.zero[i] && !b.zero[j] {
                    *value = exact_dot(&a.values, &b.values, a.dim, i, j);
                }
            }
        }
    };
    // Usually only a few entries per row are near the maximum, but with many duplicate
    // sentences most are: share the rows among the cores (rayon's, which the scoring of
    // several layers at once is already on).
    use rayon::prelude::*;
    let rows_per_task = 8;
    values
        .par_chunks_mut((rows_per_task * n).max(1))
        .enumerate()
        .for_each(|(chunk, rows)| refine_rows(chunk * rows_per_task, rows));
}

/// Dot product of a's row i and b's row j in f64, always summed in the same order, so equal
/// inputs give bit-identical results wherever they sit in the matrix.
fn exact_dot(a: &[f32], b: &[f32], dim: usize, i: usize, j: usize) -> f64 {
    let left = &a[i * dim..(i + 1) * dim];
    let right = &b[j * dim..(j + 1) * dim];
    pulp::Arch::new().dispatch(FixedOrderDot { left, right })
}

/// The alignment of one pair of languages at one layer.
#[derive(Debug, Clone, PartialEq)]
pub struct PairScore {
    /// Fraction of pairs that are strict mutual nearest neighbours (μ of METHOD.md §4).
    pub mutual_nn: f64,
    /// Fraction of rows whose strict maximum is on the diagonal (first side → second).
    pub p_at_1_forward: f64,
    /// Fraction of columns whose strict maximum is on the diagonal (second side → first).
    pub p_at_1_backward: f64,
    /// `matched[i]`: pair i is a strict mutual nearest neighbour.
    pub matched: Vec<bool>,
    /// First-side sentences whose vector was zero (never matched when n ≥ 2).
    pub zero_rows: usize,
    /// Second-side sentences whose vector was zero.
    pub zero_columns: usize,
}

/// Mutual-nearest-neighbour score and P@1 in both directions. Ties are not matches.
pub fn score(sim: &SimilarityMatrix) -> PairScore {
    let n = sim.n;
    let (forward, backward): (Vec<bool>, Vec<bool>) = if n == 1 {
        let defined = !sim.zero_rows[0] && !sim.zero_columns[0];
        (vec![defined], vec![defined])
    } else {
        (0..n)
            .map(|i| {
                let diagonal = sim.at(i, i);
                let beats_row = (0..n).all(|j| j == i || diagonal > sim.at(i, j));
                let beats_column = (0..n).all(|j| j == i || diagonal > sim.at(j, i));
                (beats_row, beats_column)
            })
            .unzip()
    };
    let matched: Vec<bool> = forward
        .iter()
        .zip(&backward)
        .map(|(f, b)| *f && *b)
        .collect();
    let fraction = |flags: &[bool]| flags.iter().filter(|&&flag| flag).count() as f64 / n as f64;
    PairScore {
        mutual_nn: fraction(&matched),
        p_at_1_forward: fraction(&forward),
        p_at_1_backward: fraction(&backward),
        matched,
        zero_rows: sim.zero_rows.iter().filter(|&&zero| zero).count(),
        zero_columns: sim.zero_columns.iter().filter(|&&zero| zero).count(),
    }
}

/// The mutual-NN score after shuffling the columns with a seeded random permutation, i.e. with
/// the translation pairs broken: what chance alone gives on these vectors.
pub fn chance_score(sim: &SimilarityMatrix, seed: u64) -> f64 {
    let n = sim.n;
    let mut permutation: Vec<usize> = (0..n).collect();
    permutation.shuffle(&mut StdRng::seed_from_u64(seed));
    let values = (0..n * n)
        .map(|index| sim.at(index / n, permutation[index % n]))
        .collect();
    let shuffled = SimilarityMatrix {
        n,
        values,
        zero_rows: sim.zero_rows.clone(),
        zero_columns: permutation.iter().map(|&j| sim.zero_columns[j]).collect(),
    };
    score(&shuffled).mutual_nn
}

/// The most similar sentence on the other side.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbour {
    /// Index of the most similar sentence (the smallest index when several tie).
    pub index: usize,
    pub similarity: f64,
    /// Several sentences share the maximum, so there is no strict nearest neighbour.
    pub tied: bool,
}

/// Nearest neighbours in both directions, for showing what a sentence matched instead.
#[derive(Debug, Clone, PartialEq)]
pub struct NearestNeighbours {
    /// `forward[i]`: the second-side sentence closest to first-side sentence `i` (row maximum).
    pub forward: Vec<Neighbour>,
    /// `backward[j]`: the first-side sentence closest to second-side sentence `j` (column max).
    pub backward: Vec<Neighbour>,
}

pub fn nearest_neighbours(sim: &SimilarityMatrix) -> NearestNeighbours {
    let n = sim.n;
    NearestNeighbours {
        forward: (0..n)
            .map(|i| best_of((0..n).map(|j| sim.at(i, j))))
            .collect(),
        backward: (0..n)
            .map(|j| best_of((0..n).map(|i| sim.at(i, j))))
            .collect(),
    }
}

fn best_of(similarities: impl Iterator<Item = f64>) -> Neighbour {
    let mut best = Neighbour {
        index: 0,
        similarity: f64::NEG_INFINITY,
        tied: false,
    };
    for (index, similarity) in similarities.enumerate() {
        if similarity > best.similarity {
            best = Neighbour {
                index,
                similarity,
                tied: false,
            };
        } else if similarity == best.similarity {
            best.tied = true;
        }
    }
    best
}

#[cfg(test)]
mod tests {
    use super::*;

    fn matrix(n: usize, values: &[f64]) -> SimilarityMatrix {
        SimilarityMatrix::from_values(n, values.to_vec()).expect("valid matrix")
    }

    fn cosines(a: &[f32], b: &[f32], n: usize, d: usize) -> SimilarityMatrix {
        let a = normalize_rows(a, n, d).expect("a");
        let b = normalize_rows(b, n, d).expect("b");
        cosine_matrix(&a, &b).expect("cosines")
    }

    #[test]
    fn normalisation_gives_unit_rows_and_keeps_zero_rows() {
        let rows = normalize_rows(&[3.0, 4.0, 0.0, 0.0, 0.0, -2.0], 3, 2).expect("ok");
        assert_eq!(rows.row(0), Some(&[0.6f32, 0.8][..]));
        assert_eq!(rows.row(1), Some(&[0.0f32, 0.0][..]));
        assert_eq!(rows.row(2), Some(&[0.0f32, -1.0][..]));
        assert_eq!(rows.zero_rows(), 1);
        assert!(rows.is_zero(1) && !rows.is_zero(0));
    }

    #[test]
    fn normalising_in_place_gives_the_same_rows_and_zero_flags() {
        let x = [3.0f32, 4.0, -0.0, 0.0, 0.0, -2.0];
        let mut in_place = x.to_vec();
        let zero = normalize_rows_in_place(&mut in_place, 3, 2).expect("ok");
        // A zero row of -0.0 comes out as +0.0, as from `normalize_rows`.
        assert_eq!(in_place, [0.6, 0.8, 0.0, 0.0, 0.0, -1.0]);
        assert!(in_place[2].is_sign_positive());
        assert_eq!(zero, [false, true, false]);
        let rows = NormalizedRows::from_normalized(in_place, 2, zero).expect("shape");
        assert_eq!(rows, normalize_rows(&x, 3, 2).expect("ok"));
        // The values must be the flags' rows × dim.
        assert!(NormalizedRows::from_normalized(vec![0.0; 5], 2, vec![false; 3]).is_err());
    }

    #[test]
    fn normalisation_rejects_bad_shapes_and_nan() {
        assert!(normalize_rows(&[1.0, 2.0, 3.0], 2, 2).is_err());
        let error = normalize_rows(&[1.0, f32::NAN], 1, 2).expect_err("nan");
        assert!(
            error.to_string().contains("sentence 0, component 1"),
            "{error}"
        );
        // An infinity too, in a row of more than four values (the norm's running sums).
        let mut rows = vec![1.0f32; 12];
        rows[6 + 5] = f32::INFINITY;
        let error = normalize_rows(&rows, 2, 6).expect_err("infinity");
        assert!(
            error.to_string().contains("sentence 1, component 5"),
            "{error}"
        );
    }

    #[test]
    /// Rows of five: four running sums and a tail.
    fn rows_longer_than_the_running_sums_normalise_by_hand() {
        // 35 values: the 32 running sums and a tail of 3, with values in both.
        let d = SUM_LANES + 3;
        let mut together = vec![0.0f32; 3 * d];
        together[0] = 3.0;
        together[33] = 4.0;
        for (position, value) in [(5, 1.0), (20, 2.0), (34, 2.0)] {
            together[2 * d + position] = value;
        }
        let rows = normalize_rows(&together, 3, d).expect("together");
        let row = rows.row(0).expect("row 0");
        assert_eq!((row[0], row[33]), (0.6, 0.8));
        assert_eq!(row.iter().filter(|&&v| v != 0.0).count(), 2);
        assert!(rows.is_zero(1));
        let row = rows.row(2).expect("row 2");
        let third = 1.0f32 / 3.0;
        assert_eq!(
            (row[5], row[20], row[34]),
            (third, 2.0 * third, 2.0 * third)
        );
        assert_eq!(row.iter().filter(|&&v| v != 0.0).count(), 3);
    }

    #[test]
    fn cosines_by_hand() {
        // a0 = (1,0), a1 = (1,1)/√2 ; b0 = (0,2), b1 = (3,0)
        let sim = cosines(&[1.0, 0.0, 1.0, 1.0], &[0.0, 2.0, 3.0, 0.0], 2, 2);
        let half_sqrt2 = std::f64::consts::FRAC_1_SQRT_2;
        let expected = [0.0, 1.0, half_sqrt2, half_sqrt2];
        for (got, want) in sim.values().iter().zip(expected) {
            assert!((got - want).abs() < 1e-6, "{got} vs {want}");
        }
    }

    #[test]
    fn identity_scores_one() {
        let sim = matrix(3, &[1.0, 0.2, 0.1, 0.3, 0.9, 0.0, 0.1, 0.2, 0.8]);
        let result = score(&sim);
        assert_eq!(result.mutual_nn, 1.0);
        assert_eq!(result.p_at_1_forward, 1.0);
        assert_eq!(result.p_at_1_backward, 1.0);
        assert_eq!(result.matched, vec![true; 3]);
    }

    #[test]
    fn permuted_scores_zero() {
        // Each row's best is the next column: a cyclic shift.
        let sim = matrix(3, &[0.1, 0.9, 0.2, 0.2, 0.1, 0.9, 0.9, 0.2, 0.1]);
        let result = score(&sim);
        assert_eq!(result.mutual_nn, 0.0);
        assert_eq!(result.p_at_1_forward, 0.0);
        assert_eq!(result.p_at_1_backward, 0.0);
    }

    #[test]
    fn forward_and_backward_differ() {
        // Row 0: 0.9 on the diagonal beats 0.5 → forward ok for 0.
        // Column 0: row 1 has 0.95 > 0.9 → backward fails for 0, and so does the mutual test.
        // Row 1: 0.95 (column 0) beats 0.6 → forward fails for 1; column 1: 0.6 > 0.5 → ok.
        let sim = matrix(2, &[0.9, 0.5, 0.95, 0.6]);
        let result = score(&sim);
        assert_eq!(result.matched, vec![false, false]);
        assert_eq!(result.p_at_1_forward, 0.5);
        assert_eq!(result.p_at_1_backward, 0.5);
        assert_eq!(result.mutual_nn, 0.0);
    }

    #[test]
    fn ties_are_not_matches() {
        // Row 0 ties with column 1; everything else is clearly on the diagonal.
        let sim = matrix(3, &[0.7, 0.7, 0.1, 0.0, 0.9, 0.1, 0.0, 0.1, 0.9]);
        let result = score(&sim);
        assert_eq!(result.matched, vec![false, true, true]);
        assert!((result.mutual_nn - 2.0 / 3.0).abs() < 1e-12);
        let nn = nearest_neighbours(&sim);
        assert!(nn.forward[0].tied);
        assert_eq!(nn.forward[0].index, 0);
        assert!(!nn.forward[1].tied);
    }

    #[test]
    fn identical_vectors_tie_exactly() {
        // Sentences 1 and 2 of side b are the same vector: their pairs must both be unmatched,
        // however the matrix product orders its sums.
        let d = 300;
        let a: Vec<f32> = (0..3 * d).map(|k| ((k * 37 % 101) as f32).sin()).collect();
        let mut b = a.clone();
        let (first, rest) = b.split_at_mut(2 * d);
        rest.copy_from_slice(&first[d..2 * d]);
        let sim = cosines(&a, &b, 3, d);
        assert_eq!(sim.get(1, 1), sim.get(1, 2));
        let result = score(&sim);
        assert_eq!(result.matched, vec![true, false, false]);
    }

    #[test]
    fn zero_vectors_give_zero_cosine_and_are_never_matched() {
        let sim = cosines(&[1.0, 0.0, 0.0, 0.0], &[1.0, 0.0, 0.0, 1.0], 2, 2);
        assert_eq!(sim.values(), &[1.0, 0.0, 0.0, 0.0]);
        assert!(sim.values().iter().all(|v| v.is_finite()));
        let result = score(&sim);
        assert_eq!(result.matched, vec![true, false]);
        assert_eq!(result.zero_rows, 1);
        assert_eq!(result.zero_columns, 0);
    }

    #[test]
    fn single_pair_is_matched_iff_both_vectors_are_nonzero() {
        let both = cosines(&[1.0, 2.0], &[-3.0, 1.0], 1, 2);
        assert_eq!(score(&both).mutual_nn, 1.0);
        let one_zero = cosines(&[1.0, 2.0], &[0.0, 0.0], 1, 2);
        let result = score(&one_zero);
        assert_eq!(result.mutual_nn, 0.0);
        assert_eq!(result.p_at_1_forward, 0.0);
        assert_eq!(result.zero_columns, 1);
        let both_zero = cosines(&[0.0, 0.0], &[0.0, 0.0], 1, 2);
        assert_eq!(score(&both_zero).mutual_nn, 0.0);
    }

    #[test]
    fn two_pairs() {
        let sim = cosines(&[1.0, 0.0, 0.0, 1.0], &[2.0, 0.1, 0.1, 2.0], 2, 2);
        assert_eq!(score(&sim).mutual_nn, 1.0);
        let swapped = cosines(&[1.0, 0.0, 0.0, 1.0], &[0.1, 2.0, 2.0, 0.1], 2, 2);
        assert_eq!(score(&swapped).mutual_nn, 0.0);
    }

    #[test]
    fn shapes_must_agree() {
        let a = normalize_rows(&[1.0, 0.0], 1, 2).expect("a");
        let b = normalize_rows(&[1.0, 0.0, 0.0, 1.0], 2, 2).expect("b");
        let c = normalize_rows(&[1.0], 1, 1).expect("c");
        assert!(cosine_matrix(&a, &b).is_err());
        assert!(cosine_matrix(&a, &c).is_err());
        let empty = normalize_rows(&[], 0, 2).expect("empty");
        assert!(cosine_matrix(&empty, &empty).is_err());
        assert!(SimilarityMatrix::from_values(0, vec![]).is_err());
        assert!(SimilarityMatrix::from_values(2, vec![1.0; 3]).is_err());
        assert!(SimilarityMatrix::from_values(1, vec![f64::NAN]).is_err());
    }

    #[test]
    fn chance_breaks_a_perfect_alignment() {
        let n = 50;
        let mut values = vec![0.0; n * n];
        for i in 0..n {
            for j in 0..n {
                values[i * n + j] = if i == j {
                    1.0
                } else {
                    0.01 * ((i * 7 + j * 13) % 17) as f64
                };
            }
        }
        let sim = matrix(n, &values);
        assert_eq!(score(&sim).mutual_nn, 1.0);
        let chance = chance_score(&sim, 7);
        assert!(chance < 0.2, "chance {chance}");
        assert_eq!(chance, chance_score(&sim, 7));
    }

    #[test]
    fn transposed_swaps_the_sides() {
        let sim = matrix(2, &[0.9, 0.5, 0.95, 0.6]);
        let t = sim.transposed();
        assert_eq!(t.values(), &[0.9, 0.95, 0.5, 0.6]);
        let (s, st) = (score(&sim), score(&t));
        assert_eq!(s.p_at_1_forward, st.p_at_1_backward);
        assert_eq!(s.mutual_nn, st.mutual_nn);
    }

    #[test]
    fn fixed_order_sums_are_the_same_bits_with_or_without_vector_instructions() {
        // 14 336 + 7: whole lanes and a tail. Values of mixed sign and size, so that a
        // different order of the additions would round differently.
        let d = 14_336 + 7;
        let left: Vec<f32> = (0..d)
            .map(|k| ((k * 7919 % 1009) as f32 - 500.0) * 1.7e-3)
            .collect();
        let right: Vec<f32> = (0..d)
            .map(|k| ((k * 104_729 % 997) as f32).sqrt())
            .collect();
        let widest = pulp::Arch::new().dispatch(FixedOrderDot {
            left: &left,
            right: &right,
        });
        let scalar = pulp::Simd::vectorize(
            pulp::Scalar::new(),
            FixedOrderDot {
                left: &left,
                right: &right,
            },
        );
        assert_eq!(widest.to_bits(), scalar.to_bits());
        let sequential: f64 = left
            .iter()
            .zip(&right)
            .map(|(&x, &y)| f64::from(x) * f64::from(y))
            .sum();
        assert!((widest - sequential).abs() <= 1e-12 * sequential.abs().max(1.0));

        let mut row = left.clone();
        let norm = pulp::Arch::new().dispatch(ScaleToUnitLength { row: &mut row });
        let mut scalar_row = left.clone();
        let scalar_norm = pulp::Simd::vectorize(
            pulp::Scalar::new(),
            ScaleToUnitLength {
                row: &mut scalar_row,
            },
        );
        assert_eq!(norm.to_bits(), scalar_norm.to_bits());
        assert!(
            row.iter()
                .zip(&scalar_row)
                .all(|(a, b)| a.to_bits() == b.to_bits())
        );
        let unit: f64 = row.iter().map(|&v| f64::from(v) * f64::from(v)).sum();
        assert!((unit - 1.0).abs() < 1e-6, "{unit}");
    }

    #[test]
    fn gemm_agrees_with_exact_dot_products() {
        let (n, d) = (40, 257);
        let a: Vec<f32> = (0..n * d)
            .map(|k| ((k * 31 % 97) as f32 - 40.0) / 7.0)
            .collect();
        let b: Vec<f32> = (0..n * d)
            .map(|k| ((k * 17 % 89) as f32 - 30.0) / 5.0)
            .collect();
        let (na, nb) = (
            normalize_rows(&a, n, d).expect("a"),
            normalize_rows(&b, n, d).expect("b"),
        );
        let sim = cosine_matrix(&na, &nb).expect("sim");
        for i in 0..n {
            for j in 0..n {
                let exact = exact_dot(na.values(), nb.values(), d, i, j);
                let got = sim.get(i, j).expect("in range");
                assert!((exact - got).abs() < 1e-5, "{i},{j}: {got} vs {exact}");
            }
        }
    }
}
