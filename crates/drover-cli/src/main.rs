//! `drover`: the command-line client of Drover, and `drover serve`, the daemon.
//!
//! `main` is thin: parse the command line, run one subcommand, print an error once with its
//! cause chain, and exit with the status from the table in `docs/PROTOCOL.md`.

/// `println!` that returns the I/O error (a closed pipe, as in `drover ls | head -1`) instead
/// of panicking; `main` treats a broken pipe as success.
macro_rules! outln {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        writeln!(std::io::stdout().lock(), $($arg)*)
    }};
}
pub(crate) use outln;

mod cmd;
mod context;
mod duration;
mod fleet;
mod output;
mod procfs;
mod selector;

use std::process::ExitCode;

use clap::Parser;

use crate::cmd::Cli;

fn main() -> ExitCode {
    // `drover holder spawner` (hidden, started by the daemon): it runs before anything else
    // exists here, with no async runtime left running, and must stay so: the spawner forks
    // holders only while it is single-threaded (drover-holder's fork.rs). (`drover holder hold
    // DIR` is what a spawner that cannot fork starts.)
    let mut args = std::env::args_os().skip(1);
    if args.next().is_some_and(|first| first == "holder") {
        let rest: Vec<std::ffi::OsString> = args.collect();
        // Holders and their agents start with the default for any signal we were started
        // with ignored (see drover-holder's ignored.rs).
        if rest.first().is_some_and(|role| role == "spawner") {
            drover_holder::ignored::handle_ignored_without_runtime();
        }
        return drover_holder::main(&["holder".into()], &rest);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(error) => {
            // `--help` and `--version` are answers, not errors. A usage error exits 1, as the
            // table in docs/PROTOCOL.md says: clap's own 2 is `bad_request`'s.
            let code = if error.use_stderr() { 1 } else { 0 };
            let _ = error.print();
            return ExitCode::from(code);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("drover: error: starting the async runtime: {error}");
            return ExitCode::from(1);
        }
    };
    let result = runtime.block_on(cmd::run(cli));
    // Agents a `serve` leaves running must not be killed by dropping their handles.
    match result {
        Ok(code) => exit(code),
        Err(error) => {
            if is_broken_pipe(&error) {
                return exit(0);
            }
            // A daemon's message (a remote one's too) is shown, never run by the terminal; its
            // lines stay lines (a configuration error points at the line it cannot read).
            let mut message = format!("drover: error: {}", output::shown_lines(&error));
            for cause in error.chain().skip(1) {
                message.push_str(&format!("\n  caused by: {}", output::shown_lines(cause)));
            }
            eprintln!("{message}");
            exit(output::exit_code(&error))
        }
    }
}

fn exit(code: i32) -> ExitCode {
    ExitCode::from(u8::try_from(code).unwrap_or(1))
}

/// A closed stdout (`drover logs | head`) is success, not an error: also when the write that
/// found it closed was serde_json's (`--json`), which wraps the `io::Error`.
fn is_broken_pipe(error: &anyhow::Error) -> bool {
    error.chain().any(|cause| {
        let kind = cause
            .downcast_ref::<std::io::Error>()
            .map(std::io::Error::kind)
            .or_else(|| {
                cause
                    .downcast_ref::<serde_json::Error>()
                    .and_then(serde_json::Error::io_error_kind)
            });
        kind == Some(std::io::ErrorKind::BrokenPipe)
    })
}
