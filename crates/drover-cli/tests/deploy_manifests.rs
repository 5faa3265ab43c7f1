//! The deployment files in `deploy/`, checked by the tools their engines' users rely on and run
//! for real:
//!
//! - Kubernetes: `kubernetes-validate --strict` (PyPI; it bundles the API schemas, so it works
//!   offline) against Kubernetes 1.29 and the newest version it bundles;
//! - systemd: `systemd-analyze verify` on the system unit and (`--user`) the user unit;
//! - Nomad: python-hcl2 parses the job, which must be a system job running `drover serve`;
//! - every flag of every `drover` command line in them is one the real binary's `--help` lists,
//!   and each daemon command line, its addresses moved to loopback port 0 and its paths into a
//!   temporary directory, starts the real daemon, which the Kubernetes probe command (or the
//!   plain `drover health` a user runs) then finds healthy.
//!
//! The tools come from `scripts/setup-test-env` (the workspace's `.venv`, Debian's systemd); a
//! missing one fails the test with a message saying so: nothing here is ever skipped.

mod common;

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use common::TIMEOUT;
use serde_json::Value;

const SETUP: &str = "it is installed by `scripts/setup-test-env` (run it at the workspace root)";

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn venv_bin(name: &str) -> PathBuf {
    root().join(".venv/bin").join(name)
}

/// Run a validation tool to the end (hard timeout); a tool that cannot be started fails the
/// test naming it.
fn run_tool(mut command: Command, name: &str) -> Output {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .current_dir(root());
    match command.spawn() {
        Ok(child) => common::wait_output(child),
        Err(error) => panic!("{name} is required and could not be run ({error}); {SETUP}"),
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn kubernetes_files() -> Vec<PathBuf> {
    let dir = root().join("deploy/kubernetes");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("deploy/kubernetes")
        .map(|entry| entry.expect("a directory entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "yaml"))
        .collect();
    files.sort();
    let names: Vec<_> = files.iter().filter_map(|p| p.file_name()).collect();
    assert_eq!(
        names,
        ["daemonset.yaml", "namespace.yaml", "service.yaml"],
        "the Kubernetes files"
    );
    files
}

fn nomad_job() -> PathBuf {
    root().join("deploy/nomad/drover.nomad.hcl")
}

/// Every manifest parsed (YAML by PyYAML, HCL by python-hcl2), by path.
fn parsed(files: &[PathBuf]) -> Value {
    let python = venv_bin("python");
    let mut command = Command::new(&python);
    command
        .arg(root().join("crates/drover-cli/tests/deploy/manifest_json.py"))
        .args(files);
    let output = run_tool(command, "the .venv's python with PyYAML and python-hcl2");
    assert!(
        output.status.success(),
        "parsing the manifests failed ({}); python-hcl2 and PyYAML are needed, {SETUP}: {}",
        output.status,
        text(&output.stderr)
    );
    serde_json::from_slice(&output.stdout).expect("the parser's JSON")
}

fn daemonset() -> Value {
    let file = root().join("deploy/kubernetes/daemonset.yaml");
    let all = parsed(std::slice::from_ref(&file));
    let docs = all[file.to_str().expect("a UTF-8 path")]
        .as_array()
        .expect("YAML documents")
        .clone();
    assert_eq!(docs.len(), 1, "daemonset.yaml holds one object");
    assert_eq!(docs[0]["kind"], "DaemonSet");
    docs[0].clone()
}

/// The Nomad job's one task.
fn nomad_task() -> Value {
    let all = parsed(&[nomad_job()]);
    let job = &all[nomad_job().to_str().expect("a UTF-8 path")]["job"][0]["drover"];
    assert_eq!(job["type"], "system", "one daemon per client node");
    job["group"][0]["drover"]["task"][0]["drover"].clone()
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .expect("a list of strings")
        .iter()
        .map(|v| v.as_str().expect("a string").to_owned())
        .collect()
}

/// A systemd unit's `ExecStart=` command line, as words (the units quote nothing).
fn exec_start(unit: &str) -> Vec<String> {
    let text = std::fs::read_to_string(root().join("deploy/systemd").join(unit)).expect(unit);
    let lines: Vec<&str> = text
        .lines()
        .filter_map(|line| line.strip_prefix("ExecStart="))
        .collect();
    assert_eq!(lines.len(), 1, "{unit} has one ExecStart");
    assert!(!lines[0].contains(['"', '\'']), "{unit}: no quoting");
    lines[0].split_whitespace().map(str::to_owned).collect()
}

/// The container's command line and each probe's, from the DaemonSet.
fn kubernetes_command_lines() -> (Vec<String>, Vec<Vec<String>>) {
    let spec = &daemonset()["spec"]["template"]["spec"];
    let container = &spec["containers"][0];
    let mut daemon = strings(&container["command"]);
    daemon.extend(strings(&container["args"]));
    let probes = ["startupProbe", "readinessProbe", "livenessProbe"]
        .iter()
        .map(|probe| strings(&container[probe]["exec"]["command"]))
        .collect();
    (daemon, probes)
}

fn nomad_command_line() -> Vec<String> {
    let config = &nomad_task()["config"][0];
    let mut line = vec![config["command"].as_str().expect("command").to_owned()];
    line.extend(strings(&config["args"]));
    line
}

/// The long flags `drover SUBCOMMAND --help` lists (global ones included).
fn help_flags(subcommand: &str) -> BTreeSet<String> {
    let output = common::output_of({
        let mut command = Command::new(common::drover_bin());
        command.args([subcommand, "--help"]);
        command
    });
    assert!(output.status.success(), "drover {subcommand} --help");
    text(&output.stdout)
        .split_whitespace()
        .filter(|word| word.starts_with("--"))
        .map(|word| {
            word.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '-')
                .collect()
        })
        .collect()
}

#[test]
fn kubernetes_manifests_pass_kubernetes_validate_strict() {
    let files = kubernetes_files();
    // 1.29: the oldest release still widely run; no version: the newest the package bundles.
    for version in [Some("1.29.0"), None] {
        let mut command = Command::new(venv_bin("kubernetes-validate"));
        command.arg("--strict");
        if let Some(version) = version {
            command.args(["--kubernetes-version", version]);
        }
        command.args(&files);
        let output = run_tool(command, "kubernetes-validate");
        let stdout = text(&output.stdout);
        assert!(
            output.status.success(),
            "kubernetes-validate --strict ({version:?}) refused the manifests:\n{stdout}{}",
            text(&output.stderr)
        );
        let passed = stdout.matches(" passed for resource ").count();
        assert_eq!(
            passed,
            files.len(),
            "one resource per file passed:\n{stdout}"
        );
    }
    // --strict must refuse a field Kubernetes does not know, or passing proves nothing.
    let dir = tempfile::tempdir().expect("tempdir");
    let good = std::fs::read_to_string(&files[0]).expect("daemonset.yaml");
    let typo = "          command: [\"/usr/local/bin/drover\"]\n";
    assert_eq!(
        good.matches(typo).count(),
        1,
        "the container's command line"
    );
    let bad = dir.path().join("daemonset.yaml");
    std::fs::write(&bad, good.replace(typo, "          comand: [\"drover\"]\n")).expect("write");
    let mut command = Command::new(venv_bin("kubernetes-validate"));
    command.arg("--strict").arg(&bad);
    let output = run_tool(command, "kubernetes-validate");
    assert!(!output.status.success(), "a misspelt field must fail");
    assert!(
        text(&output.stdout).contains("'comand' was unexpected"),
        "{}",
        text(&output.stdout)
    );
}

/// `systemd-analyze verify` on a copy of `unit` whose ExecStart runs the drover under test:
/// verify refuses a unit whose binary does not exist, and no test machine has
/// /usr/local/bin/drover or ~/.cargo/bin/drover. `--man=no`: `Documentation=man:drover(1)` is
/// the page `drover man` installs, which the test machine has not. Warnings (an unknown key, a
/// value it cannot parse) are printed while it still exits 0, so any output fails the test.
fn verify_unit(unit: &str, program: &str, user: bool, edit: impl Fn(String) -> String) -> Output {
    let dir = tempfile::tempdir().expect("tempdir");
    let source = std::fs::read_to_string(root().join("deploy/systemd").join(unit)).expect(unit);
    let from = format!("ExecStart={program} ");
    assert_eq!(source.matches(&from).count(), 1, "{unit} runs {program}");
    let copy = dir.path().join(unit);
    let rewritten = source.replace(&from, &format!("ExecStart={} ", common::drover_bin()));
    std::fs::write(&copy, edit(rewritten)).expect("write the unit");
    let mut command = Command::new("systemd-analyze");
    if user {
        // The user manager's paths need a runtime directory.
        let runtime = dir.path().join("runtime");
        std::fs::create_dir(&runtime).expect("runtime dir");
        command.arg("--user").env("XDG_RUNTIME_DIR", &runtime);
    }
    command.args(["verify", "--man=no"]).arg(&copy);
    run_tool(
        command,
        "systemd-analyze (Debian's systemd package; on Debian it is installed with systemd)",
    )
}

#[test]
fn systemd_units_pass_systemd_analyze_verify() {
    for (unit, program, user) in [
        ("drover.service", "/usr/local/bin/drover", false),
        ("drover-user.service", "%h/.cargo/bin/drover", true),
    ] {
        let output = verify_unit(unit, program, user, |text| text);
        assert!(
            output.status.success() && output.stdout.is_empty() && output.stderr.is_empty(),
            "systemd-analyze verify {unit}: {}\n{}{}",
            output.status,
            text(&output.stdout),
            text(&output.stderr)
        );
        let line = exec_start(unit).join(" ");
        assert!(
            line.contains(" serve ") && line.ends_with(" --on-shutdown leave"),
            "{line}"
        );
        let source = std::fs::read_to_string(root().join("deploy/systemd").join(unit)).expect(unit);
        assert!(
            source.contains("\nKillMode=process\n"),
            "{unit}: a restart must signal only the daemon, never the holders"
        );
        // A misspelt key is only a warning to systemd, so the check above must catch it.
        let bad = verify_unit(unit, program, user, |text| {
            text.replace("\nKillMode=process\n", "\nKilMode=process\n")
        });
        assert!(
            text(&bad.stderr).contains("Unknown key 'KilMode'"),
            "{}",
            text(&bad.stderr)
        );
    }
}

#[test]
fn nomad_job_is_a_system_job_running_drover_serve() {
    let task = nomad_task();
    assert_eq!(task["driver"], "raw_exec");
    assert_eq!(task["user"], "drover");
    assert_eq!(
        task["kill_timeout"], "30s",
        "room for the 10 s grace plus 5 s"
    );
    let line = nomad_command_line();
    assert_eq!(line[..2], ["/usr/local/bin/drover", "serve"]);
}

#[test]
fn every_flag_in_the_manifests_is_one_drover_accepts() {
    let (kubernetes, probes) = kubernetes_command_lines();
    let mut lines = vec![
        ("drover.service", exec_start("drover.service")),
        ("drover-user.service", exec_start("drover-user.service")),
        ("daemonset.yaml", kubernetes),
        ("drover.nomad.hcl", nomad_command_line()),
    ];
    lines.extend(
        probes
            .into_iter()
            .map(|probe| ("daemonset.yaml probe", probe)),
    );
    let mut checked = 0;
    for (origin, line) in lines {
        assert!(line[0].ends_with("/drover"), "{origin}: {line:?}");
        let subcommand = line
            .iter()
            .find(|word| ["serve", "health"].contains(&word.as_str()))
            .unwrap_or_else(|| panic!("{origin}: no drover subcommand in {line:?}"));
        let known = help_flags(subcommand);
        for flag in line.iter().filter(|word| word.starts_with("--")) {
            assert!(
                known.contains(flag),
                "{origin}: `drover {subcommand}` has no flag {flag} (its --help lists {known:?})"
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 17, "flags checked");
}

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
