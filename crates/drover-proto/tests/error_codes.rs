//! The error-code table of `docs/PROTOCOL.md`: wire string, HTTP status and `drover` exit code.

use drover_proto::{ErrorBody, ErrorCode, ProtoError};

/// (code, wire string, HTTP status, CLI exit code), in documentation order.
const TABLE: [(ErrorCode, &str, u16, i32); 11] = [
    (ErrorCode::BadRequest, "bad_request", 400, 2),
    (ErrorCode::NotFound, "not_found", 404, 3),
    (ErrorCode::InvalidState, "invalid_state", 409, 4),
    (ErrorCode::LimitReached, "limit_reached", 429, 5),
    (ErrorCode::Unauthorized, "unauthorized", 401, 6),
    (ErrorCode::TooLarge, "too_large", 413, 7),
    (ErrorCode::UnsupportedVersion, "unsupported_version", 400, 8),
    (ErrorCode::Timeout, "timeout", 504, 9),
    (ErrorCode::StdinFull, "stdin_full", 503, 10),
    (ErrorCode::StdinClosed, "stdin_closed", 409, 11),
    (ErrorCode::Internal, "internal", 500, 12),
];

#[test]
fn the_documented_table_is_the_code() {
    assert_eq!(ErrorCode::ALL.len(), TABLE.len());
    for ((code, wire, http, exit), listed) in TABLE.into_iter().zip(ErrorCode::ALL) {
        assert_eq!(code, listed, "documentation order");
        assert_eq!(code.as_str(), wire);
        assert_eq!(code.to_string(), wire);
        assert_eq!(ErrorCode::from_wire(wire), code);
        assert_eq!(code.http_status(), http, "{wire}");
        assert_eq!(code.exit_code(), exit, "{wire}");
        let encoded = drover_proto::encode(&code).expect("encode");
        assert_eq!(encoded, rmp_serde::to_vec(wire).expect("encode"), "{wire}");
    }
}

#[test]
fn unknown_codes_read_as_internal() {
    assert_eq!(ErrorCode::from_wire("quota_exceeded"), ErrorCode::Internal);
    let bytes = rmp_serde::to_vec_named(&error_map("quota_exceeded")).expect("encode");
    let body: ErrorBody = drover_proto::decode(&bytes, 1024).expect("decode");
    assert_eq!(body.code, ErrorCode::Internal);
    assert_eq!(body.message, "m");
}

fn error_map(code: &str) -> std::collections::BTreeMap<&str, &str> {
    [("code", code), ("message", "m")].into()
}

#[test]
fn decode_failures_map_to_wire_codes() {
    let cases = [
        (
            ProtoError::TooLarge { size: 2, limit: 1 },
            ErrorCode::TooLarge,
        ),
        (ProtoError::Malformed("x".into()), ErrorCode::BadRequest),
        (ProtoError::UnknownOp("x".into()), ErrorCode::BadRequest),
        (
            ProtoError::InvalidArguments {
                op: "get",
                reason: "x".into(),
            },
            ErrorCode::BadRequest,
        ),
        (
            ProtoError::UnsupportedVersion("2".into()),
            ErrorCode::UnsupportedVersion,
        ),
    ];
    for (error, code) in cases {
        assert_eq!(error.code(), code, "{error}");
        assert_eq!(error.to_body(), ErrorBody::new(code, error.to_string()));
    }
}
