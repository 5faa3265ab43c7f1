//! One DEALER socket and the task that multiplexes requests over it.
//!
//! Callers hand a request body and a oneshot to the driver task; the driver sends it and routes
//! each reply to the oneshot registered under the reply's `id`. Replies whose id is unknown (late
//! replies to requests that gave up) are dropped. The driver ends when every [`Connection`]
//! handle is gone and no request is pending on it.

use std::collections::HashMap;
use std::time::Duration;

use bytes::Bytes;
use tokio::sync::{mpsc, oneshot};
use zeromq::{DealerSocket, Socket, SocketOptions, SocketRecv, SocketSend, ZmqMessage};

use crate::ClientError;

/// A reply frame as received.
pub(crate) type ReplyFrame = Bytes;

struct Outgoing {
    id: u64,
    body: Vec<u8>,
    reply: oneshot::Sender<ReplyFrame>,
}

/// A live DEALER connection.
#[derive(Debug)]
pub(crate) struct Connection {
    requests: mpsc::Sender<Outgoing>,
}

impl Connection {
    /// Connect a fresh DEALER socket to `endpoint`.
    pub(crate) async fn open(
        endpoint: &str,
        connect_timeout: Duration,
    ) -> Result<Connection, ClientError> {
        let mut options = SocketOptions::default();
        options.connect_timeout(connect_timeout);
        let mut socket = DealerSocket::with_options(options);
        socket
            .connect(endpoint)
            .await
            .map_err(|e| ClientError::Connect {
                endpoint: endpoint.to_owned(),
                reason: e.to_string(),
            })?;
        let (requests, outgoing) = mpsc::channel(1024);
        tokio::spawn(drive(socket, outgoing));
        Ok(Connection { requests })
    }

    /// Send one request body under `id` and wait for its reply frame.
    pub(crate) async fn request(&self, id: u64, body: Vec<u8>) -> Result<ReplyFrame, ClientError> {
        let (reply, answer) = oneshot::channel();
        self.requests
            .send(Outgoing { id, body, reply })
            .await
            .map_err(|_| ClientError::Disconnected("the connection task ended".into()))?;
        answer
            .await
            .map_err(|_| ClientError::Disconnected("the connection task ended".into()))
    }
}

async fn drive(socket: DealerSocket, mut outgoing: mpsc::Receiver<Outgoing>) {
    let (mut send, mut recv) = socket.split();
    let mut pending: HashMap<u64, oneshot::Sender<ReplyFrame>> = HashMap::new();
    let mut accepting = true;
    loop {
        // Forget requests whose caller gave up, so the map stays bounded by what is in flight.
        pending.retain(|_, reply| !reply.is_closed());
        if !accepting && pending.is_empty() {
            return;
        }
        tokio::select! {
            next = outgoing.recv(), if accepting => match next {
                Some(request) => {
                    let message = ZmqMessage::from(request.body);
                    if send.send(message).await.is_err() {
                        return;
                    }
                    pending.insert(request.id, request.reply);
                }
                None => accepting = false,
            },
            received = recv.recv() => match received {
                Ok(message) => route(message, &mut pending),
                Err(_) => return,
            },
            // Wake now and then to drop abandoned entries once the handle is gone.
            _ = tokio::time::sleep(Duration::from_secs(1)), if !accepting => {}
        }
    }
}

fn route(message: ZmqMessage, pending: &mut HashMap<u64, oneshot::Sender<ReplyFrame>>) {
    let Some(body) = message.into_vec().pop() else {
        return;
    };
    let Some(id) = reply_id(&body) else {
        return;
    };
    if let Some(reply) = pending.remove(&id) {
        let _ = reply.send(body);
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
