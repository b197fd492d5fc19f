//! The explorer's state, in two halves: what is persisted between starts (settings, recent
//! models and runs, looks, the selected view and view options), and what lives only while the
//! window is open (the job, the runs on screen, the log, notifications, progress).

use std::collections::VecDeque;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};

use crate::analysis::lang::Lang;
use crate::engine::{ModelInfo, ModelSource, hub};
use crate::run::correlate::TaskSeries;
use crate::run::job::{JobHandle, Progress};
use crate::run::{CorpusChoice, Method, Run, RunSettings};

use super::theme::{ColorMap, Look, PaletteChoice};

/// The six views, all on the same run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
pub enum View {
    #[default]
    Heatmap,
    Curves,
    Matrix,
    Scatter,
    Compare,
    Sentences,
}

impl View {
    pub const ALL: [View; 6] = [
        Self::Heatmap,
        Self::Curves,
        Self::Matrix,
        Self::Scatter,
        Self::Compare,
        Self::Sentences,
    ];

    /// The tab's label.
    pub fn label(self) -> &'static str {
        match self {
            Self::Heatmap => "Heatmap",
            Self::Curves => "Curves",
            Self::Matrix => "Matrix",
            Self::Scatter => "Scatter",
            Self::Compare => "Compare",
            Self::Sentences => "Sentences",
        }
    }

    pub fn description(self) -> &'static str {
        match self {
            Self::Heatmap => "Alignment per layer and language",
            Self::Curves => "One curve per language over the layers, with the chance level",
            Self::Matrix => "Every language against every other, at one layer or averaged",
            Self::Scatter => "Alignment against task accuracy (or the bits-per-byte proxy)",
            Self::Compare => "Several runs, or the methods of one run, side by side",
            Self::Sentences => "Which sentence pairs are mutual nearest neighbours",
        }
    }

    /// A short name for file names.
    pub fn file_key(self) -> &'static str {
        match self {
            Self::Heatmap => "heatmap",
            Self::Curves => "curves",
            Self::Matrix => "matrix",
            Self::Scatter => "scatter",
            Self::Compare => "compare",
            Self::Sentences => "sentences",
        }
    }

    /// The digit key that selects it.
    pub fn key(self) -> egui::Key {
        match self {
            Self::Heatmap => egui::Key::Num1,
            Self::Curves => egui::Key::Num2,
            Self::Matrix => egui::Key::Num3,
            Self::Scatter => egui::Key::Num4,
            Self::Compare => egui::Key::Num5,
            Self::Sentences => egui::Key::Num6,
        }
    }

    pub fn number(self) -> usize {
        Self::ALL.iter().position(|v| *v == self).unwrap_or(0) + 1
    }
}

/// How the compare view groups its curves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum CompareMode {
    /// The current run and the opened runs, one method.
    #[default]
    Runs,
    /// The methods of the current run.
    Methods,
}

/// Options of the views, remembered between starts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ViewOptions {
    pub method: Method,
    pub sort_by_mean: bool,
    pub show_pivot: bool,
    pub values_in_cells: bool,
    /// Heatmap and matrix colours over the values shown instead of 0..1.
    pub stretch_colors: bool,
    pub show_chance: bool,
    /// Matrix: a layer, or the mean over layers.
    pub matrix_layer: usize,
    pub matrix_mean: bool,
    /// Scatter: a layer, or the mean over layers.
    pub scatter_layer: usize,
    pub scatter_mean: bool,
    /// Name of the task series on the y axis (None: the first available).
    pub scatter_task: Option<String>,
    pub compare_mode: CompareMode,
    pub compare_relative_depth: bool,
    pub sentences_lang: Option<Lang>,
    pub sentences_layer: usize,
    pub sentences_only_unmatched: bool,
}

impl Default for ViewOptions {
    fn default() -> Self {
        Self {
            method: Method::Nas,
            sort_by_mean: false,
            show_pivot: false,
            values_in_cells: true,
            stretch_colors: false,
            show_chance: true,
            matrix_layer: 0,
            matrix_mean: true,
            scatter_layer: 0,
            scatter_mean: true,
            scatter_task: None,
            compare_mode: CompareMode::Runs,
            compare_relative_depth: false,
            sentences_lang: None,
            sentences_layer: 0,
            sentences_only_unmatched: false,
        }
    }
}

/// Where and how exports are written.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct ExportSettings {
    pub folder: String,
    pub width: u32,
    pub height: u32,
    pub scale: f32,
    /// Write over a file of the same name; otherwise a new name (`…-2.png`) is taken.
    pub replace_existing: bool,
}

impl Default for ExportSettings {
    fn default() -> Self {
        let folder = dirs::picture_dir()
            .or_else(dirs::document_dir)
            .or_else(dirs::home_dir)
            .unwrap_or_else(std::env::temp_dir)
            .join("neuronxa");
        Self {
            folder: folder.display().to_string(),
            width: 1600,
            height: 1000,
            scale: 1.0,
            replace_existing: false,
        }
    }
}

/// Version of [`Persisted`]; see [`Persisted::upgrade`].
const PERSISTED_VERSION: u32 = 1;

/// Everything remembered between starts (eframe storage).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Persisted {
    /// 0 for what builds before versioning saved.
    #[serde(default)]
    pub version: u32,
    /// The settings being edited (the next run's).
    pub settings: RunSettings,
    /// What is typed in the model field.
    pub model_text: String,
    /// Model specs, newest first.
    pub recent_models: Vec<String>,
    /// run.json files, newest first.
    pub recent_runs: Vec<PathBuf>,
    /// The run on screen when the window closed, reopened at the next start.
    pub last_run: Option<PathBuf>,
    pub tasks_csv: Option<PathBuf>,
    pub dark: bool,
    pub palette: PaletteChoice,
    pub color_map: ColorMap,
    pub presentation: bool,
    pub view: View,
    pub show_setup: bool,
    pub show_log: bool,
    pub views: ViewOptions,
    pub export: ExportSettings,
}

impl Default for Persisted {
    fn default() -> Self {
        let demo = ModelSource::Gguf(hub::demo_model_path());
        Self {
            version: PERSISTED_VERSION,
            settings: RunSettings::default_for(demo),
            model_text: "demo".into(),
            recent_models: Vec::new(),
            recent_runs: Vec::new(),
            last_run: None,
            tasks_csv: None,
            dark: true,
            palette: PaletteChoice::default(),
            color_map: ColorMap::default(),
            presentation: false,
            view: View::Heatmap,
            show_setup: true,
            show_log: false,
            views: ViewOptions::default(),
            export: ExportSettings::default(),
        }
    }
}

impl Persisted {
    /// Brings what an older build saved up to date: before version 1 the batch size had no
    /// "auto" and every saved setting said 16, which on a GPU is far too small.
    pub fn upgrade(&mut self) {
        if self.version < 1 && self.settings.batch_size == 16 {
            self.settings.batch_size = 0;
        }
        self.version = PERSISTED_VERSION;
    }

    pub fn look(&self) -> Look {
        Look {
            dark: self.dark,
            presentation: self.presentation,
            palette: self.palette,
            color_map: self.color_map,
        }
    }

    pub fn remember_model(&mut self, spec: String) {
        self.recent_models.retain(|m| *m != spec);
        self.recent_models.insert(0, spec);
        self.recent_models.truncate(12);
    }

    pub fn remember_run(&mut self, path: PathBuf) {
        self.recent_runs.retain(|p| *p != path);
        self.recent_runs.insert(0, path);
        self.recent_runs.truncate(20);
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Level {
    Info,
    Warning,
    Error,
}

#[derive(Debug, Clone)]
pub struct LogLine {
    /// Seconds since the window opened.
    pub at: f64,
    pub level: Level,
    pub text: String,
}

#[derive(Debug, Clone)]
pub struct Toast {
    pub id: u64,
    pub level: Level,
    pub text: String,
    pub until: Instant,
}

/// What was recognised in the model being edited.
#[derive(Debug, Clone, Default)]
pub enum ModelCheck {
    #[default]
    Unknown,
    Checking(ModelSource),
    Recognised {
        source: ModelSource,
        info: Box<ModelInfo>,
        /// How it was read (its anatomy is shown on hover).
        config: Box<crate::engine::ModelConfig>,
        device: Result<String, String>,
    },
    Problem {
        source: ModelSource,
        message: String,
    },
}

/// A corpus's languages and how many sentences each has.
#[derive(Debug, Clone, PartialEq)]
pub struct CorpusSummary {
    pub name: String,
    pub languages: Vec<(Lang, usize)>,
}

#[derive(Debug, Clone, Default)]
pub enum CorpusState {
    #[default]
    Unknown,
    Loading(CorpusChoice),
    Ready(CorpusChoice, CorpusSummary),
    Failed(CorpusChoice, String),
}

/// How far each language of the running job is.
#[derive(Debug, Clone, PartialEq)]
pub enum LangProgress {
    Waiting,
    Running {
        done: usize,
        total: usize,
    },
    /// Extracted (or read from the cache); its scores are being computed.
    Scoring,
    Done {
        from_cache: bool,
    },
}

/// How the last job ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    Finished,
    Cancelled,
    Failed(String),
}

/// A run shown beside the current one in the compare view.
#[derive(Debug, Clone)]
pub struct ComparedRun {
    pub label: String,
    pub path: Option<PathBuf>,
    pub run: Run,
}

/// A screenshot waiting for its frame.
#[derive(Debug, Clone)]
pub struct PendingScreenshot {
    pub path: PathBuf,
    /// Frames to wait so that the export window and notifications are gone from the screen.
    pub frames_left: u32,
    /// Crop to the view (false: the whole window).
    pub crop_to_view: bool,
    /// Close the window once saved (the `--screenshot` start option).
    pub then_close: bool,
}

/// Timing of the frames, to show the UI thread is never blocked.
#[derive(Debug, Clone, Default)]
pub struct FrameStats {
    pub frames: u64,
    pub frames_while_running: u64,
    pub slowest_while_running: Duration,
    pub last: Duration,
}

/// Everything that lives only while the window is open.
#[derive(Default)]
pub struct Runtime {
    pub job: Option<JobHandle>,
    /// The settings of the running job (rows of the heatmap before their results arrive).
    pub job_settings: Option<RunSettings>,
    pub job_started: Option<Instant>,
    /// The running job found its whole run in the cache (its timings are the first run's).
    pub job_reopened: bool,
    pub cancelling: bool,
    pub run: Option<Run>,
    pub run_path: Option<PathBuf>,
    pub compared: Vec<ComparedRun>,
    pub log: VecDeque<LogLine>,
    pub toasts: Vec<Toast>,
    pub next_toast: u64,
    pub status: String,
    pub progress: Option<Progress>,
    pub lang_progress: Vec<(Lang, LangProgress)>,
    pub outcome: Option<Outcome>,
    /// How many job events `handle` received (the job's only way into the UI state).
    pub job_events: u64,
    pub model_check: ModelCheck,
    pub corpus: CorpusState,
    pub tasks: Vec<TaskSeries>,
    pub hf_models: Vec<hub::CachedModel>,
    pub cached_runs: Vec<(PathBuf, String)>,
    pub export_open: bool,
    pub exporting: usize,
    pub last_exported: Vec<PathBuf>,
    pub screenshot: Option<PendingScreenshot>,
    /// Where the current view was drawn last frame (for "PNG as on screen").
    pub view_rect: Option<egui::Rect>,
    pub fonts_loaded: Vec<String>,
    pub frame_stats: FrameStats,
    pub background_tasks: usize,
    pub started: Option<Instant>,
    /// Write the persisted state at the end of this frame (a new run to remember):
    /// eframe saves only on exit and at its interval, which a killed window never reaches.
    pub save_now: bool,
}

impl Runtime {
    pub fn is_running(&self) -> bool {
        self.job.is_some()
    }

    pub fn seconds(&self) -> f64 {
        self.started.map_or(0.0, |s| s.elapsed().as_secs_f64())
    }

    pub fn log(&mut self, level: Level, text: impl Into<String>) {
        let text = text.into();
        match level {
            Level::Error => tracing::error!("{text}"),
            Level::Warning => tracing::warn!("{text}"),
            Level::Info => tracing::info!("{text}"),
        }
        let at = self.seconds();
        self.log.push_back(LogLine { at, level, text });
        while self.log.len() > 2000 {
            self.log.pop_front();
        }
    }

    pub fn toast(&mut self, level: Level, text: impl Into<String>) {
        let seconds = match level {
            Level::Error => 12,
            Level::Warning => 8,
            Level::Info => 5,
        };
        self.next_toast += 1;
        self.toasts.push(Toast {
            id: self.next_toast,
            level,
            text: text.into(),
            until: Instant::now() + Duration::from_secs(seconds),
        });
        if self.toasts.len() > 5 {
            self.toasts.remove(0);
        }
    }

    pub fn warnings_and_errors(&self) -> (usize, usize) {
        self.log
            .iter()
            .fold((0, 0), |(w, e), line| match line.level {
                Level::Warning => (w + 1, e),
                Level::Error => (w, e + 1),
                Level::Info => (w, e),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Settings saved before versioning carry batch 16 (no "auto" then): it becomes auto;
    /// a 16 chosen since stays.
    #[test]
    fn old_saved_batch_size_becomes_auto() {
        let mut saved = Persisted::default();
        saved.settings.batch_size = 16;
        let mut old = serde_json::to_value(&saved).unwrap();
        old.as_object_mut().unwrap().remove("version");
        let mut old: Persisted = serde_json::from_value(old).unwrap();
        assert_eq!(old.version, 0);
        old.upgrade();
        assert_eq!(
            (old.version, old.settings.batch_size),
            (PERSISTED_VERSION, 0)
        );

        let mut current: Persisted =
            serde_json::from_value(serde_json::to_value(&saved).unwrap()).unwrap();
        current.upgrade();
        assert_eq!(current.settings.batch_size, 16);
    }
}
