//! Fixed, representative protocol values shared by the test binaries.
//!
//! Everything here is deterministic (fixed ids and times) so golden files stay byte-stable.

// Each test binary uses a different subset of these fixtures.
#![allow(dead_code)]

use std::collections::BTreeMap;

use drover_proto::op::{
    AgentArgs, AgentRef, BatchArgs, ListArgs, NoArgs, ReadEventsArgs, ReadLogsArgs, SignalArgs,
    SignalSpec, SpawnArgs, StopArgs, StreamInfoArgs, WaitArgs, WriteStdinArgs,
};
use drover_proto::{
    AgentId, AgentInfo, AgentSpec, AgentState, AgentStatus, DaemonId, Event, EventKind, EventSeq,
    Heartbeat, Op, Record, RecordBatch, Request, Seq, SeqRange, StdinMode, StreamKind,
};
use uuid::Uuid;

/// The agent most fixtures talk about.
pub const AGENT: &str = "0190a3f2-5b1c-7d4e-8f00-0123456789ab";
/// A second agent.
pub const OTHER_AGENT: &str = "0190a3f2-6000-7abc-9def-00000000beef";
/// The daemon run.
pub const DAEMON: &str = "0190a3f0-0000-7000-8000-00000000da01";
/// A fixed instant (2024-07-03), unix nanoseconds; every fixture time is an offset from it.
pub const T0: i64 = 1_720_000_000_000_000_000;
/// One second in nanoseconds.
pub const SECOND: i64 = 1_000_000_000;

pub fn agent_id() -> AgentId {
    AgentId::from_uuid(Uuid::parse_str(AGENT).expect("fixed uuid"))
}

pub fn other_agent_id() -> AgentId {
    AgentId::from_uuid(Uuid::parse_str(OTHER_AGENT).expect("fixed uuid"))
}

/// A `DaemonId` from a UUID string: it has no public constructor, so go through the wire form.
pub fn daemon_id_from(uuid: &str) -> DaemonId {
    let bytes = rmp_serde::to_vec(uuid).expect("encode a string");
    drover_proto::decode(&bytes, 1024).expect("a UUID string decodes as a DaemonId")
}

pub fn daemon_id() -> DaemonId {
    daemon_id_from(DAEMON)
}

pub fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

/// A spec with every field set.
pub fn spec_full() -> AgentSpec {
    AgentSpec {
        name: Some("fix-tests".into()),
        backend: Some("claude".into()),
        argv: vec!["--verbose".into()],
        task: Some("Make `cargo test` pass; do not touch the public API.".into()),
        model: Some("sonnet".into()),
        system_prompt: Some("You are a careful Rust engineer.".into()),
        context: Some("ticket DRV-42".into()),
        env: labels(&[("RUST_LOG", "debug"), ("TERM", "dumb")]),
        cwd: Some("/work/repo".into()),
        labels: labels(&[("team", "core"), ("ticket", "DRV-42")]),
        stdin: StdinMode::Pipe,
        timeout_ms: Some(3_600_000),
        restart: None,
        log_budget: Some(64 * 1024 * 1024),
        // Left out of the encoding when absent, and absent here: the v1 golden files predate it.
        stop_signal: None,
        parent: None,
        resume: None,
    }
}

/// The smallest useful spec: the `command` backend and an argv.
pub fn spec_minimal() -> AgentSpec {
    AgentSpec {
        argv: vec!["echo".into(), "hello".into()],
        ..AgentSpec::default()
    }
}

/// A status in `state` with the data valid in it.
pub fn status(state: AgentState) -> AgentStatus {
    let started_at = T0 + SECOND;
    let ended_at = T0 + 61 * SECOND;
    match state {
        AgentState::Starting => AgentStatus::Starting,
        AgentState::Running => AgentStatus::Running {
            pid: 4242,
            started_at,
        },
        AgentState::Paused => AgentStatus::Paused {
            pid: 4242,
            started_at,
        },
        AgentState::Stopping => AgentStatus::Stopping {
            pid: 4242,
            started_at,
        },
        AgentState::Restarting => AgentStatus::Restarting {
            code: Some(3),
            signal: None,
            started_at,
            ended_at,
            restart_at: ended_at + 2 * SECOND,
        },
        AgentState::Exited => AgentStatus::Exited {
            code: 3,
            started_at,
            ended_at,
        },
        AgentState::Killed => AgentStatus::Killed {
            signal: 9,
            started_at,
            ended_at,
        },
        AgentState::FailedToStart => AgentStatus::FailedToStart {
            error: "spawn `claude`: No such file or directory (os error 2)".into(),
            ended_at: T0 + SECOND / 100,
        },
        AgentState::Lost => AgentStatus::Lost {
            pid: Some(4242),
            started_at: Some(started_at),
            ended_at: T0 + 3600 * SECOND,
            error: None,
        },
    }
}

/// The fixture agent in `state`.
pub fn info(state: AgentState) -> AgentInfo {
    let spec = spec_full();
    AgentInfo {
        id: agent_id(),
        name: spec.name.clone(),
        backend: spec.backend_name().to_owned(),
        status: status(state),
        created_at: T0,
        labels: spec.labels.clone(),
        spec,
        activity: None,
        restarts: 0,
        timed_out: false,
    }
}

/// A second, unnamed agent running the minimal spec.
pub fn other_info(state: AgentState) -> AgentInfo {
    AgentInfo {
        id: other_agent_id(),
        name: None,
        backend: "command".into(),
        status: status(state),
        created_at: T0 + SECOND / 2,
        labels: BTreeMap::new(),
        spec: spec_minimal(),
        activity: None,
        restarts: 0,
        timed_out: false,
    }
}

/// A complete stdout line.
pub fn record_line() -> Record {
    Record {
        seq: Seq(41),
        ts: T0 + 2 * SECOND,
        stream: StreamKind::Stdout,
        data: b"compiling drover v0.1.0\n".to_vec(),
        partial: false,
    }
}

/// A partial stderr record whose bytes are not valid UTF-8.
pub fn record_invalid_utf8_partial() -> Record {
    Record {
        seq: Seq(42),
        ts: T0 + 2 * SECOND + 1,
        stream: StreamKind::Stderr,
        data: vec![b'e', b'r', b'r', 0xff, 0xfe, 0x00, 0xc3, 0x28],
        partial: true,
    }
}

pub fn record_batch() -> RecordBatch {
    RecordBatch {
        agent: agent_id(),
        records: vec![record_line(), record_invalid_utf8_partial()],
    }
}

/// An event of `kind` with the state and exit data that kind carries.
pub fn event(kind: EventKind) -> Event {
    let (state, exit_code, signal) = match kind {
        EventKind::Spawned => (AgentState::Starting, None, None),
        EventKind::State => (AgentState::Paused, None, None),
        EventKind::Exit => (AgentState::Exited, Some(3), None),
        EventKind::Lost => (AgentState::Lost, None, None),
        EventKind::Removed => (AgentState::Exited, None, None),
        EventKind::LogDropped => (AgentState::Exited, None, None),
        EventKind::Activity => (AgentState::Running, None, None),
        EventKind::Restarted | EventKind::Unknown => (AgentState::Running, None, None),
    };
    let dropped = (kind == EventKind::LogDropped).then_some(SeqRange {
        from: Seq(41),
        to: Seq(100_040),
    });
    Event {
        event_seq: EventSeq(1000),
        ts: T0 + 5 * SECOND,
        agent: agent_id(),
        kind,
        state,
        exit_code,
        signal,
        dropped,
        activity: None,
        run: 1,
    }
}

pub const EVENT_KINDS: [EventKind; 7] = [
    EventKind::Spawned,
    EventKind::State,
    EventKind::Exit,
    EventKind::Lost,
    EventKind::Removed,
    EventKind::LogDropped,
    EventKind::Restarted,
];

pub fn heartbeat() -> Heartbeat {
    Heartbeat {
        daemon: daemon_id(),
        ts: T0 + 10 * SECOND,
        event_seq: EventSeq(1000),
        log_ends: Default::default(),
    }
}

fn agent(s: &str) -> AgentRef {
    AgentRef::new(s)
}

/// One representative request per op (two for `signal`), each with its golden name and the id
/// it is sent with. Ids vary in type on purpose: any MessagePack value is echoed.
pub fn requests() -> Vec<(&'static str, rmpv::Value, Request)> {
    let by_name = "fix-tests";
    let by_prefix = "0190a3f2-5b1c";
    let grace: BTreeMap<String, rmpv::Value> =
        [("grace_ms".to_owned(), rmpv::Value::from(2000))].into();
    vec![
        ("health", rmpv::Value::from(1), Request::Health(NoArgs {})),
        (
            "spawn",
            rmpv::Value::from(2),
            Request::Spawn(SpawnArgs { spec: spec_full() }),
        ),
        (
            "spawn_minimal",
            rmpv::Value::from("spawn-min"),
            Request::Spawn(SpawnArgs {
                spec: spec_minimal(),
            }),
        ),
        (
            "list",
            rmpv::Value::from(3),
            Request::List(ListArgs {
                state: Some(AgentState::Running),
                labels: labels(&[("team", "core")]),
                limit: Some(50),
                cursor: Some("1700000000000000000.0190a3f2-5b1c-7d4e-8f00-0123456789ab".into()),
                specs: true,
            }),
        ),
        (
            "get",
            rmpv::Value::from("req-4"),
            Request::Get(AgentArgs {
                agent: agent(by_name),
            }),
        ),
        (
            "pause",
            rmpv::Value::from(5),
            Request::Pause(AgentArgs {
                agent: agent(by_prefix),
            }),
        ),
        (
            "resume",
            rmpv::Value::from(6),
            Request::Resume(AgentArgs {
                agent: agent(AGENT),
            }),
        ),
        (
            "stop",
            rmpv::Value::from(7),
            Request::Stop(StopArgs {
                agent: agent(by_name),
                grace_ms: Some(5000),
            }),
        ),
        (
            "kill",
            rmpv::Value::from(8),
            Request::Kill(AgentArgs {
                agent: agent(by_name),
            }),
        ),
        (
            "signal",
            rmpv::Value::from(9),
            Request::Signal(SignalArgs {
                agent: agent(by_name),
                signal: SignalSpec::Name("USR1".into()),
            }),
        ),
        (
            "signal_number",
            rmpv::Value::from(10),
            Request::Signal(SignalArgs {
                agent: agent(by_name),
                signal: SignalSpec::Number(15),
            }),
        ),
        (
            "write_stdin",
            rmpv::Value::from(11),
            Request::WriteStdin(WriteStdinArgs {
                agent: agent(by_name),
                data: b"yes\n\xff".to_vec(),
            }),
        ),
        (
            "close_stdin",
            rmpv::Value::from(12),
            Request::CloseStdin(AgentArgs {
                agent: agent(by_name),
            }),
        ),
        (
            "read_logs",
            rmpv::Value::from(13),
            Request::ReadLogs(ReadLogsArgs {
                agent: agent(AGENT),
                since_seq: Some(Seq(41)),
                until_seq: Some(Seq(100)),
                tail: Some(20),
                since: Some(T0),
                stream: Some(StreamKind::Stderr),
                limit: Some(500),
            }),
        ),
        (
            "read_events",
            rmpv::Value::from(18),
            Request::ReadEvents(ReadEventsArgs {
                after: Some(EventSeq(6)),
                limit: Some(100),
            }),
        ),
        (
            "stream_info",
            rmpv::Value::from(14),
            Request::StreamInfo(StreamInfoArgs {
                agent: Some(agent(by_name)),
            }),
        ),
        (
            "wait",
            rmpv::Value::from(15),
            Request::Wait(WaitArgs {
                agent: agent(by_name),
                timeout_ms: Some(30_000),
            }),
        ),
        (
            "remove",
            rmpv::Value::from(16),
            Request::Remove(AgentArgs {
                agent: agent(by_name),
            }),
        ),
        (
            "batch",
            rmpv::Value::from(17),
            Request::Batch(BatchArgs {
                op: Op::Stop,
                agents: vec![agent(by_name), agent(OTHER_AGENT), agent("ghost")],
                args: grace,
                fail_fast: false,
            }),
        ),
        ("stats", rmpv::Value::Nil, Request::Stats(NoArgs {})),
    ]
}
