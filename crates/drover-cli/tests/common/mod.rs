//! Helpers for end-to-end tests of the real `drover` binary against a real `drover serve`.

#![allow(dead_code)]

#[path = "../../../drover-daemon/tests/common/leftovers.rs"]
pub mod leftovers;
pub mod netns;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

/// One timeout for every wait.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// The binary under test.
pub fn drover_bin() -> &'static str {
    env!("CARGO_BIN_EXE_drover")
}

/// A `drover serve` process on ephemeral ports.
pub struct Daemon {
    pub child: Child,
    pub control: String,
    /// The TCP control endpoint (CURVE only).
    pub tcp: String,
    /// The HTTP base URL.
    pub http: String,
    pub state_dir: PathBuf,
    /// Stopped or crashed on purpose: what it leaves running is the test's to handle.
    pub ended: bool,
}

impl Daemon {
    /// Start `drover serve` on `state_dir` and wait for its ready line.
    pub fn start(state_dir: &Path) -> Daemon {
        Self::start_with(state_dir, &[])
    }

    /// Start with extra `serve` flags.
    pub fn start_with(state_dir: &Path, extra: &[&str]) -> Daemon {
        Self::start_wrapped(state_dir, extra, &[])
    }

    /// Start as the last argument of `wrapper` (a program that ends by exec-ing its arguments,
    /// such as `nsenter` or `env -i`), so the daemon's pid is still the child's.
    pub fn start_wrapped(state_dir: &Path, extra: &[&str], wrapper: &[String]) -> Daemon {
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut command = Command::new(program);
                command.args(args).arg(drover_bin());
                command
            }
            None => Command::new(drover_bin()),
        };
        let mut child = command
            .args([
                "serve",
                "--control",
                "tcp://127.0.0.1:0",
                "--pub",
                "tcp://127.0.0.1:0",
                "--http",
                "127.0.0.1:0",
                "--grace-ms",
                "2000",
                "--state-dir",
            ])
            .arg(state_dir)
            .args(extra)
            .env("DROVER_LOG", "warn")
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start drover serve");
        let stdout = child.stdout.take().expect("stdout");
        let mut line = String::new();
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the ready line");
        assert!(line.starts_with("drover ready "), "ready line: {line:?}");
        // The CLI talks to the local daemon over its ipc socket, trusted by file permission
        // (TCP needs a CURVE key).
        let field = |name: &str| {
            line.split_whitespace()
                .find_map(|field| field.strip_prefix(name))
                .map(str::to_owned)
        };
        let tcp = field("control=").expect("control= in the ready line");
        let control = field("ipc=").unwrap_or_else(|| tcp.clone());
        let http = field("http=").expect("http= in the ready line");
        Daemon {
            child,
            control,
            tcp,
            http,
            state_dir: state_dir.to_path_buf(),
            ended: false,
        }
    }

    /// Run `drover <args>` against this daemon.
    pub fn drover(&self, args: &[&str]) -> Output {
        self.drover_with_stdin(args, None)
    }

    /// `drover <args>` set up to talk to this daemon, for a test to adjust (cwd, env) and run.
    pub fn command(&self, args: &[&str]) -> Command {
        let mut command = Command::new(drover_bin());
        command
            .args(args)
            .env("DROVER_CONTROL", &self.control)
            // No contexts file of the user's can change what the tests talk to.
            .env("DROVER_CONFIG_DIR", self.state_dir.join("no-config"))
            .env_remove("DROVER_CONTEXT");
        command
    }

    /// Run `drover <args>` with bytes on its stdin.
    pub fn drover_with_stdin(&self, args: &[&str], stdin: Option<&[u8]>) -> Output {
        let mut child = self
            .command(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run drover");
        if let Some(bytes) = stdin {
            use std::io::Write;
            let mut pipe = child.stdin.take().expect("stdin");
            pipe.write_all(bytes).expect("write stdin");
        }
        wait_output(child)
    }

    /// The daemon's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(mut self) {
        self.ended = true;
        signal(self.child.id(), "TERM");
        let status = wait_child(&mut self.child);
        assert!(status.success(), "drover serve exited with {status}");
    }

    /// SIGKILL, as a crash would.
    pub fn crash(mut self) {
        self.ended = true;
        signal(self.child.id(), "KILL");
        wait_child(&mut self.child);
    }
}

/// Killed when dropped; dropped without [`Daemon::stop`] or [`Daemon::crash`] (a failed test,
/// or one done with its daemon), its holders and their agents go too, where a kill alone would
/// leave them running (they outlive a daemon by design).
impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if !self.ended {
            leftovers::kill_holders(&self.state_dir);
        }
    }
}

/// Send a signal (by name, without `SIG`) to one process.
pub fn signal(pid: u32, name: &str) {
    let signal: nix::sys::signal::Signal = format!("SIG{name}").parse().expect("a signal name");
    let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("a pid"));
    nix::sys::signal::kill(pid, signal).expect("kill");
}

/// SIGKILL a whole process group (an agent a crashed daemon left behind). Never through
/// kill(1): procps' `kill -KILL -PID` can signal every process.
pub fn kill_group(pgid: u64) {
    let pgid = i32::try_from(pgid).expect("a pgid");
    assert!(pgid > 1, "refusing to signal process group {pgid}");
    let _ = nix::sys::signal::killpg(
        nix::unistd::Pid::from_raw(pgid),
        nix::sys::signal::Signal::SIGKILL,
    );
}

/// Wait for a child with the hard timeout; past it the child is killed (so a failed test
/// leaves nothing running) and the test fails.
pub fn wait_child(child: &mut Child) -> std::process::ExitStatus {
    let deadline = Instant::now() + TIMEOUT;
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return status;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!("process did not exit in time");
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// Wait for a child with the hard timeout, collecting its output.
pub fn wait_output(child: Child) -> Output {
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(TIMEOUT) {
        Ok(output) => output.expect("wait_with_output"),
        Err(_) => {
            signal(pid, "KILL");
            panic!("drover did not finish within {TIMEOUT:?}");
        }
    }
}

/// Run a prepared command to the end (hard timeout), stdin closed.
pub fn output_of(mut command: Command) -> Output {
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run drover");
    wait_output(child)
}

/// Stdout as text.
pub fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// Stderr as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Assert success and return stdout.
pub fn ok(output: Output) -> String {
    assert!(
        output.status.success(),
        "drover failed with {}: {}",
        output.status,
        stderr(&output)
    );
    stdout(&output)
}

/// Poll until `probe` returns `Some`, or fail naming `what`.
pub fn wait_for<T>(what: &str, probe: impl FnMut() -> Option<T>) -> T {
    wait_for_within(TIMEOUT, what, probe)
}

/// [`wait_for`] with a timeout of its own, for a wait known to take longer.
pub fn wait_for_within<T>(
    timeout: Duration,
    what: &str,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `drover --json <args>` parsed.
pub fn json(daemon: &Daemon, args: &[&str]) -> serde_json::Value {
    let mut all = vec!["--json"];
    all.extend_from_slice(args);
    serde_json::from_str(&ok(daemon.drover(&all))).expect("JSON output")
}
