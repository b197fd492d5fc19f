//! Sentences → pooled states: tokenise, batch by length, run the decoder with capture, and put
//! each sentence's states back in corpus order. Memory stays flat in the number of sentences:
//! only pooled `[layers × d_ff]` vectors leave the device.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use candle_core::Tensor;

use super::capture::{self, CaptureSettings, ExpertPooling};
use super::cpu_ops::CaptureLayout;
use super::decoder::{BatchInput, SentenceInput};
use super::error::{EngineError, Result};
use super::memory;
use super::model::{Model, map_device_error};
use super::states::{LanguageStates, SentenceStates, StatesSink};
use super::tokenizer::Tokens;
use super::transfer::{HostCopy, PendingCopy};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ExtractOptions {
    pub capture: CaptureSettings,
    /// Sentences per forward pass; `0` = auto (what fits the GPU's free memory, 16 on the
    /// CPU). On a GPU a batch that runs out of memory is retried as two halves.
    pub batch_size: usize,
}

/// Receives a batch's pooled rows: the sentences the batch holds, and their rows in order.
type HandOn<'a> = dyn FnMut(&[usize], &[f32]) -> Result<()> + 'a;

/// Reported after every batch.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BatchProgress {
    pub sentences_done: usize,
    pub sentences_total: usize,
    pub tokens_done: usize,
    pub elapsed: Duration,
    /// Of `elapsed`, so far: the host waiting for batches' states to arrive from the device.
    pub waiting: Duration,
    /// Of `elapsed`, so far: the host handing states on (checks, copies into the caller's
    /// storage). On a GPU this overlaps the next batch's forward pass; when it is longer than
    /// the forward passes, the host bounds the speed.
    pub handing_on: Duration,
}

impl BatchProgress {
    pub fn tokens_per_second(&self) -> f64 {
        self.tokens_done as f64 / self.elapsed.as_secs_f64().max(1e-9)
    }
}

impl Model {
    /// Tokenises every sentence, refusing empty ones and ones longer than the model allows.
    pub fn tokenize_all(&self, sentences: &[String]) -> Result<Vec<Tokens>> {
        let (limit, limit_source) = self.config.sentence_token_limit();
        sentences
            .iter()
            .enumerate()
            .map(|(index, text)| {
                if text.trim().is_empty() {
                    return Err(EngineError::EmptySentence { index });
                }
                let tokens = self.tokenizer.encode(text)?;
                if tokens.ids.len() > limit {
                    return Err(EngineError::SentenceTooLong {
                        index,
                        tokens: tokens.ids.len(),
                        limit,
                        limit_source,
                    });
                }
                if tokens.special.iter().all(|&s| s) {
                    return Err(EngineError::EmptySentence { index });
                }
                Ok(tokens)
            })
            .collect()
    }

    /// Pooled states of `sentences`, in their order, in memory. Checks `cancel` between batches.
    pub fn extract(
        &self,
        sentences: &[String],
        options: &ExtractOptions,
        cancel: &AtomicBool,
        on_batch: &mut dyn FnMut(BatchProgress),
    ) -> Result<LanguageStates> {
        let tokens = self.tokenize_all(sentences)?;
        self.extract_tokens(&tokens, options, cancel, on_batch)
    }

    /// [`Self::extract`] for sentences tokenised already ([`Self::tokenize_all`]).
    pub fn extract_tokens(
        &self,
        tokens: &[Tokens],
        options: &ExtractOptions,
        cancel: &AtomicBool,
        on_batch: &mut dyn FnMut(BatchProgress),
    ) -> Result<LanguageStates> {
        let cfg = &self.config;
        let mut states = LanguageStates::zeroed(
            cfg.num_layers,
            cfg.neurons_per_layer(),
            cfg.hidden_size,
            tokens.len(),
        );
        if std::env::var_os("NEURONXA_HAND_ON").is_some_and(|v| v == "serial") {
            // The sentence-by-sentence hand-on of the streaming path, for A/B benchmarks.
            self.extract_tokens_each(tokens, options, cancel, on_batch, &mut |index, sentence| {
                states.set_sentence(index, &sentence);
                Ok(())
            })?;
            return Ok(states);
        }
        self.extract_tokens_into(tokens, options, cancel, on_batch, &mut states)?;
        Ok(states)
    }

    /// Pooled states of `tokens`' sentences, a batch at a time into `sink` (memory or a states
    /// file), all of a batch's sentences at once on all cores: on a GPU machine, one sentence
    /// at a time, this copy into fresh memory took longer than the forward passes of big models.
    pub fn extract_tokens_into(
        &self,
        tokens: &[Tokens],
        options: &ExtractOptions,
        cancel: &AtomicBool,
        on_batch: &mut dyn FnMut(BatchProgress),
        sink: &mut dyn StatesSink,
    ) -> Result<()> {
        let layout = self.decoder.capture_layout();
        self.extract_batches(tokens, options, cancel, on_batch, &mut |batch, rows| {
            // Never kept as numbers: NaN turns NAS's `> 0` into "off" unseen.
            if let Some((index, place)) = first_non_finite(&layout, batch, rows) {
                return Err(EngineError::NonFinite { index, place });
            }
            let counts: Vec<u32> = batch
                .iter()
                .map(|&index| tokens[index].ids.len() as u32)
                .collect();
            sink.put_rows(batch, rows, &counts)
        })
    }

    /// Pooled states of each sentence, handed to `on_sentence(index, states)` as soon as its
    /// batch is done (batches run longest first), so a caller can stream them to disk.
    pub fn extract_each(
        &self,
        sentences: &[String],
        options: &ExtractOptions,
        cancel: &AtomicBool,
        on_batch: &mut dyn FnMut(BatchProgress),
        on_sentence: &mut dyn FnMut(usize, SentenceStates<'_>) -> Result<()>,
    ) -> Result<()> {
        let tokens = self.tokenize_all(sentences)?;
        self.extract_tokens_each(&tokens, options, cancel, on_batch, on_sentence)
    }

    /// [`Self::extract_each`] for sentences tokenised already ([`Self::tokenize_all`]).
    pub fn extract_tokens_each(
        &self,
        tokens: &[Tokens],
        options: &ExtractOptions,
        cancel: &AtomicBool,
        on_batch: &mut dyn FnMut(BatchProgress),
        on_sentence: &mut dyn FnMut(usize, SentenceStates<'_>) -> Result<()>,
    ) -> Result<()> {
        let layout = self.decoder.capture_layout();
        self.extract_batches(tokens, options, cancel, on_batch, &mut |batch, rows| {
            for (row, &index) in rows.chunks_exact(layout.width()).zip(batch) {
                // Never kept as numbers: NaN turns NAS's `> 0` into "off" unseen.
                if let Some(place) = non_finite_part(&layout, row) {
                    return Err(EngineError::NonFinite { index, place });
                }
                let count = tokens[index].ids.len() as u32;
                on_sentence(index, SentenceStates::from_row(&layout, row, count))?;
            }
            Ok(())
        })
    }

    /// Runs the batches and hands each one's pooled rows (`[batch.len(), width]` in
    /// [`CaptureLayout`] order) to `hand_on(batch, rows)`, `batch` naming the sentences.
    fn extract_batches(
        &self,
        tokens: &[Tokens],
        options: &ExtractOptions,
        cancel: &AtomicBool,
        on_batch: &mut dyn FnMut(BatchProgress),
        hand_on: &mut HandOn<'_>,
    ) -> Result<()> {
        let started = Instant::now();
        let batches = self.plan(tokens, options.batch_size)?;
        // On a GPU the forward pass is only queued, so the host hands on one batch's states
        // while the next batch computes; on the CPU each batch is handed on as it ends.
        let overlap = self.overlapped_copies;
        let mut host = self.host.lock().map_err(|_| poisoned())?;
        let mut tokens_done = 0;
        let mut sentences_done = 0;
        let (mut waiting, mut handing_on) = (Duration::ZERO, Duration::ZERO);
        let mut deliver = |host: &mut HostCopy, batch: Vec<usize>, copy: PendingCopy| {
            let asked = Instant::now();
            host.finish(copy, |values| {
                let arrived = Instant::now();
                waiting += arrived - asked;
                let handed = hand_on(&batch, values);
                handing_on += arrived.elapsed();
                handed
            })?;
            sentences_done += batch.len();
            tokens_done += batch.iter().map(|&i| tokens[i].ids.len()).sum::<usize>();
            on_batch(BatchProgress {
                sentences_done,
                sentences_total: tokens.len(),
                tokens_done,
                elapsed: started.elapsed(),
                waiting,
                handing_on,
            });
            Ok::<_, EngineError>(())
        };
        let mut queue = BatchQueue::new(batches);
        let mut in_flight: Option<(Vec<usize>, PendingCopy)> = None;
        let outcome = loop {
            let Some(batch) = queue.next() else {
                break Ok(());
            };
            if cancel.load(Ordering::Relaxed) {
                break Err(EngineError::Cancelled);
            }
            let packed = match self
                .batch_input(tokens, &batch, options.capture)
                .and_then(|input| {
                    self.decoder
                        .forward_capture(&input, options.capture.nav_source)
                        .map_err(map_device_error)
                }) {
                Ok(packed) => packed,
                Err(error @ EngineError::OutOfMemory(_)) => {
                    // The estimate was too optimistic: run this batch as two halves.
                    if queue.retry_halved(batch) {
                        continue;
                    }
                    break Err(error);
                }
                Err(error) => break Err(error),
            };
            let copy = match host.start(&packed) {
                Ok(copy) => copy,
                Err(error) => break Err(error),
            };
            let ready = if overlap {
                in_flight.replace((batch, copy))
            } else {
                Some((batch, copy))
            };
            if let Some((batch, copy)) = ready
                && let Err(error) = deliver(&mut host, batch, copy)
            {
                break Err(error);
            }
        };
        // A batch still in flight finished before whatever stopped the loop: keep it.
        let last = match in_flight.take() {
            Some((batch, copy)) => deliver(&mut host, batch, copy),
            None => Ok(()),
        };
        outcome.and(last)
    }

    /// Seconds the forward passes take alone, the device synchronised after each batch but
    /// nothing copied to the host: with [`Self::extract`]'s time, it splits a benchmark into
    /// compute and transfer. With `capture` off the passes pool nothing (the model's own cost).
    /// `tokens` as [`Self::tokenize_all`] gives them.
    pub fn time_forward_only(
        &self,
        tokens: &[Tokens],
        options: &ExtractOptions,
        capture: bool,
    ) -> Result<f64> {
        let batches = self.plan(tokens, options.batch_size)?;
        let device = self.decoder.device();
        let started = Instant::now();
        for batch in batches {
            let input = self.batch_input(tokens, &batch, options.capture)?;
            let output = if capture {
                self.decoder
                    .forward_capture(&input, options.capture.nav_source)
            } else {
                self.decoder.forward_plain(&input)
            }
            .map_err(map_device_error)?;
            device.synchronize()?;
            drop(output);
        }
        Ok(started.elapsed().as_secs_f64())
    }

    /// Batches of `tokens`' sentences, longest first: as many sentences per batch as
    /// `requested` (`0` = auto, see [`memory::resolve_batch_size`]) and as fit the device.
    fn plan(&self, tokens: &[Tokens], requested: usize) -> Result<Vec<Vec<usize>>> {
        let longest = tokens.iter().map(|t| t.ids.len()).max().unwrap_or(1);
        Ok(length_sorted_batches(
            tokens,
            self.batch_size_for(longest, requested)?,
        ))
    }

    /// Sentences per batch for sentences of up to `longest` tokens: `requested`, or for `0`
    /// (auto) what fits the device — lowered where `requested` does not fit.
    pub fn batch_size_for(&self, longest: usize, requested: usize) -> Result<usize> {
        memory::resolve_batch_size(
            requested,
            &self.config,
            self.decoder.dtype(),
            self.decoder.device(),
            longest,
            !self.decoder.uses_capture_kernel(),
        )
    }

    fn batch_input(
        &self,
        tokens: &[Tokens],
        batch: &[usize],
        settings: CaptureSettings,
    ) -> Result<BatchInput> {
        let skip = settings.skip_special_tokens;
        let sentences = batch
            .iter()
            .map(|&index| {
                let sentence = &tokens[index];
                Ok(SentenceInput {
                    ids: &sentence.ids,
                    weights: capture::token_weights(&sentence.special, settings.pooling, skip)
                        .ok_or(EngineError::EmptySentence { index })?,
                    last: capture::last_token_weights(&sentence.special, skip)
                        .ok_or(EngineError::EmptySentence { index })?,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let mut input = self.decoder.batch_input(&sentences)?;
        input.routed_only = settings.expert_pooling == ExpertPooling::RoutedTokens;
        Ok(input)
    }

    /// Bits per UTF-8 byte of `sentences` under the model (lower is better): total negative
    /// log-likelihood of each next token over total bytes. A capability proxy, not a benchmark.
    /// `batch_size` as in [`ExtractOptions::batch_size`] (`0` = auto).
    pub fn bits_per_byte(
        &self,
        sentences: &[String],
        batch_size: usize,
        cancel: &AtomicBool,
    ) -> Result<f64> {
        if !self.decoder.has_lm_head() {
            return Err(EngineError::weights(
                self.info.source.spec(),
                "bits per byte needs the lm_head, which this checkpoint lacks",
            ));
        }
        // Full-vocabulary logits are the big buffer here, which the memory estimate does not
        // count, so "auto" means the CPU's 16 (still lowered where that does not fit).
        let requested = if batch_size == 0 {
            memory::CPU_AUTO_BATCH
        } else {
            batch_size
        };
        let tokens = self.tokenize_all(sentences)?;
        let batches = self.plan(&tokens, requested)?;
        let device = self.decoder.device();
        let mut host = self.host.lock().map_err(|_| poisoned())?;
        let mut nll = 0f64;
        for batch in batches {
            if cancel.load(Ordering::Relaxed) {
                return Err(EngineError::Cancelled);
            }
            let t = batch
                .iter()
                .map(|&i| tokens[i].ids.len())
                .max()
                .unwrap_or(0);
            if t < 2 {
                continue;
            }
            let mut ids = vec![0u32; batch.len() * t];
            for (row, &i) in batch.iter().enumerate() {
                ids[row * t..row * t + tokens[i].ids.len()].copy_from_slice(&tokens[i].ids);
            }
            let ids = Tensor::from_vec(ids, (batch.len(), t), device)?;
            let logprobs = self
                .decoder
                .next_token_logprobs(&ids)
                .map_err(map_device_error)?;
            nll -= host.copy(&logprobs, |logprobs| {
                Ok(batch
                    .iter()
                    .enumerate()
                    .map(|(row, &i)| {
                        let predicted = tokens[i].ids.len() - 1;
                        let start = row * (t - 1);
                        logprobs[start..start + predicted]
                            .iter()
                            .map(|&v| v as f64)
                            .sum::<f64>()
                    })
                    .sum::<f64>())
            })?;
        }
        let bytes: usize = sentences.iter().map(String::len).sum();
        Ok(nll / std::f64::consts::LN_2 / bytes.max(1) as f64)
    }
}

/// The host buffer's lock is only poisoned if a thread panicked while copying.
fn poisoned() -> EngineError {
    EngineError::Device("an earlier extraction failed while copying states".into())
}

/// Batches still to run, in order; one that ran out of memory comes back as two halves.
struct BatchQueue(VecDeque<Vec<usize>>);

impl BatchQueue {
    fn new(batches: Vec<Vec<usize>>) -> Self {
        Self(batches.into())
    }

    fn next(&mut self) -> Option<Vec<usize>> {
        self.0.pop_front()
    }

    /// Puts `batch` back as two halves, to run next; `false` for a single sentence, which
    /// cannot be made smaller.
    fn retry_halved(&mut self, batch: Vec<usize>) -> bool {
        if batch.len() < 2 {
            return false;
        }
        let (first, second) = batch.split_at(batch.len() / 2);
        self.0.push_front(second.to_vec());
        self.0.push_front(first.to_vec());
        true
    }
}

/// Sentence indices grouped into batches of similar length (longest first), so padding is small.
pub fn length_sorted_batches(tokens: &[Tokens], batch_size: usize) -> Vec<Vec<usize>> {
    let mut order: Vec<usize> = (0..tokens.len()).collect();
    order.sort_by_key(|&i| std::cmp::Reverse(tokens[i].ids.len()));
    order.chunks(batch_size).map(<[usize]>::to_vec).collect()
}

/// The first sentence of `batch` (in batch order) whose row holds NaN or infinity, and where,
/// in words; the rows are scanned in parallel.
fn first_non_finite(
    layout: &CaptureLayout,
    batch: &[usize],
    rows: &[f32],
) -> Option<(usize, String)> {
    use rayon::prelude::*;
    rows.par_chunks_exact(layout.width())
        .zip(batch)
        .find_map_first(|(row, &index)| non_finite_part(layout, row).map(|place| (index, place)))
}

/// Where a sentence's pooled row first holds NaN or infinity, in words.
fn non_finite_part(layout: &CaptureLayout, row: &[f32]) -> Option<String> {
    let at = row.iter().position(|v| !v.is_finite())?;
    let neurons = layout.layers * layout.d_ff;
    let hidden = (layout.layers + 1) * layout.d_model;
    Some(if at < neurons {
        format!("the NAS of layer {}", at / layout.d_ff)
    } else if at < 2 * neurons {
        format!("the NAV of layer {}", (at - neurons) / layout.d_ff)
    } else if at < 2 * neurons + hidden {
        format!(
            "the pooled hidden state {}",
            (at - 2 * neurons) / layout.d_model
        )
    } else {
        format!(
            "the last token's hidden state {}",
            (at - 2 * neurons - hidden) / layout.d_model
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_first_non_finite_sentence_is_named_in_batch_order() {
        let layout = CaptureLayout {
            layers: 2,
            d_ff: 3,
            d_model: 2,
        };
        let mut rows = vec![0.5f32; 3 * layout.width()];
        assert_eq!(first_non_finite(&layout, &[7, 2, 5], &rows), None);
        // Sentences 2 and 5 (batch places 1 and 2) both break; 2 comes first in the batch.
        rows[2 * layout.width() + 1] = f32::NAN;
        rows[layout.width() + 13] = f32::INFINITY;
        assert_eq!(
            first_non_finite(&layout, &[7, 2, 5], &rows),
            Some((2, "the pooled hidden state 0".to_string()))
        );
    }

    #[test]
    fn a_non_finite_value_is_placed_in_words() {
        // 2 layers of 3 neurons, d_model 2: NAS 0..6, NAV 6..12, pooled hidden 12..18 (3
        // states), last token's hidden 18..24.
        let layout = CaptureLayout {
            layers: 2,
            d_ff: 3,
            d_model: 2,
        };
        let place = |at: usize, value: f32| {
            let mut row = vec![0.5f32; layout.width()];
            row[at] = value;
            non_finite_part(&layout, &row)
        };
        assert_eq!(place(0, 1.0), None);
        assert_eq!(place(4, f32::NAN).as_deref(), Some("the NAS of layer 1"));
        assert_eq!(
            place(8, f32::INFINITY).as_deref(),
            Some("the NAV of layer 0")
        );
        assert_eq!(
            place(17, f32::NAN).as_deref(),
            Some("the pooled hidden state 2")
        );
        assert_eq!(
            place(19, f32::NEG_INFINITY).as_deref(),
            Some("the last token's hidden state 0")
        );
    }

    #[test]
    fn a_batch_out_of_memory_is_retried_in_halves_in_order() {
        let mut queue = BatchQueue::new(vec![vec![0, 1, 2, 3, 4], vec![5]]);
        let first = queue.next().unwrap();
        assert!(queue.retry_halved(first));
        let half = queue.next().unwrap();
        assert_eq!(half, [0, 1]);
        assert!(queue.retry_halved(half));
        let mut order = Vec::new();
        while let Some(batch) = queue.next() {
            order.push(batch);
        }
        assert_eq!(order, [vec![0], vec![1], vec![2, 3, 4], vec![5]]);
        // One sentence cannot be halved: the error stands.
        assert!(!queue.retry_halved(vec![7]));
        assert!(queue.next().is_none());
    }
}
