//! Exports: the view as on screen (a cropped screenshot), publication PNG and SVG through the
//! plot module, the numbers behind a view as CSV, and whole bundles. Every file is written
//! atomically; all of it runs on helper threads.

use std::path::{Path, PathBuf};

use egui::{RichText, Ui};

use crate::analysis::corpus;
use crate::plot::{self, PlotSpec, PlotView};
use crate::run::correlate::TaskSeries;
use crate::run::export as run_export;
use crate::run::{CorpusChoice, Method, Run, atomic_write};

use super::command::{Command, DialogPurpose};
use super::state::{ComparedRun, CorpusSummary, Persisted, Runtime, View, ViewOptions};
use super::theme::Look;
use super::views;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExportKind {
    /// The view exactly as on screen.
    ScreenPng,
    /// A publication PNG of the view (size and scale from the export settings).
    Png,
    Svg,
    /// The numbers behind the view.
    Csv,
    /// PNG, SVG and CSV of every view, the run's tables and run.json, in a new folder.
    Bundle,
}

/// Everything an export needs, cloned off the UI state.
pub struct ExportRequest {
    pub run: Run,
    pub compared: Vec<ComparedRun>,
    pub view: View,
    pub options: ViewOptions,
    pub look: Look,
    pub tasks: Vec<TaskSeries>,
    pub folder: PathBuf,
    pub stem: String,
    pub width: u32,
    pub height: u32,
    pub scale: f32,
    /// Write over files of the same name instead of taking a new name.
    pub replace_existing: bool,
}

/// `folder/stem.ext`, or, unless `replace_existing`, the first of `stem-2.ext`, `stem-3.ext`…
/// that does not exist yet: an export never overwrites an earlier one unasked.
pub fn export_path(folder: &Path, stem: &str, ext: &str, replace_existing: bool) -> PathBuf {
    let first = folder.join(format!("{stem}.{ext}"));
    if replace_existing || !first.exists() {
        return first;
    }
    (2u32..)
        .map(|n| folder.join(format!("{stem}-{n}.{ext}")))
        .find(|path| !path.exists())
        .unwrap_or(first)
}

impl ExportRequest {
    /// Writes the files; returns their paths.
    pub fn write(&self, kind: ExportKind) -> Result<Vec<PathBuf>, String> {
        std::fs::create_dir_all(&self.folder)
            .map_err(|e| format!("cannot create {}: {e}", self.folder.display()))?;
        match kind {
            ExportKind::ScreenPng => Err("a screen PNG is taken by the window, not here".into()),
            ExportKind::Png | ExportKind::Svg => {
                let ext = if kind == ExportKind::Png {
                    "png"
                } else {
                    "svg"
                };
                let spec = self.spec(self.view).ok_or_else(|| {
                    format!(
                        "the {} view has no publication figure; use \"PNG as on screen\" or CSV",
                        self.view.label()
                    )
                })?;
                let path = self.path(ext);
                plot::render_to_file(&self.run, &spec, &path).map_err(|e| e.to_string())?;
                Ok(vec![path])
            }
            ExportKind::Csv => {
                let path = self.path("csv");
                let rows = self.view_rows(self.view);
                if rows.len() < 2 {
                    return Err(format!(
                        "the {} view has no numbers to export",
                        self.view.label()
                    ));
                }
                run_export::write_csv(&path, &rows).map_err(|e| e.to_string())?;
                Ok(vec![path])
            }
            ExportKind::Bundle => self.bundle(),
        }
    }

    fn path(&self, ext: &str) -> PathBuf {
        export_path(&self.folder, &self.stem, ext, self.replace_existing)
    }

    fn bundle(&self) -> Result<Vec<PathBuf>, String> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let dir = self.folder.join(safe_file_name(&format!(
            "{}-bundle-{stamp}",
            self.run.model_name()
        )));
        run_export::write_run_dir(&self.run, &dir).map_err(|e| e.to_string())?;
        let mut written: Vec<PathBuf> = std::fs::read_dir(&dir)
            .map(|entries| entries.flatten().map(|e| e.path()).collect())
            .unwrap_or_default();
        // A view without data (e.g. a scatter with nothing to correlate with) is skipped and
        // said so in skipped.txt; the rest of the bundle is still written.
        let mut skipped = Vec::new();
        for view in View::ALL {
            let stem = dir.join(view.file_key());
            match self.spec(view) {
                Some(spec) => {
                    for ext in ["png", "svg"] {
                        let path = stem.with_extension(ext);
                        match plot::render_to_file(&self.run, &spec, &path) {
                            Ok(()) => written.push(path),
                            Err(e) => skipped.push(format!("{}.{ext}: {e}", view.file_key())),
                        }
                    }
                }
                None if matches!(view, View::Scatter) => skipped.push(
                    "scatter: no task accuracies imported and no bits-per-byte proxy in the run"
                        .to_string(),
                ),
                None => {}
            }
            let rows = self.view_rows(view);
            if rows.len() > 1 {
                let path = stem.with_extension("csv");
                run_export::write_csv(&path, &rows).map_err(|e| e.to_string())?;
                written.push(path);
            }
        }
        if !skipped.is_empty() {
            let path = dir.join("skipped.txt");
            let text = format!("Not in this bundle:\n{}\n", skipped.join("\n"));
            atomic_write(&path, text.as_bytes()).map_err(|e| format!("{}: {e}", path.display()))?;
            written.push(path);
        }
        written.sort();
        Ok(written)
    }

    /// The plot module's description of a view, when it has a publication figure.
    pub fn spec(&self, view: View) -> Option<PlotSpec> {
        let plot_view = match view {
            View::Heatmap => PlotView::Heatmap,
            View::Curves => PlotView::Layers,
            View::Matrix => PlotView::Matrix,
            View::Scatter => PlotView::Scatter,
            View::Compare | View::Sentences => return None,
        };
        let task = if view == View::Scatter {
            let t = self.task()?;
            Some(plot::TaskSeries {
                name: t.name,
                values: t.values,
                is_proxy: t.is_proxy,
            })
        } else {
            None
        };
        let layer = match view {
            View::Matrix if !self.options.matrix_mean => Some(self.options.matrix_layer),
            View::Scatter if !self.options.scatter_mean => Some(self.options.scatter_layer),
            _ => None,
        };
        Some(PlotSpec {
            view: plot_view,
            method: self.options.method,
            layer,
            palette: plot_palette(&self.look, view),
            theme: if self.look.dark {
                plot::Theme::Dark
            } else {
                plot::Theme::Light
            },
            width: self.width,
            height: self.height,
            scale: self.scale,
            sort_by_score: self.options.sort_by_mean,
            stretch: self.options.stretch_colors,
            task,
        })
    }

    fn task(&self) -> Option<TaskSeries> {
        let mut series = self.tasks.clone();
        if !self.run.proxy_bits_per_byte.is_empty() {
            series.push(crate::run::correlate::proxy_series(&self.run));
        }
        let by_name = self
            .options
            .scatter_task
            .as_ref()
            .and_then(|name| series.iter().find(|s| &s.name == name).cloned());
        by_name.or_else(|| series.into_iter().next())
    }

    /// The numbers behind a view, header first: the plot module's table for the views it
    /// draws, so the CSV matches the publication figure.
    pub fn view_rows(&self, view: View) -> Vec<Vec<String>> {
        let run = &self.run;
        let method = self.options.method;
        match view {
            View::Heatmap | View::Curves | View::Matrix | View::Scatter => self
                .spec(view)
                .map(|spec| plot::view_table(run, &spec))
                .unwrap_or_default(),
            View::Compare => compare_rows(run, &self.compared),
            View::Sentences => match &self.options.sentences_lang {
                Some(lang) => sentence_rows(run, lang, method, self.options.sentences_layer),
                None => Vec::new(),
            },
        }
    }
}

/// The plot module's palette with the window's colours: the same line colour per language
/// (presentation mode's too), the same colour map.
fn plot_palette(look: &Look, view: View) -> plot::Palette {
    use super::theme::PaletteChoice;
    let lines = if look.presentation {
        PaletteChoice::HighContrast
    } else {
        look.palette
    };
    match view {
        View::Curves | View::Scatter | View::Compare => match lines.line_scheme() {
            plot::LineScheme::OkabeIto => plot::Palette::ColorBlindSafe,
            plot::LineScheme::TolMuted => plot::Palette::TolMuted,
            plot::LineScheme::TolBright => plot::Palette::TolBright,
            plot::LineScheme::Projector => plot::Palette::Projector,
        },
        _ => look.color_map.plot_palette(),
    }
}

fn num(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.6}")
    } else {
        String::new()
    }
}

pub fn compare_rows(run: &Run, compared: &[ComparedRun]) -> Vec<Vec<String>> {
    let mut rows = vec![
        ["run", "model", "method", "layer", "mean_score"]
            .map(String::from)
            .to_vec(),
    ];
    let all = std::iter::once(("current".to_string(), run))
        .chain(compared.iter().map(|c| (c.label.clone(), &c.run)));
    for (label, r) in all {
        for method in r.methods() {
            for (layer, v) in r.mean_curve(method).iter().enumerate() {
                rows.push(vec![
                    label.clone(),
                    r.model_name().to_string(),
                    method.key().to_string(),
                    layer.to_string(),
                    num(*v),
                ]);
            }
            rows.push(vec![
                label.clone(),
                r.model_name().to_string(),
                method.key().to_string(),
                "mean".into(),
                num(views::compare::headline(r, method)),
            ]);
        }
    }
    rows
}

pub fn sentence_rows(
    run: &Run,
    lang: &crate::analysis::lang::Lang,
    method: Method,
    layer: usize,
) -> Vec<Vec<String>> {
    let mut rows = vec![
        [
            "index",
            "pivot_sentence",
            "sentence",
            "mutual_nn",
            "nearest_index",
            "nearest_sentence",
        ]
        .map(String::from)
        .to_vec(),
    ];
    for r in views::sentences::pair_rows(run, lang, method, layer) {
        rows.push(vec![
            (r.index + 1).to_string(),
            r.pivot_text,
            r.text,
            r.matched.to_string(),
            r.nearest
                .as_ref()
                .map(|(j, _)| (j + 1).to_string())
                .unwrap_or_default(),
            r.nearest.map(|(_, t)| t).unwrap_or_default(),
        ]);
    }
    rows
}

/// Crops a window screenshot to `rect` (in points) and writes it as a PNG.
pub fn save_screenshot(
    image: &egui::ColorImage,
    rect: Option<egui::Rect>,
    pixels_per_point: f32,
    path: &Path,
) -> Result<PathBuf, String> {
    let cropped = match rect {
        Some(rect) => image.region(&rect, Some(pixels_per_point)),
        None => image.clone(),
    };
    let [w, h] = cropped.size;
    if w == 0 || h == 0 {
        return Err("the screenshot is empty".into());
    }
    let bytes: Vec<u8> = cropped
        .pixels
        .iter()
        .flat_map(|c| {
            let [r, g, b, _] = c.to_srgba_unmultiplied();
            [r, g, b, 255]
        })
        .collect();
    let buffer = image::RgbaImage::from_raw(w as u32, h as u32, bytes)
        .ok_or_else(|| "the screenshot has the wrong size".to_string())?;
    let mut png = std::io::Cursor::new(Vec::new());
    buffer
        .write_to(&mut png, image::ImageFormat::Png)
        .map_err(|e| e.to_string())?;
    atomic_write(path, png.get_ref()).map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(path.to_path_buf())
}

/// Letters, digits, `-`, `_` and `.`; everything else becomes `-`.
pub fn safe_file_name(text: &str) -> String {
    let mut out: String = text
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.') {
                c
            } else {
                '-'
            }
        })
        .collect();
    while out.contains("--") {
        out = out.replace("--", "-");
    }
    out.trim_matches('-').to_string()
}

/// Task accuracies from a CSV, as series for the scatter.
pub fn load_tasks(path: &Path) -> Result<Vec<TaskSeries>, String> {
    let table = crate::analysis::tasks::load_task_csv(path).map_err(|e| e.to_string())?;
    let series: Vec<TaskSeries> = table
        .tasks
        .into_iter()
        .map(|(name, values)| TaskSeries {
            name,
            values,
            is_proxy: false,
        })
        .collect();
    if series.is_empty() {
        return Err("the file has no task columns".into());
    }
    Ok(series)
}

/// A corpus's languages and sentence counts (reads the files: helper threads only).
pub fn corpus_summary(choice: &CorpusChoice) -> Result<CorpusSummary, String> {
    let corpus = match choice {
        CorpusChoice::Bundled => corpus::bundled(),
        CorpusChoice::Path(path) => corpus::load(path),
    }
    .map_err(|e| e.to_string())?;
    let languages = corpus
        .languages
        .iter()
        .map(|text| (text.lang.clone(), text.sentences.len()))
        .collect();
    Ok(CorpusSummary {
        name: corpus.name.clone(),
        languages,
    })
}

/// The export window (Ctrl+E).
pub fn window(
    ctx: &egui::Context,
    state: &mut Persisted,
    rt: &mut Runtime,
    queue: &mut Vec<Command>,
) {
    let mut open = rt.export_open;
    egui::Window::new("Export")
        .open(&mut open)
        .collapsible(false)
        .resizable(false)
        .default_width(420.0)
        .anchor(egui::Align2::RIGHT_TOP, egui::vec2(-16.0, 48.0))
        .show(ctx, |ui| contents(ui, state, rt, queue));
    rt.export_open = open && rt.export_open;
}

fn contents(ui: &mut Ui, state: &mut Persisted, rt: &Runtime, queue: &mut Vec<Command>) {
    let view = state.view;
    ui.label(format!(
        "Current view: {} ({})",
        view.label(),
        state.views.method.label()
    ));
    ui.add_space(4.0);
    ui.horizontal(|ui| {
        let label = ui.label("Folder");
        ui.add(egui::TextEdit::singleline(&mut state.export.folder).desired_width(260.0))
            .labelled_by(label.id);
        if ui.button("Browse…").clicked() {
            queue.push(Command::OpenDialog(DialogPurpose::ExportFolder));
        }
    });
    ui.checkbox(
        &mut state.export.replace_existing,
        "Replace files of the same name",
    )
    .on_hover_text("Off: a new export of the same view is saved beside the old one (…-2.png)");
    ui.add_space(6.0);
    let has_run = rt.run.is_some();
    let has_figure = !matches!(view, View::Compare | View::Sentences);
    ui.add_enabled_ui(has_run, |ui| {
        if ui
            .button("Save PNG as on screen")
            .on_hover_text("Exactly what the view shows now, at screen resolution")
            .clicked()
        {
            queue.push(Command::Export(ExportKind::ScreenPng));
        }
        ui.separator();
        ui.label(RichText::new("Publication figure").strong());
        egui::Grid::new("export-size")
            .num_columns(2)
            .spacing([8.0, 4.0])
            .show(ui, |ui| {
                let label = ui.label("Width × height");
                ui.horizontal(|ui| {
                    ui.add(egui::DragValue::new(&mut state.export.width).range(200..=8000).suffix(" px"))
                        .labelled_by(label.id);
                    ui.label("×");
                    ui.add(egui::DragValue::new(&mut state.export.height).range(200..=8000).suffix(" px"));
                });
                ui.end_row();
                let label = ui.label("Scale");
                ui.add(
                    egui::DragValue::new(&mut state.export.scale)
                        .range(0.5..=4.0)
                        .speed(0.05)
                        .suffix("×"),
                )
                .labelled_by(label.id)
                .on_hover_text("2× doubles the pixels with the same layout (for high-DPI output)");
                ui.end_row();
            });
        ui.add_enabled_ui(has_figure, |ui| {
            ui.horizontal(|ui| {
                if ui.button("Save PNG").clicked() {
                    queue.push(Command::Export(ExportKind::Png));
                }
                if ui.button("Save SVG").clicked() {
                    queue.push(Command::Export(ExportKind::Svg));
                }
            });
        });
        if !has_figure {
            ui.weak("This view has no publication figure: use the screen PNG or CSV.");
        }
        ui.separator();
        ui.horizontal(|ui| {
            if ui
                .button("Save CSV")
                .on_hover_text("The numbers behind this view")
                .clicked()
            {
                queue.push(Command::Export(ExportKind::Csv));
            }
            if ui
                .button("Save bundle")
                .on_hover_text("PNG, SVG and CSV of every view, the run's tables and run.json, in a new folder")
                .clicked()
            {
                queue.push(Command::Export(ExportKind::Bundle));
            }
        });
    });
    if !has_run {
        ui.weak("Run or open a run first.");
    }
    if rt.exporting > 0 {
        ui.horizontal(|ui| {
            crate::app::spinner::spinner(ui);
            ui.weak("writing…");
        });
    } else if !rt.last_exported.is_empty() {
        ui.separator();
        ui.weak("Last written:");
        for path in rt.last_exported.iter().take(6) {
            ui.add(egui::Label::new(RichText::new(path.display().to_string()).small()).truncate());
        }
        if rt.last_exported.len() > 6 {
            ui.weak(format!("… and {} more", rt.last_exported.len() - 6));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::theme::{ColorMap, PaletteChoice};

    /// A language drawn in colour `i` on screen has colour `i` in the exported plot too, with
    /// every palette, theme and presentation mode.
    #[test]
    fn exported_lines_take_the_window_colours() {
        for palette in PaletteChoice::ALL {
            for dark in [false, true] {
                for presentation in [false, true] {
                    let look = Look {
                        dark,
                        presentation,
                        palette,
                        color_map: ColorMap::Viridis,
                    };
                    let theme = if dark {
                        plot::Theme::Dark
                    } else {
                        plot::Theme::Light
                    };
                    let exported = plot_palette(&look, View::Curves);
                    for i in 0..12 {
                        let on_screen = look.series(i);
                        let style = plot::style::series(exported, theme, i, 12);
                        assert_eq!(
                            [on_screen.r(), on_screen.g(), on_screen.b()],
                            [style.color.r, style.color.g, style.color.b],
                            "{palette:?} dark {dark} presentation {presentation} colour {i}"
                        );
                        assert_eq!(
                            look.series_dashed(i),
                            style.dash.is_some(),
                            "{palette:?} dash of colour {i}"
                        );
                    }
                }
            }
        }
    }
}
