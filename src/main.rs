//! `neuronxa`: the explorer window by default, the headless CLI with a subcommand.

use clap::Parser;
use neuronxa::cli::{self, Cli, Command};

fn main() {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            let _ = e.print();
            std::process::exit(if e.use_stderr() { cli::EXIT_USAGE } else { 0 });
        }
    };
    let code = match cli.command {
        None => open_gui(None, None),
        Some(Command::Gui { model, screenshot }) => open_gui(model, screenshot),
        Some(command) => cli::main_with(command),
    };
    std::process::exit(code);
}

fn open_gui(model: Option<String>, screenshot: Option<std::path::PathBuf>) -> i32 {
    match neuronxa::app::run_native(neuronxa::app::StartOptions { model, screenshot }) {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("error: cannot open the window: {e}");
            cli::EXIT_ERROR
        }
    }
}
