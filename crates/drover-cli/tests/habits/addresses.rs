//! Addresses as the ready line prints them are accepted back, and a closed port is reported
//! at once.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;

#[test]
fn serve_takes_the_ready_lines_forms_and_a_relative_state_dir() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new(drover_bin())
        .args(["serve", "--control", "127.0.0.1:0", "--pub", "127.0.0.1:0"])
        .args(["--http", "http://127.0.0.1:0", "--state-dir", "rel/state"])
        .current_dir(dir.path())
        .env("DROVER_LOG", "warn")
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let state = dir.path().join("rel/state");
    assert!(
        line.starts_with("drover ready control=tcp://127.0.0.1:"),
        "{line}"
    );
    assert!(line.contains(" http=http://127.0.0.1:"), "{line}");
    assert!(
        line.contains(&format!("ipc=ipc://{}/control.sock", state.display())),
        "an absolute ipc path: {line}"
    );
    // The CLI takes the ipc endpoint from another directory.
    let ipc = line
        .split_whitespace()
        .find_map(|f| f.strip_prefix("ipc="))
        .unwrap();
    let health = Command::new(drover_bin())
        .args(["--control", ipc, "health"])
        .current_dir("/")
        .env("DROVER_CONFIG_DIR", dir.path().join("config"))
        .output()
        .unwrap();
    assert!(ok(health).starts_with("ok: drover"));
    signal(child.id(), "TERM");
    assert!(child.wait().unwrap().success());
}

#[test]
fn a_closed_port_fails_at_once_saying_no_daemon() {
    let config = tempfile::tempdir().unwrap();
    let key = config.path().join("client.key");
    let keygen = Command::new(drover_bin())
        .args(["auth", "keygen", "--out"])
        .arg(&key)
        .env("DROVER_CONFIG_DIR", config.path())
        .output()
        .unwrap();
    let public = ok(keygen).trim().to_owned();
    // A port nothing listens on: bound, read back, closed.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let drover = |args: &[&str]| {
        Command::new(drover_bin())
            .args(args)
            .env("DROVER_CONFIG_DIR", config.path())
            .env_remove("DROVER_CONTROL")
            .env_remove("DROVER_CONTEXT")
            .output()
            .unwrap()
    };
    // The ready line's `HOST:PORT` form, in a context with keys (any valid server key).
    let control = format!("127.0.0.1:{port}");
    ok(drover(&[
        "context",
        "add",
        "gone",
        "--control",
        &control,
        "--server-key",
        &public,
        "--key",
        key.to_str().unwrap(),
    ]));
    let started = Instant::now();
    let failed = drover(&["--context", "gone", "ls"]);
    let took = started.elapsed();
    assert_eq!(failed.status.code(), Some(1), "{}", stderr(&failed));
    assert!(
        stderr(&failed).contains(&format!("no daemon at tcp://127.0.0.1:{port}")),
        "{}",
        stderr(&failed)
    );
    assert!(took < Duration::from_secs(1), "took {took:?}");
}

#[test]
fn serve_refuses_a_backend_template_with_an_unknown_placeholder() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("drover.toml");
    std::fs::write(
        &config,
        "[backends.mytool]\nargv = [\"mytool\", \"{task}\", [\"--model\", \"{modle}\"]]\n",
    )
    .unwrap();
    let refused = Command::new(drover_bin())
        .args(["serve", "--control", "127.0.0.1:0", "--pub", "127.0.0.1:0"])
        .args(["--http", "127.0.0.1:0", "--config"])
        .arg(&config)
        .arg("--state-dir")
        .arg(dir.path().join("state"))
        .env("DROVER_LOG", "warn")
        .output()
        .unwrap();
    assert_eq!(refused.status.code(), Some(1), "{}", stderr(&refused));
    assert!(stdout(&refused).is_empty(), "no ready line");
    assert!(
        stderr(&refused).contains("backend \"mytool\": unknown placeholder {modle}"),
        "{}",
        stderr(&refused)
    );
}
