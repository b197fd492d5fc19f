//! The left "Setup" panel: model, corpus and languages, methods, capture and compute settings,
//! and the big Run button.

use egui::{RichText, Ui};

use crate::analysis::corpus::Sample;
use crate::engine::{
    DTypeChoice, DeviceChoice, ExpertPooling, ModelSource, NavSource, Pooling, hub,
};
use crate::run::{CorpusChoice, Method};

use super::command::{Command, DialogPurpose, model_text};
use super::state::{CorpusState, ModelCheck, Persisted, Runtime};

pub fn panel(ui: &mut Ui, state: &mut Persisted, rt: &Runtime, queue: &mut Vec<Command>) {
    egui::Panel::left("setup")
        .resizable(true)
        .default_size(330.0)
        .size_range(260.0..=560.0)
        .show(ui, |ui| {
            ui.add_space(4.0);
            ui.heading("Setup");
            ui.add_space(4.0);
            run_button(ui, rt, queue);
            ui.add_space(4.0);
            ui.separator();
            egui::ScrollArea::vertical()
                .auto_shrink([false, false])
                .show(ui, |ui| {
                    let running = rt.is_running();
                    ui.add_enabled_ui(!running, |ui| {
                        model_section(ui, state, rt, queue);
                        ui.separator();
                        corpus_section(ui, state, rt, queue);
                        ui.separator();
                        methods_section(ui, state);
                        ui.separator();
                        capture_section(ui, state, rt, queue);
                    });
                    if running {
                        ui.add_space(6.0);
                        ui.weak("Settings are locked while a run is going on.");
                    }
                });
        });
}

fn run_button(ui: &mut Ui, rt: &Runtime, queue: &mut Vec<Command>) {
    let text_size = body_size(ui) * 1.5;
    let size = egui::vec2(ui.available_width(), text_size * 2.0);
    if rt.is_running() {
        let label = if rt.cancelling {
            "Cancelling…"
        } else {
            "Cancel"
        };
        let button = egui::Button::new(RichText::new(label).size(text_size * 0.9).strong());
        if ui
            .add_enabled_ui(!rt.cancelling, |ui| ui.add_sized(size, button))
            .inner
            .on_hover_text("Stop after the current batch; finished languages are kept (Esc)")
            .clicked()
        {
            queue.push(Command::Cancel);
        }
    } else {
        let fill = ui.visuals().selection.bg_fill;
        let button = egui::Button::new(
            RichText::new("Run")
                .size(text_size)
                .strong()
                .color(ui.visuals().strong_text_color()),
        )
        .fill(fill);
        if ui
            .add_sized(size, button)
            .on_hover_text("Measure alignment with these settings (Ctrl+R)")
            .clicked()
        {
            queue.push(Command::StartRun);
        }
    }
}

/// Body size, so that titles grow with presentation mode.
fn body_size(ui: &Ui) -> f32 {
    egui::TextStyle::Body.resolve(ui.style()).size
}

fn section_title(ui: &mut Ui, text: &str) {
    ui.add_space(2.0);
    let size = body_size(ui) * 1.15;
    ui.label(RichText::new(text).strong().size(size));
}

fn model_section(ui: &mut Ui, state: &mut Persisted, rt: &Runtime, queue: &mut Vec<Command>) {
    section_title(ui, "Model");
    let label = ui.label("Folder, .gguf file, Hugging Face id or \"demo\":");
    let edit = ui
        .add(
            egui::TextEdit::singleline(&mut state.model_text)
                .hint_text("demo")
                .desired_width(f32::INFINITY),
        )
        .labelled_by(label.id);
    let entered =
        edit.lost_focus() || (edit.has_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter)));
    if entered {
        let source = ModelSource::parse(&state.model_text);
        if source != state.settings.model {
            queue.push(Command::ModelChosen(source));
        }
    }
    ui.horizontal(|ui| {
        ui.menu_button("Browse…", |ui| {
            if ui.button("Model folder…").clicked() {
                queue.push(Command::OpenDialog(DialogPurpose::ModelFolder));
                ui.close();
            }
            if ui.button("GGUF file…").clicked() {
                queue.push(Command::OpenDialog(DialogPurpose::ModelFile));
                ui.close();
            }
        });
        ui.menu_button("Known models", |ui| {
            let demo = ModelSource::Gguf(hub::demo_model_path());
            let demo_state = if hub::demo_model_present() {
                "present"
            } else {
                "fetched on first run, ~93 MB"
            };
            if ui
                .button(format!("Demo: SmolLM2-135M ({demo_state})"))
                .clicked()
            {
                queue.push(Command::ModelChosen(demo));
                ui.close();
            }
            ui.separator();
            ui.label(RichText::new("Hugging Face cache").strong());
            if rt.hf_models.is_empty() {
                ui.weak("no models with config.json found");
            }
            for model in &rt.hf_models {
                match &model.architecture {
                    Ok(architecture) => {
                        let button = ui.button(&model.id).on_hover_text(format!(
                            "{architecture}, in {}",
                            model.folder.display()
                        ));
                        if button.clicked() {
                            queue.push(Command::ModelChosen(ModelSource::Hub(model.id.clone())));
                            ui.close();
                        }
                    }
                    // Listed, so that nobody wonders where it went, but not offered.
                    Err(why) => {
                        ui.add_enabled(false, egui::Button::new(&model.id))
                            .on_disabled_hover_text(why);
                    }
                }
            }
            ui.separator();
            ui.label(RichText::new("Recent").strong());
            if state.recent_models.is_empty() {
                ui.weak("none yet");
            }
            for spec in &state.recent_models {
                if ui.button(spec).clicked() {
                    queue.push(Command::ModelChosen(ModelSource::parse(spec)));
                    ui.close();
                }
            }
        });
    });
    let error = ui.visuals().error_fg_color;
    match &rt.model_check {
        ModelCheck::Unknown => {}
        ModelCheck::Checking(_) => {
            ui.horizontal(|ui| {
                crate::app::spinner::spinner(ui);
                ui.weak("recognising…");
            });
        }
        ModelCheck::Recognised {
            info,
            config,
            device,
            ..
        } => {
            ui.add(egui::Label::new(RichText::new(&info.name).strong()).wrap());
            ui.add(egui::Label::new(info.summary()).wrap())
                .on_hover_ui(|ui| {
                    ui.label(config.anatomy().join("\n"));
                });
            match device {
                Ok(label) => ui.add(egui::Label::new(format!("Device: {label}")).wrap()),
                Err(message) => {
                    ui.add(egui::Label::new(RichText::new(message).color(error)).wrap())
                }
            };
        }
        ModelCheck::Problem { source, message } => {
            let demo_missing = matches!(source, ModelSource::Gguf(p) if *p == hub::demo_model_path())
                && !hub::demo_model_present();
            if demo_missing {
                ui.add(
                    egui::Label::new(
                        "The demo model (SmolLM2-135M, Q4_1) is not on this computer yet: \
                         Run fetches it once (about 93 MB) and shows the download in the status bar.",
                    )
                    .wrap(),
                );
            } else {
                ui.add(egui::Label::new(RichText::new(message).color(error)).wrap());
            }
        }
    }
    if model_text(&state.settings.model) != state.model_text.trim() && !edit.has_focus() {
        ui.weak("Press Enter to use the typed model.");
    }
}

fn corpus_section(ui: &mut Ui, state: &mut Persisted, rt: &Runtime, queue: &mut Vec<Command>) {
    section_title(ui, "Corpus and languages");
    ui.horizontal_wrapped(|ui| {
        let bundled = state.settings.corpus == CorpusChoice::Bundled;
        if ui
            .radio(bundled, "Bundled")
            .on_hover_text("200 parallel sentences in ten languages, shipped with the program")
            .clicked()
            && !bundled
        {
            queue.push(Command::CorpusChosen(CorpusChoice::Bundled));
        }
        if ui
            .button("File…")
            .on_hover_text("A parallel corpus file (TSV/CSV/JSON)")
            .clicked()
        {
            queue.push(Command::OpenDialog(DialogPurpose::CorpusFile));
        }
        if ui
            .button("FLORES folder…")
            .on_hover_text("A folder with one file per language (e.g. FLORES-200 devtest)")
            .clicked()
        {
            queue.push(Command::OpenDialog(DialogPurpose::CorpusFolder));
        }
    });
    if let CorpusChoice::Path(path) = &state.settings.corpus {
        ui.add(egui::Label::new(RichText::new(path.display().to_string()).small()).wrap());
    }
    let summary = match &rt.corpus {
        CorpusState::Unknown => return,
        CorpusState::Loading(_) => {
            ui.horizontal(|ui| {
                crate::app::spinner::spinner(ui);
                ui.weak("reading the corpus…");
            });
            return;
        }
        CorpusState::Failed(_, message) => {
            ui.add(
                egui::Label::new(RichText::new(message).color(ui.visuals().error_fg_color)).wrap(),
            );
            return;
        }
        CorpusState::Ready(_, summary) => summary,
    };
    ui.horizontal(|ui| {
        ui.weak(format!(
            "{} · {} languages",
            summary.name,
            summary.languages.len()
        ));
        ui.with_layout(egui::Layout::right_to_left(egui::Align::Center), |ui| {
            if ui
                .small_button("None")
                .on_hover_text("Only the pivot")
                .clicked()
            {
                state.settings.languages = vec![state.settings.pivot.clone()];
            }
            if ui.small_button("All").clicked() {
                state.settings.languages =
                    summary.languages.iter().map(|(l, _)| l.clone()).collect();
            }
        });
    });
    let settings = &mut state.settings;
    egui::Grid::new("languages")
        .num_columns(2)
        .spacing([12.0, 2.0])
        .show(ui, |ui| {
            for (lang, count) in &summary.languages {
                let is_pivot = *lang == settings.pivot;
                let mut checked = is_pivot || settings.languages.contains(lang);
                let response =
                    ui.add_enabled(!is_pivot, egui::Checkbox::new(&mut checked, lang.name()));
                let response = if is_pivot {
                    response.on_disabled_hover_text("The pivot is always part of the run")
                } else {
                    response
                };
                if response.changed() {
                    if checked {
                        // Keep the corpus order.
                        let order: Vec<_> = summary.languages.iter().map(|(l, _)| l).collect();
                        settings.languages.push(lang.clone());
                        settings.languages.sort_by_key(|l| {
                            order.iter().position(|o| *o == l).unwrap_or(usize::MAX)
                        });
                    } else {
                        settings.languages.retain(|l| l != lang);
                    }
                }
                ui.weak(format!("{} · {count}", lang.code()));
                ui.end_row();
            }
        });

    ui.add_space(4.0);
    egui::Grid::new("corpus-options")
        .num_columns(2)
        .spacing([8.0, 4.0])
        .show(ui, |ui| {
            let label = ui.label("Pivot");
            egui::ComboBox::from_id_salt("pivot")
                .selected_text(settings.pivot.name())
                .show_ui(ui, |ui| {
                    for (lang, _) in &summary.languages {
                        ui.selectable_value(&mut settings.pivot, lang.clone(), lang.name());
                    }
                })
                .response
                .labelled_by(label.id);
            ui.end_row();

            let max = summary
                .languages
                .iter()
                .filter(|(l, _)| settings.languages.contains(l) || *l == settings.pivot)
                .map(|(_, n)| *n)
                .min()
                .unwrap_or(1)
                .max(1);
            let label = ui.label("Sentences");
            ui.add(egui::DragValue::new(&mut settings.sentences).range(1..=max))
                .labelled_by(label.id)
                .on_hover_text(format!(
                    "Parallel sentences per language (the paper: 100; at most {max} here)"
                ));
            ui.end_row();

            ui.label("Sample");
            ui.horizontal(|ui| {
                let first = matches!(settings.sample, Sample::First);
                if ui.radio(first, "first").clicked() {
                    settings.sample = Sample::First;
                }
                if ui
                    .radio(!first, "random")
                    .on_hover_text("Drawn with a seed, the same sentences in every language")
                    .clicked()
                    && first
                {
                    settings.sample = Sample::Random { seed: 0 };
                }
                if let Sample::Random { seed } = &mut settings.sample {
                    ui.label("seed");
                    ui.add(egui::DragValue::new(seed));
                }
            });
            ui.end_row();
        });
}

fn methods_section(ui: &mut Ui, state: &mut Persisted) {
    section_title(ui, "Methods");
    let methods = &mut state.settings.methods;
    for method in Method::ALL {
        let mut on = methods.contains(&method);
        let hint = match method {
            Method::Nas => "Binary neuron states 1[a > 0] (the paper's headline, NASCA)",
            Method::Nav => "Neuron activation values |a| (NAVCA)",
            Method::MexaPooled => "MEXA baseline: hidden states, pooled like the neurons",
            Method::MexaLast => "MEXA baseline: hidden state of the last token",
        };
        if ui
            .checkbox(&mut on, method.label())
            .on_hover_text(hint)
            .changed()
        {
            if on {
                methods.push(method);
                methods.sort();
            } else {
                methods.retain(|m| *m != method);
            }
        }
    }
    if methods.is_empty() {
        ui.colored_label(ui.visuals().error_fg_color, "Choose at least one method.");
    }
}

fn capture_section(ui: &mut Ui, state: &mut Persisted, rt: &Runtime, queue: &mut Vec<Command>) {
    section_title(ui, "Capture and compute");
    let settings = &mut state.settings;
    egui::Grid::new("capture")
        .num_columns(2)
        .spacing([8.0, 4.0])
        .show(ui, |ui| {
            let label = ui.label("Pooling");
            egui::ComboBox::from_id_salt("pooling")
                .selected_text(settings.capture.pooling.label())
                .show_ui(ui, |ui| {
                    for pooling in Pooling::ALL {
                        ui.selectable_value(&mut settings.capture.pooling, pooling, pooling.label());
                    }
                })
                .response
                .labelled_by(label.id);
            ui.end_row();

            ui.label("Special tokens");
            ui.checkbox(&mut settings.capture.skip_special_tokens, "skip (BOS, …)")
                .on_hover_text("Drop tokens the tokenizer inserts before pooling (default: keep them, as MEXA does)");
            ui.end_row();

            let label = ui.label("NAV source");
            let ungated = match &rt.model_check {
                ModelCheck::Recognised { info, config, .. } if !config.mlp_gated => Some(info),
                _ => None,
            };
            let name = |source: NavSource| source.label_for(ungated.is_none());
            ui.horizontal(|ui| {
                egui::ComboBox::from_id_salt("nav-source")
                    .selected_text(name(settings.capture.nav_source))
                    .show_ui(ui, |ui| {
                        for source in [NavSource::Activation, NavSource::ActivationTimesUp] {
                            ui.selectable_value(&mut settings.capture.nav_source, source, name(source));
                        }
                    })
                    .response
                    .labelled_by(label.id);
                if let Some(info) = ungated {
                    ui.weak("same here")
                        .on_hover_text(format!(
                            "{} has no gated MLP: what goes on to the down projection is the \
                             activation itself, so both sources give the same NAV",
                            info.architecture
                        ));
                }
            });
            ui.end_row();

            // Only where it means something: a mixture of experts.
            if let ModelCheck::Recognised { config, .. } = &rt.model_check
                && config.experts.is_some()
            {
                let label = ui.label("Experts");
                egui::ComboBox::from_id_salt("expert-pooling")
                    .selected_text(settings.capture.expert_pooling.label())
                    .show_ui(ui, |ui| {
                        for reading in ExpertPooling::ALL {
                            ui.selectable_value(
                                &mut settings.capture.expert_pooling,
                                reading,
                                reading.label(),
                            );
                        }
                    })
                    .response
                    .labelled_by(label.id)
                    .on_hover_text(
                        "How an expert's neurons are pooled over a sentence: over all its \
                         tokens, inactive (0) where the router did not send the token to the \
                         expert (so the states also say which experts the sentence used), or \
                         over the tokens routed to it only (how its neurons behave where it \
                         runs).",
                    );
                ui.end_row();
            }

            let label = ui.label("Batch size");
            ui.add(
                egui::DragValue::new(&mut settings.batch_size)
                    .range(0..=512)
                    .custom_formatter(|n, _| {
                        if n < 0.5 {
                            "auto".into()
                        } else {
                            format!("{n:.0}")
                        }
                    })
                    .custom_parser(|text| {
                        crate::engine::memory::parse_batch_size(text)
                            .ok()
                            .map(|n| n as f64)
                    }),
            )
            .on_hover_text(format!(
                "Sentences per forward pass. 0 = auto: what fits the GPU's free memory ({} on the CPU)",
                crate::engine::memory::CPU_AUTO_BATCH
            ))
            .labelled_by(label.id);
            ui.end_row();

            let label = ui.label("Device");
            let before = settings.device;
            egui::ComboBox::from_id_salt("device")
                .selected_text(settings.device.label())
                .show_ui(ui, |ui| {
                    for device in [
                        DeviceChoice::Auto,
                        DeviceChoice::Cpu,
                        DeviceChoice::Cuda(0),
                        DeviceChoice::Metal,
                    ] {
                        ui.selectable_value(&mut settings.device, device, device.label());
                    }
                })
                .response
                .labelled_by(label.id);
            if settings.device != before {
                queue.push(Command::InspectModel);
            }
            ui.end_row();

            let label = ui.label("Dtype");
            egui::ComboBox::from_id_salt("dtype")
                .selected_text(settings.dtype.label())
                .show_ui(ui, |ui| {
                    for dtype in [
                        DTypeChoice::Auto,
                        DTypeChoice::F32,
                        DTypeChoice::F16,
                        DTypeChoice::Bf16,
                    ] {
                        ui.selectable_value(&mut settings.dtype, dtype, dtype.label());
                    }
                })
                .response
                .labelled_by(label.id);
            ui.end_row();

            let label = ui.label("Proxy sentences");
            ui.add(egui::DragValue::new(&mut settings.proxy_sentences).range(0..=1000))
                .labelled_by(label.id)
                .on_hover_text(
                    "Held-out sentences per language for the bits-per-byte capability proxy \
                     (0 = off). A proxy, not a benchmark.",
                );
            ui.end_row();
        });
}
