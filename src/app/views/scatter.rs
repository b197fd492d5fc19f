//! Alignment against task accuracy (an imported CSV) or the built-in bits-per-byte proxy, with
//! the least-squares line, Pearson r, p, 95% CI, Spearman ρ, and r at every layer beside it.

use egui::{Align2, RichText, Ui, vec2};
use egui_plot::{
    HLine, HoverPosition, Line, LineStyle, MarkerShape, Plot, PlotPoint, PlotPoints, Points, Text,
    VLine,
};

use super::{ViewCtx, fmt, layer_choice, method_combo};
use crate::analysis::stats::MIN_POINTS;
use crate::app::command::{Command, DialogPurpose, PROXY_SENTENCES};
use crate::run::correlate::{self, TaskSeries};

/// The task series the scatter can use: imported tasks, then the proxy when the run has it.
pub fn available_series(cx: &ViewCtx) -> Vec<TaskSeries> {
    let mut series: Vec<TaskSeries> = cx.tasks.to_vec();
    if !cx.run.proxy_bits_per_byte.is_empty() {
        series.push(correlate::proxy_series(cx.run));
    }
    series
}

/// The chosen series (by name), else the first.
pub fn chosen_series(cx: &ViewCtx) -> Option<TaskSeries> {
    let series = available_series(cx);
    let by_name = cx
        .opts
        .scatter_task
        .as_ref()
        .and_then(|name| series.iter().find(|s| &s.name == name).cloned());
    by_name.or_else(|| series.into_iter().next())
}

/// Bootstrap resamples for the confidence interval shown (cheap for a handful of languages).
const BOOTSTRAP: usize = 1000;

pub fn show(ui: &mut Ui, cx: &mut ViewCtx) {
    let method = cx.opts.method;
    let layers = cx.run.layer_count(method);
    let series = available_series(cx);
    let task = chosen_series(cx);
    ui.horizontal_wrapped(|ui| {
        method_combo(ui, "scatter-method", cx.run, &mut cx.opts.method);
        ui.separator();
        let label = ui.label("Against");
        let selected = task.as_ref().map_or("—".to_string(), |t| t.name.clone());
        egui::ComboBox::from_id_salt("scatter-task")
            .selected_text(selected)
            .show_ui(ui, |ui| {
                for s in &series {
                    let text = if s.is_proxy {
                        format!("{} — proxy, not a benchmark", s.name)
                    } else {
                        s.name.clone()
                    };
                    if ui
                        .selectable_label(task.as_ref().is_some_and(|t| t.name == s.name), text)
                        .clicked()
                    {
                        cx.opts.scatter_task = Some(s.name.clone());
                    }
                }
            })
            .response
            .labelled_by(label.id);
        if ui
            .button("Import task CSV…")
            .on_hover_text("A CSV with a language column and one column of accuracies per task")
            .clicked()
        {
            cx.queue.push(Command::OpenDialog(DialogPurpose::Tasks));
        }
    });
    ui.horizontal(|ui| {
        ui.label("Alignment:");
        layer_choice(
            ui,
            layers,
            &mut cx.opts.scatter_layer,
            &mut cx.opts.scatter_mean,
        );
    });
    ui.add_space(4.0);

    let Some(task) = task else {
        ui.add_space(20.0);
        ui.label(
            "Nothing to correlate with yet. Import a CSV of task accuracies per language \
             (e.g. Belebele, m-MMLU, XNLI), or compute the built-in bits-per-byte proxy: how \
             well the model predicts held-out sentences of each language (a proxy, not a \
             benchmark).",
        );
        ui.add_space(8.0);
        let running = cx.pending.is_some();
        let button = ui
            .add_enabled(
                !running,
                egui::Button::new(format!(
                    "Compute the proxy (up to {PROXY_SENTENCES} held-out sentences per language)"
                )),
            )
            .on_hover_text(
                "Runs this run's settings again with \"Proxy sentences\" set: the neuron states \
                 come from the cache, only bits per byte is computed",
            );
        if button.clicked() {
            cx.queue.push(Command::ComputeProxy);
        }
        return;
    };
    if task.is_proxy {
        ui.label(
            RichText::new(
                "y: bits per byte on held-out sentences — a capability proxy, not a benchmark \
                 (lower is better, so expect a negative r).",
            )
            .color(cx.look.warning_color()),
        )
        .on_hover_text(
            "Per UTF-8 byte: a script that takes two or three bytes per character (Cyrillic, \
             Arabic, Devanagari, CJK) has more bytes per sentence than Latin, which lowers its \
             bits per byte. Compare languages of one script, or import task accuracies.",
        );
    }
    let running = cx.pending.is_some();
    let layer = (!cx.opts.scatter_mean).then_some(cx.opts.scatter_layer);
    let pairs = correlate::paired_values(cx.run, method, layer, &task);
    if pairs.is_empty() {
        let waiting = if running {
            "No language has both values yet; they are being computed."
        } else {
            "No language of this run has both an alignment and a value in this series."
        };
        ui.add_space(20.0);
        ui.label(RichText::new(waiting).color(ui.visuals().weak_text_color()));
        return;
    }
    let stats = safe_correlate(cx.run, method, layer, &task, BOOTSTRAP);
    // One resample is the least `correlate` takes; only r is read here.
    let r_layers: Vec<f64> = (0..layers)
        .map(|l| {
            safe_correlate(cx.run, method, Some(l), &task, 1).map_or(f64::NAN, |c| c.pearson_r)
        })
        .collect();
    let x_label = match layer {
        Some(l) => format!("{} at layer {l}", method.label()),
        None => format!("{} (mean over layers)", method.label()),
    };
    let y_label = task.name.clone();

    let available = ui.available_size();
    let side_width = 300.0_f32.min(available.x * 0.34);
    let radius = cx.look.marker_radius();
    let width = cx.look.line_width();
    ui.horizontal_top(|ui| {
        ui.allocate_ui(vec2(available.x - side_width - 12.0, available.y), |ui| {
            let text_color = ui.visuals().text_color();
            Plot::new("scatter")
                .grid_color(cx.look.grid_color())
                .x_axis_label(x_label.clone())
                .y_axis_label(y_label.clone())
                .allow_scroll(false)
                .set_margin_fraction(vec2(0.12, 0.12))
                .label_formatter(|pos: &HoverPosition<'_>| match pos {
                    HoverPosition::NearDataPoint {
                        plot_name,
                        position,
                        ..
                    } if !plot_name.is_empty() => Some(format!(
                        "{plot_name}\nalignment = {:.3}\ntask = {:.3}",
                        position.x, position.y
                    )),
                    _ => None,
                })
                .show(ui, |plot_ui| {
                    if let (Ok(c), Some((lo, hi))) = (&stats, x_range(&pairs)) {
                        let (slope, intercept) = (c.slope, c.intercept);
                        plot_ui.line(
                            Line::new(
                                "",
                                PlotPoints::from(vec![
                                    [lo, intercept + slope * lo],
                                    [hi, intercept + slope * hi],
                                ]),
                            )
                            .color(cx.look.chance_color())
                            .width(width * 0.8)
                            .style(LineStyle::dashed_loose())
                            .allow_hover(false),
                        );
                    }
                    for (lang, x, y) in &pairs {
                        plot_ui.points(
                            Points::new(lang.name(), PlotPoints::from(vec![[*x, *y]]))
                                .color(cx.lang_color(lang))
                                .radius(radius)
                                .shape(MarkerShape::Circle),
                        );
                        plot_ui.text(
                            Text::new(
                                "",
                                PlotPoint::new(*x, *y),
                                RichText::new(format!("  {}", lang.short())).color(text_color),
                            )
                            .anchor(Align2::LEFT_BOTTOM)
                            .allow_hover(false),
                        );
                    }
                });
        });
        ui.allocate_ui(vec2(side_width, available.y), |ui| {
            ui.vertical(|ui| {
                ui.label(RichText::new("Correlation").strong());
                match &stats {
                    Ok(c) => {
                        egui::Grid::new("scatter-stats")
                            .num_columns(2)
                            .spacing([10.0, 3.0])
                            .show(ui, |ui| {
                                ui.label("languages");
                                ui.label(c.n.to_string());
                                ui.end_row();
                                ui.label("Pearson r");
                                ui.label(RichText::new(fmt(c.pearson_r)).strong());
                                ui.end_row();
                                ui.label("p (t-test)");
                                ui.label(fmt_p(c.p_value));
                                ui.end_row();
                                ui.label("95% CI (Fisher z)");
                                ui.label(format!(
                                    "[{}, {}]",
                                    fmt(c.ci95_fisher.0),
                                    fmt(c.ci95_fisher.1)
                                ));
                                ui.end_row();
                                ui.label("95% CI (bootstrap)");
                                ui.label(format!(
                                    "[{}, {}]",
                                    fmt(c.bootstrap_ci95.0),
                                    fmt(c.bootstrap_ci95.1)
                                ));
                                ui.end_row();
                                ui.label("least squares");
                                ui.label(line_equation(c.intercept, c.slope));
                                ui.end_row();
                                ui.label("Spearman ρ");
                                ui.label(format!(
                                    "{} (p {})",
                                    fmt(c.spearman_rho),
                                    fmt_p(c.spearman_p)
                                ));
                                ui.end_row();
                            });
                    }
                    // Too few languages yet is a state, not a failure (e.g. while the proxy runs).
                    Err(_) if pairs.len() < MIN_POINTS => {
                        let more = if running {
                            " More are being computed."
                        } else {
                            ""
                        };
                        ui.add(
                            egui::Label::new(
                                RichText::new(format!(
                                    "Pearson r needs at least {} languages with both values; {} so far.{more}",
                                    MIN_POINTS,
                                    pairs.len()
                                ))
                                .color(ui.visuals().weak_text_color()),
                            )
                            .wrap(),
                        );
                    }
                    Err(e) => {
                        ui.add(
                            egui::Label::new(RichText::new(e).color(cx.look.error_color())).wrap(),
                        );
                    }
                }
                if r_layers.iter().all(|r| !r.is_finite()) {
                    return;
                }
                ui.add_space(8.0);
                ui.label(RichText::new("Pearson r at every layer").strong());
                let chosen = layer;
                Plot::new("r-per-layer")
                    .grid_color(cx.look.grid_color())
                    .height((available.y - 170.0).clamp(120.0, 320.0))
                    .x_axis_label("layer")
                    .y_axis_label("r")
                    .include_y(-1.0)
                    .include_y(1.0)
                    .allow_scroll(false)
                    .allow_drag(false)
                    .allow_zoom(false)
                    .label_formatter(|pos: &HoverPosition<'_>| match pos {
                        HoverPosition::NearDataPoint { position, .. } => {
                            Some(format!("layer {:.0}\nr = {:.3}", position.x, position.y))
                        }
                        HoverPosition::Elsewhere { .. } => None,
                    })
                    .show(ui, |plot_ui| {
                        plot_ui.hline(HLine::new("", 0.0).color(cx.look.chance_color()).width(1.0));
                        let points: Vec<[f64; 2]> = r_layers
                            .iter()
                            .enumerate()
                            .filter(|(_, r)| r.is_finite())
                            .map(|(l, r)| [l as f64, *r])
                            .collect();
                        plot_ui.line(
                            Line::new("r", PlotPoints::from(points))
                                .color(cx.look.series(0))
                                .width(width),
                        );
                        if let Some(l) = chosen {
                            plot_ui.vline(
                                VLine::new("", l as f64).color(cx.look.series(1)).width(1.0),
                            );
                        }
                    });
            });
        });
    });
}

/// `y = a + b·x`, or `y = a − b·x` for a negative slope.
fn line_equation(intercept: f64, slope: f64) -> String {
    let sign = if slope < 0.0 { '−' } else { '+' };
    format!("y = {intercept:.3} {sign} {:.3}·x", slope.abs())
}

/// `run::correlate::correlate`, refusing values that are constant up to rounding (the t-test
/// has no answer for them) and turning a panic of the statistics code into an error, so the
/// window never goes down over one plot.
pub fn safe_correlate(
    run: &crate::run::Run,
    method: crate::run::Method,
    layer: Option<usize>,
    task: &TaskSeries,
    bootstrap: usize,
) -> Result<crate::analysis::stats::Correlation, String> {
    let pairs = correlate::paired_values(run, method, layer, task);
    // Also true for NaN spreads, which have no correlation either.
    let flat = |values: Vec<f64>| {
        let lo = values.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = values.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let spread = hi - lo;
        spread.is_nan() || spread <= 1e-12 * hi.abs().max(lo.abs()).max(1.0)
    };
    if pairs.len() >= 3 && flat(pairs.iter().map(|p| p.1).collect()) {
        return Err("every language has the same alignment here: no correlation to compute".into());
    }
    if pairs.len() >= 3 && flat(pairs.iter().map(|p| p.2).collect()) {
        return Err(format!(
            "every language has the same {}: no correlation to compute",
            task.name
        ));
    }
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        correlate::correlate(run, method, layer, task, bootstrap)
    }))
    .map_err(|_| "the statistics could not be computed for these values".to_string())?
    .map_err(|e| e.to_string())
}

/// A p-value: three decimals, or scientific notation below 0.001.
pub fn fmt_p(p: f64) -> String {
    if !p.is_finite() {
        "—".into()
    } else if p >= 0.001 {
        format!("{p:.3}")
    } else {
        format!("{p:.1e}")
    }
}

/// The x range of the points (for the least-squares line).
pub fn x_range(pairs: &[(crate::analysis::lang::Lang, f64, f64)]) -> Option<(f64, f64)> {
    let lo = pairs.iter().map(|p| p.1).fold(f64::INFINITY, f64::min);
    let hi = pairs.iter().map(|p| p.1).fold(f64::NEG_INFINITY, f64::max);
    (lo.is_finite() && hi.is_finite()).then_some((lo, hi))
}

#[cfg(test)]
mod tests {
    use super::line_equation;

    #[test]
    fn a_negative_slope_reads_as_a_minus() {
        assert_eq!(line_equation(2.365, -0.32), "y = 2.365 − 0.320·x");
        assert_eq!(line_equation(-0.5, 1.0), "y = -0.500 + 1.000·x");
    }
}
