//! The ZeroMQ control socket: a ROUTER serving requests concurrently.
//!
//! One task receives frames and spawns a task per request; each request task sends its own
//! reply through the shared send half. A slow request (a long `wait`) holds
//! only its own task. In-flight requests are bounded by a semaphore, so a flood of requests
//! back-pressures the receive loop instead of growing memory.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use drover_proto::{ErrorBody, ErrorCode, ProtoError, ReplyBody};
use tokio::sync::{watch, Mutex, Semaphore};
use zeromq::{RouterSendHalf, RouterSocket, SocketRecv, SocketSend, ZmqMessage};

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
    // Request tasks send their replies themselves; the async mutex only orders the sends.
    let send = Arc::new(Mutex::new(send));
    let permits = Arc::new(Semaphore::new(MAX_IN_FLIGHT));
    loop {
        let message = tokio::select! {
            received = recv.recv() => received,
            _ = stop.wait_for(|stopped| *stopped) => break,
        };
        let Ok(message) = message else {
            continue;
        };
        let shared = Arc::clone(&shared);
        let send = Arc::clone(&send);
        // Over the in-flight bound a request is refused at once rather than left unread, so a
        // flood of long `wait`s can neither grow memory nor stall the socket.
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            tokio::spawn(async move {
                let reply = refuse(&shared, message);
                deliver(&send, reply).await;
            });
            continue;
        };
        tokio::spawn(async move {
            let reply = serve(&shared, message).await;
            deliver(&send, reply).await;
            drop(permit);
        });
    }
    // Let requests in flight finish their replies before the socket goes, within a bound: by
    // now every agent has ended, so even `wait`s return at once.
    let drained = permits.acquire_many(MAX_IN_FLIGHT as u32);
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), drained).await;
}

/// How long one reply may wait for its peer's queue. zeromq's ROUTER waits when a peer's queue
/// is full, and sends are serialised, so a client that never reads its replies could otherwise
/// hold every other client's reply back.
const SEND_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(1);

async fn deliver(send: &Mutex<RouterSendHalf>, reply: ZmqMessage) {
    let mut send = send.lock().await;
    // A peer that went away, or does not read, cannot be answered; that is its loss alone.
    let _ = tokio::time::timeout(SEND_TIMEOUT, send.send(reply)).await;
}

/// The reply to a request refused because too many are in flight.
fn refuse(shared: &Shared, message: ZmqMessage) -> ZmqMessage {
    let error = ErrorBody::new(
        ErrorCode::LimitReached,
        format!("{MAX_IN_FLIGHT} requests are in flight; retry later"),
    );
    shared.count_request("refused", std::time::Duration::ZERO, Some("limit_reached"));
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
    let result = handler::dispatch(shared, envelope.request).await;
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
