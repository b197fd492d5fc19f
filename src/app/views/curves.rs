//! One curve per language over the layers, with the chance level; hover shows exact values.

use egui::{RichText, Ui, vec2};
use egui_plot::{Corner, HoverPosition, Legend, Line, LineStyle, Plot, PlotPoints};

use super::{ViewCtx, fmt, method_combo};

pub fn show(ui: &mut Ui, cx: &mut ViewCtx) {
    ui.horizontal_wrapped(|ui| {
        method_combo(ui, "curves-method", cx.run, &mut cx.opts.method);
        ui.separator();
        ui.checkbox(&mut cx.opts.show_chance, "Chance level");
        ui.checkbox(&mut cx.opts.show_pivot, "Show pivot");
        ui.checkbox(&mut cx.opts.sort_by_mean, "Sort table by mean");
        ui.checkbox(&mut cx.opts.stretch_colors, "Stretch y to the data")
            .on_hover_text("Off: the y axis always runs from 0 to 1");
    });
    ui.add_space(4.0);
    let method = cx.opts.method;
    let rows: Vec<_> = cx
        .rows(method)
        .into_iter()
        .filter_map(|(l, s)| s.map(|s| (l, s)))
        .collect();
    if rows.is_empty() {
        ui.label("No scores for this method yet.");
        return;
    }
    let layers = cx.layers(method);
    let width = cx.look.line_width();

    // Chance: the shuffled-pairs baseline, averaged over the non-pivot languages, per layer.
    let chance: Vec<[f64; 2]> = cx
        .run
        .chance_curve(method)
        .into_iter()
        .enumerate()
        .map(|(l, v)| [l as f64, v])
        .collect();

    let available = ui.available_size();
    let table_width = 285.0_f32.min(available.x * 0.32);
    ui.horizontal_top(|ui| {
        ui.allocate_ui(vec2(available.x - table_width - 12.0, available.y), |ui| {
            let plot = Plot::new("curves")
                .grid_color(cx.look.grid_color())
                .legend(
                    Legend::default()
                        .position(legend_corner(
                            // The pivot against itself is a flat line at 1, high in both
                            // corners: the other curves decide.
                            rows.iter()
                                .filter(|(lang, _)| lang != cx.pivot())
                                .map(|(_, s)| s.per_layer.as_slice()),
                        ))
                        .follow_insertion_order(true),
                )
                .x_axis_label(cx.layer_axis(method))
                .y_axis_label("μ: fraction of mutual nearest neighbours")
                .include_y(0.0)
                .include_y(if cx.opts.stretch_colors { 0.0 } else { 1.0 })
                .include_x(0.0)
                .include_x(layers.saturating_sub(1) as f64)
                .allow_scroll(false)
                .label_formatter(|pos: &HoverPosition<'_>| match pos {
                    HoverPosition::NearDataPoint {
                        plot_name,
                        position,
                        ..
                    } => Some(format!(
                        "{plot_name}\nlayer {:.0}\nμ = {:.3}",
                        position.x, position.y
                    )),
                    HoverPosition::Elsewhere { .. } => None,
                });
            plot.show(ui, |plot_ui| {
                for (lang, scores) in &rows {
                    let points: Vec<[f64; 2]> = scores
                        .per_layer
                        .iter()
                        .enumerate()
                        .map(|(l, v)| [l as f64, *v])
                        .collect();
                    let mut line = Line::new(lang.name(), PlotPoints::from(points))
                        .color(cx.lang_color(lang))
                        .width(width);
                    if cx.lang_dashed(lang) {
                        line = line.style(LineStyle::dashed_dense());
                    }
                    plot_ui.line(line);
                }
                if cx.opts.show_chance {
                    plot_ui.line(
                        Line::new("chance (shuffled pairs)", PlotPoints::from(chance.clone()))
                            .color(cx.look.chance_color())
                            .width(width * 0.8)
                            .style(LineStyle::dashed_loose()),
                    );
                }
            });
        });
        ui.allocate_ui(vec2(table_width, available.y), |ui| {
            ui.vertical(|ui| {
                ui.label(RichText::new("Per language").strong());
                let mut sorted = rows.clone();
                if cx.opts.sort_by_mean {
                    sorted.sort_by(|a, b| b.1.mean().total_cmp(&a.1.mean()));
                }
                egui::ScrollArea::vertical().show(ui, |ui| {
                    egui::Grid::new("curves-table")
                        .num_columns(4)
                        .striped(true)
                        .spacing([8.0, 3.0])
                        .show(ui, |ui| {
                            ui.strong("language");
                            ui.strong("mean");
                            ui.strong("max");
                            ui.strong("at");
                            ui.end_row();
                            for (lang, s) in &sorted {
                                ui.label(RichText::new(lang.name()).color(cx.lang_color(lang)));
                                ui.label(fmt(s.mean()));
                                ui.label(fmt(s.max()));
                                ui.label(s.best_layer().to_string());
                                ui.end_row();
                            }
                            ui.weak("chance");
                            ui.weak(fmt(crate::run::mean(
                                &chance.iter().map(|p| p[1]).collect::<Vec<_>>(),
                            )));
                            ui.end_row();
                        });
                });
            });
        });
    });
}

/// The top corner whose third of the layers has the lower curves, so the legend covers as little
/// of the data as it can (alignment usually peaks in the middle or late layers, so often the left).
fn legend_corner<'a>(curves: impl Iterator<Item = &'a [f64]> + Clone) -> Corner {
    let peak = |range: fn(usize) -> std::ops::Range<usize>| {
        curves
            .clone()
            .flat_map(|c| c[range(c.len())].iter().copied())
            .filter(|v| v.is_finite())
            .fold(f64::NEG_INFINITY, f64::max)
    };
    let left = peak(|n| 0..n / 3);
    let right = peak(|n| n - n / 3..n);
    if left < right {
        Corner::LeftTop
    } else {
        Corner::RightTop
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_legend_goes_where_the_curves_are_low() {
        let late_peak = [0.0, 0.01, 0.0, 0.1, 0.2, 0.1, 0.3, 0.25, 0.2];
        let early_peak = [0.3, 0.25, 0.2, 0.1, 0.2, 0.1, 0.0, 0.01, 0.0];
        assert_eq!(legend_corner([&late_peak[..]].into_iter()), Corner::LeftTop);
        assert_eq!(
            legend_corner([&early_peak[..]].into_iter()),
            Corner::RightTop
        );
        // No data: the usual place.
        assert_eq!(
            legend_corner(std::iter::empty::<&[f64]>()),
            Corner::RightTop
        );
    }
}
