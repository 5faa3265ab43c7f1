//! What the deployment tests share: where the files are, the tools from `.venv`, and the
//! command lines the manifests run, parsed (YAML by PyYAML, HCL by python-hcl2).

#![allow(dead_code)]

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::Value;

pub const SETUP: &str =
    "it is installed by `scripts/setup-test-env` (run it at the workspace root)";

pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

pub fn venv_bin(name: &str) -> PathBuf {
    root().join(".venv/bin").join(name)
}

/// Run a validation tool to the end (hard timeout); a tool that cannot be started fails the
/// test naming it.
pub fn run_tool(mut command: Command, name: &str) -> Output {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .current_dir(root());
    match command.spawn() {
        Ok(child) => crate::common::wait_output(child),
        Err(error) => panic!("{name} is required and could not be run ({error}); {SETUP}"),
    }
}

pub fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

pub fn kubernetes_files() -> Vec<PathBuf> {
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

pub fn nomad_job() -> PathBuf {
    root().join("deploy/nomad/drover.nomad.hcl")
}

/// Every manifest parsed (YAML by PyYAML, HCL by python-hcl2), by path.
pub fn parsed(files: &[PathBuf]) -> Value {
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

pub fn daemonset() -> Value {
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
pub fn nomad_task() -> Value {
    let all = parsed(&[nomad_job()]);
    let job = &all[nomad_job().to_str().expect("a UTF-8 path")]["job"][0]["drover"];
    assert_eq!(job["type"], "system", "one daemon per client node");
    job["group"][0]["drover"]["task"][0]["drover"].clone()
}

pub fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .expect("a list of strings")
        .iter()
        .map(|v| v.as_str().expect("a string").to_owned())
        .collect()
}

/// A systemd unit's `ExecStart=` command line, as words (the units quote nothing).
pub fn exec_start(unit: &str) -> Vec<String> {
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
pub fn kubernetes_command_lines() -> (Vec<String>, Vec<Vec<String>>) {
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

pub fn nomad_command_line() -> Vec<String> {
    let config = &nomad_task()["config"][0];
    let mut line = vec![config["command"].as_str().expect("command").to_owned()];
    line.extend(strings(&config["args"]));
    line
}

/// The long flags `drover SUBCOMMAND --help` lists (global ones included).
pub fn help_flags(subcommand: &str) -> BTreeSet<String> {
    let output = crate::common::output_of({
        let mut command = Command::new(crate::common::drover_bin());
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
