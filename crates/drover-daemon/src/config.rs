//! The daemon's configuration: defaults, the TOML file, and validation of bind addresses.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use drover_proto::limits;
use drover_store::StoreConfig;
use drover_supervisor::backend::BackendTemplate;
use serde::Deserialize;

use crate::DaemonError;

/// What the daemon does with running agents when it shuts down.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShutdownPolicy {
    /// Stop every agent with its grace period, then exit (the default).
    #[default]
    Stop,
    /// Leave agents running; the next daemon reports them `lost`.
    Leave,
}

/// Everything `drover serve` needs. Build it with [`Config::new`] and adjust fields.
#[derive(Clone, Debug)]
pub struct Config {
    /// Where the registry, the logs, the ipc socket and the lock file live (created 0700).
    pub state_dir: PathBuf,
    /// The control ROUTER endpoint; port 0 picks a free port.
    pub control: String,
    /// The PUB endpoint.
    pub publish: String,
    /// The HTTP listen address (`host:port`).
    pub http: String,
    /// Also bind `ipc://<state_dir>/control.sock`.
    pub ipc: bool,
    /// Most agents live at once; more spawns get `limit_reached`.
    pub max_agents: usize,
    /// Most ended agents kept; the oldest beyond this are removed with their logs.
    pub max_ended_agents: usize,
    /// Most SSE log streams, and separately event streams, open at once (each costs at most a
    /// 1 MiB store chunk and its share of an agent's live feed); more get `limit_reached`.
    pub max_streams: usize,
    /// Backends clients may use; every known backend when `None`.
    pub allowed_backends: Option<Vec<String>>,
    /// Backend templates that override or extend the built-in table.
    pub backends: BTreeMap<String, BackendTemplate>,
    /// Grace between SIGTERM and SIGKILL when a stop names none.
    pub default_grace: Duration,
    /// Largest control frame accepted.
    pub max_frame: usize,
    /// Largest log record; longer lines are split into partial records.
    pub max_record: usize,
    /// What to do with agents at shutdown.
    pub on_shutdown: ShutdownPolicy,
    /// Log store settings (budgets, group commit).
    pub store: StoreConfig,
    /// Messages queued for the PUB socket before publishing drops (subscribers then see a
    /// `seq` jump and refill from the store). Each holds one capture read (at most 64 KiB).
    pub pub_queue: usize,
    /// Published messages (each at most 1 MiB of records) the PUB socket keeps for one
    /// subscriber that does not read, before dropping for it; the subscriber refills by `seq`.
    pub pub_subscriber_queue: usize,
}

impl Config {
    /// Defaults: loopback ports 7710-7712, ipc on, 256 live agents, 10 s grace.
    pub fn new(state_dir: impl Into<PathBuf>) -> Config {
        Config {
            state_dir: state_dir.into(),
            control: "tcp://127.0.0.1:7710".into(),
            publish: "tcp://127.0.0.1:7711".into(),
            http: "127.0.0.1:7712".into(),
            ipc: true,
            max_agents: 256,
            max_ended_agents: 10_000,
            max_streams: 256,
            allowed_backends: None,
            backends: BTreeMap::new(),
            default_grace: Duration::from_secs(10),
            max_frame: limits::DEFAULT_MAX_FRAME,
            max_record: limits::DEFAULT_MAX_RECORD,
            on_shutdown: ShutdownPolicy::Stop,
            store: StoreConfig::default(),
            pub_queue: 1024,
            pub_subscriber_queue: 256,
        }
    }

    /// Defaults for tests: every port 0, ipc off.
    pub fn ephemeral(state_dir: impl Into<PathBuf>) -> Config {
        Config {
            control: "tcp://127.0.0.1:0".into(),
            publish: "tcp://127.0.0.1:0".into(),
            http: "127.0.0.1:0".into(),
            ipc: false,
            ..Config::new(state_dir)
        }
    }

    /// Apply a TOML config file's settings on top of these.
    pub fn apply_file(&mut self, path: &Path) -> Result<(), DaemonError> {
        let text = std::fs::read_to_string(path).map_err(|source| DaemonError::Io {
            context: format!("reading config file {}", path.display()),
            source,
        })?;
        let file: ConfigFile = toml::from_str(&text).map_err(|e| DaemonError::Config {
            reason: format!("{}: {e}", path.display()),
        })?;
        file.apply(self);
        Ok(())
    }

    /// Check everything before binding: sizes the store can hold, and binds.
    pub fn validate(&self) -> Result<(), DaemonError> {
        let invalid = |reason: String| Err(DaemonError::Config { reason });
        if self.max_record == 0 || self.max_record > drover_store::MAX_RECORD_BYTES {
            return invalid(format!(
                "max_record must be 1 to {} bytes (the store's record limit)",
                drover_store::MAX_RECORD_BYTES
            ));
        }
        if self.max_frame < 1024 {
            return invalid("max_frame must be at least 1024 bytes".into());
        }
        if self.max_agents == 0 {
            return invalid("max_agents must be at least 1".into());
        }
        self.check_binds()
    }

    /// Check the binds. Control and PUB may bind any address: a `tcp://` endpoint always
    /// requires CURVE with an allowed key, and an `ipc://` one lives in the private state
    /// directory. HTTP stays loopback-only.
    pub fn check_binds(&self) -> Result<(), DaemonError> {
        for endpoint in [&self.control, &self.publish] {
            let tcp = endpoint
                .strip_prefix("tcp://")
                .and_then(|rest| rest.rsplit_once(':'))
                .is_some();
            if !tcp && !endpoint.starts_with("ipc://") {
                return Err(DaemonError::Config {
                    reason: format!(
                        "{endpoint} is neither a tcp://host:port nor an ipc:// endpoint"
                    ),
                });
            }
        }
        let host = self
            .http
            .rsplit_once(':')
            .map(|(host, _)| host)
            .ok_or_else(|| DaemonError::Config {
                reason: format!("{} is not a host:port address", self.http),
            })?;
        check_loopback(host)
    }
}

fn check_loopback(host: &str) -> Result<(), DaemonError> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    let loopback = bare == "localhost"
        || bare
            .parse::<IpAddr>()
            .map(|ip| ip.is_loopback())
            .unwrap_or(false);
    if loopback {
        Ok(())
    } else {
        Err(DaemonError::Config {
            reason: format!(
                "refusing to bind {host}: only loopback addresses are allowed until authentication \
                 is configured (use 127.0.0.1 and an SSH tunnel for remote access)"
            ),
        })
    }
}

/// The TOML file: every key optional.
#[derive(Debug, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
struct ConfigFile {
    control: Option<String>,
    publish: Option<String>,
    http: Option<String>,
    ipc: Option<bool>,
    max_agents: Option<usize>,
    max_ended_agents: Option<usize>,
    max_streams: Option<usize>,
    allowed_backends: Option<Vec<String>>,
    backends: BTreeMap<String, BackendTemplate>,
    default_grace_ms: Option<u64>,
    max_frame: Option<usize>,
    max_record: Option<usize>,
    on_shutdown: Option<ShutdownPolicy>,
    agent_log_budget: Option<u64>,
    global_log_budget: Option<u64>,
    sync_interval_ms: Option<u64>,
}

impl ConfigFile {
    fn apply(self, config: &mut Config) {
        let ConfigFile {
            control,
            publish,
            http,
            ipc,
            max_agents,
            max_ended_agents,
            max_streams,
            allowed_backends,
            backends,
            default_grace_ms,
            max_frame,
            max_record,
            on_shutdown,
            agent_log_budget,
            global_log_budget,
            sync_interval_ms,
        } = self;
        set(&mut config.control, control);
        set(&mut config.publish, publish);
        set(&mut config.http, http);
        set(&mut config.ipc, ipc);
        set(&mut config.max_agents, max_agents);
        set(&mut config.max_ended_agents, max_ended_agents);
        set(&mut config.max_streams, max_streams);
        if allowed_backends.is_some() {
            config.allowed_backends = allowed_backends;
        }
        config.backends.extend(backends);
        set(
            &mut config.default_grace,
            default_grace_ms.map(Duration::from_millis),
        );
        set(&mut config.max_frame, max_frame);
        set(&mut config.max_record, max_record);
        set(&mut config.on_shutdown, on_shutdown);
        set(&mut config.store.agent_budget, agent_log_budget);
        set(&mut config.store.global_budget, global_log_budget);
        set(
            &mut config.store.sync_interval,
            sync_interval_ms.map(Duration::from_millis),
        );
    }
}

fn set<T>(field: &mut T, value: Option<T>) {
    if let Some(value) = value {
        *field = value;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zmq_binds_may_be_remote_and_http_stays_on_loopback() {
        let mut config = Config::new("/tmp/unused");
        config.check_binds().unwrap();
        for control in [
            "tcp://localhost:1",
            "tcp://[::1]:1",
            "tcp://0.0.0.0:7710",
            "tcp://192.168.1.5:7710",
            "ipc:///tmp/x",
        ] {
            config.control = control.into();
            config.publish = control.into();
            config.check_binds().unwrap();
        }
        for control in ["udp://1.2.3.4:5", "tcp://nohost", "inproc://x"] {
            config.control = control.into();
            let error = config.check_binds().unwrap_err().to_string();
            assert!(error.contains("neither a tcp"), "{error}");
        }
        config.control = "tcp://127.0.0.1:7710".into();
        config.http = "0.0.0.0:7712".into();
        let error = config.check_binds().unwrap_err().to_string();
        assert!(error.contains("refusing to bind"), "{error}");
    }

    #[test]
    fn sizes_the_store_cannot_hold_are_refused() {
        let mut config = Config::new("/tmp/unused");
        config.validate().unwrap();
        config.max_record = drover_store::MAX_RECORD_BYTES + 1;
        assert!(config.validate().is_err());
        config.max_record = 64 * 1024;
        config.max_frame = 0;
        assert!(config.validate().is_err());
        config.max_frame = 1 << 20;
        config.max_agents = 0;
        assert!(config.validate().is_err());
    }

    #[test]
    fn the_config_file_overrides_defaults_and_rejects_unknown_keys() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("drover.toml");
        std::fs::write(
            &path,
            r#"
control = "tcp://127.0.0.1:9000"
max_agents = 7
allowed_backends = ["command"]
default_grace_ms = 1500
on_shutdown = "leave"
agent_log_budget = 1048576

[backends.mytool]
argv = ["mytool", "{task}", ["--model", "{model}"]]
"#,
        )
        .unwrap();
        let mut config = Config::new(dir.path());
        config.apply_file(&path).unwrap();
        assert_eq!(config.control, "tcp://127.0.0.1:9000");
        assert_eq!(config.max_agents, 7);
        assert_eq!(config.allowed_backends, Some(vec!["command".to_owned()]));
        assert_eq!(config.default_grace, Duration::from_millis(1500));
        assert_eq!(config.on_shutdown, ShutdownPolicy::Leave);
        assert_eq!(config.store.agent_budget, 1_048_576);
        assert!(config.backends.contains_key("mytool"));
        assert_eq!(
            config.publish, "tcp://127.0.0.1:7711",
            "unset keys keep defaults"
        );

        std::fs::write(&path, "contrl = \"tcp://127.0.0.1:1\"\n").unwrap();
        let error = Config::new(dir.path()).apply_file(&path).unwrap_err();
        assert!(error.to_string().contains("contrl"), "{error}");
    }
}
