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

    /// Starts an agent, numbering its records from `first_seq`.
    pub(crate) async fn spawn(
        &self,
        id: AgentId,
        command: Command,
        config: SupervisorConfig,
        observer: Arc<dyn Observer>,
        first_seq: u64,
    ) -> Handle {
        match &self.launcher {
            Some(launcher) => {
                drover_supervisor::spawn_held(
                    launcher,
                    &id.to_string(),
                    command,
                    config,
                    observer,
                    first_seq,
                )
                .await
            }
            None => drover_supervisor::spawn(command, config, observer),
        }
    }
}
