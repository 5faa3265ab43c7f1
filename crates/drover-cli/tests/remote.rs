//! Remote use through the real binary across network namespaces: three hosts on one machine.
//!
//! Host B runs `drover serve` bound to its veth address. Host A runs the CLI with contexts.
//! Host C (the test's own namespace) sits between them: a TCP relay that forwards A's
//! connections to B and keeps every byte it forwards, so the test can check that nothing the
//! agent printed crossed the wire in clear. CI runs as root; these tests need `ip` (iproute2,
//! installed by `scripts/setup-test-env`) and fail loudly without them.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::netns::{ip, Netns, NetnsDaemon};
use common::*;

/// A network namespace joined to this one by a veth pair: `here` on our side, `there` inside.
struct Host {
    ns: Netns,
    here: Ipv4Addr,
    there: Ipv4Addr,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

impl Host {
    fn new(role: char) -> Host {
        let ns = Netns::new(role);
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let id = std::process::id() % 100_000;
        // Interface names are at most 15 bytes.
        let outer = format!("dv{id}{role}{n}o");
        let inner = format!("dv{id}{role}{n}i");
        // A /30 per host, unique in this process: 10.(77+id%100).(n).x.
        let net = [10u8, 77 + (id % 100) as u8, n as u8];
        let here = Ipv4Addr::new(net[0], net[1], net[2], 1);
        let there = Ipv4Addr::new(net[0], net[1], net[2], 2);
        ip(&[
            "link", "add", &outer, "type", "veth", "peer", "name", &inner,
        ]);
        ip(&["link", "set", &inner, "netns", &ns.name]);
        ip(&["addr", "add", &format!("{here}/30"), "dev", &outer]);
        ip(&["link", "set", &outer, "up"]);
        ip(&[
            "-n",
            &ns.name,
            "addr",
            "add",
            &format!("{there}/30"),
            "dev",
            &inner,
        ]);
        ip(&["-n", &ns.name, "link", "set", &inner, "up"]);
        // Deleting the namespace (when `ns` drops) deletes its end of the pair, and ours.
        Host { ns, here, there }
    }

    /// A command run inside this host.
    fn command(&self, program: &str) -> Command {
        self.ns.command(program)
    }
}

/// A TCP relay on host C: every connection to `listen` is forwarded to `target`, and every
/// byte forwarded either way is kept.
struct Relay {
    addr: SocketAddr,
    seen: Arc<Mutex<Vec<u8>>>,
}

impl Relay {
    fn start(listen: Ipv4Addr, target: SocketAddr) -> Relay {
        Relay::throttled(listen, target, None)
    }

    /// With what the target sends forwarded at no more than `rate` bytes a second: a slow link.
    fn throttled(listen: Ipv4Addr, target: SocketAddr, rate: Option<u64>) -> Relay {
        let listener = TcpListener::bind((listen, 0)).unwrap();
        let addr = listener.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let kept = Arc::clone(&seen);
        std::thread::spawn(move || {
            for client in listener.incoming() {
                let Ok(client) = client else { return };
                let Ok(server) = TcpStream::connect(target) else {
                    continue;
                };
                for (mut from, mut to, rate) in [
                    (
                        client.try_clone().unwrap(),
                        server.try_clone().unwrap(),
                        None,
                    ),
                    (server, client, rate),
                ] {
                    let kept = Arc::clone(&kept);
                    std::thread::spawn(move || {
                        let started = Instant::now();
                        let mut sent = 0u64;
                        let mut buf = [0u8; 16 * 1024];
                        loop {
                            let n = match from.read(&mut buf) {
                                Ok(0) | Err(_) => break,
                                Ok(n) => n,
                            };
                            kept.lock().unwrap().extend_from_slice(&buf[..n]);
                            if let Some(rate) = rate {
                                // Pace the bytes: this one goes once the link had time for it.
                                sent += n as u64;
                                let due = Duration::from_secs_f64(sent as f64 / rate as f64);
                                if let Some(wait) = due.checked_sub(started.elapsed()) {
                                    std::thread::sleep(wait);
                                }
                            }
                            if to.write_all(&buf[..n]).is_err() {
                                break;
                            }
                        }
                        let _ = to.shutdown(std::net::Shutdown::Both);
                    });
                }
            }
        });
        Relay { addr, seen }
    }

    fn bytes(&self) -> Vec<u8> {
        self.seen.lock().unwrap().clone()
    }
}

/// `drover` on host A with its own config directory.
fn on_a(host: &Host, config: &Path, args: &[&str]) -> Output {
    let child = host
        .command(drover_bin())
        .args(args)
        .env("DROVER_CONFIG_DIR", config)
        .env_remove("DROVER_CONTROL")
        .env_remove("DROVER_CONTEXT")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    wait_output(child)
}

/// `drover auth …` on the daemon's host, against its state directory.
fn on_b_auth(daemon_state: &Path, args: &[&str]) -> String {
    let output = Command::new(drover_bin())
        .arg("auth")
        .args(args)
        .arg("--state-dir")
        .arg(daemon_state)
        .output()
        .unwrap();
    ok(output)
}

/// `drover context add NAME` on host A for the daemon behind the `control` and `publish` relays.
fn add_context(
    a: &Host,
    config: &Path,
    name: &str,
    (control, publish): (&Relay, &Relay),
    server_key: &str,
    key: &Path,
) {
    ok(on_a(
        a,
        config,
        &[
            "context",
            "add",
            name,
            "--control",
            &format!("tcp://{}", control.addr),
            "--pub",
            &format!("tcp://{}", publish.addr),
            "--server-key",
            server_key,
            "--key",
            key.to_str().unwrap(),
        ],
    ));
}

/// Make a keypair in `config` under `name` and return its public key.
fn keygen(config: &Path, name: &str) -> (PathBuf, String) {
    let file = config.join(format!("{name}.key"));
    let output = Command::new(drover_bin())
        .args(["auth", "keygen", "--out"])
        .arg(&file)
        .env("DROVER_CONFIG_DIR", config)
        .output()
        .unwrap();
    (file, ok(output).trim().to_owned())
}

const LINES: usize = 300;

#[test]
fn a_remote_daemon_is_reached_only_with_an_allowed_key_and_its_traffic_is_encrypted() {
    let a = Host::new('a');
    let b = Host::new('b');
    let state = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();

    // On A: three keypairs. On B: allow two of them.
    let (control_key, control_public) = keygen(config.path(), "control");
    let (read_key, read_public) = keygen(config.path(), "read");
    let (stranger_key, _) = keygen(config.path(), "stranger");
    on_b_auth(
        state.path(),
        &[
            "allow",
            &control_public,
            "--role",
            "control",
            "--comment",
            "ops",
        ],
    );
    on_b_auth(
        state.path(),
        &[
            "allow",
            &read_public,
            "--role",
            "read",
            "--comment",
            "watcher",
        ],
    );
    let server_key = on_b_auth(state.path(), &["server-key"]).trim().to_owned();

    let work = tempfile::tempdir().unwrap();
    let daemon = NetnsDaemon::start(&b.ns, b.there, state.path(), work.path());
    // Host C relays A's connections (to C's address on A's link) to B.
    let control = Relay::start(a.here, daemon.control);
    let publish = Relay::start(a.here, daemon.publish);

    for (name, key) in [
        ("ops", &control_key),
        ("watcher", &read_key),
        ("stranger", &stranger_key),
    ] {
        add_context(
            &a,
            config.path(),
            name,
            (&control, &publish),
            &server_key,
            key,
        );
    }
    ok(on_a(&a, config.path(), &["context", "use", "ops"]));

    // The control key spawns an agent that waits for its stdin, so both followers are
    // attached before it prints.
    let script = format!(
        "read go; i=1; while [ $i -le {LINES} ]; do echo SECRET-MARKER-$i; i=$((i+1)); done"
    );
    let id = ok(on_a(
        &a,
        config.path(),
        &["spawn", "-i", "--name", "m", "--", "sh", "-c", &script],
    ));
    assert_eq!(id.trim().len(), 36, "{id}");

    // Both keys follow; the read key through its own context.
    let follow = |context: &str| {
        a.command(drover_bin())
            .args(["--context", context, "logs", "-f", "m", "--no-prefix"])
            .env("DROVER_CONFIG_DIR", config.path())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    };
    let ops_follow = follow("ops");
    let watcher_follow = follow("watcher");
    ok(on_a(&a, config.path(), &["send", "m", "go"]));
    let expected: String = (1..=LINES)
        .map(|i| format!("SECRET-MARKER-{i}\n"))
        .collect();
    for (who, child) in [("ops", ops_follow), ("watcher", watcher_follow)] {
        let output = wait_output(child);
        assert!(output.status.success(), "{who}: {}", stderr(&output));
        assert_eq!(stdout(&output), expected, "{who} sees exactly 1..={LINES}");
    }

    // The read key may look but not act.
    let refused = on_a(
        &a,
        config.path(),
        &["--context", "watcher", "spawn", "--", "true"],
    );
    assert_eq!(
        refused.status.code(),
        Some(6),
        "unauthorized: {}",
        stderr(&refused)
    );
    assert!(
        stderr(&refused).contains("unauthorized"),
        "{}",
        stderr(&refused)
    );
    let listed = ok(on_a(&a, config.path(), &["--context", "watcher", "ls"]));
    assert!(listed.contains(" m "), "{listed}");

    // This host's directory means nothing there: agents start in the daemon's work directory,
    // unless told where.
    let work_dir = format!("{}\n", work.path().canonicalize().unwrap().display());
    assert_eq!(ok(on_a(&a, config.path(), &["run", "--", "pwd"])), work_dir);
    assert_eq!(
        ok(on_a(&a, config.path(), &["run", "--cwd", "/", "--", "pwd"])),
        "/\n"
    );

    // A key the daemon never allowed is refused at the handshake, promptly, and said so.
    let started = Instant::now();
    let stranger = on_a(&a, config.path(), &["--context", "stranger", "health"]);
    assert_eq!(
        stranger.status.code(),
        Some(6),
        "unauthorized's exit status"
    );
    assert!(
        stderr(&stranger).contains("this key is not allowed by that daemon"),
        "{}",
        stderr(&stranger)
    );
    assert!(
        started.elapsed() < Duration::from_secs(3),
        "{:?}",
        started.elapsed()
    );

    // Everything crossed host C, and none of it in clear.
    for (what, relay) in [("control", &control), ("pub", &publish)] {
        let bytes = relay.bytes();
        assert!(
            bytes.len() > 1000,
            "{what}: only {} bytes relayed",
            bytes.len()
        );
        assert!(
            !bytes
                .windows(b"SECRET-MARKER".len())
                .any(|w| w == b"SECRET-MARKER"),
            "{what}: a marker line crossed the wire in clear"
        );
    }
    drop(daemon);
}

/// A follow over a slow link (256 KB/s from the daemon) of an agent with 2 MB of output: its
/// refill reads take seconds each. Before, the follow's one-second liveness check queued on
/// the same connection behind them, took the daemon for gone, started the follow again from
/// the same point, and never got further ("the daemon went away" every few seconds, nothing
/// printed).
#[test]
fn a_follow_over_a_slow_link_is_not_taken_for_a_daemon_gone() {
    let a = Host::new('a');
    let b = Host::new('b');
    let state = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    let (key, public) = keygen(config.path(), "ops");
    on_b_auth(state.path(), &["allow", &public, "--role", "control"]);
    let server_key = on_b_auth(state.path(), &["server-key"]).trim().to_owned();
    let work = tempfile::tempdir().unwrap();
    let daemon = NetnsDaemon::start(&b.ns, b.there, state.path(), work.path());
    let control = Relay::throttled(a.here, daemon.control, Some(256 * 1024));
    let publish = Relay::start(a.here, daemon.publish);
    add_context(
        &a,
        config.path(),
        "slow",
        (&control, &publish),
        &server_key,
        &key,
    );
    ok(on_a(&a, config.path(), &["context", "use", "slow"]));
    // 2,000 lines of 1 KiB: a refill page is all of them.
    let lines = 2000;
    let script = format!(
        "i=1; while [ $i -le {lines} ]; do printf '%05d %01018d\\n' $i 0; i=$((i+1)); done"
    );
    ok(on_a(
        &a,
        config.path(),
        &["spawn", "--name", "big", "--", "sh", "-c", &script],
    ));
    ok(on_a(&a, config.path(), &["wait", "big"]));
    let output = on_a(&a, config.path(), &["logs", "-f", "--no-prefix", "big"]);
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        !stderr(&output).contains("went away"),
        "a slow daemon is not a gone one: {}",
        stderr(&output)
    );
    let printed: Vec<usize> = stdout(&output)
        .lines()
        .map(|l| l[..5].parse().unwrap())
        .collect();
    assert_eq!(printed, (1..=lines).collect::<Vec<_>>());
}

#[test]
fn another_local_user_cannot_reach_the_daemon() {
    let state = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(state.path());
    // A place `nobody` may write its own config and key.
    let theirs = tempfile::tempdir().unwrap();
    nix::unistd::chown(
        theirs.path(),
        Some(nix::unistd::Uid::from_raw(65534)),
        Some(nix::unistd::Gid::from_raw(65534)),
    )
    .unwrap();
    let as_nobody = |args: &[&str]| {
        let child = Command::new("runuser")
            .args(["-u", "nobody", "--", drover_bin()])
            .args(args)
            .env("DROVER_CONFIG_DIR", theirs.path())
            .env("HOME", theirs.path())
            .env_remove("DROVER_CONTROL")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        wait_output(child)
    };
    // The ipc socket is in the daemon user's 0700 state directory.
    let ipc = format!("ipc://{}", state.path().join("control.sock").display());
    let denied = as_nobody(&["--control", &ipc, "run", "--", "id"]);
    assert!(!denied.status.success(), "{}", stdout(&denied));
    assert!(!stdout(&denied).contains("uid="), "{}", stdout(&denied));

    // Loopback TCP needs an allowed key: nobody's own key is not one.
    let tcp = daemon.tcp.clone();
    let server_key = ok(Command::new(drover_bin())
        .args(["auth", "server-key", "--state-dir"])
        .arg(state.path())
        .output()
        .unwrap());
    let key = theirs.path().join("mine.key");
    ok(as_nobody(&[
        "auth",
        "keygen",
        "--out",
        key.to_str().unwrap(),
    ]));
    ok(as_nobody(&[
        "context",
        "add",
        "sneak",
        "--control",
        &tcp,
        "--server-key",
        server_key.trim(),
        "--key",
        key.to_str().unwrap(),
    ]));
    let denied = as_nobody(&["--context", "sneak", "run", "--", "id"]);
    assert!(!denied.status.success(), "{}", stdout(&denied));
    assert!(
        stderr(&denied).contains("this key is not allowed by that daemon"),
        "{}",
        stderr(&denied)
    );
    assert!(!stdout(&denied).contains("uid="), "{}", stdout(&denied));
}

/// `drover <args>` on this host with its own config directory, against `state`.
fn local(config: &Path, args: &[&str]) -> Output {
    let output = Command::new(drover_bin())
        .args(args)
        .env("DROVER_CONFIG_DIR", config)
        .env_remove("DROVER_CONTEXT")
        .env_remove("DROVER_CONTROL")
        .output()
        .unwrap();
    output
}

/// The HTTP status of `GET path` with a bearer token.
fn http_status(daemon: &Daemon, path: &str, token: &str) -> String {
    let output = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "-H"])
        .arg(format!("Authorization: Bearer {token}"))
        .arg(format!("{}{path}", daemon.http))
        .output()
        .expect("curl");
    stdout(&output)
}

#[test]
fn auth_and_context_commands_manage_keys_tokens_and_contexts() {
    let state = tempfile::tempdir().unwrap();
    let config = tempfile::tempdir().unwrap();
    let state_dir = state.path().to_str().unwrap();
    let cfg = config.path();

    // Keys: allow, list, revoke by comment.
    let (key_file, public) = keygen(cfg, "mine");
    assert_eq!(public.len(), 40, "{public}");
    let mode = std::fs::metadata(&key_file).unwrap().permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );
    ok(local(
        cfg,
        &[
            "auth",
            "allow",
            &public,
            "--role",
            "read",
            "--comment",
            "watcher",
            "--state-dir",
            state_dir,
        ],
    ));
    let listed: serde_json::Value = serde_json::from_str(&ok(local(
        cfg,
        &["--json", "auth", "ls", "--state-dir", state_dir],
    )))
    .unwrap();
    assert_eq!(listed["keys"][0]["key"], public.as_str());
    assert_eq!(listed["keys"][0]["role"], "read");
    assert_eq!(listed["keys"][0]["comment"], "watcher");
    let bad = local(
        cfg,
        &[
            "auth",
            "allow",
            "short",
            "--role",
            "read",
            "--state-dir",
            state_dir,
        ],
    );
    assert!(!bad.status.success());
    let bad_role = local(
        cfg,
        &[
            "auth",
            "allow",
            &public,
            "--role",
            "admin",
            "--state-dir",
            state_dir,
        ],
    );
    assert!(!bad_role.status.success());
    assert!(
        stderr(&bad_role).contains("unknown role"),
        "{}",
        stderr(&bad_role)
    );
    ok(local(
        cfg,
        &["auth", "revoke", "watcher", "--state-dir", state_dir],
    ));
    let listed: serde_json::Value = serde_json::from_str(&ok(local(
        cfg,
        &["--json", "auth", "ls", "--state-dir", state_dir],
    )))
    .unwrap();
    assert_eq!(listed["keys"], serde_json::json!([]));

    // Tokens: made, used over HTTP, revoked without a restart.
    let daemon = Daemon::start(state.path());
    let token = ok(local(
        cfg,
        &[
            "auth",
            "token",
            "create",
            "--role",
            "read",
            "--comment",
            "ci",
            "--state-dir",
            state_dir,
        ],
    ));
    let token = token.trim();
    assert!(token.starts_with("drv_"), "{token}");
    let stored = std::fs::read_to_string(state.path().join("tokens")).unwrap();
    assert!(!stored.contains(token), "tokens are stored hashed");
    assert_eq!(http_status(&daemon, "/v1/agents", token), "200");
    let listed = ok(local(
        cfg,
        &["auth", "token", "ls", "--state-dir", state_dir],
    ));
    assert!(listed.contains("ci"), "{listed}");
    assert!(!listed.contains(token), "{listed}");
    ok(local(
        cfg,
        &["auth", "token", "revoke", "ci", "--state-dir", state_dir],
    ));
    assert_eq!(http_status(&daemon, "/v1/agents", token), "401");

    // Contexts: add, list, use, show, remove; `local` is built in.
    let server_key = ok(local(
        cfg,
        &["auth", "server-key", "--state-dir", state_dir],
    ));
    let server_key = server_key.trim();
    ok(local(
        cfg,
        &[
            "context",
            "add",
            "here",
            "--control",
            &daemon.tcp,
            "--server-key",
            server_key,
            "--key",
            key_file.to_str().unwrap(),
        ],
    ));
    let again = local(
        cfg,
        &[
            "context",
            "add",
            "here",
            "--control",
            &daemon.tcp,
            "--server-key",
            server_key,
            "--key",
            key_file.to_str().unwrap(),
        ],
    );
    assert!(!again.status.success(), "a second add needs --force");
    let listed = ok(local(cfg, &["context", "ls"]));
    assert!(
        listed.contains("* ") || listed.lines().any(|l| l.trim_start().starts_with('*')),
        "{listed}"
    );
    assert!(
        listed.contains("here") && listed.contains("local"),
        "{listed}"
    );
    ok(local(cfg, &["context", "use", "here"]));
    let shown = ok(local(cfg, &["context", "show"]));
    assert!(
        shown.contains("here") && shown.contains(&daemon.tcp),
        "{shown}"
    );
    // The key is not allowed (it was revoked above): the daemon says so, through the context.
    let refused = local(cfg, &["ls"]);
    assert_eq!(refused.status.code(), Some(6), "unauthorized's exit status");
    assert!(
        stderr(&refused).contains("this key is not allowed by that daemon"),
        "{}",
        stderr(&refused)
    );
    ok(local(
        cfg,
        &[
            "auth",
            "allow",
            &public,
            "--role",
            "control",
            "--state-dir",
            state_dir,
        ],
    ));
    let ran = ok(local(cfg, &["run", "--", "echo", "through the context"]));
    assert_eq!(ran, "through the context\n");
    ok(local(cfg, &["context", "rm", "here"]));
    let shown = ok(local(cfg, &["context", "show"]));
    assert!(shown.contains("name:       local"), "{shown}");
    daemon.stop();
}

/// A z85 key may begin with `-` (one key in 85 does): it is taken as the value of
/// `--server-key` and as the key of `auth allow` / `auth revoke`, never as a flag.
#[test]
fn keys_that_begin_with_a_dash_are_values_not_flags() {
    let config = tempfile::tempdir().unwrap();
    let state = tempfile::tempdir().unwrap();
    let key = "-nKPe)$ln$WcUoL0[Fx]}<X&v)D0mpy5C2+nk(Z!";
    assert_eq!(key.len(), 40);
    ok(local(config.path(), &["auth", "keygen"]));
    ok(local(
        config.path(),
        &[
            "context",
            "add",
            "dashed",
            "--control",
            "tcp://127.0.0.1:7710",
            "--server-key",
            key,
        ],
    ));
    let shown = ok(local(config.path(), &["context", "show", "dashed"]));
    assert!(shown.contains(key), "{shown}");
    let state_dir = state.path().to_str().unwrap();
    ok(local(
        config.path(),
        &[
            "auth",
            "allow",
            key,
            "--role",
            "read",
            "--state-dir",
            state_dir,
        ],
    ));
    let listed = ok(local(
        config.path(),
        &["auth", "ls", "--state-dir", state_dir],
    ));
    assert!(listed.contains(key), "{listed}");
    ok(local(
        config.path(),
        &["auth", "revoke", key, "--state-dir", state_dir],
    ));
    let listed = ok(local(
        config.path(),
        &["auth", "ls", "--state-dir", state_dir],
    ));
    assert!(!listed.contains(key), "{listed}");
}
