//! Splitting a byte stream into records, and the task that drains one pipe.

use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::watch;
use tokio::time::Instant;

use drover_holder::split::{idle_since, LineSplitter};

use crate::observer::{CapturedRecord, Sink, Stream};
use crate::status::unix_nanos;

/// Size of one read. A Linux pipe holds 64 KiB, so one read empties a full pipe.
const READ_BUF: usize = 64 * 1024;

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
        pending_since = idle_since(
            pending_since,
            !batch.is_empty(),
            splitter.has_pending(),
            Instant::now(),
        );
        sink.deliver(batch);
    }
    if let Some(data) = splitter.flush() {
        sink.deliver(vec![record(data, true, unix_nanos())]);
    }
}
