//! One test's mock model (`tests/agents/mock_model.py`): its script, its request log and, when
//! the tests run as root, its own network namespace with only loopback up. The daemon joins
//! that namespace (see [`Mock::enter`]), so every agent CLI runs where nothing but the mock can
//! be reached: a CLI that tried to call home would fail the test instead of leaking out.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use serde_json::Value;

use crate::common::wait_for;

/// `tests/agents`, where the mock, its scripts and the installed CLIs live.
pub fn agents_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/agents")
}

/// Network namespaces need root; as another user the CLIs still only get loopback addresses
/// and their "no telemetry, no update" settings, but nothing enforces it.
pub fn is_isolated() -> bool {
    nix::unistd::geteuid().is_root()
}

pub struct Mock {
    child: Child,
    /// The loopback port it serves on.
    pub port: u16,
    log: PathBuf,
    stderr: PathBuf,
}

impl Mock {
    /// Serve `script` (see tests/agents/README.md) from `dir`.
    pub fn start(dir: &Path, script: &Value) -> Mock {
        let script_path = dir.join("script.json");
        std::fs::write(&script_path, script.to_string()).expect("write the mock's script");
        let log = dir.join("requests.jsonl");
        let stderr = dir.join("mock.stderr");
        let mut command = if is_isolated() {
            // `sh` raises loopback in the new namespace, then becomes the mock (same pid).
            let mut command = Command::new("unshare");
            command.args([
                "--net",
                "sh",
                "-c",
                "ip link set lo up && exec \"$@\"",
                "sh",
                "python3",
            ]);
            command
        } else {
            Command::new("python3")
        };
        let mut child = command
            .arg(agents_dir().join("mock_model.py"))
            .arg(&script_path)
            .arg("--log")
            .arg(&log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(std::fs::File::create(&stderr).expect("mock stderr file"))
            .spawn()
            .expect("start tests/agents/mock_model.py");
        let mut line = String::new();
        let stdout = child.stdout.take().expect("mock stdout");
        BufReader::new(stdout)
            .read_line(&mut line)
            .expect("read the mock's port");
        let port = line.trim().parse().unwrap_or_else(|_| {
            panic!(
                "the mock model did not print its port ({line:?}); its stderr:\n{}",
                std::fs::read_to_string(&stderr).unwrap_or_default()
            )
        });
        Mock {
            child,
            port,
            log,
            stderr,
        }
    }

    /// The command prefix that runs a program in the mock's network namespace (empty when not
    /// isolated).
    pub fn enter(&self) -> Vec<String> {
        if is_isolated() {
            vec![
                "nsenter".to_owned(),
                format!("--net=/proc/{}/ns/net", self.child.id()),
            ]
        } else {
            Vec::new()
        }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn lines(&self) -> Vec<Value> {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        // The mock writes whole lines under a lock; a line still being written is not yet
        // complete, so only newline-terminated lines count.
        text.split_inclusive('\n')
            .filter(|l| l.ends_with('\n'))
            .map(|l| serde_json::from_str(l).expect("a request log line"))
            .collect()
    }

    /// Every POST it got, in order: `{"n", "method", "path", "body"}`.
    pub fn posts(&self) -> Vec<Value> {
        self.lines()
            .into_iter()
            .filter(|r| r["method"] == "POST")
            .collect()
    }

    /// The POSTs that offered tools: the agent's own model calls (the ones that take a turn
    /// of the script; titles and routers offer none).
    pub fn model_calls(&self) -> Vec<Value> {
        self.posts()
            .into_iter()
            .filter(|r| offers_tools(&r["body"]))
            .collect()
    }

    /// Waits until the mock has written out its whole answer to request `n`.
    pub fn wait_answered(&self, n: u64) {
        wait_for(&format!("the mock to finish answering request {n}"), || {
            self.lines()
                .iter()
                .any(|l| l["answered"] == n)
                .then_some(())
        });
    }

    /// Whether the answer to request `n` is written out to its end.
    pub fn is_answered(&self, n: u64) -> bool {
        self.lines().iter().any(|l| l["answered"] == n)
    }

    /// The mock's stderr so far (for failure messages).
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr).unwrap_or_default()
    }
}

/// Whether a request body offers the model tools, in any of the four dialects.
fn offers_tools(body: &Value) -> bool {
    body["tools"].as_array().is_some_and(|t| !t.is_empty())
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
