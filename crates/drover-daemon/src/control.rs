//! The ZeroMQ control socket: a ROUTER serving requests concurrently.
//!
//! One task receives frames and spawns a task per request; each request task sends its own
//! reply through the shared send half. A slow request (a long `wait`) holds
//! only its own task. In-flight requests are bounded by a semaphore, so a flood of requests
//! back-pressures the receive loop instead of growing memory.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use drover_proto::{ErrorBody, ErrorCode, ProtoError, ReplyBody};
use tokio::sync::{watch, Mutex, Semaphore};
use zeromq::{RouterSendHalf, RouterSocket, SocketRecv, SocketSend, ZmqMessage};

use crate::caller::{Caller, Via};
use crate::daemon::Shared;
use crate::handler::{self, Reply};

/// Requests served at once; more wait in the socket.
const MAX_IN_FLIGHT: usize = 1024;

/// Serve until `stop` turns true.
pub(crate) async fn run(
    socket: RouterSocket,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) {
    let (send, mut recv) = socket.split();
    let replies = Arc::new(Replies {
        send: Mutex::new(send),
        in_flight: std::sync::Mutex::new(HashMap::new()),
        stuck: std::sync::Mutex::new(HashMap::new()),
    });
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    // Refusals are cheap but not free: past this many at once, excess requests are dropped.
    let refusals = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    loop {
        let message = tokio::select! {
            received = recv.recv() => received,
            _ = stop.wait_for(|stopped| *stopped) => break,
        };
        let Ok(message) = message else {
            continue;
        };
        let shared = Arc::clone(&shared);
        let replies = Arc::clone(&replies);
        let identity = message.get(0).cloned().unwrap_or_default();
        // Over the in-flight bounds (all clients, or this one) a request is refused at once
        // rather than left unread, so a flood of long `wait`s can neither grow memory nor stall
        // the socket, and one greedy client cannot take every slot.
        let client_slot = ClientSlot::take(&replies, identity);
        let permit = match client_slot {
            Some(_) => Arc::clone(&permits).try_acquire_owned().ok(),
            None => None,
        };
        let Some(permit) = permit else {
            let Ok(refusal) = Arc::clone(&refusals).try_acquire_owned() else {
                shared.count_request("dropped", Duration::ZERO, Some("limit_reached"));
                continue;
            };
            tokio::spawn(async move {
                let reply = refuse(&shared, message);
                replies.deliver(reply).await;
                drop(refusal);
            });
            continue;
        };
        tokio::spawn(async move {
            let reply = serve(&shared, message).await;
            replies.deliver(reply).await;
            drop(client_slot);
            drop(permit);
        });
    }
    // Let requests in flight finish their replies before the socket goes, within a bound: by
    // now every agent has ended, so even `wait`s return at once.
    let drained = permits.acquire_many(MAX_IN_FLIGHT as u32);
    let _ = tokio::time::timeout(Duration::from_secs(5), drained).await;
}

/// How long one reply may wait for room in its client's queue (16 replies, set on the socket).
/// Sends are serialised, so this is also the most one unresponsive client delays others, once.
const SEND_TIMEOUT: Duration = Duration::from_millis(50);
/// After a reply timed out, further replies to that client are dropped at once for this long.
const STUCK_FOR: Duration = Duration::from_secs(1);

/// Requests one client may have in flight at once.
const PER_CLIENT_IN_FLIGHT: usize = 64;

/// The send half, the clients recently found not reading their replies, and requests in flight
/// per client.
struct Replies {
    send: Mutex<RouterSendHalf>,
    // Identity → requests in flight. A std Mutex, held for one update; entries go at zero, so
    // it holds at most `MAX_IN_FLIGHT` of them.
    in_flight: std::sync::Mutex<HashMap<Bytes, usize>>,
    // Identity → when a reply to it last timed out. A std Mutex: held for a lookup or an
    // insert, never across an await. Bounded: entries expire, and the map is cleared if it
    // ever holds more than `MAX_IN_FLIGHT` of them.
    stuck: std::sync::Mutex<HashMap<Bytes, Instant>>,
}

impl Replies {
    /// Send a reply, unless its client is not reading: that client loses it, nobody else
    /// waits for it.
    async fn deliver(&self, reply: ZmqMessage) {
        let identity = reply.get(0).cloned().unwrap_or_default();
        if self.is_stuck(&identity) {
            return;
        }
        let mut send = self.send.lock().await;
        if tokio::time::timeout(SEND_TIMEOUT, send.send(reply))
            .await
            .is_err()
        {
            drop(send);
            let mut stuck = self.stuck.lock().unwrap_or_else(|p| p.into_inner());
            if stuck.len() >= MAX_IN_FLIGHT {
                stuck.clear();
            }
            stuck.insert(identity, Instant::now());
        }
    }

    fn is_stuck(&self, identity: &Bytes) -> bool {
        let mut stuck = self.stuck.lock().unwrap_or_else(|p| p.into_inner());
        match stuck.get(identity) {
            Some(at) if at.elapsed() < STUCK_FOR => true,
            Some(_) => {
                stuck.remove(identity);
                false
            }
            None => false,
        }
    }
}

/// One request's place in its client's in-flight count, given back on drop.
struct ClientSlot {
    replies: Arc<Replies>,
    identity: Bytes,
}

impl ClientSlot {
    /// A slot for `identity`, unless it already has `PER_CLIENT_IN_FLIGHT` requests in flight.
    fn take(replies: &Arc<Replies>, identity: Bytes) -> Option<ClientSlot> {
        let mut in_flight = replies.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        let count = in_flight.entry(identity.clone()).or_insert(0);
        if *count >= PER_CLIENT_IN_FLIGHT {
            return None;
        }
        *count += 1;
        Some(ClientSlot {
            replies: Arc::clone(replies),
            identity,
        })
    }
}

impl Drop for ClientSlot {
    fn drop(&mut self) {
        let mut in_flight = self
            .replies
            .in_flight
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some(count) = in_flight.get_mut(&self.identity) {
            *count -= 1;
            if *count == 0 {
                in_flight.remove(&self.identity);
            }
        }
    }
}

/// The reply to a request refused because too many are in flight.
fn refuse(shared: &Shared, message: ZmqMessage) -> ZmqMessage {
    let error = ErrorBody::new(
        ErrorCode::LimitReached,
        format!(
            "too many requests in flight ({PER_CLIENT_IN_FLIGHT} per client, {MAX_IN_FLIGHT} in \
             all); retry later"
        ),
    );
    shared.count_request("refused", Duration::ZERO, Some("limit_reached"));
    let mut frames = message.into_vecdeque();
    let identity = frames.pop_front().unwrap_or_default();
    let mut envelope = vec![identity];
    if frames.len() == 2 && frames.front().is_some_and(|f| f.is_empty()) {
        envelope.push(Bytes::new());
    }
    let id = frames
        .back()
        .and_then(|body| drover_proto::decode_request(body, shared.config.max_frame).ok())
        .map(|envelope| envelope.id)
        .unwrap_or(rmpv::Value::Nil);
    envelope.push(Bytes::from(error_reply(&id, &error)));
    ZmqMessage::try_from(envelope).unwrap_or_else(|_| ZmqMessage::from(Bytes::new()))
}

/// Answer one ROUTER message: `[identity, body]` (DEALER) or `[identity, empty, body]` (REQ).
/// The reply has the same shape.
async fn serve(shared: &Arc<Shared>, message: ZmqMessage) -> ZmqMessage {
    let mut frames = message.into_vecdeque();
    let identity = frames.pop_front().unwrap_or_default();
    let mut envelope = vec![identity];
    let body = match frames.len() {
        1 => frames.pop_front(),
        2 if frames.front().is_some_and(|f| f.is_empty()) => {
            envelope.push(Bytes::new());
            frames.pop_back()
        }
        _ => None,
    };
    let reply = match body {
        Some(body) => answer(shared, &body).await,
        None => error_reply(
            &rmpv::Value::Nil,
            &ErrorBody::new(
                ErrorCode::BadRequest,
                format!(
                    "expected [body] (DEALER) or [empty, body] (REQ), got {} frames",
                    frames.len()
                ),
            ),
        ),
    };
    envelope.push(Bytes::from(reply));
    ZmqMessage::try_from(envelope).unwrap_or_else(|_| ZmqMessage::from(Bytes::new()))
}

async fn answer(shared: &Arc<Shared>, body: &[u8]) -> Vec<u8> {
    let started = Instant::now();
    let envelope = match drover_proto::decode_request(body, shared.config.max_frame) {
        Ok(envelope) => envelope,
        Err(failure) => {
            let error = failure.error.to_body();
            shared.count_request("invalid", started.elapsed(), Some(error.code.as_str()));
            return error_reply(&failure.id, &error);
        }
    };
    let op = envelope.request.op().as_str();
    let result = handler::dispatch(shared, Caller::control(Via::Tcp), envelope.request).await;
    shared.count_request(
        op,
        started.elapsed(),
        result.as_ref().err().map(|e| e.code.as_str()),
    );
    match result {
        Ok(reply) => encode_ok(&envelope.id, &reply),
        Err(error) => error_reply(&envelope.id, &error),
    }
}

fn encode_ok(id: &rmpv::Value, reply: &Reply) -> Vec<u8> {
    match reply.encode(id) {
        Ok(bytes) => bytes,
        Err(error) => error_reply(id, &internal(error)),
    }
}

fn internal(error: ProtoError) -> ErrorBody {
    ErrorBody::new(ErrorCode::Internal, error.to_string())
}

fn error_reply(id: &rmpv::Value, error: &ErrorBody) -> Vec<u8> {
    // Encoding an error body cannot fail; an empty frame would be the last resort.
    drover_proto::encode_reply::<()>(id, ReplyBody::Err(error)).unwrap_or_default()
}
