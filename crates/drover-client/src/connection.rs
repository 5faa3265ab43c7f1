//! One DEALER socket, owned by one task: callers hand it requests, it routes replies by id.
//!
//! A caller registers a oneshot under its request id and hands its frame to the connection's
//! task over a channel. The task owns the libzmq socket: it sends with `DONTWAIT` (keeping what
//! does not fit yet in a small outbox, retried as the socket drains), takes each reply, reads its
//! `id` from the envelope's first keys and completes the oneshot registered under it. Replies
//! whose id is unknown (late replies to requests that gave up) are dropped. The task ends when
//! the [`Connection`] is dropped.
//!
//! Opening waits for the handshake (a libzmq socket monitor), so a daemon that is not there,
//! or that refuses our key, is reported at once with its own error.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use drover_zmq::monitor::{Handshake, Outcome};
use drover_zmq::Async;
use tokio::sync::{mpsc, oneshot};

use crate::keys::CurveClient;
use crate::ClientError;

/// A reply frame as received.
pub(crate) type ReplyFrame = Bytes;

// Requests in flight by id. A std Mutex: held only to insert or remove one entry, never across
// an await.
type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<ReplyFrame>>>>;

/// A live DEALER connection.
pub(crate) struct Connection {
    outbox: mpsc::UnboundedSender<Vec<u8>>,
    pending: Pending,
    task: tokio::task::JoinHandle<()>,
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("in_flight", &lock(&self.pending).len())
            .finish_non_exhaustive()
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.task.abort();
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
        let pending = Pending::default();
        let (outbox, requests) = mpsc::unbounded_channel();
        let task = tokio::spawn(run(socket, requests, Arc::clone(&pending)));
        Ok(Connection {
            outbox,
            pending,
            task,
        })
    }

    /// Send one request body under `id` and wait for its reply frame.
    pub(crate) async fn request(&self, id: u64, body: Vec<u8>) -> Result<ReplyFrame, ClientError> {
        let (reply, answer) = oneshot::channel();
        let _forget = Forget {
            pending: &self.pending,
            id,
        };
        lock(&self.pending).insert(id, reply);
        self.outbox
            .send(body)
            .map_err(|_| ClientError::Disconnected("the connection closed".into()))?;
        answer
            .await
            .map_err(|_| ClientError::Disconnected("the connection closed".into()))
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

/// The connection's task: send what callers hand over, route what comes back.
async fn run(mut socket: Async, mut requests: mpsc::UnboundedReceiver<Vec<u8>>, pending: Pending) {
    // Requests libzmq could not take yet (its queue to the daemon is full). Bounded by what
    // callers have in flight, each of whom waits for a reply.
    let mut outbox: VecDeque<Vec<u8>> = VecDeque::new();
    let failed = loop {
        // Send what fits, then take every reply waiting.
        while let Ok(body) = requests.try_recv() {
            outbox.push_back(body);
        }
        let mut failure = None;
        while let Some(body) = outbox.pop_front() {
            match socket.socket().send(&body[..], zmq::DONTWAIT) {
                Ok(()) => {}
                Err(zmq::Error::EAGAIN) => {
                    outbox.push_front(body);
                    break;
                }
                Err(error) => {
                    failure = Some(error);
                    break;
                }
            }
        }
        if failure.is_some() {
            break failure;
        }
        loop {
            match socket.try_recv() {
                Ok(frames) => route(&pending, frames),
                Err(zmq::Error::EAGAIN) => break,
                Err(error) => {
                    tracing::debug!(%error, "control connection receive");
                    break;
                }
            }
        }
        let wanted = if outbox.is_empty() {
            zmq::POLLIN
        } else {
            zmq::POLLIN | zmq::POLLOUT
        };
        tokio::select! {
            request = requests.recv(), if outbox.is_empty() => match request {
                Some(body) => outbox.push_back(body),
                None => break None,
            },
            woken = socket.wait(wanted) => {
                if let Err(error) = woken {
                    break Some(error);
                }
            }
        }
    };
    if let Some(error) = failed {
        tracing::debug!(%error, "control connection failed");
    }
    // Fail everything in flight rather than leave it to the deadlines.
    lock(&pending).clear();
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
