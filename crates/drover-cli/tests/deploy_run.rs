//! The deployment files' command lines, run: each daemon command line (the DaemonSet's, the
//! Nomad task's, both systemd units' `ExecStart`), its addresses moved to loopback port 0 and
//! its paths into a temporary directory, starts the real daemon, which the Kubernetes probe
//! command (or the plain `drover health` a user runs) then finds healthy; and the Kubernetes
//! keys, laid out as the kubelet writes a Secret volume and linked by the init container's own
//! script, are the daemon's, with a client key added to the Secret honoured without a restart.

mod common;
mod deploy;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use common::TIMEOUT;
use deploy::{daemonset, exec_start, kubernetes_command_lines, nomad_command_line, strings, text};

/// A daemon started from a manifest's command line, killed if the test fails.
struct Started {
    child: Child,
    ready: String,
}

impl Drop for Started {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Where a manifest's paths and addresses go in the test: the node's /var/lib/drover and the
/// Secret volume into `dir`, every address onto loopback port 0 (several tests run at once).
fn localise(word: &str, dir: &Path) -> String {
    let var_lib = dir.join("var-lib-drover");
    let word = word
        .replace("$(POD_IP)", "127.0.0.1")
        .replace("${NOMAD_ADDR_control}", "127.0.0.1:7710")
        .replace("${NOMAD_ADDR_pub}", "127.0.0.1:7711")
        .replace("${NOMAD_ADDR_http}", "127.0.0.1:7712")
        .replace("/var/lib/drover", var_lib.to_str().expect("a UTF-8 path"))
        .replace(
            "/etc/drover/keys",
            secret_dir(dir).to_str().expect("a UTF-8 path"),
        );
    ["7710", "7711", "7712"].iter().fold(word, |word, port| {
        word.replace(&format!("127.0.0.1:{port}"), "127.0.0.1:0")
    })
}

/// A `drover` command with the environment of the test's own: no DROVER_* of the caller's, a
/// home, config and data directory in `dir`.
fn drover_in(dir: &Path, args: &[String]) -> Command {
    let mut command = Command::new(common::drover_bin());
    command.args(args);
    for name in [
        "CONTROL",
        "CONTEXT",
        "PUB",
        "HTTP",
        "STATE_DIR",
        "CONFIG",
        "WORK_DIR",
        "ON_SHUTDOWN",
        "HOLDER",
        "MAX_AGENTS",
        "GRACE_MS",
    ] {
        command.env_remove(format!("DROVER_{name}"));
    }
    command
        .env("HOME", dir.join("home"))
        .env("XDG_DATA_HOME", dir.join("data"))
        .env("DROVER_CONFIG_DIR", dir.join("config"))
        .env("DROVER_LOG", "warn");
    command
}

/// Start `line` (program first) as the manifest would, and wait for the ready line.
fn start(line: &[String], dir: &Path) -> Started {
    // 0700, as systemd's StateDirectory= and the init container make them.
    for sub in [
        "var-lib-drover/state",
        "var-lib-drover/work",
        "home",
        "data",
    ] {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir.join(sub))
            .expect("mkdir");
    }
    let args: Vec<String> = line[1..].iter().map(|word| localise(word, dir)).collect();
    let mut child = drover_in(dir, &args)
        // A unit without addresses gets them from its environment file; loopback port 0 here.
        .env("DROVER_CONTROL", "tcp://127.0.0.1:0")
        .env("DROVER_PUB", "tcp://127.0.0.1:0")
        .env("DROVER_HTTP", "127.0.0.1:0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start drover serve");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = BufReader::new(stdout).read_line(&mut line);
        let _ = tx.send(line);
    });
    let mut started = Started {
        child,
        ready: String::new(),
    };
    started.ready = rx
        .recv_timeout(TIMEOUT)
        .unwrap_or_else(|_| panic!("no ready line from {args:?} within {TIMEOUT:?}"));
    assert!(
        started.ready.starts_with("drover ready "),
        "{args:?}: {:?}",
        started.ready
    );
    started
}

/// One `key=` field of the ready line.
fn ready_field(started: &Started, key: &str) -> String {
    started
        .ready
        .split_whitespace()
        .find_map(|field| field.strip_prefix(key))
        .unwrap_or_else(|| panic!("{key} in the ready line {:?}", started.ready))
        .to_owned()
}

/// SIGTERM, and the daemon exits 0 in time (with `--on-shutdown leave` too).
fn stop(mut started: Started) {
    common::signal(started.child.id(), "TERM");
    let status = common::wait_for("drover serve to exit", || {
        started.child.try_wait().expect("try_wait")
    });
    assert!(status.success(), "drover serve exited with {status}");
}

fn assert_healthy(output: Output, origin: &str) {
    assert!(
        output.status.success() && text(&output.stdout).starts_with("ok: drover "),
        "{origin}: drover health: {}\n{}{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    );
}

#[test]
fn the_kubernetes_command_line_starts_a_daemon_its_probes_find_healthy() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (line, probes) = kubernetes_command_lines();
    let started = start(&line, dir.path());
    let socket = dir.path().join("var-lib-drover/state/control.sock");
    assert_eq!(
        ready_field(&started, "ipc="),
        format!("ipc://{}", socket.display()),
        "the probes' socket is where the daemon binds it"
    );
    for probe in probes {
        let args: Vec<String> = probe[1..].iter().map(|w| localise(w, dir.path())).collect();
        assert_healthy(common::output_of(drover_in(dir.path(), &args)), "probe");
    }
    stop(started);
}

#[test]
fn the_systemd_and_nomad_command_lines_start_a_daemon() {
    for (origin, line) in [
        ("drover.service", exec_start("drover.service")),
        ("drover.nomad.hcl", nomad_command_line()),
        ("drover-user.service", exec_start("drover-user.service")),
    ] {
        let dir = tempfile::tempdir().expect("tempdir");
        let started = start(&line, dir.path());
        let ipc = ready_field(&started, "ipc=");
        // The user unit's daemon uses the CLI's default state directory, so a plain
        // `drover health` (the built-in `local` context) reaches it; the others name theirs.
        let args: Vec<String> = if origin == "drover-user.service" {
            vec!["health".into()]
        } else {
            vec!["--control".into(), ipc, "health".into()]
        };
        assert_healthy(common::output_of(drover_in(dir.path(), &args)), origin);
        stop(started);
    }
}

/// Where the test lays out the Secret volume.
fn secret_dir(dir: &Path) -> PathBuf {
    dir.join("secret")
}

/// Publish `files` (name, content) in the Secret volume as the kubelet does (its AtomicWriter):
/// a new timestamped directory, `..data` swapped to it by a rename, and each file a link
/// through `..data`, so readers see the old set or the new one, never a mix.
fn publish_secret(dir: &Path, generation: &str, files: &[(&str, String)]) {
    let volume = secret_dir(dir);
    let data = volume.join(generation);
    std::fs::create_dir_all(&data).expect("mkdir");
    for (name, content) in files {
        std::fs::write(data.join(name), content).expect("write a secret file");
        let link = volume.join(name);
        if link.symlink_metadata().is_err() {
            std::os::unix::fs::symlink(Path::new("..data").join(name), link).expect("link");
        }
    }
    let next = volume.join("..data_tmp");
    std::os::unix::fs::symlink(generation, &next).expect("link ..data_tmp");
    std::fs::rename(&next, volume.join("..data")).expect("swap ..data");
}

fn drover_ok(dir: &Path, args: &[&str]) -> String {
    let args: Vec<String> = args.iter().map(|a| (*a).to_owned()).collect();
    let output = common::output_of(drover_in(dir, &args));
    assert!(
        output.status.success(),
        "drover {args:?}: {}",
        text(&output.stderr)
    );
    text(&output.stdout).trim().to_owned()
}

#[test]
fn the_kubernetes_keys_come_from_the_secret_and_a_new_client_key_needs_no_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let dir = dir.path();
    // The keys as DEPLOY.md makes them: `drover auth --state-dir DIR server-key`, a client's
    // `drover auth keygen`, and its `allow` into the same DIR.
    let keys = dir.join("drover-keys");
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(&keys)
        .expect("mkdir");
    let keys_arg = keys.to_str().expect("a UTF-8 path");
    let server_key = drover_ok(dir, &["auth", "--state-dir", keys_arg, "server-key"]);
    let client_file = dir.join("client.key");
    let client_arg = client_file.to_str().expect("a UTF-8 path");
    let client_key = drover_ok(dir, &["auth", "keygen", "--out", client_arg]);
    let read = |name: &str| std::fs::read_to_string(keys.join(name)).expect(name);
    let mut secret = vec![
        ("server.key", read("server.key")),
        ("server.key.pub", read("server.key.pub")),
        ("allowed_keys", String::new()),
    ];
    publish_secret(dir, "..2026_12_02_01", &secret);

    // The init container's script, run as this user rather than uid 10001 (the daemon refuses
    // a state directory that is not its own).
    let spec = &daemonset()["spec"]["template"]["spec"];
    let init = strings(&spec["initContainers"][0]["command"]);
    assert_eq!(init[..2], ["/bin/sh", "-c"]);
    let me = nix::unistd::getuid().to_string();
    let group = nix::unistd::getgid().to_string();
    let script = localise(&init[2], dir)
        .replace("10001:10001", &format!("{me}:{group}"))
        .replace("-o 10001 -g 10001", &format!("-o {me} -g {group}"));
    assert!(!script.contains("10001"), "every uid replaced: {script}");
    let output = common::output_of({
        let mut command = Command::new("/bin/sh");
        command.args(["-c", &script]);
        command
    });
    assert!(output.status.success(), "init: {}", text(&output.stderr));

    let (line, _) = kubernetes_command_lines();
    let started = start(&line, dir);
    let state = dir.join("var-lib-drover/state");
    let state_arg = state.to_str().expect("a UTF-8 path");
    assert_eq!(
        drover_ok(dir, &["auth", "--state-dir", state_arg, "server-key"]),
        server_key,
        "the daemon uses the Secret's keypair"
    );
    for name in ["server.key", "server.key.pub", "allowed_keys"] {
        let meta = state.join(name).symlink_metadata().expect(name);
        assert!(meta.file_type().is_symlink(), "{name} is still the link");
    }

    // A client whose key the Secret does not list is refused...
    let control = ready_field(&started, "control=");
    drover_ok(
        dir,
        &[
            "context",
            "add",
            "node",
            "--control",
            &control,
            "--server-key",
            &server_key,
            "--key",
            client_arg,
        ],
    );
    let health = || {
        common::output_of(drover_in(
            dir,
            &["--context".into(), "node".into(), "health".into()],
        ))
    };
    let refused = health();
    assert!(!refused.status.success());
    assert!(
        text(&refused.stderr).contains("not allowed"),
        "{}",
        text(&refused.stderr)
    );
    // ...and allowed once the Secret is updated, without a restart.
    drover_ok(
        dir,
        &[
            "auth",
            "--state-dir",
            keys_arg,
            "allow",
            &client_key,
            "--role",
            "read",
            "--comment",
            "ci",
        ],
    );
    secret[2].1 = read("allowed_keys");
    publish_secret(dir, "..2026_12_02_02", &secret);
    let answer = common::wait_for("the new key to be honoured", || {
        let output = health();
        output.status.success().then_some(output)
    });
    assert!(text(&answer.stdout).starts_with("ok: drover "));
    stop(started);
}
