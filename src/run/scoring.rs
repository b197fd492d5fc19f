//! Pooled states → scores: every language against the pivot, and the full language × language
//! matrix, per method and layer (METHOD.md §4–§6). States are read from their files a layer at
//! a time on each core, so memory does not grow with the number of languages; each unordered
//! pair of languages costs one similarity matrix per layer, shared by both directions and, for
//! the pair with the pivot, by the pivot scores.

use std::collections::BTreeMap;
use std::thread::JoinHandle;
use std::time::Instant;

use crossbeam_channel::{Receiver, Sender};
use rayon::prelude::*;

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
    let mut values = states.layer_matrix(kind, layer)?;
    // Our extraction never writes a value that is not finite: one here was damaged on disk.
    let damaged = |source| RunError::DamagedStates {
        path: states.path().to_path_buf(),
        source,
    };
    let zero = align::normalize_rows_in_place(&mut values, states.sentences(), states.width(kind))
        .map_err(damaged)?;
    NormalizedRows::from_normalized(values, states.width(kind), zero).map_err(damaged)
}

fn similarity(a: &NormalizedRows, b: &NormalizedRows) -> Result<SimilarityMatrix, RunError> {
    Ok(align::cosine_matrix(a, b)?)
}

/// Scores a language that has just finished, for every method: against the pivot (the first
/// language of `done`, or the language itself when `done` is empty), and against every language
/// of `done` and itself, which grows the language × language `matrices` by a row and a column.
pub fn score_language(
    matrices: &mut BTreeMap<Method, PairMatrix>,
    methods: &[Method],
    done: &[(Lang, StatesFile)],
    new: &(Lang, StatesFile),
    chance_seed: u64,
) -> Result<BTreeMap<Method, MethodScores>, RunError> {
    let (new_lang, new_states) = new;
    let pivot_lang = done.first().map_or(new_lang, |(lang, _)| lang);
    let mut per_method = BTreeMap::new();
    for &method in methods {
        let matrix = matrices.entry(method).or_insert_with(|| PairMatrix {
            languages: Vec::new(),
            per_layer: Vec::new(),
        });
        let others: Vec<(&Lang, &StatesFile)> = matrix
            .languages
            .iter()
            .map(|lang| {
                done.iter()
                    .find(|(l, _)| l == lang)
                    .map(|(l, states)| (l, states))
                    .ok_or_else(|| RunError::Invalid(format!("no states for {}", lang.name())))
            })
            .collect::<Result<_, _>>()?;
        let layers = new_states.layer_count(method.state_kind());
        if matrix.per_layer.is_empty() {
            matrix.per_layer = vec![Vec::new(); layers];
        }
        // The layers side by side on all cores: one pair's similarity matrix (100 × 100 from
        // 14 336-long rows) is too small a product to share among them.
        let pivot_index = others.iter().position(|&(lang, _)| lang == pivot_lang);
        if pivot_index.is_none() && new_lang != pivot_lang {
            return Err(RunError::Invalid(format!(
                "the pivot {} is missing from the {} matrix",
                pivot_lang.name(),
                method.label()
            )));
        }
        let per_layer = (0..layers)
            .into_par_iter()
            .map(|layer| score_layer(method, layer, new_states, &others, pivot_index, chance_seed))
            .collect::<Result<Vec<_>, RunError>>()?;
        let mut scores = MethodScores {
            per_layer: Vec::with_capacity(layers),
            chance_per_layer: Vec::with_capacity(layers),
            p_at_1_forward: Vec::with_capacity(layers),
            p_at_1_backward: Vec::with_capacity(layers),
            zero_vectors: 0,
            matched: Vec::with_capacity(layers),
            nearest: Vec::with_capacity(layers),
        };
        for (grid, layer) in matrix.per_layer.iter_mut().zip(per_layer) {
            let LayerScores { row, pivot } = layer;
            scores.zero_vectors += pivot.zero_vectors;
            scores.per_layer.push(pivot.pair.mutual_nn);
            scores.p_at_1_forward.push(pivot.pair.p_at_1_forward);
            scores.p_at_1_backward.push(pivot.pair.p_at_1_backward);
            scores.chance_per_layer.push(pivot.chance);
            scores.nearest.push(pivot.nearest);
            scores.matched.push(pivot.pair.matched);
            for (line, &score) in grid.iter_mut().zip(&row) {
                line.push(score);
            }
            grid.push(row);
        }
        matrix.languages.push(new_lang.clone());
        per_method.insert(method, scores);
    }
    Ok(per_method)
}

/// A language scored by a [`Scorer`].
pub(super) struct Scored {
    pub lang: Lang,
    /// Its scores, or why the scoring stopped.
    pub outcome: Result<LanguageScores, RunError>,
    /// Wall-clock seconds its scoring took.
    pub seconds: f64,
}

pub(super) struct LanguageScores {
    /// Against the pivot, per method.
    pub pivot: BTreeMap<Method, MethodScores>,
    /// The language × language matrices with its row and column added.
    pub matrices: BTreeMap<Method, PairMatrix>,
}

/// Scores languages on a thread of its own, in the order they are handed in, so that a run's
/// next language can be extracted meanwhile: on a GPU the two take comparable time, and one
/// uses the device while the other uses the host's cores. The scoring has a rayon pool of its
/// own: in the global one, its layer-long tasks would hold up the extraction's hand-on for
/// seconds at a time.
pub(super) struct Scorer {
    inbox: Option<Sender<(Lang, StatesFile)>>,
    results: Receiver<Scored>,
    thread: Option<JoinHandle<()>>,
}

impl Scorer {
    pub fn start(methods: Vec<Method>, chance_seed: u64) -> Result<Self, RunError> {
        let (inbox, languages) = crossbeam_channel::unbounded::<(Lang, StatesFile)>();
        let (sender, results) = crossbeam_channel::unbounded();
        let pool = rayon::ThreadPoolBuilder::new()
            .thread_name(|index| format!("neuronxa-scoring-{index}"))
            .build()
            .map_err(|e| RunError::Invalid(format!("could not start the scoring threads: {e}")))?;
        let thread = std::thread::Builder::new()
            .name("neuronxa-scoring".into())
            .spawn(move || {
                let mut matrices = BTreeMap::new();
                let mut done: Vec<(Lang, StatesFile)> = Vec::new();
                for language in languages {
                    let started = Instant::now();
                    let outcome = pool.install(|| {
                        score_language(&mut matrices, &methods, &done, &language, chance_seed)
                    });
                    let failed = outcome.is_err();
                    let scored = Scored {
                        lang: language.0.clone(),
                        outcome: outcome.map(|pivot| LanguageScores {
                            pivot,
                            matrices: matrices.clone(),
                        }),
                        seconds: started.elapsed().as_secs_f64(),
                    };
                    done.push(language);
                    if sender.send(scored).is_err() || failed {
                        break;
                    }
                }
            })
            .map_err(|e| RunError::Invalid(format!("could not start the scoring thread: {e}")))?;
        Ok(Self {
            inbox: Some(inbox),
            results,
            thread: Some(thread),
        })
    }

    /// Hands a language in; `false` when the scorer has stopped (after a failure, which
    /// [`Self::next`] tells).
    pub fn submit(&self, lang: Lang, states: StatesFile) -> bool {
        self.inbox
            .as_ref()
            .is_some_and(|inbox| inbox.send((lang, states)).is_ok())
    }

    /// The next scored language if there is one already.
    pub fn try_next(&self) -> Option<Scored> {
        self.results.try_recv().ok()
    }

    /// Waits for the next scored language (call it only with one handed in and not yet
    /// told: it waits for ever otherwise); `None` once the scorer has stopped on a failure.
    pub fn next(&self) -> Option<Scored> {
        self.results.recv().ok()
    }
}

impl Drop for Scorer {
    /// Lets the thread finish what it was handed and joins it: it reads the states files,
    /// which a run's scratch folder removes when dropped.
    fn drop(&mut self) {
        self.inbox = None;
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// One layer of a new language's scores.
struct LayerScores {
    /// Mutual nearest-neighbour scores against each earlier language, then itself.
    row: Vec<f64>,
    /// Against the pivot.
    pivot: PivotLayer,
}

struct PivotLayer {
    pair: align::PairScore,
    chance: f64,
    nearest: Vec<u32>,
    zero_vectors: usize,
}

/// Scores layer `layer` of `new` against each of `others` (the pivot among them at
/// `pivot_index`, or else `new` is the pivot) and itself.
fn score_layer(
    method: Method,
    layer: usize,
    new: &StatesFile,
    others: &[(&Lang, &StatesFile)],
    pivot_index: Option<usize>,
    chance_seed: u64,
) -> Result<LayerScores, RunError> {
    let against_pivot = |sim: &SimilarityMatrix, zero_vectors: usize| PivotLayer {
        pair: align::score(sim),
        chance: align::chance_score(sim, chance_seed.wrapping_add(layer as u64)),
        nearest: align::nearest_neighbours(sim)
            .forward
            .iter()
            .map(|n| n.index as u32)
            .collect(),
        zero_vectors,
    };
    let mine = normalized_layer(new, method, layer)?;
    let mut row = Vec::with_capacity(others.len() + 1);
    let mut pivot = None;
    for (index, &(_, other)) in others.iter().enumerate() {
        let theirs = normalized_layer(other, method, layer)?;
        if pivot_index == Some(index) {
            // Pivot rows, language columns: the pivot scores' orientation. Mutual nearest
            // neighbours do not depend on it.
            let scores = against_pivot(
                &similarity(&theirs, &mine)?,
                theirs.zero_rows() + mine.zero_rows(),
            );
            row.push(scores.pair.mutual_nn);
            pivot = Some(scores);
        } else {
            row.push(align::score(&similarity(&mine, &theirs)?).mutual_nn);
        }
    }
    let own = similarity(&mine, &mine)?;
    let pivot = match pivot {
        Some(pivot) => {
            row.push(align::score(&own).mutual_nn);
            pivot
        }
        None => {
            let scores = against_pivot(&own, 2 * mine.zero_rows());
            row.push(scores.pair.mutual_nn);
            scores
        }
    };
    Ok(LayerScores { row, pivot })
}
