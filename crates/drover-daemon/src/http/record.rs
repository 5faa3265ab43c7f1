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

/// Append one record's JSON to `out` (no newline): the bytes `serde_json` writes for
/// [`RecordJson`], written directly. A follow sends a million of these a second, and serde's
/// byte-at-a-time string escaping was a third of the daemon's time in an SSE follow.
pub(crate) fn write(out: &mut Vec<u8>, record: &Record) {
    out.extend_from_slice(b"{\"seq\":");
    push_u64(out, record.seq.0);
    out.extend_from_slice(b",\"ts\":");
    out.extend_from_slice(itoa::Buffer::new().format(record.ts).as_bytes());
    out.extend_from_slice(b",\"stream\":\"");
    out.extend_from_slice(record.stream.as_str().as_bytes());
    out.extend_from_slice(b"\",");
    if std::str::from_utf8(&record.data).is_ok() {
        out.extend_from_slice(b"\"text\":");
        push_json_str(out, &record.data);
    } else {
        out.extend_from_slice(b"\"data_b64\":\"");
        out.extend_from_slice(
            base64::engine::general_purpose::STANDARD
                .encode(&record.data)
                .as_bytes(),
        );
        out.push(b'"');
    }
    out.extend_from_slice(if record.partial {
        b",\"partial\":true}"
    } else {
        b",\"partial\":false}"
    });
}

/// `n` in decimal.
pub(crate) fn push_u64(out: &mut Vec<u8>, n: u64) {
    out.extend_from_slice(itoa::Buffer::new().format(n).as_bytes());
}

/// Whether any of 8 bytes needs escaping in a JSON string: below 0x20, `"` or `\`. (The
/// classic "has a byte less than n" and "has a zero byte" word tests: exact as a yes/no.)
fn word_needs_escape(word: u64) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let below_space = word.wrapping_sub(ONES * 0x20) & !word;
    let quote = word ^ (ONES * u64::from(b'"'));
    let backslash = word ^ (ONES * u64::from(b'\\'));
    let quote = quote.wrapping_sub(ONES) & !quote;
    let backslash = backslash.wrapping_sub(ONES) & !backslash;
    (below_space | quote | backslash) & HIGH != 0
}

/// `text` (valid UTF-8) as a JSON string, escaped exactly as `serde_json` does: `\"`, `\\`,
/// `\b \f \n \r \t`, other control characters as `\u00xx`; everything else as it is. Runs of
/// bytes that need nothing are found 8 at a time and copied whole.
pub(crate) fn push_json_str(out: &mut Vec<u8>, text: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push(b'"');
    let mut copied = 0;
    let mut at = 0;
    while at < text.len() {
        if let Some(word) = text.get(at..at + 8) {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(word);
            if !word_needs_escape(u64::from_le_bytes(bytes)) {
                at += 8;
                continue;
            }
        }
        let byte = text[at];
        let escape: &[u8] = match byte {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => &[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ],
            _ => {
                at += 1;
                continue;
            }
        };
        out.extend_from_slice(&text[copied..at]);
        out.extend_from_slice(escape);
        at += 1;
        copied = at;
    }
    out.extend_from_slice(&text[copied..]);
    out.push(b'"');
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

#[cfg(test)]
mod tests {
    use drover_proto::{Record, Seq, StreamKind};

    fn record(data: &[u8], ts: i64, stream: StreamKind, partial: bool) -> Record {
        Record {
            seq: Seq(u64::from(data.len() as u32) * 7919 + 1),
            ts,
            stream,
            data: data.to_vec(),
            partial,
        }
    }

    fn assert_as_serde(record: &Record) {
        let mut direct = Vec::new();
        super::write(&mut direct, record);
        let serde = serde_json::to_vec(&super::RecordJson::from(record)).expect("serde");
        assert_eq!(
            String::from_utf8_lossy(&direct),
            String::from_utf8_lossy(&serde),
            "{record:?}"
        );
    }

    #[test]
    fn the_direct_json_is_serdes_byte_for_byte() {
        // Every ASCII byte, alone and at each position of an 8-byte word and across two.
        for byte in 0u8..0x80 {
            for at in 0..17 {
                let mut data = vec![b'a'; 17];
                data[at] = byte;
                assert_as_serde(&record(&data, 1, StreamKind::Stdout, false));
            }
            assert_as_serde(&record(&[byte], 2, StreamKind::Stderr, true));
        }
        let cases: [&[u8]; 9] = [
            b"",
            b"plain line\n",
            b"\"quoted\" and \\back\\slashed\r\n",
            "caf\u{e9} \u{1f980} \u{7f}\u{80}\u{2028}\n".as_bytes(),
            b"\x1b[31mred\x1b[0m\t\x08\x0c\x00",
            b"\xff\xfe not utf-8\n",
            b"\xc3",
            &[b'x'; 100],
            b"{\"type\":\"assistant\",\"message\":{\"content\":[{\"text\":\"a\\nb\"}]}}\n",
        ];
        for data in cases {
            for ts in [0, 1_700_000_000_123_456_789, -5, i64::MIN, i64::MAX] {
                assert_as_serde(&record(data, ts, StreamKind::Stdout, false));
            }
        }
        let mut big = Vec::new();
        super::push_u64(&mut big, u64::MAX);
        assert_eq!(big, b"18446744073709551615");
    }
}
