//! The sentence pairs of one language at one layer: matched (mutual nearest neighbours) or not,
//! and for unmatched pairs which sentence the pivot sentence matched instead.

use egui::{RichText, Ui, vec2};

use super::{ViewCtx, method_combo};
use crate::analysis::lang::Lang;
use crate::run::{Method, Run};

/// One row of the table (also the CSV export).
#[derive(Debug, Clone, PartialEq)]
pub struct PairRow {
    pub index: usize,
    pub pivot_text: String,
    pub text: String,
    pub matched: bool,
    /// The language sentence nearest to the pivot sentence, when it is not its translation.
    pub nearest: Option<(usize, String)>,
}

pub fn pair_rows(run: &Run, lang: &Lang, method: Method, layer: usize) -> Vec<PairRow> {
    let empty = Vec::new();
    let pivot = run.sentences.get(&run.settings.pivot).unwrap_or(&empty);
    let texts = run.sentences.get(lang).unwrap_or(&empty);
    let scores = run.scores(lang, method);
    let matched = scores.and_then(|s| s.matched.get(layer));
    let nearest = scores.and_then(|s| s.nearest.get(layer));
    (0..pivot.len().min(texts.len()))
        .map(|i| {
            let is_matched = matched.and_then(|m| m.get(i)).copied().unwrap_or(false);
            let near = nearest
                .and_then(|n| n.get(i))
                .map(|&j| j as usize)
                .filter(|&j| j != i)
                .map(|j| (j, texts.get(j).cloned().unwrap_or_default()));
            PairRow {
                index: i,
                pivot_text: pivot[i].clone(),
                text: texts[i].clone(),
                matched: is_matched,
                nearest: near,
            }
        })
        .collect()
}

pub fn show(ui: &mut Ui, cx: &mut ViewCtx) {
    let langs: Vec<Lang> = cx
        .run
        .languages
        .iter()
        .filter(|l| *l != cx.pivot())
        .cloned()
        .collect();
    let method = cx.opts.method;
    let layers = cx.run.layer_count(method);
    ui.horizontal_wrapped(|ui| {
        let label = ui.label("Language");
        let selected = cx
            .opts
            .sentences_lang
            .as_ref()
            .map_or("—".to_string(), |l| l.name().to_string());
        egui::ComboBox::from_id_salt("sentences-lang")
            .selected_text(selected)
            .show_ui(ui, |ui| {
                for lang in &langs {
                    let chosen = ui
                        .selectable_value(
                            &mut cx.opts.sentences_lang,
                            Some(lang.clone()),
                            lang.name(),
                        )
                        .clicked();
                    // A new language starts at the layer where it aligns best.
                    if chosen && let Some(scores) = cx.run.scores(lang, method) {
                        cx.opts.sentences_layer = scores.best_layer();
                    }
                }
            })
            .response
            .labelled_by(label.id);
        ui.separator();
        method_combo(ui, "sentences-method", cx.run, &mut cx.opts.method);
        ui.separator();
        if layers > 0 {
            let label = ui.label("Layer");
            ui.add(egui::Slider::new(&mut cx.opts.sentences_layer, 0..=layers - 1).integer())
                .labelled_by(label.id);
            let best = cx
                .opts
                .sentences_lang
                .as_ref()
                .and_then(|l| cx.run.scores(l, method))
                .map(|s| s.best_layer());
            if let Some(best) = best
                && ui
                    .button("Best layer")
                    .on_hover_text(format!("Layer {best}, where this language aligns best"))
                    .clicked()
            {
                cx.opts.sentences_layer = best;
            }
        }
        ui.checkbox(&mut cx.opts.sentences_only_unmatched, "Only unmatched");
    });
    let Some(lang) = cx.opts.sentences_lang.clone().filter(|l| langs.contains(l)) else {
        ui.label("No language besides the pivot has results yet.");
        return;
    };
    let layer = cx.opts.sentences_layer.min(layers.saturating_sub(1));
    let rows = pair_rows(cx.run, &lang, method, layer);
    let matched = rows.iter().filter(|r| r.matched).count();
    ui.label(format!(
        "{matched} of {} pairs are mutual nearest neighbours at layer {layer} ({} · {} → {})",
        rows.len(),
        method.label(),
        cx.pivot().name(),
        lang.name()
    ));
    ui.add_space(4.0);

    let ok = cx.look.ok_color();
    let bad = cx.look.error_color();
    let weak = ui.visuals().weak_text_color();
    let width = ui.available_width();
    let number_width = 34.0;
    let mark_width = 96.0;
    let text_width = ((width - number_width - mark_width - 40.0) / 3.0).max(120.0);
    let header = |ui: &mut Ui, text: &str, w: f32| {
        ui.allocate_ui(vec2(w, 18.0), |ui| {
            ui.set_width(w);
            ui.strong(text);
        });
    };
    ui.horizontal(|ui| {
        header(ui, "#", number_width);
        header(ui, &format!("{} (pivot)", cx.pivot().name()), text_width);
        header(ui, lang.name(), text_width);
        header(ui, "mutual NN", mark_width);
        header(ui, "matched instead", text_width);
    });
    ui.separator();
    egui::ScrollArea::vertical()
        .auto_shrink([false, false])
        .show(ui, |ui| {
            for row in rows
                .iter()
                .filter(|r| !cx.opts.sentences_only_unmatched || !r.matched)
            {
                ui.horizontal_top(|ui| {
                    let cell = |ui: &mut Ui, w: f32, add: &dyn Fn(&mut Ui)| {
                        ui.allocate_ui(vec2(w, 0.0), |ui| {
                            ui.set_width(w);
                            add(ui);
                        });
                    };
                    cell(ui, number_width, &|ui| {
                        ui.label(RichText::new((row.index + 1).to_string()).color(weak));
                    });
                    cell(ui, text_width, &|ui| {
                        ui.add(egui::Label::new(&row.pivot_text).wrap());
                    });
                    cell(ui, text_width, &|ui| {
                        ui.add(egui::Label::new(&row.text).wrap());
                    });
                    cell(ui, mark_width, &|ui| {
                        if row.matched {
                            ui.label(RichText::new("✓ matched").color(ok));
                        } else {
                            ui.label(RichText::new("✗ unmatched").color(bad));
                        }
                    });
                    cell(ui, text_width, &|ui| match (&row.nearest, row.matched) {
                        (_, true) => {}
                        (Some((j, text)), false) => {
                            ui.add(
                                egui::Label::new(
                                    RichText::new(format!("#{}: {text}", j + 1)).color(weak),
                                )
                                .wrap(),
                            );
                        }
                        (None, false) => {
                            ui.add(
                                egui::Label::new(
                                    RichText::new(
                                        "nearest is its own translation, but not mutually \
                                         (another pivot sentence is closer to it)",
                                    )
                                    .color(weak)
                                    .italics(),
                                )
                                .wrap(),
                            );
                        }
                    });
                });
                ui.separator();
            }
        });
}
