//! `drover completions SHELL` and `drover man`: generated from the clap definitions, so they
//! never drift from the real flags.

use std::io::Write;

use clap::CommandFactory;

use super::Cli;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  drover completions bash > ~/.local/share/bash-completion/completions/drover
  drover completions zsh > \"${fpath[1]}/_drover\"
  drover completions fish > ~/.config/fish/completions/drover.fish")]
pub(crate) struct Args {
    /// The shell to complete for.
    shell: clap_complete::Shell,
}

/// Print the completion script for a shell.
pub(crate) fn completions(args: &Args) -> anyhow::Result<i32> {
    let mut command = Cli::command();
    // Generated into memory and written here: clap_complete panics on a failed write (a closed
    // pipe, `| head`), where this reports it like every other command.
    let mut script = Vec::new();
    clap_complete::generate(args.shell, &mut command, "drover", &mut script);
    std::io::stdout().lock().write_all(&script)?;
    Ok(0)
}

/// Print the man page (roff), e.g. `drover man > /usr/local/share/man/man1/drover.1`.
pub(crate) fn man() -> anyhow::Result<i32> {
    let page = clap_mangen::Man::new(Cli::command());
    let mut out = std::io::stdout().lock();
    page.render(&mut out)?;
    Ok(0)
}
