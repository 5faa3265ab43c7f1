//! `drover serve`: run the daemon in the foreground until SIGTERM or SIGINT.

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use drover_daemon::{Config, ShutdownPolicy};
use drover_supervisor::HolderProgram;
use tokio::signal::unix::{signal, SignalKind};

/// `drover serve` flags; each beats its `DROVER_*` variable, which beats the config file.
#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// State directory (registry, logs, ipc socket) [default: $XDG_DATA_HOME/drover].
    #[arg(long, env = "DROVER_STATE_DIR")]
    state_dir: Option<PathBuf>,
    /// TOML config file.
    #[arg(long, env = "DROVER_CONFIG")]
    config: Option<PathBuf>,
    /// PUB endpoint to bind, `tcp://HOST:PORT` or `HOST:PORT` [default: tcp://127.0.0.1:7711].
    #[arg(long = "pub", env = "DROVER_PUB")]
    publish: Option<String>,
    /// HTTP address to bind, `HOST:PORT` or `http://HOST:PORT` [default: 127.0.0.1:7712].
    #[arg(long, env = "DROVER_HTTP")]
    http: Option<String>,
    /// Do not bind the ipc control socket in the state directory.
    #[arg(long)]
    no_ipc: bool,
    /// Most agents live at once [default: 256].
    #[arg(long, env = "DROVER_MAX_AGENTS")]
    max_agents: Option<usize>,
    /// Grace between SIGTERM and SIGKILL when a stop names none, in ms [default: 10000].
    #[arg(long, env = "DROVER_GRACE_MS")]
    grace_ms: Option<u64>,
    /// Where agents whose spawn names no working directory start (remote clients' agents)
    /// [default: the daemon user's home].
    #[arg(long, env = "DROVER_WORK_DIR")]
    work_dir: Option<PathBuf>,
    /// What to do with running agents on shutdown: `stop` them (SIGTERM, then SIGKILL after
    /// the grace) or `leave` them running under their holders, for the next daemon to
    /// re-attach [default: stop, or the config file's `on_shutdown`].
    #[arg(long, env = "DROVER_ON_SHUTDOWN", value_parser = ["stop", "leave"])]
    on_shutdown: Option<String>,
    /// Run agents' holders with this `drover-holder` executable (it must be of a compatible
    /// build) [default: the `drover-holder` beside drover if it is of the same build, else
    /// `drover holder`].
    #[arg(long, env = "DROVER_HOLDER")]
    holder: Option<PathBuf>,
    /// Same as `--on-shutdown leave`.
    #[arg(long, conflicts_with = "on_shutdown")]
    leave_agents: bool,
}

pub(crate) async fn run(control: Option<String>, args: Args) -> anyhow::Result<i32> {
    init_tracing();
    let state_dir = match args.state_dir {
        Some(dir) => crate::context::absolute(dir)?,
        None => crate::context::default_state_dir()?,
    };
    let mut config = Config::new(state_dir);
    // `--holder` names a `drover-holder` executable. Else the `drover-holder` beside this
    // executable, if it is of the same build: it is a fraction of drover's size, so the holder
    // spawner (whose forks are the holders) is a smaller process. Else this very executable
    // (`drover holder spawner`), found wherever drover is and always of the same build.
    config.holder = Some(match args.holder {
        Some(program) => HolderProgram {
            program,
            args: Vec::new(),
        },
        None => {
            let exe =
                std::env::current_exe().context("finding the drover executable for holders")?;
            HolderProgram::same_build_beside(&exe).unwrap_or_else(|| HolderProgram::drover(exe))
        }
    });
    if let Some(path) = &args.config {
        config.apply_file(path)?;
    }
    // Addresses as the ready line prints them are accepted back: `HOST:PORT` for control and
    // pub, `http://HOST:PORT` for HTTP.
    if let Some(control) = control {
        config.control = super::normalise_endpoint(&control);
    }
    if let Some(publish) = args.publish {
        config.publish = super::normalise_endpoint(&publish);
    }
    if let Some(http) = args.http {
        config.http = http_address(&http);
    }
    if args.no_ipc {
        config.ipc = false;
    }
    if let Some(max) = args.max_agents {
        config.max_agents = max;
    }
    if let Some(ms) = args.grace_ms {
        config.default_grace = Duration::from_millis(ms);
    }
    if let Some(dir) = args.work_dir {
        config.work_dir = Some(crate::context::absolute(dir)?);
    }
    match (args.on_shutdown.as_deref(), args.leave_agents) {
        (Some("leave"), _) | (_, true) => config.on_shutdown = ShutdownPolicy::Leave,
        (Some(_), _) => config.on_shutdown = ShutdownPolicy::Stop,
        (None, false) => {}
    }
    let listeners = drover_daemon::bind(&config).await?;
    {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", listeners.addresses.ready_line())?;
        out.flush()?;
    }
    let leave = config.on_shutdown == ShutdownPolicy::Leave;
    drover_daemon::run(config, listeners, shutdown_signal()?).await?;
    if leave {
        // Exit without dropping the agents' supervisors, which would kill them.
        std::process::exit(0);
    }
    Ok(0)
}

/// `http://HOST:PORT/` (the ready line's form) as the `HOST:PORT` to bind.
fn http_address(text: &str) -> String {
    let bare = text
        .strip_prefix("http://")
        .or_else(|| text.strip_prefix("https://"))
        .unwrap_or(text);
    bare.trim_end_matches('/').to_owned()
}

fn shutdown_signal() -> anyhow::Result<impl std::future::Future<Output = ()>> {
    let mut term = signal(SignalKind::terminate()).context("installing the SIGTERM handler")?;
    let mut int = signal(SignalKind::interrupt()).context("installing the SIGINT handler")?;
    Ok(async move {
        tokio::select! {
            _ = term.recv() => {}
            _ = int.recv() => {}
        }
    })
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("DROVER_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr)
        .try_init();
}
