//! One test's world: a scratch directory, the mock model with the test's script, a real daemon
//! in the mock's network namespace with a clean environment, and `drover spawn` of one real
//! CLI pointed at the mock (its HOME, config and environment prepared as a user would).

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use serde_json::Value;

use super::cli::{bin_dir, Cli};
use super::mock::Mock;
use crate::common::{json, ok, Daemon};

/// Whether the CLI runs behind a transparent `tee` that keeps its own copy of what the CLI
/// wrote, for comparing with what Drover stored. Not with signals: the `tee`s share the
/// agent's process group and would die of a stop signal before the CLI writes its last lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Copies {
    Kept,
    None,
}

pub struct Rig {
    pub cli: Cli,
    pub mock: Mock,
    pub daemon: Daemon,
    /// The agents' working directory.
    pub work: PathBuf,
    env: Vec<String>,
    copies: Option<PathBuf>,
    taken: RefCell<BTreeSet<PathBuf>>,
    // Last: removed after the daemon and the mock are gone.
    _dir: tempfile::TempDir,
}

impl Rig {
    pub fn new(cli: Cli, script: &Value, copies: Copies) -> Rig {
        let real = cli.executable();
        let dir = tempfile::tempdir().expect("tempdir");
        let root = dir.path().to_path_buf();
        let (home, work, tmp) = (root.join("home"), root.join("work"), root.join("tmp"));
        for d in [&home, &work, &tmp] {
            std::fs::create_dir_all(d).expect("scratch dir");
        }
        let mock = Mock::start(&root, script);
        let system_path = std::env::var("PATH").unwrap_or_else(|_| "/usr/bin:/bin".to_owned());
        let mut path = format!("{}:{system_path}", bin_dir().display());
        let copies = (copies == Copies::Kept).then(|| {
            let (bin, kept) = (root.join("tee-bin"), root.join("copies"));
            wrapper(&bin, &kept, cli, &real);
            path = format!("{}:{path}", bin.display());
            kept
        });
        let mut env = vec![
            format!("PATH={path}"),
            format!("HOME={}", home.display()),
            format!("TMPDIR={}", tmp.display()),
            "LANG=C.UTF-8".to_owned(),
        ];
        env.extend(
            cli.configure(&home, &mock.url())
                .into_iter()
                .map(|(k, v)| format!("{k}={v}")),
        );
        // The daemon (and so every agent) starts from an empty environment: nothing of the
        // machine's (an API key, XDG_CONFIG_HOME, a proxy) reaches the CLIs.
        let mut wrapper = mock.enter();
        wrapper.extend([
            "env".to_owned(),
            "-i".to_owned(),
            format!("PATH={system_path}"),
            format!("HOME={}", root.join("daemon-home").display()),
            "DROVER_LOG=warn".to_owned(),
        ]);
        let daemon = Daemon::start_wrapped(&root.join("state"), &[], &wrapper);
        Rig {
            cli,
            mock,
            daemon,
            work,
            env,
            copies,
            taken: RefCell::new(BTreeSet::new()),
            _dir: dir,
        }
    }

    /// `drover spawn --backend CLI --task TASK --name NAME` with the CLI's environment, its
    /// usual arguments and `extra` ones after those after `--`; the agent's id.
    pub fn spawn(&self, name: &str, task: &str, extra: &[&str]) -> String {
        let cwd = self.work.display().to_string();
        let mut args = vec![
            "spawn",
            "--backend",
            self.cli.name(),
            "--task",
            task,
            "--name",
            name,
            "--cwd",
            &cwd,
        ];
        for kv in &self.env {
            args.extend(["-e", kv]);
        }
        let usual = self.cli.spawn_args();
        args.extend(usual);
        if !extra.is_empty() && !usual.contains(&"--") {
            args.push("--");
        }
        args.extend(extra);
        ok(self.daemon.drover(&args)).trim().to_owned()
    }

    /// Waits for `agent` to end; its `show` JSON.
    pub fn wait(&self, agent: &str) -> Value {
        // `wait` exits with the agent's code: what it says is read from `show`.
        let _ = self.daemon.drover(&["wait", agent]);
        let info = self.show(agent);
        assert!(
            matches!(info["state"].as_str(), Some("exited" | "killed")),
            "{agent} did not end: {info}\nmock stderr:\n{}",
            self.mock.stderr()
        );
        info
    }

    pub fn show(&self, agent: &str) -> Value {
        json(&self.daemon, &["show", agent])
    }

    /// The stored stdout (`out`) or stderr (`err`), raw. `drover logs` writes an agent's
    /// stderr to its own stderr, so that is where the `err` records are read.
    pub fn logs(&self, agent: &str, stream: &str) -> Vec<u8> {
        let out = self
            .daemon
            .drover(&["logs", "--stream", stream, "--no-prefix", agent]);
        assert!(out.status.success(), "{}", crate::common::stderr(&out));
        if stream == "err" {
            out.stderr
        } else {
            out.stdout
        }
    }

    /// `agent`'s events of `kind` (`activity`, `state`, `exit`), in order.
    pub fn events(&self, agent: &str, kind: &str) -> Vec<Value> {
        let out = ok(self.daemon.drover(&["--json", "events"]));
        out.lines()
            .map(|l| serde_json::from_str::<Value>(l).expect("an event"))
            .filter(|e| e["agent"] == agent && e["kind"] == kind)
            .collect()
    }

    /// The phases of `agent`'s `activity` events, in order.
    pub fn phases(&self, agent: &str) -> Vec<String> {
        self.events(agent, "activity")
            .iter()
            .map(|e| e["activity"]["phase"].as_str().expect("phase").to_owned())
            .collect()
    }

    /// What the CLI itself wrote (stdout, stderr) in the one run since the last call, as the
    /// `tee`s beside it copied it.
    pub fn copied(&self) -> (Vec<u8>, Vec<u8>) {
        let kept = self.copies.as_ref().expect("a rig with Copies::Kept");
        let mut taken = self.taken.borrow_mut();
        let new: Vec<PathBuf> = std::fs::read_dir(kept)
            .expect("copies dir")
            .map(|e| e.expect("entry").path())
            .filter(|p| p.extension().is_some_and(|x| x == "out") && !taken.contains(p))
            .collect();
        assert_eq!(new.len(), 1, "one new run of {}: {new:?}", self.cli.name());
        let out = new[0].clone();
        taken.insert(out.clone());
        let read = |p: &Path| std::fs::read(p).expect("a copy");
        (read(&out), read(&out.with_extension("err")))
    }
}

/// `bin/CLI`: runs the real CLI with its stdout and stderr also copied into `kept/PID.out`
/// and `kept/PID.err`. The CLI is exec'd, so its pid, exit code and signals are its own.
fn wrapper(bin: &Path, kept: &Path, cli: Cli, real: &Path) {
    std::fs::create_dir_all(bin).expect("wrapper dir");
    std::fs::create_dir_all(kept).expect("copies dir");
    let script = format!(
        "#!/bin/bash\n\
         exec 2> >(exec tee '{kept}/'$$.err >&2)\n\
         exec > >(exec tee '{kept}/'$$.out)\n\
         exec '{real}' \"$@\"\n",
        kept = kept.display(),
        real = real.display()
    );
    let path = bin.join(cli.name());
    std::fs::write(&path, script).expect("write the wrapper");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
}
