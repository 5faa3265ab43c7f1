//! Bytes written by Python's `msgpack` (see `tests/python/gen_fixtures.py`) decode into the
//! values a Python client meant: string keys, `bin` payloads, unknown fields ignored, optional
//! fields defaulted, ids of any type echoed.

mod common;

use std::collections::BTreeMap;

use common::{agent_id, daemon_id, labels, AGENT, T0};
use drover_proto::limits::DEFAULT_MAX_FRAME;
use drover_proto::op::{
    AgentRef, AgentResult, BatchArgs, EmptyResult, ListArgs, NoArgs, ReadLogsArgs, SignalArgs,
    SignalSpec, SpawnArgs, StopArgs, StreamInfoArgs, WaitArgs, WriteStdinArgs,
};
use drover_proto::{
    decode, decode_reply, decode_request, AgentSpec, AgentState, AgentStatus, ErrorBody, ErrorCode,
    Event, EventKind, EventSeq, Heartbeat, Op, Record, RecordBatch, Request, RequestEnvelope, Seq,
    StdinMode, StreamKind,
};

macro_rules! fixture {
    ($name:literal) => {
        include_bytes!(concat!("data/python/", $name, ".msgpack")).as_slice()
    };
}

fn request(bytes: &[u8]) -> RequestEnvelope {
    match decode_request(bytes, DEFAULT_MAX_FRAME) {
        Ok(envelope) => envelope,
        Err(e) => panic!("Python request refused: {} (id {})", e.error, e.id),
    }
}

fn agent(s: &str) -> AgentRef {
    AgentRef::new(s)
}

#[test]
fn health_with_a_string_id() {
    let envelope = request(fixture!("request_health"));
    assert_eq!(envelope.id, rmpv::Value::from("h-1"));
    assert_eq!(envelope.request, Request::Health(NoArgs {}));
}

#[test]
fn spawn_ignores_unknown_fields_and_defaults_the_rest() {
    let envelope = request(fixture!("request_spawn"));
    assert_eq!(envelope.id, rmpv::Value::from(1));
    let expected = AgentSpec {
        backend: Some("claude".into()),
        task: Some("fix the failing test".into()),
        labels: labels(&[("team", "core")]),
        stdin: StdinMode::Pipe,
        timeout_ms: Some(60_000),
        ..AgentSpec::default()
    };
    assert_eq!(
        envelope.request,
        Request::Spawn(SpawnArgs { spec: expected })
    );

    let minimal = request(fixture!("request_spawn_minimal"));
    let Request::Spawn(SpawnArgs { spec }) = minimal.request else {
        panic!("not a spawn: {:?}", minimal.request);
    };
    assert_eq!(spec.argv, ["echo", "hi"]);
    assert_eq!(spec.backend_name(), "command");
    assert_eq!(spec.stdin, StdinMode::Null);
    assert_eq!(spec.name, None);
}

#[test]
fn list_filters_and_a_missing_id() {
    let envelope = request(fixture!("request_list"));
    assert_eq!(
        envelope.request,
        Request::List(ListArgs {
            state: Some(AgentState::Running),
            labels: labels(&[("team", "core")]),
            limit: None,
            // An older client's request, without `cursor` and `specs`: the first page, no specs.
            cursor: None,
            specs: false,
        })
    );
    let bare = request(fixture!("request_list_no_id"));
    assert_eq!(bare.id, rmpv::Value::Nil, "a missing id is echoed as nil");
    assert_eq!(bare.request, Request::List(ListArgs::default()));
}

#[test]
fn stop_with_and_without_grace() {
    let envelope = request(fixture!("request_stop"));
    assert_eq!(envelope.id, rmpv::Value::from("c0ffee"));
    assert_eq!(
        envelope.request,
        Request::Stop(StopArgs {
            agent: agent("build-1"),
            grace_ms: Some(2500),
        })
    );
    let envelope = request(fixture!("request_stop_default_grace"));
    assert_eq!(
        envelope.request,
        Request::Stop(StopArgs {
            agent: agent("0190a3f2"),
            grace_ms: None,
        })
    );
}

#[test]
fn signal_by_name_and_by_number() {
    assert_eq!(
        request(fixture!("request_signal_name")).request,
        Request::Signal(SignalArgs {
            agent: agent("build-1"),
            signal: SignalSpec::Name("SIGUSR1".into()),
        })
    );
    assert_eq!(
        request(fixture!("request_signal_number")).request,
        Request::Signal(SignalArgs {
            agent: agent("build-1"),
            signal: SignalSpec::Number(15),
        })
    );
}

#[test]
fn write_stdin_takes_bin_or_str() {
    assert_eq!(
        request(fixture!("request_write_stdin_bytes")).request,
        Request::WriteStdin(WriteStdinArgs {
            agent: agent("build-1"),
            data: b"line one\n\xff\x00".to_vec(),
        })
    );
    assert_eq!(
        request(fixture!("request_write_stdin_str")).request,
        Request::WriteStdin(WriteStdinArgs {
            agent: agent("build-1"),
            data: "h\u{e9}llo\n".as_bytes().to_vec(),
        })
    );
}

#[test]
fn read_logs_options() {
    assert_eq!(
        request(fixture!("request_read_logs")).request,
        Request::ReadLogs(ReadLogsArgs {
            since_seq: Some(Seq(10)),
            stream: Some(StreamKind::Stderr),
            limit: Some(500),
            ..ReadLogsArgs::new(agent(AGENT))
        })
    );
    assert_eq!(
        request(fixture!("request_read_logs_tail")).request,
        Request::ReadLogs(ReadLogsArgs {
            tail: Some(20),
            ..ReadLogsArgs::new(agent("build-1"))
        })
    );
}

#[test]
fn stream_info_for_all_agents() {
    assert_eq!(
        request(fixture!("request_stream_info")).request,
        Request::StreamInfo(StreamInfoArgs { agent: None })
    );
}

#[test]
fn wait_echoes_a_compound_id() {
    let envelope = request(fixture!("request_wait"));
    assert_eq!(
        envelope.id,
        rmpv::Value::Array(vec![
            rmpv::Value::Binary(b"corr".to_vec()),
            rmpv::Value::from(12)
        ])
    );
    assert_eq!(
        envelope.request,
        Request::Wait(WaitArgs {
            agent: agent("build-1"),
            timeout_ms: Some(30_000),
        })
    );
}

#[test]
fn batch_with_shared_args_and_defaults() {
    let signal: BTreeMap<String, rmpv::Value> =
        [("signal".to_owned(), rmpv::Value::from("TERM"))].into();
    assert_eq!(
        request(fixture!("request_batch")).request,
        Request::Batch(BatchArgs {
            op: Op::Signal,
            agents: vec![agent("build-1"), agent("build-2"), agent(AGENT)],
            args: signal,
            fail_fast: true,
        })
    );
    assert_eq!(
        request(fixture!("request_batch_defaults")).request,
        Request::Batch(BatchArgs {
            op: Op::Kill,
            agents: vec![agent("build-1")],
            args: BTreeMap::new(),
            fail_fast: false,
        })
    );
}

#[test]
fn published_record_batch_event_and_heartbeat() {
    let record: Record = decode(fixture!("record"), DEFAULT_MAX_FRAME).expect("record");
    assert_eq!(
        record,
        Record {
            seq: Seq(7),
            ts: T0 + 123_456_789,
            stream: StreamKind::Stdout,
            data: b"\xfe\xffraw\n".to_vec(),
            partial: false,
        }
    );

    let batch: RecordBatch = decode(fixture!("record_batch"), DEFAULT_MAX_FRAME).expect("batch");
    assert_eq!(batch.agent, agent_id());
    assert_eq!(
        batch.records,
        [
            Record {
                seq: Seq(8),
                ts: T0 + 1,
                stream: StreamKind::Stderr,
                data: b"warning: x\n".to_vec(),
                partial: false,
            },
            Record {
                seq: Seq(9),
                ts: T0 + 2,
                stream: StreamKind::Stdout,
                data: b"no newline".to_vec(),
                partial: true,
            },
        ]
    );

    let event: Event = decode(fixture!("event"), DEFAULT_MAX_FRAME).expect("event");
    assert_eq!(
        event,
        Event {
            event_seq: EventSeq(42),
            ts: T0 + 5,
            agent: agent_id(),
            kind: EventKind::Exit,
            state: AgentState::Exited,
            exit_code: Some(3),
            signal: None,
            dropped: None,
            activity: None,
            run: 1,
        }
    );

    let heartbeat: Heartbeat = decode(fixture!("heartbeat"), DEFAULT_MAX_FRAME).expect("hb");
    assert_eq!(
        heartbeat,
        Heartbeat {
            daemon: daemon_id(),
            ts: T0 + 10,
            event_seq: EventSeq(42),
            log_ends: Default::default(),
        }
    );
    // An agent's log end: a map from the id's string to an int.
    let heartbeat: Heartbeat =
        decode(fixture!("heartbeat_log_ends"), DEFAULT_MAX_FRAME).expect("hb with log_ends");
    assert_eq!(heartbeat.log_ends, [(agent_id(), Seq(7))].into());
    assert_eq!(heartbeat.event_seq, EventSeq(43));
}

#[test]
fn replies_from_a_python_daemon() {
    let (id, result) =
        decode_reply::<AgentResult>(fixture!("reply_get"), DEFAULT_MAX_FRAME).expect("reply");
    assert_eq!(id, rmpv::Value::from(15));
    let info = result.expect("an ok reply").agent;
    assert_eq!(info.id, agent_id());
    assert_eq!(info.name.as_deref(), Some("build-1"));
    assert_eq!(
        info.status,
        AgentStatus::Running {
            pid: 4242,
            started_at: T0 + 1_000_000,
        }
    );
    assert!(info.labels.is_empty());
    assert_eq!(info.spec.argv, ["make", "-j4"]);

    let (id, result) =
        decode_reply::<EmptyResult>(fixture!("reply_error"), DEFAULT_MAX_FRAME).expect("reply");
    assert_eq!(id, rmpv::Value::from(16));
    assert_eq!(
        result,
        Err(ErrorBody::new(
            ErrorCode::NotFound,
            "no agent matches \"x\""
        ))
    );

    let (_, result) =
        decode_reply::<EmptyResult>(fixture!("reply_error_unknown_code"), DEFAULT_MAX_FRAME)
            .expect("an unknown code still decodes");
    assert_eq!(
        result,
        Err(ErrorBody::new(ErrorCode::Internal, "later")),
        "a code this version does not know reads as internal"
    );
}
