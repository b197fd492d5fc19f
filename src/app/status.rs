//! The status bar (progress per language and overall, tokens/s, ETA, Cancel) and the log panel.

use std::time::Duration;

use egui::{RichText, Ui};

use super::command::Command;
use super::state::{LangProgress, Level, Outcome, Persisted, Runtime};

/// "1 warning", "3 warnings".
pub fn plural(n: usize, word: &str) -> String {
    if n == 1 {
        format!("1 {word}")
    } else {
        format!("{n} {word}s")
    }
}

pub fn format_duration(d: Duration) -> String {
    let s = d.as_secs();
    if s >= 3600 {
        format!("{}:{:02}:{:02}", s / 3600, (s / 60) % 60, s % 60)
    } else {
        format!("{}:{:02}", s / 60, s % 60)
    }
}

pub fn status_bar(ui: &mut Ui, state: &Persisted, rt: &Runtime, queue: &mut Vec<Command>) {
    let look = state.look();
    egui::Panel::bottom("status").show(ui, |ui| {
        ui.add_space(3.0);
        ui.horizontal(|ui| {
            let (warnings, errors) = rt.warnings_and_errors();
            let log_label = if errors > 0 {
                RichText::new(format!("Log ({})", plural(errors, "error")))
                    .color(look.error_color())
            } else if warnings > 0 {
                RichText::new(format!("Log ({})", plural(warnings, "warning")))
                    .color(look.warning_color())
            } else {
                RichText::new("Log")
            };
            if ui
                .selectable_label(state.show_log, log_label)
                .on_hover_text("Every status line, warning and error")
                .clicked()
            {
                queue.push(Command::ToggleLog);
            }
            ui.separator();
            if rt.is_running() {
                running(ui, rt, queue);
            } else {
                idle(ui, rt, &look);
            }
        });
        if rt.is_running() && !rt.lang_progress.is_empty() {
            ui.horizontal_wrapped(|ui| {
                for (lang, progress) in &rt.lang_progress {
                    let (fraction, text, done_cached) = match progress {
                        LangProgress::Waiting => (0.0, "waiting".to_string(), false),
                        LangProgress::Running { done, total } => (
                            *done as f32 / (*total).max(1) as f32,
                            format!("{done}/{total}"),
                            false,
                        ),
                        LangProgress::Scoring => (1.0, "scoring".to_string(), false),
                        LangProgress::Done { from_cache } => (
                            1.0,
                            if *from_cache { "cached" } else { "done" }.to_string(),
                            *from_cache,
                        ),
                    };
                    ui.label(RichText::new(lang.short()).monospace());
                    let mut bar = egui::ProgressBar::new(fraction)
                        .desired_width(64.0)
                        .desired_height(14.0)
                        .text(RichText::new(text).small());
                    match progress {
                        LangProgress::Done { .. } => {
                            bar = bar.fill(if done_cached {
                                look.chance_color()
                            } else {
                                look.ok_color()
                            });
                        }
                        // No coloured sliver before a language has started.
                        LangProgress::Waiting => bar = bar.fill(ui.visuals().extreme_bg_color),
                        LangProgress::Running { .. } | LangProgress::Scoring => {}
                    }
                    ui.add(bar).on_hover_text(lang.name());
                    ui.add_space(6.0);
                }
            });
        }
        ui.add_space(3.0);
    });
}

fn running(ui: &mut Ui, rt: &Runtime, queue: &mut Vec<Command>) {
    crate::app::spinner::spinner(ui);
    // Languages reopened from the cache send no progress: count them as done.
    let done = rt
        .lang_progress
        .iter()
        .filter(|(_, p)| matches!(p, LangProgress::Done { .. }))
        .count();
    let by_language = done as f32 / rt.lang_progress.len().max(1) as f32;
    // Once computing starts, progress counts tokens over every language, cached ones included.
    let fraction = rt
        .progress
        .as_ref()
        .map_or(by_language, |p| p.fraction as f32);
    let mut text = match &rt.progress {
        Some(p) => {
            let mut t = format!(
                "{:.0}% · {} ({}/{}) · {}/{} sentences",
                p.fraction * 100.0,
                p.language.name(),
                p.language_index + 1,
                p.language_count,
                p.sentences_done,
                p.sentences_total
            );
            if p.tokens_per_second > 0.0 {
                t.push_str(&format!(" · {:.0} tokens/s", p.tokens_per_second));
            }
            if let Some(eta) = p.eta {
                t.push_str(&format!(" · ETA {}", format_duration(eta)));
            }
            t
        }
        None => format!("{:.0}% · {}", fraction * 100.0, rt.status),
    };
    if rt.cancelling {
        text = format!("cancelling… {text}");
    }
    let cancel_width = 90.0;
    let width = (ui.available_width() - cancel_width - 260.0).max(160.0);
    ui.add(
        egui::ProgressBar::new(fraction)
            .desired_width(width)
            .text(text),
    );
    let status = if rt.progress.is_some() {
        rt.status.clone()
    } else {
        String::new()
    };
    ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
        if ui
            .add_enabled(!rt.cancelling, egui::Button::new("Cancel"))
            .on_hover_text("Stop after the current batch; finished languages are kept (Esc)")
            .clicked()
        {
            queue.push(Command::Cancel);
        }
        if let Some(started) = rt.job_started {
            ui.weak(format_duration(started.elapsed()));
        }
        ui.add(egui::Label::new(RichText::new(status).weak()).truncate());
    });
}

fn idle(ui: &mut Ui, rt: &Runtime, look: &super::theme::Look) {
    let color = match &rt.outcome {
        Some(Outcome::Failed(_)) => look.error_color(),
        Some(Outcome::Cancelled) => look.warning_color(),
        _ => ui.visuals().text_color(),
    };
    let text = if rt.status.is_empty() {
        "Ready. Press Run (Ctrl+R).".to_string()
    } else {
        rt.status.clone()
    };
    ui.add(egui::Label::new(RichText::new(text).color(color)).truncate());
    if rt.exporting > 0 {
        ui.separator();
        crate::app::spinner::spinner(ui);
        ui.weak("exporting…");
    }
}

pub fn log_panel(ui: &mut Ui, state: &mut Persisted, rt: &Runtime, queue: &mut Vec<Command>) {
    let look = state.look();
    egui::Panel::bottom("log")
        .resizable(true)
        .default_size(160.0)
        .size_range(80.0..=500.0)
        .show(ui, |ui| {
            ui.horizontal(|ui| {
                ui.label(RichText::new("Log").strong());
                if ui.small_button("Clear").clicked() {
                    queue.push(Command::ClearLog);
                }
                if ui.small_button("Copy").clicked() {
                    let text: Vec<String> = rt
                        .log
                        .iter()
                        .map(|l| format!("[{:7.1}s] {:?}: {}", l.at, l.level, l.text))
                        .collect();
                    ui.ctx().copy_text(text.join("\n"));
                }
                ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
                    if ui.small_button("Hide").clicked() {
                        state.show_log = false;
                    }
                });
            });
            ui.separator();
            egui::ScrollArea::vertical()
                .stick_to_bottom(true)
                .auto_shrink([false, false])
                .show(ui, |ui| {
                    for line in &rt.log {
                        let color = match line.level {
                            Level::Error => look.error_color(),
                            Level::Warning => look.warning_color(),
                            Level::Info => ui.visuals().text_color(),
                        };
                        ui.horizontal_top(|ui| {
                            ui.label(
                                RichText::new(format!("{:7.1}s", line.at))
                                    .monospace()
                                    .weak(),
                            );
                            ui.add(egui::Label::new(RichText::new(&line.text).color(color)).wrap());
                        });
                    }
                });
        });
}
