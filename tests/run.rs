//! Jobs, caching and partial results, on a tiny fixture model.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};

use neuronxa::analysis::lang::Lang;
use neuronxa::engine::ModelSource;
use neuronxa::run::cache::Cache;
use neuronxa::run::job::{self, JobEvent, JobOptions};
use neuronxa::run::{Method, Run, RunSettings};

fn settings(langs: &[&str]) -> RunSettings {
    let mut settings = RunSettings::default_for(ModelSource::Folder(common::tiny_model("qwen3")));
    settings.languages = langs.iter().map(|l| Lang::parse(l).unwrap()).collect();
    settings.sentences = 5;
    settings
}

/// Runs a job to its end on this thread; returns every event.
fn execute(settings: &RunSettings, options: &JobOptions, cancel: &AtomicBool) -> Vec<JobEvent> {
    let mut events = Vec::new();
    job::execute(settings, options, cancel, &mut |e| events.push(e));
    events
}

fn finished(events: &[JobEvent]) -> Run {
    match events.last() {
        Some(JobEvent::Finished(run)) => (**run).clone(),
        other => panic!("the job did not finish: {other:?}"),
    }
}

#[test]
fn adding_a_language_computes_only_that_language() {
    let cache = tempfile::tempdir().unwrap();
    let options = JobOptions::new(Cache::new(cache.path().to_path_buf()));
    let cancel = AtomicBool::new(false);
    let first = finished(&execute(&settings(&["en", "fr"]), &options, &cancel));
    assert!(first.provenance.cached_languages.is_empty());
    // The finished run is where the cache says it is, and reads back as the same run.
    let path = options.cache.run_path_of(&first);
    assert_eq!(Run::load_json(&path).unwrap(), first);

    let events = execute(&settings(&["en", "fr", "de"]), &options, &cancel);
    let second = finished(&events);
    // Progress counts tokens over all three languages, the cached two as done: it starts
    // past their share, never goes back, ends at exactly 1, and always has an ETA.
    let progress: Vec<&job::Progress> = events
        .iter()
        .filter_map(|e| match e {
            JobEvent::Progress(p) => Some(p),
            _ => None,
        })
        .collect();
    let cached_share = first.provenance.tokens as f64
        / (first.provenance.tokens + second.provenance.tokens) as f64;
    assert!(progress[0].fraction > cached_share, "{progress:?}");
    assert!(progress.windows(2).all(|w| w[0].fraction <= w[1].fraction));
    assert_eq!(progress.last().unwrap().fraction, 1.0);
    assert!(progress.iter().all(|p| p.eta.is_some()));
    assert!(progress.iter().all(|p| p.language.code() == "deu_Latn"));
    let cached: Vec<&str> = second
        .provenance
        .cached_languages
        .iter()
        .map(|l| l.code())
        .collect();
    assert_eq!(cached, ["eng_Latn", "fra_Latn"]);
    // The cached languages give exactly the numbers they gave before.
    let fr = Lang::parse("fr").unwrap();
    for method in first.methods() {
        assert_eq!(first.scores(&fr, method), second.scores(&fr, method));
    }
}

#[test]
fn a_cancelled_job_keeps_the_finished_languages() {
    let cache = tempfile::tempdir().unwrap();
    let options = JobOptions::new(Cache::new(cache.path().to_path_buf()));
    let cancel = AtomicBool::new(false);
    let mut events = Vec::new();
    job::execute(
        &settings(&["en", "fr", "de", "es"]),
        &options,
        &cancel,
        &mut |e| {
            if let JobEvent::LanguageDone { run, .. } = &e
                && run.languages.len() == 2
            {
                cancel.store(true, std::sync::atomic::Ordering::Relaxed);
            }
            events.push(e);
        },
    );
    let Some(JobEvent::Cancelled {
        partial: Some(partial),
    }) = events.last()
    else {
        panic!(
            "expected a cancelled job with partial results, got {:?}",
            events.last()
        );
    };
    // The languages scored when the job was cancelled, and the one extracted meanwhile (the
    // scoring runs alongside the next language's extraction): scored and kept, never the last.
    let kept = partial.languages.len();
    assert!((2..=3).contains(&kept), "{:?}", partial.languages);
    assert!(!partial.complete);
    assert_eq!(partial.pivot_scores.len(), kept);
    assert!(
        partial
            .matrices
            .values()
            .all(|matrix| matrix.languages == partial.languages)
    );

    // Running again reuses every finished language.
    cancel.store(false, std::sync::atomic::Ordering::Relaxed);
    let run = finished(&execute(
        &settings(&["en", "fr", "de", "es"]),
        &options,
        &cancel,
    ));
    assert_eq!(run.provenance.cached_languages, partial.languages);
    assert!(run.complete);
}

#[test]
fn scoring_alongside_the_extraction_gives_the_scores_of_scoring_after_it() {
    let cache = tempfile::tempdir().unwrap();
    let cancel = AtomicBool::new(false);
    let settings = settings(&["en", "fr", "de", "es"]);
    let mut runs = [true, false].map(|alongside| {
        let mut options = JobOptions::new(Cache::new(cache.path().to_path_buf()));
        options.use_cache = false;
        options.score_alongside = alongside;
        finished(&execute(&settings, &options, &cancel))
    });
    // Scored one after the other, nothing ran alongside.
    assert_eq!(runs[1].provenance.timings.scoring_alongside, 0.0);
    for run in &mut runs {
        run.provenance.started_at = 0;
        run.provenance.seconds = 0.0;
        run.provenance.timings = Default::default();
    }
    assert_eq!(runs[0], runs[1]);
    assert_eq!(runs[0].languages.len(), 4);
}

#[test]
fn a_corrupt_cache_entry_is_recomputed_with_a_warning() {
    let cache = tempfile::tempdir().unwrap();
    let options = JobOptions::new(Cache::new(cache.path().to_path_buf()));
    let cancel = AtomicBool::new(false);
    let first = finished(&execute(&settings(&["en", "fr"]), &options, &cancel));
    // Damage every cached file: states and the finished run.
    for dir in ["states", "runs"] {
        for entry in walk(&cache.path().join(dir)) {
            std::fs::write(&entry, b"garbage").unwrap();
        }
    }
    let events = execute(&settings(&["en", "fr"]), &options, &cancel);
    let warnings: Vec<&String> = events
        .iter()
        .filter_map(|e| match e {
            JobEvent::Warning(w) => Some(w),
            _ => None,
        })
        .collect();
    assert!(warnings.len() >= 2, "{warnings:?}");
    let second = finished(&events);
    assert!(second.provenance.cached_languages.is_empty());
    let fr = Lang::parse("fr").unwrap();
    assert_eq!(first.pivot_scores[&fr], second.pivot_scores[&fr]);
}

/// Cached states whose file is whole but whose values were damaged on disk (NaN where the
/// extraction never writes one): the scoring stops with the file named, and the languages
/// scored before it are kept.
#[test]
fn damaged_cached_states_stop_the_scoring_with_the_file_named_and_keep_what_came_before() {
    let cache = tempfile::tempdir().unwrap();
    let options = JobOptions::new(Cache::new(cache.path().to_path_buf()));
    let cancel = AtomicBool::new(false);
    finished(&execute(&settings(&["en"]), &options, &cancel));
    let states = |dir: &std::path::Path| walk(&dir.join("states"));
    let english = states(cache.path());
    finished(&execute(&settings(&["en", "fr"]), &options, &cancel));
    let french: Vec<_> = states(cache.path())
        .into_iter()
        .filter(|path| !english.contains(path))
        .collect();
    assert_eq!(french.len(), 1, "{french:?}");
    let french = &french[0];

    // NaN over the NAS tensor of French, header and size untouched.
    let mut bytes = std::fs::read(french).unwrap();
    let header_len = u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    let header: serde_json::Value = serde_json::from_slice(&bytes[8..8 + header_len]).unwrap();
    let offsets = &header["nas"]["data_offsets"];
    let (start, end) = (
        8 + header_len + offsets[0].as_u64().unwrap() as usize,
        8 + header_len + offsets[1].as_u64().unwrap() as usize,
    );
    for value in bytes[start..end].chunks_exact_mut(4) {
        value.copy_from_slice(&f32::NAN.to_le_bytes());
    }
    std::fs::write(french, &bytes).unwrap();

    let events = execute(&settings(&["en", "fr", "de"]), &options, &cancel);
    let Some(JobEvent::Failed {
        message,
        partial: Some(partial),
    }) = events.last()
    else {
        panic!(
            "expected a failed job with partial results, got {:?}",
            events.last()
        );
    };
    assert!(
        message.contains(&french.display().to_string()) && message.contains("damaged"),
        "{message}"
    );
    let english = Lang::parse("en").unwrap();
    assert_eq!(partial.languages, [english]);
    assert!(!partial.complete);
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let path = entry.path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}

#[test]
fn the_pivot_matches_itself_and_scores_stay_in_range() {
    let cache = tempfile::tempdir().unwrap();
    let mut options = JobOptions::new(Cache::new(cache.path().to_path_buf()));
    options.use_cache = false;
    let run = finished(&execute(
        &settings(&["en", "ja", "ar"]),
        &options,
        &AtomicBool::new(false),
    ));
    let en = Lang::parse("en").unwrap();
    for method in run.methods() {
        let own = run.scores(&en, method).unwrap();
        // At the embedding layer, last-token vectors of sentences that end in the same token
        // ("." here) are identical: a tie, which is never a match.
        let from = if method == Method::MexaLast { 1 } else { 0 };
        assert!(
            own.per_layer[from..].iter().all(|&s| s == 1.0),
            "{method}: {:?}",
            own.per_layer
        );
        for lang in &run.languages {
            let s = run.scores(lang, method).unwrap();
            assert!(
                s.per_layer
                    .iter()
                    .chain(&s.chance_per_layer)
                    .all(|v| (0.0..=1.0).contains(v))
            );
            assert_eq!(s.matched.len(), s.per_layer.len());
            // The score is the fraction of matched sentences.
            for (layer, matched) in s.matched.iter().enumerate() {
                let fraction = matched.iter().filter(|&&m| m).count() as f64 / matched.len() as f64;
                assert!((fraction - s.per_layer[layer]).abs() < 1e-12);
            }
        }
    }
    assert!(
        std::fs::read_dir(cache.path())
            .map(|d| d.count())
            .unwrap_or(0)
            == 0,
        "--no-cache wrote files"
    );
}

#[test]
fn a_job_on_a_worker_thread_reports_progress_and_finishes() {
    let cache = tempfile::tempdir().unwrap();
    let handle = job::spawn(
        settings(&["en", "de"]),
        JobOptions::new(Cache::new(cache.path().to_path_buf())),
    );
    let mut saw_progress = false;
    let mut languages_done = 0;
    loop {
        match handle
            .events()
            .recv_timeout(std::time::Duration::from_secs(120))
            .expect("job stalled")
        {
            JobEvent::Progress(p) => {
                saw_progress = true;
                assert!(p.fraction <= 1.0 && p.sentences_done <= p.sentences_total);
            }
            JobEvent::LanguageDone { .. } => languages_done += 1,
            JobEvent::Finished(run) => {
                assert!(run.complete);
                break;
            }
            JobEvent::Failed { message, .. } => panic!("{message}"),
            _ => {}
        }
    }
    assert!(saw_progress);
    assert_eq!(languages_done, 2);
}

#[test]
fn a_broken_model_fails_in_words_and_keeps_nothing_half_done() {
    let cache = tempfile::tempdir().unwrap();
    let mut settings = settings(&["en", "fr"]);
    settings.model = ModelSource::Folder("/nonexistent/model".into());
    let events = execute(
        &settings,
        &JobOptions::new(Cache::new(cache.path().to_path_buf())),
        &AtomicBool::new(false),
    );
    match events.last() {
        Some(JobEvent::Failed { message, .. }) => {
            assert!(message.contains("/nonexistent/model"), "{message}")
        }
        other => panic!("expected a failure, got {other:?}"),
    }
}

#[test]
fn states_streamed_to_disk_equal_the_states_in_memory() {
    use neuronxa::engine::states::{StateKind, StatesWriter};
    use neuronxa::engine::{CaptureSettings, ExtractOptions};
    let model = common::load_tiny("gemma3");
    let texts: Vec<String> = [
        "Der Hund schläft.",
        "雨が降っている。",
        "A longer sentence about rivers and mountains.",
    ]
    .map(String::from)
    .to_vec();
    let cancel = AtomicBool::new(false);
    let options = ExtractOptions {
        batch_size: 2,
        ..Default::default()
    };
    let in_memory = model
        .extract(&texts, &options, &cancel, &mut |_| {})
        .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let cfg = &model.config;
    let writer_at = |name: &str| {
        StatesWriter::create(
            &dir.path().join(name),
            texts.len(),
            cfg.num_layers,
            cfg.intermediate_size,
            cfg.hidden_size,
            &CaptureSettings::default(),
        )
        .unwrap()
    };
    let mut writer = writer_at("x.safetensors");
    model
        .extract_each(&texts, &options, &cancel, &mut |_| {}, &mut |i, s| {
            writer.write_sentence(i, &s)
        })
        .unwrap();
    let on_disk = writer.finish().unwrap();
    // A run's way: a batch at a time into the writer (through the file's mapping on Linux).
    let mut batches = writer_at("batches.safetensors");
    let tokens = model.tokenize_all(&texts).unwrap();
    model
        .extract_tokens_into(&tokens, &options, &cancel, &mut |_| {}, &mut batches)
        .unwrap();
    let by_batches = batches.finish().unwrap();
    for file in [&on_disk, &by_batches] {
        for kind in StateKind::ALL {
            for layer in 0..in_memory.layer_count(kind) {
                assert_eq!(
                    file.layer_matrix(kind, layer).unwrap(),
                    in_memory.layer_matrix(kind, layer)
                );
            }
        }
        assert_eq!(file.token_counts, in_memory.token_counts);
    }
    // The file is plain safetensors: the in-memory reader gives the same states back.
    let reread = neuronxa::engine::LanguageStates::load(on_disk.path()).unwrap();
    assert_eq!(reread, in_memory);
    // A truncated file is refused when opened, with its path.
    let bytes = std::fs::read(on_disk.path()).unwrap();
    let broken = dir.path().join("broken.safetensors");
    std::fs::write(&broken, &bytes[..bytes.len() - 100]).unwrap();
    let error = neuronxa::engine::states::StatesFile::open(&broken)
        .unwrap_err()
        .to_string();
    assert!(error.contains("broken.safetensors"), "{error}");
}

/// The GPU's order of work (batch k handed on after batch k + 1 is queued), run on the CPU:
/// the same states, every batch reported, and a cancel still hands on the batch in flight.
#[test]
fn overlapped_copies_hand_on_every_batch_and_keep_the_one_in_flight() {
    use neuronxa::engine::ExtractOptions;
    let mut model = common::load_tiny("llama");
    let texts: Vec<String> = [
        "Der Hund schläft.",
        "雨が降っている。",
        "A longer sentence about rivers and mountains.",
        "Il pleut.",
        "Что это?",
    ]
    .map(String::from)
    .to_vec();
    let options = ExtractOptions {
        batch_size: 2,
        ..Default::default()
    };
    let never = AtomicBool::new(false);
    let in_order = model
        .extract(&texts, &options, &never, &mut |_| {})
        .unwrap();

    model.set_overlapped_copies(true);
    let mut reports = Vec::new();
    let overlapped = model
        .extract(&texts, &options, &never, &mut |p| {
            reports.push(p.sentences_done)
        })
        .unwrap();
    assert_eq!(overlapped, in_order);
    assert_eq!(reports, [2, 4, 5]);

    // Cancelled once the first batch is handed on: by then the second has run too, and is
    // handed on before the cancel is reported; the third never starts.
    let cancel = AtomicBool::new(false);
    let mut handed_on = Vec::new();
    let error = model
        .extract_each(
            &texts,
            &options,
            &cancel,
            &mut |_| cancel.store(true, Ordering::Relaxed),
            &mut |index, states| {
                assert_eq!(states.nas, in_order.sentence(index).nas);
                handed_on.push(index);
                Ok(())
            },
        )
        .unwrap_err();
    assert!(matches!(error, neuronxa::engine::EngineError::Cancelled));
    assert_eq!(handed_on.len(), 4);
}

/// A sentence too long for the model, in the third language: the job stops before computing
/// anything (every language is tokenised when the model loads) and says which language.
#[test]
fn a_too_long_sentence_stops_the_job_before_any_computing_and_names_its_language() {
    let corpus = tempfile::tempdir().unwrap();
    let line = |word: &str, i: usize| format!("{word} number {i} is here.");
    let lines = |word: &str| (0..3).map(|i| line(word, i)).collect::<Vec<_>>().join("\n");
    std::fs::write(corpus.path().join("eng_Latn.txt"), lines("Sentence")).unwrap();
    std::fs::write(corpus.path().join("fra_Latn.txt"), lines("Phrase")).unwrap();
    let long = vec!["Wort"; 2000].join(" ");
    std::fs::write(
        corpus.path().join("deu_Latn.txt"),
        format!("{}\n{long}\n{}", line("Satz", 0), line("Satz", 2)),
    )
    .unwrap();
    let cache = tempfile::tempdir().unwrap();
    let options = JobOptions::new(Cache::new(cache.path().to_path_buf()));
    let mut settings = settings(&["en", "fr", "de"]);
    settings.corpus = neuronxa::run::CorpusChoice::Path(corpus.path().to_path_buf());
    settings.sentences = 3;
    let events = execute(&settings, &options, &AtomicBool::new(false));
    let Some(JobEvent::Failed { message, partial }) = events.last() else {
        panic!("expected a failure, got {:?}", events.last());
    };
    assert!(message.starts_with("German: sentence 1 has"), "{message}");
    assert!(message.contains("limit of 512"), "{message}");
    assert!(
        message.ends_with("(\"Wort Wort Wort Wort Wort Wort Wort Wort …\")"),
        "{message}"
    );
    assert!(
        partial.is_none(),
        "nothing was computed, so nothing is kept"
    );
    assert!(
        !events.iter().any(|e| matches!(e, JobEvent::Progress(_))),
        "a batch ran before the error"
    );
}

/// The experts' reading: on a mixture it changes the numbers (and so the cache entry); on a
/// dense model it means nothing and is left at its default, so the run reopens from the cache.
#[test]
fn the_experts_reading_changes_a_mixture_and_leaves_a_dense_model_alone() {
    use neuronxa::engine::ExpertPooling;
    let cache = tempfile::tempdir().unwrap();
    let options = JobOptions::new(Cache::new(cache.path().to_path_buf()));
    let cancel = AtomicBool::new(false);

    let mut mixture = settings(&["en", "fr"]);
    mixture.model = ModelSource::Folder(common::tiny_model("olmoe"));
    let all = finished(&execute(&mixture, &options, &cancel));
    mixture.capture.expert_pooling = ExpertPooling::RoutedTokens;
    let routed = finished(&execute(&mixture, &options, &cancel));
    assert!(routed.provenance.cached_languages.is_empty(), "recomputed");
    assert_eq!(
        routed.settings.capture.expert_pooling,
        ExpertPooling::RoutedTokens
    );
    assert_ne!(all.pivot_scores, routed.pivot_scores);

    let mut dense = settings(&["en", "fr"]);
    let plain = finished(&execute(&dense, &options, &cancel));
    dense.capture.expert_pooling = ExpertPooling::RoutedTokens;
    let again = finished(&execute(&dense, &options, &cancel));
    assert_eq!(
        again.settings.capture.expert_pooling,
        ExpertPooling::AllTokens
    );
    assert_eq!(again, plain, "reopened from the cache, as it was");
}
