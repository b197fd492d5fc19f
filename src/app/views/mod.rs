//! The six views of a run, and what they share.

pub mod compare;
pub mod curves;
pub mod heatmap;
pub mod matrix;
pub mod scatter;
pub mod sentences;

use std::path::Path;

use egui::{RichText, Ui};

use crate::analysis::lang::Lang;
use crate::run::correlate::TaskSeries;
use crate::run::{Method, MethodScores, Run, RunSettings};

use super::command::Command;
use super::state::{ComparedRun, LangProgress, Persisted, Runtime, ViewOptions};
use super::theme::Look;

/// What a language without scores yet is waiting for, in a word or two ("waiting",
/// "computing 16/100", "scoring…"), from the running job's progress.
pub fn pending_label(progress: &[(Lang, LangProgress)], lang: &Lang) -> String {
    match progress.iter().find(|(l, _)| l == lang).map(|(_, p)| p) {
        Some(LangProgress::Waiting) => "waiting".to_string(),
        Some(LangProgress::Running { done, total }) => format!("computing {done}/{total}"),
        Some(LangProgress::Scoring) => "scoring…".to_string(),
        // Its scores are on their way to the window.
        Some(LangProgress::Done { .. }) | None => "computing…".to_string(),
    }
}

/// What a view gets to draw with.
pub struct ViewCtx<'a> {
    pub run: &'a Run,
    /// The settings of the job filling this run in (languages still to come), if any.
    pub pending: Option<&'a RunSettings>,
    /// How far the running job is with each language (empty when none runs).
    pub progress: &'a [(Lang, LangProgress)],
    pub opts: &'a mut ViewOptions,
    pub look: Look,
    pub tasks: &'a [TaskSeries],
    pub compared: &'a [ComparedRun],
    pub queue: &'a mut Vec<Command>,
}

impl ViewCtx<'_> {
    /// The languages of the run in computation order (pivot first), with those the running job
    /// has not finished yet at the end.
    pub fn all_languages(&self) -> Vec<Lang> {
        let mut langs = ordered_languages(&self.run.settings);
        for lang in &self.run.languages {
            if !langs.contains(lang) {
                langs.push(lang.clone());
            }
        }
        if let Some(pending) = self.pending.filter(|_| !self.run.complete) {
            for lang in ordered_languages(pending) {
                if !langs.contains(&lang) {
                    langs.push(lang);
                }
            }
        }
        langs
    }

    /// A stable colour per language across views: its place among the run's languages other
    /// than the pivot; the pivot (when shown) is drawn in the neutral colour.
    pub fn lang_color(&self, lang: &Lang) -> egui::Color32 {
        match self.lang_index(lang) {
            Some(i) => self.look.series(i),
            None => self.look.chance_color(),
        }
    }

    pub fn lang_dashed(&self, lang: &Lang) -> bool {
        self.lang_index(lang)
            .is_some_and(|i| self.look.series_dashed(i))
    }

    fn lang_index(&self, lang: &Lang) -> Option<usize> {
        if lang == self.pivot() {
            return None;
        }
        // The exported plots use the run's order too (`Run::non_pivot_languages`); languages
        // still being computed follow.
        let mut others = self.run.non_pivot_languages();
        for lang in self.all_languages() {
            if lang != *self.pivot() && !others.contains(&lang) {
                others.push(lang);
            }
        }
        Some(
            others
                .iter()
                .position(|l| l == lang)
                .unwrap_or(others.len()),
        )
    }

    pub fn pivot(&self) -> &Lang {
        &self.run.settings.pivot
    }

    /// Scores of the languages shown (pivot only when asked), `None` while still computing.
    pub fn rows(&self, method: Method) -> Vec<(Lang, Option<&MethodScores>)> {
        let mut rows: Vec<(Lang, Option<&MethodScores>)> = self
            .all_languages()
            .into_iter()
            .filter(|l| self.opts.show_pivot || l != self.pivot())
            .map(|l| {
                let scores = self.run.scores(&l, method);
                (l, scores)
            })
            .filter(|(l, s)| s.is_some() || !self.run.languages.contains(l))
            .collect();
        if self.opts.sort_by_mean {
            rows.sort_by(|a, b| {
                let ma = a.1.map_or(f64::NEG_INFINITY, |s| s.mean());
                let mb = b.1.map_or(f64::NEG_INFINITY, |s| s.mean());
                mb.total_cmp(&ma)
            });
        }
        rows
    }

    /// The number of layers a method has in this run (the model's, while nothing is in yet).
    pub fn layers(&self, method: Method) -> usize {
        match self.run.layer_count(method) {
            0 => {
                let layers = self.run.provenance.model.layers;
                match method {
                    Method::MexaPooled | Method::MexaLast => layers + 1,
                    _ => layers,
                }
            }
            n => n,
        }
    }

    /// "layer" or "layer (0 = embeddings)" for hidden-state methods.
    pub fn layer_axis(&self, method: Method) -> &'static str {
        match method {
            Method::MexaPooled | Method::MexaLast => "layer (0 = embeddings)",
            _ => "layer",
        }
    }
}

/// Pivot first, then the chosen languages, without duplicates (the job's order).
pub fn ordered_languages(settings: &RunSettings) -> Vec<Lang> {
    let mut langs = vec![settings.pivot.clone()];
    for lang in &settings.languages {
        if !langs.contains(lang) {
            langs.push(lang.clone());
        }
    }
    langs
}

/// A method selector limited to the run's methods.
pub fn method_combo(ui: &mut Ui, id: &str, run: &Run, method: &mut Method) {
    let methods = run.methods();
    let label = ui.label("Method");
    egui::ComboBox::from_id_salt(id)
        .selected_text(method.label())
        .show_ui(ui, |ui| {
            for m in methods {
                ui.selectable_value(method, m, m.label());
            }
        })
        .response
        .labelled_by(label.id);
}

/// A layer slider with a "mean over layers" switch beside it.
pub fn layer_choice(ui: &mut Ui, layers: usize, layer: &mut usize, mean: &mut bool) {
    ui.checkbox(mean, "Mean over layers");
    if layers > 0 {
        let label = ui.label("Layer");
        ui.add_enabled(
            !*mean,
            egui::Slider::new(layer, 0..=layers.saturating_sub(1)).integer(),
        )
        .labelled_by(label.id);
    }
}

/// Shown before there is any run.
pub fn welcome(ui: &mut Ui, state: &Persisted, rt: &Runtime) {
    ui.vertical_centered(|ui| {
        ui.add_space(ui.available_height() * 0.18);
        ui.heading(RichText::new("NeuronXA Explorer").size(28.0));
        ui.add_space(8.0);
        ui.label(
            "How well does a language model line up languages inside its feed-forward neurons?",
        );
        ui.add_space(16.0);
        if rt.is_running() {
            crate::app::spinner::spinner(ui);
            ui.label(format!("Working: {}", rt.status));
            ui.weak("Results appear here language by language.");
            return;
        }
        let s = &state.settings;
        let ordered = ordered_languages(s);
        let langs: Vec<&str> = ordered.iter().map(|l| l.short()).collect();
        ui.label(format!(
            "Press Run (Ctrl+R) to score {} languages ({}) against {} on {} parallel sentences,",
            langs.len(),
            langs.join(" "),
            s.pivot.name(),
            s.sentences
        ));
        ui.label(format!(
            "with {} on {}.",
            s.methods
                .iter()
                .map(|m| m.label())
                .collect::<Vec<_>>()
                .join(", "),
            s.model.display_name()
        ));
        ui.add_space(8.0);
        ui.weak("Or open a finished run from Open ▸ Recent runs.");
    });
}

/// One line about the run on screen; details (corpus, time, device, file) on hover.
pub fn run_header(ui: &mut Ui, run: &Run, path: Option<&Path>, look: &Look) {
    // Wrapped: on one unbroken line a narrow window would widen the view past its edge and cut
    // off the plot's right side with it.
    ui.horizontal_wrapped(|ui| {
        ui.label(RichText::new(run.model_name()).strong());
        let info = &run.provenance.model;
        ui.weak(format!(
            "{} · {} layers · d_ff {}",
            info.architecture,
            info.layers,
            info.neurons()
        ));
        ui.separator();
        ui.label(format!(
            "pivot {} · {} sentences · {} languages",
            run.settings.pivot.name(),
            run.settings.sentences,
            run.languages.len()
        ));
        if !run.complete {
            ui.separator();
            ui.label(
                RichText::new("partial")
                    .color(look.warning_color())
                    .strong(),
            )
            .on_hover_text("Cancelled, failed or still running: only finished languages are shown");
        }
        if !run.warnings.is_empty() {
            ui.separator();
            ui.label(
                RichText::new(format!("{} warnings", run.warnings.len()))
                    .color(look.warning_color()),
            )
            .on_hover_text(run.warnings.join("\n"));
        }
        ui.separator();
        let mut details = format!(
            "{} · {:.1} s · {}",
            run.provenance.corpus_name, run.provenance.seconds, run.provenance.device
        );
        if let Some(path) = path {
            details.push_str(&format!(" · {}", path.display()));
        }
        let stages = run.provenance.timings.describe();
        let stages = match stages.is_empty() {
            true => String::new(),
            false => format!("\ntime: {stages}"),
        };
        // One tooltip: the elided label's own would repeat the first line of this one.
        ui.add(
            egui::Label::new(RichText::new(&details).weak())
                .truncate()
                .show_tooltip_when_elided(false),
        )
        .on_hover_text(format!("{details}{stages}\n{}", capture_summary(run)));
    });
}

/// The run's capture choices in words, for the header's hover.
fn capture_summary(run: &Run) -> String {
    let capture = &run.settings.capture;
    let special = if capture.skip_special_tokens {
        "skipped"
    } else {
        "kept"
    };
    let nav = capture.nav_source.label_for(run.provenance.model.mlp_gated);
    let mut text = format!(
        "pooling: {} · special tokens {special} · NAV on {nav}",
        capture.pooling.label()
    );
    if run.provenance.model.experts.is_some() {
        text.push_str(&format!(
            " · experts pooled over {}",
            capture.expert_pooling.label()
        ));
    }
    text
}

/// A value as the views print it.
pub fn fmt(v: f64) -> String {
    if v.is_finite() {
        format!("{v:.3}")
    } else {
        "—".into()
    }
}

/// Width of a column of language names (the widest name plus a margin), for grid views.
pub(crate) fn name_column_width<'a>(
    painter: &egui::Painter,
    langs: impl Iterator<Item = &'a crate::analysis::lang::Lang>,
    font: &egui::FontId,
    color: egui::Color32,
) -> f32 {
    langs
        .map(|l| {
            painter
                .layout_no_wrap(l.name().to_string(), font.clone(), color)
                .size()
                .x
        })
        .fold(0.0, f32::max)
        + 12.0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pending_row_says_how_far_its_language_is() {
        let [en, fr, de, ja] = ["en", "fr", "de", "ja"].map(|code| Lang::parse(code).unwrap());
        let progress = vec![
            (en.clone(), LangProgress::Done { from_cache: false }),
            (
                fr.clone(),
                LangProgress::Running {
                    done: 16,
                    total: 100,
                },
            ),
            (de.clone(), LangProgress::Scoring),
            (ja.clone(), LangProgress::Waiting),
        ];
        assert_eq!(pending_label(&progress, &fr), "computing 16/100");
        assert_eq!(pending_label(&progress, &de), "scoring…");
        assert_eq!(pending_label(&progress, &ja), "waiting");
        assert_eq!(pending_label(&progress, &en), "computing…");
        // A language the job does not report on (none runs) is still on its way.
        assert_eq!(pending_label(&[], &ja), "computing…");
    }
}
