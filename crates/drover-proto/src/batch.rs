//! A direct codec for [`RecordBatch`], the message every live follower decodes once per batch of
//! output.
//!
//! The bytes are exactly what [`crate::encode`] writes (a named map: `{"agent": str, "records":
//! [{"seq", "ts", "stream", "data", "partial"}, ...]}`), so nothing on the wire changes. Going
//! through serde costs a string decode and UTF-8 check per key and a visitor call per field:
//! with 100-byte lines that was most of a follower's CPU. [`decode_batch`] takes the shape
//! [`crate::encode`] writes directly and hands anything else (other key orders, extra or missing
//! keys, another encoder's integer widths are fine) to the serde path, which accepts or refuses
//! it as before.

use crate::{AgentId, ProtoError, Record, RecordBatch, Seq, StreamKind};

/// Encode a batch, byte for byte as [`crate::encode`] would.
pub fn encode_batch(batch: &RecordBatch) -> Vec<u8> {
    let data: usize = batch.records.iter().map(|r| r.data.len()).sum();
    let mut out = Vec::with_capacity(64 + data + 48 * batch.records.len());
    // Writing to a Vec cannot fail.
    let _ = write_batch(&mut out, batch);
    out
}

fn write_batch(out: &mut Vec<u8>, batch: &RecordBatch) -> Option<()> {
    use rmp::encode::{write_array_len, write_bin, write_bool, write_map_len, write_sint};
    use rmp::encode::{write_str, write_uint};
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
    let count = u32::try_from(batch.records.len()).unwrap_or(u32::MAX);
    write_array_len(out, count).ok()?;
    for record in &batch.records {
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
    if rmp::decode::read_map_len(&mut rest).ok()? != 2 {
        return None;
    }
    key(&mut rest, b"agent")?;
    let agent: AgentId = std::str::from_utf8(string(&mut rest)?).ok()?.parse().ok()?;
    key(&mut rest, b"records")?;
    let count = rmp::decode::read_array_len(&mut rest).ok()? as usize;
    // Each record takes at least 30 bytes, so a huge count in a short frame fails here
    // rather than reserving memory for it.
    if count > rest.len() / 30 {
        return None;
    }
    let mut records = Vec::with_capacity(count);
    for _ in 0..count {
        records.push(read_record(&mut rest)?);
    }
    rest.is_empty().then_some(RecordBatch { agent, records })
}

fn read_record(rest: &mut &[u8]) -> Option<Record> {
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
    let data = rest.get(..len)?.to_vec();
    *rest = &rest[len..];
    key(rest, b"partial")?;
    let partial = rmp::decode::read_bool(rest).ok()?;
    Some(Record {
        seq: Seq(seq),
        ts,
        stream,
        data,
        partial,
    })
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
}
