//! The four views: the numbers they show (shared with the CSV table) and their drawing.

use std::cmp::Ordering;

use super::layout::{
    Axes, Figure, Frame, GAP, LABEL, LEGEND, MARGIN, MIN_TEXT, TICK, TICK_LEN, integer_step, minus,
    nice_ticks, tick_label,
};
use super::scene::{HAlign, Prim, Rgba, Scene, Stroke, Text, VAlign};
use super::style::{Marker, SeriesStyle, series, text_on};
use super::{PlotError, PlotSpec, PlotView, TaskSeries};
use crate::analysis::lang::Lang;
use crate::analysis::stats::Correlation;
use crate::run::{Method, Run};

const SCORE_TITLE: &str = "Alignment score (mutual-NN rate)";
const CHANCE_LABEL: &str = "chance (shuffled pairs)";

pub(crate) fn build(run: &Run, spec: &PlotSpec) -> Result<Scene, PlotError> {
    match spec.view {
        PlotView::Heatmap => heatmap(run, spec),
        PlotView::Layers => layers(run, spec),
        PlotView::Matrix => matrix(run, spec),
        PlotView::Scatter => scatter(run, spec),
    }
}

/// A number for CSV: full precision, empty when missing.
fn cell(v: f64) -> String {
    if v.is_finite() {
        format!("{v}")
    } else {
        String::new()
    }
}

pub(crate) fn table(run: &Run, spec: &PlotSpec) -> Result<Vec<Vec<String>>, PlotError> {
    match spec.view {
        PlotView::Heatmap => {
            let (rows, layers) = pivot_series(run, spec.method, spec.sort_by_score)?;
            let mut header = vec!["language".to_string(), "code".to_string()];
            header.extend((0..layers).map(|l| format!("layer_{l}")));
            header.push("mean".into());
            let mut out = vec![header];
            for s in &rows {
                let mut row = vec![s.lang.name().to_string(), s.lang.code().to_string()];
                row.extend((0..layers).map(|l| cell(s.at(l))));
                row.push(cell(s.mean));
                out.push(row);
            }
            Ok(out)
        }
        PlotView::Layers => {
            let (rows, layers) = pivot_series(run, spec.method, spec.sort_by_score)?;
            let chance = run.chance_curve(spec.method);
            let mut header = vec!["layer".to_string()];
            header.extend(rows.iter().map(|s| s.lang.name().to_string()));
            header.push(CHANCE_LABEL.into());
            let mut out = vec![header];
            for l in 0..layers {
                let mut row = vec![l.to_string()];
                row.extend(rows.iter().map(|s| cell(s.at(l))));
                row.push(cell(chance.get(l).copied().unwrap_or(f64::NAN)));
                out.push(row);
            }
            Ok(out)
        }
        PlotView::Matrix => {
            let m = matrix_data(run, spec)?;
            let mut header = vec!["language".to_string()];
            header.extend(m.langs.iter().map(|l| l.name().to_string()));
            let mut out = vec![header];
            for (lang, values) in m.langs.iter().zip(&m.values) {
                let mut row = vec![lang.name().to_string()];
                row.extend(values.iter().map(|&v| cell(v)));
                out.push(row);
            }
            Ok(out)
        }
        PlotView::Scatter => {
            let d = scatter_data(run, spec)?;
            let mut out = vec![vec![
                "language".to_string(),
                "code".to_string(),
                d.x_title.clone(),
                d.y_title.clone(),
            ]];
            for p in &d.points {
                out.push(vec![
                    p.lang.name().to_string(),
                    p.lang.code().to_string(),
                    cell(p.x),
                    cell(p.y),
                ]);
            }
            Ok(out)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Data

struct Series {
    lang: Lang,
    /// The language's place among the run's non-pivot languages: its colour.
    color_index: usize,
    per_layer: Vec<f64>,
    mean: f64,
}

impl Series {
    fn at(&self, layer: usize) -> f64 {
        self.per_layer.get(layer).copied().unwrap_or(f64::NAN)
    }
}

/// Best first, missing last.
fn descending(a: f64, b: f64) -> Ordering {
    match (a.is_nan(), b.is_nan()) {
        (true, true) => Ordering::Equal,
        (true, false) => Ordering::Greater,
        (false, true) => Ordering::Less,
        (false, false) => b.total_cmp(&a),
    }
}

/// Every non-pivot language's scores against the pivot, and the number of layers.
fn pivot_series(run: &Run, method: Method, sort: bool) -> Result<(Vec<Series>, usize), PlotError> {
    let mut rows: Vec<Series> = run
        .non_pivot_languages()
        .into_iter()
        .enumerate()
        .filter_map(|(color_index, lang)| {
            let s = run.scores(&lang, method)?;
            Some(Series {
                color_index,
                per_layer: s.per_layer.clone(),
                mean: s.mean(),
                lang,
            })
        })
        .collect();
    let layers = rows.iter().map(|s| s.per_layer.len()).max().unwrap_or(0);
    if rows.is_empty() || layers == 0 {
        return Err(PlotError::NoData(format!(
            "this run has no {} scores for a language other than the pivot ({})",
            method.label(),
            run.settings.pivot.name()
        )));
    }
    if sort {
        rows.sort_by(|a, b| descending(a.mean, b.mean));
    }
    Ok((rows, layers))
}

/// The top of a y axis from 0 that shows `values`: the next nice step above the highest (1 where
/// nothing is above 0).
fn stretched_top<'a>(values: impl Iterator<Item = &'a f64>) -> f64 {
    let highest = values
        .copied()
        .filter(|v| v.is_finite())
        .fold(0.0, f64::max);
    if highest <= 0.0 {
        return 1.0;
    }
    let (ticks, step) = nice_ticks(0.0, highest, 6);
    let last = ticks.last().copied().unwrap_or(highest);
    if last + 1e-12 >= highest {
        last
    } else {
        last + step
    }
    .min(1.0)
}

fn finite_mean(values: &[f64]) -> f64 {
    let v: Vec<f64> = values.iter().copied().filter(|v| v.is_finite()).collect();
    if v.is_empty() {
        f64::NAN
    } else {
        v.iter().sum::<f64>() / v.len() as f64
    }
}

fn is_mexa(method: Method) -> bool {
    matches!(method, Method::MexaPooled | Method::MexaLast)
}

/// Hidden states include the embedding output as layer 0.
fn layer_title(run: &Run, method: Method, layers: usize) -> &'static str {
    if is_mexa(method) && layers == run.provenance.model.layers + 1 {
        "Layer (0 = embeddings)"
    } else {
        "Layer"
    }
}

fn title(run: &Run, method: Method, against: &str) -> String {
    format!("{} — {} vs {}", run.model_name(), method.label(), against)
}

fn incomplete(run: &Run) -> &'static str {
    if run.complete {
        ""
    } else {
        " · incomplete run"
    }
}

fn pivot_subtitle(run: &Run, chance: &[f64]) -> String {
    let chance = finite_mean(chance);
    let chance = if chance.is_finite() {
        format!(" · chance ≈ {chance:.3}")
    } else {
        String::new()
    };
    format!(
        "{} parallel sentences per language{chance}{}",
        run.settings.sentences,
        incomplete(run)
    )
}

struct MatrixData {
    langs: Vec<Lang>,
    values: Vec<Vec<f64>>,
    layers: usize,
}

fn matrix_data(run: &Run, spec: &PlotSpec) -> Result<MatrixData, PlotError> {
    let m = run
        .matrices
        .get(&spec.method)
        .filter(|m| !m.languages.is_empty() && !m.per_layer.is_empty())
        .ok_or_else(|| {
            PlotError::NoData(format!(
                "this run has no language × language matrix for {}",
                spec.method.label()
            ))
        })?;
    let layers = m.per_layer.len();
    let values = match spec.layer {
        Some(layer) => m.per_layer.get(layer).cloned().ok_or(PlotError::Layer {
            layer,
            count: layers,
        })?,
        None => m.mean_over_layers(),
    };
    let n = m.languages.len();
    let get = |i: usize, j: usize| {
        values
            .get(i)
            .and_then(|r| r.get(j))
            .copied()
            .unwrap_or(f64::NAN)
    };
    let mut order: Vec<usize> = (0..n).collect();
    if spec.sort_by_score {
        let row_mean = |i: usize| {
            finite_mean(
                &(0..n)
                    .filter(|&j| j != i)
                    .map(|j| get(i, j))
                    .collect::<Vec<_>>(),
            )
        };
        order.sort_by(|&a, &b| descending(row_mean(a), row_mean(b)));
    }
    Ok(MatrixData {
        langs: order.iter().map(|&i| m.languages[i].clone()).collect(),
        values: order
            .iter()
            .map(|&i| order.iter().map(|&j| get(i, j)).collect())
            .collect(),
        layers,
    })
}

struct Point {
    lang: Lang,
    x: f64,
    y: f64,
}

struct ScatterData {
    points: Vec<Point>,
    task: TaskSeries,
    x_title: String,
    y_title: String,
}

fn scatter_data(run: &Run, spec: &PlotSpec) -> Result<ScatterData, PlotError> {
    let task = spec
        .task
        .clone()
        .or_else(|| TaskSeries::proxy(run))
        .ok_or(PlotError::NoTask)?;
    let count = run.layer_count(spec.method);
    if let Some(layer) = spec.layer
        && layer >= count
    {
        return Err(PlotError::Layer { layer, count });
    }
    let points: Vec<Point> = run
        .non_pivot_languages()
        .into_iter()
        .filter_map(|lang| {
            let s = run.scores(&lang, spec.method)?;
            let x = match spec.layer {
                Some(l) => s.per_layer.get(l).copied()?,
                None => s.mean(),
            };
            let y = task.values.get(&lang).copied()?;
            (x.is_finite() && y.is_finite()).then_some(Point { lang, x, y })
        })
        .collect();
    if points.len() < 3 {
        return Err(PlotError::TooFewLanguages {
            task: task.name.clone(),
            found: points.len(),
        });
    }
    let x_title = match spec.layer {
        Some(l) => format!(
            "{} vs {}, layer {l}",
            spec.method.label(),
            run.settings.pivot.name()
        ),
        None => format!(
            "{} vs {}, mean over layers",
            spec.method.label(),
            run.settings.pivot.name()
        ),
    };
    let y_title = if task.is_proxy {
        format!("{} (capability proxy, lower = better)", task.name)
    } else {
        task.name.clone()
    };
    Ok(ScatterData {
        points,
        task,
        x_title,
        y_title,
    })
}

// ---------------------------------------------------------------------------------------------
// Formatting

fn two(v: f64) -> String {
    if !v.is_finite() {
        return "n/a".into();
    }
    minus(&format!("{v:.2}"))
}

fn p_text(p: f64) -> String {
    if !p.is_finite() {
        "p = n/a".into()
    } else if p < 0.0001 {
        "p < 0.0001".into()
    } else if p < 0.01 {
        format!("p = {p:.4}")
    } else if p < 0.1 {
        format!("p = {p:.3}")
    } else {
        format!("p = {p:.2}")
    }
}

/// "Pearson r = … (p = …, 95% CI […, …])", "Spearman ρ = …", "n = …".
pub(crate) fn correlation_lines(c: &Correlation) -> Vec<String> {
    vec![
        format!(
            "Pearson r = {} ({}, 95% CI [{}, {}])",
            two(c.pearson_r),
            p_text(c.p_value),
            two(c.ci95_fisher.0),
            two(c.ci95_fisher.1)
        ),
        format!("Spearman ρ = {}", two(c.spearman_rho)),
        format!("n = {}", c.n),
    ]
}

// ---------------------------------------------------------------------------------------------
// Heatmap

fn heatmap(run: &Run, spec: &PlotSpec) -> Result<Scene, PlotError> {
    let (rows, layers) = pivot_series(run, spec.method, spec.sort_by_score)?;
    let chance = run.chance_curve(spec.method);
    let mut fig = Figure::new(spec)?;
    if spec.stretch {
        fig.stretch_colors(rows.iter().flat_map(|s| s.per_layer.iter().copied()));
    }
    let pivot = run.settings.pivot.name().to_string();
    let top = fig.header(
        &title(run, spec.method, &pivot),
        Some(&pivot_subtitle(run, &chance)),
    );
    let colors = fig.colors;
    let n = rows.len();
    let names: Vec<String> = rows.iter().map(|s| s.lang.name().to_string()).collect();

    let bottom = fig.height() - MARGIN - fig.x_axis_space();
    let row_h = (bottom - top) / n as f32;
    let label_size = (row_h * 0.8).clamp(MIN_TEXT, TICK);
    let label_every = ((label_size * 1.15) / row_h).ceil().max(1.0) as usize;
    let widest = names
        .iter()
        .map(|name| fig.text_width(name, label_size, false))
        .fold(0.0, f32::max);
    let left = MARGIN + fig.text_height(LABEL) + 14.0 + widest + GAP + TICK_LEN;
    let right = fig.width() - MARGIN - fig.colorbar_width() - 28.0;
    let frame = Frame {
        x0: left,
        y0: top,
        x1: right.max(left + 10.0),
        y1: bottom.max(top + 10.0),
    };
    let cw = frame.width() / layers as f32;
    let ch = frame.height() / n as f32;

    let value_size = {
        let unit = fig.text_width("0.00", 1.0, false);
        16.0f32.min(ch * 0.5).min((cw - 8.0) / unit)
    };
    let annotate = value_size >= 11.0;
    for (r, s) in rows.iter().enumerate() {
        let y = frame.y0 + r as f32 * ch;
        for l in 0..layers {
            let x = frame.x0 + l as f32 * cw;
            value_cell(
                &mut fig,
                (x, y, cw, ch),
                s.at(l),
                annotate.then_some(value_size),
            );
        }
    }
    outline(&mut fig, &frame);

    for (r, name) in names.iter().enumerate() {
        if r % label_every != 0 {
            continue;
        }
        let cy = frame.y0 + (r as f32 + 0.5) * ch;
        fig.rule(frame.x0 - TICK_LEN, cy, frame.x0, cy, colors.axis, 1.25);
        let x = frame.x0 - TICK_LEN - GAP;
        fig.text(
            name,
            x,
            cy,
            label_size,
            colors.text,
            HAlign::Right,
            VAlign::Middle,
            0.0,
        );
    }
    let label_w = fig.text_width(&layers.saturating_sub(1).to_string(), TICK, false);
    let step = integer_step(layers, cw, label_w);
    for l in (0..layers).step_by(step) {
        let cx = frame.x0 + (l as f32 + 0.5) * cw;
        fig.rule(cx, frame.y1, cx, frame.y1 + TICK_LEN, colors.axis, 1.25);
        let y = frame.y1 + TICK_LEN + GAP;
        fig.text(
            &l.to_string(),
            cx,
            y,
            TICK,
            colors.text,
            HAlign::Center,
            VAlign::Top,
            0.0,
        );
    }
    let x_title_y = frame.y1 + TICK_LEN + GAP + fig.text_height(TICK) + 12.0;
    let cx = (frame.x0 + frame.x1) / 2.0;
    let x_title = layer_title(run, spec.method, layers);
    fig.text(
        x_title,
        cx,
        x_title_y,
        LABEL,
        colors.text,
        HAlign::Center,
        VAlign::Top,
        0.0,
    );
    let y_title_x = frame.x0 - TICK_LEN - GAP - widest - 14.0;
    let cy = (frame.y0 + frame.y1) / 2.0;
    fig.text(
        "Language",
        y_title_x,
        cy,
        LABEL,
        colors.text,
        HAlign::Center,
        VAlign::Bottom,
        -90.0,
    );

    fig.colorbar(frame.x1 + 28.0, frame.y0, frame.y1, SCORE_TITLE);
    Ok(fig.scene)
}

// ---------------------------------------------------------------------------------------------
// Layers

const LEGEND_GAP: f32 = 24.0;

/// Where the legend of the layers view goes: right of the plot if it fits in a third of the
/// width, else below it; the text shrinks before the legend takes over the figure.
struct LegendPlace {
    columns: usize,
    size: f32,
    /// Width taken right of the plot (legend + gap), or 0.
    beside: f32,
    /// Height taken below the x axis (gap + legend), or 0.
    below: f32,
}

/// One coloured cell of a heatmap or matrix, its value printed in a contrasting ink when
/// `label_size` is given (missing values are drawn in the "missing" colour, unlabelled).
fn value_cell(
    fig: &mut Figure,
    (x, y, w, h): (f32, f32, f32, f32),
    v: f64,
    label_size: Option<f32>,
) {
    let fill = if v.is_finite() {
        fig.shade(v)
    } else {
        fig.colors.missing
    };
    fig.scene.rect_fill(x, y, w, h, fill);
    if let (Some(size), true) = (label_size, v.is_finite()) {
        let label = format!("{v:.2}");
        let (cx, cy) = (x + w / 2.0, y + h / 2.0);
        fig.text(
            &label,
            cx,
            cy,
            size,
            text_on(fill),
            HAlign::Center,
            VAlign::Middle,
            0.0,
        );
    }
}

/// The axis-coloured border around a grid of cells.
fn outline(fig: &mut Figure, frame: &Frame) {
    fig.scene.push(Prim::Rect {
        x: frame.x0,
        y: frame.y0,
        w: frame.width(),
        h: frame.height(),
        fill: None,
        stroke: Some(Stroke::solid(fig.colors.axis, 1.0)),
    });
}

fn place_legend(fig: &Figure, labels: &[String], top: f32) -> LegendPlace {
    let plot_h = fig.height() - MARGIN - fig.x_axis_space() - top;
    let (max_w, max_h) = (fig.width() * 0.34, fig.height() * 0.34);
    for size in [LEGEND, 14.0, 12.0, 11.0] {
        for columns in 1..=4 {
            let (w, h) = fig.legend_size(labels, columns, size);
            if w <= max_w && h <= plot_h {
                return LegendPlace {
                    columns,
                    size,
                    beside: w + LEGEND_GAP,
                    below: 0.0,
                };
            }
        }
        for columns in (1..=labels.len().clamp(1, 12)).rev() {
            let (w, h) = fig.legend_size(labels, columns, size);
            if w <= fig.width() - 2.0 * MARGIN && h <= max_h {
                return LegendPlace {
                    columns,
                    size,
                    beside: 0.0,
                    below: h + LEGEND_GAP,
                };
            }
        }
    }
    // Nothing fits: smallest text below the plot, as many columns as the width allows.
    let size = 11.0;
    let columns = (1..=labels.len().clamp(1, 12))
        .rev()
        .find(|&c| fig.legend_size(labels, c, size).0 <= fig.width() - 2.0 * MARGIN)
        .unwrap_or(1);
    let h = fig.legend_size(labels, columns, size).1;
    LegendPlace {
        columns,
        size,
        beside: 0.0,
        below: (h + LEGEND_GAP).min(fig.height() * 0.5),
    }
}

fn layers(run: &Run, spec: &PlotSpec) -> Result<Scene, PlotError> {
    let (rows, layers) = pivot_series(run, spec.method, spec.sort_by_score)?;
    let chance = run.chance_curve(spec.method);
    let mut fig = Figure::new(spec)?;
    let pivot = run.settings.pivot.name().to_string();
    let top = fig.header(
        &title(run, spec.method, &pivot),
        Some(&pivot_subtitle(run, &chance)),
    );
    let colors = fig.colors;
    let n = run.non_pivot_languages().len();
    let marker_every = layers.div_ceil(24).max(1);

    let mut entries: Vec<(String, SeriesStyle, bool)> = rows
        .iter()
        .map(|s| {
            (
                s.lang.name().to_string(),
                series(spec.palette, spec.theme, s.color_index, n),
                true,
            )
        })
        .collect();
    let chance_style = SeriesStyle {
        color: colors.chance,
        marker: Marker::Circle,
        dash: Some([7.0, 5.0]),
    };
    if chance.iter().any(|v| v.is_finite()) {
        entries.push((CHANCE_LABEL.to_string(), chance_style, false));
    }

    let labels: Vec<String> = entries.iter().map(|e| e.0.clone()).collect();
    let legend = place_legend(&fig, &labels, top);
    let bottom = fig.height() - MARGIN - fig.x_axis_space() - legend.below;
    let y_top = if spec.stretch {
        stretched_top(rows.iter().flat_map(|s| s.per_layer.iter()).chain(&chance))
    } else {
        1.0
    };
    let (ys, ystep) = nice_ticks(0.0, y_top, 6);
    let y_ticks: Vec<(f64, String)> = ys.iter().map(|&v| (v, tick_label(v, ystep))).collect();
    let left = MARGIN + fig.y_axis_space(&y_ticks);
    let right = fig.width() - MARGIN - legend.beside;
    let frame = Frame {
        x0: left,
        y0: top,
        x1: right.max(left + 10.0),
        y1: bottom.max(top + 10.0),
    };
    let last = layers.saturating_sub(1) as f64;
    let pad = (last * 0.015).max(0.3);
    let axes = Axes {
        frame,
        x: (-pad, last + pad),
        y: (-0.02 * y_top, 1.02 * y_top),
    };
    let unit = frame.width() / (last + 2.0 * pad) as f32;
    let label_w = fig.text_width(&layers.saturating_sub(1).to_string(), TICK, false);
    let step = integer_step(layers, unit, label_w);
    let x_ticks: Vec<(f64, String)> = (0..layers)
        .step_by(step)
        .map(|l| (l as f64, l.to_string()))
        .collect();
    let x_title = layer_title(run, spec.method, layers);
    fig.numeric_axes(&axes, &x_ticks, &y_ticks, x_title, SCORE_TITLE);

    let polyline = |values: &[f64]| -> Vec<Vec<(f32, f32)>> {
        // Missing values break the line.
        let mut parts = vec![Vec::new()];
        for (l, &v) in values.iter().enumerate() {
            if v.is_finite() {
                if let Some(part) = parts.last_mut() {
                    part.push((axes.px(l as f64), axes.py(v)));
                }
            } else if parts.last().is_some_and(|p| !p.is_empty()) {
                parts.push(Vec::new());
            }
        }
        parts.into_iter().filter(|p| !p.is_empty()).collect()
    };

    let mut chance_stroke = Stroke::round(colors.chance, 2.0);
    chance_stroke.dash = chance_style.dash;
    for part in polyline(&chance) {
        fig.scene.push(Prim::Polyline {
            points: part,
            stroke: chance_stroke,
        });
    }
    for s in &rows {
        let style = series(spec.palette, spec.theme, s.color_index, n);
        let mut stroke = Stroke::round(style.color, 2.25);
        stroke.dash = style.dash;
        let values: Vec<f64> = (0..layers).map(|l| s.at(l)).collect();
        for part in polyline(&values) {
            if part.len() == 1 {
                continue;
            }
            fig.scene.push(Prim::Polyline {
                points: part,
                stroke,
            });
        }
        for (l, &v) in values.iter().enumerate() {
            if v.is_finite() && l % marker_every == 0 {
                fig.marker(
                    style.marker,
                    axes.px(l as f64),
                    axes.py(v),
                    4.5,
                    style.color,
                );
            }
        }
    }
    let (x, y) = if legend.below > 0.0 {
        let w = fig.legend_size(&labels, legend.columns, legend.size).0;
        let y = fig.height() - MARGIN - legend.below + LEGEND_GAP;
        ((fig.width() - w) / 2.0, y)
    } else {
        (frame.x1 + LEGEND_GAP, frame.y0)
    };
    fig.legend(x, y, &entries, legend.columns, legend.size);
    Ok(fig.scene)
}

// ---------------------------------------------------------------------------------------------
// Matrix

/// How the column labels under the matrix are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum XLabels {
    Flat,
    Diagonal,
    Vertical,
}

fn matrix(run: &Run, spec: &PlotSpec) -> Result<Scene, PlotError> {
    let m = matrix_data(run, spec)?;
    let mut fig = Figure::new(spec)?;
    if spec.stretch {
        // The diagonal (a language with itself, 1 by definition) would take the top colour.
        fig.stretch_colors(m.values.iter().enumerate().flat_map(|(i, row)| {
            row.iter()
                .enumerate()
                .filter(move |(j, _)| *j != i)
                .map(|(_, v)| *v)
        }));
    }
    let which = match spec.layer {
        Some(l) => format!("layer {l} of {}", m.layers),
        None => format!("mean over {} layers", m.layers),
    };
    let title = format!(
        "{} — {}, language × language",
        run.model_name(),
        spec.method.label()
    );
    let subtitle = format!(
        "{which} · each cell: mutual-NN rate of the pair over {} parallel sentences{}",
        run.settings.sentences,
        incomplete(run)
    );
    let top = fig.header(&title, Some(&subtitle));
    let colors = fig.colors;
    let n = m.langs.len();
    let names: Vec<String> = m.langs.iter().map(|l| l.name().to_string()).collect();

    let colorbar_w = fig.colorbar_width() + 28.0;
    let widest_at = |fig: &Figure, size: f32| {
        names
            .iter()
            .map(|name| fig.text_width(name, size, false))
            .fold(0.0, f32::max)
    };
    // Labels: full size while rows are tall enough, smaller (down to MIN_TEXT) for many
    // languages, and only every k-th one when even that would overlap.
    let label_size_for = |cell: f32| (cell * 0.8).clamp(MIN_TEXT, TICK);
    let every_for = |cell: f32, size: f32| ((size * 1.15) / cell).ceil().max(1.0) as usize;
    let avail_h = fig.height() - top - MARGIN;
    let mut label_size = label_size_for(avail_h / n as f32);
    let mut cell = 0.0;
    let mut orientation = XLabels::Flat;
    // Two passes: the label size depends on the cell size, which depends on the label space.
    for _ in 0..2 {
        let widest = widest_at(&fig, label_size);
        let left_fixed = MARGIN + widest + GAP + TICK_LEN;
        let avail_w = fig.width() - MARGIN - colorbar_w - left_fixed;
        let text_h = fig.text_height(label_size);
        let fit = |bottom_space: f32| {
            (avail_w / n as f32).min((avail_h - TICK_LEN - GAP - bottom_space) / n as f32)
        };
        cell = fit(text_h);
        orientation = XLabels::Flat;
        if widest + 8.0 > cell * every_for(cell, label_size) as f32 {
            cell = fit(std::f32::consts::FRAC_1_SQRT_2 * (widest + text_h));
            orientation = XLabels::Diagonal;
            let spacing = std::f32::consts::FRAC_1_SQRT_2 * cell;
            if spacing < text_h * 1.1 {
                cell = fit(widest);
                orientation = XLabels::Vertical;
            }
        }
        cell = cell.max(1.0);
        label_size = label_size.min(label_size_for(cell));
    }
    let every = every_for(cell, label_size);
    let widest = widest_at(&fig, label_size);
    let left_fixed = MARGIN + widest + GAP + TICK_LEN;
    let avail_w = fig.width() - MARGIN - colorbar_w - left_fixed;
    let size = cell * n as f32;
    let x0 = left_fixed + ((avail_w - size) / 2.0).max(0.0);
    let frame = Frame {
        x0,
        y0: top,
        x1: x0 + size,
        y1: top + size,
    };

    let value_size = {
        let unit = fig.text_width("0.00", 1.0, false);
        18.0f32.min((cell - 8.0) / unit).min(cell * 0.4)
    };
    let annotate = value_size >= MIN_TEXT;
    for (i, row) in m.values.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            let (x, y) = (frame.x0 + j as f32 * cell, frame.y0 + i as f32 * cell);
            value_cell(
                &mut fig,
                (x, y, cell, cell),
                v,
                annotate.then_some(value_size),
            );
        }
    }
    outline(&mut fig, &frame);
    for (i, name) in names.iter().enumerate() {
        if i % every != 0 {
            continue;
        }
        let c = (i as f32 + 0.5) * cell;
        let cy = frame.y0 + c;
        fig.rule(frame.x0 - TICK_LEN, cy, frame.x0, cy, colors.axis, 1.25);
        let tx = frame.x0 - TICK_LEN - GAP;
        fig.text(
            name,
            tx,
            cy,
            label_size,
            colors.text,
            HAlign::Right,
            VAlign::Middle,
            0.0,
        );
        let cx = frame.x0 + c;
        fig.rule(cx, frame.y1, cx, frame.y1 + TICK_LEN, colors.axis, 1.25);
        let ty = frame.y1 + TICK_LEN + GAP;
        let (h, v, angle) = match orientation {
            XLabels::Flat => (HAlign::Center, VAlign::Top, 0.0),
            XLabels::Diagonal => (HAlign::Right, VAlign::Middle, -45.0),
            XLabels::Vertical => (HAlign::Right, VAlign::Middle, -90.0),
        };
        fig.text(name, cx, ty, label_size, colors.text, h, v, angle);
    }
    let bar_top = frame.y0;
    let bar_bottom = frame.y1.max(frame.y0 + 120.0);
    fig.colorbar(frame.x1 + 28.0, bar_top, bar_bottom, SCORE_TITLE);
    Ok(fig.scene)
}

// ---------------------------------------------------------------------------------------------
// Scatter

/// Axis-aligned box for overlap tests.
#[derive(Debug, Clone, Copy)]
struct Boxf {
    x0: f32,
    y0: f32,
    x1: f32,
    y1: f32,
}

impl Boxf {
    fn overlap(&self, o: &Boxf) -> f32 {
        let w = (self.x1.min(o.x1) - self.x0.max(o.x0)).max(0.0);
        let h = (self.y1.min(o.y1) - self.y0.max(o.y0)).max(0.0);
        w * h
    }
    fn inside(&self, f: &Frame) -> bool {
        self.x0 >= f.x0 && self.x1 <= f.x1 && self.y0 >= f.y0 && self.y1 <= f.y1
    }
}

/// The part of the line y = a + b·x inside the axes, if any.
fn clip_line(axes: &Axes, slope: f64, intercept: f64) -> Option<((f64, f64), (f64, f64))> {
    if !(slope.is_finite() && intercept.is_finite()) {
        return None;
    }
    let (mut t0, mut t1) = axes.x;
    let (ylo, yhi) = axes.y;
    if slope.abs() > 1e-12 {
        let xa = (ylo - intercept) / slope;
        let xb = (yhi - intercept) / slope;
        let (lo, hi) = if xa < xb { (xa, xb) } else { (xb, xa) };
        t0 = t0.max(lo);
        t1 = t1.min(hi);
    } else if !(ylo..=yhi).contains(&intercept) {
        return None;
    }
    (t1 > t0).then_some(((t0, intercept + slope * t0), (t1, intercept + slope * t1)))
}

fn padded(values: impl Iterator<Item = f64> + Clone) -> (f64, f64) {
    let lo = values.clone().fold(f64::INFINITY, f64::min);
    let hi = values.fold(f64::NEG_INFINITY, f64::max);
    let span = hi - lo;
    let pad = if span > 1e-12 {
        span * 0.1
    } else {
        lo.abs().max(1.0) * 0.05
    };
    (lo - pad, hi + pad)
}

fn scatter(run: &Run, spec: &PlotSpec) -> Result<Scene, PlotError> {
    let d = scatter_data(run, spec)?;
    let xs: Vec<f64> = d.points.iter().map(|p| p.x).collect();
    let ys: Vec<f64> = d.points.iter().map(|p| p.y).collect();
    // The bootstrap interval is not shown, so none is drawn. A correlation that is not
    // defined (a constant x or y) still gets its points, with the reason in the box.
    let corr = crate::analysis::stats::correlate(&xs, &ys, 0, 0);

    let mut fig = Figure::new(spec)?;
    let colors = fig.colors;
    let title = title(run, spec.method, &d.task.name);
    let subtitle = if d.task.is_proxy {
        format!(
            "y: {} on held-out text, a capability proxy, not a task score (lower = better){}",
            d.task.name.to_lowercase(),
            incomplete(run)
        )
    } else {
        format!(
            "{} languages other than the pivot ({}) with a {} value{}",
            d.points.len(),
            run.settings.pivot.name(),
            d.task.name,
            incomplete(run)
        )
    };
    let top = fig.header(&title, Some(&subtitle));

    let (xlo, xhi) = padded(xs.iter().copied());
    let (ylo, yhi) = padded(ys.iter().copied());
    let bottom = fig.height() - MARGIN - fig.x_axis_space();
    let y_count = (((bottom - top) / 70.0) as usize).clamp(3, 10);
    let (yt, ystep) = nice_ticks(ylo, yhi, y_count);
    let y_ticks: Vec<(f64, String)> = yt.iter().map(|&v| (v, tick_label(v, ystep))).collect();
    let left = MARGIN + fig.y_axis_space(&y_ticks);
    let frame = Frame {
        x0: left,
        y0: top,
        x1: (fig.width() - MARGIN - 12.0).max(left + 10.0),
        y1: bottom.max(top + 10.0),
    };
    let x_count = ((frame.width() / 110.0) as usize).clamp(3, 12);
    let (xt, xstep) = nice_ticks(xlo, xhi, x_count);
    let x_ticks: Vec<(f64, String)> = xt.iter().map(|&v| (v, tick_label(v, xstep))).collect();
    let axes = Axes {
        frame,
        x: (xlo, xhi),
        y: (ylo, yhi),
    };
    fig.numeric_axes(&axes, &x_ticks, &y_ticks, &d.x_title, &d.y_title);

    let accent = series(spec.palette, spec.theme, 0, 1).color;
    let fit_color = match spec.theme {
        super::Theme::Light => Rgba::hex(0x555555),
        super::Theme::Dark => Rgba::hex(0xB5B5B5),
    };
    let (slope, intercept) = corr
        .as_ref()
        .map_or((f64::NAN, f64::NAN), |c| (c.slope, c.intercept));
    if let Some(((x0, y0), (x1, y1))) = clip_line(&axes, slope, intercept) {
        let stroke = Stroke::round(fit_color, 2.0).dashed(10.0, 6.0);
        fig.scene.push(Prim::Polyline {
            points: vec![(axes.px(x0), axes.py(y0)), (axes.px(x1), axes.py(y1))],
            stroke,
        });
    }

    const R: f32 = 6.5;
    let point_boxes: Vec<Boxf> = d
        .points
        .iter()
        .map(|p| {
            let (x, y) = (axes.px(p.x), axes.py(p.y));
            Boxf {
                x0: x - R,
                y0: y - R,
                x1: x + R,
                y1: y + R,
            }
        })
        .collect();

    // Statistics box in the emptiest corner (the one the fit line points away from first).
    let mut lines = match &corr {
        Ok(c) => correlation_lines(c),
        Err(e) => vec![format!("No correlation: {e}")],
    };
    let one_line = lines.join("; ");
    const NOTE: f32 = 16.0;
    let pad = 10.0;
    let line_h = fig.text_height(NOTE) + 6.0;
    if lines.len() == 1
        || fig.text_width(&one_line, NOTE, false) + 2.0 * pad <= frame.width() * 0.75
    {
        lines = vec![one_line];
    } else {
        lines = vec![lines[0].clone(), lines[1..].join("; ")];
    }
    let lines = lines;
    let box_w = lines
        .iter()
        .map(|l| fig.text_width(l, NOTE, false))
        .fold(0.0, f32::max)
        + 2.0 * pad;
    let box_h = lines.len() as f32 * line_h - 6.0 + 2.0 * pad;
    let inset = 12.0;
    let corners = [
        (frame.x0 + inset, frame.y0 + inset),
        (frame.x1 - inset - box_w, frame.y0 + inset),
        (frame.x1 - inset - box_w, frame.y1 - inset - box_h),
        (frame.x0 + inset, frame.y1 - inset - box_h),
    ];
    let order = if slope.is_finite() && slope < 0.0 {
        [1, 3, 0, 2]
    } else {
        [0, 2, 1, 3]
    };
    let stat_box = order
        .iter()
        .map(|&i| {
            let (x, y) = corners[i];
            Boxf {
                x0: x,
                y0: y,
                x1: x + box_w,
                y1: y + box_h,
            }
        })
        .min_by(|a, b| {
            let cost = |bx: &Boxf| point_boxes.iter().map(|p| bx.overlap(p)).sum::<f32>();
            cost(a).total_cmp(&cost(b))
        })
        .unwrap_or(Boxf {
            x0: corners[0].0,
            y0: corners[0].1,
            x1: corners[0].0 + box_w,
            y1: corners[0].1 + box_h,
        });

    // Points, then their labels where they collide with nothing.
    for p in &d.points {
        let (x, y) = (axes.px(p.x), axes.py(p.y));
        fig.scene.push(Prim::Circle {
            cx: x,
            cy: y,
            r: R,
            fill: Some(accent.alpha(0.9)),
            stroke: Some(Stroke::solid(colors.background, 1.5)),
        });
    }
    const CODE: f32 = 15.0;
    let code_h = fig.text_height(CODE);
    let mut taken: Vec<Boxf> = vec![stat_box];
    for (k, p) in d.points.iter().enumerate() {
        let (x, y) = (axes.px(p.x), axes.py(p.y));
        let code = p.lang.short().to_string();
        let w = fig.text_width(&code, CODE, false);
        let off = R + 4.0;
        let candidates = [
            (x + off, y - off - code_h, HAlign::Left),
            (x + off, y + off, HAlign::Left),
            (x - off - w, y - off - code_h, HAlign::Right),
            (x - off - w, y + off, HAlign::Right),
            (x - w / 2.0, y - off - code_h - 2.0, HAlign::Center),
            (x - w / 2.0, y + off + 2.0, HAlign::Center),
        ];
        let boxes: Vec<(Boxf, HAlign)> = candidates
            .iter()
            .map(|&(bx, by, h)| {
                (
                    Boxf {
                        x0: bx,
                        y0: by,
                        x1: bx + w,
                        y1: by + code_h,
                    },
                    h,
                )
            })
            .collect();
        let cost = |b: &Boxf| {
            let mut c: f32 = taken.iter().map(|t| b.overlap(t)).sum();
            c += point_boxes
                .iter()
                .enumerate()
                .filter(|(i, _)| *i != k)
                .map(|(_, pb)| b.overlap(pb))
                .sum::<f32>();
            if !b.inside(&frame) {
                c += 1e6;
            }
            c
        };
        let Some((best, _)) = boxes
            .iter()
            .min_by(|a, b| cost(&a.0).total_cmp(&cost(&b.0)))
            .copied()
        else {
            continue;
        };
        taken.push(best);
        fig.scene.text(Text {
            text: code,
            x: best.x0,
            y: best.y0,
            size: CODE,
            bold: false,
            color: colors.text,
            h: HAlign::Left,
            v: VAlign::Top,
            angle: 0.0,
        });
    }

    fig.scene.push(Prim::Rect {
        x: stat_box.x0,
        y: stat_box.y0,
        w: box_w,
        h: box_h,
        fill: Some(colors.panel),
        stroke: Some(Stroke::solid(colors.panel_border, 1.0)),
    });
    for (i, line) in lines.iter().enumerate() {
        let y = stat_box.y0 + pad + i as f32 * line_h;
        fig.text(
            line,
            stat_box.x0 + pad,
            y,
            NOTE,
            colors.text,
            HAlign::Left,
            VAlign::Top,
            0.0,
        );
    }
    Ok(fig.scene)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn p_values_read_naturally() {
        assert_eq!(p_text(0.0004), "p = 0.0004");
        assert_eq!(p_text(0.00001), "p < 0.0001");
        assert_eq!(p_text(0.034), "p = 0.034");
        assert_eq!(p_text(0.5), "p = 0.50");
        assert_eq!(two(-0.0001), "0.00");
        assert_eq!(two(-0.5), "\u{2212}0.50");
        assert_eq!(two(f64::NAN), "n/a");
    }

    #[test]
    fn a_stretched_axis_ends_at_the_next_step_above_the_data() {
        let close = |values: &[f64], top: f64| {
            let got = stretched_top(values.iter());
            assert!((got - top).abs() < 1e-9, "{values:?}: {got}, not {top}");
        };
        // Steps of 0.1 up to 0.31: the axis ends at 0.4.
        close(&[0.31, 0.05, f64::NAN], 0.4);
        close(&[0.3], 0.3);
        close(&[0.96], 1.0);
        close(&[0.0, f64::NAN], 1.0);
    }

    #[test]
    fn fit_line_is_clipped_to_the_axes() {
        let axes = Axes {
            frame: Frame {
                x0: 0.0,
                y0: 0.0,
                x1: 100.0,
                y1: 100.0,
            },
            x: (0.0, 1.0),
            y: (0.0, 1.0),
        };
        let ((x0, y0), (x1, y1)) = clip_line(&axes, 2.0, -0.5).unwrap_or_default();
        assert!((x0 - 0.25).abs() < 1e-9 && y0.abs() < 1e-9);
        assert!((x1 - 0.75).abs() < 1e-9 && (y1 - 1.0).abs() < 1e-9);
        assert!(clip_line(&axes, 0.0, 2.0).is_none());
        assert!(clip_line(&axes, f64::NAN, 0.0).is_none());
    }
}
