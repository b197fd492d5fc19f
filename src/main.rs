//! `neuronxa`: the explorer window by default, the headless CLI with a subcommand.

use clap::Parser;
use neuronxa::cli::{self, Cli, Command};

fn main() {
    keep_freed_heap_memory();
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
        Some(command) => {
            quiet_on_closed_pipe();
            cli::main_with(command)
        }
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

/// Rust ignores SIGPIPE, so printing to a pipe whose reader has gone (`neuronxa inspect | head`)
/// panicked. Like other command-line tools, end quietly instead; files are written atomically,
/// so an interrupted run leaves no half-written one.
#[cfg(unix)]
fn quiet_on_closed_pipe() {
    // SAFETY: resetting a signal to its default action, before any other thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

#[cfg(not(unix))]
fn quiet_on_closed_pipe() {}

/// glibc hands every freed block above 128 KiB back to the kernel, so the tensors of each layer
/// came back as fresh, zero-filled pages: 6 points of `neuronxa bench`'s matmul ratio went to
/// page faults (BENCHMARKS.md). Serving blocks up to 32 MiB (glibc's ceiling) from the heap and
/// keeping freed memory there costs a little resident memory and none of the faults. `MALLOC_*`
/// variables in the environment still win.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn keep_freed_heap_memory() {
    let set_by_user = |name: &str| std::env::var_os(name).is_some();
    // SAFETY: mallopt only changes allocator tunables, and runs before any other thread starts.
    unsafe {
        if !set_by_user("MALLOC_MMAP_THRESHOLD_") {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
        }
        if !set_by_user("MALLOC_TRIM_THRESHOLD_") {
            libc::mallopt(libc::M_TRIM_THRESHOLD, i32::MAX);
        }
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn keep_freed_heap_memory() {}
