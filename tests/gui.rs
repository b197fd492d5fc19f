//! The explorer window driven like a user would (egui_kittest, by role and label): pick
//! languages, run a tiny model, watch progress, switch views, cancel, export.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use egui::accesskit::{Role, Toggled};
use egui_kittest::Harness;
use egui_kittest::kittest::{NodeT, Queryable};
use neuronxa::analysis::lang::Lang;
use neuronxa::app::state::{CorpusState, ModelCheck, Outcome, View};
use neuronxa::app::{Command, ExplorerApp};
use neuronxa::engine::{ExpertPooling, ModelSource, hub};

const SIZE: [f32; 2] = [1280.0, 800.0];

/// The tiny random-weight model the engine tests use.
fn fixture_model() -> PathBuf {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny");
    for name in ["qwen2", "llama", "mistral"] {
        let folder = root.join(name);
        if folder.join("config.json").is_file() && folder.join("tokenizer.json").is_file() {
            return folder;
        }
    }
    panic!("no tiny fixture model under {}", root.display());
}

fn harness(cache: &Path, model: Option<ModelSource>) -> Harness<'static, ExplorerApp> {
    let cache = cache.to_path_buf();
    Harness::builder()
        .with_size(SIZE)
        .build_eframe(move |cc| ExplorerApp::new_for_test(cc, cache, model))
}

/// Steps frames (with real time passing, so helper threads and the job progress) until `done`.
fn wait_until(
    h: &mut Harness<'static, ExplorerApp>,
    timeout: Duration,
    what: &str,
    mut done: impl FnMut(&mut Harness<'static, ExplorerApp>) -> bool,
) {
    let started = Instant::now();
    loop {
        h.step();
        if done(h) {
            break;
        }
        assert!(
            started.elapsed() < timeout,
            "timed out after {timeout:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    h.step();
}

fn wait_ready(h: &mut Harness<'static, ExplorerApp>) {
    wait_until(
        h,
        Duration::from_secs(60),
        "the corpus and the model check",
        |h| {
            matches!(h.state().corpus_state(), CorpusState::Ready(..))
                && !matches!(
                    h.state().model_check(),
                    ModelCheck::Checking(_) | ModelCheck::Unknown
                )
        },
    );
}

/// The corpus's language whose code starts with `prefix` ("fra", "deu", …).
fn corpus_lang(h: &Harness<'static, ExplorerApp>, prefix: &str) -> Lang {
    let CorpusState::Ready(_, summary) = h.state().corpus_state() else {
        panic!("the corpus is not ready");
    };
    summary
        .languages
        .iter()
        .map(|(l, _)| l.clone())
        .find(|l| l.code().starts_with(prefix))
        .unwrap_or_else(|| panic!("the bundled corpus has no {prefix}"))
}

fn checkbox_checked(h: &Harness<'static, ExplorerApp>, label: &str) -> bool {
    let node = h.get_by_role_and_label(Role::CheckBox, label);
    node.accesskit_node().toggled() == Some(Toggled::True)
}

/// Chooses the pivot plus `others` (by clicking "None", then their checkboxes), and the
/// number of sentences (through the "Sentences" drag value).
fn choose_languages(h: &mut Harness<'static, ExplorerApp>, others: &[&str], sentences: usize) {
    h.get_by_role_and_label(Role::Button, "None").click();
    h.run_steps(2);
    for prefix in others {
        let lang = corpus_lang(h, prefix);
        assert!(
            !checkbox_checked(h, lang.name()),
            "{} should be unchecked",
            lang.name()
        );
        h.get_by_role_and_label(Role::CheckBox, lang.name()).click();
        h.run_steps(2);
        assert!(
            checkbox_checked(h, lang.name()),
            "{} should be checked",
            lang.name()
        );
    }
    h.get_by_role_and_label(Role::SpinButton, "Sentences")
        .set_value_accesskit(sentences as f64);
    h.run_steps(2);
    assert_eq!(h.state().settings().sentences, sentences);
    assert_eq!(h.state().settings().languages.len(), others.len() + 1);
}

fn click_run(h: &mut Harness<'static, ExplorerApp>) -> Duration {
    h.get_by_role_and_label(Role::Button, "Run").click();
    let started = Instant::now();
    h.step(); // the click is handled in this frame: the job starts on its worker
    started.elapsed()
}

/// Runs the tiny model on pivot + French + German, 5 sentences, to the end.
fn finished_tiny_run(cache: &Path) -> Harness<'static, ExplorerApp> {
    let mut h = harness(cache, Some(ModelSource::Folder(fixture_model())));
    wait_ready(&mut h);
    choose_languages(&mut h, &["fra", "deu"], 5);
    click_run(&mut h);
    wait_finished(&mut h);
    h
}

/// Waits for the running job to end, and asserts that it finished.
fn wait_finished(h: &mut Harness<'static, ExplorerApp>) {
    wait_until(h, Duration::from_secs(300), "the run to finish", |h| {
        h.state().outcome().is_some()
    });
    assert_eq!(
        h.state().outcome(),
        Some(&Outcome::Finished),
        "log: {}",
        log_text(h)
    );
}

/// At least one widget whose label contains `text`.
fn assert_shown(h: &Harness<'static, ExplorerApp>, text: &str) {
    assert!(
        h.query_all_by_label_contains(text).next().is_some(),
        "nothing on screen says \"{text}\""
    );
}

fn log_text(h: &Harness<'static, ExplorerApp>) -> String {
    h.state()
        .log_lines()
        .map(|l| format!("{:?} {}", l.level, l.text))
        .collect::<Vec<_>>()
        .join("\n")
}

#[test]
fn first_start_offers_the_demo_model_ten_languages_and_one_button() {
    let cache = tempfile::tempdir().unwrap();
    let mut h = harness(cache.path(), None);
    wait_ready(&mut h);

    h.get_by_label("Setup");
    h.get_by_role_and_label(Role::Button, "Run");
    let settings = h.state().settings().clone();
    assert_eq!(settings.model, ModelSource::Gguf(hub::demo_model_path()));
    assert_eq!(settings.sentences, 100);
    assert_eq!(
        h.get_by_role_and_label(Role::SpinButton, "Sentences")
            .value()
            .as_deref(),
        Some("100")
    );
    // Batch size "auto": sized from free GPU memory, 16 sentences on the CPU.
    assert_eq!(settings.batch_size, 0);
    assert_eq!(
        h.get_by_role_and_label(Role::SpinButton, "Batch size")
            .value()
            .as_deref(),
        Some("auto")
    );
    assert!(
        settings.pivot.code().starts_with("eng"),
        "pivot {}",
        settings.pivot.code()
    );

    let CorpusState::Ready(_, summary) = h.state().corpus_state().clone() else {
        unreachable!()
    };
    assert_eq!(summary.languages.len(), 10);
    for (lang, count) in &summary.languages {
        assert!(*count >= 100, "{} has {count} sentences", lang.name());
        assert!(
            checkbox_checked(&h, lang.name()),
            "{} is not checked",
            lang.name()
        );
    }
    for method in neuronxa::run::Method::ALL {
        assert!(
            checkbox_checked(&h, method.label()),
            "{method} is not checked"
        );
    }
    // No run yet: the welcome text says what Run will do.
    assert_shown(&h, "Press Run (Ctrl+R)");
}

#[test]
fn a_missing_model_is_explained_in_words() {
    let cache = tempfile::tempdir().unwrap();
    let missing = cache.path().join("no-such-model");
    let mut h = harness(cache.path(), Some(ModelSource::Folder(missing)));
    wait_ready(&mut h);
    assert!(matches!(
        h.state().model_check(),
        ModelCheck::Problem { .. }
    ));
    assert_shown(&h, "no such model folder");
}

#[test]
fn runs_a_tiny_model_with_progress_and_every_view() {
    let cache = tempfile::tempdir().unwrap();
    let mut h = harness(cache.path(), Some(ModelSource::Folder(fixture_model())));
    wait_ready(&mut h);
    // What was recognised, in words.
    assert!(matches!(
        h.state().model_check(),
        ModelCheck::Recognised { .. }
    ));
    assert_shown(&h, "2 layers");
    // Hovering the summary says how the model was read.
    h.query_all_by_label_contains("2 layers")
        .next()
        .unwrap()
        .hover();
    // egui waits half a second before it shows a tooltip.
    h.run_steps(60);
    assert_shown(&h, "norms: RMSNorm, before attention and before the MLP");
    choose_languages(&mut h, &["fra", "deu", "spa"], 5);
    // The bits-per-byte proxy for the scatter view.
    h.get_by_role_and_label(Role::SpinButton, "Proxy sentences")
        .set_value_accesskit(3.0);
    h.run_steps(2);
    assert_eq!(h.state().settings().proxy_sentences, 3);

    let click = click_run(&mut h);
    assert!(
        click < Duration::from_millis(500),
        "starting the run took {click:?} on the UI thread"
    );
    let mut saw_progress = false;
    let mut saw_partial = false;
    wait_until(&mut h, Duration::from_secs(300), "the run to finish", |h| {
        saw_progress |= h.query_all_by_role(Role::ProgressIndicator).any(|n| {
            n.accesskit_node().label().is_some_and(|l| {
                l.contains("waiting") || l.contains("sentences") || l.contains("done")
            })
        });
        saw_partial |= h.state().current_run().is_some_and(|r| !r.complete);
        h.state().outcome().is_some()
    });
    assert_eq!(
        h.state().outcome(),
        Some(&Outcome::Finished),
        "log: {}",
        log_text(&h)
    );
    assert!(saw_progress, "no progress bar was shown while running");
    assert!(saw_partial, "results did not appear language by language");
    let run = h.state().current_run().unwrap().clone();
    assert!(run.complete);
    assert_eq!(run.languages.len(), 4);
    assert_eq!(run.layer_count(neuronxa::run::Method::Nas), 2);
    assert_eq!(run.proxy_bits_per_byte.len(), 4);
    // Everything the job produced came in through `handle` as events.
    assert!(h.state().job_events_received() >= 4);
    // The UI thread kept drawing frames while the job ran, and none of them was slow.
    let stats = h.state().frame_stats().clone();
    assert!(stats.frames_while_running >= 2, "{stats:?}");
    assert!(
        stats.slowest_while_running < Duration::from_millis(500),
        "a frame took {:?} while the job ran",
        stats.slowest_while_running
    );
    assert_shown(&h, "finished:");

    // The header's details say the run's capture choices on hover.
    h.query_all_by_label_contains(" s · CPU")
        .next()
        .unwrap()
        .hover();
    h.run_steps(60);
    assert_shown(
        &h,
        "pooling: position-weighted mean · special tokens kept · NAV on |act(gate)|",
    );
    // One tooltip, not the elided label's own beside it: the details once in the header,
    // once in the tooltip.
    assert_eq!(h.query_all_by_label_contains(" s · CPU").count(), 2);
    h.remove_cursor();
    h.run_steps(2);

    // Heatmap: hovering a cell shows the exact value.
    assert_eq!(h.state().view(), View::Heatmap);
    h.get_by_label("Sort languages by mean score");
    let mut hovered = false;
    for dy in (40..400).step_by(8) {
        h.hover_at(egui::pos2(700.0, 90.0 + dy as f32));
        h.run_steps(6); // tooltips wait for the pointer to rest
        if h.query_all_by_label_contains("pairs mutual nearest neighbours")
            .next()
            .is_some()
        {
            hovered = true;
            break;
        }
    }
    assert!(hovered, "hovering the heatmap showed no value");
    h.remove_cursor();

    // Every view by its tab, and the digit keys.
    let expectations = [
        ("Curves", View::Curves, "Per language"),
        ("Matrix", View::Matrix, "Mean over layers"),
        ("Scatter", View::Scatter, "Pearson r"),
        ("Compare", View::Compare, "Mean over layers and languages"),
        (
            "Sentences",
            View::Sentences,
            "pairs are mutual nearest neighbours",
        ),
    ];
    for (tab, view, text) in expectations {
        h.get_by_role_and_label(Role::Button, tab).click();
        h.run_steps(3);
        assert_eq!(h.state().view(), view);
        assert_shown(&h, text);
    }
    // The scatter is labelled as a proxy when it uses bits per byte.
    h.get_by_role_and_label(Role::Button, "Scatter").click();
    h.run_steps(3);
    assert_shown(&h, "not a benchmark");
    // Imported task accuracies (what the "Import task CSV…" dialog hands over) replace it.
    let tasks = cache.path().join("tasks.csv");
    std::fs::write(&tasks, "language,belebele\nfr,0.81\nde,0.74\nes,0.78\n").unwrap();
    h.state_mut().push(Command::ImportTasks(tasks));
    wait_until(&mut h, Duration::from_secs(30), "the task file", |h| {
        !h.state().tasks().is_empty()
    });
    assert_eq!(h.state().tasks()[0].name, "belebele");
    assert!(
        h.query_all_by_label_contains("not a benchmark")
            .next()
            .is_none()
    );
    assert_shown(&h, "Pearson r");
    assert_shown(&h, "Spearman");
    assert_shown(&h, "95% CI (Fisher z)");
    // Sentences: every pair is marked.
    h.get_by_role_and_label(Role::Button, "Sentences").click();
    h.run_steps(3);
    let marks = h.query_all_by_label_contains("matched").count();
    assert!(marks >= 5, "only {marks} pairs are marked");
    h.key_press(egui::Key::Num1);
    h.run_steps(2);
    assert_eq!(h.state().view(), View::Heatmap);
    h.key_press(egui::Key::Num3);
    h.run_steps(2);
    assert_eq!(h.state().view(), View::Matrix);
}

#[test]
fn cancel_keeps_the_finished_languages() {
    let cache = tempfile::tempdir().unwrap();
    let mut h = harness(cache.path(), Some(ModelSource::Folder(fixture_model())));
    wait_ready(&mut h);
    h.get_by_role_and_label(Role::Button, "All").click();
    h.run_steps(2);
    // One sentence per batch: the job checks for Cancel after every sentence.
    h.get_by_role_and_label(Role::SpinButton, "Batch size")
        .set_value_accesskit(1.0);
    h.get_by_role_and_label(Role::SpinButton, "Sentences")
        .set_value_accesskit(200.0);
    h.run_steps(2);
    assert_eq!(h.state().settings().batch_size, 1);
    assert_eq!(h.state().settings().languages.len(), 10);
    // Ctrl+R starts the run (the Run button is clicked in the other tests).
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::R);
    h.step();
    assert!(h.state().is_running(), "Ctrl+R did not start a run");
    wait_until(
        &mut h,
        Duration::from_secs(300),
        "the first finished language",
        |h| h.state().current_run().is_some() || h.state().outcome().is_some(),
    );
    assert!(
        h.state().is_running(),
        "the run ended before it could be cancelled"
    );
    h.key_press(egui::Key::Escape);
    wait_until(&mut h, Duration::from_secs(120), "the job to stop", |h| {
        h.state().outcome().is_some()
    });
    assert_eq!(
        h.state().outcome(),
        Some(&Outcome::Cancelled),
        "log: {}",
        log_text(&h)
    );
    let run = h
        .state()
        .current_run()
        .expect("the finished languages are kept");
    assert!(!run.complete);
    assert!(
        !run.languages.is_empty() && run.languages.len() < 10,
        "{} languages",
        run.languages.len()
    );
    assert_shown(&h, "cancelled; kept");
    // The partial run is on screen and says so.
    h.get_by_label("partial");
}

#[test]
fn exports_csv_png_svg_and_a_bundle() {
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let mut h = finished_tiny_run(cache.path());

    // Ctrl+E opens the export window; type the folder into it.
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::E);
    h.run_steps(2);
    let folder = h.get_by_role_and_label(Role::TextInput, "Folder");
    folder.focus();
    h.run_steps(1);
    h.key_press_modifiers(egui::Modifiers::COMMAND, egui::Key::A);
    h.get_by_role_and_label(Role::TextInput, "Folder")
        .type_text(&out.path().display().to_string());
    h.run_steps(2);
    assert_eq!(
        h.state().persisted().export.folder,
        out.path().display().to_string()
    );

    let export = |h: &mut Harness<'static, ExplorerApp>, button: &str| -> Vec<PathBuf> {
        h.get_by_role_and_label(Role::Button, button).click();
        h.run_steps(1);
        wait_until(h, Duration::from_secs(120), button, |h| {
            h.state().exports_pending() == 0
        });
        let written = h.state().last_exported().to_vec();
        assert!(
            !written.is_empty(),
            "{button} wrote nothing; log: {}",
            log_text(h)
        );
        written
    };

    // CSV of the heatmap: one row per language besides the pivot, one column per layer.
    let csv = export(&mut h, "Save CSV");
    assert_eq!(csv.len(), 1);
    let text = std::fs::read_to_string(&csv[0]).unwrap();
    let mut lines = text.lines();
    assert_eq!(lines.next(), Some("language,code,layer_0,layer_1,mean"));
    let rows: Vec<&str> = lines.collect();
    assert_eq!(rows.len(), 2, "{text}");
    assert!(
        rows.iter().any(|r| r.starts_with("French,fra_Latn,")),
        "{text}"
    );

    // Exporting the same view again keeps the first file and takes a new name, unless asked
    // to replace it.
    let again = export(&mut h, "Save CSV");
    assert_ne!(again, csv);
    assert!(
        again[0].to_string_lossy().ends_with("-2.csv"),
        "{}",
        again[0].display()
    );
    assert_eq!(std::fs::read_to_string(&csv[0]).unwrap(), text);
    h.get_by_role_and_label(Role::CheckBox, "Replace files of the same name")
        .click();
    h.run_steps(2);
    assert!(h.state().persisted().export.replace_existing);
    assert_eq!(export(&mut h, "Save CSV"), csv);

    let png = export(&mut h, "Save PNG");
    let bytes = std::fs::read(&png[0]).unwrap();
    assert!(
        bytes.starts_with(b"\x89PNG"),
        "{} is not a PNG",
        png[0].display()
    );

    let svg = export(&mut h, "Save SVG");
    let text = std::fs::read_to_string(&svg[0]).unwrap();
    assert!(text.contains("<svg"), "{} is not an SVG", svg[0].display());

    let bundle = export(&mut h, "Save bundle");
    let names: Vec<String> = bundle
        .iter()
        .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
        .collect();
    for expected in [
        "run.json",
        "heatmap.png",
        "heatmap.svg",
        "heatmap.csv",
        "curves.png",
        "matrix.csv",
        "sentences.csv",
    ] {
        assert!(
            names.iter().any(|n| n == expected),
            "the bundle lacks {expected}: {names:?}"
        );
    }
    for path in &bundle {
        assert!(
            std::fs::metadata(path).unwrap().len() > 0,
            "{} is empty",
            path.display()
        );
    }
    // The bundle's run.json reopens as the same run.
    let json = bundle.iter().find(|p| p.ends_with("run.json")).unwrap();
    let reopened = neuronxa::run::Run::load_json(json).unwrap();
    assert_eq!(Some(&reopened), h.state().current_run());

    // The sentence view's CSV marks every pair.
    h.key_press(egui::Key::Num6);
    h.run_steps(2);
    let csv = export(&mut h, "Save CSV");
    let text = std::fs::read_to_string(&csv[0]).unwrap();
    assert!(
        text.starts_with("index,pivot_sentence,sentence,mutual_nn"),
        "{text}"
    );
    assert_eq!(text.lines().count(), 1 + 5);
}

#[test]
fn a_finished_run_reopens_and_compares() {
    let cache = tempfile::tempdir().unwrap();
    let out = tempfile::tempdir().unwrap();
    let h = finished_tiny_run(cache.path());
    let run = h.state().current_run().unwrap().clone();
    let path = out.path().join("run.json");
    run.save_json(&path).unwrap();
    drop(h);

    let mut h = harness(cache.path(), None);
    h.state_mut().push(Command::OpenRun(path.clone()));
    wait_until(&mut h, Duration::from_secs(30), "the run to open", |h| {
        h.state().current_run().is_some()
    });
    assert_eq!(h.state().current_run(), Some(&run));
    h.state_mut().push(Command::CompareRun(path));
    wait_until(
        &mut h,
        Duration::from_secs(30),
        "the run to be compared",
        |h| h.state().compared_runs() == 1,
    );
    assert_eq!(h.state().view(), View::Compare);
    assert_shown(&h, "Mean over layers and languages");
    assert!(h.query_all_by_label_contains("current:").count() >= 1);
}

#[test]
fn the_scatter_computes_the_proxy_from_cached_states() {
    let cache = tempfile::tempdir().unwrap();
    let mut h = finished_tiny_run(cache.path());
    assert!(
        h.state()
            .current_run()
            .unwrap()
            .proxy_bits_per_byte
            .is_empty()
    );
    h.get_by_role_and_label(Role::Button, "Scatter").click();
    h.run_steps(3);
    assert_shown(&h, "Nothing to correlate with yet");
    h.get_by_role_and_label(
        Role::Button,
        "Compute the proxy (up to 50 held-out sentences per language)",
    )
    .click();
    h.step();
    assert!(h.state().is_running(), "the button did not start a run");
    h.run_steps(2);
    if h.state().is_running() {
        // A second click would start the same job again.
        let button = h.get_by_role_and_label(
            Role::Button,
            "Compute the proxy (up to 50 held-out sentences per language)",
        );
        assert!(
            button.accesskit_node().is_disabled(),
            "the button stays enabled while it runs"
        );
    }
    wait_finished(&mut h);
    let run = h.state().current_run().unwrap();
    // The states came from the cache; only bits per byte was computed, for every language.
    assert_eq!(run.provenance.cached_languages.len(), 3);
    assert_eq!(run.proxy_bits_per_byte.len(), 3);
    assert_eq!(h.state().settings().proxy_sentences, 50);
    h.run_steps(3);
    assert_eq!(h.state().view(), View::Scatter);
    assert_shown(&h, "not a benchmark");
    assert_shown(&h, "Pearson r");
}

#[test]
fn a_screenshot_is_cropped_to_the_view() {
    let out = tempfile::tempdir().unwrap();
    let mut image = egui::ColorImage::filled([200, 100], egui::Color32::WHITE);
    for y in 20..60 {
        for x in 50..150 {
            image.pixels[y * 200 + x] = egui::Color32::RED;
        }
    }
    let rect = egui::Rect::from_min_max(egui::pos2(25.0, 10.0), egui::pos2(75.0, 30.0));
    let path = out.path().join("view.png");
    neuronxa::app::export::save_screenshot(&image, Some(rect), 2.0, &path).unwrap();
    let saved = image::open(&path).unwrap().to_rgba8();
    assert_eq!(saved.dimensions(), (100, 40));
    assert!(saved.pixels().all(|p| p.0 == [255, 0, 0, 255]));
}

#[test]
fn the_persisted_state_round_trips() {
    let cache = tempfile::tempdir().unwrap();
    let mut h = harness(cache.path(), None);
    wait_ready(&mut h);
    h.state_mut().push(Command::SetPresentation(true));
    h.state_mut().push(Command::SwitchView(View::Sentences));
    h.run_steps(2);
    let persisted = h.state().persisted().clone();
    assert!(persisted.presentation);
    let json = serde_json::to_string(&persisted).unwrap();
    let back: neuronxa::app::state::Persisted = serde_json::from_str(&json).unwrap();
    assert_eq!(back, persisted);
    assert_eq!(back.view, View::Sentences);
}

#[test]
fn run_times_are_written_in_utc() {
    assert_eq!(neuronxa::app::utc_time(0), "1970-01-01 00:00 UTC");
    assert_eq!(neuronxa::app::utc_time(951_782_400), "2000-02-29 00:00 UTC");
    assert_eq!(
        neuronxa::app::utc_time(1_795_677_918),
        "2026-11-26 07:25 UTC"
    );
}

/// Where the MLP has no gate (here Apertus, which the explorer once took for gated: it asked
/// the architecture, not the config) the NAV source says both sources give the same.
#[test]
fn the_nav_source_says_when_both_sources_are_the_same() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny");
    for (model, same) in [("apertus", true), ("llama", false)] {
        let cache = tempfile::tempdir().unwrap();
        let mut h = harness(cache.path(), Some(ModelSource::Folder(root.join(model))));
        wait_ready(&mut h);
        assert!(matches!(
            h.state().model_check(),
            ModelCheck::Recognised { .. }
        ));
        assert_eq!(
            h.query_by_label("same here").is_some(),
            same,
            "{model}: \"same here\" beside the NAV source"
        );
        // The combo names the neurons the model has: act(fc_in) where there is no gate.
        let shown = if same { "|act(fc_in)|" } else { "|act(gate)|" };
        assert_eq!(
            h.get_by_role_and_label(Role::ComboBox, "NAV source")
                .value()
                .as_deref(),
            Some(shown),
            "{model}: the NAV source's selected text"
        );
    }
}

/// A mixture of experts offers its second reading (each expert pooled over its routed tokens
/// only); a dense model, where it means nothing, does not show the control.
#[test]
fn the_experts_reading_is_offered_for_mixtures_only() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/tiny");
    let cache = tempfile::tempdir().unwrap();
    let mut h = harness(cache.path(), Some(ModelSource::Folder(root.join("llama"))));
    wait_ready(&mut h);
    assert!(h.query_by_label("Experts").is_none(), "llama is dense");

    let cache = tempfile::tempdir().unwrap();
    let mut h = harness(cache.path(), Some(ModelSource::Folder(root.join("olmoe"))));
    wait_ready(&mut h);
    assert_eq!(
        h.state().settings().capture.expert_pooling,
        ExpertPooling::AllTokens
    );
    // The setup panel scrolls: clicked through accesskit, as a screen reader would.
    // Stepped rather than run to rest: a helper thread (the model check) may ask for a
    // repaint at any moment, which `run` takes for a UI that never settles.
    h.get_by_role_and_label(Role::ComboBox, "Experts")
        .click_accesskit();
    h.run_steps(4);
    h.get_by_label("routed tokens only").click_accesskit();
    h.run_steps(4);
    assert_eq!(
        h.state().settings().capture.expert_pooling,
        ExpertPooling::RoutedTokens
    );
    assert_eq!(
        h.get_by_role_and_label(Role::ComboBox, "Experts")
            .value()
            .as_deref(),
        Some("routed tokens only")
    );
}
