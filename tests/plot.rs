//! Renders every view of a small synthetic run (invented numbers: tests only) to PNG and SVG and
//! checks the files and the tables behind them.

use std::collections::BTreeMap;

use neuronxa::analysis::lang::Lang;
use neuronxa::plot::{
    Palette, PlotError, PlotSpec, PlotView, TaskSeries, Theme, render_png_bytes, render_svg_string,
    render_to_file, try_view_table, view_table,
};
use neuronxa::run::{Method, MethodScores, PairMatrix, Run};

/// The parts of a `Run` that plots do not read.
mod fixture {
    use std::collections::BTreeMap;

    use neuronxa::analysis::lang::Lang;
    use neuronxa::engine::{Architecture, ModelInfo, ModelSource};
    use neuronxa::run::{
        Method, MethodScores, PairMatrix, Provenance, RUN_FORMAT_VERSION, Run, RunSettings,
    };

    pub fn run(
        model: &str,
        languages: Vec<Lang>,
        layers: usize,
        pivot_scores: BTreeMap<Lang, BTreeMap<Method, MethodScores>>,
        matrices: BTreeMap<Method, PairMatrix>,
        proxy_bits_per_byte: BTreeMap<Lang, f64>,
    ) -> Run {
        let source = ModelSource::Hub(format!("synthetic/{model}"));
        let mut settings = RunSettings::default_for(source.clone());
        settings.languages = languages.clone();
        settings.pivot = languages[0].clone();
        settings.sentences = 100;
        Run {
            format_version: RUN_FORMAT_VERSION,
            settings,
            provenance: Provenance {
                model: ModelInfo {
                    name: model.into(),
                    source,
                    architecture: Architecture::Llama,
                    // Hidden states have one more layer (the embeddings) than the decoder.
                    layers: layers - 1,
                    d_ff: 64,
                    experts: None,
                    shared_d_ff: None,
                    d_model: 16,
                    mlp_gated: true,
                    heads: 2,
                    kv_heads: 2,
                    vocab_size: 100,
                    parameters: 7_000_000_000,
                    storage_dtype: "bf16".into(),
                    fingerprint: "0".repeat(64),
                },
                corpus_name: "synthetic".into(),
                corpus_hash: "0".repeat(64),
                program_version: "test".into(),
                device: "cpu".into(),
                dtype: "f32".into(),
                started_at: 0,
                seconds: 0.0,
                tokens: 0,
                cached_languages: Vec::new(),
                timings: Default::default(),
            },
            languages,
            pivot_scores,
            matrices,
            proxy_bits_per_byte,
            sentences: BTreeMap::new(),
            warnings: Vec::new(),
            complete: true,
        }
    }
}

fn lang(code: &str) -> Lang {
    Lang::parse(code).unwrap()
}

const LAYERS: usize = 6;

/// Made-up per-layer scores: a bump in the middle layers, scaled per language.
fn profile(peak: f64, layers: usize) -> Vec<f64> {
    (0..layers)
        .map(|l| {
            let x = l as f64 / (layers.max(2) - 1) as f64;
            (peak * (1.0 - 1.6 * (x - 0.55) * (x - 0.55))).clamp(0.0, 1.0)
        })
        .map(|v| (v * 100.0).round() / 100.0)
        .collect()
}

fn scores(peak: f64, layers: usize) -> MethodScores {
    MethodScores {
        per_layer: profile(peak, layers),
        chance_per_layer: (0..layers).map(|l| 0.01 + 0.002 * l as f64).collect(),
        p_at_1_forward: profile(peak, layers),
        p_at_1_backward: profile(peak, layers),
        zero_vectors: 0,
        matched: Vec::new(),
        nearest: Vec::new(),
    }
}

/// A run over `langs` (the first is the pivot) with the given peak score per language.
fn make_run(langs: Vec<Lang>, peaks: &[f64], layers: usize) -> Run {
    let mut pivot_scores = BTreeMap::new();
    for (l, &peak) in langs.iter().zip(peaks) {
        let mut per_method = BTreeMap::new();
        per_method.insert(Method::Nas, scores(peak, layers));
        per_method.insert(Method::MexaPooled, scores(peak * 0.9, layers));
        pivot_scores.insert(l.clone(), per_method);
    }
    let n = langs.len();
    let per_layer = (0..layers)
        .map(|layer| {
            (0..n)
                .map(|i| {
                    (0..n)
                        .map(|j| {
                            if i == j {
                                1.0
                            } else {
                                profile(peaks[i].min(peaks[j]), layers)[layer] * 0.97
                            }
                        })
                        .collect()
                })
                .collect()
        })
        .collect();
    let mut matrices = BTreeMap::new();
    matrices.insert(
        Method::Nas,
        PairMatrix {
            languages: langs.clone(),
            per_layer,
        },
    );
    // Bits per byte falls with alignment, with some scatter.
    let noise = [0.0, 0.06, -0.05, 0.04, -0.08, 0.03, -0.02];
    let proxy = langs
        .iter()
        .zip(peaks)
        .enumerate()
        .map(|(i, (l, p))| (l.clone(), 2.4 - 1.3 * p + noise[i % noise.len()]))
        .collect();
    fixture::run("Synthetic-7B", langs, layers, pivot_scores, matrices, proxy)
}

fn synthetic_run() -> Run {
    let langs = ["en", "fr", "de", "sw", "zh"].map(lang).to_vec();
    make_run(langs, &[1.0, 0.92, 0.88, 0.41, 0.63], LAYERS)
}

/// Many languages with long names and many layers.
fn dense_run() -> Run {
    let codes = [
        "eng_Latn", "fra_Latn", "deu_Latn", "spa_Latn", "ita_Latn", "por_Latn", "rus_Cyrl",
        "zho_Hans", "jpn_Jpan", "kor_Hang", "arb_Arab", "hin_Deva", "ben_Beng", "swh_Latn",
        "yor_Latn", "tur_Latn", "vie_Latn", "tha_Thai", "ind_Latn", "pol_Latn", "ukr_Cyrl",
        "nld_Latn", "ell_Grek", "heb_Hebr", "pes_Arab", "urd_Arab", "tam_Taml", "tel_Telu",
        "mar_Deva", "guj_Gujr", "kan_Knda", "mal_Mlym", "pan_Guru", "amh_Ethi", "hau_Latn",
        "ibo_Latn", "zul_Latn", "xho_Latn", "som_Latn", "khm_Khmr",
    ];
    let langs: Vec<Lang> = codes.iter().filter_map(|c| Lang::parse(c).ok()).collect();
    let peaks: Vec<f64> = (0..langs.len())
        .map(|i| {
            if i == 0 {
                1.0
            } else {
                0.95 - 0.8 * ((i * 37) % 41) as f64 / 41.0
            }
        })
        .collect();
    make_run(langs, &peaks, 81)
}

fn spec(view: PlotView) -> PlotSpec {
    PlotSpec {
        view,
        ..PlotSpec::default()
    }
}

#[test]
fn every_view_renders_to_png_and_svg() {
    let run = synthetic_run();
    let dir = tempfile::tempdir().unwrap();
    for view in PlotView::ALL {
        for (i, theme) in Theme::ALL.into_iter().enumerate() {
            let s = PlotSpec {
                theme,
                palette: Palette::ALL[i * 2 % 4],
                scale: if i == 0 { 1.0 } else { 1.5 },
                ..spec(view)
            };
            let png_path = dir
                .path()
                .join(format!("{}-{}.png", view.key(), theme.key()));
            let svg_path = dir
                .path()
                .join(format!("{}-{}.SVG", view.key(), theme.key()));
            render_to_file(&run, &s, &png_path).unwrap();
            render_to_file(&run, &s, &svg_path).unwrap();

            let png = std::fs::read(&png_path).unwrap();
            assert!(png.len() > 10_000, "{view:?}: PNG is {} bytes", png.len());
            let img = image::load_from_memory(&png).unwrap();
            assert_eq!((img.width(), img.height()), s.png_size());
            assert_eq!(
                s.png_size(),
                (
                    (1600.0 * s.scale).round() as u32,
                    (1000.0 * s.scale).round() as u32
                )
            );

            let svg = std::fs::read_to_string(&svg_path).unwrap();
            assert!(svg.starts_with("<?xml") && svg.trim_end().ends_with("</svg>"));
            assert!(svg.contains("width=\"1600\" height=\"1000\""));
            assert!(svg.contains("Synthetic-7B"), "{view:?}: title");
            // Language names (codes on the scatter), as text labels of the outlined glyphs.
            for l in ["fr", "de", "sw", "zh"].map(lang) {
                let shown = if view == PlotView::Scatter {
                    l.short().to_string()
                } else {
                    l.name().to_string()
                };
                assert!(
                    svg.contains(&format!("aria-label=\"{shown}\"")),
                    "{view:?}: {shown}"
                );
            }
            let axis_labels: &[&str] = match view {
                PlotView::Heatmap => &["Layer", "Language", "Alignment score (mutual-NN rate)"],
                PlotView::Layers => &[
                    "Layer",
                    "Alignment score (mutual-NN rate)",
                    "chance (shuffled pairs)",
                ],
                PlotView::Matrix => &["English", "Alignment score (mutual-NN rate)"],
                PlotView::Scatter => &[
                    "NeuronXA (NAS) vs English, mean over layers",
                    "Bits per byte (capability proxy, lower = better)",
                    "Pearson r = ",
                    "Spearman ρ = ",
                ],
            };
            for label in axis_labels {
                assert!(svg.contains(label), "{view:?}: {label}");
            }
            // No system font is referenced: all text is outlines.
            assert!(!svg.contains("<text") && !svg.contains("font-family"));
        }
    }
}

#[test]
fn png_and_svg_in_memory_agree_with_files() {
    let run = synthetic_run();
    let s = spec(PlotView::Heatmap);
    let png = render_png_bytes(&run, &s).unwrap();
    assert_eq!(&png[1..4], b"PNG");
    // 96 dpi recorded in pHYs (3780 px per metre).
    let phys = png.windows(4).position(|w| w == b"pHYs").unwrap();
    assert_eq!(&png[phys + 4..phys + 8], &3780u32.to_be_bytes());
    let svg = render_svg_string(&run, &s).unwrap();
    assert!(svg.contains("aria-label=\"French\""));
}

#[test]
fn unknown_extension_is_an_error() {
    let run = synthetic_run();
    let dir = tempfile::tempdir().unwrap();
    let err = render_to_file(&run, &spec(PlotView::Heatmap), &dir.path().join("plot.jpg"));
    assert!(matches!(err, Err(PlotError::Extension(_))), "{err:?}");
    let err = render_to_file(&run, &spec(PlotView::Heatmap), &dir.path().join("plot"));
    assert!(matches!(err, Err(PlotError::Extension(_))), "{err:?}");
}

fn num(s: &str) -> f64 {
    s.parse().unwrap()
}

#[test]
fn heatmap_table_matches_the_run() {
    let run = synthetic_run();
    let rows = view_table(&run, &spec(PlotView::Heatmap));
    assert_eq!(rows[0][0], "language");
    assert_eq!(rows[0][2], "layer_0");
    assert_eq!(rows[0].last().unwrap(), "mean");
    assert_eq!(rows.len(), 5, "header + 4 non-pivot languages");
    for row in &rows[1..] {
        let l = lang(&row[1]);
        assert_eq!(row[0], l.name());
        let s = run.scores(&l, Method::Nas).unwrap();
        for layer in 0..LAYERS {
            assert_eq!(num(&row[2 + layer]), s.per_layer[layer]);
        }
        assert_eq!(num(&row[2 + LAYERS]), s.mean());
    }
    // Sorted: best mean first.
    let sorted = view_table(
        &run,
        &PlotSpec {
            sort_by_score: true,
            ..spec(PlotView::Heatmap)
        },
    );
    let means: Vec<f64> = sorted[1..].iter().map(|r| num(&r[2 + LAYERS])).collect();
    assert!(means.windows(2).all(|w| w[0] >= w[1]), "{means:?}");
    assert_eq!(sorted[1][0], "French");
}

#[test]
fn layers_table_has_the_chance_column() {
    let run = synthetic_run();
    let rows = view_table(&run, &spec(PlotView::Layers));
    assert_eq!(rows[0][0], "layer");
    assert_eq!(rows[0].last().unwrap(), "chance (shuffled pairs)");
    assert_eq!(rows.len(), 1 + LAYERS);
    let fr = run.scores(&lang("fr"), Method::Nas).unwrap();
    let col = rows[0].iter().position(|h| h == "French").unwrap();
    for layer in 0..LAYERS {
        assert_eq!(num(&rows[1 + layer][col]), fr.per_layer[layer]);
        let chance = num(rows[1 + layer].last().unwrap());
        assert!((chance - (0.01 + 0.002 * layer as f64)).abs() < 1e-12);
    }
}

#[test]
fn matrix_table_at_a_layer_and_averaged() {
    let run = synthetic_run();
    let m = &run.matrices[&Method::Nas];
    let at = view_table(
        &run,
        &PlotSpec {
            layer: Some(2),
            ..spec(PlotView::Matrix)
        },
    );
    assert_eq!(at[0][1], "English");
    for i in 0..5 {
        for j in 0..5 {
            assert_eq!(num(&at[1 + i][1 + j]), m.per_layer[2][i][j]);
        }
    }
    let mean = view_table(&run, &spec(PlotView::Matrix));
    let expect = m.mean_over_layers();
    assert_eq!(num(&mean[2][3]), expect[1][2]);
    let err = try_view_table(
        &run,
        &PlotSpec {
            layer: Some(LAYERS),
            ..spec(PlotView::Matrix)
        },
    );
    assert!(
        matches!(err, Err(PlotError::Layer { layer: 6, count: 6 })),
        "{err:?}"
    );
}

#[test]
fn scatter_uses_the_proxy_or_a_task() {
    let run = synthetic_run();
    let rows = view_table(&run, &spec(PlotView::Scatter));
    assert_eq!(rows.len(), 5);
    for row in &rows[1..] {
        let l = lang(&row[1]);
        assert_eq!(num(&row[2]), run.scores(&l, Method::Nas).unwrap().mean());
        assert_eq!(num(&row[3]), run.proxy_bits_per_byte[&l]);
    }
    let task = TaskSeries {
        name: "Belebele".into(),
        values: ["fr", "de", "sw", "zh"]
            .map(|c| (lang(c), 0.5))
            .into_iter()
            .zip([0.81, 0.78, 0.35, 0.66])
            .map(|((l, _), v)| (l, v))
            .collect(),
        is_proxy: false,
    };
    let s = PlotSpec {
        task: Some(task),
        layer: Some(3),
        ..spec(PlotView::Scatter)
    };
    let rows = view_table(&run, &s);
    assert_eq!(rows[0][3], "Belebele");
    assert_eq!(
        num(&rows[1][2]),
        run.scores(&lang("fr"), Method::Nas).unwrap().per_layer[3]
    );
    let svg = render_svg_string(&run, &s).unwrap();
    assert!(svg.contains("aria-label=\"Belebele\""));
    assert!(!svg.contains("proxy"));
}

#[test]
fn scatter_with_two_languages_is_an_error() {
    let run = synthetic_run();
    let task = TaskSeries {
        name: "XNLI".into(),
        values: [("fr", 0.8), ("de", 0.7)]
            .into_iter()
            .map(|(c, v)| (lang(c), v))
            .collect(),
        is_proxy: false,
    };
    let s = PlotSpec {
        task: Some(task),
        ..spec(PlotView::Scatter)
    };
    let err = render_png_bytes(&run, &s);
    assert!(
        matches!(&err, Err(PlotError::TooFewLanguages { found: 2, .. })),
        "{err:?}"
    );
    let message = err.err().map(|e| e.to_string()).unwrap_or_default();
    assert!(message.contains("at least 3 languages"), "{message}");
    assert!(view_table(&run, &s).is_empty());
}

#[test]
fn scatter_with_a_constant_task_still_draws() {
    let run = synthetic_run();
    let task = TaskSeries {
        name: "Constant".into(),
        values: ["fr", "de", "sw"]
            .map(|c| (lang(c), 0.5))
            .into_iter()
            .collect(),
        is_proxy: false,
    };
    let s = PlotSpec {
        task: Some(task),
        ..spec(PlotView::Scatter)
    };
    let svg = render_svg_string(&run, &s).unwrap();
    assert!(svg.contains("No correlation: "), "the reason is shown");
    assert!(!svg.contains("Pearson"));
}

#[test]
fn missing_method_and_bad_sizes_are_errors() {
    let run = synthetic_run();
    let s = PlotSpec {
        method: Method::Nav,
        ..spec(PlotView::Layers)
    };
    assert!(matches!(
        render_svg_string(&run, &s),
        Err(PlotError::NoData(_))
    ));
    let s = PlotSpec {
        width: 10,
        ..spec(PlotView::Layers)
    };
    assert!(matches!(
        render_png_bytes(&run, &s),
        Err(PlotError::Size { .. })
    ));
    let s = PlotSpec {
        scale: f32::NAN,
        ..spec(PlotView::Layers)
    };
    assert!(matches!(
        render_png_bytes(&run, &s),
        Err(PlotError::Size { .. })
    ));
}

#[test]
fn mexa_layers_count_the_embeddings() {
    let run = synthetic_run();
    let s = PlotSpec {
        method: Method::MexaPooled,
        ..spec(PlotView::Heatmap)
    };
    let svg = render_svg_string(&run, &s).unwrap();
    // The fixture's model has LAYERS − 1 decoder layers, so MEXA's 6 are embeddings + 5.
    assert!(svg.contains("Layer (0 = embeddings)"));
}

/// Writes preview PNGs when NEURONXA_PLOT_PREVIEW names a folder (for looking at them).
#[test]
fn previews() {
    let Some(dir) = std::env::var_os("NEURONXA_PLOT_PREVIEW") else {
        return;
    };
    let dir = std::path::PathBuf::from(dir);
    std::fs::create_dir_all(&dir).unwrap();
    let run = synthetic_run();
    for view in PlotView::ALL {
        for theme in Theme::ALL {
            for palette in Palette::ALL {
                let s = PlotSpec {
                    theme,
                    palette,
                    ..spec(view)
                };
                let name = format!("{}-{}-{}", view.key(), theme.key(), palette.key());
                render_to_file(&run, &s, &dir.join(format!("{name}.png"))).unwrap();
                render_to_file(&run, &s, &dir.join(format!("{name}.svg"))).unwrap();
            }
        }
    }
    for view in PlotView::ALL {
        let print = PlotSpec {
            scale: 3.125,
            ..spec(view)
        };
        let started = std::time::Instant::now();
        render_to_file(
            &run,
            &print,
            &dir.join(format!("300dpi-{}.png", view.key())),
        )
        .unwrap();
        eprintln!("{} at 300 dpi: {:?}", view.key(), started.elapsed());
    }
    let dense = dense_run();
    for view in PlotView::ALL {
        let s = spec(view);
        render_to_file(&dense, &s, &dir.join(format!("dense-{}.png", view.key()))).unwrap();
        let small = PlotSpec {
            width: 800,
            height: 500,
            scale: 2.0,
            ..spec(view)
        };
        render_to_file(&run, &small, &dir.join(format!("small-{}.png", view.key()))).unwrap();
        render_to_file(
            &dense,
            &small,
            &dir.join(format!("dense-small-{}.png", view.key())),
        )
        .unwrap();
    }
}

#[test]
fn dense_runs_render() {
    let run = dense_run();
    for view in PlotView::ALL {
        for (width, height) in [(1600, 1000), (640, 400)] {
            let s = PlotSpec {
                width,
                height,
                ..spec(view)
            };
            let png = render_png_bytes(&run, &s).unwrap();
            let img = image::load_from_memory(&png).unwrap();
            assert_eq!((img.width(), img.height()), (width, height));
        }
    }
}

/// The chance line and the mean curve average the languages other than the pivot: the pivot
/// against itself (μ = 1, its own shuffled pairs) is no baseline for them.
#[test]
fn curves_over_languages_leave_the_pivot_out() {
    let mut run = synthetic_run();
    let pivot = run.settings.pivot.clone();
    let own = run
        .pivot_scores
        .get_mut(&pivot)
        .and_then(|m| m.get_mut(&Method::Nas))
        .unwrap();
    own.chance_per_layer = vec![0.5; LAYERS];
    own.per_layer = vec![1.0; LAYERS];
    let others: Vec<&MethodScores> = ["fr", "de", "sw", "zh"]
        .map(|c| run.scores(&lang(c), Method::Nas).unwrap())
        .to_vec();
    let chance = run.chance_curve(Method::Nas);
    let mean = run.mean_curve(Method::Nas);
    assert_eq!(chance.len(), LAYERS);
    for layer in 0..LAYERS {
        assert!((chance[layer] - (0.01 + 0.002 * layer as f64)).abs() < 1e-12);
        let expected = others.iter().map(|s| s.per_layer[layer]).sum::<f64>() / 4.0;
        assert!((mean[layer] - expected).abs() < 1e-12);
    }
    let rows = view_table(&run, &spec(PlotView::Layers));
    assert!((num(rows[1].last().unwrap()) - 0.01).abs() < 1e-12);
}

/// Each series line of a layers SVG: its colour and its points.
fn series_lines(svg: &str) -> BTreeMap<String, Vec<String>> {
    let mut lines: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for element in svg.split("<polyline ").skip(1) {
        let attribute = |name: &str| {
            let start = element.find(&format!("{name}=\""))? + name.len() + 2;
            let end = element[start..].find('"')? + start;
            Some(element[start..end].to_string())
        };
        // Grid and axis lines are thinner than the series.
        if attribute("stroke-width").as_deref() != Some("2.25") {
            continue;
        }
        if let (Some(color), Some(points)) = (attribute("stroke"), attribute("points")) {
            lines.entry(color).or_default().push(points);
        }
    }
    lines
}

#[test]
fn a_language_keeps_its_colour_when_the_legend_is_sorted() {
    // Non-pivot order fr, de, sw, zh; by score fr, de, zh, sw.
    let run = synthetic_run();
    let draw = |sort_by_score: bool| {
        let spec = PlotSpec {
            view: PlotView::Layers,
            palette: Palette::ColorBlindSafe,
            sort_by_score,
            ..PlotSpec::default()
        };
        series_lines(&render_svg_string(&run, &spec).unwrap())
    };
    let (as_run, sorted) = (draw(false), draw(true));
    assert_eq!(as_run.len(), 4, "{as_run:?}");
    assert_eq!(as_run, sorted);
    // The explorer's first four Okabe–Ito colours, one per language.
    for [r, g, b] in &neuronxa::plot::line_colors(neuronxa::plot::LineScheme::OkabeIto, false)[..4]
    {
        let color = format!("#{r:02x}{g:02x}{b:02x}");
        assert!(as_run.contains_key(&color), "{color} not in {as_run:?}");
    }
}

#[test]
fn stretch_changes_heatmap_matrix_and_layers() {
    // Weak alignment: everything below 0.3 but the pivot.
    let run = make_run(
        ["en", "fr", "de"].map(lang).to_vec(),
        &[1.0, 0.28, 0.21],
        LAYERS,
    );
    for view in [PlotView::Heatmap, PlotView::Matrix, PlotView::Layers] {
        let draw = |stretch: bool| {
            let spec = PlotSpec {
                view,
                stretch,
                ..PlotSpec::default()
            };
            render_svg_string(&run, &spec).unwrap()
        };
        assert_ne!(
            draw(false),
            draw(true),
            "{view:?}: --stretch changed nothing"
        );
    }
}
