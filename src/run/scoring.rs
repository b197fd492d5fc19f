//! Pooled states → scores: every language against the pivot, and the full language × language
//! matrix, per method and layer (METHOD.md §4–§6). Each state matrix is normalised once; each
//! unordered pair of languages costs one matmul per layer, shared by both directions.

use std::collections::BTreeMap;

use crate::analysis::align::{self, NormalizedRows, SimilarityMatrix};
use crate::analysis::error::AnalysisError;
use crate::analysis::lang::Lang;
use crate::engine::LanguageStates;

use super::{Method, MethodScores, PairMatrix};

/// One language's states, L2-normalised per layer and method, ready to be compared.
pub struct PreparedLanguage {
    pub lang: Lang,
    /// `[method][layer]`
    layers: BTreeMap<Method, Vec<NormalizedRows>>,
}

impl PreparedLanguage {
    pub fn new(
        lang: Lang,
        states: &LanguageStates,
        methods: &[Method],
    ) -> Result<Self, AnalysisError> {
        let layers = methods
            .iter()
            .map(|&method| {
                let kind = method.state_kind();
                let per_layer = (0..states.layer_count(kind))
                    .map(|layer| {
                        align::normalize_rows(
                            &states.layer_matrix(kind, layer),
                            states.sentences,
                            states.width(kind),
                        )
                    })
                    .collect::<Result<Vec<_>, _>>()?;
                Ok((method, per_layer))
            })
            .collect::<Result<_, AnalysisError>>()?;
        Ok(Self { lang, layers })
    }

    pub fn methods(&self) -> impl Iterator<Item = Method> + '_ {
        self.layers.keys().copied()
    }
}

/// Similarity matrices of two languages for one method, one per layer (rows: `a`, columns: `b`).
pub fn similarities(
    a: &PreparedLanguage,
    b: &PreparedLanguage,
    method: Method,
) -> Result<Vec<SimilarityMatrix>, AnalysisError> {
    match (a.layers.get(&method), b.layers.get(&method)) {
        (Some(la), Some(lb)) => la
            .iter()
            .zip(lb)
            .map(|(x, y)| align::cosine_matrix(x, y))
            .collect(),
        _ => Ok(Vec::new()),
    }
}

/// Scores of `lang` against `pivot` for one method, with the seeded chance baseline.
pub fn pivot_scores(
    sims: &[SimilarityMatrix],
    chance_seed: u64,
    zero_vectors: usize,
) -> MethodScores {
    let mut scores = MethodScores {
        per_layer: Vec::with_capacity(sims.len()),
        chance_per_layer: Vec::with_capacity(sims.len()),
        p_at_1_forward: Vec::with_capacity(sims.len()),
        p_at_1_backward: Vec::with_capacity(sims.len()),
        zero_vectors,
        matched: Vec::with_capacity(sims.len()),
        nearest: Vec::with_capacity(sims.len()),
    };
    for (layer, sim) in sims.iter().enumerate() {
        let pair = align::score(sim);
        scores.per_layer.push(pair.mutual_nn);
        scores.p_at_1_forward.push(pair.p_at_1_forward);
        scores.p_at_1_backward.push(pair.p_at_1_backward);
        scores.chance_per_layer.push(align::chance_score(
            sim,
            chance_seed.wrapping_add(layer as u64),
        ));
        scores.nearest.push(
            align::nearest_neighbours(sim)
                .forward
                .iter()
                .map(|n| n.index as u32)
                .collect(),
        );
        scores.matched.push(pair.matched);
    }
    scores
}

/// Zero vectors among both languages' states for a method (summed over layers).
pub fn zero_vectors(a: &PreparedLanguage, b: &PreparedLanguage, method: Method) -> usize {
    [a, b]
        .iter()
        .filter_map(|p| p.layers.get(&method))
        .flat_map(|layers| layers.iter().map(|l| l.zero_rows()))
        .sum()
}

/// Grows the symmetric language × language matrices by the pairs of `new` with every language
/// already in them (and itself).
pub fn extend_matrices(
    matrices: &mut BTreeMap<Method, PairMatrix>,
    done: &[PreparedLanguage],
    new: &PreparedLanguage,
) -> Result<(), AnalysisError> {
    for method in new.methods().collect::<Vec<_>>() {
        let matrix = matrices.entry(method).or_insert_with(|| PairMatrix {
            languages: Vec::new(),
            per_layer: Vec::new(),
        });
        let n = matrix.languages.len();
        // [other language, in matrix order][layer]
        let row: Vec<Vec<f64>> = matrix
            .languages
            .iter()
            .map(|lang| match done.iter().find(|d| &d.lang == lang) {
                Some(other) => Ok(similarities(new, other, method)?
                    .iter()
                    .map(|s| align::score(s).mutual_nn)
                    .collect()),
                None => Ok(Vec::new()),
            })
            .collect::<Result<_, AnalysisError>>()?;
        let own: Vec<f64> = similarities(new, new, method)?
            .iter()
            .map(|s| align::score(s).mutual_nn)
            .collect();
        let layers = own.len();
        if matrix.per_layer.is_empty() {
            matrix.per_layer = vec![Vec::new(); layers];
        }
        for (layer, grid) in matrix.per_layer.iter_mut().enumerate() {
            for (i, line) in grid.iter_mut().enumerate() {
                line.push(row[i].get(layer).copied().unwrap_or(f64::NAN));
            }
            let mut last: Vec<f64> = (0..n)
                .map(|i| row[i].get(layer).copied().unwrap_or(f64::NAN))
                .collect();
            last.push(own[layer]);
            grid.push(last);
        }
        matrix.languages.push(new.lang.clone());
    }
    Ok(())
}
