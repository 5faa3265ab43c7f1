//! Log records as JSON: `{seq, ts, stream, text | data_b64, partial}`.
//!
//! JSON has no byte strings, so a record whose bytes are valid UTF-8 carries them as `text`, and
//! any other record as `data_b64` (standard base64, padded). Either way the bytes are exact,
//! trailing newline included.

use base64::Engine;
use drover_proto::op::ReadLogsResult;
use drover_proto::{Record, Seq};
use serde::Serialize;

/// One record, borrowed for serialisation.
#[derive(Debug, Serialize)]
pub(crate) struct RecordJson<'a> {
    seq: Seq,
    ts: i64,
    stream: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    text: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    data_b64: Option<String>,
    partial: bool,
}

impl<'a> From<&'a Record> for RecordJson<'a> {
    fn from(record: &'a Record) -> Self {
        let text = std::str::from_utf8(&record.data).ok();
        let data_b64 = match text {
            Some(_) => None,
            None => Some(base64::engine::general_purpose::STANDARD.encode(&record.data)),
        };
        RecordJson {
            seq: record.seq,
            ts: record.ts,
            stream: record.stream.as_str(),
            text,
            data_b64,
            partial: record.partial,
        }
    }
}

/// Append one record's JSON to `out` (no newline).
pub(crate) fn write(out: &mut Vec<u8>, record: &Record) {
    // Serialising plain fields into a Vec cannot fail.
    let _ = serde_json::to_writer(&mut *out, &RecordJson::from(record));
}

/// A `read_logs` result as JSON.
#[derive(Debug, Serialize)]
pub(crate) struct ReadLogsJson<'a> {
    records: Vec<RecordJson<'a>>,
    first_seq: Seq,
    next_seq: Seq,
    truncated: bool,
    end_seq: Seq,
    output_bytes: u64,
    disk_bytes: u64,
}

impl<'a> From<&'a ReadLogsResult> for ReadLogsJson<'a> {
    fn from(read: &'a ReadLogsResult) -> Self {
        ReadLogsJson {
            records: read.records.iter().map(RecordJson::from).collect(),
            first_seq: read.first_seq,
            next_seq: read.next_seq,
            truncated: read.truncated,
            end_seq: read.end_seq,
            output_bytes: read.output_bytes,
            disk_bytes: read.disk_bytes,
        }
    }
}
