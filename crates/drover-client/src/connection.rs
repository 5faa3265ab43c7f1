//! One DEALER socket shared by its callers: each sends its own request, and whoever waits for
//! a reply reads the socket for everyone.
//!
//! A caller registers a oneshot under its request id and sends its frame itself (`DONTWAIT`,
//! waiting for room if libzmq's queue to the daemon is full). Then it waits for its reply: one
//! waiting caller at a time holds the reader's turn and reads every reply that has come in,
//! completing the oneshot registered under each reply's `id` (its own included); the others
//! wait for their oneshot or for the turn. Replies whose id is unknown (late replies to requests
//! that gave up) are dropped. No task sits between a caller and the socket, so a round trip
//! costs the same wake-ups as a bare libzmq echo.
//!
//! libzmq's descriptor is edge-triggered and a send may consume the edge a reply raised, so a
//! sender that then finds a reply waiting wakes the reader through [`Notify`].
//!
//! Opening waits for the handshake (a libzmq socket monitor), so a daemon that is not there,
//! or that refuses our key, is reported at once with its own error.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use bytes::Bytes;
use drover_zmq::monitor::{Handshake, Outcome};
use drover_zmq::Async;
use tokio::sync::{oneshot, Notify};

use crate::keys::CurveClient;
use crate::ClientError;

/// A reply frame as received.
pub(crate) type ReplyFrame = Bytes;

// Requests in flight by id. A std Mutex: held only to insert or remove one entry, never across
// an await.
type Pending = Mutex<HashMap<u64, oneshot::Sender<ReplyFrame>>>;

/// A live DEALER connection.
pub(crate) struct Connection {
    socket: Async,
    pending: Pending,
    /// The reader's turn: held by the one caller that reads replies for everyone.
    reader: tokio::sync::Mutex<()>,
    /// Set when a sender found a reply waiting that the descriptor may not announce.
    readable: Notify,
    /// One per request the daemon lets this connection have in flight: a caller past them waits
    /// its turn here rather than being refused with `limit_reached`.
    slots: tokio::sync::Semaphore,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("in_flight", &lock(&self.pending).len())
            .finish_non_exhaustive()
    }
}

/// Connect `socket` to `endpoint` and wait for the handshake, within `timeout`.
pub(crate) async fn connect(
    (context, socket): (zmq::Context, zmq::Socket),
    endpoint: &str,
    timeout: Duration,
    curve: bool,
) -> Result<Async, ClientError> {
    let connect_error = |e: zmq::Error| ClientError::Connect {
        endpoint: endpoint.to_owned(),
        reason: e.to_string(),
    };
    let mut handshake = Handshake::watch(&context, &socket).map_err(connect_error)?;
    socket.connect(endpoint).map_err(connect_error)?;
    let outcome = tokio::time::timeout(timeout, handshake.outcome()).await;
    match outcome {
        Ok(Ok(Outcome::Ready)) => {}
        Ok(Ok(Outcome::Refused)) => {
            return Err(ClientError::Refused {
                endpoint: endpoint.to_owned(),
            })
        }
        Ok(Ok(Outcome::Protocol)) => {
            return Err(ClientError::Handshake {
                endpoint: endpoint.to_owned(),
                reason: if curve {
                    "the CURVE handshake failed (is the server key right?)".into()
                } else {
                    "the daemon requires CURVE here; give a server key and a client key".into()
                },
            })
        }
        Ok(Ok(Outcome::Unreachable)) | Err(_) => {
            return Err(ClientError::NoDaemon {
                endpoint: endpoint.to_owned(),
            })
        }
        Ok(Err(error)) => return Err(connect_error(error)),
    }
    Async::new(socket).map_err(|e| ClientError::Connect {
        endpoint: endpoint.to_owned(),
        reason: e.to_string(),
    })
}

impl Connection {
    /// Connect a fresh DEALER socket to `endpoint`.
    pub(crate) async fn open(
        endpoint: &str,
        connect_timeout: Duration,
        max_frame: usize,
        curve: Option<&CurveClient>,
    ) -> Result<Connection, ClientError> {
        let socket =
            crate::keys::socket(zmq::DEALER, endpoint, curve, max_frame.saturating_mul(4))?;
        let socket = connect(socket, endpoint, connect_timeout, curve.is_some()).await?;
        Ok(Connection {
            socket,
            pending: Pending::default(),
            reader: tokio::sync::Mutex::new(()),
            readable: Notify::new(),
            slots: tokio::sync::Semaphore::new(drover_proto::limits::MAX_IN_FLIGHT_PER_CLIENT),
        })
    }

    /// Wait for room for one more request in flight (held until its reply or its give-up).
    /// Waiting is bounded by the requests in flight, each of which has its own deadline.
    /// (`None` only if the semaphore were closed, which it never is.)
    pub(crate) async fn slot(&self) -> Option<tokio::sync::SemaphorePermit<'_>> {
        self.slots.acquire().await.ok()
    }

    /// Send one request body under `id` and wait for its reply frame.
    pub(crate) async fn request(&self, id: u64, body: Vec<u8>) -> Result<ReplyFrame, ClientError> {
        let closed = || ClientError::Disconnected("the connection closed".into());
        let (reply, mut answer) = oneshot::channel();
        let _forget = Forget {
            pending: &self.pending,
            id,
        };
        lock(&self.pending).insert(id, reply);
        self.send(&body).await.map_err(|error| self.fail(error))?;
        // Alone on the connection (the usual case), read at once. Otherwise the send may have
        // taken in a reply's arrival, leaving the descriptor quiet: tell whoever reads.
        if let Ok(turn) = self.reader.try_lock() {
            return self.read_until(&mut answer, turn).await;
        }
        if self
            .socket
            .events()
            .map_err(|error| self.fail(error))?
            .contains(zmq::POLLIN)
        {
            self.readable.notify_one();
        }
        tokio::select! {
            biased;
            reply = &mut answer => reply.map_err(|_| closed()),
            turn = self.reader.lock() => self.read_until(&mut answer, turn).await,
        }
    }

    /// With the reader's turn: read every reply that comes in until our own is among them.
    async fn read_until(
        &self,
        answer: &mut oneshot::Receiver<ReplyFrame>,
        _turn: tokio::sync::MutexGuard<'_, ()>,
    ) -> Result<ReplyFrame, ClientError> {
        loop {
            self.read_all().map_err(|error| self.fail(error))?;
            match answer.try_recv() {
                Ok(reply) => return Ok(reply),
                Err(oneshot::error::TryRecvError::Closed) => {
                    return Err(ClientError::Disconnected("the connection closed".into()))
                }
                Err(oneshot::error::TryRecvError::Empty) => {}
            }
            tokio::select! {
                woken = self.socket.wait(zmq::POLLIN) => {
                    woken.map_err(|error| self.fail(error))?;
                }
                () = self.readable.notified() => {}
            }
        }
    }

    /// Send one frame, waiting while libzmq's queue to the daemon is full.
    async fn send(&self, body: &[u8]) -> Result<(), zmq::Error> {
        loop {
            let sent = drover_zmq::again(|| self.socket.socket().send(body, zmq::DONTWAIT));
            match sent {
                Ok(()) => break,
                Err(zmq::Error::EAGAIN) => self.socket.ready(zmq::POLLOUT).await?,
                Err(error) => return Err(error),
            }
        }
        Ok(())
    }

    /// Take every reply waiting and hand each to its caller.
    fn read_all(&self) -> Result<(), zmq::Error> {
        loop {
            match self.socket.try_recv() {
                Ok(frames) => route(&self.pending, frames),
                Err(zmq::Error::EAGAIN) => return Ok(()),
                Err(error) => return Err(error),
            }
        }
    }

    /// The connection failed: fail every request in flight rather than leave it to deadlines.
    fn fail(&self, error: zmq::Error) -> ClientError {
        tracing::debug!(%error, "control connection failed");
        lock(&self.pending).clear();
        ClientError::Disconnected(format!("the connection failed: {error}"))
    }
}

/// Removes a request's entry however the call ends (reply, error, or the caller giving up),
/// so the map holds only requests in flight.
struct Forget<'a> {
    pending: &'a Pending,
    id: u64,
}

impl Drop for Forget<'_> {
    fn drop(&mut self) {
        lock(self.pending).remove(&self.id);
    }
}

fn lock(pending: &Pending) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<ReplyFrame>>> {
    pending
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn route(pending: &Pending, frames: Vec<zmq::Message>) {
    let Some(body) = frames.last() else {
        return;
    };
    let Some(id) = reply_id(body) else {
        return;
    };
    let reply = lock(pending).remove(&id);
    if let Some(reply) = reply {
        let _ = reply.send(Bytes::copy_from_slice(body));
    }
}

/// Read the `id` of a reply without decoding the rest: the daemon writes `v` and `id` first, so
/// this looks at the first entries only (and still works, more slowly, for any key order).
fn reply_id(body: &[u8]) -> Option<u64> {
    let mut cursor = body;
    let entries = rmp::decode::read_map_len(&mut cursor).ok()?;
    for _ in 0..entries {
        let key = rmpv::decode::read_value(&mut cursor).ok()?;
        let value = rmpv::decode::read_value(&mut cursor).ok()?;
        if key.as_str() == Some("id") {
            return value.as_u64();
        }
    }
    None
}
