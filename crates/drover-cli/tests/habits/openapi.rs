//! `docs/openapi.yaml` is valid OpenAPI (openapi-spec-validator) and lists exactly the routes
//! the daemon serves.

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::*;

fn python() -> PathBuf {
    match std::env::var_os("DROVER_PYTHON") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python"),
    }
}

/// Run one of the Python checks (`tests/python/SCRIPT`) with `args`; its stdout once it passed.
fn check(script: &str, args: &[&Path]) -> String {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let python = python();
    assert!(
        python.exists(),
        "{} does not exist: the Python interpreter with openapi-spec-validator is required; run \
         `scripts/setup-test-env` at the workspace root (or set DROVER_PYTHON)",
        python.display()
    );
    let output = Command::new(&python)
        .arg(root.join("crates/drover-cli/tests/python").join(script))
        .arg(root.join("docs/openapi.yaml"))
        .args(args)
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}{}",
        stdout(&output),
        stderr(&output)
    );
    stdout(&output)
}

#[test]
fn openapi_yaml_is_valid_and_lists_every_served_route() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let said = check(
        "openapi_check.py",
        &[&root.join("crates/drover-daemon/src/http/mod.rs")],
    );
    // "valid; N routes, all documented", N counted from the router's source.
    let count = said
        .trim()
        .strip_prefix("valid; ")
        .and_then(|rest| rest.strip_suffix(" routes, all documented"))
        .unwrap_or_else(|| panic!("{said}"));
    assert!(count.parse::<u32>().unwrap() >= 19, "{said}");
}

/// What the daemon answers matches what docs/openapi.yaml says it answers, field for field: a
/// field it sends that the document lacks, a `null` the document does not allow, or a status
/// the document does not give all fail (`openapi_responses.py`).
#[test]
fn the_daemons_answers_match_openapi_yaml() {
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path());
    let id = ok(daemon.drover(&[
        "spawn",
        "--name",
        "done",
        "--",
        "sh",
        "-c",
        "echo one; echo two >&2",
    ]));
    let id = id.trim();
    ok(daemon.drover(&["wait", id]));
    let said = check(
        "openapi_responses.py",
        &[&daemon.state_dir.join("http.sock"), Path::new(id)],
    );
    assert!(said.contains("answers match"), "{said}");
    daemon.stop();
}
