//! Several runs (or the methods of one run) side by side: overlaid mean-per-layer curves and a
//! table of means.

use egui::{RichText, Ui, vec2};
use egui_plot::{Corner, HoverPosition, Legend, Line, LineStyle, Plot, PlotPoints};

use super::{ViewCtx, fmt};
use crate::app::command::{Command, DialogPurpose};
use crate::app::state::CompareMode;
use crate::run::{Method, Run};

/// NeuronXA (mean over layers) averaged over the languages other than the pivot.
pub fn headline(run: &Run, method: Method) -> f64 {
    let values: Vec<f64> = run
        .languages
        .iter()
        .filter(|lang| **lang != run.settings.pivot)
        .filter_map(|lang| run.scores(lang, method).map(|s| s.mean()))
        .collect();
    crate::run::mean(&values)
}

/// The runs on show: the current one first.
pub fn entries<'a>(cx: &'a ViewCtx) -> Vec<(String, &'a Run)> {
    let mut entries = vec![(format!("current: {}", cx.run.model_name()), cx.run)];
    for c in cx.compared {
        entries.push((c.label.clone(), &c.run));
    }
    entries
}

pub fn show(ui: &mut Ui, cx: &mut ViewCtx) {
    ui.horizontal_wrapped(|ui| {
        ui.radio_value(&mut cx.opts.compare_mode, CompareMode::Runs, "Runs");
        ui.radio_value(&mut cx.opts.compare_mode, CompareMode::Methods, "Methods of this run");
        ui.separator();
        if cx.opts.compare_mode == CompareMode::Runs {
            let mut methods: Vec<Method> = cx.run.methods();
            for c in cx.compared {
                for m in c.run.methods() {
                    if !methods.contains(&m) {
                        methods.push(m);
                    }
                }
            }
            methods.sort();
            let label = ui.label("Method");
            egui::ComboBox::from_id_salt("compare-method")
                .selected_text(cx.opts.method.label())
                .show_ui(ui, |ui| {
                    for m in methods {
                        ui.selectable_value(&mut cx.opts.method, m, m.label());
                    }
                })
                .response
                .labelled_by(label.id);
        }
        ui.checkbox(&mut cx.opts.compare_relative_depth, "x: relative depth")
            .on_hover_text("Layer / (layers − 1), so models of different depth line up");
        ui.checkbox(&mut cx.opts.stretch_colors, "Stretch y to the data")
            .on_hover_text("Off: the y axis always runs from 0 to 1");
        ui.separator();
        if ui.button("Add run.json…").clicked() {
            cx.queue.push(Command::OpenDialog(DialogPurpose::CompareRun));
        }
        if ui
            .button("Keep current run")
            .on_hover_text("Put a copy of the current run in the comparison, e.g. before changing a setting and running again")
            .clicked()
        {
            cx.queue.push(Command::CompareCurrent);
        }
    });
    ui.add_space(4.0);

    let relative = cx.opts.compare_relative_depth;
    let width = cx.look.line_width();
    let mut curves: Vec<(String, Vec<f64>, egui::Color32, bool)> = Vec::new();
    match cx.opts.compare_mode {
        CompareMode::Runs => {
            for (i, (label, run)) in entries(cx).into_iter().enumerate() {
                let curve = run.mean_curve(cx.opts.method);
                if !curve.is_empty() {
                    curves.push((label, curve, cx.look.series(i), cx.look.series_dashed(i)));
                }
            }
        }
        CompareMode::Methods => {
            for (i, method) in cx.run.methods().into_iter().enumerate() {
                curves.push((
                    method.label().to_string(),
                    cx.run.mean_curve(method),
                    cx.look.series(i),
                    cx.look.series_dashed(i),
                ));
            }
        }
    }

    let available = ui.available_size();
    let table_height = (available.y * 0.34).clamp(110.0, 260.0);
    Plot::new("compare")
        .grid_color(cx.look.grid_color())
        .height(available.y - table_height - 8.0)
        .legend(
            Legend::default()
                .position(Corner::RightTop)
                .follow_insertion_order(true),
        )
        .x_axis_label(if relative {
            "relative depth (layer / last layer)"
        } else {
            "layer"
        })
        .y_axis_label("mean μ over languages")
        .include_y(0.0)
        .include_y(if cx.opts.stretch_colors { 0.0 } else { 1.0 })
        .allow_scroll(false)
        .label_formatter(|pos: &HoverPosition<'_>| match pos {
            HoverPosition::NearDataPoint {
                plot_name,
                position,
                ..
            } => Some(format!(
                "{plot_name}\nx = {:.2}\nmean μ = {:.3}",
                position.x, position.y
            )),
            HoverPosition::Elsewhere { .. } => None,
        })
        .show(ui, |plot_ui| {
            for (label, curve, color, dashed) in &curves {
                let last = curve.len().saturating_sub(1).max(1) as f64;
                let points: Vec<[f64; 2]> = curve
                    .iter()
                    .enumerate()
                    .map(|(l, v)| [if relative { l as f64 / last } else { l as f64 }, *v])
                    .collect();
                let mut line = Line::new(label.clone(), PlotPoints::from(points))
                    .color(*color)
                    .width(width);
                if *dashed {
                    line = line.style(LineStyle::dashed_dense());
                }
                plot_ui.line(line);
            }
        });

    ui.add_space(6.0);
    ui.allocate_ui(vec2(available.x, table_height), |ui| {
        means_table(ui, cx);
    });
}

fn means_table(ui: &mut Ui, cx: &mut ViewCtx) {
    let entries: Vec<(String, Run)> = entries(cx)
        .into_iter()
        .map(|(l, r)| (l, r.clone()))
        .collect();
    let methods: Vec<Method> = Method::ALL
        .into_iter()
        .filter(|m| entries.iter().any(|(_, r)| r.methods().contains(m)))
        .collect();
    ui.label(
        RichText::new(
            "Mean over layers and languages (NeuronXA, averaged over the non-pivot languages)",
        )
        .strong(),
    );
    egui::ScrollArea::both().show(ui, |ui| {
        egui::Grid::new("compare-table")
            .striped(true)
            .spacing([14.0, 4.0])
            .show(ui, |ui| {
                ui.strong("run");
                ui.strong("languages")
                    .on_hover_text("Besides the pivot: the ones the means average over");
                ui.strong("sentences");
                for m in &methods {
                    ui.strong(m.label());
                }
                ui.label("");
                ui.end_row();
                for (i, (label, run)) in entries.iter().enumerate() {
                    ui.label(RichText::new(label).color(cx.look.series(i)));
                    let others = run
                        .languages
                        .iter()
                        .filter(|lang| **lang != run.settings.pivot)
                        .count();
                    ui.label(others.to_string());
                    ui.label(run.settings.sentences.to_string());
                    for m in &methods {
                        ui.label(fmt(headline(run, *m)));
                    }
                    if i > 0 {
                        if ui.small_button("remove").clicked() {
                            cx.queue.push(Command::RemoveCompared(i - 1));
                        }
                    } else {
                        ui.label("");
                    }
                    ui.end_row();
                }
            });
        if cx.compared.is_empty() {
            ui.add_space(6.0);
            ui.weak(
                "Add runs with \"Add run.json…\", Open ▸ Recent runs ▸ compare, or \"Keep current run\" \
                 before running again with other settings.",
            );
        }
    });
}
