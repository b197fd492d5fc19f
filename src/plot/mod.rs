//! Headless, publication-quality plots of a [`Run`]: PNG and SVG files, and the numbers behind
//! each plot as a table (for CSV export).
//!
//! Four views: a layers × languages heatmap, one line per language over layers (with the
//! shuffled-pairs chance level), the language × language matrix, and a scatter of alignment
//! against a downstream task (or the bits-per-byte proxy) with Pearson / Spearman statistics.
//!
//! A plot is first built as a `scene::Scene` of primitives in logical pixels; the SVG writer
//! and the PNG rasteriser both draw that scene, with text outlined from the bundled DejaVu Sans
//! (`assets/fonts/`), so the two files look the same and need no system fonts.

mod font;
mod layout;
mod png;
mod raster;
mod scene;
pub(crate) mod style;

pub use style::{LineScheme, line_colors, map_color};
mod svg;
mod views;

use std::fmt;
use std::path::{Path, PathBuf};

use crate::run::{Method, Run};

/// Which plot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PlotView {
    /// Layers (x) × languages (y), colour = score against the pivot.
    #[default]
    Heatmap,
    /// One line per language over layers, with the chance level.
    Layers,
    /// Language × language scores at one layer or averaged over layers.
    Matrix,
    /// Alignment (x) against a task or the bits-per-byte proxy (y), with correlations.
    Scatter,
}

impl PlotView {
    pub const ALL: [PlotView; 4] = [Self::Heatmap, Self::Layers, Self::Matrix, Self::Scatter];

    /// Stable key for the command line and file names.
    pub fn key(self) -> &'static str {
        match self {
            Self::Heatmap => "heatmap",
            Self::Layers => "layers",
            Self::Matrix => "matrix",
            Self::Scatter => "scatter",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Heatmap => "Heatmap (layers × languages)",
            Self::Layers => "Scores over layers",
            Self::Matrix => "Language × language matrix",
            Self::Scatter => "Alignment vs task",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|v| v.key().eq_ignore_ascii_case(text.trim()))
    }
}

impl fmt::Display for PlotView {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// Colours: a sequential map for heatmaps and matching line colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Palette {
    /// Viridis (perceptually uniform).
    #[default]
    Viridis,
    /// Cividis (optimised for red–green colour vision deficiency).
    Cividis,
    /// Okabe–Ito colours for lines, a single-hue blue map for heatmaps.
    ColorBlindSafe,
    /// Black plus Paul Tol's high-contrast colours with dash patterns for lines, greyscale for
    /// heatmaps (prints in black and white).
    HighContrast,
    /// Paul Tol's muted colours for lines, viridis for heatmaps.
    TolMuted,
    /// Paul Tol's bright colours for lines, viridis for heatmaps.
    TolBright,
    /// The window's presentation colours for lines (saturated, for projectors), viridis for
    /// heatmaps.
    Projector,
}

impl Palette {
    pub const ALL: [Palette; 7] = [
        Self::Viridis,
        Self::Cividis,
        Self::ColorBlindSafe,
        Self::HighContrast,
        Self::TolMuted,
        Self::TolBright,
        Self::Projector,
    ];

    pub fn key(self) -> &'static str {
        match self {
            Self::Viridis => "viridis",
            Self::Cividis => "cividis",
            Self::ColorBlindSafe => "colorblind",
            Self::HighContrast => "high-contrast",
            Self::TolMuted => "tol-muted",
            Self::TolBright => "tol-bright",
            Self::Projector => "projector",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Viridis => "Viridis",
            Self::Cividis => "Cividis",
            Self::ColorBlindSafe => "Colour-blind safe (Okabe–Ito)",
            Self::HighContrast => "High contrast",
            Self::TolMuted => "Tol muted",
            Self::TolBright => "Tol bright",
            Self::Projector => "Projector",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|v| v.key().eq_ignore_ascii_case(text.trim()))
    }
}

impl fmt::Display for Palette {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum Theme {
    #[default]
    Light,
    Dark,
}

impl Theme {
    pub const ALL: [Theme; 2] = [Self::Light, Self::Dark];

    pub fn key(self) -> &'static str {
        match self {
            Self::Light => "light",
            Self::Dark => "dark",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Self::Light => "Light",
            Self::Dark => "Dark",
        }
    }

    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL
            .into_iter()
            .find(|v| v.key().eq_ignore_ascii_case(text.trim()))
    }
}

impl fmt::Display for Theme {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

/// The y values of the scatter view (one type for the CLI, the GUI and the plots).
pub use crate::run::correlate::TaskSeries;

/// Everything that decides how a plot looks.
#[derive(Debug, Clone, PartialEq)]
pub struct PlotSpec {
    pub view: PlotView,
    pub method: Method,
    /// Matrix and Scatter: one layer, or `None` for the mean over layers. Heatmap and Layers
    /// always show every layer.
    pub layer: Option<usize>,
    pub palette: Palette,
    pub theme: Theme,
    /// Figure size in logical pixels (1/96 in).
    pub width: u32,
    pub height: u32,
    /// Device pixels per logical pixel for PNG (1.0 ≈ 96 dpi, 3.125 = 300 dpi). The SVG is
    /// always written in logical pixels.
    pub scale: f32,
    /// Heatmap, Layers and Matrix: order languages by score (best first) instead of run order.
    pub sort_by_score: bool,
    /// Heatmap and Matrix: the colours span the scores shown instead of 0–1. Layers: the y
    /// axis runs from 0 to the highest value instead of to 1. (The explorer's "Stretch".)
    pub stretch: bool,
    /// Scatter: the y values; `None` uses the run's bits-per-byte proxy.
    pub task: Option<TaskSeries>,
}

impl Default for PlotSpec {
    fn default() -> Self {
        Self {
            view: PlotView::Heatmap,
            method: Method::Nas,
            layer: None,
            palette: Palette::Viridis,
            theme: Theme::Light,
            width: 1600,
            height: 1000,
            scale: 1.0,
            sort_by_score: false,
            stretch: false,
            task: None,
        }
    }
}

impl PlotSpec {
    /// Pixel size of the PNG this spec renders.
    pub fn png_size(&self) -> (u32, u32) {
        (
            (self.width as f32 * self.scale).round().max(1.0) as u32,
            (self.height as f32 * self.scale).round().max(1.0) as u32,
        )
    }
}

#[derive(Debug, thiserror::Error)]
pub enum PlotError {
    #[error("{0}")]
    NoData(String),
    #[error("layer {layer} does not exist: this run has {count} layers (0 to {})", count.saturating_sub(1))]
    Layer { layer: usize, count: usize },
    #[error(
        "a scatter plot needs at least 3 languages with both a score and a {task} value; found {found}"
    )]
    TooFewLanguages { task: String, found: usize },
    #[error(
        "the scatter view needs task values: none were given and this run has no bits-per-byte proxy"
    )]
    NoTask,
    #[error("invalid figure size {width}×{height} at scale {scale}: {reason}")]
    Size {
        width: u32,
        height: u32,
        scale: f32,
        reason: &'static str,
    },
    #[error("cannot plot to {0}: the file name must end in .png or .svg")]
    Extension(PathBuf),
    #[error("cannot write {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("font error: {0}")]
    Font(String),
    #[error("PNG encoding failed: {0}")]
    Encode(String),
}

fn check_size(spec: &PlotSpec) -> Result<(), PlotError> {
    let err = |reason| PlotError::Size {
        width: spec.width,
        height: spec.height,
        scale: spec.scale,
        reason,
    };
    if spec.width < 320 || spec.height < 240 {
        return Err(err("the smallest figure is 320×240"));
    }
    if spec.width > 20_000 || spec.height > 20_000 {
        return Err(err("the largest figure is 20000×20000"));
    }
    if !(spec.scale.is_finite() && spec.scale > 0.0 && spec.scale <= 10.0) {
        return Err(err("the scale must be in (0, 10]"));
    }
    let (w, h) = spec.png_size();
    if u64::from(w) * u64::from(h) > 200_000_000 {
        return Err(err("the PNG would exceed 200 megapixels"));
    }
    Ok(())
}

fn build(run: &Run, spec: &PlotSpec) -> Result<scene::Scene, PlotError> {
    check_size(spec)?;
    views::build(run, spec)
}

/// The plot as PNG bytes, `spec.png_size()` pixels, with its dpi (96 × scale) recorded.
pub fn render_png_bytes(run: &Run, spec: &PlotSpec) -> Result<Vec<u8>, PlotError> {
    let scene = build(run, spec)?;
    let canvas = png::rasterize(&scene, spec.scale);
    png::encode_png(&canvas, 96.0 * spec.scale)
}

/// The plot as raw RGB pixels (width, height, row-major `width × height × 3` bytes), for showing
/// it without a PNG round trip.
pub fn render_rgb(run: &Run, spec: &PlotSpec) -> Result<(u32, u32, Vec<u8>), PlotError> {
    let scene = build(run, spec)?;
    let canvas = png::rasterize(&scene, spec.scale);
    Ok((canvas.width, canvas.height, canvas.pixels))
}

/// The plot as a standalone SVG document (`spec.width × spec.height` user units).
pub fn render_svg_string(run: &Run, spec: &PlotSpec) -> Result<String, PlotError> {
    let scene = build(run, spec)?;
    Ok(svg::write_svg(&scene))
}

/// Writes the plot as `.png` or `.svg`, chosen by the extension (case-insensitive); the file is
/// replaced atomically.
pub fn render_to_file(run: &Run, spec: &PlotSpec, path: &Path) -> Result<(), PlotError> {
    let ext = path
        .extension()
        .map(|e| e.to_string_lossy().to_ascii_lowercase())
        .unwrap_or_default();
    let bytes = match ext.as_str() {
        "png" => render_png_bytes(run, spec)?,
        "svg" => render_svg_string(run, spec)?.into_bytes(),
        _ => return Err(PlotError::Extension(path.to_path_buf())),
    };
    crate::run::atomic_write(path, &bytes).map_err(|source| PlotError::Io {
        path: path.to_path_buf(),
        source,
    })
}

/// The numbers behind the plot, header row first (for CSV export). Numbers are written in full
/// precision; a missing value is an empty cell. Empty when the view has no data (the same case
/// in which rendering returns an error; see [`try_view_table`]).
pub fn view_table(run: &Run, spec: &PlotSpec) -> Vec<Vec<String>> {
    try_view_table(run, spec).unwrap_or_default()
}

/// [`view_table`], with the reason when there is nothing to show.
pub fn try_view_table(run: &Run, spec: &PlotSpec) -> Result<Vec<Vec<String>>, PlotError> {
    views::table(run, spec)
}

/// The correlation line of the scatter view, e.g. "Pearson r = 0.93 (p = 0.0004, 95% CI [0.71,
/// 0.98]); Spearman ρ = 0.90; n = 9".
pub fn correlation_summary(c: &crate::analysis::stats::Correlation) -> String {
    views::correlation_lines(c).join("; ")
}
