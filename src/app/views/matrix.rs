//! Language × language matrix at a chosen layer or averaged over layers.

use egui::{Align2, FontId, Pos2, Rect, RichText, Sense, Stroke, StrokeKind, Ui, vec2};

use super::heatmap::{Scale, legend};
use super::{ViewCtx, fmt, layer_choice, method_combo};
use crate::app::theme::ColorMap;

pub fn show(ui: &mut Ui, cx: &mut ViewCtx) {
    let method = cx.opts.method;
    let layers = cx
        .run
        .matrices
        .get(&method)
        .map_or(0, |m| m.per_layer.len());
    ui.horizontal_wrapped(|ui| {
        method_combo(ui, "matrix-method", cx.run, &mut cx.opts.method);
        ui.separator();
        layer_choice(
            ui,
            layers,
            &mut cx.opts.matrix_layer,
            &mut cx.opts.matrix_mean,
        );
        ui.separator();
        ui.checkbox(&mut cx.opts.stretch_colors, "Stretch colours")
            .on_hover_text(
                "Map the lowest to the highest value off the diagonal onto the whole colour \
                 scale (off: 0 to 1)",
            );
    });
    ui.add_space(4.0);
    let Some(matrix) = cx.run.matrices.get(&method) else {
        ui.label("No language × language matrix for this method.");
        return;
    };
    let grid_values = if cx.opts.matrix_mean {
        matrix.mean_over_layers()
    } else {
        matrix
            .per_layer
            .get(cx.opts.matrix_layer)
            .cloned()
            .unwrap_or_default()
    };
    let langs = &matrix.languages;
    let n = langs.len();
    if n == 0 || grid_values.len() < n {
        ui.label("The matrix is empty.");
        return;
    }
    let where_ = if cx.opts.matrix_mean {
        "mean over layers".to_string()
    } else {
        format!("layer {}", cx.opts.matrix_layer)
    };

    let font = egui::TextStyle::Body.resolve(ui.style());
    let small = egui::TextStyle::Small.resolve(ui.style());
    let text_color = ui.visuals().text_color();
    let weak = ui.visuals().weak_text_color();
    let scale = Scale::new(
        cx.look.color_map,
        cx.opts.stretch_colors,
        grid_values.iter().enumerate().flat_map(|(i, row)| {
            row.iter()
                .enumerate()
                .filter(move |(j, _)| *j != i)
                .map(|(_, v)| *v)
        }),
    );
    let (response, painter) = ui.allocate_painter(ui.available_size(), Sense::hover());
    let area = response.rect;
    let label_width = super::name_column_width(&painter, langs.iter(), &font, text_color);
    let legend_width = 84.0;
    let top = font.size + 14.0;
    let side = ((area.width() - label_width - legend_width - 8.0).min(area.height() - top - 24.0)
        / n as f32)
        .clamp(12.0, 90.0);
    let grid = Rect::from_min_size(
        Pos2::new(area.left() + label_width, area.top() + top),
        vec2(side * n as f32, side * n as f32),
    );
    let value_font = FontId::proportional((side * 0.28).clamp(9.0, font.size));
    for (i, a) in langs.iter().enumerate() {
        painter.text(
            Pos2::new(grid.left() - 8.0, grid.top() + (i as f32 + 0.5) * side),
            Align2::RIGHT_CENTER,
            a.name(),
            font.clone(),
            text_color,
        );
        painter.text(
            Pos2::new(grid.left() + (i as f32 + 0.5) * side, grid.top() - 4.0),
            Align2::CENTER_BOTTOM,
            a.short(),
            font.clone(),
            text_color,
        );
        for j in 0..n {
            let v = grid_values[i].get(j).copied().unwrap_or(f64::NAN);
            let rect = Rect::from_min_size(
                Pos2::new(grid.left() + j as f32 * side, grid.top() + i as f32 * side),
                vec2(side, side),
            );
            let color = scale.color(v);
            painter.rect_filled(rect, 0.0, color);
            if i == j {
                painter.rect_stroke(
                    rect.shrink(1.0),
                    0.0,
                    Stroke::new(1.0, weak),
                    StrokeKind::Inside,
                );
            }
            if side >= 30.0 {
                painter.text(
                    rect.center(),
                    Align2::CENTER_CENTER,
                    format!("{v:.2}"),
                    value_font.clone(),
                    ColorMap::text_on(color),
                );
            }
        }
    }
    painter.text(
        Pos2::new(grid.left(), grid.bottom() + 8.0),
        Align2::LEFT_TOP,
        format!(
            "{} · {where_} · rows and columns: languages",
            method.label()
        ),
        small.clone(),
        weak,
    );
    let legend_area = Rect::from_min_max(
        area.min,
        Pos2::new(grid.right() + legend_width, area.bottom()),
    );
    legend(
        &painter,
        legend_area,
        grid,
        legend_width,
        &scale,
        &font,
        &small,
        text_color,
    );

    if let Some(pointer) = response.hover_pos()
        && grid.contains(pointer)
    {
        let i = (((pointer.y - grid.top()) / side) as usize).min(n - 1);
        let j = (((pointer.x - grid.left()) / side) as usize).min(n - 1);
        let rect = Rect::from_min_size(
            Pos2::new(grid.left() + j as f32 * side, grid.top() + i as f32 * side),
            vec2(side, side),
        );
        painter.rect_stroke(rect, 0.0, Stroke::new(2.0, text_color), StrokeKind::Inside);
        let v = grid_values[i].get(j).copied().unwrap_or(f64::NAN);
        let (a, b) = (&langs[i], &langs[j]);
        response.on_hover_ui_at_pointer(|ui| {
            ui.label(RichText::new(format!("{} ↔ {}", a.name(), b.name())).strong());
            ui.label(format!("{where_}: μ = {}", fmt(v)));
            if i == j {
                ui.weak("a language against itself");
            }
        });
    }
}
