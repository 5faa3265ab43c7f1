//! A direct codec for [`RecordBatch`], the message every live follower decodes once per batch of
//! output, and a direct reader for the records of a `read_logs` reply.
//!
//! The bytes are exactly what [`crate::encode`] writes (a named map: `{"agent": str, "records":
//! [{"seq", "ts", "stream", "data", "partial"}, ...]}`), so nothing on the wire changes. Going
//! through serde costs a string decode and UTF-8 check per key and a visitor call per field:
//! with 100-byte lines that was most of a follower's CPU. [`decode_batch`] takes the shape
//! [`crate::encode`] writes directly and hands anything else (other key orders, extra or missing
//! keys, another encoder's integer widths are fine) to the serde path, which accepts or refuses
//! it as before.

use crate::op::ReadLogsResult;
use crate::{AgentId, ErrorBody, ProtoError, Record, RecordBatch, Seq, StreamKind};

/// Encode a batch, byte for byte as [`crate::encode`] would.
pub fn encode_batch(batch: &RecordBatch) -> Vec<u8> {
    let data: usize = batch.records.iter().map(|r| r.data.len()).sum();
    let mut out = Vec::with_capacity(64 + data + 48 * batch.records.len());
    // Writing to a Vec cannot fail.
    let _ = write_batch(&mut out, batch);
    out
}

fn write_batch(out: &mut Vec<u8>, batch: &RecordBatch) -> Option<()> {
    use rmp::encode::{write_map_len, write_str};
    write_map_len(out, 2).ok()?;
    write_str(out, "agent").ok()?;
    write_str(
        out,
        batch
            .agent
            .as_uuid()
            .hyphenated()
            .encode_lower(&mut uuid::Uuid::encode_buffer()),
    )
    .ok()?;
    write_str(out, "records").ok()?;
    write_records(out, &batch.records)
}

/// An array of records, as serde writes it.
fn write_records(out: &mut Vec<u8>, records: &[Record]) -> Option<()> {
    use rmp::encode::{write_array_len, write_bin, write_bool, write_map_len, write_sint};
    use rmp::encode::{write_str, write_uint};
    let count = u32::try_from(records.len()).unwrap_or(u32::MAX);
    write_array_len(out, count).ok()?;
    for record in records {
        write_map_len(out, 5).ok()?;
        write_str(out, "seq").ok()?;
        write_uint(out, record.seq.0).ok()?;
        write_str(out, "ts").ok()?;
        write_sint(out, record.ts).ok()?;
        write_str(out, "stream").ok()?;
        write_str(out, record.stream.as_str()).ok()?;
        write_str(out, "data").ok()?;
        write_bin(out, &record.data).ok()?;
        write_str(out, "partial").ok()?;
        write_bool(out, record.partial).ok()?;
    }
    Some(())
}

/// Encode a `read_logs` reply, byte for byte as [`crate::encode_reply`] would: the records are
/// written directly into the place serde gives them.
pub fn encode_read_logs_reply(
    id: &rmpv::Value,
    mut result: ReadLogsResult,
) -> Result<Vec<u8>, ProtoError> {
    let records = std::mem::take(&mut result.records);
    let rest = crate::encode_reply(id, crate::ReplyBody::Ok(&result))?;
    // Where serde put the (now empty) array: our own frame, walked key by key.
    let empty_at = value_of(&rest, b"records")
        .ok_or_else(|| ProtoError::Malformed("reply without records".into()))?;
    let data: usize = records.iter().map(|r| r.data.len()).sum();
    let mut out = Vec::with_capacity(rest.len() + data + 48 * records.len());
    out.extend_from_slice(&rest[..empty_at]);
    // Writing to a Vec cannot fail.
    let _ = write_records(&mut out, &records);
    out.extend_from_slice(&rest[empty_at + 1..]);
    Ok(out)
}

/// The offset of the value under `name` in a frame that is a map with string keys.
fn value_of(frame: &[u8], name: &[u8]) -> Option<usize> {
    let mut rest = frame;
    let entries = rmp::decode::read_map_len(&mut rest).ok()?;
    for _ in 0..entries {
        let key = string(&mut rest)?;
        let at = frame.len() - rest.len();
        if key == name {
            return Some(at);
        }
        rest = &frame[crate::shape::value_at(frame, at).ok()?.end..];
    }
    None
}

/// Decode a batch of at most `max` bytes: what [`crate::decode`] returns for the same frame.
pub fn decode_batch(frame: &[u8], max: usize) -> Result<RecordBatch, ProtoError> {
    if frame.len() <= max {
        if let Some(batch) = read_batch(frame) {
            return Ok(batch);
        }
    }
    crate::decode(frame, max)
}

/// The batch when `frame` has exactly the encoder's shape, else `None`.
fn read_batch(frame: &[u8]) -> Option<RecordBatch> {
    let mut rest = frame;
    let agent = read_agent(&mut rest)?;
    let records = read_records(&mut rest)?;
    rest.is_empty().then_some(RecordBatch { agent, records })
}

/// A batch's map header and agent, up to its records.
fn read_agent(rest: &mut &[u8]) -> Option<AgentId> {
    if rmp::decode::read_map_len(rest).ok()? != 2 {
        return None;
    }
    key(rest, b"agent")?;
    let agent: AgentId = std::str::from_utf8(string(rest)?).ok()?.parse().ok()?;
    key(rest, b"records")?;
    Some(agent)
}

/// A batch's agent and the highest seq among its records, read without copying a record: a
/// follower drops a batch it already has (or that its next store read covers) without
/// decoding it. `None` for an empty batch or a frame not in the encoder's shape, which the
/// caller decodes to judge.
pub fn peek_batch(frame: &[u8]) -> Option<(AgentId, Seq)> {
    let mut rest = frame;
    let agent = read_agent(&mut rest)?;
    let count = rmp::decode::read_array_len(&mut rest).ok()?;
    let mut highest: Option<Seq> = None;
    for _ in 0..count {
        let seq = record_parts(&mut rest, |seq, _, _, _, _| seq)?;
        highest = Some(highest.map_or(seq, |h| h.max(seq)));
    }
    let highest = highest?;
    rest.is_empty().then_some((agent, highest))
}

/// An array of records in the encoder's shape.
fn read_records(rest: &mut &[u8]) -> Option<Vec<Record>> {
    let count = rmp::decode::read_array_len(rest).ok()? as usize;
    // Each record takes at least 30 bytes, so a huge count in a short frame fails here
    // rather than reserving memory for it.
    if count > rest.len() / 30 {
        return None;
    }
    let mut records = Vec::with_capacity(count);
    for _ in 0..count {
        records.push(read_record(rest)?);
    }
    Some(records)
}

/// Decode a `read_logs` reply of at most `max` bytes: what [`crate::decode_reply`] returns for
/// it, with the records (nearly all of the frame) read directly.
///
/// The records are read where the `records` key holds them; the rest of the reply, with an
/// empty array in their place, goes through [`crate::decode_reply`] as before. A reply in any
/// other shape goes through it whole.
#[allow(clippy::type_complexity)]
pub fn decode_read_logs_reply(
    frame: &[u8],
    max: usize,
) -> Result<(rmpv::Value, Result<ReadLogsResult, ErrorBody>), ProtoError> {
    if frame.len() <= max {
        if let Some(reply) = read_logs_reply(frame) {
            return Ok(reply);
        }
    }
    crate::decode_reply(frame, max)
}

#[allow(clippy::type_complexity)]
fn read_logs_reply(frame: &[u8]) -> Option<(rmpv::Value, Result<ReadLogsResult, ErrorBody>)> {
    let mut rest = frame;
    let entries = rmp::decode::read_map_len(&mut rest).ok()?;
    for _ in 0..entries {
        let name = string(&mut rest)?;
        let at = frame.len() - rest.len();
        if name == b"records" {
            let records = read_records(&mut rest)?;
            let end = frame.len() - rest.len();
            let mut others = Vec::with_capacity(frame.len() - (end - at) + 1);
            others.extend_from_slice(&frame[..at]);
            others.push(0x90); // an empty array
            others.extend_from_slice(&frame[end..]);
            let (id, result) = crate::decode_reply::<ReadLogsResult>(&others, usize::MAX).ok()?;
            let result = result.map(|mut read| {
                read.records = records;
                read
            });
            return Some((id, result));
        }
        rest = &frame[crate::shape::value_at(frame, at).ok()?.end..];
    }
    None
}

fn read_record(rest: &mut &[u8]) -> Option<Record> {
    record_parts(rest, |seq, ts, stream, data, partial| Record {
        seq,
        ts,
        stream,
        data: data.to_vec(),
        partial,
    })
}

/// One record in the encoder's shape, its fields handed to `make` (its data borrowed).
#[inline(always)]
fn record_parts<T>(
    rest: &mut &[u8],
    make: impl FnOnce(Seq, i64, StreamKind, &[u8], bool) -> T,
) -> Option<T> {
    if rmp::decode::read_map_len(rest).ok()? != 5 {
        return None;
    }
    key(rest, b"seq")?;
    let seq: u64 = rmp::decode::read_int(rest).ok()?;
    key(rest, b"ts")?;
    let ts: i64 = rmp::decode::read_int(rest).ok()?;
    key(rest, b"stream")?;
    let stream = match string(rest)? {
        b"stdout" => StreamKind::Stdout,
        b"stderr" => StreamKind::Stderr,
        _ => return None,
    };
    key(rest, b"data")?;
    let len = rmp::decode::read_bin_len(rest).ok()? as usize;
    let data = rest.get(..len)?;
    *rest = &rest[len..];
    key(rest, b"partial")?;
    let partial = rmp::decode::read_bool(rest).ok()?;
    Some(make(Seq(seq), ts, stream, data, partial))
}

/// Consume a string, which must be `expected`.
fn key(rest: &mut &[u8], expected: &[u8]) -> Option<()> {
    (string(rest)? == expected).then_some(())
}

/// Consume a string's bytes.
fn string<'a>(rest: &mut &'a [u8]) -> Option<&'a [u8]> {
    let len = rmp::decode::read_str_len(rest).ok()? as usize;
    let bytes = rest.get(..len)?;
    *rest = &rest[len..];
    Some(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch(records: u64) -> RecordBatch {
        RecordBatch {
            agent: AgentId::new(),
            records: (1..=records)
                .map(|i| Record {
                    seq: Seq(i * 977),
                    ts: [
                        0,
                        1,
                        -1,
                        -40,
                        200,
                        i64::MAX,
                        i64::MIN,
                        1_700_000_000_000_000_000,
                    ][i as usize % 8],
                    stream: if i % 3 == 0 {
                        StreamKind::Stderr
                    } else {
                        StreamKind::Stdout
                    },
                    data: (0..(i * 37 % 300)).map(|b| (b * i) as u8).collect(),
                    partial: i % 4 == 0,
                })
                .collect(),
        }
    }

    #[test]
    fn encodes_exactly_as_serde_and_decodes_back() {
        for n in [0, 1, 15, 16, 300, 70_000] {
            let batch = batch(n);
            let serde = crate::encode(&batch).unwrap_or_else(|e| panic!("{e}"));
            let direct = encode_batch(&batch);
            assert_eq!(direct, serde, "{n} records");
            assert!(read_batch(&direct).is_some(), "direct path for {n} records");
            let decoded = decode_batch(&direct, usize::MAX).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(decoded, batch);
        }
    }

    #[test]
    fn a_peek_names_the_agent_and_the_first_and_last_seq() {
        for n in [1, 2, 300] {
            let batch = batch(n);
            let frame = encode_batch(&batch);
            assert_eq!(
                peek_batch(&frame),
                Some((batch.agent, Seq(n * 977))),
                "{n} records"
            );
            // A cut frame, or one with bytes after it, is not peeked: decoding judges it.
            assert_eq!(peek_batch(&frame[..frame.len() - 1]), None);
            let mut longer = frame.clone();
            longer.push(0);
            assert_eq!(peek_batch(&longer), None);
        }
        assert_eq!(peek_batch(&encode_batch(&batch(0))), None);
        // Out of order (no daemon sends that, but a follower must not skip on it): the highest.
        let mut shuffled = batch(3);
        shuffled.records.swap(0, 2);
        assert_eq!(
            peek_batch(&encode_batch(&shuffled)),
            Some((shuffled.agent, Seq(3 * 977)))
        );
        assert_eq!(peek_batch(b"\x81"), None);
    }

    #[test]
    fn other_shapes_take_the_serde_path_and_bad_frames_fail_alike() {
        let batch = batch(3);
        // Keys in another order, as another encoder may write them.
        let mut reordered = Vec::new();
        rmp::encode::write_map_len(&mut reordered, 2).unwrap_or_else(|e| panic!("{e}"));
        rmp::encode::write_str(&mut reordered, "records").unwrap_or_else(|e| panic!("{e}"));
        reordered.extend(crate::encode(&batch.records).unwrap_or_else(|e| panic!("{e}")));
        rmp::encode::write_str(&mut reordered, "agent").unwrap_or_else(|e| panic!("{e}"));
        rmp::encode::write_str(&mut reordered, &batch.agent.to_string())
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(read_batch(&reordered).is_none());
        assert_eq!(
            decode_batch(&reordered, usize::MAX).unwrap_or_else(|e| panic!("{e}")),
            batch
        );

        let good = encode_batch(&batch);
        // Over the limit: refused as the serde path refuses it.
        assert!(matches!(
            decode_batch(&good, good.len() - 1),
            Err(ProtoError::TooLarge { .. })
        ));
        // Every truncation and a trailing byte are errors, never a panic or a shorter batch.
        for cut in 0..good.len() {
            assert!(
                decode_batch(&good[..cut], usize::MAX).is_err(),
                "cut at {cut}"
            );
        }
        let mut trailing = good.clone();
        trailing.push(0xc0);
        assert!(read_batch(&trailing).is_none());
        // A count far beyond the bytes there: refused without reserving for it.
        let mut huge = Vec::new();
        rmp::encode::write_map_len(&mut huge, 2).unwrap_or_else(|e| panic!("{e}"));
        rmp::encode::write_str(&mut huge, "agent").unwrap_or_else(|e| panic!("{e}"));
        rmp::encode::write_str(&mut huge, &batch.agent.to_string())
            .unwrap_or_else(|e| panic!("{e}"));
        rmp::encode::write_str(&mut huge, "records").unwrap_or_else(|e| panic!("{e}"));
        rmp::encode::write_array_len(&mut huge, u32::MAX).unwrap_or_else(|e| panic!("{e}"));
        assert!(read_batch(&huge).is_none());
        assert!(decode_batch(&huge, usize::MAX).is_err());
    }

    #[test]
    fn read_logs_replies_decode_alike_on_both_paths() {
        let id = rmpv::Value::from(41);
        let read = ReadLogsResult {
            records: batch(500).records,
            ..crate::decode::<ReadLogsResult>(
                &crate::encode(&serde_json_like_empty()).unwrap_or_else(|e| panic!("{e}")),
                usize::MAX,
            )
            .unwrap_or_else(|e| panic!("{e}"))
        };
        let frame =
            crate::encode_reply(&id, crate::ReplyBody::Ok(&read)).unwrap_or_else(|e| panic!("{e}"));
        assert!(read_logs_reply(&frame).is_some(), "the direct path");
        let direct_bytes =
            encode_read_logs_reply(&id, read.clone()).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            direct_bytes, frame,
            "the direct encoder writes serde's bytes"
        );
        let direct = decode_read_logs_reply(&frame, usize::MAX).unwrap_or_else(|e| panic!("{e}"));
        let serde = crate::decode_reply::<ReadLogsResult>(&frame, usize::MAX)
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(direct, serde);
        assert_eq!(direct.1.as_ref().map(|r| r.records.len()), Ok(500));

        let error = ErrorBody::new(crate::ErrorCode::NotFound, "no such agent");
        let refused = crate::encode_reply::<ReadLogsResult>(&id, crate::ReplyBody::Err(&error))
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(read_logs_reply(&refused).is_none());
        let (_, result) =
            decode_read_logs_reply(&refused, usize::MAX).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            result.err().map(|e| e.code),
            Some(crate::ErrorCode::NotFound)
        );
        // Every cut of a short reply is an error (the long one: every 97th byte).
        let short = ReadLogsResult {
            records: batch(4).records,
            ..read.clone()
        };
        let short = crate::encode_reply(&id, crate::ReplyBody::Ok(&short))
            .unwrap_or_else(|e| panic!("{e}"));
        let cuts = (0..short.len()).chain((0..frame.len()).step_by(97));
        for (cut, whole) in cuts.map(|c| (c, if c < short.len() { &short } else { &frame })) {
            assert!(
                decode_read_logs_reply(&whole[..cut], usize::MAX).is_err(),
                "cut at {cut}"
            );
        }
        assert!(matches!(
            decode_read_logs_reply(&frame, frame.len() - 1),
            Err(ProtoError::TooLarge { .. })
        ));
    }

    /// A `read_logs` result with no records, as a map (the other fields at their simplest).
    fn serde_json_like_empty() -> rmpv::Value {
        rmpv::Value::Map(vec![
            ("records".into(), rmpv::Value::Array(vec![])),
            ("first_seq".into(), 1.into()),
            ("next_seq".into(), 501.into()),
            ("truncated".into(), false.into()),
            ("end_seq".into(), 501.into()),
            ("output_bytes".into(), 1000.into()),
            ("disk_bytes".into(), 900.into()),
        ])
    }
}
