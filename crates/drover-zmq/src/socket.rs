//! A libzmq socket whose readiness tokio watches.

use std::os::fd::{AsRawFd, RawFd};

use tokio::io::unix::AsyncFd;
use tokio::io::Interest;

/// How long a wait for the descriptor's edge lasts before `ZMQ_EVENTS` is read again anyway.
const RECHECK: std::time::Duration = std::time::Duration::from_millis(50);

/// `ZMQ_FD` of a socket. It belongs to the socket (libzmq closes it), so this only lends the
/// number to tokio's registration and must be dropped before the socket, which [`Async`] does.
#[derive(Debug)]
pub struct Fd(RawFd);

impl AsRawFd for Fd {
    fn as_raw_fd(&self) -> RawFd {
        self.0
    }
}

/// A libzmq socket with async send and receive.
///
/// `zmq::Socket` is `Send` but not `Sync`, and libzmq allows one thread in a socket at a time:
/// the socket sits behind a `std` mutex, held for one non-blocking libzmq call and never across
/// an await, so tasks may share an `Async` (one sends while another waits to receive).
///
/// libzmq's descriptor is edge-triggered and any call on the socket may consume its edge: a
/// task that sends while another waits to receive must check [`Async::events`] afterwards and
/// wake the receiver itself if a message is waiting (see the client's connection).
pub struct Async {
    // Declared first so it is deregistered before the socket (and its descriptor) goes.
    fd: AsyncFd<Fd>,
    socket: std::sync::Mutex<zmq::Socket>,
}

impl std::fmt::Debug for Async {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Async")
            .field("fd", &self.fd.get_ref().0)
            .finish()
    }
}

impl Async {
    /// Register `socket`'s `ZMQ_FD` with the current tokio runtime.
    pub fn new(socket: zmq::Socket) -> std::io::Result<Async> {
        let raw = socket.get_fd().map_err(std::io::Error::from)?;
        // tokio 1.54 deprecates the safe constructor (it cannot prove the descriptor outlives
        // the registration) in favour of an `unsafe` one; the workspace denies `unsafe` (its
        // one exception is drover-holder's fork.rs). Here the guarantee holds by construction:
        // the socket owns the descriptor, this struct owns the socket, and `fd` is declared (so
        // dropped, deregistering) before `socket`.
        #[allow(deprecated)]
        let fd = AsyncFd::with_interest(Fd(raw), Interest::READABLE)?;
        Ok(Async {
            fd,
            socket: std::sync::Mutex::new(socket),
        })
    }

    /// The socket, for options and non-blocking operations (never hold it across an await).
    pub fn socket(&self) -> std::sync::MutexGuard<'_, zmq::Socket> {
        self.socket.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The socket's `ZMQ_EVENTS` now.
    pub fn events(&self) -> Result<zmq::PollEvents, zmq::Error> {
        again(|| self.socket().get_events())
    }

    /// Wait until `ZMQ_EVENTS` has any of `wanted`. Only when it has none is tokio's readiness
    /// cleared; an edge that arrived after the check is kept by tokio, so none is lost.
    pub async fn ready(&self, wanted: zmq::PollEvents) -> Result<(), zmq::Error> {
        loop {
            if self.events()?.intersects(wanted) {
                return Ok(());
            }
            let Some(mut guard) = edge(&self.fd).await? else {
                continue;
            };
            if self.events()?.intersects(wanted) {
                return Ok(());
            }
            guard.clear_ready();
        }
    }

    /// Wait for the descriptor's next edge, or return at once if `wanted` is already pending;
    /// returns the socket's events. Tokio's readiness is cleared only when `wanted` is absent,
    /// so a caller that loops (try its operations, then `wait`) never misses a wake-up. Any
    /// edge returns, so a loop that also waits for room to send (libzmq signals the descriptor
    /// when a peer's queue drains) gets its chance to retry.
    pub async fn wait(&self, wanted: zmq::PollEvents) -> Result<zmq::PollEvents, zmq::Error> {
        let events = self.events()?;
        if events.intersects(wanted) {
            return Ok(events);
        }
        let Some(mut guard) = edge(&self.fd).await? else {
            return self.events();
        };
        let events = self.events()?;
        if !events.intersects(wanted) {
            guard.clear_ready();
        }
        Ok(events)
    }

    /// Send a multipart message, waiting while the socket cannot take it.
    pub async fn send(&self, frames: &[&[u8]]) -> Result<(), zmq::Error> {
        loop {
            let sent = send_frames(&self.socket(), frames);
            match sent {
                Err(zmq::Error::EAGAIN) => self.ready(zmq::POLLOUT).await?,
                other => return other,
            }
        }
    }

    /// Receive a multipart message, frames with their metadata (`User-Id` and the like).
    pub async fn recv(&self) -> Result<Vec<zmq::Message>, zmq::Error> {
        loop {
            match self.try_recv() {
                Err(zmq::Error::EAGAIN) => self.ready(zmq::POLLIN).await?,
                other => return other,
            }
        }
    }

    /// Receive a multipart message if one is waiting (`EAGAIN` otherwise).
    pub fn try_recv(&self) -> Result<Vec<zmq::Message>, zmq::Error> {
        let socket = self.socket();
        let mut first = zmq::Message::new();
        again(|| socket.recv(&mut first, zmq::DONTWAIT))?;
        let mut more = first.get_more();
        let mut frames = vec![first];
        // The rest of a multipart message is delivered atomically with its first frame.
        while more {
            let mut frame = zmq::Message::new();
            again(|| socket.recv(&mut frame, 0))?;
            more = frame.get_more();
            frames.push(frame);
        }
        Ok(frames)
    }
}

/// `op`, again while it fails with `EINTR`. libzmq reads its command mailbox at the start of
/// `send`, `recv` and `ZMQ_EVENTS`, and a signal delivered meanwhile (a client's Ctrl-C
/// handler, the daemon's SIGHUP) fails the call with `EINTR` having done nothing: it is
/// retried, not taken for a broken connection.
pub fn again<T>(mut op: impl FnMut() -> Result<T, zmq::Error>) -> Result<T, zmq::Error> {
    loop {
        match op() {
            Err(zmq::Error::EINTR) => {}
            other => return other,
        }
    }
}

/// Send `frames` as one message without waiting (`EAGAIN` when the socket cannot take its
/// first frame; then nothing was sent). Each frame is sent on its own and retried on `EINTR`:
/// a whole-message retry after a later frame failed would send the first ones twice. libzmq
/// applies its queue limits at a message's first frame only, so the rest are always taken.
pub fn send_frames(socket: &zmq::Socket, frames: &[&[u8]]) -> Result<(), zmq::Error> {
    let last = frames.len().saturating_sub(1);
    for (i, frame) in frames.iter().enumerate() {
        let flags = if i < last {
            zmq::DONTWAIT | zmq::SNDMORE
        } else {
            zmq::DONTWAIT
        };
        again(|| socket.send(*frame, flags))?;
    }
    Ok(())
}

/// The descriptor's next edge, or `None` after [`RECHECK`] without one. The re-check is a
/// safety net: it bounds the cost of a wake-up that libzmq's edge-triggered descriptor did
/// not deliver (seen with many sockets and runtimes in one process) to that interval.
async fn edge(
    fd: &AsyncFd<Fd>,
) -> Result<Option<tokio::io::unix::AsyncFdReadyGuard<'_, Fd>>, zmq::Error> {
    match tokio::time::timeout(RECHECK, fd.readable()).await {
        Ok(Ok(guard)) => Ok(Some(guard)),
        Ok(Err(_)) => Err(zmq::Error::EFAULT),
        Err(_) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[tokio::test]
    async fn many_messages_cross_without_blocking_and_none_is_lost() {
        let context = crate::context();
        let server = context.socket(zmq::ROUTER).unwrap();
        server.bind("inproc://drover-zmq-test").unwrap();
        let client = context.socket(zmq::DEALER).unwrap();
        client.connect("inproc://drover-zmq-test").unwrap();
        let server = Async::new(server).unwrap();
        let client = Async::new(client).unwrap();
        let echo = tokio::spawn(async move {
            for _ in 0..10_000u32 {
                let frames = server.recv().await.unwrap();
                let frames: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
                server.send(&frames).await.unwrap();
            }
        });
        for i in 0..10_000u32 {
            client.send(&[&i.to_be_bytes()]).await.unwrap();
            let reply = client.recv().await.unwrap();
            assert_eq!(&reply[0][..], &i.to_be_bytes());
        }
        echo.await.unwrap();
    }

    /// Signals delivered to the thread while it sends and receives (a client's Ctrl-C handler
    /// does this) fail libzmq calls with `EINTR`; none of them may surface as an error.
    #[tokio::test]
    async fn signals_during_sends_and_receives_are_not_errors() {
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::Arc;
        // A handled signal (as tokio handles Ctrl-C): delivery interrupts system calls.
        let mut usr1 =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined1()).unwrap();
        let context = crate::context();
        let server = context.socket(zmq::ROUTER).unwrap();
        server.bind("inproc://drover-zmq-eintr").unwrap();
        let client = context.socket(zmq::DEALER).unwrap();
        client.connect("inproc://drover-zmq-eintr").unwrap();
        let server = Async::new(server).unwrap();
        let client = Async::new(client).unwrap();
        let me = nix::sys::pthread::pthread_self();
        let done = Arc::new(AtomicBool::new(false));
        // One signal per round trip, landing wherever that round trip is: an unpaced flood can
        // interrupt every call before it completes, and then no retry makes progress.
        let progress = Arc::new(std::sync::atomic::AtomicU32::new(0));
        let killer = {
            let done = Arc::clone(&done);
            let progress = Arc::clone(&progress);
            std::thread::spawn(move || {
                let mut sent = 0u64;
                let mut last = u32::MAX;
                while !done.load(Ordering::Relaxed) {
                    let now = progress.load(Ordering::Relaxed);
                    if now != last {
                        last = now;
                        nix::sys::pthread::pthread_kill(me, nix::sys::signal::Signal::SIGUSR1)
                            .unwrap();
                        sent += 1;
                    }
                    std::thread::yield_now();
                }
                sent
            })
        };
        for i in 0..5_000u32 {
            client.send(&[&i.to_be_bytes()]).await.unwrap();
            let frames = server.recv().await.unwrap();
            let frames: Vec<&[u8]> = frames.iter().map(|f| &f[..]).collect();
            server.send(&frames).await.unwrap();
            let reply = client.recv().await.unwrap();
            assert_eq!(&reply[0][..], &i.to_be_bytes());
            progress.fetch_add(1, Ordering::Relaxed);
        }
        done.store(true, Ordering::Relaxed);
        assert!(killer.join().unwrap() > 0);
        // The signals did arrive.
        assert!(usr1.recv().await.is_some());
    }
}
