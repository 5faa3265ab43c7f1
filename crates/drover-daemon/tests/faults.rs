//! Integrity under a real full disk: the state directory (or, for the holder test, only its
//! `logs`) lives on an 8 MiB tmpfs that the test fills with a file while an agent runs. Nothing clients are told may be false, and nothing
//! may be lost without a trace.
//!
//! Mounting needs root (CI runs as root). A test that cannot mount fails loudly: it never
//! passes without having filled a disk.

#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

use common::*;
use drover_client::follow::Selection;
use drover_client::{Client, FollowEvent, FollowOptions};
use drover_proto::op::{AgentRef, ListArgs, ReadLogsArgs};
use drover_proto::{
    AgentInfo, AgentState, ErrorCode, Event, EventKind, EventSeq, SeqRange, StdinMode,
};

/// These tests are about the daemon's own answer to a store that refuses records (its backlog,
/// the pause, the reported `log_dropped` range), so the agents run in-process: under a holder
/// on the same full disk, the spool refuses the records first and the holder stops reading the
/// agent's output until the disk has room (`holder.rs`), and the daemon never sees them.
fn in_process(config: &mut drover_daemon::Config) {
    config.holder = None;
}

/// An 8 MiB tmpfs mounted for one test, unmounted when dropped (also when the test fails).
struct Tmpfs {
    path: PathBuf,
    _parent: tempfile::TempDir,
}

impl Tmpfs {
    /// The state directory of a test.
    fn mount() -> Tmpfs {
        let parent = tempfile::tempdir().unwrap();
        let path = parent.path().join("state");
        Tmpfs::mount_at(path, parent)
    }

    /// At `path` (an empty directory, created here), kept with the temporary directory it is in.
    fn mount_at(path: PathBuf, parent: tempfile::TempDir) -> Tmpfs {
        std::fs::create_dir_all(&path).unwrap();
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", "size=8m,mode=0700", "tmpfs"])
            .arg(&path)
            .status()
            .expect("running mount");
        assert!(
            status.success(),
            "cannot mount a tmpfs at {} ({status}): these tests need root to fill a real disk",
            path.display()
        );
        Tmpfs {
            path,
            _parent: parent,
        }
    }

    /// Write a file until the disk refuses more; returns its path.
    fn fill(&self) -> PathBuf {
        let filler = self.path.join("filler");
        let mut file = std::fs::File::create(&filler).unwrap();
        let chunk = vec![0xA5u8; 64 * 1024];
        loop {
            match file.write(&chunk) {
                Ok(0) => break,
                Ok(_) => {}
                Err(e) if e.raw_os_error() == Some(28) => break, // ENOSPC
                Err(e) => panic!("filling the tmpfs: {e}"),
            }
        }
        // Whatever is left is less than a chunk: take it byte by byte.
        let byte = [0xA5u8];
        while file.write(&byte).is_ok_and(|n| n == 1) {}
        filler
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        // Lazy: a daemon that failed mid-test may still hold files open.
        let _ = Command::new("umount").arg("-l").arg(&self.path).status();
    }
}

fn free(filler: &Path) {
    std::fs::remove_file(filler).unwrap();
}

/// Every stored event, in order.
async fn events(client: &Client) -> (Vec<Event>, EventSeq) {
    let read = client
        .read_events(Some(EventSeq(0)), Some(10_000))
        .await
        .unwrap();
    (read.events, read.last_event_seq)
}

/// Stored events are numbered 1, 2, 3, ... with no hole, and the last one is the last issued.
fn assert_no_holes(events: &[Event], last: EventSeq) {
    let seqs: Vec<u64> = events.iter().map(|e| e.event_seq.0).collect();
    let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
    assert_eq!(seqs, expected, "stored event numbers");
    assert_eq!(
        last.0,
        seqs.len() as u64,
        "the last event number issued is stored"
    );
}

/// Follow an agent from its first record until it ends, in a task; returns once subscribed.
async fn follow_to_the_end(
    client: Client,
    id: String,
) -> tokio::task::JoinHandle<Vec<FollowEvent>> {
    let (subscribed, is_subscribed) = tokio::sync::oneshot::channel();
    let task = tokio::spawn(async move {
        let options = FollowOptions {
            until_exit: true,
            ..FollowOptions::default()
        };
        let mut follower = client
            .follow(Selection::Agents(vec![id]), options)
            .await
            .unwrap();
        subscribed.send(()).unwrap();
        let mut events = Vec::new();
        while let Some(event) = follower.next().await.unwrap() {
            events.push(event);
        }
        events
    });
    is_subscribed.await.unwrap();
    task
}

/// Records `1..` once each and in order (exactly `1..=kept` when given), then exactly one
/// `Dropped` naming `dropped`, then the exit, and nothing else but refill gaps.
fn assert_follow_names_the_loss(events: &[FollowEvent], kept: Option<u64>, dropped: SeqRange) {
    let mut next = 1u64;
    let mut losses = Vec::new();
    for event in events {
        match event {
            FollowEvent::Records { records, .. } => {
                assert!(losses.is_empty(), "records after the loss was named");
                for record in records {
                    assert_eq!(record.seq.0, next, "each record once, in order");
                    next += 1;
                }
            }
            FollowEvent::Dropped { from, to, .. } => losses.push(SeqRange {
                from: *from,
                to: *to,
            }),
            FollowEvent::Gap { .. } => {}
            other => assert!(
                matches!(other, FollowEvent::Exit(_)),
                "unexpected {other:?}"
            ),
        }
    }
    assert_eq!(losses, [dropped], "the loss is named once");
    if let Some(kept) = kept {
        assert_eq!(next - 1, kept, "the kept prefix is replayed");
    }
    assert!(
        matches!(events.last(), Some(FollowEvent::Exit(_))),
        "the follow ends with the exit"
    );
}

/// A daemon on its own tmpfs, agents in-process, with a one-message publish queue: most live
/// batches of a fast writer, and most of a burst of events, are dropped on their way to
/// followers.
async fn lossy_daemon() -> (Tmpfs, TestDaemon) {
    let disk = Tmpfs::mount();
    let daemon = TestDaemon::start_in(disk.path.clone(), |config| {
        in_process(config);
        config.pub_queue = 1;
    })
    .await;
    (disk, daemon)
}

/// The lost ranges a follow reported, in order.
fn losses(events: &[FollowEvent]) -> Vec<(u64, u64)> {
    events
        .iter()
        .filter_map(|e| match e {
            FollowEvent::Dropped { from, to, .. } => Some((from.0, to.0)),
            _ => None,
        })
        .collect()
}

fn kinds_of(events: &[Event], agent: drover_proto::AgentId) -> Vec<EventKind> {
    events
        .iter()
        .filter(|e| e.agent == agent)
        .map(|e| e.kind)
        .collect()
}

#[tokio::test]
async fn an_agent_that_ends_on_a_full_disk_is_exited_everywhere_and_its_row_catches_up() {
    within(async {
        let disk = Tmpfs::mount();
        let daemon = TestDaemon::start_in(disk.path.clone(), in_process).await;
        let client = daemon.client().await;
        let mut spec = sh("echo ready; read line; exit 7");
        spec.name = Some("phantom".into());
        spec.stdin = StdinMode::Pipe;
        let agent = client.spawn(spec.clone()).await.unwrap();
        wait_ready(&client, &agent).await;
        let (before, _) = events(&client).await;

        let filler = disk.fill();
        // The agent ends (stdin closed: `read` fails) while the registry cannot be written.
        client.close_stdin("phantom").await.unwrap();
        let waited = client.wait("phantom", Some(TIMEOUT)).await.unwrap();
        assert_eq!(waited.state(), AgentState::Exited);
        assert_eq!(waited.status.exit_code(), Some(7));
        let stats = client.stats().await.unwrap();
        assert_eq!(stats.registry_queued, 1, "the exit waits for the registry");

        // Every client view says exited 7, while the disk is still full.
        let got = client.get(&agent.id.to_string()).await.unwrap();
        assert_eq!(
            (got.state(), got.status.exit_code()),
            (AgentState::Exited, Some(7))
        );
        let by_name = client.get("phantom").await.unwrap();
        assert_eq!(by_name.state(), AgentState::Exited);
        let listed = client.list(ListArgs::default()).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].state(), AgentState::Exited);
        let running = ListArgs {
            state: Some(AgentState::Running),
            ..ListArgs::default()
        };
        assert!(client.list(running).await.unwrap().is_empty());
        let exited = ListArgs {
            state: Some(AgentState::Exited),
            ..ListArgs::default()
        };
        assert_eq!(client.list(exited).await.unwrap().len(), 1);
        let health = client.health().await.unwrap();
        assert_eq!(health.agents.get("exited"), Some(&1));
        assert_eq!(health.agents.get("running"), None);
        // Stop and kill answer as for any ended agent.
        assert_eq!(code(client.kill("phantom").await), ErrorCode::InvalidState);
        let stopped = client.stop("phantom", None).await;
        match stopped {
            Err(error) => {
                assert_eq!(error.code(), Some(ErrorCode::InvalidState));
                assert!(error.to_string().contains("exited"), "{error}");
            }
            Ok(info) => panic!("stop of an ended agent answered {info:?}"),
        }
        // No event number is issued before its event is stored: no hole, nothing published
        // that a restart could renumber.
        let (during, last) = events(&client).await;
        assert_no_holes(&during, last);
        assert_eq!(
            during, before,
            "no event stored or issued while the registry is full"
        );

        free(&filler);
        wait_for("the registry to take the exit", || async {
            (client.stats().await.unwrap().registry_queued == 0).then_some(())
        })
        .await;
        let (after, last) = events(&client).await;
        assert_no_holes(&after, last);
        let exit = after.last().unwrap();
        assert_eq!(
            (exit.agent, exit.kind, exit.exit_code),
            (agent.id, EventKind::Exit, Some(7))
        );
        assert_eq!(
            kinds_of(&after, agent.id),
            [EventKind::Spawned, EventKind::State, EventKind::Exit]
        );
        // The name is free again.
        let mut again = sh("exit 0");
        again.name = Some("phantom".into());
        let second = client.spawn(again).await.unwrap();
        client
            .wait(&second.id.to_string(), Some(TIMEOUT))
            .await
            .unwrap();
        drop(client);
        daemon.shutdown().await;

        // The row itself is right: a new daemon reads exited 7, not lost.
        let daemon = TestDaemon::start_in(disk.path.clone(), in_process).await;
        let client = daemon.client().await;
        let got = client.get(&agent.id.to_string()).await.unwrap();
        assert_eq!(
            (got.state(), got.status.exit_code()),
            (AgentState::Exited, Some(7))
        );
        drop(client);
        daemon.shutdown().await;
    })
    .await
}

#[tokio::test]
async fn output_the_full_disk_refused_is_reported_as_dropped_never_silently_missing() {
    within(async {
        let disk = Tmpfs::mount();
        let daemon = TestDaemon::start_in(disk.path.clone(), in_process).await;
        let client = daemon.client().await;
        let mut spec = sh("echo ready; read line; seq 1 20000; exit 0");
        spec.stdin = StdinMode::Pipe;
        let agent = client.spawn(spec).await.unwrap();
        let id = agent.id.to_string();
        wait_ready(&client, &agent).await;
        // A follower live before the disk fills.
        let live = follow_to_the_end(daemon.client().await, id.clone()).await;

        let filler = disk.fill();
        client.close_stdin(&id).await.unwrap();
        let ended = client.wait(&id, Some(TIMEOUT)).await.unwrap();
        assert_eq!(ended.status.exit_code(), Some(0));
        // 20001 records were captured: `ready` and 20000 numbers.
        let last = 20_001u64;

        // What the store kept is a prefix 1..=k; the rest is reported, exactly.
        let kept = all_records(&client, &agent).await;
        let k = kept.len() as u64;
        assert!(k >= 1 && k < last, "kept {k} of {last} records");
        for (i, record) in kept.iter().enumerate() {
            assert_eq!(record.seq.0, i as u64 + 1);
        }
        let mut args = ReadLogsArgs::new(AgentRef::new(id.clone()));
        args.since_seq = Some(drover_proto::Seq(k + 1));
        let read = client.read_logs(args).await.unwrap();
        let dropped = SeqRange {
            from: drover_proto::Seq(k + 1),
            to: drover_proto::Seq(last),
        };
        assert!(read.records.is_empty());
        assert_eq!(
            read.dropped,
            Some(dropped),
            "read_logs names the lost range"
        );
        assert_eq!(read.next_seq.0, last + 1);
        assert_eq!(read.end_seq.0, last + 1);
        // A read from the start reaches the same range after the kept records.
        let mut whole = ReadLogsArgs::new(AgentRef::new(id.clone()));
        whole.limit = Some(10_000);
        let from_start = client.read_logs(whole).await.unwrap();
        assert_eq!(from_start.records.len() as u64, k);
        assert_eq!(from_start.dropped, Some(dropped));
        let stats = client.stats().await.unwrap();
        assert_eq!(stats.records_dropped, last - k);

        // Once the disk has room, the `log_dropped` event is stored and published, then exit.
        free(&filler);
        wait_for("the registry to take the agent's end", || async {
            (client.stats().await.unwrap().registry_queued == 0).then_some(())
        })
        .await;
        let (stored, last_seq) = events(&client).await;
        assert_no_holes(&stored, last_seq);
        assert_eq!(
            kinds_of(&stored, agent.id),
            [
                EventKind::Spawned,
                EventKind::State,
                EventKind::LogDropped,
                EventKind::Exit
            ]
        );
        let log_dropped = stored
            .iter()
            .find(|e| e.kind == EventKind::LogDropped)
            .unwrap();
        assert_eq!(log_dropped.dropped, Some(dropped));
        // The live follower got every record once, in order (some of them live although the
        // store never kept them), then learned which were lost, then the end.
        assert_follow_names_the_loss(&live.await.unwrap(), None, dropped);
        drop(client);
        daemon.shutdown().await;

        // The range survives a restart.
        let daemon = TestDaemon::start_in(disk.path.clone(), in_process).await;
        let client = daemon.client().await;
        let mut args = ReadLogsArgs::new(AgentRef::new(id.clone()));
        args.since_seq = Some(drover_proto::Seq(k + 1));
        let read = client.read_logs(args).await.unwrap();
        assert_eq!(read.dropped, Some(dropped));
        assert_eq!(read.next_seq.0, last + 1);
        // A follow from the start replays the kept prefix, then names the loss, then ends.
        let replay = follow_to_the_end(daemon.client().await, id.clone()).await;
        assert_follow_names_the_loss(&replay.await.unwrap(), Some(k), dropped);
        drop(client);
        daemon.shutdown().await;
    })
    .await
}

/// The daemon's log lines (it runs in this process), captured for the tests that count them.
static LOG: Mutex<Vec<u8>> = Mutex::new(Vec::new());

struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        LOG.lock()
            .unwrap_or_else(|p| p.into_inner())
            .extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn capture_logs() {
    static ONCE: OnceLock<()> = OnceLock::new();
    ONCE.get_or_init(|| {
        let subscriber = tracing_subscriber::fmt()
            .with_writer(|| LogWriter)
            .with_ansi(false)
            .with_max_level(tracing::Level::INFO)
            .finish();
        tracing::subscriber::set_global_default(subscriber).unwrap();
    });
}

/// Captured log lines mentioning `needle` and `agent`.
fn log_lines(needle: &str, agent: &str) -> usize {
    let log = LOG.lock().unwrap_or_else(|p| p.into_inner());
    String::from_utf8_lossy(&log)
        .lines()
        .filter(|line| line.contains(needle) && line.contains(agent))
        .count()
}

#[tokio::test]
async fn the_backlog_pause_is_logged_once_per_episode() {
    within(async {
        capture_logs();
        let disk = Tmpfs::mount();
        let daemon = TestDaemon::start_in(disk.path.clone(), in_process).await;
        let client = daemon.client().await;
        // More than the 16 MiB an agent's backlog may hold, as fast as a pipe goes.
        let mut spec =
            sh("echo ready; read line; yes 0123456789abcdef0123456789abcdef | head -c 40000000");
        spec.stdin = StdinMode::Pipe;
        let agent = client.spawn(spec).await.unwrap();
        let id = agent.id.to_string();
        wait_ready(&client, &agent).await;

        let filler = disk.fill();
        client.close_stdin(&id).await.unwrap();
        wait_for("the daemon to pause the agent", || async {
            (client.get(&id).await.unwrap().state() == AgentState::Paused).then_some(())
        })
        .await;
        // Batches that arrived between the pause and the `Paused` status did not warn again.
        assert_eq!(log_lines("pausing the agent", &id), 1);
        // What waits is counted, and the refusal is logged with its cause.
        let waiting = client.stats().await.unwrap().store_backlog_bytes;
        assert!(waiting > 16 * 1024 * 1024, "{waiting}");
        assert!(log_lines("No space left on device", &id) >= 1);

        client.kill(&id).await.unwrap();
        client.wait(&id, Some(TIMEOUT)).await.unwrap();
        free(&filler);
        wait_for("the registry and the store to take what waited", || async {
            let stats = client.stats().await.unwrap();
            (stats.registry_queued == 0 && stats.store_backlog_bytes == 0).then_some(())
        })
        .await;
        assert_eq!(log_lines("pausing the agent", &id), 1);
        drop(client);
        daemon.shutdown().await;
    })
    .await
}

/// While the registry cannot be written, state changes wait in memory; requests cannot make
/// that grow without bound: past 1,024 waiting changes `pause` and `resume` are refused with
/// `limit_reached`, and once space returns every waiting change is stored, events unbroken.
#[tokio::test]
async fn pause_and_resume_on_a_full_disk_are_refused_once_the_waiting_changes_are_bounded() {
    within(async {
        let disk = Tmpfs::mount();
        let daemon = TestDaemon::start_in(disk.path.clone(), |_| {}).await;
        let client = daemon.client().await;
        let mut spec = sh("echo ready; exec sleep 1000");
        spec.name = Some("toggled".into());
        let agent = client.spawn(spec).await.unwrap();
        wait_ready(&client, &agent).await;

        let filler = disk.fill();
        let mut accepted = 0usize;
        let refusal = loop {
            let result = if accepted % 2 == 0 {
                client.pause("toggled").await
            } else {
                client.resume("toggled").await
            };
            match result {
                Ok(_) => accepted += 1,
                Err(error) => break error,
            }
            assert!(accepted <= 1024, "no refusal after {accepted} changes");
        };
        assert_eq!(refusal.code(), Some(ErrorCode::LimitReached), "{refusal}");
        assert!(refusal.to_string().contains("1024"), "{refusal}");
        assert_eq!(accepted, 1024);
        // SIGSTOP and SIGCONT are pause and resume by another name: bounded the same way.
        for name in ["STOP", "CONT"] {
            let signal = drover_proto::op::SignalSpec::Name(name.into());
            let refused = client.signal("toggled", signal).await.unwrap_err();
            assert_eq!(refused.code(), Some(ErrorCode::LimitReached), "{refused}");
        }
        assert_eq!(client.stats().await.unwrap().registry_queued, 1024);

        free(&filler);
        wait_for("the registry to take the waiting changes", || async {
            (client.stats().await.unwrap().registry_queued == 0).then_some(())
        })
        .await;
        let (events, last) = events(&client).await;
        assert_no_holes(&events, last);
        let states = kinds_of(&events, agent.id)
            .into_iter()
            .filter(|kind| *kind == EventKind::State)
            .count();
        // Starting → running, then every accepted pause and resume.
        assert_eq!(states, 1 + 1024);
        // Requests are taken again.
        let paused = client.pause("toggled").await.unwrap();
        assert_eq!(paused.state(), AgentState::Paused);
        client.kill("toggled").await.unwrap();
        drop(client);
        daemon.shutdown().await;
    })
    .await
}

/// The store's logs on a disk that fills, the holders' spools on another: the holder keeps
/// spooling what the store refuses, fills its (small) spool and stops reading its agent. Once
/// the disk has room the daemon's backlog stores the records, and the daemon must then tell
/// the holder so (an ack) although no new records come to prompt one: before, the holder's
/// spool stayed full and the agent blocked for good.
#[tokio::test]
async fn a_holder_stopped_on_a_full_spool_goes_on_once_the_store_recovers() {
    within(async {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let logs = Tmpfs::mount_at(state.join("logs"), dir);
        let limit = 64 * 1024;
        let daemon =
            TestDaemon::start_in(state.clone(), |config| config.spool_limit = limit).await;
        let client = daemon.client().await;
        let n = 3000;
        let script = format!(
            "echo ready; read go; i=1; while [ $i -le {n} ]; do printf '%s %0100d\\n' $i 0; i=$((i+1)); done"
        );
        let spec = drover_proto::AgentSpec {
            stdin: StdinMode::Pipe,
            ..sh(&script)
        };
        let agent = client.spawn(spec).await.unwrap();
        wait_ready(&client, &agent).await;
        let filler = logs.fill();
        let pid = agent.status.pid().unwrap();
        std::fs::write(format!("/proc/{pid}/fd/0"), b"go\n").unwrap();
        // The store refuses; the holder spools until its limit and stops reading the agent.
        let spool = state.join("holders").join(agent.id.to_string()).join("spool");
        wait_for("the holder's spool to fill", || async {
            let len = std::fs::metadata(&spool).ok()?.len();
            (len >= limit).then_some(())
        })
        .await;
        assert_eq!(
            client.get(&agent.id.to_string()).await.unwrap().state(),
            AgentState::Running,
            "blocked on its output, not ended"
        );
        free(&filler);
        assert_exits_having_printed_every_line(&client, &agent, n).await;
        drop(client);
        daemon.shutdown().await;
    })
    .await
}

/// The whole state directory on the disk that fills (the default layout): the holder's spool
/// and its `holder.log` are refused too. The holder must hold the agent's output back, not end:
/// before, its report of the refusal panicked on the full `holder.log` (`eprintln!`), the holder
/// exited and the daemon marked the agent `lost`, its output gone.
#[tokio::test]
async fn a_holder_whose_spool_and_log_are_on_the_full_disk_holds_the_agent_back() {
    within(async {
        let disk = Tmpfs::mount();
        let daemon = TestDaemon::start_in(disk.path.clone(), |_| {}).await;
        let client = daemon.client().await;
        let outside = tempfile::tempdir().unwrap();
        let progress = outside.path().join("progress");
        let n = 6000;
        let script = format!(
            "echo ready; read go; i=1; while [ $i -le {n} ]; do printf '%s %0100d\\n' $i 0; echo $i > {}; i=$((i+1)); done",
            progress.display()
        );
        let spec = drover_proto::AgentSpec {
            stdin: StdinMode::Pipe,
            ..sh(&script)
        };
        let agent = client.spawn(spec).await.unwrap();
        wait_ready(&client, &agent).await;
        let filler = disk.fill();
        let pid = agent.status.pid().unwrap();
        std::fs::write(format!("/proc/{pid}/fd/0"), b"go\n").unwrap();
        // The holder stops reading once its spool refuses: the agent, past what its pipe holds
        // (64 KiB, about 640 lines), stays blocked writing. A holder that ended would have
        // ended the agent with it.
        let id = agent.id.to_string();
        let seen = std::cell::Cell::new((0u32, 0u32));
        let state = wait_for("the agent held back, or its end", || async {
            let state = client.get(&id).await.unwrap().state();
            if state.is_terminal() {
                return Some(state);
            }
            let (last, same) = seen.get();
            // (A read can catch the file being rewritten, empty.)
            let printed: u32 = std::fs::read_to_string(&progress)
                .ok()
                .and_then(|t| t.trim().parse().ok())
                .unwrap_or(last);
            let blocked = std::fs::read_to_string(format!("/proc/{pid}/wchan"))
                .is_ok_and(|w| w.ends_with("pipe_write"));
            let same = if blocked && printed == last && printed >= 640 {
                same + 1
            } else {
                0
            };
            seen.set((printed, same));
            (same >= 20).then_some(state)
        })
        .await;
        assert_eq!(state, AgentState::Running, "held back, not ended");
        free(&filler);
        assert_exits_having_printed_every_line(&client, &agent, n).await;
        drop(client);
        daemon.shutdown().await;
    })
    .await
}

/// The agent, held back by a full disk, ends by itself (exit 0) once it has room, and its log
/// has every line it printed, `1..=n` (each line starts with its number), in order.
async fn assert_exits_having_printed_every_line(client: &Client, agent: &AgentInfo, n: u32) {
    let end = client
        .wait(&agent.id.to_string(), Some(TIMEOUT))
        .await
        .unwrap();
    assert_eq!(
        (end.state(), end.status.exit_code()),
        (AgentState::Exited, Some(0))
    );
    let lines: Vec<u32> = all_records(client, agent)
        .await
        .iter()
        .filter_map(|r| {
            std::str::from_utf8(&r.data)
                .ok()?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .collect();
    assert_eq!(lines, (1..=n).collect::<Vec<_>>());
}

/// A follower that missed the end of a burst live while the disk was full (those records wait
/// in the daemon's backlog, not in the store) gets them once the disk has room, though the
/// agent prints nothing more: while a heartbeat's log end shows it behind, it reads the store
/// again at each heartbeat. Before, it read once per log end and then waited for the agent's
/// next output or its end.
#[tokio::test]
async fn a_burst_missed_live_on_a_full_disk_arrives_once_stored_though_the_agent_is_quiet() {
    within(async {
        let (disk, daemon) = lossy_daemon().await;
        let client = daemon.client().await;
        let n = 100_000u64;
        let mut spec = sh(&format!("echo ready; while read go; do seq 1 {n}; done"));
        spec.stdin = StdinMode::Pipe;
        let agent = client.spawn(spec).await.unwrap();
        let id = agent.id.to_string();
        wait_ready(&client, &agent).await;

        // A follower from the start, delivering into `seqs` as the test goes on.
        let seqs = std::sync::Arc::new(Mutex::new(Vec::<u64>::new()));
        let (subscribed, is_subscribed) = tokio::sync::oneshot::channel();
        let follower = {
            let client = daemon.client().await;
            let (seqs, id) = (std::sync::Arc::clone(&seqs), id.clone());
            tokio::spawn(async move {
                let mut follower = client
                    .follow(Selection::Agents(vec![id]), FollowOptions::default())
                    .await
                    .unwrap();
                subscribed.send(()).unwrap();
                while let Some(event) = follower.next().await.unwrap() {
                    if let FollowEvent::Records { records, .. } = event {
                        let mut seqs = seqs.lock().unwrap();
                        seqs.extend(records.iter().map(|r| r.seq.0));
                    }
                }
            })
        };
        is_subscribed.await.unwrap();
        let delivered = || seqs.lock().unwrap().len() as u64;
        wait_for("the follower to deliver the ready line", || async {
            (delivered() == 1).then_some(())
        })
        .await;

        let filler = disk.fill();
        // Bursts until the follower misses records live (the first one nearly always does).
        let mut total = 1u64;
        for burst in 1.. {
            assert!(
                burst <= 5,
                "no burst was dropped on its way to the follower"
            );
            client.write_stdin(&id, b"go\n".to_vec()).await.unwrap();
            total += n;
            wait_for("the burst to be captured", || async {
                (client.stats().await.unwrap().records == total).then_some(())
            })
            .await;
            if client.stats().await.unwrap().pub_dropped > 0 {
                break;
            }
        }
        let stored = all_records(&client, &agent).await.len() as u64;
        assert!(
            stored < total,
            "the full disk refused the bursts ({stored} of {total} stored)"
        );
        let reads = |stats: &drover_proto::op::StatsResult| {
            stats.requests.get("read_logs").copied().unwrap_or(0)
        };
        let before = reads(&client.stats().await.unwrap());
        wait_for(
            "the follower to read the store again at two heartbeats",
            || async { (reads(&client.stats().await.unwrap()) >= before + 2).then_some(()) },
        )
        .await;
        assert!(delivered() < total, "the store cannot have given them yet");

        free(&filler);
        wait_for("the follower to deliver every record", || async {
            (delivered() >= total).then_some(())
        })
        .await;
        let expected: Vec<u64> = (1..=total).collect();
        assert_eq!(
            *seqs.lock().unwrap(),
            expected,
            "each record once, in order"
        );
        let stats = client.stats().await.unwrap();
        assert_eq!(
            stats.records, total,
            "the agent printed nothing more meanwhile"
        );
        assert_eq!(stats.records_dropped, 0);

        follower.abort();
        client.close_stdin(&id).await.unwrap();
        client.wait(&id, Some(TIMEOUT)).await.unwrap();
        drop(client);
        daemon.shutdown().await;
    })
    .await
}

/// A follower that missed batches live on a full disk learns of the loss once. The store read
/// names the lost range from where the follower is, the `log_dropped` event names all of it:
/// two ranges that end at the same seq, of one loss. Before, both were reported.
#[tokio::test]
async fn a_loss_is_named_once_to_a_follower_that_missed_part_of_it_live() {
    within(async {
        let (disk, daemon) = lossy_daemon().await;
        let client = daemon.client().await;
        let n = 100_000u64;
        let mut spec = sh(&format!("echo ready; read line; seq 1 {n}; exit 0"));
        spec.stdin = StdinMode::Pipe;
        let agent = client.spawn(spec).await.unwrap();
        let id = agent.id.to_string();
        wait_ready(&client, &agent).await;
        let live = follow_to_the_end(daemon.client().await, id.clone()).await;

        let filler = disk.fill();
        client.close_stdin(&id).await.unwrap();
        let ended = client.wait(&id, Some(TIMEOUT)).await.unwrap();
        assert_eq!(ended.status.exit_code(), Some(0));
        let last = n + 1;
        let kept = all_records(&client, &agent).await.len() as u64;
        assert!(
            kept < last,
            "the full disk refused records ({kept} of {last} kept)"
        );
        free(&filler);

        let events = live.await.unwrap();
        let mut next = 1u64;
        let mut losses = Vec::new();
        for event in &events {
            match event {
                FollowEvent::Records { records, .. } => {
                    assert!(losses.is_empty(), "records after the loss was named");
                    for record in records {
                        assert_eq!(record.seq.0, next, "each record once, in order");
                        next += 1;
                    }
                }
                FollowEvent::Dropped { from, to, .. } => losses.push((from.0, to.0)),
                FollowEvent::Gap { .. } | FollowEvent::Exit(_) => {}
                other => panic!("unexpected {other:?}"),
            }
        }
        assert_eq!(losses.len(), 1, "the loss is named once: {losses:?}");
        let (from, to) = losses[0];
        assert_eq!(to, last, "up to the agent's last record");
        assert!(
            from > kept && from <= next,
            "from {from}: past what the store kept ({kept}), at most the first record not \
             delivered ({next})"
        );
        assert!(
            matches!(events.last(), Some(FollowEvent::Exit(_))),
            "the follow ends with the exit"
        );
        drop(client);
        daemon.shutdown().await;
    })
    .await
}

/// A follower that misses an agent's `log_dropped` event and learns of the miss from a
/// heartbeat (the events that followed were lost too) still reports the loss before the end:
/// the heartbeat's `event_seq` sends it to the stored events, as a later event's number does.
#[tokio::test]
async fn a_loss_whose_event_was_missed_is_reported_when_a_heartbeat_shows_the_miss() {
    within(async {
        // The events stored in one go once the disk has room are published in a burst, and
        // most are dropped.
        let (disk, daemon) = lossy_daemon().await;
        let client = daemon.client().await;
        // One line longer than what the store's last page has left: the store refuses it,
        // one batch that the follower gets live.
        let mut spec = sh("echo ready; read line; printf '%06000d\\n' 0; exit 0");
        spec.stdin = StdinMode::Pipe;
        let agent = client.spawn(spec).await.unwrap();
        let id = agent.id.to_string();
        let other = client.spawn(sh("exec sleep 600")).await.unwrap();
        let other_id = other.id.to_string();
        wait_ready(&client, &agent).await;
        let live = follow_to_the_end(daemon.client().await, id.clone()).await;

        let filler = disk.fill();
        // State changes that wait for the disk, ahead of the agent's end: the burst.
        for _ in 0..50 {
            client.pause(&other_id).await.unwrap();
            client.resume(&other_id).await.unwrap();
        }
        client.close_stdin(&id).await.unwrap();
        let ended = client.wait(&id, Some(TIMEOUT)).await.unwrap();
        assert_eq!(ended.status.exit_code(), Some(0));
        let kept = all_records(&client, &agent).await.len() as u64;
        assert!(
            kept < 21,
            "the full disk refused records ({kept} of 21 kept)"
        );
        free(&filler);

        let events = live.await.unwrap();
        let losses = losses(&events);
        assert_eq!(losses.len(), 1, "the loss is named once: {losses:?}");
        assert_eq!(losses[0], (2, 2), "the long line");
        assert!(
            matches!(events.last(), Some(FollowEvent::Exit(_))),
            "the follow ends with the exit"
        );
        client.kill(&other_id).await.unwrap();
        drop(client);
        daemon.shutdown().await;
    })
    .await
}
