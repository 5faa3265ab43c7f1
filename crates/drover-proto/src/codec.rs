//! MessagePack encoding of envelopes and messages.
//!
//! Every message is a map with string keys (`rmp_serde::to_vec_named`). Envelopes are built by
//! splicing: the op's arguments (or result) are encoded as a map, and the envelope keys are
//! written in front of its entries under one map header, so a request or reply is a single flat
//! map without any buffering through an intermediate value tree.

use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};

use crate::limits::{MAX_ELEMENTS, MAX_NESTING};
use crate::op::{
    AgentArgs, BatchArgs, ListArgs, NoArgs, ReadEventsArgs, ReadLogsArgs, SignalArgs, SpawnArgs,
    StopArgs, StreamInfoArgs, WaitArgs, WriteStdinArgs,
};
use crate::shape;
use crate::{ErrorBody, Op, ProtoError, Request, PROTOCOL_VERSION};

/// Encode any protocol message as a named MessagePack map.
pub fn encode<T: Serialize + ?Sized>(value: &T) -> Result<Vec<u8>, ProtoError> {
    Ok(rmp_serde::to_vec_named(value)?)
}

/// Decode a protocol message, refusing frames over `max` bytes before reading them.
pub fn decode<T: DeserializeOwned>(frame: &[u8], max: usize) -> Result<T, ProtoError> {
    check_size(frame, max)?;
    let mut de = rmp_serde::Deserializer::from_read_ref(frame);
    // rmp-serde counts one level per map or array and fails when the count reaches zero.
    de.set_max_depth(MAX_NESTING + 1);
    T::deserialize(&mut de).map_err(|e| ProtoError::Malformed(e.to_string()))
}

/// Read one MessagePack value, nested at most [`MAX_NESTING`] levels deep.
fn read_value(cursor: &mut &[u8]) -> Result<rmpv::Value, rmpv::decode::Error> {
    // rmpv spends two units of depth per map or array level and up to three on a leaf (a str
    // or bin inside the deepest level), so this accepts MAX_NESTING levels with any leaves.
    rmpv::decode::read_value_with_max_depth(cursor, 2 * MAX_NESTING + 3)
}

fn check_size(frame: &[u8], max: usize) -> Result<(), ProtoError> {
    if frame.len() > max {
        return Err(ProtoError::TooLarge {
            size: frame.len(),
            limit: max,
        });
    }
    Ok(())
}

/// A decoded request and the id to echo in its reply.
#[derive(Clone, Debug, PartialEq)]
pub struct RequestEnvelope {
    /// The client's id, any MessagePack value, echoed verbatim (nil when absent).
    pub id: rmpv::Value,
    /// The op and its arguments.
    pub request: Request,
}

/// A request that could not be decoded, with the id to echo when one could be read.
#[derive(Debug)]
pub struct RequestError {
    /// The client's id if the envelope got that far, else nil.
    pub id: rmpv::Value,
    /// What was wrong.
    pub error: ProtoError,
}

/// Decode a request body. Oversize frames are refused before any decoding; then the first byte
/// must open a map and the whole frame must pass [`shape::check`] (every claimed length fits,
/// nesting and value count bounded) before any part of it is decoded. Only the envelope's `v`,
/// `id` and `op` are read as values; the arguments are decoded straight into their types.
pub fn decode_request(frame: &[u8], max: usize) -> Result<RequestEnvelope, RequestError> {
    let nil = || rmpv::Value::Nil;
    let malformed = |reason: String| RequestError {
        id: nil(),
        error: ProtoError::Malformed(reason),
    };
    check_size(frame, max).map_err(|error| RequestError { id: nil(), error })?;
    if !shape::starts_with_map(frame) {
        return Err(malformed("the body is not a map".into()));
    }
    let shape = shape::check(frame).map_err(|e| malformed(format!("not MessagePack: {e}")))?;
    if shape.end != frame.len() {
        return Err(malformed(format!(
            "{} trailing bytes after the body",
            frame.len() - shape.end
        )));
    }
    let head = Envelope::find(frame).map_err(|e| malformed(format!("not MessagePack: {e}")))?;
    let id = head.id.unwrap_or(rmpv::Value::Nil);
    let fail = |error: ProtoError| RequestError {
        id: id.clone(),
        error,
    };
    if shape.values > MAX_ELEMENTS {
        return Err(fail(ProtoError::Malformed(format!(
            "the request holds {} values; at most {MAX_ELEMENTS} are allowed",
            shape.values
        ))));
    }
    match head.v {
        Some(v) if v.as_u64() == Some(u64::from(PROTOCOL_VERSION)) => {}
        Some(v) => {
            // A float or a string that reads as 1 is still not the integer 1: say which it was.
            let given = match &v {
                rmpv::Value::F32(f) => format!("{f:?} (a float; `v` is the integer 1)"),
                rmpv::Value::F64(f) => format!("{f:?} (a float; `v` is the integer 1)"),
                rmpv::Value::String(_) => format!("{v} (a string; `v` is the integer 1)"),
                other => other.to_string(),
            };
            return Err(fail(ProtoError::UnsupportedVersion(given)));
        }
        None => return Err(fail(ProtoError::UnsupportedVersion("(missing)".into()))),
    }
    let op_name = match head.op {
        Some(rmpv::Value::String(s)) => s.as_str().unwrap_or("").to_owned(),
        Some(other) => return Err(fail(ProtoError::UnknownOp(other.to_string()))),
        None => return Err(fail(ProtoError::UnknownOp("(missing)".into()))),
    };
    let op = Op::parse(&op_name).ok_or_else(|| fail(ProtoError::UnknownOp(op_name.clone())))?;
    // The frame is known to be a well-formed, bounded map: decode the arguments straight from
    // its bytes (envelope keys and unknown fields are skipped by serde).
    let request = request_from_bytes(op, frame).map_err(fail)?;
    Ok(RequestEnvelope { id, request })
}

/// The envelope fields of a request map, each read from its own bytes (the first of each key
/// wins; other entries are skipped without being decoded).
#[derive(Default)]
struct Envelope {
    v: Option<rmpv::Value>,
    id: Option<rmpv::Value>,
    op: Option<rmpv::Value>,
}

impl Envelope {
    /// Reads the envelope of a map that passed [`shape::check`].
    fn find(frame: &[u8]) -> Result<Envelope, String> {
        let mut cursor = frame;
        let entries = rmp::decode::read_map_len(&mut cursor).map_err(|e| e.to_string())?;
        let mut pos = frame.len() - cursor.len();
        let mut head = Envelope::default();
        for _ in 0..entries {
            let key_end = shape::value_at(frame, pos)?.end;
            let value = shape::value_at(frame, key_end)?;
            let value_end = value.end;
            let slot = match rmp::decode::read_str_from_slice(&frame[pos..key_end]) {
                Ok(("v", _)) => Some(&mut head.v),
                Ok(("id", _)) => Some(&mut head.id),
                Ok(("op", _)) => Some(&mut head.op),
                _ => None,
            };
            // An envelope field is decoded only if it is within the value budget by itself.
            if let (Some(slot @ None), true) = (slot, value.values <= MAX_ELEMENTS) {
                let mut value = &frame[key_end..value_end];
                *slot = Some(read_value(&mut value).map_err(|e| e.to_string())?);
            }
            pos = value_end;
        }
        Ok(head)
    }
}

fn args_from_bytes<T: DeserializeOwned>(op: Op, frame: &[u8]) -> Result<T, ProtoError> {
    let mut de = rmp_serde::Deserializer::from_read_ref(frame);
    de.set_max_depth(MAX_NESTING + 1);
    T::deserialize(&mut de).map_err(|e| ProtoError::InvalidArguments {
        op: op.as_str(),
        reason: e.to_string(),
    })
}

/// Decode the arguments of `op` from an encoded request map.
fn request_from_bytes(op: Op, frame: &[u8]) -> Result<Request, ProtoError> {
    let f = frame;
    Ok(match op {
        Op::Health => Request::Health(args_from_bytes::<NoArgs>(op, f)?),
        Op::Spawn => Request::Spawn(args_from_bytes::<SpawnArgs>(op, f)?),
        Op::List => Request::List(args_from_bytes::<ListArgs>(op, f)?),
        Op::Get => Request::Get(args_from_bytes::<AgentArgs>(op, f)?),
        Op::Pause => Request::Pause(args_from_bytes::<AgentArgs>(op, f)?),
        Op::Resume => Request::Resume(args_from_bytes::<AgentArgs>(op, f)?),
        Op::Stop => Request::Stop(args_from_bytes::<StopArgs>(op, f)?),
        Op::Kill => Request::Kill(args_from_bytes::<AgentArgs>(op, f)?),
        Op::Signal => Request::Signal(args_from_bytes::<SignalArgs>(op, f)?),
        Op::WriteStdin => Request::WriteStdin(args_from_bytes::<WriteStdinArgs>(op, f)?),
        Op::CloseStdin => Request::CloseStdin(args_from_bytes::<AgentArgs>(op, f)?),
        Op::ReadLogs => Request::ReadLogs(args_from_bytes::<ReadLogsArgs>(op, f)?),
        Op::StreamInfo => Request::StreamInfo(args_from_bytes::<StreamInfoArgs>(op, f)?),
        Op::Wait => Request::Wait(args_from_bytes::<WaitArgs>(op, f)?),
        Op::Remove => Request::Remove(args_from_bytes::<AgentArgs>(op, f)?),
        Op::Batch => Request::Batch(args_from_bytes::<BatchArgs>(op, f)?),
        Op::Stats => Request::Stats(args_from_bytes::<NoArgs>(op, f)?),
        Op::ReadEvents => Request::ReadEvents(args_from_bytes::<ReadEventsArgs>(op, f)?),
    })
}

fn args<T: DeserializeOwned>(op: Op, value: rmpv::Value) -> Result<T, ProtoError> {
    from_value(&value).map_err(|reason| ProtoError::InvalidArguments {
        op: op.as_str(),
        reason,
    })
}

/// Deserialize a typed message from a decoded value.
///
/// This goes back through bytes and `rmp_serde` on purpose: `rmpv::ext::from_value` cannot read
/// a unit enum variant written as a string (`"running"`, `"stdout"`, `"pipe"`, `"not_found"`),
/// which is how every enum is written on the wire.
fn from_value<T: DeserializeOwned>(value: &rmpv::Value) -> Result<T, String> {
    let mut bytes = Vec::new();
    rmpv::encode::write_value(&mut bytes, value).map_err(|e| e.to_string())?;
    rmp_serde::from_slice(&bytes).map_err(|e| e.to_string())
}

/// Decode the arguments of `op` from a request map (envelope keys are ignored).
pub fn request_from_value(op: Op, value: rmpv::Value) -> Result<Request, ProtoError> {
    Ok(match op {
        Op::Health => Request::Health(args::<NoArgs>(op, value)?),
        Op::Spawn => Request::Spawn(args::<SpawnArgs>(op, value)?),
        Op::List => Request::List(args::<ListArgs>(op, value)?),
        Op::Get => Request::Get(args::<AgentArgs>(op, value)?),
        Op::Pause => Request::Pause(args::<AgentArgs>(op, value)?),
        Op::Resume => Request::Resume(args::<AgentArgs>(op, value)?),
        Op::Stop => Request::Stop(args::<StopArgs>(op, value)?),
        Op::Kill => Request::Kill(args::<AgentArgs>(op, value)?),
        Op::Signal => Request::Signal(args::<SignalArgs>(op, value)?),
        Op::WriteStdin => Request::WriteStdin(args::<WriteStdinArgs>(op, value)?),
        Op::CloseStdin => Request::CloseStdin(args::<AgentArgs>(op, value)?),
        Op::ReadLogs => Request::ReadLogs(args::<ReadLogsArgs>(op, value)?),
        Op::StreamInfo => Request::StreamInfo(args::<StreamInfoArgs>(op, value)?),
        Op::Wait => Request::Wait(args::<WaitArgs>(op, value)?),
        Op::Remove => Request::Remove(args::<AgentArgs>(op, value)?),
        Op::Batch => Request::Batch(args::<BatchArgs>(op, value)?),
        Op::Stats => Request::Stats(args::<NoArgs>(op, value)?),
        Op::ReadEvents => Request::ReadEvents(args::<ReadEventsArgs>(op, value)?),
    })
}

/// Encode a request with its envelope: `{"v": 1, "id": id, "op": ..., ...arguments}`.
pub fn encode_request(id: &rmpv::Value, request: &Request) -> Result<Vec<u8>, ProtoError> {
    let body = match request {
        Request::Health(a) | Request::Stats(a) => encode(a)?,
        Request::Spawn(a) => encode(a)?,
        Request::List(a) => encode(a)?,
        Request::Get(a)
        | Request::Pause(a)
        | Request::Resume(a)
        | Request::Kill(a)
        | Request::CloseStdin(a)
        | Request::Remove(a) => encode(a)?,
        Request::Stop(a) => encode(a)?,
        Request::Signal(a) => encode(a)?,
        Request::WriteStdin(a) => encode(a)?,
        Request::ReadLogs(a) => encode(a)?,
        Request::StreamInfo(a) => encode(a)?,
        Request::Wait(a) => encode(a)?,
        Request::Batch(a) => encode(a)?,
        Request::ReadEvents(a) => encode(a)?,
    };
    let op = rmpv::Value::from(request.op().as_str());
    splice(&[("id", id), ("op", &op)], &body)
}

/// The body of a reply: a result map or an error.
#[derive(Debug)]
pub enum ReplyBody<'a, R> {
    /// `ok: true` and the result's fields.
    Ok(&'a R),
    /// `ok: false` and `error`.
    Err(&'a ErrorBody),
}

/// Encode a reply with its envelope: `{"v": 1, "id": id, "ok": true, ...result}` or
/// `{"v": 1, "id": id, "ok": false, "error": {...}}`.
pub fn encode_reply<R: Serialize>(
    id: &rmpv::Value,
    body: ReplyBody<'_, R>,
) -> Result<Vec<u8>, ProtoError> {
    match body {
        ReplyBody::Ok(result) => {
            let fields = encode(result)?;
            splice(&[("id", id), ("ok", &rmpv::Value::Boolean(true))], &fields)
        }
        ReplyBody::Err(error) => {
            #[derive(Serialize)]
            struct ErrorFields<'e> {
                error: &'e ErrorBody,
            }
            let fields = encode(&ErrorFields { error })?;
            splice(&[("id", id), ("ok", &rmpv::Value::Boolean(false))], &fields)
        }
    }
}

/// Decode a reply body: the result on `ok: true`, the error body on `ok: false`.
pub fn decode_reply<R: DeserializeOwned>(
    frame: &[u8],
    max: usize,
) -> Result<(rmpv::Value, Result<R, ErrorBody>), ProtoError> {
    /// The envelope keys; everything else is skipped without being built.
    #[derive(Deserialize)]
    struct Head {
        #[serde(default)]
        id: Option<rmpv::Value>,
        ok: Option<bool>,
    }
    /// The error side of a reply.
    #[derive(Deserialize)]
    struct ErrorFields {
        error: ErrorBody,
    }
    check_size(frame, max)?;
    // Two passes over the bytes (the envelope, then the result), no intermediate value tree:
    // replies carry up to thousands of records. The envelope pass steps over the other values
    // by their headers; serde's pass (kept for any frame that pass does not take) decoded every
    // key of every record only to skip it.
    let head = match envelope(frame) {
        Some((id, ok)) => Head { id, ok },
        None => decode_with_depth(frame).map_err(|e| ProtoError::Malformed(e.to_string()))?,
    };
    match head.ok {
        Some(true) => {
            let result = decode_with_depth(frame)
                .map_err(|e| ProtoError::Malformed(format!("reply result: {e}")))?;
            Ok((head.id.unwrap_or(rmpv::Value::Nil), Ok(result)))
        }
        Some(false) => {
            let fields: ErrorFields = decode_with_depth(frame)
                .map_err(|e| ProtoError::Malformed(format!("reply error: {e}")))?;
            Ok((head.id.unwrap_or(rmpv::Value::Nil), Err(fields.error)))
        }
        None => Err(ProtoError::Malformed("reply without a boolean `ok`".into())),
    }
}

/// A reply's `id` and `ok`, reading only them: other values are stepped over by their
/// headers ([`shape::value_at`]). `None` for any frame it does not take as simply (a key that
/// is not a string, `id` or `ok` twice, a malformed value), which serde's pass then decides.
fn envelope(frame: &[u8]) -> Option<(Option<rmpv::Value>, Option<bool>)> {
    let mut rest = frame;
    let entries = rmp::decode::read_map_len(&mut rest).ok()?;
    let (mut id, mut ok) = (None, None);
    for _ in 0..entries {
        let len = rmp::decode::read_str_len(&mut rest).ok()? as usize;
        let key = rest.get(..len)?;
        rest = &rest[len..];
        match key {
            b"id" if id.is_none() => id = Some(read_value(&mut rest).ok()?),
            b"ok" if ok.is_none() => ok = Some(rmp::decode::read_bool(&mut rest).ok()?),
            b"id" | b"ok" => return None,
            _ => {
                let at = frame.len() - rest.len();
                let end = shape::value_at(frame, at).ok()?.end;
                rest = &frame[end..];
            }
        }
    }
    Some((id, ok))
}

/// Deserialize a whole frame with the nesting limit.
fn decode_with_depth<T: DeserializeOwned>(frame: &[u8]) -> Result<T, rmp_serde::decode::Error> {
    let mut de = rmp_serde::Deserializer::from_read_ref(frame);
    de.set_max_depth(MAX_NESTING + 1);
    T::deserialize(&mut de)
}

/// Write `{"v": 1, head..., fields...}` where `fields` is an encoded map.
fn splice(head: &[(&str, &rmpv::Value)], fields: &[u8]) -> Result<Vec<u8>, ProtoError> {
    let mut rest = fields;
    let count = rmp::decode::read_map_len(&mut rest)
        .map_err(|e| ProtoError::Malformed(format!("encoded body is not a map: {e}")))?;
    let total = count + 1 + u32::try_from(head.len()).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(fields.len() + 32);
    let io = |e: std::io::Error| ProtoError::Malformed(e.to_string());
    rmp::encode::write_map_len(&mut out, total).map_err(|e| io(e.into()))?;
    rmp::encode::write_str(&mut out, "v").map_err(|e| io(e.into()))?;
    rmp::encode::write_uint(&mut out, u64::from(PROTOCOL_VERSION)).map_err(|e| io(e.into()))?;
    for (key, value) in head {
        rmp::encode::write_str(&mut out, key).map_err(|e| io(e.into()))?;
        rmpv::encode::write_value(&mut out, value).map_err(|e| io(e.into()))?;
    }
    out.extend_from_slice(rest);
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Record, Seq, StreamKind};

    #[derive(Debug, PartialEq, Serialize, Deserialize)]
    struct Page {
        records: Vec<Record>,
        next_seq: Seq,
    }

    /// The envelope pass reads what serde's pass reads, and leaves to it what it does not take.
    #[test]
    fn the_envelope_pass_agrees_with_serde() {
        let page = Page {
            records: (1..=50)
                .map(|i| Record {
                    seq: Seq(i),
                    ts: i as i64,
                    stream: StreamKind::Stdout,
                    data: format!("line {i}\n").into_bytes(),
                    partial: false,
                })
                .collect(),
            next_seq: Seq(51),
        };
        let id = rmpv::Value::Map(vec![("n".into(), 7.into())]);
        let ok = encode_reply(&id, ReplyBody::Ok(&page)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(envelope(&ok), Some((Some(id.clone()), Some(true))));
        let (got_id, result) =
            decode_reply::<Page>(&ok, usize::MAX).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((got_id, result.ok()), (id.clone(), Some(page)));

        let error = ErrorBody::new(crate::ErrorCode::NotFound, "no such agent");
        let refused =
            encode_reply::<Page>(&id, ReplyBody::Err(&error)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(envelope(&refused), Some((Some(id.clone()), Some(false))));
        let (_, result) =
            decode_reply::<Page>(&refused, usize::MAX).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            result.err().map(|e| e.code),
            Some(crate::ErrorCode::NotFound)
        );

        // Shapes it leaves to serde: `ok` twice (serde refuses it), an integer key, a cut frame.
        let twice = rmpv::Value::Map(vec![("ok".into(), true.into()), ("ok".into(), true.into())]);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &twice).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(envelope(&bytes), None);
        assert!(decode_reply::<Page>(&bytes, usize::MAX).is_err());
        let odd = rmpv::Value::Map(vec![(1.into(), true.into()), ("ok".into(), false.into())]);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &odd).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(envelope(&bytes), None);
        for cut in 0..ok.len() {
            assert!(
                decode_reply::<Page>(&ok[..cut], usize::MAX).is_err(),
                "cut at {cut}"
            );
        }
    }
}
