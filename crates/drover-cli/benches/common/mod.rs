//! What the fleet benchmarks share: the real binary, daemons on loopback TCP with CURVE, and a
//! contexts file naming them `d0`, `d1`, ... as a user would have it.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

pub fn drover() -> &'static str {
    env!("CARGO_BIN_EXE_drover")
}

/// `drover ARGS` with this contexts file, prepared (for a caller that streams its output).
pub fn command(config: &Path, args: &[&str]) -> Command {
    let mut command = Command::new(drover());
    command
        .args(args)
        .env("DROVER_CONFIG_DIR", config)
        .env_remove("DROVER_CONTEXT")
        .env_remove("DROVER_CONTROL");
    command
}

/// Run `drover ARGS` to success and return its stdout.
pub fn run(config: &Path, args: &[&str]) -> String {
    let output = command(config, args).output().expect("run drover");
    assert!(
        output.status.success(),
        "drover {args:?}: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).expect("utf-8")
}

/// A daemon on loopback: its process, and its ipc endpoint (for filling it directly).
pub struct Host {
    pub child: Child,
    pub ipc: String,
}

impl Drop for Host {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `hosts` daemons in `root`, each allowing one client key with `role`, and the contexts
/// file (in the returned directory) naming them `d0`, `d1`, ... over TCP with CURVE.
pub fn fleet(root: &Path, hosts: usize, role: &str) -> (PathBuf, Vec<Host>, Vec<String>) {
    let config = root.join("config");
    let key = config.join("client.key");
    std::fs::create_dir_all(&config).unwrap();
    let key_arg = key.to_str().unwrap();
    let public = run(&config, &["auth", "keygen", "--out", key_arg]);
    let mut daemons = Vec::new();
    let mut names = Vec::new();
    for host in 0..hosts {
        let state = root.join(format!("state{host}"));
        std::fs::create_dir_all(&state).unwrap();
        // Private, as the daemon wants its state directory (else it warns and fixes it).
        std::fs::set_permissions(&state, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        let state_arg = state.to_str().unwrap();
        let allow = ["auth", "allow", public.trim(), "--role", role];
        run(&config, &[&allow[..], &["--state-dir", state_arg]].concat());
        let server_key = run(&config, &["auth", "server-key", "--state-dir", state_arg]);
        let (child, tcp, ipc) = serve(&state);
        let name = format!("d{host}");
        run(
            &config,
            &[
                "context",
                "add",
                &name,
                "--control",
                &tcp,
                "--server-key",
                server_key.trim(),
                "--key",
                key_arg,
            ],
        );
        daemons.push(Host { child, ipc });
        names.push(name);
    }
    (config, daemons, names)
}

/// A daemon on loopback: its process, TCP control endpoint and ipc endpoint.
fn serve(state: &Path) -> (Child, String, String) {
    let mut child = Command::new(drover())
        .args([
            "serve",
            "--control",
            "tcp://127.0.0.1:0",
            "--pub",
            "tcp://127.0.0.1:0",
        ])
        .args(["--http", "127.0.0.1:0", "--state-dir"])
        .arg(state)
        .env("DROVER_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .expect("drover serve");
    let mut line = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut line)
        .expect("ready line");
    let field = |name: &str| {
        line.split_whitespace()
            .find_map(|f| f.strip_prefix(name))
            .expect("field")
            .to_owned()
    };
    (child, field("control="), field("ipc="))
}

pub fn ms(d: std::time::Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
