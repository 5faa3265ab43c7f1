//! Bad input gets a typed error, never a panic: oversize frames are refused before decoding,
//! malformed envelopes and arguments map to `bad_request` or `unsupported_version`, and the
//! request id is echoed whenever it could be read.

use drover_proto::limits::{DEFAULT_MAX_FRAME, MAX_ELEMENTS, MAX_NESTING};
use drover_proto::op::EmptyResult;
use drover_proto::{
    decode, decode_reply, decode_request, encode, encode_request, AgentInfo, ErrorCode, Event, Op,
    ProtoError, Record, RecordBatch, Request,
};
use proptest::prelude::*;

/// Encode any value (usually a hand-built map) as a frame.
fn frame(value: &rmpv::Value) -> Vec<u8> {
    let mut out = Vec::new();
    rmpv::encode::write_value(&mut out, value).expect("encode a value");
    out
}

fn map(entries: &[(&str, rmpv::Value)]) -> rmpv::Value {
    rmpv::Value::Map(
        entries
            .iter()
            .map(|(k, v)| (rmpv::Value::from(*k), v.clone()))
            .collect(),
    )
}

/// A request map `{"v": 1, "id": 77, "op": op, ...args}`.
fn req(op: &str, args: &[(&str, rmpv::Value)]) -> rmpv::Value {
    let mut entries = vec![
        ("v", rmpv::Value::from(1)),
        ("id", rmpv::Value::from(77)),
        ("op", rmpv::Value::from(op)),
    ];
    entries.extend(args.iter().cloned());
    map(&entries)
}

/// Decode a frame that must be refused; return the error's code and the id echoed with it.
fn refused(bytes: &[u8]) -> (ErrorCode, rmpv::Value) {
    match decode_request(bytes, DEFAULT_MAX_FRAME) {
        Ok(envelope) => panic!("accepted: {envelope:?}"),
        Err(e) => {
            assert_eq!(e.error.code(), e.error.to_body().code);
            (e.error.code(), e.id)
        }
    }
}

#[test]
fn oversize_frames_are_refused_before_decoding() {
    let good = encode_request(
        &rmpv::Value::from(5),
        &Request::Health(drover_proto::op::NoArgs {}),
    )
    .expect("encode");
    let limit = good.len() - 1;
    let err = decode_request(&good, limit).expect_err("one byte over the limit");
    assert!(
        matches!(err.error, ProtoError::TooLarge { size, limit: l } if size == good.len() && l == limit),
        "{:?}",
        err.error
    );
    assert_eq!(err.error.code(), ErrorCode::TooLarge);
    // Refused before decoding: the perfectly readable id is not echoed.
    assert_eq!(err.id, rmpv::Value::Nil);
    // Exactly at the limit is fine.
    decode_request(&good, good.len()).expect("a frame of exactly the limit");

    // Garbage over the limit is `too_large`, not `bad_request`: size is checked first.
    let garbage = vec![0xc1_u8; 64];
    let err = decode_request(&garbage, 63).expect_err("too large");
    assert_eq!(err.error.code(), ErrorCode::TooLarge);

    let record = vec![0_u8; 101];
    let err = decode::<Record>(&record, 100).expect_err("too large");
    assert!(matches!(
        err,
        ProtoError::TooLarge {
            size: 101,
            limit: 100
        }
    ));
    let err = decode_reply::<AgentInfo>(&record, 100).expect_err("too large");
    assert_eq!(err.code(), ErrorCode::TooLarge);
}

#[test]
fn the_default_frame_limit_is_ten_mib() {
    assert_eq!(DEFAULT_MAX_FRAME, 10 * 1024 * 1024);
    let big = vec![0xc0_u8; DEFAULT_MAX_FRAME + 1];
    let err = decode_request(&big, DEFAULT_MAX_FRAME).expect_err("too large");
    assert!(matches!(err.error, ProtoError::TooLarge { .. }));
}

#[test]
fn bytes_that_are_not_a_request_map_are_bad_requests() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", vec![]),
        ("reserved marker", vec![0xc1]),
        ("random", vec![0x17, 0xde, 0xad, 0xbe, 0xef, 0x00]),
        (
            "array",
            frame(&rmpv::Value::Array(vec![1.into(), 2.into()])),
        ),
        ("string", frame(&rmpv::Value::from("health"))),
        ("integer", frame(&rmpv::Value::from(1))),
        ("nil", frame(&rmpv::Value::Nil)),
        (
            "trailing bytes",
            [frame(&req("health", &[])), vec![0xc0]].concat(),
        ),
        ("map header without entries", vec![0x83]),
        (
            "str32 claiming 4 GiB",
            vec![0xdb, 0xff, 0xff, 0xff, 0xff, b'a'],
        ),
        (
            "map32 claiming 4G entries",
            vec![0xdf, 0xff, 0xff, 0xff, 0xff],
        ),
    ];
    for (what, bytes) in cases {
        let (code, id) = refused(&bytes);
        assert_eq!(code, ErrorCode::BadRequest, "{what}");
        assert_eq!(id, rmpv::Value::Nil, "{what}: no id could be read");
    }
}

#[test]
fn every_truncation_of_a_request_is_a_bad_request() {
    let whole = frame(&req(
        "spawn",
        &[(
            "spec",
            map(&[
                ("argv", rmpv::Value::Array(vec!["echo".into(), "hi".into()])),
                ("labels", map(&[("team", "core".into())])),
            ]),
        )],
    ));
    decode_request(&whole, DEFAULT_MAX_FRAME).expect("the whole frame is valid");
    for len in 0..whole.len() {
        let (code, _) = refused(&whole[..len]);
        assert_eq!(code, ErrorCode::BadRequest, "truncated to {len} bytes");
    }
}

#[test]
fn envelope_errors_echo_the_id() {
    let id = rmpv::Value::from("corr-1");
    let with_id = |entries: &[(&str, rmpv::Value)]| {
        let mut all = vec![("id", id.clone())];
        all.extend(entries.iter().cloned());
        frame(&map(&all))
    };
    let cases = [
        ("no op", with_id(&[("v", 1.into())]), ErrorCode::BadRequest),
        (
            "unknown op",
            with_id(&[("v", 1.into()), ("op", "explode".into())]),
            ErrorCode::BadRequest,
        ),
        (
            "op not a string",
            with_id(&[("v", 1.into()), ("op", 3.into())]),
            ErrorCode::BadRequest,
        ),
        (
            "op in the wrong case",
            with_id(&[("v", 1.into()), ("op", "Health".into())]),
            ErrorCode::BadRequest,
        ),
        (
            "v 2",
            with_id(&[("v", 2.into()), ("op", "health".into())]),
            ErrorCode::UnsupportedVersion,
        ),
        (
            "v 0",
            with_id(&[("v", 0.into()), ("op", "health".into())]),
            ErrorCode::UnsupportedVersion,
        ),
        (
            "v as a string",
            with_id(&[("v", "1".into()), ("op", "health".into())]),
            ErrorCode::UnsupportedVersion,
        ),
        (
            "no v",
            with_id(&[("op", "health".into())]),
            ErrorCode::UnsupportedVersion,
        ),
    ];
    for (what, bytes, expected) in cases {
        let (code, echoed) = refused(&bytes);
        assert_eq!(code, expected, "{what}");
        assert_eq!(echoed, id, "{what}: the id is echoed");
    }
}

#[test]
fn a_version_error_wins_over_a_bad_op() {
    let bytes = frame(&map(&[
        ("v", 9.into()),
        ("id", 1.into()),
        ("op", "explode".into()),
    ]));
    assert_eq!(refused(&bytes).0, ErrorCode::UnsupportedVersion);
}

#[test]
fn missing_required_arguments_are_bad_requests() {
    let needs_agent = [
        Op::Get,
        Op::Pause,
        Op::Resume,
        Op::Stop,
        Op::Kill,
        Op::Signal,
        Op::WriteStdin,
        Op::CloseStdin,
        Op::ReadLogs,
        Op::Wait,
        Op::Remove,
    ];
    for op in needs_agent {
        let (code, id) = refused(&frame(&req(
            op.as_str(),
            &[
                ("signal", "TERM".into()),
                ("data", rmpv::Value::Binary(vec![])),
            ],
        )));
        assert_eq!(code, ErrorCode::BadRequest, "{op:?} without agent");
        assert_eq!(id, rmpv::Value::from(77));
    }
    let cases = [
        ("spawn without spec", req("spawn", &[])),
        (
            "signal without signal",
            req("signal", &[("agent", "a".into())]),
        ),
        (
            "write_stdin without data",
            req("write_stdin", &[("agent", "a".into())]),
        ),
        (
            "batch without agents",
            req("batch", &[("batch_op", "kill".into())]),
        ),
        (
            "batch without batch_op",
            req("batch", &[("agents", rmpv::Value::Array(vec!["a".into()]))]),
        ),
    ];
    for (what, value) in cases {
        let (code, id) = refused(&frame(&value));
        assert_eq!(code, ErrorCode::BadRequest, "{what}");
        assert_eq!(id, rmpv::Value::from(77), "{what}");
    }
}

#[test]
fn ill_typed_arguments_are_bad_requests() {
    let array = |items: Vec<rmpv::Value>| rmpv::Value::Array(items);
    let cases = [
        ("agent as an integer", req("get", &[("agent", 5.into())])),
        ("agent as nil", req("get", &[("agent", rmpv::Value::Nil)])),
        (
            "grace_ms as a string",
            req(
                "stop",
                &[("agent", "a".into()), ("grace_ms", "soon".into())],
            ),
        ),
        (
            "grace_ms negative",
            req("stop", &[("agent", "a".into()), ("grace_ms", (-1).into())]),
        ),
        (
            "spec as a string",
            req("spawn", &[("spec", "echo hi".into())]),
        ),
        (
            "argv as a string",
            req("spawn", &[("spec", map(&[("argv", "echo hi".into())]))]),
        ),
        (
            "unknown stdin mode",
            req("spawn", &[("spec", map(&[("stdin", "tty".into())]))]),
        ),
        (
            "unknown state",
            req("list", &[("state", "sleeping".into())]),
        ),
        ("limit negative", req("list", &[("limit", (-5).into())])),
        (
            "labels as an array",
            req("list", &[("labels", array(vec![]))]),
        ),
        (
            "unknown stream",
            req(
                "read_logs",
                &[("agent", "a".into()), ("stream", "stdnet".into())],
            ),
        ),
        (
            "since_seq as a string",
            req(
                "read_logs",
                &[("agent", "a".into()), ("since_seq", "10".into())],
            ),
        ),
        (
            "data as an integer",
            req("write_stdin", &[("agent", "a".into()), ("data", 5.into())]),
        ),
        (
            "signal as a bool",
            req("signal", &[("agent", "a".into()), ("signal", true.into())]),
        ),
        (
            "batch_op unknown",
            req(
                "batch",
                &[("batch_op", "explode".into()), ("agents", array(vec![]))],
            ),
        ),
        (
            "agents as a string",
            req(
                "batch",
                &[("batch_op", "kill".into()), ("agents", "a".into())],
            ),
        ),
        (
            "fail_fast as a string",
            req(
                "batch",
                &[
                    ("batch_op", "kill".into()),
                    ("agents", array(vec![])),
                    ("fail_fast", "yes".into()),
                ],
            ),
        ),
    ];
    for (what, value) in cases {
        let (code, id) = refused(&frame(&value));
        assert_eq!(code, ErrorCode::BadRequest, "{what}");
        assert_eq!(id, rmpv::Value::from(77), "{what}: the id is echoed");
    }
}

/// `{"v": 1, "op": "health", "ok": true, <event fields>, "extra": [[...["x"]...]]}` with
/// `arrays` nested arrays, so the message is nested `arrays + 1` levels deep. It is at once a
/// valid request, reply and event, apart from its depth.
fn nested_message(arrays: usize) -> Vec<u8> {
    let event = drover_proto::Event {
        event_seq: drover_proto::EventSeq(1),
        ts: 0,
        agent: "0190a3f2-5b1c-7d4e-8f00-0123456789ab"
            .parse()
            .expect("uuid"),
        kind: drover_proto::EventKind::Spawned,
        state: drover_proto::AgentState::Starting,
        exit_code: None,
        signal: None,
        dropped: None,
        activity: None,
        run: 1,
    };
    let mut entries = match rmpv::decode::read_value(&mut &encode(&event).expect("encode")[..]) {
        Ok(rmpv::Value::Map(entries)) => entries,
        other => panic!("an event is a map: {other:?}"),
    };
    for (k, v) in [
        ("v", rmpv::Value::from(1)),
        ("op", "health".into()),
        ("ok", true.into()),
    ] {
        entries.push((k.into(), v));
    }
    let mut body = frame(&rmpv::Value::Map(entries));
    body[0] += 1; // one more entry in the fixmap header: "extra", written by hand below
    body.extend(frame(&"extra".into()));
    body.extend(std::iter::repeat_n(0x91_u8, arrays)); // fixarray of one element, nested
    body.extend(frame(&"x".into()));
    body
}

/// Nesting is bounded, so a small hostile frame cannot exhaust the stack of the thread that
/// decodes it (an unbounded decoder overflows a 2 MiB stack at about 600 levels).
#[test]
fn nesting_is_bounded_without_a_crash() {
    let deepest = nested_message(MAX_NESTING - 1);
    decode_request(&deepest, DEFAULT_MAX_FRAME).expect("MAX_NESTING levels are accepted");
    let (_, reply) =
        decode_reply::<EmptyResult>(&deepest, DEFAULT_MAX_FRAME).expect("as a reply too");
    assert_eq!(reply, Ok(EmptyResult {}));
    decode::<Event>(&deepest, DEFAULT_MAX_FRAME).expect("and as an event");
    for arrays in [MAX_NESTING + 2, 600, 100_000] {
        let bytes = nested_message(arrays);
        let (code, _) = refused(&bytes);
        assert_eq!(code, ErrorCode::BadRequest, "{arrays} arrays");
        let err = decode_reply::<EmptyResult>(&bytes, DEFAULT_MAX_FRAME).expect_err("too deep");
        assert!(matches!(err, ProtoError::Malformed(_)), "{err:?}");
        let err = decode::<Event>(&bytes, DEFAULT_MAX_FRAME).expect_err("too deep");
        assert!(matches!(err, ProtoError::Malformed(_)), "{err:?}");
    }
}

#[test]
fn malformed_messages_and_replies_are_errors() {
    let not_a_record = frame(&map(&[("seq", "one".into())]));
    let err = decode::<Record>(&not_a_record, DEFAULT_MAX_FRAME).expect_err("ill-typed");
    assert_eq!(err.code(), ErrorCode::BadRequest);
    let bad_id = frame(&map(&[
        ("agent", "not-a-uuid".into()),
        ("records", rmpv::Value::Array(vec![])),
    ]));
    assert!(decode::<RecordBatch>(&bad_id, DEFAULT_MAX_FRAME).is_err());
    let running_without_pid = frame(&map(&[
        ("id", "0190a3f2-5b1c-7d4e-8f00-0123456789ab".into()),
        ("state", "running".into()),
    ]));
    assert!(
        decode::<AgentInfo>(&running_without_pid, DEFAULT_MAX_FRAME).is_err(),
        "per-state data is required"
    );
    let without_ok = frame(&map(&[("v", 1.into()), ("id", 1.into())]));
    assert!(decode_reply::<AgentInfo>(&without_ok, DEFAULT_MAX_FRAME).is_err());
    let error_without_body = frame(&map(&[("v", 1.into()), ("ok", false.into())]));
    assert!(decode_reply::<AgentInfo>(&error_without_body, DEFAULT_MAX_FRAME).is_err());
}

/// Values for the fuzzed request maps below.
fn any_value() -> impl Strategy<Value = rmpv::Value> {
    let leaf = prop_oneof![
        Just(rmpv::Value::Nil),
        any::<bool>().prop_map(rmpv::Value::from),
        any::<i64>().prop_map(rmpv::Value::from),
        any::<u64>().prop_map(rmpv::Value::from),
        any::<f64>().prop_map(rmpv::Value::from),
        ".{0,10}".prop_map(rmpv::Value::from),
        proptest::collection::vec(any::<u8>(), 0..10).prop_map(rmpv::Value::Binary),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..4).prop_map(rmpv::Value::Array),
            proptest::collection::vec((inner.clone(), inner), 0..4).prop_map(rmpv::Value::Map),
        ]
    })
}

const FIELDS: [&str; 16] = [
    "agent",
    "spec",
    "signal",
    "data",
    "grace_ms",
    "timeout_ms",
    "since_seq",
    "tail",
    "stream",
    "limit",
    "state",
    "labels",
    "batch_op",
    "agents",
    "args",
    "fail_fast",
];

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        if let Err(e) = decode_request(&bytes, DEFAULT_MAX_FRAME) {
            prop_assert!(matches!(
                e.error.code(),
                ErrorCode::BadRequest | ErrorCode::UnsupportedVersion
            ));
        }
        let _ = decode_reply::<AgentInfo>(&bytes, DEFAULT_MAX_FRAME);
        let _ = decode::<Event>(&bytes, DEFAULT_MAX_FRAME);
        let _ = decode::<RecordBatch>(&bytes, DEFAULT_MAX_FRAME);
    }

    /// Well-formed envelopes with fuzzed arguments: accepted or `bad_request`, id echoed.
    #[test]
    fn fuzzed_arguments_never_panic_and_echo_the_id(
        op in proptest::sample::select(Op::ALL.to_vec()),
        id in any_value(),
        fields in proptest::collection::vec(
            (proptest::sample::select(FIELDS.to_vec()), any_value()),
            0..5,
        ),
    ) {
        let mut entries = vec![
            (rmpv::Value::from("v"), rmpv::Value::from(1)),
            (rmpv::Value::from("id"), id.clone()),
            (rmpv::Value::from("op"), rmpv::Value::from(op.as_str())),
        ];
        entries.extend(fields.into_iter().map(|(k, v)| (rmpv::Value::from(k), v)));
        let bytes = frame(&rmpv::Value::Map(entries));
        match decode_request(&bytes, DEFAULT_MAX_FRAME) {
            Ok(envelope) => prop_assert_eq!(envelope.request.op(), op),
            Err(e) => {
                prop_assert_eq!(e.error.code(), ErrorCode::BadRequest);
                // Compare encodings: NaN ids are equal byte for byte but not as values.
                prop_assert_eq!(frame(&e.id), frame(&id));
            }
        }
    }

    /// Corrupting one byte of a valid request never panics.
    #[test]
    fn corrupted_requests_never_panic(index in any::<prop::sample::Index>(), byte in any::<u8>()) {
        let good = frame(&req("stop", &[("agent", "build-1".into()), ("grace_ms", 2500.into())]));
        let mut bad = good.clone();
        bad[index.index(good.len())] = byte;
        let _ = decode_request(&bad, DEFAULT_MAX_FRAME);
    }
}

/// A request must be a map: anything else is refused from its first byte, whatever its size
/// (a 10 MiB array of nils used to be decoded whole, about 32 bytes of memory per byte, first).
#[test]
fn a_huge_array_is_refused_from_its_first_byte() {
    let mut nils = vec![0xdd_u8];
    let count = u32::try_from(DEFAULT_MAX_FRAME - 5).expect("fits");
    nils.extend(count.to_be_bytes());
    nils.resize(DEFAULT_MAX_FRAME, 0xc0);
    let err = decode_request(&nils, DEFAULT_MAX_FRAME).expect_err("refused");
    assert_eq!(err.error.code(), ErrorCode::BadRequest);
    assert_eq!(
        err.error.to_string(),
        "malformed message: the body is not a map"
    );
    assert_eq!(err.id, rmpv::Value::Nil);
}

/// A header claiming more than the frame holds is refused before anything is allocated for it:
/// here an array32 of 2^32 - 1 elements in a frame of a few dozen bytes.
#[test]
fn a_claimed_length_beyond_the_frame_is_refused_from_the_header() {
    let mut bytes = frame(&req("health", &[]));
    bytes[0] += 1; // one more entry, written by hand
    bytes.extend(frame(&"x".into()));
    bytes.extend([0xdd, 0xff, 0xff, 0xff, 0xff, 0xc0, 0xc0]);
    let err = decode_request(&bytes, DEFAULT_MAX_FRAME).expect_err("refused");
    assert_eq!(err.error.code(), ErrorCode::BadRequest);
    assert!(
        err.error
            .to_string()
            .contains("claims 4294967295 values, only 2 bytes remain"),
        "{}",
        err.error
    );
    // The same claim as a string's length.
    let mut bytes = frame(&req("health", &[]));
    bytes[0] += 1;
    bytes.extend(frame(&"x".into()));
    bytes.extend([0xdb, 0xff, 0xff, 0xff, 0xff, b'a']);
    let err = decode_request(&bytes, DEFAULT_MAX_FRAME).expect_err("refused");
    assert!(
        err.error.to_string().contains("claims 4294967295 bytes"),
        "{}",
        err.error
    );
}

/// A well-formed request holding more than `MAX_ELEMENTS` values (at any depth, in any field,
/// known or not) is refused as `bad_request` with its id echoed; exactly the limit is accepted.
#[test]
fn the_values_in_one_request_are_bounded() {
    // `{"v", "id", "op", "junk": [nil; n]}`: 8 values in the envelope map, n in the array.
    let with_junk = |n: usize| {
        frame(&req(
            "health",
            &[("junk", rmpv::Value::Array(vec![rmpv::Value::Nil; n]))],
        ))
    };
    let at_limit = with_junk(MAX_ELEMENTS - 8);
    let envelope = decode_request(&at_limit, DEFAULT_MAX_FRAME).expect("exactly the limit");
    assert_eq!(envelope.request.op(), Op::Health);
    let (code, id) = refused(&with_junk(MAX_ELEMENTS - 7));
    assert_eq!(code, ErrorCode::BadRequest);
    assert_eq!(id, rmpv::Value::from(77), "the id is still echoed");
    let err = decode_request(&with_junk(1_000_000), DEFAULT_MAX_FRAME).expect_err("refused");
    assert_eq!(
        err.error.to_string(),
        format!("malformed message: the request holds 1000008 values; at most {MAX_ELEMENTS} are allowed")
    );
    // An id over the budget by itself is not echoed (it would cost what the bound prevents).
    let huge_id = frame(&map(&[
        ("v", 1.into()),
        (
            "id",
            rmpv::Value::Array(vec![rmpv::Value::Nil; MAX_ELEMENTS + 1]),
        ),
        ("op", "health".into()),
    ]));
    let (code, id) = refused(&huge_id);
    assert_eq!(code, ErrorCode::BadRequest);
    assert_eq!(id, rmpv::Value::Nil);
}

/// An event of a kind a newer daemon added decodes as `unknown` (clients skip it), with its
/// other fields intact.
#[test]
fn an_event_of_an_unknown_kind_decodes_as_unknown() {
    let event = map(&[
        ("event_seq", 9.into()),
        ("ts", 5.into()),
        ("agent", "0190a3f2-5b1c-7d4e-8f00-0123456789ab".into()),
        ("kind", "teleported".into()),
        ("state", "running".into()),
        ("run", 3.into()),
    ]);
    let decoded: drover_proto::Event =
        drover_proto::decode(&frame(&event), DEFAULT_MAX_FRAME).expect("decodes");
    assert_eq!(decoded.kind, drover_proto::EventKind::Unknown);
    assert_eq!(decoded.event_seq, drover_proto::EventSeq(9));
    assert_eq!(decoded.run, 3);
}
