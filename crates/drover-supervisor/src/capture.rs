//! Splitting a byte stream into records, and the task that drains one pipe.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::observer::{CapturedRecord, Sink, Stream};
use crate::status::unix_nanos;

/// Size of one read. A Linux pipe holds 64 KiB, so one read empties a full pipe.
const READ_BUF: usize = 64 * 1024;

/// Cuts bytes into records: at each `\n` (kept in the record), and at `max` bytes for a longer
/// line (those pieces are `partial`). Holds at most `max - 1` bytes of an unfinished line.
#[derive(Debug)]
pub(crate) struct LineSplitter {
    pending: Vec<u8>,
    max: usize,
}

impl LineSplitter {
    pub(crate) fn new(max: usize) -> Self {
        LineSplitter {
            pending: Vec::new(),
            max: max.max(1),
        }
    }

    /// True if an unfinished line is buffered.
    pub(crate) fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Splits `data`, calling `emit(bytes, partial)` for each finished record.
    pub(crate) fn push(&mut self, mut data: &[u8], mut emit: impl FnMut(Vec<u8>, bool)) {
        while !data.is_empty() {
            let room = self.max - self.pending.len();
            let window = &data[..room.min(data.len())];
            if let Some(i) = find_newline(window) {
                emit(self.take_with(&data[..=i]), false);
                data = &data[i + 1..];
            } else if window.len() == room {
                emit(self.take_with(window), true);
                data = &data[room..];
            } else {
                self.pending.extend_from_slice(window);
                data = &[];
            }
        }
    }

    /// The buffered unfinished line, if any (flushed as `partial`).
    pub(crate) fn flush(&mut self) -> Option<Vec<u8>> {
        self.has_pending()
            .then(|| std::mem::take(&mut self.pending))
    }

    fn take_with(&mut self, tail: &[u8]) -> Vec<u8> {
        if self.pending.is_empty() {
            tail.to_vec()
        } else {
            let mut out = std::mem::take(&mut self.pending);
            out.extend_from_slice(tail);
            out
        }
    }
}

fn find_newline(hay: &[u8]) -> Option<usize> {
    memchr::memchr(b'\n', hay)
}

/// Bytes a reader still takes after being told to stop: the most a pipe can hold.
const DRAIN_AFTER_STOP: usize = 1024 * 1024;
/// After being told to stop, a pipe that stays empty this long is given up.
const DRAIN_IDLE: Duration = Duration::from_millis(50);

/// Drains one pipe until EOF, a read error, or `stop` (the actor's drain timeout), delivering
/// each read's records as one batch and flushing an unfinished line `partial_flush` after its
/// first byte arrived. Never waits on anything but the pipe, so the child never blocks on a full
/// pipe because of us.
pub(crate) async fn run_reader<R: AsyncRead + Unpin>(
    mut pipe: R,
    stream: Stream,
    sink: std::sync::Arc<Sink>,
    max_record: usize,
    partial_flush: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let mut splitter = LineSplitter::new(max_record);
    let mut buf = vec![0u8; READ_BUF];
    let mut pending_since: Option<Instant> = None;
    let record = |data, partial, ts| CapturedRecord {
        seq: 0,
        ts,
        stream,
        data,
        partial,
    };
    // Set once the actor says stop: the bytes we may still read. Whatever the dead process left
    // in the pipe is read (a pipe holds at most 1 MiB); a process that escaped the group and
    // keeps writing is cut off there, or as soon as the pipe stays empty for a moment.
    let mut stopping: Option<usize> = None;
    loop {
        let flush_at = pending_since.map(|t| t + partial_flush);
        if let Some(allowance) = stopping {
            let read = tokio::time::timeout(DRAIN_IDLE, pipe.read(&mut buf)).await;
            let n = match read {
                Ok(Ok(n)) if n > 0 => n,
                _ => break,
            };
            let mut batch = Vec::new();
            let ts = unix_nanos();
            splitter.push(&buf[..n], |data, partial| {
                batch.push(record(data, partial, ts))
            });
            sink.deliver(batch);
            match allowance.checked_sub(n) {
                Some(left) if left > 0 => stopping = Some(left),
                _ => break,
            }
            continue;
        }
        let read = tokio::select! {
            // Stop first: a process that escaped the group may write forever.
            biased;
            _ = stop.changed() => {
                stopping = Some(DRAIN_AFTER_STOP);
                continue;
            }
            r = pipe.read(&mut buf) => r,
            _ = tokio::time::sleep_until(flush_at.unwrap_or_else(Instant::now)), if flush_at.is_some() => {
                if let Some(data) = splitter.flush() {
                    sink.deliver(vec![record(data, true, unix_nanos())]);
                }
                pending_since = None;
                continue;
            }
        };
        let n = match read {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => {
                tracing::warn!(stream = stream.name(), error = %e, "reading child output failed");
                break;
            }
        };
        let ts = unix_nanos();
        let mut batch = Vec::new();
        splitter.push(&buf[..n], |data, partial| {
            batch.push(record(data, partial, ts))
        });
        pending_since = idle_since(pending_since, !batch.is_empty(), splitter.has_pending());
        sink.deliver(batch);
    }
    if let Some(data) = splitter.flush() {
        sink.deliver(vec![record(data, true, unix_nanos())]);
    }
}

/// When the buffered unfinished line started, after a read: its bytes arrived now if the read
/// finished a record (what was pending before went out with it), else it is the same line as
/// before and keeps its start. A line completed in between never lends its start to the next.
fn idle_since(before: Option<Instant>, emitted: bool, pending: bool) -> Option<Instant> {
    match (pending, before) {
        (false, _) => None,
        (true, Some(t)) if !emitted => Some(t),
        (true, _) => Some(Instant::now()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    type Pieces = Vec<(Vec<u8>, bool)>;

    fn split(max: usize, chunks: &[&[u8]]) -> (Pieces, Option<Vec<u8>>) {
        let mut s = LineSplitter::new(max);
        let mut out = Vec::new();
        for c in chunks {
            s.push(c, |d, p| out.push((d, p)));
        }
        (out, s.flush())
    }

    #[test]
    fn splits_lines_keeping_newlines() {
        let (out, rest) = split(64, &[b"a\nbb\n", b"c", b"c\nd"]);
        let want: Pieces = vec![
            (b"a\n".to_vec(), false),
            (b"bb\n".to_vec(), false),
            (b"cc\n".to_vec(), false),
        ];
        assert_eq!(out, want);
        assert_eq!(rest, Some(b"d".to_vec()));
    }

    #[test]
    fn long_lines_are_cut_at_max() {
        let (out, rest) = split(4, &[b"abcdefghij\n", b"wxyz\n"]);
        let got: Vec<(&[u8], bool)> = out.iter().map(|(d, p)| (d.as_slice(), *p)).collect();
        assert_eq!(
            got,
            vec![
                (&b"abcd"[..], true),
                (&b"efgh"[..], true),
                (&b"ij\n"[..], false),
                (&b"wxyz"[..], true),
                (&b"\n"[..], false),
            ]
        );
        assert_eq!(rest, None);
    }

    #[test]
    fn pending_plus_chunk_respects_max() {
        let (out, rest) = split(4, &[b"ab", b"cdef", b"\n"]);
        let got: Vec<(&[u8], bool)> = out.iter().map(|(d, p)| (d.as_slice(), *p)).collect();
        assert_eq!(got, vec![(&b"abcd"[..], true), (&b"ef\n"[..], false)]);
        assert_eq!(rest, None);
    }

    #[test]
    fn idle_timer_starts_with_the_unfinished_line() {
        let earlier = Instant::now() - Duration::from_secs(1);
        // The read finished the old line and began a new one: the new one starts now.
        let restarted = idle_since(Some(earlier), true, true).expect("pending");
        assert!(restarted > earlier);
        // The read only extended the same unfinished line: it keeps its start.
        assert_eq!(idle_since(Some(earlier), false, true), Some(earlier));
        assert_eq!(idle_since(Some(earlier), true, false), None);
        assert!(idle_since(None, false, true).is_some());
    }

    #[test]
    fn bytes_are_kept_exact() {
        let (out, _) = split(64, &[b"a\xffb\n\x00\n"]);
        assert_eq!(out[0].0, b"a\xffb\n");
        assert_eq!(out[1].0, b"\x00\n");
    }
}
