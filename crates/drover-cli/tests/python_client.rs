//! Drives the daemon's raw wire protocol from a foreign client: `tests/python/protocol_client.py`,
//! written only from `docs/PROTOCOL.md` with nothing but pyzmq and msgpack.
//!
//! The interpreter is `$DROVER_PYTHON` if set, else the workspace's `.venv/bin/python` (created by
//! `scripts/setup-test-env`). A missing interpreter, or one without `zmq`/`msgpack`, fails the test
//! with a message saying so: it is never skipped silently.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

const SCRIPT_TIMEOUT: Duration = Duration::from_secs(120);
const PROBE_TIMEOUT: Duration = Duration::from_secs(30);

fn python() -> PathBuf {
    match std::env::var_os("DROVER_PYTHON") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/python"),
    }
}

fn setup_hint(python: &Path) -> String {
    format!(
        "the Python interpreter {} with pyzmq and msgpack is required; run `scripts/setup-test-env` \
         at the workspace root (or set DROVER_PYTHON to an interpreter that has them)",
        python.display()
    )
}

/// Drains a child's pipe on a thread so a chatty child never blocks on a full pipe.
fn drain<R: Read + Send + 'static>(pipe: Option<R>) -> JoinHandle<String> {
    thread::spawn(move || {
        let mut buf = Vec::new();
        if let Some(mut pipe) = pipe {
            let _ = pipe.read_to_end(&mut buf);
        }
        String::from_utf8_lossy(&buf).into_owned()
    })
}

struct Outcome {
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
}

/// Runs `cmd` in its own process group; on expiry of `timeout` kills the whole group (the script
/// and the daemon it started) and reports `status: None`.
fn run_bounded(mut cmd: Command, timeout: Duration) -> std::io::Result<Outcome> {
    use std::os::unix::process::CommandExt;
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child: Child = cmd.spawn()?;
    let stdout = drain(child.stdout.take());
    let stderr = drain(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break Some(status);
        }
        if Instant::now() >= deadline {
            // Kill the process group (the script and its daemon), then the child itself.
            if let Ok(pgid) = i32::try_from(child.id()) {
                let _ = nix::sys::signal::killpg(
                    nix::unistd::Pid::from_raw(pgid),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        thread::sleep(Duration::from_millis(50));
    };
    Ok(Outcome {
        status,
        stdout: stdout.join().unwrap_or_default(),
        stderr: stderr.join().unwrap_or_default(),
    })
}

#[test]
fn python_client_drives_the_raw_protocol_from_protocol_md() {
    let python = python();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/protocol_client.py");
    let drover = env!("CARGO_BIN_EXE_drover");

    assert!(
        python.exists(),
        "{} does not exist: {}",
        python.display(),
        setup_hint(&python)
    );
    let mut probe = Command::new(&python);
    probe.args(["-c", "import zmq, msgpack"]);
    let probe = run_bounded(probe, PROBE_TIMEOUT).unwrap_or_else(|e| {
        panic!(
            "cannot run {}: {e}; {}",
            python.display(),
            setup_hint(&python)
        )
    });
    assert!(
        probe.status.is_some_and(|s| s.success()),
        "`{} -c 'import zmq, msgpack'` failed ({:?}): {}\n{}",
        python.display(),
        probe.status,
        setup_hint(&python),
        probe.stderr
    );

    let mut cmd = Command::new(&python);
    cmd.arg(&script).arg(drover).env("PYTHONUNBUFFERED", "1");
    let out = run_bounded(cmd, SCRIPT_TIMEOUT)
        .unwrap_or_else(|e| panic!("cannot run {} {}: {e}", python.display(), script.display()));

    let report = format!(
        "--- stdout ---\n{}\n--- stderr ---\n{}",
        out.stdout, out.stderr
    );
    match out.status {
        None => panic!(
            "{} did not finish within {:?} and was killed\n{report}",
            script.display(),
            SCRIPT_TIMEOUT
        ),
        Some(status) => assert!(
            status.success(),
            "{} failed with {status}\n{report}",
            script.display()
        ),
    }
    // Visible with `cargo test -- --nocapture`.
    println!("{}", out.stdout);
}
