//! Layer × language heatmap of μ, with a colour legend; hover shows exact values.

use egui::{Align2, Color32, FontId, Pos2, Rect, RichText, Sense, Stroke, StrokeKind, Ui, vec2};

use super::{ViewCtx, fmt, method_combo};
use crate::app::theme::ColorMap;

pub fn show(ui: &mut Ui, cx: &mut ViewCtx) {
    ui.horizontal_wrapped(|ui| {
        method_combo(ui, "heatmap-method", cx.run, &mut cx.opts.method);
        ui.separator();
        ui.checkbox(&mut cx.opts.sort_by_mean, "Sort languages by mean score");
        ui.checkbox(&mut cx.opts.show_pivot, "Show pivot");
        ui.checkbox(&mut cx.opts.values_in_cells, "Values in cells");
        ui.checkbox(&mut cx.opts.stretch_colors, "Stretch colours")
            .on_hover_text("Map the lowest to the highest value shown onto the whole colour scale (off: 0 to 1)");
    });
    ui.add_space(4.0);

    let method = cx.opts.method;
    let rows = cx.rows(method);
    let layers = cx.layers(method);
    if rows.is_empty() || layers == 0 {
        ui.label("No scores for this method yet.");
        return;
    }
    let n = cx.run.settings.sentences.max(1);
    let font = egui::TextStyle::Body.resolve(ui.style());
    let small = egui::TextStyle::Small.resolve(ui.style());
    let text_color = ui.visuals().text_color();
    let weak = ui.visuals().weak_text_color();
    let scale = Scale::new(
        cx.look.color_map,
        cx.opts.stretch_colors,
        rows.iter()
            .filter_map(|(_, s)| *s)
            .flat_map(|s| s.per_layer.iter().copied()),
    );

    let (response, painter) = ui.allocate_painter(ui.available_size(), Sense::hover());
    let area = response.rect;
    let label_width =
        super::name_column_width(&painter, rows.iter().map(|(l, _)| l), &font, text_color);
    let legend_width = 84.0;
    let mean_width = 58.0;
    // Tick labels, the axis label, and a line for the note on values that do not fit.
    let bottom = 44.0 + small.size + 4.0;
    let header = font.size + 8.0;
    let grid_left = area.left() + label_width;
    let grid_right = area.right() - legend_width - mean_width - 8.0;
    let row_height = ((area.height() - bottom - header) / rows.len() as f32).clamp(10.0, 54.0);
    let grid = Rect::from_min_max(
        Pos2::new(grid_left, area.top() + header),
        Pos2::new(
            grid_right,
            area.top() + header + row_height * rows.len() as f32,
        ),
    );
    if grid.width() < 40.0 {
        return;
    }
    let cell_width = grid.width() / layers as f32;
    let cell = |row: usize, layer: usize| {
        Rect::from_min_size(
            Pos2::new(
                grid.left() + layer as f32 * cell_width,
                grid.top() + row as f32 * row_height,
            ),
            vec2(cell_width, row_height),
        )
    };
    let value_font = FontId::proportional((row_height * 0.45).clamp(9.0, font.size));
    let fitting = CellLabels::fitting(cell_width, row_height, font.size);
    let cell_labels = fitting.as_ref().filter(|_| cx.opts.values_in_cells);

    // Column header: mean.
    painter.text(
        Pos2::new(
            grid.right() + 8.0 + mean_width / 2.0,
            area.top() + header / 2.0,
        ),
        Align2::CENTER_CENTER,
        "mean",
        font.clone(),
        weak,
    );

    for (r, (lang, scores)) in rows.iter().enumerate() {
        let y = grid.top() + (r as f32 + 0.5) * row_height;
        painter.text(
            Pos2::new(grid.left() - 8.0, y),
            Align2::RIGHT_CENTER,
            lang.name(),
            font.clone(),
            if lang == cx.pivot() { weak } else { text_color },
        );
        match scores {
            Some(scores) => {
                for (l, &v) in scores.per_layer.iter().enumerate().take(layers) {
                    let rect = cell(r, l);
                    let color = scale.color(v);
                    painter.rect_filled(rect, 0.0, color);
                    if let Some(labels) = cell_labels {
                        painter.text(
                            rect.center(),
                            Align2::CENTER_CENTER,
                            labels.format(v),
                            labels.font.clone(),
                            ColorMap::text_on(color),
                        );
                    }
                }
                let mean = scores.mean();
                let rect = Rect::from_min_size(
                    Pos2::new(grid.right() + 8.0, grid.top() + r as f32 * row_height),
                    vec2(mean_width, row_height),
                );
                let color = scale.color(mean);
                painter.rect_filled(rect.shrink(1.0), 2.0, color);
                painter.text(
                    rect.center(),
                    Align2::CENTER_CENTER,
                    format!("{mean:.3}"),
                    value_font.clone(),
                    ColorMap::text_on(color),
                );
            }
            None => {
                let rect = Rect::from_min_max(cell(r, 0).min, cell(r, layers - 1).max);
                painter.rect_filled(rect.shrink(1.0), 2.0, ui.visuals().faint_bg_color);
                painter.rect_stroke(
                    rect.shrink(1.0),
                    2.0,
                    Stroke::new(1.0, weak),
                    StrokeKind::Inside,
                );
                painter.text(
                    rect.center(),
                    Align2::CENTER_CENTER,
                    super::pending_label(cx.progress, lang),
                    font.clone(),
                    weak,
                );
            }
        }
    }

    // Layer ticks.
    let step = tick_step(cell_width, 26.0);
    for l in (0..layers).step_by(step) {
        let x = grid.left() + (l as f32 + 0.5) * cell_width;
        painter.line_segment(
            [
                Pos2::new(x, grid.bottom()),
                Pos2::new(x, grid.bottom() + 4.0),
            ],
            Stroke::new(1.0, weak),
        );
        painter.text(
            Pos2::new(x, grid.bottom() + 6.0),
            Align2::CENTER_TOP,
            l.to_string(),
            small.clone(),
            text_color,
        );
    }
    painter.text(
        Pos2::new(grid.center().x, grid.bottom() + 8.0 + small.size + 4.0),
        Align2::CENTER_TOP,
        cx.layer_axis(method),
        font.clone(),
        text_color,
    );
    if cx.opts.values_in_cells && fitting.is_none() {
        // Say why the values asked for are not there, rather than leave the user guessing.
        painter.text(
            Pos2::new(
                grid.center().x,
                grid.bottom() + 8.0 + small.size + 4.0 + font.size + 4.0,
            ),
            Align2::CENTER_TOP,
            "cells too small for values: widen the window, or hover a cell",
            small.clone(),
            weak,
        );
    }

    legend(
        &painter,
        area,
        grid,
        legend_width,
        &scale,
        &font,
        &small,
        text_color,
    );

    // Hover: the exact values behind a cell.
    let Some(pointer) = response.hover_pos() else {
        return;
    };
    let mean_column = Rect::from_min_max(
        Pos2::new(grid.right() + 8.0, grid.top()),
        Pos2::new(grid.right() + 8.0 + mean_width, grid.bottom()),
    );
    let row = ((pointer.y - grid.top()) / row_height).floor();
    if row < 0.0 || row as usize >= rows.len() {
        return;
    }
    let (lang, scores) = &rows[row as usize];
    let Some(scores) = scores else {
        return;
    };
    if grid.contains(pointer) {
        let layer = (((pointer.x - grid.left()) / cell_width).floor() as usize).min(layers - 1);
        let rect = cell(row as usize, layer);
        painter.rect_stroke(rect, 0.0, Stroke::new(2.0, text_color), StrokeKind::Inside);
        let v = scores.per_layer.get(layer).copied().unwrap_or(f64::NAN);
        let chance = scores
            .chance_per_layer
            .get(layer)
            .copied()
            .unwrap_or(f64::NAN);
        let matched = (v * n as f64).round() as usize;
        let p1 = scores
            .p_at_1_forward
            .get(layer)
            .copied()
            .unwrap_or(f64::NAN);
        response.on_hover_ui_at_pointer(|ui| {
            ui.label(RichText::new(format!("{} · layer {layer}", lang.name())).strong());
            ui.label(format!(
                "μ = {} ({matched} of {n} pairs mutual nearest neighbours)",
                fmt(v)
            ));
            ui.label(format!("chance (shuffled pairs) = {}", fmt(chance)));
            ui.label(format!(
                "retrieval P@1 {} → {} = {}",
                cx.pivot().short(),
                lang.short(),
                fmt(p1)
            ));
            ui.label(format!(
                "mean over layers = {} · best layer {} ({})",
                fmt(scores.mean()),
                scores.best_layer(),
                fmt(scores.max())
            ));
        });
    } else if mean_column.contains(pointer) {
        response.on_hover_ui_at_pointer(|ui| {
            ui.label(RichText::new(lang.name()).strong());
            ui.label(format!(
                "NeuronXA (mean over layers) = {}",
                fmt(scores.mean())
            ));
            ui.label(format!(
                "max = {} at layer {}",
                fmt(scores.max()),
                scores.best_layer()
            ));
            ui.label(format!("chance = {}", fmt(scores.chance_mean())));
        });
    }
}

/// How values are written into cells of a given size: `0.42` where it fits, `.42` in a smaller
/// font where cells are narrow (30 layers at 1280 px), nothing where even that is unreadable.
struct CellLabels {
    font: FontId,
    compact: bool,
}

impl CellLabels {
    /// Smallest readable label size, in points.
    const MIN_SIZE: f32 = 8.0;

    fn fitting(cell_width: f32, row_height: f32, body_size: f32) -> Option<Self> {
        let by_height = row_height * 0.45;
        // Digits are about 0.55 em wide: "0.42" needs ≈ 2.2 em, ".42" ≈ 1.7 em, plus margins.
        let (size, compact) = if cell_width >= 2.6 * by_height.max(9.0) {
            (by_height.clamp(9.0, body_size), false)
        } else {
            ((cell_width / 2.0).min(by_height).min(body_size), true)
        };
        (size >= Self::MIN_SIZE && row_height >= 12.0).then(|| Self {
            font: FontId::proportional(size),
            compact,
        })
    }

    fn format(&self, v: f64) -> String {
        if !self.compact {
            return format!("{v:.2}");
        }
        // ".42", "1.0", "-.05": two digits after the point, without the leading zero.
        let text = format!("{v:.2}");
        match text.strip_prefix("0.") {
            Some(rest) => format!(".{rest}"),
            None => text
                .strip_prefix("-0.")
                .map_or_else(|| format!("{v:.1}"), |rest| format!("-.{rest}")),
        }
    }
}

/// Values to colours: the whole 0..1 range of μ, or stretched over the values shown.
pub struct Scale {
    pub map: ColorMap,
    pub lo: f64,
    pub hi: f64,
}

impl Scale {
    pub fn new(map: ColorMap, stretch: bool, values: impl Iterator<Item = f64>) -> Self {
        if !stretch {
            return Self {
                map,
                lo: 0.0,
                hi: 1.0,
            };
        }
        let (lo, hi) = values
            .filter(|v| v.is_finite())
            .fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
                (lo.min(v), hi.max(v))
            });
        if lo.is_finite() && hi > lo {
            Self { map, lo, hi }
        } else {
            Self {
                map,
                lo: 0.0,
                hi: 1.0,
            }
        }
    }

    pub fn color(&self, v: f64) -> Color32 {
        self.map.color((v - self.lo) / (self.hi - self.lo))
    }
}

/// Every how many layers a tick fits without overlapping.
pub fn tick_step(cell_width: f32, label_width: f32) -> usize {
    let raw = (label_width / cell_width.max(1.0)).ceil().max(1.0) as usize;
    [1, 2, 5, 10, 20, 50]
        .into_iter()
        .find(|s| *s >= raw)
        .unwrap_or(raw)
}

/// The vertical colour bar from 0 to 1 on the right.
#[allow(clippy::too_many_arguments)]
pub fn legend(
    painter: &egui::Painter,
    area: Rect,
    grid: Rect,
    width: f32,
    scale: &Scale,
    font: &FontId,
    small: &FontId,
    text_color: Color32,
) {
    let bar = Rect::from_min_size(
        Pos2::new(area.right() - width + 8.0, grid.top() + 4.0),
        vec2(16.0, (grid.height() - 8.0).clamp(60.0, 320.0)),
    );
    let steps = 64;
    for i in 0..steps {
        let t0 = i as f32 / steps as f32;
        let t1 = (i + 1) as f32 / steps as f32;
        let rect = Rect::from_min_max(
            Pos2::new(bar.left(), bar.bottom() - t1 * bar.height()),
            Pos2::new(bar.right(), bar.bottom() - t0 * bar.height() + 0.5),
        );
        painter.rect_filled(rect, 0.0, scale.map.color(((t0 + t1) / 2.0) as f64));
    }
    painter.rect_stroke(bar, 0.0, Stroke::new(1.0, text_color), StrokeKind::Outside);
    for t in [0.0, 0.25, 0.5, 0.75, 1.0_f32] {
        let y = bar.bottom() - t * bar.height();
        let value = scale.lo + (scale.hi - scale.lo) * t as f64;
        painter.line_segment(
            [Pos2::new(bar.right(), y), Pos2::new(bar.right() + 4.0, y)],
            Stroke::new(1.0, text_color),
        );
        painter.text(
            Pos2::new(bar.right() + 6.0, y),
            Align2::LEFT_CENTER,
            format!("{value:.2}"),
            small.clone(),
            text_color,
        );
    }
    painter.text(
        Pos2::new(bar.left(), bar.top() - 6.0),
        Align2::LEFT_BOTTOM,
        "μ",
        font.clone(),
        text_color,
    );
}

#[cfg(test)]
mod tests {
    use super::CellLabels;

    #[test]
    fn narrow_cells_get_compact_labels_and_tiny_ones_none() {
        let wide = CellLabels::fitting(60.0, 40.0, 14.0).unwrap();
        assert!(!wide.compact);
        assert_eq!(wide.format(0.4249), "0.42");
        // 30 layers on a 1280 px window: about 20 px per cell.
        let narrow = CellLabels::fitting(20.0, 40.0, 14.0).unwrap();
        assert!(narrow.compact);
        assert_eq!(narrow.format(0.4249), ".42");
        assert_eq!(narrow.format(-0.05), "-.05");
        assert_eq!(narrow.format(1.0), "1.0");
        assert!(CellLabels::fitting(12.0, 40.0, 14.0).is_none());
        assert!(CellLabels::fitting(60.0, 10.0, 14.0).is_none());
    }
}
