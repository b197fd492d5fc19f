//! Pooled states → scores: every language against the pivot, and the full language × language
//! matrix, per method and layer (METHOD.md §4–§6). States are read from their files one layer at
//! a time, so memory does not grow with the number of sentences or languages; each unordered
//! pair of languages costs one similarity matrix per layer, shared by both directions.

use std::collections::BTreeMap;

use crate::analysis::align::{self, NormalizedRows, SimilarityMatrix};
use crate::analysis::lang::Lang;
use crate::engine::states::StatesFile;

use super::{Method, MethodScores, PairMatrix, RunError};

/// The L2-normalised `[n, width]` rows of one layer of a language's states.
fn normalized_layer(
    states: &StatesFile,
    method: Method,
    layer: usize,
) -> Result<NormalizedRows, RunError> {
    let kind = method.state_kind();
    let rows = states.layer_matrix(kind, layer)?;
    Ok(align::normalize_rows(
        &rows,
        states.sentences(),
        states.width(kind),
    )?)
}

fn similarity(a: &NormalizedRows, b: &NormalizedRows) -> Result<SimilarityMatrix, RunError> {
    Ok(align::cosine_matrix(a, b)?)
}

/// Scores of `lang` against `pivot` for one method, with the seeded chance baseline.
pub fn pivot_scores(
    pivot: &StatesFile,
    lang: &StatesFile,
    method: Method,
    chance_seed: u64,
) -> Result<MethodScores, RunError> {
    let layers = pivot.layer_count(method.state_kind());
    let mut scores = MethodScores {
        per_layer: Vec::with_capacity(layers),
        chance_per_layer: Vec::with_capacity(layers),
        p_at_1_forward: Vec::with_capacity(layers),
        p_at_1_backward: Vec::with_capacity(layers),
        zero_vectors: 0,
        matched: Vec::with_capacity(layers),
        nearest: Vec::with_capacity(layers),
    };
    for layer in 0..layers {
        let a = normalized_layer(pivot, method, layer)?;
        let b = normalized_layer(lang, method, layer)?;
        scores.zero_vectors += a.zero_rows() + b.zero_rows();
        let sim = similarity(&a, &b)?;
        let pair = align::score(&sim);
        scores.per_layer.push(pair.mutual_nn);
        scores.p_at_1_forward.push(pair.p_at_1_forward);
        scores.p_at_1_backward.push(pair.p_at_1_backward);
        scores.chance_per_layer.push(align::chance_score(
            &sim,
            chance_seed.wrapping_add(layer as u64),
        ));
        scores.nearest.push(
            align::nearest_neighbours(&sim)
                .forward
                .iter()
                .map(|n| n.index as u32)
                .collect(),
        );
        scores.matched.push(pair.matched);
    }
    Ok(scores)
}

/// Grows the symmetric language × language matrices by the pairs of `new` with every language
/// already in them (and itself). `done` holds the states of the languages already in them.
pub fn extend_matrices(
    matrices: &mut BTreeMap<Method, PairMatrix>,
    methods: &[Method],
    done: &[(Lang, StatesFile)],
    new: &(Lang, StatesFile),
) -> Result<(), RunError> {
    let (new_lang, new_states) = new;
    for &method in methods {
        let matrix = matrices.entry(method).or_insert_with(|| PairMatrix {
            languages: Vec::new(),
            per_layer: Vec::new(),
        });
        let others: Vec<&StatesFile> = matrix
            .languages
            .iter()
            .map(|lang| {
                done.iter()
                    .find(|(l, _)| l == lang)
                    .map(|(_, states)| states)
                    .ok_or_else(|| RunError::Invalid(format!("no states for {}", lang.name())))
            })
            .collect::<Result<_, _>>()?;
        let layers = new_states.layer_count(method.state_kind());
        if matrix.per_layer.is_empty() {
            matrix.per_layer = vec![Vec::new(); layers];
        }
        for (layer, grid) in matrix.per_layer.iter_mut().enumerate() {
            let mine = normalized_layer(new_states, method, layer)?;
            let mut row = Vec::with_capacity(others.len() + 1);
            for other in &others {
                let theirs = normalized_layer(other, method, layer)?;
                row.push(align::score(&similarity(&mine, &theirs)?).mutual_nn);
            }
            row.push(align::score(&similarity(&mine, &mine)?).mutual_nn);
            for (line, &score) in grid.iter_mut().zip(&row) {
                line.push(score);
            }
            grid.push(row);
        }
        matrix.languages.push(new_lang.clone());
    }
    Ok(())
}
