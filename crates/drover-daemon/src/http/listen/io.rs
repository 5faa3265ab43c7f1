//! The connection's byte stream, watched: when bytes last moved and whether a request is in
//! progress (for the idle timeout), and hyper's bodiless protocol-error answers given a JSON body.

use std::io::IoSlice;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::task::{ready, Context, Poll};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::MAX_HEAD;

/// When a connection last moved bytes, how many requests on it are in progress, and since when
/// a write has waited for the peer to read.
#[derive(Debug)]
pub(crate) struct Activity {
    start: Instant,
    /// Milliseconds since `start` of the last read or write.
    last: AtomicU64,
    in_progress: AtomicUsize,
    /// 1 + milliseconds since `start` when a write found the peer's window full and nothing has
    /// been written since; 0 while writes go through.
    blocked_since: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Activity {
        Activity {
            start: Instant::now(),
            last: AtomicU64::new(0),
            in_progress: AtomicUsize::new(0),
            blocked_since: AtomicU64::new(0),
        }
    }

    fn now(&self) -> u64 {
        u64::try_from(self.start.elapsed().as_millis()).unwrap_or(u64::MAX - 1)
    }

    fn touch(&self) {
        self.last.store(self.now(), Ordering::Relaxed);
    }

    /// Note how a write went: blocked (the peer is not reading), or through.
    fn wrote<T>(&self, poll: &Poll<T>) {
        if poll.is_pending() {
            if self.blocked_since.load(Ordering::Relaxed) == 0 {
                self.blocked_since.store(self.now() + 1, Ordering::Relaxed);
            }
        } else {
            self.blocked_since.store(0, Ordering::Relaxed);
        }
    }

    /// A write has waited `limit` or more for the peer to read anything.
    pub(crate) fn is_stalled_for(&self, limit: Duration) -> bool {
        match self.blocked_since.load(Ordering::Relaxed) {
            0 => false,
            since => {
                let since = Duration::from_millis(since - 1);
                self.start.elapsed().saturating_sub(since) >= limit
            }
        }
    }

    /// A request begins; it ends when the guard is dropped.
    pub(crate) fn begin(self: &Arc<Self>) -> InProgress {
        self.in_progress.fetch_add(1, Ordering::Relaxed);
        self.touch();
        InProgress(Arc::clone(self))
    }

    /// No request in progress, and no bytes either way, for `idle`.
    pub(crate) fn is_idle_for(&self, idle: Duration) -> bool {
        if self.in_progress.load(Ordering::Relaxed) > 0 {
            return false;
        }
        let last = Duration::from_millis(self.last.load(Ordering::Relaxed));
        self.start.elapsed().saturating_sub(last) >= idle
    }
}

/// A request in progress (held by its response body).
#[derive(Debug)]
pub(crate) struct InProgress(Arc<Activity>);

impl Drop for InProgress {
    fn drop(&mut self) {
        self.0.touch();
        self.0.in_progress.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A whole `Connection: close` answer with the JSON error body.
pub(crate) fn error_response(status: u16, code: &str, message: &str) -> Vec<u8> {
    let reason = axum::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("Error");
    let body = serde_json::json!({ "error": { "code": code, "message": message } }).to_string();
    format!(
        "HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// The JSON answer that replaces hyper's bodiless answer `head`, if it is one: a 400, 414 or 431
/// with `content-length: 0` (every answer the routes give has a body).
fn replacement(head: &[u8]) -> Option<Vec<u8>> {
    let (status, code, message) = if head.starts_with(b"HTTP/1.1 400 ") {
        (400, "bad_request", "malformed HTTP request".to_owned())
    } else if head.starts_with(b"HTTP/1.1 414 ") {
        (414, "too_large", "request URI too long".to_owned())
    } else if head.starts_with(b"HTTP/1.1 431 ") {
        (
            431,
            "too_large",
            format!("request head over {} KiB", MAX_HEAD / 1024),
        )
    } else {
        return None;
    };
    let text = std::str::from_utf8(head).ok()?;
    let (head, rest) = text.split_once("\r\n\r\n")?;
    let bodiless = rest.is_empty()
        && head
            .split("\r\n")
            .any(|line| line.eq_ignore_ascii_case("content-length: 0"));
    bodiless.then(|| error_response(status, code, &message))
}

/// The connection as hyper sees it.
#[derive(Debug)]
pub(crate) struct ConnIo<I> {
    inner: I,
    activity: Arc<Activity>,
    /// A replacement answer still to be written, and how much of it was.
    pending: Vec<u8>,
    written: usize,
}

impl<I> ConnIo<I> {
    pub(crate) fn new(inner: I, activity: Arc<Activity>) -> ConnIo<I> {
        ConnIo {
            inner,
            activity,
            pending: Vec::new(),
            written: 0,
        }
    }
}

impl<I: AsyncWrite + Unpin> ConnIo<I> {
    /// Write what is left of a replacement answer.
    fn poll_pending(&mut self, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        while self.written < self.pending.len() {
            let poll = Pin::new(&mut self.inner).poll_write(cx, &self.pending[self.written..]);
            self.activity.wrote(&poll);
            let n = ready!(poll)?;
            if n == 0 {
                return Poll::Ready(Err(std::io::ErrorKind::WriteZero.into()));
            }
            self.written += n;
            self.activity.touch();
        }
        Poll::Ready(Ok(()))
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for ConnIo<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let before = buf.filled().len();
        let result = ready!(Pin::new(&mut self.inner).poll_read(cx, buf));
        if buf.filled().len() > before {
            self.activity.touch();
        }
        Poll::Ready(result)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for ConnIo<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        if let Some(answer) = replacement(buf) {
            // hyper closes the connection after such an answer; what it wrote is taken as
            // written, and the replacement goes out before the flush or the close.
            self.pending = answer;
            self.written = 0;
            return Poll::Ready(Ok(buf.len()));
        }
        let poll = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.activity.wrote(&poll);
        let n = ready!(poll)?;
        self.activity.touch();
        Poll::Ready(Ok(n))
    }

    // Vectored writes let hyper queue a body frame instead of copying it behind the head (SSE
    // frames are whole store chunks).
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        ready!(self.poll_pending(cx))?;
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if let Some(first) = bufs.iter().find(|b| !b.is_empty()) {
            if first.len() == total {
                if let Some(answer) = replacement(first) {
                    self.pending = answer;
                    self.written = 0;
                    return Poll::Ready(Ok(total));
                }
            }
        }
        let poll = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.activity.wrote(&poll);
        let n = ready!(poll)?;
        self.activity.touch();
        Poll::Ready(Ok(n))
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        // A TLS stream writes its buffered records here.
        let poll = Pin::new(&mut self.inner).poll_flush(cx);
        self.activity.wrote(&poll);
        poll
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        ready!(self.poll_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::replacement;

    #[test]
    fn only_bodiless_protocol_errors_are_replaced() {
        let hyper_431 = b"HTTP/1.1 431 Request Header Fields Too Large\r\ncontent-length: 0\r\n\
                          date: Wed, 02 Dec 2026 06:00:00 GMT\r\n\r\n";
        let answer = String::from_utf8(replacement(hyper_431).unwrap()).unwrap();
        assert!(answer.starts_with("HTTP/1.1 431 "), "{answer}");
        assert!(answer.ends_with(r#""code":"too_large","message":"request head over 64 KiB"}}"#));
        let ours =
            b"HTTP/1.1 400 Bad Request\r\ncontent-length: 20\r\n\r\n{\"error\":{\"code\":1}}";
        assert!(replacement(ours).is_none());
        assert!(replacement(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").is_none());
    }
}
