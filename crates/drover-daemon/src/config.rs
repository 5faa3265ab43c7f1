//! The daemon's configuration: defaults, the TOML file, and validation of bind addresses.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use drover_proto::limits;
use drover_store::StoreConfig;
use drover_supervisor::backend::BackendTemplate;
use serde::Deserialize;

use crate::DaemonError;

/// The smallest log budget, an agent's (`log_budget`) or the daemon's (`agent_log_budget`,
/// `global_log_budget`): 64 KiB.
pub(crate) const MIN_LOG_BUDGET: u64 = 64 * 1024;

/// What the daemon does with running agents when it shuts down.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShutdownPolicy {
    /// Stop every agent with its grace period, then exit (the default).
    #[default]
    Stop,
    /// Leave agents running: under holders they keep running and the next daemon re-attaches
    /// to them; without holders the next daemon reports them `lost`.
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
    /// The HTTP listen address (`host:port`). Off loopback it is served with TLS.
    pub http: String,
    /// Also serve HTTP on `<state_dir>/http.sock` (trusted by file permission).
    pub http_unix: bool,
    /// Serve HTTP with this certificate (PEM) and [`Config::tls_key`], even on loopback;
    /// without them, a non-loopback listener uses a self-signed certificate in the state dir.
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    pub tls_key: Option<PathBuf>,
    /// Limits on HTTP connections.
    pub http_limits: crate::HttpLimits,
    /// `Host` values (`name` or `name:port`) a loopback HTTP listener accepts besides loopback
    /// names: a reverse proxy's public name, passed through as the proxy forwards. Anything else
    /// is refused (DNS rebinding).
    pub http_public_hosts: Vec<String>,
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
    /// The holder executable agents run under (`drover holder`, or `drover-holder`); `None`
    /// runs them inside the daemon, where they cannot outlive it. [`Config::new`] looks for a
    /// `drover-holder` beside the running executable; `drover serve` uses its own executable.
    pub holder: Option<drover_supervisor::HolderProgram>,
    /// Bytes of output a holder keeps for its agent while the daemon has not stored them (the
    /// daemon is away, or its store refuses); past this the agent blocks on its next write.
    pub spool_limit: u64,
    /// Log store settings (budgets, group commit).
    pub store: StoreConfig,
    /// Messages queued for the PUB socket before publishing drops (subscribers then see a
    /// `seq` jump and refill from the store). Each holds one capture read (at most 64 KiB).
    pub pub_queue: usize,
    /// Published messages (each at most 1 MiB of records) the PUB socket keeps for one
    /// subscriber that does not read, before dropping for it; the subscriber refills by `seq`.
    pub pub_subscriber_queue: usize,
    /// Where an agent whose spec names no `cwd` starts; the daemon user's home directory
    /// (`$HOME`) when `None`. A client on another host cannot name its own directory, so its
    /// agents start here.
    pub work_dir: Option<PathBuf>,
}

impl Config {
    /// Defaults: loopback ports 7710-7712, ipc on, 256 live agents, 10 s grace.
    pub fn new(state_dir: impl Into<PathBuf>) -> Config {
        Config {
            state_dir: state_dir.into(),
            control: "tcp://127.0.0.1:7710".into(),
            publish: "tcp://127.0.0.1:7711".into(),
            http: "127.0.0.1:7712".into(),
            http_unix: true,
            tls_cert: None,
            tls_key: None,
            http_limits: crate::HttpLimits::default(),
            http_public_hosts: Vec::new(),
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
            holder: drover_supervisor::HolderProgram::beside_current_exe(),
            spool_limit: drover_supervisor::SupervisorConfig::default().spool_limit,
            store: StoreConfig::default(),
            pub_queue: 1024,
            pub_subscriber_queue: 256,
            work_dir: None,
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

    /// Check everything before binding: sizes the store can hold, binds, and the file
    /// descriptors `max_agents` needs (raising the soft `RLIMIT_NOFILE` to the hard limit first,
    /// see [`crate::fdlimit`]).
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
        // An ended agent is kept until its end has been read: with none kept, `run` and `wait`
        // could not learn how the agents they started ended.
        if self.max_ended_agents == 0 {
            return invalid("max_ended_agents must be at least 1".into());
        }
        let sync = self.store.sync_interval;
        if sync < Duration::from_millis(1) || sync > Duration::from_secs(10) {
            return invalid("sync_interval_ms must be 1 to 10000".into());
        }
        for (key, budget) in [
            ("agent_log_budget", self.store.agent_budget),
            ("global_log_budget", self.store.global_budget),
        ] {
            if budget < MIN_LOG_BUDGET {
                return invalid(format!(
                    "{key} must be at least {MIN_LOG_BUDGET} bytes (64 KiB, the smallest an \
                     agent's log_budget may be)"
                ));
            }
        }
        if let Some(dir) = &self.work_dir {
            if !dir.is_absolute() {
                return invalid(format!(
                    "work_dir {} must be an absolute path",
                    dir.display()
                ));
            }
        }
        for (name, template) in &self.backends {
            crate::placeholder::check(name, template)
                .map_err(|reason| DaemonError::Config { reason })?;
        }
        if let Some(allowed) = &self.allowed_backends {
            let known = drover_supervisor::BackendTable::builtin();
            if let Some(unknown) = allowed
                .iter()
                .find(|name| known.get(name).is_none() && !self.backends.contains_key(*name))
            {
                return invalid(format!(
                    "allowed_backends names {unknown:?}, which is no backend (built in: {}; \
                     or one of [backends])",
                    known.names().collect::<Vec<_>>().join(", ")
                ));
            }
        }
        if self.http_limits.max_connections == 0 {
            return invalid("http_max_connections must be at least 1".into());
        }
        if self.http_limits.max_per_peer == 0 {
            return invalid("http_max_per_peer must be at least 1".into());
        }
        self.check_binds()?;
        // Last, so a config refused for another reason changes nothing: raise the soft
        // open-files limit to the hard one, then check that max_agents fits in it.
        let limit = crate::fdlimit::raise()?;
        crate::fdlimit::check(
            limit,
            self.max_agents,
            self.max_streams,
            self.http_limits.max_connections,
            self.store.max_open_writers,
            self.fds_per_agent(),
        )
    }

    /// Descriptors one live agent costs the daemon: fewer under holders, which own the pipes.
    pub fn fds_per_agent(&self) -> u64 {
        if self.holder.is_some() {
            crate::fdlimit::FDS_PER_HELD_AGENT
        } else {
            crate::fdlimit::FDS_PER_AGENT
        }
    }

    /// The directory an agent with no `cwd` in its spec starts in: [`Config::work_dir`], else
    /// `$HOME`, else the daemon's own working directory (`None`).
    pub fn agent_work_dir(&self) -> Option<PathBuf> {
        self.work_dir.clone().or_else(|| {
            std::env::var_os("HOME")
                .filter(|home| !home.is_empty())
                .map(PathBuf::from)
        })
    }

    /// Check the binds. Control and PUB may bind any address a client can reach: a `tcp://`
    /// endpoint always requires CURVE with an allowed key, and an `ipc://` one lives in the
    /// private state directory. A wildcard (`0.0.0.0`, `::`, `*`) is refused: `stream_info`
    /// tells clients the bound PUB address, and a wildcard is not one they can connect to.
    /// HTTP may bind anything (a token on every request, TLS off loopback).
    pub fn check_binds(&self) -> Result<(), DaemonError> {
        for endpoint in [&self.control, &self.publish] {
            let host = endpoint
                .strip_prefix("tcp://")
                .and_then(|rest| rest.rsplit_once(':'))
                .map(|(host, _)| host.trim_start_matches('[').trim_end_matches(']'));
            if endpoint.starts_with("ipc://") {
                // An ipc socket is trusted with full control by its file permission, which only
                // the 0700 state directory guarantees (not a path elsewhere, not an abstract
                // `ipc://@name`): those are bound there by `ipc = true`, never named here.
                return Err(DaemonError::Config {
                    reason: format!(
                        "refusing to bind {endpoint}: ipc sockets are trusted without a key, so \
                         they are only bound in the state directory (ipc = true); control and \
                         pub take tcp://host:port"
                    ),
                });
            }
            if host.is_none() {
                return Err(DaemonError::Config {
                    reason: format!("{endpoint} is not a tcp://host:port endpoint"),
                });
            }
            if let Some(host) = host.filter(|h| matches!(*h, "0.0.0.0" | "::" | "*" | "")) {
                return Err(DaemonError::Config {
                    reason: format!(
                        "refusing to bind {endpoint}: {host:?} is a wildcard, and clients are told \
                         the bound address to subscribe to; bind the address they reach this \
                         host by (e.g. tcp://10.0.0.2:7710)"
                    ),
                });
            }
        }
        // HTTP may bind any address: every request needs a token, and off loopback it is TLS.
        self.http
            .rsplit_once(':')
            .map(|_| ())
            .ok_or_else(|| DaemonError::Config {
                reason: format!("{} is not a host:port address", self.http),
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
    http_unix: Option<bool>,
    tls_cert: Option<PathBuf>,
    tls_key: Option<PathBuf>,
    http_max_connections: Option<usize>,
    http_max_per_peer: Option<usize>,
    http_public_hosts: Option<Vec<String>>,
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
    work_dir: Option<PathBuf>,
}

impl ConfigFile {
    fn apply(self, config: &mut Config) {
        let ConfigFile {
            control,
            publish,
            http,
            http_unix,
            tls_cert,
            tls_key,
            http_max_connections,
            http_max_per_peer,
            http_public_hosts,
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
            work_dir,
        } = self;
        set(&mut config.control, control);
        set(&mut config.publish, publish);
        set(&mut config.http, http);
        set(&mut config.http_unix, http_unix);
        config.tls_cert = tls_cert.or(config.tls_cert.take());
        config.tls_key = tls_key.or(config.tls_key.take());
        set(
            &mut config.http_limits.max_connections,
            http_max_connections,
        );
        set(&mut config.http_limits.max_per_peer, http_max_per_peer);
        set(&mut config.http_public_hosts, http_public_hosts);
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
        config.work_dir = work_dir.or(config.work_dir.take());
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

    /// Every key of the config file, as README.md's "Configuration" must show them.
    const KEYS: [&str; 23] = [
        "control",
        "publish",
        "http",
        "http_unix",
        "tls_cert",
        "tls_key",
        "http_max_connections",
        "http_max_per_peer",
        "http_public_hosts",
        "ipc",
        "max_agents",
        "max_ended_agents",
        "max_streams",
        "allowed_backends",
        "backends",
        "default_grace_ms",
        "max_frame",
        "max_record",
        "on_shutdown",
        "agent_log_budget",
        "global_log_budget",
        "sync_interval_ms",
        "work_dir",
    ];

    #[test]
    fn the_readme_documents_every_config_key_and_its_example_parses() {
        let readme = include_str!("../../../README.md");
        let section = &readme[readme.find("## Configuration").unwrap()..];
        let start = section.find("```toml\n").unwrap() + "```toml\n".len();
        let block = &section[start..start + section[start..].find("```").unwrap()];
        // Commented-out keys count: they are documented, with an example value.
        let text: String = block
            .lines()
            .map(|line| match line.strip_prefix("# ") {
                Some(rest) if rest.split_once(" = ").is_some() => rest,
                _ => line,
            })
            .map(|line| format!("{line}\n"))
            .collect();
        let parsed: ConfigFile = toml::from_str(&text).unwrap();
        let table: toml::Table = toml::from_str(&text).unwrap();
        let mut shown: Vec<&str> = table.keys().map(String::as_str).collect();
        let mut keys = KEYS.to_vec();
        shown.sort_unstable();
        keys.sort_unstable();
        assert_eq!(shown, keys, "README's config example shows every key once");
        let mut config = Config::new("/tmp/unused");
        parsed.apply(&mut config);
        assert_eq!(config.work_dir, Some(PathBuf::from("/srv/agents")));
    }

    /// Values that would break the daemon quietly are refused at start, each naming its key
    /// (`max_ended_agents = 0` made every `run` fail with `not_found`, `sync_interval_ms = 0`
    /// spun a core, a global budget of 0 removed every log at its end, a misspelt backend key
    /// was ignored and a bad `stop_signal` blamed each spawn's client).
    #[test]
    fn values_that_would_break_the_daemon_quietly_are_refused_naming_their_key() {
        let backend = |extra: &str| format!("[backends.mytool]\nargv = [\"mytool\"]\n{extra}\n");
        let cases = [
            ("max_ended_agents = 0\n".to_owned(), "max_ended_agents"),
            ("sync_interval_ms = 0\n".to_owned(), "sync_interval_ms"),
            ("sync_interval_ms = 60000\n".to_owned(), "sync_interval_ms"),
            ("agent_log_budget = 0\n".to_owned(), "agent_log_budget"),
            ("global_log_budget = 1024\n".to_owned(), "global_log_budget"),
            ("allowed_backends = [\"cladue\"]\n".to_owned(), "\"cladue\""),
            (backend("stop_signal = \"INTT\""), "stop_signal \"INTT\""),
        ];
        for (text, named) in cases {
            let dir = tempfile::tempdir().unwrap();
            let path = dir.path().join("drover.toml");
            std::fs::write(&path, &text).unwrap();
            let mut config = Config::new(dir.path());
            config.apply_file(&path).unwrap();
            let error = config.validate().unwrap_err().to_string();
            assert!(error.contains(named), "{text}: {error}");
        }
        // A misspelt backend key is an error when the file is read, not a key ignored.
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("drover.toml");
        std::fs::write(&path, backend("stop_sginal = \"INT\"")).unwrap();
        let error = Config::new(dir.path())
            .apply_file(&path)
            .unwrap_err()
            .to_string();
        assert!(error.contains("stop_sginal"), "{error}");
        // What is allowed still is.
        std::fs::write(
            &path,
            format!(
                "allowed_backends = [\"claude\", \"mytool\"]\nsync_interval_ms = 1\n\
                 agent_log_budget = 65536\n{}",
                backend("stop_signal = \"INT\"")
            ),
        )
        .unwrap();
        let mut config = Config::new(dir.path());
        config.apply_file(&path).unwrap();
        config.validate().unwrap();
    }

    #[test]
    fn an_unknown_placeholder_is_a_config_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("drover.toml");
        std::fs::write(
            &path,
            "[backends.mytool]\nargv = [\"mytool\", [\"--model\", \"{modle}\"]]\n",
        )
        .unwrap();
        let mut config = Config::new(dir.path());
        config.apply_file(&path).unwrap();
        let error = config.validate().unwrap_err().to_string();
        assert!(
            error.contains("backend \"mytool\": unknown placeholder {modle}"),
            "{error}"
        );
    }

    #[test]
    fn binds_may_be_remote() {
        let mut config = Config::new("/tmp/unused");
        config.check_binds().unwrap();
        for control in [
            "tcp://localhost:1",
            "tcp://[::1]:1",
            "tcp://192.168.1.5:7710",
        ] {
            config.control = control.into();
            config.publish = control.into();
            config.check_binds().unwrap();
        }
        for control in ["udp://1.2.3.4:5", "tcp://nohost", "inproc://x"] {
            config.control = control.into();
            let error = config.check_binds().unwrap_err().to_string();
            assert!(error.contains("not a tcp://host:port"), "{error}");
        }
        for ipc in ["ipc:///tmp/x", "ipc://@abstract"] {
            config.control = ipc.into();
            let error = config.check_binds().unwrap_err().to_string();
            assert!(
                error.contains("only bound in the state directory"),
                "{error}"
            );
        }
        for wildcard in ["tcp://0.0.0.0:7710", "tcp://[::]:1", "tcp://*:1"] {
            config.control = wildcard.into();
            let error = config.check_binds().unwrap_err().to_string();
            assert!(error.contains("is a wildcard"), "{error}");
        }
        config.control = "tcp://127.0.0.1:7710".into();
        config.http = "0.0.0.0:7712".into();
        // Off loopback HTTP is served with TLS only (see `tls`), so the bind itself is allowed.
        config.check_binds().unwrap();
        config.http = "no-port".into();
        assert!(config.check_binds().is_err());
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
