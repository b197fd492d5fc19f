//! Pooled states → scores: every language against the pivot, and the full language × language
//! matrix, per method and layer (METHOD.md §4–§6). States are read from their files a layer at
//! a time on each core, so memory does not grow with the number of languages (unless
//! `NEURONXA_SCORING_KEEP_MB` lets the normalised rows be kept); each unordered
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

/// Bytes of normalised rows a scoring keeps: none unless `NEURONXA_SCORING_KEEP_MB` says how
/// many megabytes. Kept rows spare each later language a read and a normalisation of every
/// earlier one; on 2 cores, where the products bound the scoring, that was within the noise
/// (BENCHMARKS.md), so it stays an experiment for many-core GPU hosts, where the memory traffic
/// it saves may be what bounds it.
pub fn keep_budget_from_env() -> u64 {
    std::env::var("NEURONXA_SCORING_KEEP_MB")
        .ok()
        .and_then(|text| text.trim().parse::<u64>().ok())
        .map_or(0, |megabytes| megabytes << 20)
}

/// The scoring of a run's languages, one after the other: the language × language matrices so
/// far, and each scored language's states, with its normalised rows kept in memory while they
/// fit in a budget. Without them every later language reads and normalises each earlier one
/// again, a layer at a time: 55 reads of a language's states for 10 languages instead of 10,
/// but memory does not grow with the languages.
pub struct Scoring {
    methods: Vec<Method>,
    chance_seed: u64,
    matrices: BTreeMap<Method, PairMatrix>,
    done: Vec<DoneLanguage>,
    keep_budget: u64,
    kept_bytes: u64,
}

/// A language scored before (its name is in the matrices).
struct DoneLanguage {
    states: StatesFile,
    /// Per method, its normalised rows at every layer, where they were kept.
    normalized: BTreeMap<Method, Vec<NormalizedRows>>,
}

impl Scoring {
    /// A scoring that keeps up to `keep_budget` bytes of normalised rows (see
    /// [`keep_budget_from_env`]).
    pub fn new(methods: Vec<Method>, chance_seed: u64, keep_budget: u64) -> Self {
        Self {
            methods,
            chance_seed,
            matrices: BTreeMap::new(),
            done: Vec::new(),
            keep_budget,
            kept_bytes: 0,
        }
    }

    /// The language × language matrices of the languages scored so far.
    pub fn matrices(&self) -> &BTreeMap<Method, PairMatrix> {
        &self.matrices
    }

    /// Bytes of normalised rows kept in memory, and of how many languages.
    pub fn kept(&self) -> (u64, usize) {
        let languages = self
            .done
            .iter()
            .filter(|done| !done.normalized.is_empty())
            .count();
        (self.kept_bytes, languages)
    }

    /// Scores a language that has just finished, for every method: against the pivot (the
    /// first language scored, or the language itself when it is the first), and against every
    /// language scored before and itself, which grows the language × language matrices by a
    /// row and a column.
    pub fn score(
        &mut self,
        lang: Lang,
        states: StatesFile,
    ) -> Result<BTreeMap<Method, MethodScores>, RunError> {
        let bytes: u64 = self
            .methods
            .iter()
            .map(|&method| {
                let kind = method.state_kind();
                let values = states.layer_count(kind) * states.sentences() * states.width(kind);
                values as u64 * std::mem::size_of::<f32>() as u64
            })
            .sum();
        let keep = self.kept_bytes + bytes <= self.keep_budget;
        // Every layer of every method first, so that a failure leaves the scoring as it was.
        // The pivot is the first language scored (at the start of every matrix, whose
        // languages are those of `done`, in order), or this one.
        let pivot_index = (!self.done.is_empty()).then_some(0);
        let per_method_layers = self
            .methods
            .iter()
            .map(|&method| {
                let others: Vec<Other<'_>> = self
                    .done
                    .iter()
                    .map(|done| Other {
                        states: &done.states,
                        kept: done.normalized.get(&method).map(Vec::as_slice),
                    })
                    .collect();
                // The layers side by side on all cores: one pair's similarity matrix (100 ×
                // 100 from 14 336-long rows) is too small a product to share among them.
                (0..states.layer_count(method.state_kind()))
                    .into_par_iter()
                    .map(|layer| {
                        score_layer(
                            method,
                            layer,
                            &states,
                            &others,
                            pivot_index,
                            self.chance_seed,
                            keep,
                        )
                    })
                    .collect::<Result<Vec<_>, RunError>>()
            })
            .collect::<Result<Vec<_>, RunError>>()?;

        let mut per_method = BTreeMap::new();
        let mut normalized = BTreeMap::new();
        for (&method, per_layer) in self.methods.iter().zip(per_method_layers) {
            let layers = per_layer.len();
            let matrix = self.matrices.entry(method).or_insert_with(|| PairMatrix {
                languages: Vec::new(),
                per_layer: vec![Vec::new(); layers],
            });
            let mut scores = MethodScores {
                per_layer: Vec::with_capacity(layers),
                chance_per_layer: Vec::with_capacity(layers),
                p_at_1_forward: Vec::with_capacity(layers),
                p_at_1_backward: Vec::with_capacity(layers),
                zero_vectors: 0,
                matched: Vec::with_capacity(layers),
                nearest: Vec::with_capacity(layers),
            };
            let mut kept_rows = Vec::new();
            for (grid, layer) in matrix.per_layer.iter_mut().zip(per_layer) {
                let LayerScores { row, pivot, mine } = layer;
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
                kept_rows.extend(mine);
            }
            matrix.languages.push(lang.clone());
            per_method.insert(method, scores);
            if keep {
                normalized.insert(method, kept_rows);
            }
        }
        if keep {
            self.kept_bytes += bytes;
        }
        self.done.push(DoneLanguage { states, normalized });
        Ok(per_method)
    }
}

/// A language scored before, as one layer's scoring sees it.
struct Other<'a> {
    states: &'a StatesFile,
    /// Its normalised rows at every layer, where they were kept.
    kept: Option<&'a [NormalizedRows]>,
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
                let mut scoring = Scoring::new(methods, chance_seed, keep_budget_from_env());
                for (lang, states) in languages {
                    let started = Instant::now();
                    let outcome = pool.install(|| scoring.score(lang.clone(), states));
                    let failed = outcome.is_err();
                    let scored = Scored {
                        lang,
                        outcome: outcome.map(|pivot| LanguageScores {
                            pivot,
                            matrices: scoring.matrices().clone(),
                        }),
                        seconds: started.elapsed().as_secs_f64(),
                    };
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
    /// The new language's normalised rows at this layer, where they are to be kept.
    mine: Option<NormalizedRows>,
}

struct PivotLayer {
    pair: align::PairScore,
    chance: f64,
    nearest: Vec<u32>,
    zero_vectors: usize,
}

/// Scores layer `layer` of `new` against each of `others` (the pivot among them at
/// `pivot_index`, or else `new` is the pivot) and itself; with `keep`, its normalised rows too.
fn score_layer(
    method: Method,
    layer: usize,
    new: &StatesFile,
    others: &[Other<'_>],
    pivot_index: Option<usize>,
    chance_seed: u64,
    keep: bool,
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
    for (index, other) in others.iter().enumerate() {
        let read;
        let theirs = match other.kept.and_then(|kept| kept.get(layer)) {
            Some(kept) => kept,
            None => {
                read = normalized_layer(other.states, method, layer)?;
                &read
            }
        };
        if pivot_index == Some(index) {
            // Pivot rows, language columns: the pivot scores' orientation. Mutual nearest
            // neighbours do not depend on it.
            let scores = against_pivot(
                &similarity(theirs, &mine)?,
                theirs.zero_rows() + mine.zero_rows(),
            );
            row.push(scores.pair.mutual_nn);
            pivot = Some(scores);
        } else {
            row.push(align::score(&similarity(&mine, theirs)?).mutual_nn);
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
    Ok(LayerScores {
        row,
        pivot,
        mine: keep.then_some(mine),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::CaptureSettings;
    use crate::engine::cpu_ops::CaptureLayout;
    use crate::engine::states::StatesWriter;

    /// Three languages of made-up states (a part shared across languages, as translations
    /// share meaning) in `folder`.
    fn made_up_languages(folder: &std::path::Path) -> Vec<(Lang, StatesFile)> {
        let layout = CaptureLayout {
            layers: 3,
            d_ff: 40,
            d_model: 12,
        };
        let sentences = 9;
        ["en", "fr", "de"]
            .iter()
            .enumerate()
            .map(|(language, code)| {
                let path = folder.join(format!("{code}.safetensors"));
                let mut writer = StatesWriter::create(
                    &path,
                    sentences,
                    layout.layers,
                    layout.d_ff,
                    layout.d_model,
                    &CaptureSettings::default(),
                )
                .expect("writer");
                let width = layout.width();
                let rows: Vec<f32> = (0..sentences * width)
                    .map(|k| {
                        let (sentence, position) = (k / width, k % width);
                        let shared = ((sentence * 31 + position * 7) % 13) as f32;
                        let own = ((language * 17 + sentence * 5 + position * 3) % 11) as f32;
                        0.7 * shared + 0.3 * own
                    })
                    .collect();
                let batch: Vec<usize> = (0..sentences).collect();
                writer
                    .write_rows(&batch, &rows, &vec![5; sentences])
                    .expect("rows");
                let lang = Lang::parse(code).expect("language");
                (lang, writer.finish_scratch().expect("states"))
            })
            .collect()
    }

    fn score_all(keep_budget: u64) -> (Vec<BTreeMap<Method, MethodScores>>, Scoring) {
        let folder = tempfile::tempdir().expect("folder");
        let mut scoring = Scoring::new(Method::ALL.to_vec(), 7, keep_budget);
        let scores = made_up_languages(folder.path())
            .into_iter()
            .map(|(lang, states)| scoring.score(lang, states).expect("scores"))
            .collect();
        (scores, scoring)
    }

    #[test]
    fn kept_rows_give_the_scores_of_rows_read_again() {
        let (read_again, none_kept) = score_all(0);
        assert_eq!(none_kept.kept(), (0, 0));
        // One language's rows: 4 methods' layers × 9 sentences × their width, in f32.
        let per_language = (2 * 3 * 9 * 40 + 2 * 4 * 9 * 12) * 4;
        let (two_kept_scores, two_kept) = score_all(2 * per_language);
        assert_eq!(two_kept.kept(), (2 * per_language, 2));
        let (all_kept_scores, all_kept) = score_all(u64::MAX);
        assert_eq!(all_kept.kept(), (3 * per_language, 3));
        for scores in [&two_kept_scores, &all_kept_scores] {
            assert_eq!(scores.len(), 3);
            for (kept, read) in scores.iter().zip(&read_again) {
                for method in Method::ALL {
                    assert_eq!(kept[&method].per_layer, read[&method].per_layer);
                    assert_eq!(
                        kept[&method].chance_per_layer,
                        read[&method].chance_per_layer
                    );
                    assert_eq!(kept[&method].nearest, read[&method].nearest);
                }
            }
        }
        assert_eq!(all_kept.matrices(), none_kept.matrices());
        // The made-up translations share most of their states: the scores are not all zero.
        assert!(
            read_again[2][&Method::Nas]
                .per_layer
                .iter()
                .any(|&s| s > 0.5)
        );
    }
}
