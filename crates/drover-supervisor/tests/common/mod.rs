//! Helpers shared by the integration tests: a recording observer, condition waits, /proc probes.
#![allow(dead_code, clippy::unwrap_used)]

use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use drover_supervisor::{
    spawn, CapturedRecord, Command, Handle, Observer, Status, StdinMode, Stream, SupervisorConfig,
};

/// The one timeout for every wait in the tests.
pub const TIMEOUT: Duration = Duration::from_secs(30);

/// Runs a test body under the hard timeout.
pub async fn within<T>(body: impl Future<Output = T>) -> T {
    tokio::time::timeout(TIMEOUT, body)
        .await
        .expect("test timed out")
}

/// Polls `probe` until it is true (or panics naming `what` after TIMEOUT).
pub async fn wait_for(what: &str, mut probe: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + TIMEOUT;
    while !probe() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

/// Keeps everything it is told, and checks the observer contract as it goes.
#[derive(Default)]
pub struct Recorder {
    pub records: Mutex<Vec<CapturedRecord>>,
    pub statuses: Mutex<Vec<Status>>,
}

impl Observer for Recorder {
    fn records(&self, batch: Vec<CapturedRecord>) {
        assert!(!batch.is_empty(), "empty batch");
        let statuses = self.statuses.lock().unwrap();
        assert!(
            !statuses.last().is_some_and(Status::is_terminal),
            "record after terminal status"
        );
        let mut records = self.records.lock().unwrap();
        for r in batch {
            let expected = records.last().map_or(1, |l: &CapturedRecord| l.seq + 1);
            assert_eq!(r.seq, expected, "seq out of order");
            records.push(r);
        }
    }

    fn status(&self, status: &Status) {
        self.statuses.lock().unwrap().push(status.clone());
    }
}

impl Recorder {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// All bytes of one stream, concatenated.
    pub fn bytes(&self, stream: Stream) -> Vec<u8> {
        let records = self.records.lock().unwrap();
        records
            .iter()
            .filter(|r| r.stream == stream)
            .flat_map(|r| r.data.iter().copied())
            .collect()
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.bytes(Stream::Stdout)).into_owned()
    }

    pub fn has_line(&self, line: &str) -> bool {
        let records = self.records.lock().unwrap();
        records
            .iter()
            .any(|r| r.data == format!("{line}\n").as_bytes())
    }

    pub fn statuses(&self) -> Vec<Status> {
        self.statuses.lock().unwrap().clone()
    }

    pub fn status_names(&self) -> Vec<&'static str> {
        self.statuses().iter().map(Status::name).collect()
    }

    /// Waits for a whole line `line\n` on any stream.
    pub async fn wait_line(&self, line: &str) {
        wait_for(&format!("line {line:?}"), || self.has_line(line)).await;
    }
}

/// `/bin/sh -c script`.
pub fn sh(script: &str) -> Command {
    Command {
        program: "/bin/sh".into(),
        args: vec!["-c".into(), script.into()],
        env: Vec::new(),
        cwd: None,
        stdin: StdinMode::Null,
    }
}

/// Spawns `command` with the default config and a fresh recorder.
pub fn start(command: Command) -> (Handle, Arc<Recorder>) {
    let recorder = Recorder::new();
    let handle = spawn(command, SupervisorConfig::default(), recorder.clone());
    (handle, recorder)
}

/// `(state, pgrp)` from /proc/<pid>/stat, or None if the process is gone.
pub fn proc_stat(pid: u32) -> Option<(char, u32)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 2..];
    let mut fields = after.split_whitespace();
    let state = fields.next()?.chars().next()?;
    let _ppid = fields.next()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some((state, pgrp))
}

/// Every live process whose process group is `pgid`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    let mut members = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if proc_stat(pid).is_some_and(|(state, pgrp)| pgrp == pgid && state != 'Z') {
            members.push(pid);
        }
    }
    members
}

/// True while `pid` exists and is not a zombie.
pub fn is_alive(pid: u32) -> bool {
    proc_stat(pid).is_some_and(|(state, _)| state != 'Z')
}
