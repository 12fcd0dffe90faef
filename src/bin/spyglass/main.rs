//! The `spyglass` binary: parse arguments, run the command, map the result to an exit code
//! (0 ok, 1 a failed quality gate, 2 an error).

use std::process::ExitCode;

/// Tensor code allocates and frees large buffers on every layer; mimalloc keeps them for reuse
/// instead of returning them to the kernel and page-faulting them back in.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

extern "C" {
    /// mimalloc's option setter (in the library the `mimalloc` crate links).
    fn mi_option_set(option: std::ffi::c_int, value: std::ffi::c_long);
}

/// `mi_option_purge_delay` in the mimalloc v3 that `libmimalloc-sys` 0.1.49 bundles
/// (`c_src/mimalloc/v3/include/mimalloc.h`; the crate exports no constant for it).
const MI_OPTION_PURGE_DELAY: std::ffi::c_int = 15;

/// Returns freed memory to the kernel at once rather than after mimalloc's default 10 ms, so
/// one huge record's buffers do not stay resident beside the next ones: one 20 MB article with
/// `--max-windows 1` peaks at 250 MB instead of 285-314 MB, at the same labelling speed on the
/// test split (README).
fn purge_freed_memory_at_once() {
    // SAFETY: a plain option store in the linked allocator, valid at any time.
    unsafe { mi_option_set(MI_OPTION_PURGE_DELAY, 0) };
}

mod cli;
mod commands;
mod progress;

use clap::Parser;
use cli::{Cli, Command, DataCommand};
use commands::Outcome;

fn main() -> ExitCode {
    purge_freed_memory_at_once();
    let cli = Cli::parse();
    if let Some(threads) = cli.threads {
        // candle's CPU kernels size their thread pool from this variable on first use.
        std::env::set_var("RAYON_NUM_THREADS", threads.to_string());
    }
    if !matches!(cli.command, Command::Triage(_) | Command::Serve(_)) {
        // Ctrl-C or SIGTERM: remove unfinished outputs' temporary files, then stop. (Triage
        // installs its own handler, which finishes the current step first.)
        let installed = ctrlc::set_handler(|| {
            spyglass::io::output::remove_partial_files();
            std::process::exit(130);
        });
        if let Err(e) = installed {
            eprintln!("warning: cannot catch Ctrl-C ({e}); an interrupted run may leave `.spyglass-*.partial` files");
        }
    }
    let result = match &cli.command {
        Command::Embed(args) => commands::embed::run(args),
        Command::Data(DataCommand::Check(args)) => commands::data::check(args),
        Command::Train(args) => commands::train::run(args),
        Command::Label(args) => commands::label::run(args),
        Command::Eval(args) => commands::eval::run(args),
        Command::Triage(args) => commands::triage::run(args),
        Command::Info(args) => commands::info::run(args),
        Command::Serve(args) => commands::serve::run(args),
    };
    match result {
        Ok(Outcome::Ok) => ExitCode::SUCCESS,
        Ok(Outcome::GateFailed) => ExitCode::from(1),
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", error_message(&err));
            ExitCode::from(2)
        }
    }
}

/// The error and its causes, each said once: library errors often already quote their cause
/// (`cannot open input `x`: No such file…`), so a cause already in the text is not repeated.
fn error_message(err: &anyhow::Error) -> String {
    let mut message = String::new();
    for cause in err.chain() {
        let text = cause.to_string();
        if message.contains(&text) {
            continue;
        }
        if !message.is_empty() {
            message.push_str(": ");
        }
        message.push_str(&text);
    }
    message
}

/// A closed downstream pipe (`spyglass ... | head`) is a normal way to stop reading.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
            || cause.to_string().contains("Broken pipe")
    })
}
