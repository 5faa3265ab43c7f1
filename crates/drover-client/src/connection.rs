//! One DEALER socket: callers send on it directly; a reader task routes replies by id.
//!
//! A caller registers a oneshot under its request id, then sends its frame itself (the send half
//! sits behind an async mutex, so there is no hand-off to another task on the way out). The
//! reader task takes each reply, reads its `id` from the envelope's first keys and completes the
//! oneshot registered under it. Replies whose id is unknown (late replies to requests that gave
//! up) are dropped. The reader ends when the [`Connection`] is dropped.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::oneshot;
use zeromq::{
    DealerRecvHalf, DealerSendHalf, DealerSocket, Socket, SocketOptions, SocketRecv, SocketSend,
    ZmqMessage,
};

use crate::ClientError;

/// A reply frame as received.
pub(crate) type ReplyFrame = Bytes;

// Requests in flight by id. A std Mutex: held only to insert or remove one entry, never across
// an await.
type Pending = Arc<Mutex<HashMap<u64, oneshot::Sender<ReplyFrame>>>>;

/// A live DEALER connection.
pub(crate) struct Connection {
    send: tokio::sync::Mutex<DealerSendHalf>,
    pending: Pending,
    reader: tokio::task::JoinHandle<()>,
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
        self.reader.abort();
    }
}

impl Connection {
    /// Connect a fresh DEALER socket to `endpoint`.
    pub(crate) async fn open(
        endpoint: &str,
        connect_timeout: Duration,
        max_frame: usize,
    ) -> Result<Connection, ClientError> {
        let mut options = SocketOptions::default();
        options.connect_timeout(connect_timeout);
        // Replies larger than this close the connection before memory is reserved for them.
        options.max_message_size(max_frame.saturating_mul(4));
        let mut socket = DealerSocket::with_options(options);
        socket
            .connect(endpoint)
            .await
            .map_err(|e| ClientError::Connect {
                endpoint: endpoint.to_owned(),
                reason: e.to_string(),
            })?;
        let (send, recv) = socket.split();
        let pending = Pending::default();
        let reader = tokio::spawn(read_replies(recv, Arc::clone(&pending)));
        Ok(Connection {
            send: tokio::sync::Mutex::new(send),
            pending,
            reader,
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
        self.send
            .lock()
            .await
            .send(ZmqMessage::from(body))
            .await
            .map_err(|e| ClientError::Disconnected(e.to_string()))?;
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

async fn read_replies(mut recv: DealerRecvHalf, pending: Pending) {
    while let Ok(message) = recv.recv().await {
        let Some(body) = message.into_vec().pop() else {
            continue;
        };
        let Some(id) = reply_id(&body) else {
            continue;
        };
        let reply = lock(&pending).remove(&id);
        if let Some(reply) = reply {
            let _ = reply.send(body);
        }
    }
    // The socket failed: fail everything in flight rather than leave it to the deadlines.
    lock(&pending).clear();
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
