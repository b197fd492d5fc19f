//! NeuronXA Explorer, the desktop window: a thin shell over the library.
//!
//! - [`state`]: what is persisted between starts, apart from what lives only while the window is
//!   open (the job handle, the runs on screen, the log).
//! - [`command`]: typed commands, all handled by one function; the UI only pushes them.
//! - [`views`]: the six views of a run; [`export`]: PNG/SVG/CSV/bundles; [`theme`]: looks.
//!
//! Model work never runs on the UI thread: the job runs on its worker, and recognising a model,
//! reading a corpus, opening runs, dialogs and exports run on short-lived helper threads whose
//! results come back as commands.

pub mod command;
pub mod export;
pub mod setup;
pub mod spinner;
pub mod state;
pub mod status;
pub mod theme;
pub mod views;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender};

use crate::engine::{ModelSource, hub};
use crate::run::cache::Cache;

pub use command::Command;
use state::{Level, PendingScreenshot, Persisted, Runtime, View};

/// How the window is opened (from the command line).
#[derive(Debug, Clone, Default)]
pub struct StartOptions {
    /// A model to preselect ("demo", a folder, a .gguf or a Hub id).
    pub model: Option<String>,
    /// Save a screenshot of the whole window here once it has settled, then close.
    pub screenshot: Option<PathBuf>,
}

/// Switches for tests and special starts.
#[derive(Debug, Clone)]
pub struct AppConfig {
    pub cache: Cache,
    /// Read the persisted state at start and write it at exit.
    pub persist: bool,
    /// Look for CJK/Arabic/Devanagari system fonts.
    pub system_fonts: bool,
    /// Reopen the last run (or the newest cached one) at start.
    pub reopen_last_run: bool,
    /// Let the job read and write the cache.
    pub use_cache: bool,
    pub fetch_demo_model: bool,
    /// Native file dialogs (off in tests).
    pub dialogs: bool,
}

impl Default for AppConfig {
    fn default() -> Self {
        Self {
            cache: Cache::default_location(),
            persist: true,
            system_fonts: true,
            reopen_last_run: true,
            use_cache: true,
            fetch_demo_model: true,
            dialogs: true,
        }
    }
}

impl AppConfig {
    /// A sealed configuration for tests: its own cache folder, nothing persisted or reopened,
    /// no dialogs and no downloads.
    pub fn for_test(cache_dir: PathBuf) -> Self {
        Self {
            cache: Cache::new(cache_dir),
            persist: false,
            system_fonts: false,
            reopen_last_run: false,
            use_cache: true,
            fetch_demo_model: false,
            dialogs: false,
        }
    }
}

pub struct ExplorerApp {
    pub(crate) state: Persisted,
    pub(crate) rt: Runtime,
    pub(crate) ctx: egui::Context,
    pub(crate) tx: Sender<Command>,
    rx: Receiver<Command>,
    pub(crate) cache: Cache,
    pub(crate) config: AppConfig,
    /// Commands pushed by the UI during this frame.
    queue: Vec<Command>,
    start: StartOptions,
}

/// Opens the explorer window and runs it until it is closed.
pub fn run_native(start: StartOptions) -> eframe::Result<()> {
    let options = eframe::NativeOptions {
        viewport: egui::ViewportBuilder::default()
            .with_title("NeuronXA Explorer")
            .with_app_id("neuronxa-explorer")
            .with_inner_size([1280.0, 800.0])
            .with_min_inner_size([900.0, 560.0]),
        persist_window: true,
        ..Default::default()
    };
    eframe::run_native(
        "NeuronXA Explorer",
        options,
        Box::new(move |cc| Ok(Box::new(ExplorerApp::new(cc, start, AppConfig::default())))),
    )
}

impl ExplorerApp {
    pub fn new(cc: &eframe::CreationContext<'_>, start: StartOptions, config: AppConfig) -> Self {
        let mut state: Persisted = if config.persist {
            cc.storage
                .and_then(|s| eframe::get_value(s, eframe::APP_KEY))
                .unwrap_or_default()
        } else {
            Persisted::default()
        };
        state.upgrade();
        // "demo" is a name, not a path: resolve it anew, since the cache folder may have moved
        // since the settings were saved ($NEURONXA_CACHE, another user).
        if state.model_text.trim() == "demo" {
            state.settings.model = ModelSource::parse("demo");
        }
        if let Some(text) = &start.model {
            let source = ModelSource::parse(text);
            state.model_text = command::model_text(&source);
            state.settings.model = source;
        }
        let (tx, rx) = crossbeam_channel::unbounded();
        let mut app = Self {
            state,
            rt: Runtime::default(),
            ctx: cc.egui_ctx.clone(),
            tx,
            rx,
            cache: config.cache.clone(),
            config,
            queue: Vec::new(),
            start,
        };
        app.rt.started = Some(Instant::now());
        app.ctx.add_font(theme::bundled_fallback());
        app.apply_look();
        app.startup();
        app
    }

    /// The app for kittest: a sealed configuration, `model` preselected.
    pub fn new_for_test(
        cc: &eframe::CreationContext<'_>,
        cache_dir: PathBuf,
        model: Option<ModelSource>,
    ) -> Self {
        let start = StartOptions {
            model: model.map(|m| m.spec()),
            screenshot: None,
        };
        Self::new(cc, start, AppConfig::for_test(cache_dir))
    }

    /// Work started with the window, all of it on helper threads.
    fn startup(&mut self) {
        let corpus = self.state.settings.corpus.clone();
        self.load_corpus(corpus);
        self.handle(Command::InspectModel);
        if self.config.system_fonts {
            self.rt.background_tasks += 1;
            self.spawn_helper("fonts", || {
                Command::FontsLoaded(theme::load_fonts(&theme::find_system_fonts()))
            });
        }
        self.rt.background_tasks += 1;
        self.spawn_helper("hf-cache", || Command::HfModelsListed(hub::cached_models()));
        if let Some(path) = self.state.tasks_csv.clone() {
            self.handle(Command::ImportTasks(path));
        }
        let cache = self.cache.clone();
        let reopen = self.config.reopen_last_run;
        let last = self.state.last_run.clone().filter(|p| p.is_file());
        self.rt.background_tasks += 1;
        let tx = self.tx.clone();
        let ctx = self.ctx.clone();
        self.spawn_helper("recent-runs", move || {
            let runs = cache.recent_runs();
            if reopen {
                // The stored path first; else the newest finished run in the cache.
                let reopen_path = last.or_else(|| runs.first().map(|(p, _)| p.clone()));
                if let Some(path) = reopen_path {
                    let result = crate::run::Run::load_json(&path)
                        .map(Box::new)
                        .map_err(|e| e.to_string());
                    let _ = tx.send(Command::RunLoaded {
                        path,
                        compare: false,
                        quiet: true,
                        result,
                    });
                    ctx.request_repaint();
                }
            }
            Command::CachedRunsListed(
                runs.into_iter()
                    .map(|(p, r)| {
                        let label = run_summary(&r);
                        (p, label)
                    })
                    .collect(),
            )
        });
        if let Some(path) = self.start.screenshot.clone() {
            self.rt.screenshot = Some(PendingScreenshot {
                path,
                frames_left: 0,
                crop_to_view: false,
                then_close: true,
            });
        }
    }

    // ---- read access for tests and the binary ----

    pub fn current_run(&self) -> Option<&crate::run::Run> {
        self.rt.run.as_ref()
    }

    pub fn is_running(&self) -> bool {
        self.rt.is_running()
    }

    pub fn outcome(&self) -> Option<&state::Outcome> {
        self.rt.outcome.as_ref()
    }

    pub fn view(&self) -> View {
        self.state.view
    }

    pub fn settings(&self) -> &crate::run::RunSettings {
        &self.state.settings
    }

    pub fn persisted(&self) -> &Persisted {
        &self.state
    }

    pub fn persisted_mut(&mut self) -> &mut Persisted {
        &mut self.state
    }

    pub fn log_lines(&self) -> impl Iterator<Item = &state::LogLine> {
        self.rt.log.iter()
    }

    pub fn job_events_received(&self) -> u64 {
        self.rt.job_events
    }

    pub fn frame_stats(&self) -> &state::FrameStats {
        &self.rt.frame_stats
    }

    pub fn last_exported(&self) -> &[PathBuf] {
        &self.rt.last_exported
    }

    pub fn exports_pending(&self) -> usize {
        self.rt.exporting
    }

    pub fn model_check(&self) -> &state::ModelCheck {
        &self.rt.model_check
    }

    pub fn corpus_state(&self) -> &state::CorpusState {
        &self.rt.corpus
    }

    pub fn tasks(&self) -> &[crate::run::correlate::TaskSeries] {
        &self.rt.tasks
    }

    pub fn compared_runs(&self) -> usize {
        self.rt.compared.len()
    }

    /// Queues a command as the UI would.
    pub fn push(&mut self, cmd: Command) {
        self.queue.push(cmd);
    }

    // ---- the frame ----

    /// Drains what the job and the helpers sent since the last frame into `handle`.
    fn drain(&mut self) {
        let events: Vec<_> = self
            .rt
            .job
            .as_ref()
            .map(|job| job.events().try_iter().collect())
            .unwrap_or_default();
        for event in events {
            self.handle(Command::JobEvent(event));
        }
        while let Ok(cmd) = self.rx.try_recv() {
            self.handle(cmd);
        }
        let queued = std::mem::take(&mut self.queue);
        for cmd in queued {
            self.handle(cmd);
        }
    }

    fn shortcuts(&mut self, ctx: &egui::Context) {
        use egui::{Key, KeyboardShortcut, Modifiers};
        let run = KeyboardShortcut::new(Modifiers::COMMAND, Key::R);
        let export = KeyboardShortcut::new(Modifiers::COMMAND, Key::E);
        let typing = ctx.egui_wants_keyboard_input();
        ctx.input_mut(|input| {
            if input.consume_shortcut(&run) {
                self.queue.push(Command::StartRun);
            }
            if input.consume_shortcut(&export) {
                self.queue.push(Command::ToggleExportWindow);
            }
            if input.key_pressed(Key::Escape) {
                if self.rt.job.is_some() {
                    self.queue.push(Command::Cancel);
                } else if self.rt.export_open {
                    self.rt.export_open = false;
                }
            }
            if !typing && input.modifiers.is_none() {
                for view in View::ALL {
                    if input.key_pressed(view.key()) {
                        self.queue.push(Command::SwitchView(view));
                    }
                }
            }
        });
    }

    fn take_pending_screenshot(&mut self, ctx: &egui::Context) {
        let settled =
            self.rt.background_tasks == 0 && !self.rt.is_running() && self.rt.seconds() > 1.5;
        let waited_too_long = self.rt.seconds() > 30.0;
        let Some(shot) = &mut self.rt.screenshot else {
            return;
        };
        // `--screenshot`: wait until start-up work is done and the run (if any) is shown.
        if shot.then_close && !settled && !waited_too_long {
            ctx.request_repaint_after(Duration::from_millis(100));
            return;
        }
        if shot.frames_left > 0 {
            shot.frames_left -= 1;
            ctx.request_repaint();
            return;
        }
        let Some(shot) = self.rt.screenshot.take() else {
            return;
        };
        let rect = if shot.crop_to_view {
            self.rt.view_rect
        } else {
            None
        };
        let pixels_per_point = ctx.pixels_per_point();
        let tx = self.tx.clone();
        let repaint = ctx.clone();
        self.rt.log(
            Level::Info,
            format!("taking a screenshot for {}", shot.path.display()),
        );
        ctx.request_screenshot(move |image| {
            let _ = tx.send(Command::ScreenshotTaken {
                shot,
                rect,
                pixels_per_point,
                image,
            });
            repaint.request_repaint();
        });
    }

    fn top_bar(&mut self, ui: &mut egui::Ui) {
        egui::Panel::top("top").show(ui, |ui| {
            ui.add_space(2.0);
            ui.horizontal(|ui| {
                // In a narrow window the title gives way, or the view tabs would run under the
                // buttons on the right.
                if ui.available_width() >= 900.0 {
                    ui.heading("NeuronXA Explorer");
                    ui.separator();
                }
                for view in View::ALL {
                    let selected = self.state.view == view;
                    let response = ui
                        .selectable_label(selected, view.label())
                        .on_hover_text(format!("{} (key {})", view.description(), view.number()));
                    if response.clicked() {
                        self.queue.push(Command::SwitchView(view));
                    }
                }
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    self.top_bar_right(ui);
                });
            });
            ui.add_space(2.0);
        });
    }

    fn top_bar_right(&mut self, ui: &mut egui::Ui) {
        if ui
            .button("Export…")
            .on_hover_text("PNG, SVG, CSV or a whole bundle (Ctrl+E)")
            .clicked()
        {
            self.queue.push(Command::ToggleExportWindow);
        }
        ui.menu_button("Open", |ui| {
            if ui.button("Open run.json…").clicked() {
                self.queue
                    .push(Command::OpenDialog(command::DialogPurpose::OpenRun));
                ui.close();
            }
            if ui.button("Compare with run.json…").clicked() {
                self.queue
                    .push(Command::OpenDialog(command::DialogPurpose::CompareRun));
                ui.close();
            }
            ui.separator();
            ui.label(egui::RichText::new("Recent runs").strong());
            let mut recent: Vec<(PathBuf, String)> = self
                .state
                .recent_runs
                .iter()
                .filter(|p| !self.rt.cached_runs.iter().any(|(c, _)| c == *p))
                .map(|p| (p.clone(), p.display().to_string()))
                .collect();
            recent.extend(self.rt.cached_runs.iter().cloned());
            if recent.is_empty() {
                ui.weak("none yet");
            }
            for (path, label) in recent.into_iter().take(15) {
                ui.horizontal(|ui| {
                    if ui
                        .button(&label)
                        .on_hover_text(path.display().to_string())
                        .clicked()
                    {
                        self.queue.push(Command::OpenRun(path.clone()));
                        ui.close();
                    }
                    if ui.small_button("compare").clicked() {
                        self.queue.push(Command::CompareRun(path.clone()));
                        ui.close();
                    }
                });
            }
        });
        ui.menu_button("Look", |ui| {
            let mut dark = self.state.dark;
            if ui.checkbox(&mut dark, "Dark theme").changed() {
                self.queue.push(Command::SetDark(dark));
            }
            let mut presentation = self.state.presentation;
            if ui
                .checkbox(&mut presentation, "Presentation mode")
                .on_hover_text("Bigger text and lines, high-contrast colours")
                .changed()
            {
                self.queue.push(Command::SetPresentation(presentation));
            }
            ui.separator();
            ui.label("Colours");
            for palette in theme::PaletteChoice::ALL {
                if ui
                    .radio(self.state.palette == palette, palette.label())
                    .clicked()
                {
                    self.queue.push(Command::SetPalette(palette));
                }
            }
            ui.separator();
            ui.label("Heatmap colour map");
            for map in theme::ColorMap::ALL {
                if ui.radio(self.state.color_map == map, map.label()).clicked() {
                    self.queue.push(Command::SetColorMap(map));
                }
            }
            ui.separator();
            ui.checkbox(&mut self.state.show_setup, "Setup panel");
            ui.checkbox(&mut self.state.show_log, "Log panel");
        });
        let theme_label = if self.state.dark { "Light" } else { "Dark" };
        if ui
            .button(theme_label)
            .on_hover_text("Switch light / dark")
            .clicked()
        {
            self.queue.push(Command::SetDark(!self.state.dark));
        }
        if ui
            .selectable_label(self.state.presentation, "Present")
            .on_hover_text("Presentation mode: bigger text and lines, high contrast")
            .clicked()
        {
            self.queue
                .push(Command::SetPresentation(!self.state.presentation));
        }
    }

    fn central(&mut self, ui: &mut egui::Ui) {
        egui::CentralPanel::default().show(ui, |ui| {
            let look = self.state.look();
            let Some(run) = self.rt.run.as_ref() else {
                views::welcome(ui, &self.state, &self.rt);
                return;
            };
            views::run_header(ui, run, self.rt.run_path.as_deref(), &look);
            ui.separator();
            let rect = ui.available_rect_before_wrap();
            self.rt.view_rect = Some(rect);
            let mut ctx = views::ViewCtx {
                run,
                pending: self.rt.job_settings.as_ref(),
                progress: &self.rt.lang_progress,
                opts: &mut self.state.views,
                look,
                tasks: &self.rt.tasks,
                compared: &self.rt.compared,
                queue: &mut self.queue,
            };
            match self.state.view {
                View::Heatmap => views::heatmap::show(ui, &mut ctx),
                View::Curves => views::curves::show(ui, &mut ctx),
                View::Matrix => views::matrix::show(ui, &mut ctx),
                View::Scatter => views::scatter::show(ui, &mut ctx),
                View::Compare => views::compare::show(ui, &mut ctx),
                View::Sentences => views::sentences::show(ui, &mut ctx),
            }
        });
    }

    fn toasts(&mut self, ctx: &egui::Context) {
        let now = Instant::now();
        self.rt.toasts.retain(|t| t.until > now);
        if self.rt.toasts.is_empty() || self.rt.screenshot.is_some() {
            return;
        }
        let look = self.state.look();
        egui::Area::new(egui::Id::unique("toasts"))
            .anchor(egui::Align2::RIGHT_BOTTOM, egui::vec2(-12.0, -56.0))
            .order(egui::Order::Foreground)
            .interactable(true)
            .show(ctx, |ui| {
                ui.set_max_width(420.0);
                for toast in &self.rt.toasts {
                    let color = match toast.level {
                        Level::Error => look.error_color(),
                        Level::Warning => look.warning_color(),
                        Level::Info => ui.visuals().text_color(),
                    };
                    egui::Frame::popup(ui.style())
                        .stroke(egui::Stroke::new(1.5, color))
                        .show(ui, |ui| {
                            ui.horizontal(|ui| {
                                let title = match toast.level {
                                    Level::Error => "⚠ Error:",
                                    Level::Warning => "⚠",
                                    Level::Info => "",
                                };
                                if !title.is_empty() {
                                    ui.label(egui::RichText::new(title).color(color).strong());
                                }
                                ui.add(egui::Label::new(&toast.text).wrap());
                                if ui.small_button("×").on_hover_text("Dismiss").clicked() {
                                    self.queue.push(Command::DismissToast(toast.id));
                                }
                            });
                        });
                    ui.add_space(4.0);
                }
            });
        if let Some(next) = self.rt.toasts.iter().map(|t| t.until).min() {
            ctx.request_repaint_after(next.saturating_duration_since(now));
        }
    }
}

/// "SmolLM2 · 10 langs · 100 sent. · nas/nav · proxy · 2026-11-26 07:31 UTC" for run lists.
pub fn run_summary(run: &crate::run::Run) -> String {
    let methods: Vec<&str> = run.methods().iter().map(|m| m.key()).collect();
    let mut label = format!(
        "{} · {} langs · {} sent. · {}",
        run.model_name(),
        run.languages.len(),
        run.settings.sentences,
        methods.join("/")
    );
    if !run.proxy_bits_per_byte.is_empty() {
        label.push_str(" · proxy");
    }
    if !run.complete {
        label.push_str(" · partial");
    }
    label.push_str(&format!(" · {}", utc_time(run.provenance.started_at)));
    label
}

/// "2026-11-26 07:31 UTC" from seconds since the Unix epoch.
pub fn utc_time(seconds: u64) -> String {
    let days = (seconds / 86_400) as i64;
    let rest = seconds % 86_400;
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02} {:02}:{:02} UTC",
        rest / 3600,
        (rest / 60) % 60
    )
}

impl eframe::App for ExplorerApp {
    fn ui(&mut self, ui: &mut egui::Ui, frame: &mut eframe::Frame) {
        let frame_started = Instant::now();
        let ctx = ui.ctx().clone();
        self.drain();
        self.shortcuts(&ctx);

        self.top_bar(ui);
        status::status_bar(ui, &self.state, &self.rt, &mut self.queue);
        if self.state.show_log {
            status::log_panel(ui, &mut self.state, &self.rt, &mut self.queue);
        }
        if self.state.show_setup {
            setup::panel(ui, &mut self.state, &self.rt, &mut self.queue);
        }
        self.central(ui);
        if self.rt.export_open {
            export::window(&ctx, &mut self.state, &mut self.rt, &mut self.queue);
        }
        self.toasts(&ctx);
        if std::mem::take(&mut self.rt.save_now)
            && let Some(storage) = frame.storage_mut()
        {
            // A few kilobytes; eframe's file storage writes them on its own thread.
            self.save(storage);
            storage.flush();
        }
        self.take_pending_screenshot(&ctx);

        // What the UI asked for this frame is handled now, so the next frame shows it.
        let queued = std::mem::take(&mut self.queue);
        if !queued.is_empty() {
            ctx.request_repaint();
        }
        for cmd in queued {
            self.handle(cmd);
        }
        if self.rt.is_running() {
            // Progress also arrives with a repaint request; this keeps ETA and spinners moving.
            ctx.request_repaint_after(Duration::from_millis(250));
        }

        let elapsed = frame_started.elapsed();
        let stats = &mut self.rt.frame_stats;
        stats.frames += 1;
        stats.last = elapsed;
        if self.rt.job.is_some() {
            stats.frames_while_running += 1;
            stats.slowest_while_running = stats.slowest_while_running.max(elapsed);
        }
    }

    fn save(&mut self, storage: &mut dyn eframe::Storage) {
        if self.config.persist {
            eframe::set_value(storage, eframe::APP_KEY, &self.state);
        }
    }
}
