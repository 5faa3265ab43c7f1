//! The holder's wire: length-prefixed MessagePack maps over a unix stream socket.
//!
//! Every frame is a 4-byte big-endian length followed by that many bytes of one MessagePack map
//! with a `"t"` key naming the message. The daemon speaks first on every connection with
//! [`ToHolder::Hello`], whose shape is frozen for all versions, so any holder can read it and
//! answer [`FromHolder::Welcome`] (a version both speak) or [`FromHolder::Refused`]. See
//! `docs/ARCHITECTURE.md` ("Holders") for the whole exchange.

use std::io::{Read, Write};

use serde::{Deserialize, Serialize};

use crate::Status;

/// The protocol this build speaks. Version 2 added [`ToHolder::Recycle`] and
/// [`StartSpec::dir`]; a daemon sends neither to a holder that chose version 1.
pub const PROTOCOL_VERSION: u32 = 2;
/// The oldest protocol this build still speaks (a holder of an older build is re-attached
/// as long as its version is at least this).
pub const MIN_PROTOCOL_VERSION: u32 = 1;
/// Largest frame either side accepts: a batch of records is cut well below it.
pub const MAX_FRAME: usize = 8 * 1024 * 1024;

/// The environment variable every agent process is started with (the daemon sets it to the
/// agent's id). The daemon also finds an agent's stray processes by it after its holder died.
pub const AGENT_ENV: &str = "DROVER_AGENT_ID";

/// What to run: sent once, in [`ToHolder::Start`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StartSpec {
    pub program: String,
    pub args: Vec<String>,
    /// Overrides on top of the holder's inherited environment (the daemon's).
    pub env: Vec<(String, String)>,
    pub cwd: Option<String>,
    /// A pipe fed by [`ToHolder::Stdin`] (else `/dev/null`).
    pub stdin_pipe: bool,
    /// Seq of the first record.
    pub first_seq: u64,
    pub max_record: u64,
    pub partial_flush_ms: u64,
    /// Wall-clock limit; when reached the agent is stopped with `runtime_grace_ms`.
    pub max_runtime_ms: Option<u64>,
    pub runtime_grace_ms: u64,
    /// How long after the main process is reaped the pipes are still read.
    pub drain_timeout_ms: u64,
    /// Bytes of records the spool keeps unacknowledged before the holder stops reading the
    /// agent's output (the agent then blocks on a full pipe: backpressure, never loss).
    pub spool_limit: u64,
    /// The signal a stop sends first (SIGTERM when a daemon of an older build leaves it out).
    #[serde(default = "sigterm")]
    pub stop_signal: i32,
    /// Where the holder's directory is now, when the daemon moved it before this start: a
    /// holder made ready ahead waits in `holders.ready/` and is renamed into the agent's
    /// directory by the spawn that takes it. Absent: it did not move.
    #[serde(default)]
    pub dir: Option<String>,
}

fn sigterm() -> i32 {
    libc::SIGTERM
}

/// A control operation, applied by the holder exactly as the in-process supervisor would.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    Pause,
    Resume,
    Stop { grace_ms: u64 },
    Kill,
    Signal { signal: i32 },
}

impl Op {
    /// The operation's name in errors (`cannot stop an agent that is exited`).
    pub fn name(self) -> &'static str {
        match self {
            Op::Pause => "pause",
            Op::Resume => "resume",
            Op::Stop { .. } => "stop",
            Op::Kill => "kill",
            Op::Signal { .. } => "signal",
        }
    }
}

/// Daemon to holder.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum ToHolder {
    /// First on every connection. `resume_from` is the first seq the daemon does not have.
    Hello {
        version: u32,
        min_version: u32,
        resume_from: u64,
    },
    /// Start the agent (only once, on a holder that has not started one).
    Start { spec: StartSpec },
    /// Every record up to `through` is stored: the spool may forget them.
    Ack { through: u64 },
    /// Apply an operation; answered by one [`FromHolder::Reply`], in order.
    Op { op: Op },
    /// Bytes for the agent's stdin; the holder reports them with `StdinWritten` once written.
    Stdin {
        #[serde(with = "serde_bytes")]
        data: Vec<u8>,
    },
    /// Close stdin once the bytes already sent are written.
    CloseStdin,
    /// The agent's end is recorded: remove the spool and socket and exit.
    Release,
    /// (Version 2.) The agent's end is recorded and the daemon moved this holder's directory
    /// to `dir`: forget the agent and its spool and be a new holder there, answering with a
    /// [`FromHolder::Welcome`] (status `starting`) that marks where the new holder's frames
    /// begin; a [`ToHolder::Start`] may follow on the same connection. Refused like
    /// `Release` before the agent ended; a holder that has held [`MAX_USES`] agents exits
    /// instead, as on `Release`.
    Recycle { dir: String },
}

/// Agents one holder process holds, one after another, before it exits rather than being
/// recycled (bounds what a long-lived holder's memory can gather).
pub const MAX_USES: u32 = 256;

/// One record as it crosses the wire and sits in the spool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WireRecord {
    pub seq: u64,
    pub ts: i64,
    /// 1 = stdout, 2 = stderr.
    pub stream: u8,
    #[serde(with = "serde_bytes")]
    pub data: Vec<u8>,
    pub partial: bool,
}

/// Why an operation was refused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OpError {
    InvalidState { op: String, state: String },
    InvalidSignal { signal: i32 },
    Signal { signal: i32, pgid: u32, errno: i32 },
}

/// Holder to daemon.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum FromHolder {
    /// The answer to `Hello`: the version chosen, the holder's pid, the agent's status
    /// (`starting` before `Start`), and the next seq it will number.
    Welcome {
        version: u32,
        holder_pid: u32,
        status: Status,
        next_seq: u64,
        /// The first seq the spool still holds (records before it were acknowledged).
        first_kept: u64,
        /// The agent's `max_runtime` stopped it (a daemon that was away learns it here). Left
        /// out when false, and false when absent (a holder from before it was added).
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        timed_out: bool,
    },
    /// No version in common: the holder keeps its agent and waits for another daemon.
    Refused {
        version: u32,
        message: String,
    },
    /// Consecutive records, in seq order, none twice on one connection.
    Records {
        records: Vec<WireRecord>,
    },
    /// A status change; the terminal one comes after every record.
    Status {
        status: Status,
    },
    Reply {
        result: Result<Status, OpError>,
    },
    /// Bytes of stdin written to the agent (credit for more).
    StdinWritten {
        bytes: u64,
    },
    /// The agent's stdin is closed (it exited or closed it): further bytes are refused.
    StdinClosed,
}

/// Why a frame could not be read or written.
#[derive(thiserror::Error, Debug)]
#[non_exhaustive]
pub enum WireError {
    #[error("peer closed the connection")]
    Closed,
    #[error("frame of {0} bytes exceeds the {MAX_FRAME}-byte limit")]
    TooLarge(usize),
    #[error("malformed frame: {0}")]
    Decode(#[source] rmp_serde::decode::Error),
    #[error("encoding a frame failed")]
    Encode(#[source] rmp_serde::encode::Error),
    #[error("socket I/O failed")]
    Io(#[source] std::io::Error),
}

/// Appends one frame holding `message` to `out`.
pub fn encode<T: Serialize>(message: &T, out: &mut Vec<u8>) -> Result<(), WireError> {
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    rmp_serde::encode::write_named(out, message).map_err(WireError::Encode)?;
    let len = out.len() - start - 4;
    let len32 = u32::try_from(len).map_err(|_| WireError::TooLarge(len))?;
    out[start..start + 4].copy_from_slice(&len32.to_be_bytes());
    Ok(())
}

/// Appends one `records` frame holding `records` (none: nothing) to `out`: the bytes
/// [`encode`] writes for [`FromHolder::Records`], without going through serde.
pub fn encode_records(records: &[WireRecord], out: &mut Vec<u8>) -> Result<(), WireError> {
    use rmp::encode::{write_array_len, write_bin, write_bool, write_map_len, write_sint};
    use rmp::encode::{write_str, write_uint};
    if records.is_empty() {
        return Ok(());
    }
    let start = out.len();
    out.extend_from_slice(&[0; 4]);
    let count = u32::try_from(records.len()).map_err(|_| WireError::TooLarge(records.len()))?;
    // Writing to a Vec cannot fail; these keep the types honest.
    let value = |e: rmp::encode::ValueWriteError| WireError::Io(std::io::Error::other(e));
    let io = WireError::Io;
    write_map_len(out, 2).map_err(value)?;
    write_str(out, "t").map_err(value)?;
    write_str(out, "records").map_err(value)?;
    write_str(out, "records").map_err(value)?;
    write_array_len(out, count).map_err(value)?;
    for r in records {
        write_map_len(out, 5).map_err(value)?;
        write_str(out, "seq").map_err(value)?;
        write_uint(out, r.seq).map_err(value)?;
        write_str(out, "ts").map_err(value)?;
        write_sint(out, r.ts).map_err(value)?;
        write_str(out, "stream").map_err(value)?;
        write_uint(out, u64::from(r.stream)).map_err(value)?;
        write_str(out, "data").map_err(value)?;
        write_bin(out, &r.data).map_err(value)?;
        write_str(out, "partial").map_err(value)?;
        write_bool(out, r.partial).map_err(io)?;
    }
    let len = out.len() - start - 4;
    let len32 = u32::try_from(len).map_err(|_| WireError::TooLarge(len))?;
    out[start..start + 4].copy_from_slice(&len32.to_be_bytes());
    Ok(())
}

/// Takes one whole frame off the front of `buf`, if one is there.
pub fn decode<T: for<'de> Deserialize<'de>>(buf: &mut Vec<u8>) -> Result<Option<T>, WireError> {
    let Some(len) = frame_len(buf)? else {
        return Ok(None);
    };
    let message = rmp_serde::from_slice(&buf[4..4 + len]).map_err(WireError::Decode);
    buf.drain(..4 + len);
    message.map(Some)
}

/// Takes one whole [`FromHolder`] frame off the front of `buf`, if one is there: what
/// [`decode`] does, with a direct path for `records`, the one frame that carries output.
///
/// `FromHolder` is internally tagged, so serde's derived decoding first copies the whole frame
/// (every record's bytes included) into an intermediate tree; on a fast agent that copy was
/// about 45 % of the daemon's CPU. Encoders write the tag first, so a `records` frame is
/// `{"t": "records", "records": [...]}` and its records decode straight into
/// [`WireRecord`]s. Any other shape or order takes the derived path: the wire is unchanged.
pub fn decode_from_holder(buf: &mut Vec<u8>) -> Result<Option<FromHolder>, WireError> {
    let Some(len) = frame_len(buf)? else {
        return Ok(None);
    };
    let body = &buf[4..4 + len];
    let message = match records_frame(body) {
        Some(records) => Ok(FromHolder::Records { records }),
        None => rmp_serde::from_slice(body).map_err(WireError::Decode),
    };
    buf.drain(..4 + len);
    message.map(Some)
}

/// The records of a frame shaped exactly `{"t": "records", "records": [...]}`, else `None`.
fn records_frame(body: &[u8]) -> Option<Vec<WireRecord>> {
    let mut rest = body;
    if rmp::decode::read_map_len(&mut rest).ok()? != 2 {
        return None;
    }
    for expected in [&b"t"[..], b"records", b"records"] {
        key(&mut rest, expected)?;
    }
    let count = rmp::decode::read_array_len(&mut rest).ok()? as usize;
    // A record takes at least 30 bytes: a huge count in a short frame fails here rather than
    // reserving memory for it.
    if count > rest.len() / 30 {
        return None;
    }
    let mut records = Vec::with_capacity(count);
    for _ in 0..count {
        records.push(wire_record(&mut rest)?);
    }
    // Trailing bytes are ignored, as the derived path ignores them.
    Some(records)
}

/// One record written as `{"seq", "ts", "stream", "data", "partial"}` (the derived order).
fn wire_record(rest: &mut &[u8]) -> Option<WireRecord> {
    if rmp::decode::read_map_len(rest).ok()? != 5 {
        return None;
    }
    key(rest, b"seq")?;
    let seq = rmp::decode::read_int(rest).ok()?;
    key(rest, b"ts")?;
    let ts = rmp::decode::read_int(rest).ok()?;
    key(rest, b"stream")?;
    let stream = rmp::decode::read_int(rest).ok()?;
    key(rest, b"data")?;
    let len = rmp::decode::read_bin_len(rest).ok()? as usize;
    let data = rest.get(..len)?.to_vec();
    *rest = &rest[len..];
    key(rest, b"partial")?;
    let partial = rmp::decode::read_bool(rest).ok()?;
    Some(WireRecord {
        seq,
        ts,
        stream,
        data,
        partial,
    })
}

/// Consume a string, which must be `expected`.
fn key(rest: &mut &[u8], expected: &[u8]) -> Option<()> {
    let len = rmp::decode::read_str_len(rest).ok()? as usize;
    if rest.get(..len)? != expected {
        return None;
    }
    *rest = &rest[len..];
    Some(())
}

/// The length of the frame at the front of `buf` if it is complete.
fn frame_len(buf: &[u8]) -> Result<Option<usize>, WireError> {
    let Some(header) = buf.first_chunk::<4>() else {
        return Ok(None);
    };
    let len = u32::from_be_bytes(*header) as usize;
    if len > MAX_FRAME {
        return Err(WireError::TooLarge(len));
    }
    Ok((buf.len() >= 4 + len).then_some(len))
}

/// Blocking write of one frame (the spawner and tests use blocking sockets).
pub fn write_frame<T: Serialize>(w: &mut impl Write, message: &T) -> Result<(), WireError> {
    let mut out = Vec::new();
    encode(message, &mut out)?;
    w.write_all(&out).map_err(WireError::Io)
}

/// Blocking read of one frame.
pub fn read_frame<T: for<'de> Deserialize<'de>>(r: &mut impl Read) -> Result<T, WireError> {
    let mut header = [0u8; 4];
    r.read_exact(&mut header).map_err(|e| match e.kind() {
        std::io::ErrorKind::UnexpectedEof => WireError::Closed,
        _ => WireError::Io(e),
    })?;
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME {
        return Err(WireError::TooLarge(len));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).map_err(WireError::Io)?;
    rmp_serde::from_slice(&body).map_err(WireError::Decode)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_round_trip_and_wait_for_completion() {
        let hello = ToHolder::Hello {
            version: 1,
            min_version: 1,
            resume_from: 7,
        };
        let mut buf = Vec::new();
        encode(&hello, &mut buf).unwrap_or_else(|e| panic!("{e}"));
        let whole = buf.clone();
        buf.truncate(whole.len() - 1);
        assert_eq!(decode::<ToHolder>(&mut buf).ok().flatten(), None);
        let mut buf = whole;
        assert_eq!(decode::<ToHolder>(&mut buf).ok().flatten(), Some(hello));
        assert!(buf.is_empty());
    }

    #[test]
    fn holder_frames_decode_alike_on_the_direct_path_and_the_derived_one() {
        let record = |seq: u64, data: &[u8]| WireRecord {
            seq,
            ts: 1_700_000_000_000_000_000 + seq as i64,
            stream: 1 + (seq % 2) as u8,
            data: data.to_vec(),
            partial: seq == 3,
        };
        let records = FromHolder::Records {
            records: vec![
                record(1, b"one\n"),
                record(2, b"\xff\x00 bytes\n"),
                record(3, b""),
            ],
        };
        let others = [
            FromHolder::Records { records: vec![] },
            FromHolder::Status {
                status: Status::Starting,
            },
            FromHolder::StdinWritten { bytes: 9 },
            FromHolder::StdinClosed,
        ];
        let mut buf = Vec::new();
        for message in std::iter::once(&records).chain(&others) {
            encode(message, &mut buf).unwrap_or_else(|e| panic!("{e}"));
        }
        let body = buf[4..].to_vec();
        assert!(
            records_frame(&body).is_some(),
            "records take the direct path"
        );
        let FromHolder::Records { records: list } = &records else {
            unreachable!()
        };
        let mut direct = Vec::new();
        encode_records(list, &mut direct).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(
            direct[..],
            buf[..direct.len()],
            "the direct encoder writes serde's bytes"
        );
        for message in std::iter::once(&records).chain(&others) {
            let decoded = decode_from_holder(&mut buf).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(decoded.as_ref(), Some(message));
        }
        assert!(buf.is_empty());

        // The same frame with its keys the other way round, as another encoder may write it:
        // the derived path decodes it.
        let mut reordered = Vec::new();
        rmp::encode::write_map_len(&mut reordered, 2).unwrap_or_else(|e| panic!("{e}"));
        rmp::encode::write_str(&mut reordered, "records").unwrap_or_else(|e| panic!("{e}"));
        rmp_serde::encode::write_named(&mut reordered, list).unwrap_or_else(|e| panic!("{e}"));
        rmp::encode::write_str(&mut reordered, "t").unwrap_or_else(|e| panic!("{e}"));
        rmp::encode::write_str(&mut reordered, "records").unwrap_or_else(|e| panic!("{e}"));
        assert!(records_frame(&reordered).is_none());
        let mut framed = (reordered.len() as u32).to_be_bytes().to_vec();
        framed.extend_from_slice(&reordered);
        let decoded = decode_from_holder(&mut framed).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(decoded, Some(records));

        // A records frame whose records are ill-typed is an error, not a panic or a guess.
        let mut bad = Vec::new();
        rmp::encode::write_map_len(&mut bad, 2).unwrap_or_else(|e| panic!("{e}"));
        for text in ["t", "records", "records"] {
            rmp::encode::write_str(&mut bad, text).unwrap_or_else(|e| panic!("{e}"));
        }
        rmp::encode::write_array_len(&mut bad, 1).unwrap_or_else(|e| panic!("{e}"));
        rmp::encode::write_str(&mut bad, "not a record").unwrap_or_else(|e| panic!("{e}"));
        let mut framed = (bad.len() as u32).to_be_bytes().to_vec();
        framed.extend_from_slice(&bad);
        assert!(matches!(
            decode_from_holder(&mut framed),
            Err(WireError::Decode(_))
        ));
    }

    #[test]
    fn oversize_frames_are_refused_before_decoding() {
        let mut buf = ((MAX_FRAME + 1) as u32).to_be_bytes().to_vec();
        assert!(matches!(
            decode::<ToHolder>(&mut buf),
            Err(WireError::TooLarge(_))
        ));
    }
}
