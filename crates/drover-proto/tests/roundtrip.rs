//! Property tests: every protocol type survives encode → decode unchanged, alone and inside the
//! request and reply envelopes.

use std::collections::BTreeMap;
use std::fmt::Debug;

use drover_proto::limits::DEFAULT_MAX_FRAME;
use drover_proto::op::{
    AgentArgs, AgentRef, AgentResult, BatchArgs, BatchItem, BatchResult, EmptyResult, HealthResult,
    ListArgs, ListResult, NoArgs, ReadEventsArgs, ReadLogsArgs, ReadLogsResult, SignalArgs,
    SignalSpec, SpawnArgs, StatsResult, StopArgs, StreamInfoArgs, StreamInfoResult, WaitArgs,
    WriteStdinArgs, WriteStdinResult,
};
use drover_proto::{
    decode, decode_reply, decode_request, encode, encode_reply, encode_request, AgentId, AgentInfo,
    AgentSpec, AgentState, AgentStatus, DaemonId, ErrorBody, ErrorCode, Event, EventKind, EventSeq,
    Heartbeat, Op, Record, RecordBatch, ReplyBody, Request, Seq, StdinMode, StreamKind,
};
use proptest::collection::{btree_map, vec};
use proptest::option::of;
use proptest::prelude::*;
use serde::de::DeserializeOwned;
use serde::Serialize;

// ---- strategies -------------------------------------------------------------------------------

fn text() -> impl Strategy<Value = String> {
    ".{0,12}"
}

fn string_map() -> impl Strategy<Value = BTreeMap<String, String>> {
    btree_map("[a-zA-Z_][a-zA-Z0-9_.-]{0,8}", text(), 0..4)
}

fn agent_id() -> impl Strategy<Value = AgentId> {
    any::<u128>().prop_map(|n| AgentId::from_uuid(uuid::Uuid::from_u128(n)))
}

fn daemon_id() -> impl Strategy<Value = DaemonId> {
    any::<u128>().prop_map(|n| {
        let text = uuid::Uuid::from_u128(n).hyphenated().to_string();
        let bytes = rmp_serde::to_vec(&text).expect("encode a string");
        decode(&bytes, 1024).expect("a UUID string is a DaemonId")
    })
}

fn agent_ref() -> impl Strategy<Value = AgentRef> {
    prop_oneof![
        agent_id().prop_map(|id| AgentRef::new(id.to_string())),
        "[0-9a-f]{1,8}".prop_map(AgentRef::new),
        text().prop_map(AgentRef::new),
    ]
}

fn state() -> impl Strategy<Value = AgentState> {
    proptest::sample::select(AgentState::ALL.to_vec())
}

fn stream() -> impl Strategy<Value = StreamKind> {
    prop_oneof![Just(StreamKind::Stdout), Just(StreamKind::Stderr)]
}

fn event_kind() -> impl Strategy<Value = EventKind> {
    proptest::sample::select(vec![
        EventKind::Spawned,
        EventKind::State,
        EventKind::Exit,
        EventKind::Lost,
        EventKind::Removed,
        EventKind::LogDropped,
        EventKind::Activity,
    ])
}

fn error_body() -> impl Strategy<Value = ErrorBody> {
    (proptest::sample::select(ErrorCode::ALL.to_vec()), text())
        .prop_map(|(code, message)| ErrorBody::new(code, message))
}

/// Any request id a client might send: ids are echoed, whatever their type. (No floats: NaN
/// would never compare equal.)
fn request_id() -> impl Strategy<Value = rmpv::Value> {
    let leaf = prop_oneof![
        Just(rmpv::Value::Nil),
        any::<u64>().prop_map(rmpv::Value::from),
        any::<i64>().prop_map(rmpv::Value::from),
        text().prop_map(rmpv::Value::from),
        vec(any::<u8>(), 0..8).prop_map(rmpv::Value::Binary),
    ];
    leaf.prop_recursive(2, 8, 4, |inner| {
        prop_oneof![
            vec(inner.clone(), 0..3).prop_map(rmpv::Value::Array),
            vec(("[a-z]{1,4}", inner), 0..3).prop_map(|entries| {
                rmpv::Value::Map(
                    entries
                        .into_iter()
                        .map(|(k, v)| (rmpv::Value::from(k), v))
                        .collect(),
                )
            }),
        ]
    })
}

fn spec() -> impl Strategy<Value = AgentSpec> {
    (
        (of(text()), of("[a-z]{1,8}"), vec(text(), 0..4), of(text())),
        (of(text()), of(text()), of(text()), string_map()),
        (of(text()), string_map(), any::<bool>()),
        (of(any::<u64>()), of(any::<u64>()), of(text())),
        of((
            0u8..3,
            of(any::<u32>()),
            (any::<u64>(), any::<u64>(), any::<u64>()),
        )),
    )
        .prop_map(
            |(
                (name, backend, argv, task),
                (model, system_prompt, context, env),
                (cwd, labels, pipe),
                (timeout_ms, log_budget, stop_signal),
                restart,
            )| AgentSpec {
                name,
                backend,
                argv,
                task,
                model,
                system_prompt,
                context,
                env,
                cwd,
                labels,
                stdin: if pipe {
                    StdinMode::Pipe
                } else {
                    StdinMode::Null
                },
                timeout_ms,
                log_budget,
                stop_signal,
                parent: None,
                resume: None,
                restart: restart.map(|(policy, max_restarts, (backoff, most, reset))| {
                    drover_proto::Restart {
                        policy: [
                            drover_proto::RestartPolicy::Never,
                            drover_proto::RestartPolicy::OnFailure,
                            drover_proto::RestartPolicy::Always,
                        ][usize::from(policy)],
                        max_restarts,
                        backoff_ms: backoff,
                        max_backoff_ms: most,
                        reset_after_ms: reset,
                    }
                }),
            },
        )
}

/// A status in any state, with the data valid in that state.
fn status() -> impl Strategy<Value = AgentStatus> {
    let t = any::<i64>;
    prop_oneof![
        Just(AgentStatus::Starting),
        (any::<u32>(), t()).prop_map(|(pid, started_at)| AgentStatus::Running { pid, started_at }),
        (any::<u32>(), t()).prop_map(|(pid, started_at)| AgentStatus::Paused { pid, started_at }),
        (any::<u32>(), t()).prop_map(|(pid, started_at)| AgentStatus::Stopping { pid, started_at }),
        (any::<i32>(), t(), t()).prop_map(|(code, started_at, ended_at)| AgentStatus::Exited {
            code,
            started_at,
            ended_at
        }),
        (any::<i32>(), t(), t()).prop_map(|(signal, started_at, ended_at)| {
            AgentStatus::Killed {
                signal,
                started_at,
                ended_at,
            }
        }),
        (text(), t()).prop_map(|(error, ended_at)| AgentStatus::FailedToStart { error, ended_at }),
        (of(any::<u32>()), of(t()), t(), of(text())).prop_map(
            |(pid, started_at, ended_at, error)| AgentStatus::Lost {
                pid,
                started_at,
                ended_at,
                error,
            }
        ),
    ]
}

fn info() -> impl Strategy<Value = AgentInfo> {
    (
        agent_id(),
        of(text()),
        "[a-z]{1,8}",
        status(),
        any::<i64>(),
        string_map(),
        spec(),
        of(activity()),
    )
        .prop_map(
            |(id, name, backend, status, created_at, labels, spec, activity)| AgentInfo {
                id,
                name,
                backend,
                status,
                created_at,
                labels,
                spec,
                activity,
                restarts: 0,
                timed_out: false,
            },
        )
}

fn activity() -> impl Strategy<Value = drover_proto::Activity> {
    (
        of(text()),
        0..6usize,
        any::<u32>(),
        any::<[u64; 4]>(),
        of(any::<u64>()),
        of(text()),
        any::<bool>(),
    )
        .prop_map(|(session_id, phase, turns, t, cost, result, is_error)| {
            drover_proto::Activity {
                parser: "claude-stream-json".to_owned(),
                session_id,
                model: Some("m".to_owned()),
                phase: drover_proto::Phase::ALL[phase],
                turns,
                tokens: drover_proto::Tokens {
                    input: t[0],
                    output: t[1],
                    cache_read: t[2],
                    cache_write: t[3],
                },
                // Whole nanodollars below 2^53 survive the trip through a double exactly.
                cost_usd: cost.map(|c| drover_proto::Usd(c % (1 << 40))),
                current_tool: Some(drover_proto::ToolCall {
                    name: "Bash".to_owned(),
                    summary: "ls".to_owned(),
                }),
                last_text: None,
                result,
                is_error,
                attention: vec![drover_proto::Attention {
                    reason: drover_proto::AttentionReason::MaxTurns,
                    detail: "3".to_owned(),
                }],
                ignored_lines: u64::from(turns),
                // Absent on a first run (half of them here), present after a restart.
                earlier_runs: drover_proto::EarlierRuns {
                    runs: turns % 2,
                    turns: u64::from(turns % 2) * 3,
                    tokens: drover_proto::Tokens {
                        input: t[3],
                        ..Default::default()
                    },
                    cost_usd: cost.map(|c| drover_proto::Usd(c % (1 << 30))),
                },
            }
        })
}

fn record() -> impl Strategy<Value = Record> {
    (
        any::<u64>(),
        any::<i64>(),
        stream(),
        vec(any::<u8>(), 0..64),
        any::<bool>(),
    )
        .prop_map(|(seq, ts, stream, data, partial)| Record {
            seq: Seq(seq),
            ts,
            stream,
            data,
            partial,
        })
}

fn record_batch() -> impl Strategy<Value = RecordBatch> {
    (agent_id(), vec(record(), 0..8)).prop_map(|(agent, records)| RecordBatch { agent, records })
}

fn event() -> impl Strategy<Value = Event> {
    (
        any::<u64>(),
        any::<i64>(),
        agent_id(),
        event_kind(),
        state(),
        of(any::<i32>()),
        of(any::<i32>()),
    )
        .prop_map(
            |(event_seq, ts, agent, kind, state, exit_code, signal)| Event {
                event_seq: EventSeq(event_seq),
                ts,
                agent,
                kind,
                state,
                exit_code,
                signal,
                dropped: (kind == EventKind::LogDropped).then_some(drover_proto::SeqRange {
                    from: Seq(1),
                    to: Seq(event_seq.max(1)),
                }),
                activity: (kind == EventKind::Activity).then(drover_proto::Activity::default),
                run: 1,
            },
        )
}

fn heartbeat() -> impl Strategy<Value = Heartbeat> {
    (
        daemon_id(),
        any::<i64>(),
        any::<u64>(),
        btree_map(agent_id(), any::<u64>().prop_map(Seq), 0..4),
    )
        .prop_map(|(daemon, ts, event_seq, log_ends)| Heartbeat {
            daemon,
            ts,
            event_seq: EventSeq(event_seq),
            log_ends,
        })
}

/// Values a batch's shared `args` may carry.
fn arg_value() -> impl Strategy<Value = rmpv::Value> {
    prop_oneof![
        any::<u64>().prop_map(rmpv::Value::from),
        any::<i64>().prop_map(rmpv::Value::from),
        text().prop_map(rmpv::Value::from),
        any::<bool>().prop_map(rmpv::Value::from),
        Just(rmpv::Value::Nil),
    ]
}

fn agent_args() -> impl Strategy<Value = AgentArgs> {
    agent_ref().prop_map(|agent| AgentArgs { agent })
}

/// Any request, every op represented.
fn request() -> impl Strategy<Value = Request> {
    let signal = prop_oneof![
        any::<i32>().prop_map(SignalSpec::Number),
        "(SIG)?[A-Z]{1,6}".prop_map(SignalSpec::Name),
    ];
    let read_logs = (
        agent_ref(),
        (of(any::<u64>()), of(any::<u64>()), of(any::<u32>())),
        (of(any::<i64>()), of(stream()), of(any::<u32>())),
    )
        .prop_map(
            |(agent, (since_seq, until_seq, tail), (since, stream, limit))| ReadLogsArgs {
                agent,
                since_seq: since_seq.map(Seq),
                until_seq: until_seq.map(Seq),
                tail,
                since,
                stream,
                limit,
            },
        );
    let batch = (
        proptest::sample::select(Op::ALL.to_vec()),
        vec(agent_ref(), 0..5),
        btree_map("[a-z_]{1,10}", arg_value(), 0..3),
        any::<bool>(),
    )
        .prop_map(|(op, agents, args, fail_fast)| BatchArgs {
            op,
            agents,
            args,
            fail_fast,
        });
    prop_oneof![
        Just(Request::Health(NoArgs {})),
        spec().prop_map(|spec| Request::Spawn(SpawnArgs { spec })),
        (
            of(state()),
            string_map(),
            of(any::<u32>()),
            of(".{0,40}"),
            any::<bool>()
        )
            .prop_map(|(state, labels, limit, cursor, specs)| {
                Request::List(ListArgs {
                    state,
                    labels,
                    limit,
                    cursor,
                    specs,
                })
            }),
        agent_args().prop_map(Request::Get),
        agent_args().prop_map(Request::Pause),
        agent_args().prop_map(Request::Resume),
        (agent_ref(), of(any::<u64>()))
            .prop_map(|(agent, grace_ms)| Request::Stop(StopArgs { agent, grace_ms })),
        agent_args().prop_map(Request::Kill),
        (agent_ref(), signal)
            .prop_map(|(agent, signal)| Request::Signal(SignalArgs { agent, signal })),
        (agent_ref(), vec(any::<u8>(), 0..64))
            .prop_map(|(agent, data)| Request::WriteStdin(WriteStdinArgs { agent, data })),
        agent_args().prop_map(Request::CloseStdin),
        read_logs.prop_map(Request::ReadLogs),
        of(agent_ref()).prop_map(|agent| Request::StreamInfo(StreamInfoArgs { agent })),
        (agent_ref(), of(any::<u64>()))
            .prop_map(|(agent, timeout_ms)| Request::Wait(WaitArgs { agent, timeout_ms })),
        agent_args().prop_map(Request::Remove),
        batch.prop_map(Request::Batch),
        Just(Request::Stats(NoArgs {})),
        (of(any::<u64>()), of(any::<u32>())).prop_map(|(after, limit)| {
            Request::ReadEvents(ReadEventsArgs {
                after: after.map(EventSeq),
                limit,
            })
        }),
    ]
}

fn batch_item() -> impl Strategy<Value = BatchItem> {
    (agent_ref(), of(error_body()), of(info())).prop_map(|(agent, error, info)| BatchItem {
        agent,
        ok: error.is_none(),
        error,
        info,
    })
}

fn stats() -> impl Strategy<Value = StatsResult> {
    (
        (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()),
        (any::<u64>(), any::<u64>(), any::<u64>(), any::<u64>()),
        btree_map("[a-z_]{1,10}", any::<u64>(), 0..4),
        btree_map("[a-z_]{1,10}", any::<u64>(), 0..4),
    )
        .prop_map(
            |(
                (uptime_ms, spawns, agents_live, agents_total),
                (records, bytes, events, log_bytes),
                requests,
                errors,
            )| StatsResult {
                uptime_ms,
                spawns,
                agents_live,
                agents_total,
                records,
                bytes,
                requests,
                errors,
                events,
                log_bytes,
                log_output_bytes: log_bytes.rotate_left(7),
                pub_dropped: records ^ bytes,
                records_dropped: records,
                registry_queued: bytes,
                replies_dropped: records.wrapping_add(bytes),
                store_backlog_bytes: bytes.rotate_left(3),
            },
        )
}

// ---- checks -----------------------------------------------------------------------------------

fn message_round_trips<T>(value: &T) -> Result<(), TestCaseError>
where
    T: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let bytes = encode(value).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let back: T =
        decode(&bytes, DEFAULT_MAX_FRAME).map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back, value);
    Ok(())
}

fn reply_round_trips<R>(id: &rmpv::Value, result: &R) -> Result<(), TestCaseError>
where
    R: Serialize + DeserializeOwned + PartialEq + Debug,
{
    let bytes =
        encode_reply(id, ReplyBody::Ok(result)).map_err(|e| TestCaseError::fail(e.to_string()))?;
    let (back_id, back) = decode_reply::<R>(&bytes, DEFAULT_MAX_FRAME)
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    prop_assert_eq!(&back_id, id);
    prop_assert_eq!(back.as_ref(), Ok(result));
    Ok(())
}

proptest! {
    #[test]
    fn agent_spec_round_trips(spec in spec()) {
        message_round_trips(&spec)?;
    }

    #[test]
    fn agent_info_round_trips_in_every_state(info in info()) {
        message_round_trips(&info)?;
    }

    #[test]
    fn record_round_trips(record in record()) {
        message_round_trips(&record)?;
    }

    #[test]
    fn record_batch_round_trips(batch in record_batch()) {
        message_round_trips(&batch)?;
    }

    #[test]
    fn event_round_trips(event in event()) {
        message_round_trips(&event)?;
    }

    #[test]
    fn heartbeat_round_trips(heartbeat in heartbeat()) {
        message_round_trips(&heartbeat)?;
    }

    #[test]
    fn every_request_round_trips_through_the_envelope(id in request_id(), request in request()) {
        let bytes = encode_request(&id, &request).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let envelope = decode_request(&bytes, DEFAULT_MAX_FRAME)
            .map_err(|e| TestCaseError::fail(e.error.to_string()))?;
        prop_assert_eq!(envelope.id, id);
        prop_assert_eq!(envelope.request, request);
    }

    #[test]
    fn agent_replies_round_trip(
        id in request_id(),
        agent in info(),
        others in vec(info(), 0..3),
        next_cursor in of(".{0,40}"),
    ) {
        reply_round_trips(&id, &AgentResult { agent })?;
        reply_round_trips(&id, &ListResult { agents: others, next_cursor })?;
    }

    #[test]
    fn health_and_stats_replies_round_trip(
        id in request_id(),
        daemon in daemon_id(),
        uptime_ms in any::<u64>(),
        agents in btree_map(state().prop_map(|s| s.as_str().to_owned()), any::<u64>(), 0..8),
        stats in stats(),
    ) {
        let health = HealthResult { version: "0.1.0".into(), protocol: 1, daemon, uptime_ms, agents };
        reply_round_trips(&id, &health)?;
        reply_round_trips(&id, &stats)?;
    }

    #[test]
    fn log_and_stream_replies_round_trip(
        id in request_id(),
        records in vec(record(), 0..6),
        first_seq in any::<u64>(),
        next_seq in any::<u64>(),
        truncated in any::<bool>(),
        endpoint in text(),
        topics in vec(text(), 0..4),
        written in any::<u64>(),
    ) {
        let logs = ReadLogsResult { records, first_seq: Seq(first_seq), next_seq: Seq(next_seq), truncated, end_seq: Seq(next_seq), dropped: None, output_bytes: next_seq, disk_bytes: first_seq };
        reply_round_trips(&id, &logs)?;
        let info = StreamInfoResult { pub_endpoint: endpoint, topics, heartbeat: "hb".into() };
        reply_round_trips(&id, &info)?;
        reply_round_trips(&id, &WriteStdinResult { written })?;
        reply_round_trips(&id, &EmptyResult {})?;
    }

    #[test]
    fn batch_replies_round_trip(id in request_id(), results in vec(batch_item(), 0..4)) {
        reply_round_trips(&id, &BatchResult { results })?;
    }

    #[test]
    fn error_replies_round_trip(id in request_id(), error in error_body()) {
        let bytes = encode_reply::<EmptyResult>(&id, ReplyBody::Err(&error))
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        // Whatever result type the caller expected, an error reply decodes as the error.
        let (back_id, back) = decode_reply::<AgentResult>(&bytes, DEFAULT_MAX_FRAME)
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(back_id, id);
        prop_assert_eq!(back, Err(error));
    }
}
