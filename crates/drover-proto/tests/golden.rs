//! Golden files pin the v1 wire bytes of every message.
//!
//! Each message is built from fixed fixtures, encoded, and compared byte for byte with
//! `tests/data/v1/<name>.msgpack`; the file must also decode back to the value that was encoded.
//! A change to any of them is a change to the protocol. To regenerate them after a deliberate,
//! compatible change, run `DROVER_BLESS=1 cargo test -p drover-proto --test golden` and review the
//! diff of `tests/data/v1/`.

mod common;

use std::collections::BTreeSet;
use std::fmt::Debug;
use std::path::{Path, PathBuf};

use common::*;
use drover_proto::limits::DEFAULT_MAX_FRAME;
use drover_proto::op::{
    AgentRef, AgentResult, BatchItem, BatchResult, EmptyResult, HealthResult, ListResult,
    ReadEventsResult, ReadLogsResult, StatsResult, StreamInfoResult, WriteStdinResult,
};
use drover_proto::{
    decode, decode_reply, decode_request, encode, encode_reply, encode_request, topic, AgentInfo,
    AgentSpec, AgentState, ErrorBody, ErrorCode, Event, EventKind, EventSeq, Heartbeat, Op, Record,
    RecordBatch, ReplyBody, RequestEnvelope, Seq,
};
use serde::de::DeserializeOwned;
use serde::Serialize;

/// Decodes a golden file's bytes and compares them with the value that was encoded.
type DecodesBack = Box<dyn Fn(&[u8]) -> Result<(), String>>;

/// One golden file: its name, the bytes the encoder produces now, and a check that the file's
/// bytes decode back to the encoded value.
struct Golden {
    name: String,
    bytes: Vec<u8>,
    decodes_back: DecodesBack,
}

fn golden<T: PartialEq + Debug + 'static>(
    name: impl Into<String>,
    bytes: Vec<u8>,
    expected: T,
    decode: impl Fn(&[u8]) -> Result<T, String> + 'static,
) -> Golden {
    Golden {
        name: name.into(),
        bytes,
        decodes_back: Box::new(move |bytes| {
            let decoded = decode(bytes)?;
            if decoded == expected {
                Ok(())
            } else {
                Err(format!("decoded {decoded:#?}\nexpected {expected:#?}"))
            }
        }),
    }
}

fn message<T: Serialize + DeserializeOwned + PartialEq + Debug + 'static>(
    name: impl Into<String>,
    value: T,
) -> Golden {
    let bytes = encode(&value).expect("encode");
    golden(name, bytes, value, |b| {
        decode::<T>(b, DEFAULT_MAX_FRAME).map_err(|e| e.to_string())
    })
}

fn reply<R: Serialize + DeserializeOwned + PartialEq + Debug + 'static>(
    name: &str,
    id: rmpv::Value,
    result: R,
) -> Golden {
    let bytes = encode_reply(&id, ReplyBody::Ok(&result)).expect("encode reply");
    golden(format!("reply_{name}"), bytes, (id, Ok(result)), |b| {
        decode_reply::<R>(b, DEFAULT_MAX_FRAME).map_err(|e| e.to_string())
    })
}

fn error_reply(name: &str, id: rmpv::Value, error: ErrorBody) -> Golden {
    let bytes = encode_reply::<EmptyResult>(&id, ReplyBody::Err(&error)).expect("encode reply");
    golden(format!("reply_{name}"), bytes, (id, Err(error)), |b| {
        decode_reply::<EmptyResult>(b, DEFAULT_MAX_FRAME).map_err(|e| e.to_string())
    })
}

fn request_goldens() -> Vec<Golden> {
    requests()
        .into_iter()
        .map(|(name, id, request)| {
            let bytes = encode_request(&id, &request).expect("encode request");
            golden(
                format!("request_{name}"),
                bytes,
                RequestEnvelope { id, request },
                |b| decode_request(b, DEFAULT_MAX_FRAME).map_err(|e| e.error.to_string()),
            )
        })
        .collect()
}

fn reply_goldens() -> Vec<Golden> {
    let agent = |state| AgentResult { agent: info(state) };
    let id = |n: u64| rmpv::Value::from(n);
    vec![
        reply(
            "health",
            id(1),
            HealthResult {
                version: "0.1.0".into(),
                protocol: 1,
                daemon: daemon_id(),
                uptime_ms: 12_345,
                agents: [("exited".to_owned(), 1), ("running".to_owned(), 2)].into(),
            },
        ),
        reply("spawn", id(2), agent(AgentState::Running)),
        reply(
            "list",
            id(3),
            ListResult {
                agents: vec![info(AgentState::Running), other_info(AgentState::Exited)],
                next_cursor: None,
            },
        ),
        // A page without specs (the default) that names the next page.
        reply(
            "list_page",
            id(3),
            ListResult {
                agents: vec![
                    AgentInfo {
                        spec: AgentSpec::default(),
                        ..info(AgentState::Running)
                    },
                    AgentInfo {
                        spec: AgentSpec::default(),
                        ..other_info(AgentState::Exited)
                    },
                ],
                next_cursor: Some(format!("{}.{}", T0 + SECOND / 2, other_agent_id())),
            },
        ),
        reply(
            "get",
            rmpv::Value::from("req-4"),
            agent(AgentState::Running),
        ),
        reply("pause", id(5), agent(AgentState::Paused)),
        reply("resume", id(6), agent(AgentState::Running)),
        reply("stop", id(7), agent(AgentState::Stopping)),
        reply("kill", id(8), agent(AgentState::Killed)),
        reply("signal", id(9), agent(AgentState::Running)),
        reply("write_stdin", id(11), WriteStdinResult { written: 5 }),
        reply("close_stdin", id(12), EmptyResult {}),
        reply(
            "read_logs",
            id(13),
            ReadLogsResult {
                records: vec![record_line(), record_invalid_utf8_partial()],
                first_seq: Seq(41),
                next_seq: Seq(43),
                truncated: true,
                end_seq: Seq(50),
                dropped: None,
                output_bytes: 1_048_576,
                disk_bytes: 131_072,
            },
        ),
        reply(
            "read_logs_dropped",
            id(7),
            ReadLogsResult {
                records: vec![],
                first_seq: Seq(1),
                next_seq: Seq(100_041),
                truncated: false,
                end_seq: Seq(100_041),
                output_bytes: 0,
                disk_bytes: 0,
                dropped: Some(drover_proto::SeqRange {
                    from: Seq(41),
                    to: Seq(100_040),
                }),
            },
        ),
        reply(
            "stream_info",
            id(14),
            StreamInfoResult {
                pub_endpoint: "tcp://127.0.0.1:7711".into(),
                topics: vec![topic::log(agent_id()), topic::event(agent_id())],
                heartbeat: topic::HEARTBEAT.into(),
            },
        ),
        reply("wait", id(15), agent(AgentState::Exited)),
        reply(
            "read_events",
            id(18),
            ReadEventsResult {
                events: vec![event(EventKind::Spawned), event(EventKind::Exit)],
                last_event_seq: EventSeq(9),
            },
        ),
        reply("remove", id(16), EmptyResult {}),
        reply(
            "batch",
            id(17),
            BatchResult {
                results: vec![
                    BatchItem {
                        agent: AgentRef::new("fix-tests"),
                        ok: true,
                        error: None,
                        info: Some(info(AgentState::Stopping)),
                    },
                    BatchItem {
                        agent: AgentRef::new(OTHER_AGENT),
                        ok: false,
                        error: Some(ErrorBody::new(
                            ErrorCode::InvalidState,
                            "agent 0190a3f2-6000-7abc-9def-00000000beef is exited",
                        )),
                        info: None,
                    },
                    BatchItem {
                        agent: AgentRef::new("ghost"),
                        ok: false,
                        error: Some(ErrorBody::new(
                            ErrorCode::NotFound,
                            "no agent matches \"ghost\"",
                        )),
                        info: None,
                    },
                ],
            },
        ),
        reply(
            "stats",
            rmpv::Value::Nil,
            StatsResult {
                uptime_ms: 12_345,
                spawns: 3,
                agents_live: 2,
                agents_total: 3,
                records: 1_200,
                bytes: 96_000,
                requests: [("get".to_owned(), 10), ("spawn".to_owned(), 3)].into(),
                errors: [("not_found".to_owned(), 1)].into(),
                events: 9,
                log_bytes: 131_072,
                log_output_bytes: 1_048_576,
                pub_dropped: 4,
                records_dropped: 100_000,
                registry_queued: 2,
                replies_dropped: 1,
                store_backlog_bytes: 65_536,
            },
        ),
        error_reply(
            "error",
            id(7),
            ErrorBody::new(ErrorCode::NotFound, "no agent matches \"build-9\""),
        ),
        error_reply(
            "error_without_id",
            rmpv::Value::Nil,
            ErrorBody::new(
                ErrorCode::BadRequest,
                "malformed message: the body is not a map",
            ),
        ),
    ]
}

fn message_goldens() -> Vec<Golden> {
    let mut goldens: Vec<Golden> = AgentState::ALL
        .into_iter()
        .map(|state| message::<AgentInfo>(format!("agent_info_{}", state.as_str()), info(state)))
        .collect();
    goldens.push(message::<AgentInfo>(
        "agent_info_lost_before_start",
        AgentInfo {
            status: drover_proto::AgentStatus::Lost {
                pid: None,
                started_at: None,
                ended_at: T0 + SECOND,
                error: None,
            },
            ..info(AgentState::Lost)
        },
    ));
    goldens.push(message::<Record>("record", record_line()));
    goldens.push(message::<Record>(
        "record_invalid_utf8_partial",
        record_invalid_utf8_partial(),
    ));
    goldens.push(message::<RecordBatch>("record_batch", record_batch()));
    for kind in EVENT_KINDS {
        goldens.push(message::<Event>(
            format!("event_{}", kind.as_str()),
            event(kind),
        ));
    }
    goldens.push(message::<Event>(
        "event_exit_signal",
        Event {
            state: AgentState::Killed,
            exit_code: None,
            signal: Some(15),
            ..event(drover_proto::EventKind::Exit)
        },
    ));
    goldens.push(message::<Heartbeat>("heartbeat", heartbeat()));
    goldens.push(message::<AgentSpec>("spec_full", spec_full()));
    goldens.push(message::<AgentSpec>("spec_minimal", spec_minimal()));
    goldens
}

fn all_goldens() -> Vec<Golden> {
    let mut all = request_goldens();
    all.extend(reply_goldens());
    all.extend(message_goldens());
    all
}

fn golden_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/v1")
}

fn is_blessing() -> bool {
    std::env::var("DROVER_BLESS").is_ok_and(|v| v == "1")
}

fn show(bytes: &[u8]) -> String {
    match rmpv::decode::read_value(&mut &bytes[..]) {
        Ok(value) => value.to_string(),
        Err(e) => format!("(not MessagePack: {e}) {bytes:02x?}"),
    }
}

/// Compare (or, with `DROVER_BLESS=1`, write) each golden, then decode the file back.
fn verify(goldens: Vec<Golden>) {
    let dir = golden_dir();
    let bless = is_blessing();
    let mut failures = Vec::new();
    for golden in goldens {
        let path = dir.join(format!("{}.msgpack", golden.name));
        if bless {
            std::fs::create_dir_all(&dir).expect("create the golden directory");
            std::fs::write(&path, &golden.bytes).expect("write a golden file");
        }
        let on_disk = match std::fs::read(&path) {
            Ok(bytes) => bytes,
            Err(e) => {
                failures.push(format!(
                    "{}: cannot read {} ({e}); run with DROVER_BLESS=1 to create it",
                    golden.name,
                    path.display()
                ));
                continue;
            }
        };
        if on_disk != golden.bytes {
            failures.push(format!(
                "{}: encoding changed\n  golden:  {}\n  encoded: {}",
                golden.name,
                show(&on_disk),
                show(&golden.bytes)
            ));
        }
        if let Err(e) = (golden.decodes_back)(&on_disk) {
            failures.push(format!("{}: golden does not decode back: {e}", golden.name));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn requests_match_goldens() {
    verify(request_goldens());
}

#[test]
fn replies_match_goldens() {
    verify(reply_goldens());
}

#[test]
fn messages_match_goldens() {
    verify(message_goldens());
}

#[test]
fn goldens_cover_every_op_state_and_event_kind() {
    let names: BTreeSet<String> = all_goldens().into_iter().map(|g| g.name).collect();
    let mut missing = Vec::new();
    for op in Op::ALL {
        for name in [
            format!("request_{}", op.as_str()),
            format!("reply_{}", op.as_str()),
        ] {
            if !names.contains(&name) {
                missing.push(name);
            }
        }
    }
    for state in AgentState::ALL {
        let name = format!("agent_info_{}", state.as_str());
        if !names.contains(&name) {
            missing.push(name);
        }
    }
    for kind in EVENT_KINDS {
        let name = format!("event_{}", kind.as_str());
        if !names.contains(&name) {
            missing.push(name);
        }
    }
    assert!(missing.is_empty(), "no golden for {missing:?}");
}

#[test]
fn golden_directory_holds_no_stray_files() {
    if is_blessing() {
        // Blessing writes files while the other tests run; the next plain run checks this.
        return;
    }
    let expected: BTreeSet<String> = all_goldens()
        .into_iter()
        .map(|g| format!("{}.msgpack", g.name))
        .collect();
    let on_disk: BTreeSet<String> = std::fs::read_dir(golden_dir())
        .expect("read the golden directory")
        .map(|entry| {
            entry
                .expect("a directory entry")
                .file_name()
                .to_string_lossy()
                .into_owned()
        })
        .collect();
    let stray: Vec<_> = on_disk.difference(&expected).collect();
    assert!(stray.is_empty(), "golden files nothing produces: {stray:?}");
}

/// Every map in every golden has string keys, each key once: a foreign client decoding into a
/// dict or object must see every field.
#[test]
fn every_golden_map_has_unique_string_keys() {
    fn check(value: &rmpv::Value, path: &str, failures: &mut Vec<String>) {
        match value {
            rmpv::Value::Map(entries) => {
                let mut seen = BTreeSet::new();
                for (key, value) in entries {
                    match key.as_str() {
                        Some(k) if seen.insert(k.to_owned()) => {
                            check(value, &format!("{path}.{k}"), failures)
                        }
                        Some(k) => failures.push(format!("{path}: duplicate key {k:?}")),
                        None => failures.push(format!("{path}: non-string key {key}")),
                    }
                }
            }
            rmpv::Value::Array(items) => {
                for (i, item) in items.iter().enumerate() {
                    check(item, &format!("{path}[{i}]"), failures);
                }
            }
            _ => {}
        }
    }
    let mut failures = Vec::new();
    for golden in all_goldens() {
        let value = rmpv::decode::read_value(&mut &golden.bytes[..]).expect("MessagePack");
        check(&value, &golden.name, &mut failures);
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

/// Ids are UUID strings and log bytes are `bin`, as the contract says (not 16-byte binaries,
/// not strings).
#[test]
fn ids_are_strings_and_log_data_is_bin() {
    let value = |bytes: &[u8]| rmpv::decode::read_value(&mut &bytes[..]).expect("MessagePack");
    let field = |map: &rmpv::Value, key: &str| {
        map.as_map()
            .expect("a map")
            .iter()
            .find(|(k, _)| k.as_str() == Some(key))
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no field {key}"))
    };
    let info = value(&encode(&info(AgentState::Running)).expect("encode"));
    assert_eq!(field(&info, "id").as_str(), Some(AGENT));
    let hb = value(&encode(&heartbeat()).expect("encode"));
    assert_eq!(field(&hb, "daemon").as_str(), Some(DAEMON));
    let event = value(&encode(&event(drover_proto::EventKind::Spawned)).expect("encode"));
    assert_eq!(field(&event, "agent").as_str(), Some(AGENT));
    let batch = value(&encode(&record_batch()).expect("encode"));
    assert_eq!(field(&batch, "agent").as_str(), Some(AGENT));
    let records = field(&batch, "records");
    let first = &records.as_array().expect("records")[0];
    assert_eq!(
        field(first, "data"),
        rmpv::Value::Binary(b"compiling drover v0.1.0\n".to_vec())
    );
}
