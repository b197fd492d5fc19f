//! Typed commands: everything the UI, the job and the background helpers ask for goes through
//! one function, [`ExplorerApp::handle`]. UI code only pushes commands; nothing here touches a
//! model on the UI thread (inspection, corpus reading, exports and dialogs run on helpers).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use egui::epaint::text::FontInsert;

use crate::engine::{DeviceChoice, ModelInfo, ModelSource, hub};
use crate::run::correlate::TaskSeries;
use crate::run::job::{self, JobEvent, JobOptions};
use crate::run::{CorpusChoice, Run};

use super::ExplorerApp;
use super::export::{self, ExportKind};
use super::state::{
    ComparedRun, CorpusState, CorpusSummary, LangProgress, Level, ModelCheck, Outcome,
    PendingScreenshot, View,
};
use super::theme::{ColorMap, PaletteChoice};

/// What a file dialog is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogPurpose {
    ModelFolder,
    ModelFile,
    CorpusFile,
    CorpusFolder,
    Tasks,
    OpenRun,
    CompareRun,
    ExportFolder,
}

/// A model recognised: its description, what was recognised in words, and the device a run
/// would use (or why none).
pub type Recognition = (
    Box<ModelInfo>,
    Box<crate::engine::ModelConfig>,
    Result<String, String>,
);

pub enum Command {
    /// Start a job with the settings being edited.
    StartRun,
    /// Ask the running job to stop after its current batch (finished languages are kept).
    Cancel,
    /// An event of the running job (drained each frame).
    JobEvent(JobEvent),
    OpenDialog(DialogPurpose),
    /// A dialog closed; `None` when it was dismissed.
    /// `quick`: it closed at once, as when the desktop has no file-chooser portal.
    DialogClosed {
        purpose: DialogPurpose,
        path: Option<PathBuf>,
        quick: bool,
    },
    ModelChosen(ModelSource),
    /// Recognise the model being edited (on a helper thread).
    InspectModel,
    ModelInspected {
        source: ModelSource,
        result: Result<Recognition, String>,
    },
    CorpusChosen(CorpusChoice),
    CorpusLoaded {
        choice: CorpusChoice,
        result: Result<CorpusSummary, String>,
    },
    ImportTasks(PathBuf),
    TasksLoaded {
        path: PathBuf,
        result: Result<Vec<TaskSeries>, String>,
    },
    OpenRun(PathBuf),
    CompareRun(PathBuf),
    /// Put the current run into the compare list (e.g. before starting another).
    CompareCurrent,
    /// Run the current run's settings again with the bits-per-byte proxy on (its states come
    /// from the cache, so only the proxy is computed).
    ComputeProxy,
    RunLoaded {
        path: PathBuf,
        compare: bool,
        /// From the start-up reopen: failures go to the log only.
        quiet: bool,
        result: Result<Box<Run>, String>,
    },
    RemoveCompared(usize),
    HfModelsListed(Vec<hub::CachedModel>),
    CachedRunsListed(Vec<(PathBuf, String)>),
    Export(ExportKind),
    ScreenshotTaken {
        shot: PendingScreenshot,
        rect: Option<egui::Rect>,
        pixels_per_point: f32,
        image: Arc<egui::ColorImage>,
    },
    Exported(Result<Vec<PathBuf>, String>),
    SwitchView(View),
    ToggleExportWindow,
    ToggleLog,
    SetDark(bool),
    SetPresentation(bool),
    SetPalette(PaletteChoice),
    SetColorMap(ColorMap),
    FontsLoaded(Vec<FontInsert>),
    DismissToast(u64),
    ClearLog,
    /// A helper thread finished (keeps the count of pending work).
    Notify(Level, String),
}

impl std::fmt::Debug for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            Self::StartRun => "StartRun",
            Self::Cancel => "Cancel",
            Self::JobEvent(_) => "JobEvent",
            Self::OpenDialog(_) => "OpenDialog",
            Self::DialogClosed { .. } => "DialogClosed",
            Self::ModelChosen(_) => "ModelChosen",
            Self::InspectModel => "InspectModel",
            Self::ModelInspected { .. } => "ModelInspected",
            Self::CorpusChosen(_) => "CorpusChosen",
            Self::CorpusLoaded { .. } => "CorpusLoaded",
            Self::ImportTasks(_) => "ImportTasks",
            Self::TasksLoaded { .. } => "TasksLoaded",
            Self::OpenRun(_) => "OpenRun",
            Self::CompareRun(_) => "CompareRun",
            Self::CompareCurrent => "CompareCurrent",
            Self::ComputeProxy => "ComputeProxy",
            Self::RunLoaded { .. } => "RunLoaded",
            Self::RemoveCompared(_) => "RemoveCompared",
            Self::HfModelsListed(_) => "HfModelsListed",
            Self::CachedRunsListed(_) => "CachedRunsListed",
            Self::Export(_) => "Export",
            Self::ScreenshotTaken { .. } => "ScreenshotTaken",
            Self::Exported(_) => "Exported",
            Self::SwitchView(_) => "SwitchView",
            Self::ToggleExportWindow => "ToggleExportWindow",
            Self::ToggleLog => "ToggleLog",
            Self::SetDark(_) => "SetDark",
            Self::SetPresentation(_) => "SetPresentation",
            Self::SetPalette(_) => "SetPalette",
            Self::SetColorMap(_) => "SetColorMap",
            Self::FontsLoaded(_) => "FontsLoaded",
            Self::DismissToast(_) => "DismissToast",
            Self::ClearLog => "ClearLog",
            Self::Notify(..) => "Notify",
        };
        f.write_str(name)
    }
}

impl ExplorerApp {
    /// The one place where state changes in answer to something.
    pub fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::StartRun => self.start_run(),
            Command::ComputeProxy => {
                let Some(run) = &self.rt.run else {
                    return;
                };
                let mut settings = run.settings.clone();
                settings.proxy_sentences = PROXY_SENTENCES;
                if settings.model != self.state.settings.model {
                    self.handle(Command::ModelChosen(settings.model.clone()));
                }
                self.state.settings = settings;
                self.start_run();
            }
            Command::Cancel => {
                if let Some(job) = &self.rt.job {
                    job.cancel();
                    self.rt.cancelling = true;
                    self.rt.status = "cancelling after the current batch…".into();
                    self.rt.log(Level::Info, "cancel requested");
                }
            }
            Command::JobEvent(event) => self.on_job_event(event),
            Command::OpenDialog(purpose) => self.open_dialog(purpose),
            Command::DialogClosed {
                purpose,
                path,
                quick,
            } => {
                self.rt.background_tasks = self.rt.background_tasks.saturating_sub(1);
                match path {
                    Some(path) => self.on_dialog_path(purpose, path),
                    None if quick => self.handle(Command::Notify(
                        Level::Warning,
                        "the file dialog closed at once: this desktop may have no file-chooser \
                         portal (xdg-desktop-portal); type the path into the model or export \
                         folder field instead"
                            .into(),
                    )),
                    None => {}
                }
            }
            Command::ModelChosen(source) => {
                self.state.model_text = model_text(&source);
                self.state.settings.model = source;
                self.handle(Command::InspectModel);
            }
            Command::InspectModel => self.inspect_model(),
            Command::ModelInspected { source, result } => {
                self.rt.background_tasks = self.rt.background_tasks.saturating_sub(1);
                if source != self.state.settings.model {
                    return; // an older request; a newer one is on its way
                }
                self.rt.model_check = match result {
                    Ok((info, config, device)) => ModelCheck::Recognised {
                        source,
                        info,
                        config,
                        device,
                    },
                    Err(message) => ModelCheck::Problem { source, message },
                };
            }
            Command::CorpusChosen(choice) => self.load_corpus(choice),
            Command::CorpusLoaded { choice, result } => {
                self.rt.background_tasks = self.rt.background_tasks.saturating_sub(1);
                if choice != self.state.settings.corpus {
                    return;
                }
                match result {
                    Ok(summary) => {
                        self.fit_languages_to_corpus(&summary);
                        self.rt.corpus = CorpusState::Ready(choice, summary);
                    }
                    Err(message) => {
                        self.rt.log(Level::Error, format!("corpus: {message}"));
                        self.rt.corpus = CorpusState::Failed(choice, message);
                    }
                }
            }
            Command::ImportTasks(path) => {
                self.rt.background_tasks += 1;
                self.spawn_helper("tasks", move || Command::TasksLoaded {
                    result: export::load_tasks(&path),
                    path,
                });
            }
            Command::TasksLoaded { path, result } => {
                self.rt.background_tasks = self.rt.background_tasks.saturating_sub(1);
                match result {
                    Ok(series) => {
                        let names: Vec<&str> = series.iter().map(|s| s.name.as_str()).collect();
                        self.rt.log(
                            Level::Info,
                            format!(
                                "imported tasks from {}: {}",
                                path.display(),
                                names.join(", ")
                            ),
                        );
                        self.state.views.scatter_task = series.first().map(|s| s.name.clone());
                        self.rt.tasks = series;
                        self.state.tasks_csv = Some(path);
                    }
                    Err(message) => self.error(format!(
                        "cannot import tasks from {}: {message}",
                        path.display()
                    )),
                }
            }
            Command::OpenRun(path) => self.load_run(path, false, false),
            Command::CompareRun(path) => self.load_run(path, true, false),
            Command::CompareCurrent => {
                if let Some(run) = &self.rt.run {
                    let label = run_label(run, self.rt.compared.len() + 1);
                    self.rt.compared.push(ComparedRun {
                        label,
                        path: self.rt.run_path.clone(),
                        run: run.clone(),
                    });
                }
            }
            Command::RunLoaded {
                path,
                compare,
                quiet,
                result,
            } => {
                if !quiet {
                    // The start-up reopen is counted with the helper that lists cached runs.
                    self.rt.background_tasks = self.rt.background_tasks.saturating_sub(1);
                }
                match result {
                    Ok(run) if compare => {
                        let label = run_label(&run, self.rt.compared.len() + 1);
                        self.rt
                            .log(Level::Info, format!("comparing with {}", path.display()));
                        self.rt.compared.push(ComparedRun {
                            label,
                            path: Some(path.clone()),
                            run: *run,
                        });
                        self.state.remember_run(path);
                        self.state.view = View::Compare;
                    }
                    Ok(run) => {
                        if self.rt.is_running() {
                            // A job's results would overwrite it at once; keep it for comparison.
                            return self.handle(Command::RunLoaded {
                                path,
                                compare: true,
                                quiet: true, // already counted
                                result: Ok(run),
                            });
                        }
                        self.rt.log(
                            Level::Info,
                            format!("opened {} ({})", path.display(), run.model_name()),
                        );
                        self.set_run(*run, Some(path));
                    }
                    Err(message) if quiet => {
                        self.rt.log(
                            Level::Warning,
                            format!("could not reopen the last run: {message}"),
                        );
                    }
                    Err(message) => {
                        self.error(format!("cannot open {}: {message}", path.display()))
                    }
                }
            }
            Command::RemoveCompared(index) => {
                if index < self.rt.compared.len() {
                    self.rt.compared.remove(index);
                }
            }
            Command::HfModelsListed(models) => {
                self.rt.background_tasks = self.rt.background_tasks.saturating_sub(1);
                self.rt.hf_models = models;
            }
            Command::CachedRunsListed(runs) => {
                self.rt.background_tasks = self.rt.background_tasks.saturating_sub(1);
                self.rt.cached_runs = runs;
            }
            Command::Export(kind) => self.export(kind),
            Command::ScreenshotTaken {
                shot,
                rect,
                pixels_per_point,
                image,
            } => {
                self.rt.exporting += 1;
                let then_close = shot.then_close;
                let ctx = self.ctx.clone();
                self.spawn_helper("screenshot", move || {
                    let result =
                        export::save_screenshot(&image, rect, pixels_per_point, &shot.path)
                            .map(|p| vec![p]);
                    if then_close {
                        ctx.send_viewport_cmd(egui::ViewportCommand::Close);
                    }
                    Command::Exported(result)
                });
            }
            Command::Exported(result) => {
                self.rt.exporting = self.rt.exporting.saturating_sub(1);
                match result {
                    Ok(paths) => {
                        let text = match paths.as_slice() {
                            [one] => format!("saved {}", one.display()),
                            many => format!(
                                "saved {} files in {}",
                                many.len(),
                                many.first()
                                    .and_then(|p| p.parent())
                                    .map(|p| p.display().to_string())
                                    .unwrap_or_default()
                            ),
                        };
                        self.rt.log(Level::Info, text.clone());
                        self.rt.toast(Level::Info, text);
                        self.rt.last_exported = paths;
                    }
                    Err(message) => self.error(format!("export failed: {message}")),
                }
            }
            Command::SwitchView(view) => self.state.view = view,
            Command::ToggleExportWindow => self.rt.export_open = !self.rt.export_open,
            Command::ToggleLog => self.state.show_log = !self.state.show_log,
            Command::SetDark(dark) => {
                self.state.dark = dark;
                self.apply_look();
            }
            Command::SetPresentation(on) => {
                self.state.presentation = on;
                self.apply_look();
            }
            Command::SetPalette(palette) => self.state.palette = palette,
            Command::SetColorMap(map) => self.state.color_map = map,
            Command::FontsLoaded(fonts) => {
                self.rt.background_tasks = self.rt.background_tasks.saturating_sub(1);
                for font in fonts {
                    self.rt.fonts_loaded.push(font.name.clone());
                    self.ctx.add_font(font);
                }
                if !self.rt.fonts_loaded.is_empty() {
                    let names = self.rt.fonts_loaded.join(", ");
                    self.rt.log(Level::Info, format!("fallback fonts: {names}"));
                }
            }
            Command::DismissToast(id) => self.rt.toasts.retain(|t| t.id != id),
            Command::ClearLog => self.rt.log.clear(),
            Command::Notify(level, text) => {
                self.rt.log(level, text.clone());
                if level != Level::Info {
                    self.rt.toast(level, text);
                }
            }
        }
    }

    /// An error: in the log and as a notification, in words.
    pub(crate) fn error(&mut self, text: String) {
        self.rt.log(Level::Error, text.clone());
        self.rt.toast(Level::Error, text);
    }

    /// Runs `work` on a helper thread and feeds its command back into `handle`.
    pub(crate) fn spawn_helper(&self, name: &str, work: impl FnOnce() -> Command + Send + 'static) {
        let tx = self.tx.clone();
        let ctx = self.ctx.clone();
        let spawned = std::thread::Builder::new()
            .name(format!("neuronxa-gui-{name}"))
            .spawn(move || {
                let _ = tx.send(work());
                ctx.request_repaint();
            });
        if let Err(e) = spawned {
            let _ = self.tx.send(Command::Notify(
                Level::Error,
                format!("cannot start a helper thread: {e}"),
            ));
        }
    }

    fn start_run(&mut self) {
        if self.rt.is_running() {
            return;
        }
        let settings = self.state.settings.clone();
        if settings.methods.is_empty() {
            self.error("choose at least one method before running".into());
            return;
        }
        if !settings.languages.iter().any(|l| *l != settings.pivot) {
            self.error(format!(
                "choose at least one language besides the pivot ({})",
                settings.pivot.name()
            ));
            return;
        }
        let mut options = JobOptions::new(self.cache.clone());
        options.use_cache = self.config.use_cache;
        options.fetch_demo_model = self.config.fetch_demo_model;
        let ctx = self.ctx.clone();
        options.notify = Some(Arc::new(move || ctx.request_repaint()));

        let mut order = vec![settings.pivot.clone()];
        for lang in &settings.languages {
            if !order.contains(lang) {
                order.push(lang.clone());
            }
        }
        self.rt.lang_progress = order
            .into_iter()
            .map(|l| (l, LangProgress::Waiting))
            .collect();
        self.rt.progress = None;
        self.rt.outcome = None;
        self.rt.cancelling = false;
        self.rt.status = "starting".into();
        self.rt.log(
            Level::Info,
            format!(
                "run: {} · {} languages · pivot {} · {} sentences · {}",
                settings.model.display_name(),
                self.rt.lang_progress.len(),
                settings.pivot.name(),
                settings.sentences,
                settings
                    .methods
                    .iter()
                    .map(|m| m.key())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        );
        self.state.remember_model(settings.model.spec());
        self.rt.job_settings = Some(settings.clone());
        self.rt.job_started = Some(Instant::now());
        self.rt.job_reopened = false;
        self.rt.job = Some(job::spawn(settings, options));
    }

    fn on_job_event(&mut self, event: JobEvent) {
        self.rt.job_events += 1;
        match event {
            JobEvent::Status(text) => {
                self.rt.log(Level::Info, text.clone());
                self.rt.status = text;
            }
            JobEvent::ReopenedFromCache => {
                self.rt.job_reopened = true;
                let text = job::REOPENED_FROM_CACHE.to_string();
                self.rt.log(Level::Info, text.clone());
                self.rt.status = text;
            }
            JobEvent::ModelRecognised(info) => {
                self.rt.log(
                    Level::Info,
                    format!("model: {} — {}", info.name, info.summary()),
                );
            }
            JobEvent::ModelLoaded { device, seconds } => {
                let text = format!("model loaded on {device} in {seconds:.1} s");
                self.rt.log(Level::Info, text.clone());
                self.rt.status = text;
            }
            JobEvent::Progress(progress) => {
                for (i, (_, state)) in self.rt.lang_progress.iter_mut().enumerate() {
                    // A language's scores come while the next one is extracted.
                    if i == progress.language_index {
                        *state = if progress.sentences_done >= progress.sentences_total {
                            LangProgress::Scoring
                        } else {
                            LangProgress::Running {
                                done: progress.sentences_done,
                                total: progress.sentences_total,
                            }
                        };
                    } else if i < progress.language_index
                        && !matches!(state, LangProgress::Done { .. })
                    {
                        *state = LangProgress::Scoring;
                    }
                }
                self.rt.status = format!("computing {}", progress.language.name());
                self.rt.progress = Some(progress);
            }
            JobEvent::LanguageDone {
                lang,
                from_cache,
                run,
            } => {
                for (l, state) in &mut self.rt.lang_progress {
                    if *l == lang {
                        *state = LangProgress::Done { from_cache };
                    }
                }
                self.rt.log(
                    Level::Info,
                    format!(
                        "{} done{}",
                        lang.name(),
                        if from_cache { " (from the cache)" } else { "" }
                    ),
                );
                // The partial run replaces the one on screen: views fill in language by language.
                self.rt.run = Some(*run);
                self.rt.run_path = None;
                self.fit_view_options();
            }
            JobEvent::Warning(text) => {
                self.rt.log(Level::Warning, text);
            }
            JobEvent::Finished(run) => {
                let seconds = run.provenance.seconds;
                for (_, state) in &mut self.rt.lang_progress {
                    if !matches!(state, LangProgress::Done { .. }) {
                        *state = LangProgress::Done { from_cache: true };
                    }
                }
                for warning in &run.warnings {
                    self.rt.log(Level::Warning, warning.clone());
                }
                let path = Some(self.cache.run_path_of(&run)).filter(|p| p.is_file());
                let text = if self.rt.job_reopened {
                    format!(
                        "reopened: {} · {} languages (first computed in {seconds:.1} s)",
                        run.model_name(),
                        run.languages.len()
                    )
                } else {
                    format!(
                        "finished: {} · {} languages in {seconds:.1} s",
                        run.model_name(),
                        run.languages.len()
                    )
                };
                self.rt.log(Level::Info, text.clone());
                self.rt.toast(Level::Info, text.clone());
                self.rt.status = text;
                self.set_run(*run, path);
                self.end_job(Outcome::Finished);
            }
            JobEvent::Failed { message, partial } => {
                self.error(format!("the run failed: {message}"));
                self.rt.status = format!("failed: {message}");
                if let Some(partial) = partial {
                    self.set_run(*partial, None);
                }
                self.end_job(Outcome::Failed(message));
            }
            JobEvent::Cancelled { partial } => {
                let kept = partial.as_ref().map_or(0, |r| r.languages.len());
                let text = format!("cancelled; kept {kept} finished languages");
                self.rt.log(Level::Info, text.clone());
                self.rt.toast(Level::Info, text.clone());
                self.rt.status = text;
                if let Some(partial) = partial {
                    self.set_run(*partial, None);
                }
                self.end_job(Outcome::Cancelled);
            }
        }
    }

    fn end_job(&mut self, outcome: Outcome) {
        self.rt.job = None;
        self.rt.job_settings = None;
        self.rt.cancelling = false;
        self.rt.progress = None;
        self.rt.outcome = Some(outcome);
    }

    pub(crate) fn set_run(&mut self, run: Run, path: Option<PathBuf>) {
        if let Some(path) = &path {
            self.state.remember_run(path.clone());
            self.state.last_run = Some(path.clone());
            self.rt.save_now = true;
        }
        self.rt.run = Some(run);
        self.rt.run_path = path;
        self.fit_view_options();
    }

    /// Keeps the view options valid for the run on screen.
    pub(crate) fn fit_view_options(&mut self) {
        let Some(run) = &self.rt.run else {
            return;
        };
        let methods = run.methods();
        let views = &mut self.state.views;
        if !methods.contains(&views.method)
            && let Some(first) = methods.first()
        {
            views.method = *first;
        }
        let layers = run.layer_count(views.method);
        if layers > 0 {
            views.matrix_layer = views.matrix_layer.min(layers - 1);
            views.scatter_layer = views.scatter_layer.min(layers - 1);
            views.sentences_layer = views.sentences_layer.min(layers - 1);
        }
        let others: Vec<_> = run
            .languages
            .iter()
            .filter(|l| **l != run.settings.pivot)
            .cloned()
            .collect();
        if views
            .sentences_lang
            .as_ref()
            .is_none_or(|l| !others.contains(l))
        {
            views.sentences_lang = others.first().cloned();
            // Start where the language aligns best: layer 0 is rarely interesting.
            if let Some(best) = views
                .sentences_lang
                .as_ref()
                .and_then(|l| run.scores(l, views.method))
                .map(|s| s.best_layer())
            {
                views.sentences_layer = best;
            }
        }
    }

    fn inspect_model(&mut self) {
        let source = self.state.settings.model.clone();
        let device = self.state.settings.device;
        self.rt.model_check = ModelCheck::Checking(source.clone());
        self.rt.background_tasks += 1;
        self.spawn_helper("inspect", move || {
            let result = crate::engine::model::inspect_with_config(&source)
                .map(|(info, config)| (Box::new(info), Box::new(config), device_label(device)))
                .map_err(|e| e.to_string());
            Command::ModelInspected { source, result }
        });
    }

    pub(crate) fn load_corpus(&mut self, choice: CorpusChoice) {
        self.state.settings.corpus = choice.clone();
        self.rt.corpus = CorpusState::Loading(choice.clone());
        self.rt.background_tasks += 1;
        self.spawn_helper("corpus", move || Command::CorpusLoaded {
            result: export::corpus_summary(&choice),
            choice,
        });
    }

    /// Drops chosen languages the corpus lacks and keeps the pivot valid.
    fn fit_languages_to_corpus(&mut self, summary: &CorpusSummary) {
        let available: Vec<_> = summary.languages.iter().map(|(l, _)| l.clone()).collect();
        let settings = &mut self.state.settings;
        settings.languages.retain(|l| available.contains(l));
        if settings.languages.is_empty() {
            settings.languages = available.clone();
        }
        if !available.contains(&settings.pivot)
            && let Some(first) = available.first()
        {
            settings.pivot = first.clone();
        }
        let max = summary
            .languages
            .iter()
            .filter(|(l, _)| settings.languages.contains(l) || *l == settings.pivot)
            .map(|(_, n)| *n)
            .min()
            .unwrap_or(0);
        if max > 0 && settings.sentences > max {
            settings.sentences = max;
        }
    }

    pub(crate) fn load_run(&mut self, path: PathBuf, compare: bool, quiet: bool) {
        self.rt.background_tasks += 1;
        self.spawn_helper("open-run", move || {
            let file = if path.is_dir() {
                path.join("run.json")
            } else {
                path.clone()
            };
            let result = Run::load_json(&file)
                .map(Box::new)
                .map_err(|e| e.to_string());
            Command::RunLoaded {
                path: file,
                compare,
                quiet,
                result,
            }
        });
    }

    fn open_dialog(&mut self, purpose: DialogPurpose) {
        if !self.config.dialogs {
            self.rt.log(
                Level::Warning,
                "file dialogs are off in this session".to_string(),
            );
            return;
        }
        let start = match purpose {
            DialogPurpose::ExportFolder => Some(PathBuf::from(&self.state.export.folder)),
            DialogPurpose::OpenRun | DialogPurpose::CompareRun => {
                Some(self.cache.root().join("runs"))
            }
            _ => dirs::home_dir(),
        };
        self.rt.background_tasks += 1;
        self.spawn_helper("dialog", move || {
            let mut dialog = rfd::FileDialog::new();
            if let Some(start) = start.filter(|p| p.is_dir()) {
                dialog = dialog.set_directory(start);
            }
            let opened = Instant::now();
            let path = match purpose {
                DialogPurpose::ModelFolder => dialog
                    .set_title("Choose a model folder (config.json, tokenizer.json, *.safetensors or pytorch_model.bin)")
                    .pick_folder(),
                DialogPurpose::ModelFile => dialog
                    .set_title("Choose a GGUF model")
                    .add_filter("GGUF model", &["gguf"])
                    .pick_file(),
                DialogPurpose::CorpusFile => dialog
                    .set_title("Choose a parallel corpus file")
                    .add_filter("Corpus", &["tsv", "csv", "json", "jsonl", "txt"])
                    .add_filter("All files", &["*"])
                    .pick_file(),
                DialogPurpose::CorpusFolder => dialog
                    .set_title("Choose a FLORES folder (one file per language)")
                    .pick_folder(),
                DialogPurpose::Tasks => dialog
                    .set_title("Import task accuracies (CSV: language, task columns)")
                    .add_filter("CSV", &["csv", "tsv"])
                    .pick_file(),
                DialogPurpose::OpenRun | DialogPurpose::CompareRun => dialog
                    .set_title("Open a run (run.json)")
                    .add_filter("Run", &["json"])
                    .pick_file(),
                DialogPurpose::ExportFolder => dialog.set_title("Export into…").pick_folder(),
            };
            Command::DialogClosed {
                purpose,
                path,
                quick: opened.elapsed() < std::time::Duration::from_millis(300),
            }
        });
    }

    fn on_dialog_path(&mut self, purpose: DialogPurpose, path: PathBuf) {
        match purpose {
            DialogPurpose::ModelFolder => {
                self.handle(Command::ModelChosen(ModelSource::Folder(path)))
            }
            DialogPurpose::ModelFile => self.handle(Command::ModelChosen(ModelSource::Gguf(path))),
            DialogPurpose::CorpusFile | DialogPurpose::CorpusFolder => {
                self.handle(Command::CorpusChosen(CorpusChoice::Path(path)))
            }
            DialogPurpose::Tasks => self.handle(Command::ImportTasks(path)),
            DialogPurpose::OpenRun => self.handle(Command::OpenRun(path)),
            DialogPurpose::CompareRun => self.handle(Command::CompareRun(path)),
            DialogPurpose::ExportFolder => self.state.export.folder = path.display().to_string(),
        }
    }

    fn export(&mut self, kind: ExportKind) {
        let folder = PathBuf::from(self.state.export.folder.trim());
        if self.state.export.folder.trim().is_empty() {
            self.error("choose a folder to export into".into());
            return;
        }
        if kind == ExportKind::ScreenPng {
            let path = export::export_path(
                &folder,
                &self.export_stem(true),
                "png",
                self.state.export.replace_existing,
            );
            self.rt.export_open = false;
            self.rt.screenshot = Some(PendingScreenshot {
                path,
                frames_left: 3,
                crop_to_view: true,
                then_close: false,
            });
            self.ctx.request_repaint();
            return;
        }
        let Some(run) = self.rt.run.clone() else {
            self.error("nothing to export yet: run or open a run first".into());
            return;
        };
        let request = export::ExportRequest {
            run,
            compared: self.rt.compared.clone(),
            view: self.state.view,
            options: self.state.views.clone(),
            look: self.state.look(),
            tasks: self.rt.tasks.clone(),
            folder,
            stem: self.export_stem(false),
            width: self.state.export.width,
            height: self.state.export.height,
            scale: self.state.export.scale,
            replace_existing: self.state.export.replace_existing,
        };
        self.rt.exporting += 1;
        self.spawn_helper("export", move || Command::Exported(request.write(kind)));
    }

    /// "smollm2-135m-heatmap-nas": model, view and method, safe for file names.
    pub(crate) fn export_stem(&self, screen: bool) -> String {
        let model = self
            .rt
            .run
            .as_ref()
            .map(|r| r.model_name().to_string())
            .unwrap_or_else(|| "neuronxa".into());
        let view = self.state.view;
        let mut stem = format!("{model}-{}", view.file_key());
        if !matches!(view, View::Compare) {
            stem.push('-');
            stem.push_str(self.state.views.method.key());
        }
        if screen {
            stem.push_str("-screen");
        }
        export::safe_file_name(&stem)
    }

    pub(crate) fn apply_look(&self) {
        super::theme::apply(&self.ctx, self.state.dark, self.state.presentation);
    }
}

/// What the model field shows for a source.
/// Held-out sentences per language for the proxy when the scatter asks for it.
pub const PROXY_SENTENCES: usize = 50;

pub fn model_text(source: &ModelSource) -> String {
    match source {
        ModelSource::Gguf(p) if *p == hub::demo_model_path() => "demo".into(),
        other => other.spec(),
    }
}

/// Which device a run would use, in words (resolving a GPU opens it: helper threads only).
fn device_label(device: DeviceChoice) -> Result<String, String> {
    device
        .resolve()
        .map(|(_, label)| label)
        .map_err(|e| e.to_string())
}

fn run_label(run: &Run, n: usize) -> String {
    format!("{n}. {}", super::run_summary(run))
}
