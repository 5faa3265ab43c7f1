//! Holders: the daemon starts each agent under a holder process (`drover-holder`) so that the
//! agent outlives the daemon, and a starting daemon re-attaches to them (`restart.rs`).
//!
//! The narrow type [`Holders`] is the one field of `Shared` that knows how agents are started:
//! under a holder when a holder executable is configured, else in-process (the direct path,
//! which cannot survive the daemon).

use std::path::PathBuf;
use std::sync::Arc;

use drover_proto::AgentId;
use drover_supervisor::{Command, Handle, Launcher, Observer, SupervisorConfig};

use crate::{Config, DaemonError};

/// The directory under the state directory where each holder has its own directory.
pub(crate) const HOLDERS_DIR: &str = "holders";

/// The directory name of the holder of an agent's run: its id for the first run, and
/// `<id>.<run>` for the runs its restart policy starts (a new holder each, while the last
/// run's holder may still be going away).
pub(crate) fn holder_name(id: AgentId, run: u32) -> String {
    if run <= 1 {
        id.to_string()
    } else {
        format!("{id}.{run}")
    }
}

/// The agent a holder directory's name belongs to, and its run.
pub(crate) fn parse_holder_name(name: &str) -> Option<(AgentId, u32)> {
    match name.split_once('.') {
        None => Some((name.parse().ok()?, 1)),
        Some((id, run)) => Some((id.parse().ok()?, run.parse().ok().filter(|r| *r > 1)?)),
    }
}

/// How this daemon starts agents.
#[derive(Debug)]
pub(crate) struct Holders {
    launcher: Option<Launcher>,
    root: PathBuf,
}

impl Holders {
    /// Starts the holder spawner (when holders are configured). Called before the daemon holds
    /// any agent, so the spawner's descriptor table stays small.
    pub(crate) fn start(config: &Config) -> Result<Holders, DaemonError> {
        let root = config.state_dir.join(HOLDERS_DIR);
        let launcher = match &config.holder {
            Some(program) => Some(Launcher::start(program.clone(), root.clone()).map_err(
                |source| DaemonError::Io {
                    context: format!("starting the holder spawner {}", program.program.display()),
                    source,
                },
            )?),
            None => None,
        };
        Ok(Holders { launcher, root })
    }

    /// True when agents run under holders.
    pub(crate) fn is_held(&self) -> bool {
        self.launcher.is_some()
    }

    /// Where the holders' directories are.
    pub(crate) fn root(&self) -> &std::path::Path {
        &self.root
    }

    /// Starts run `run` of an agent, numbering its records from `first_seq`.
    pub(crate) async fn spawn(
        &self,
        id: AgentId,
        run: u32,
        command: Command,
        config: SupervisorConfig,
        observer: Arc<dyn Observer>,
        first_seq: u64,
    ) -> Handle {
        match &self.launcher {
            Some(launcher) => {
                // Boxed: a held start's state is large, and the handlers' futures that await
                // it are polled on a test thread's (or a worker's) stack.
                Box::pin(drover_supervisor::spawn_held(
                    launcher,
                    &holder_name(id, run),
                    command,
                    config,
                    observer,
                    first_seq,
                ))
                .await
            }
            None => drover_supervisor::spawn(command, config, observer),
        }
    }
}
