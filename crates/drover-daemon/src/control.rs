//! A ZeroMQ control socket: a ROUTER serving requests concurrently, owned by one task.
//!
//! The control task owns the socket (libzmq sockets belong to one thread at a time) and runs on
//! a thread of its own with a current-thread runtime, so a request's arrival wakes exactly that
//! thread, as a blocking libzmq server would be woken, rather than whichever worker of the
//! shared runtime holds the I/O driver (and then another to steal the work). It reads requests
//! with `DONTWAIT` whenever `ZMQ_FD` signals. Requests answered from memory (`health` on a fresh
//! cache, `get` of a live agent by full id: `handler::is_in_memory`) are served right there, in
//! the daemon's runtime context; the others get a task on the daemon's runtime, and the control
//! task takes their finished replies back over a channel. It sends each reply with `DONTWAIT`
//! on a ROUTER with `ROUTER_MANDATORY`: if the client's queue in libzmq is full (`EAGAIN`) the reply waits in that
//! client's backlog here, in order, and is retried on every descriptor wake-up (libzmq signals
//! when a queue drains) and on a short timer. A reply is dropped only when its client is gone
//! (`EHOSTUNREACH`) or its backlog has not moved for [`STALL`]; every drop is counted
//! (`replies_dropped` in `stats` and `/metrics`). A slow request (a long `wait`) holds only its
//! own task, and a client that does not read holds only its own replies.
//!
//! In-flight requests are bounded per client, per CURVE key and in all, and a request's slot is
//! released here, in this task, the moment libzmq accepts its reply, so a client that never has
//! more than [`PER_CLIENT_IN_FLIGHT`] requests outstanding (of a key that never has more than
//! [`PER_KEY_IN_FLIGHT`]) is never refused while the socket has room, and no key takes all of
//! it. The backlog is bounded by the same slots.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use drover_proto::{ErrorBody, ErrorCode, ProtoError, ReplyBody, RequestEnvelope};
use drover_zmq::Async;
use futures::FutureExt;
use tokio::sync::{mpsc, watch, OwnedSemaphorePermit, Semaphore};

use crate::auth::Auth;
use crate::caller::{Caller, Via};
use crate::daemon::Shared;
use crate::handler::{self, Reply};

/// Requests served at once on one control socket; more are refused with `limit_reached`.
const MAX_IN_FLIGHT: usize = 1024;
/// Requests one client may have in flight at once (until libzmq accepts the reply).
pub(crate) const PER_CLIENT_IN_FLIGHT: usize = drover_proto::limits::MAX_IN_FLIGHT_PER_CLIENT;
/// Requests one CURVE key may have in flight at once over all its connections: a quarter of
/// the socket's, so one key (a `read` one, say, with 16 connections of long `wait`s) cannot
/// take every slot from the other keys.
pub(crate) const PER_KEY_IN_FLIGHT: usize = MAX_IN_FLIGHT / 4;
/// A client whose waiting replies have not moved for this long loses them.
pub(crate) const STALL: Duration = Duration::from_secs(10);
/// How often waiting replies are retried besides the descriptor's wake-ups.
const RETRY_EVERY: Duration = Duration::from_millis(10);
/// Requests read in one go before replies get a turn.
const RECV_BUDGET: usize = 256;

/// A finished reply on its way back to the control task.
struct Done {
    identity: Vec<u8>,
    /// The request came from a REQ socket: the reply keeps the empty delimiter.
    delimiter: bool,
    body: Vec<u8>,
    /// The request's in-flight slot (none for a refusal).
    slot: Option<Slot>,
}

/// A request's share of the socket's in-flight bound and of its key's; given back on drop.
struct Slot {
    _socket: OwnedSemaphorePermit,
    _key: Option<OwnedSemaphorePermit>,
}

/// Replies one client could not take yet, oldest first, and when the queue last moved.
struct Waiting {
    replies: VecDeque<Done>,
    moved: Instant,
}

/// Serve on a thread of its own until `stop` turns true; the returned task ends with it.
pub(crate) fn spawn(
    socket: zmq::Socket,
    via: Via,
    shared: Arc<Shared>,
    auth: Auth,
    stop: watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    let daemon = tokio::runtime::Handle::current();
    let (ended, has_ended) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name(format!("drover-control-{}", via.as_str()))
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build();
            match runtime {
                Ok(runtime) => runtime.block_on(run(socket, via, shared, auth, stop, daemon)),
                Err(error) => tracing::error!(%error, "the control thread's runtime"),
            }
            let _ = ended.send(());
        });
    if let Err(error) = thread {
        tracing::error!(%error, "starting the control thread");
    }
    tokio::spawn(async move {
        let _ = has_ended.await;
    })
}

/// Serve until `stop` turns true.
async fn run(
    socket: zmq::Socket,
    via: Via,
    shared: Arc<Shared>,
    auth: Auth,
    mut stop: watch::Receiver<bool>,
    daemon: tokio::runtime::Handle,
) {
    let socket = match Async::new(socket) {
        Ok(socket) => socket,
        Err(error) => {
            tracing::error!(%error, "control socket cannot be registered");
            return;
        }
    };
    let (done, finished) = mpsc::unbounded_channel();
    let mut control = Control {
        socket,
        via,
        shared,
        auth,
        daemon,
        done,
        finished,
        permits: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        refusals: Arc::new(Semaphore::new(MAX_IN_FLIGHT)),
        in_flight: HashMap::new(),
        keys: HashMap::new(),
        waiting: HashMap::new(),
    };
    loop {
        let exhausted = control.step();
        if exhausted {
            tokio::task::yield_now().await;
            continue;
        }
        let retry = !control.waiting.is_empty();
        tokio::select! {
            _ = stop.wait_for(|stopped| *stopped) => break,
            reply = control.finished.recv() => {
                if let Some(reply) = reply {
                    control.deliver(reply);
                }
            }
            woken = control.socket.wait(zmq::POLLIN) => {
                if let Err(error) = woken {
                    tracing::error!(%error, "control socket failed");
                    return;
                }
            }
            _ = tokio::time::sleep(RETRY_EVERY), if retry => {}
        }
    }
    // Let requests in flight finish their replies before the socket goes, within a bound: by
    // now every agent has ended, so even `wait`s return at once.
    // Shorter than the daemon's own drain bound, so this thread is done before it gives up.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(4);
    while control.permits.available_permits() < MAX_IN_FLIGHT || !control.waiting.is_empty() {
        tokio::select! {
            reply = control.finished.recv() => {
                if let Some(reply) = reply {
                    control.deliver(reply);
                }
            }
            _ = tokio::time::sleep(RETRY_EVERY) => control.retry(),
            _ = tokio::time::sleep_until(deadline) => break,
        }
    }
}

struct Control {
    socket: Async,
    via: Via,
    shared: Arc<Shared>,
    auth: Auth,
    /// The daemon's runtime: requests are served in its context and their tasks run on it.
    daemon: tokio::runtime::Handle,
    done: mpsc::UnboundedSender<Done>,
    // Unbounded, but holds at most one reply per in-flight slot plus one per refusal permit.
    finished: mpsc::UnboundedReceiver<Done>,
    permits: Arc<Semaphore>,
    refusals: Arc<Semaphore>,
    /// Identity → requests in flight (entries go at zero).
    in_flight: HashMap<Vec<u8>, usize>,
    /// CURVE key → its in-flight bound (one entry per key that sent a request: keys the
    /// allowed-keys file has held, as ZAP refuses every other).
    keys: HashMap<String, Arc<Semaphore>>,
    /// Identity → replies waiting for room (entries go when empty).
    waiting: HashMap<Vec<u8>, Waiting>,
}

impl Control {
    /// Do everything that needs no waiting: read waiting requests (up to a budget), deliver
    /// finished replies, retry waiting ones. Returns true if the budget ran out.
    fn step(&mut self) -> bool {
        let mut exhausted = true;
        for _ in 0..RECV_BUDGET {
            match self.socket.try_recv() {
                Ok(frames) => self.on_request(frames),
                Err(zmq::Error::EAGAIN) => {
                    exhausted = false;
                    break;
                }
                Err(error) => {
                    tracing::warn!(%error, "control receive");
                    exhausted = false;
                    break;
                }
            }
        }
        while let Ok(reply) = self.finished.try_recv() {
            self.deliver(reply);
        }
        self.retry();
        exhausted
    }

    fn on_request(&mut self, mut frames: Vec<zmq::Message>) {
        let caller = self.caller(&mut frames);
        let identity = frames.first().map(|f| f.to_vec()).unwrap_or_default();
        let count = self.in_flight.get(&identity).copied().unwrap_or(0);
        let key = self.key_bound(&mut frames);
        let permit = if count < PER_CLIENT_IN_FLIGHT {
            let key = match key {
                Some(bound) => bound.try_acquire_owned().ok().map(Some),
                None => Some(None),
            };
            key.and_then(|key| {
                let socket = Arc::clone(&self.permits).try_acquire_owned().ok()?;
                Some(Slot {
                    _socket: socket,
                    _key: key,
                })
            })
        } else {
            None
        };
        let shared = Arc::clone(&self.shared);
        let done = self.done.clone();
        let Some(permit) = permit else {
            // Over the in-flight bounds (all clients, this key, or this client) a request is
            // refused at once rather than left unread, so a flood of long `wait`s can neither
            // grow memory nor stall the socket, and one greedy client or key cannot take every
            // slot.
            let Ok(refusal) = Arc::clone(&self.refusals).try_acquire_owned() else {
                shared.count_request("dropped", Duration::ZERO, Some("limit_reached"));
                return;
            };
            self.daemon.spawn(async move {
                let mut reply = refuse(&shared, frames);
                reply.slot = None;
                let _ = done.send(reply);
                drop(refusal);
            });
            return;
        };
        *self.in_flight.entry(identity).or_insert(0) += 1;
        let request = Request::read(&shared, caller, frames);
        let quick = request.is_quick(&shared);
        let (reply_to, delimiter) = (request.identity.clone(), request.delimiter);
        let mut serving = Box::pin(async move { request.serve(&shared).await });
        // A quick op (answered from memory) is served here, without a task and a channel hop
        // each way; if it does have to wait after all, it moves to a task of its own.
        if quick {
            let served = {
                let _daemon = self.daemon.enter();
                // A panic in a handler must not take the control thread (and the socket) down.
                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    (&mut serving).now_or_never()
                }))
            };
            match served {
                Ok(Some(mut reply)) => {
                    reply.slot = Some(permit);
                    self.deliver(reply);
                    return;
                }
                Ok(None) => {}
                Err(_) => {
                    tracing::error!("a control request panicked; answered `internal`");
                    let error =
                        ErrorBody::new(ErrorCode::Internal, "the request failed in the daemon");
                    self.deliver(Done {
                        identity: reply_to,
                        delimiter,
                        body: error_reply(&rmpv::Value::Nil, &error),
                        slot: Some(permit),
                    });
                    return;
                }
            }
        }
        self.daemon.spawn(async move {
            let mut reply = serving.await;
            reply.slot = Some(permit);
            let _ = done.send(reply);
        });
    }

    /// The in-flight bound of the CURVE key that sent this request (none on ipc).
    fn key_bound(&mut self, frames: &mut [zmq::Message]) -> Option<Arc<Semaphore>> {
        if self.via == Via::Ipc {
            return None;
        }
        let key = frames
            .last_mut()
            .and_then(|frame| frame.gets("User-Id").map(str::to_owned))
            .unwrap_or_default();
        let bound = self
            .keys
            .entry(key)
            .or_insert_with(|| Arc::new(Semaphore::new(PER_KEY_IN_FLIGHT)));
        Some(Arc::clone(bound))
    }

    /// Who sent this request: on ipc, the local user (full control); on TCP, the role its key
    /// has in the current table, looked up now, so a revoked key is refused at once.
    fn caller(&self, frames: &mut [zmq::Message]) -> Result<Caller, ErrorBody> {
        if self.via == Via::Ipc {
            return Ok(Caller::control(Via::Ipc));
        }
        let key = frames
            .last_mut()
            .and_then(|frame| frame.gets("User-Id").map(str::to_owned))
            .unwrap_or_default();
        match self.auth.role_of(&key) {
            Some(role) => Ok(Caller {
                role,
                via: Via::Tcp,
            }),
            None => Err(ErrorBody::new(
                ErrorCode::Unauthorized,
                "this key is not allowed by that daemon (any more)",
            )),
        }
    }

    /// Send a finished reply, or queue it behind its client's waiting replies.
    fn deliver(&mut self, reply: Done) {
        if let Some(waiting) = self.waiting.get_mut(&reply.identity) {
            waiting.replies.push_back(reply);
            return;
        }
        match self.try_send(&reply) {
            Ok(()) => self.release(reply),
            Err(zmq::Error::EAGAIN) => {
                let identity = reply.identity.clone();
                let mut replies = VecDeque::new();
                replies.push_back(reply);
                self.waiting.insert(
                    identity,
                    Waiting {
                        replies,
                        moved: Instant::now(),
                    },
                );
            }
            Err(error) => self.drop_reply(reply, error),
        }
    }

    /// Send what waits, client by client, as far as each client's queue has room.
    fn retry(&mut self) {
        if self.waiting.is_empty() {
            return;
        }
        let mut waiting = std::mem::take(&mut self.waiting);
        for (_, client) in waiting.iter_mut() {
            while let Some(reply) = client.replies.pop_front() {
                match self.try_send(&reply) {
                    Ok(()) => {
                        client.moved = Instant::now();
                        self.release(reply);
                    }
                    Err(zmq::Error::EAGAIN) if client.moved.elapsed() < STALL => {
                        client.replies.push_front(reply);
                        break;
                    }
                    Err(zmq::Error::EAGAIN) => {
                        tracing::warn!(
                            replies = client.replies.len() + 1,
                            "a control client has not read its replies for {STALL:?}; dropping them"
                        );
                        self.drop_reply(reply, zmq::Error::EAGAIN);
                    }
                    Err(error) => self.drop_reply(reply, error),
                }
            }
        }
        waiting.retain(|_, client| !client.replies.is_empty());
        self.waiting = waiting;
    }

    fn try_send(&self, reply: &Done) -> Result<(), zmq::Error> {
        let socket = self.socket.socket();
        if reply.delimiter {
            drover_zmq::send_frames(&socket, &[&reply.identity, &[], &reply.body])
        } else {
            drover_zmq::send_frames(&socket, &[&reply.identity, &reply.body])
        }
    }

    fn drop_reply(&mut self, reply: Done, error: zmq::Error) {
        if error != zmq::Error::EHOSTUNREACH && error != zmq::Error::EAGAIN {
            tracing::warn!(%error, "sending a control reply");
        }
        self.shared
            .counters
            .replies_dropped
            .fetch_add(1, Ordering::Relaxed);
        self.release(reply);
    }

    /// Give back a reply's in-flight slot.
    fn release(&mut self, reply: Done) {
        if reply.slot.is_none() {
            return;
        }
        if let Some(count) = self.in_flight.get_mut(&reply.identity) {
            *count -= 1;
            if *count == 0 {
                self.in_flight.remove(&reply.identity);
            }
        }
    }
}

/// Split a ROUTER message: `[identity, body]` (DEALER) or `[identity, empty, body]` (REQ).
fn envelope(frames: &[zmq::Message]) -> (Vec<u8>, Option<(bool, &[u8])>) {
    let identity = frames.first().map(|f| f.to_vec()).unwrap_or_default();
    let body = match frames.len() {
        2 => Some((false, &frames[1][..])),
        3 if frames[1].is_empty() => Some((true, &frames[2][..])),
        _ => None,
    };
    (identity, body)
}

/// The reply to a request refused because too many are in flight.
fn refuse(shared: &Shared, frames: Vec<zmq::Message>) -> Done {
    let error = ErrorBody::new(
        ErrorCode::LimitReached,
        format!(
            "too many requests in flight ({PER_CLIENT_IN_FLIGHT} per client, {PER_KEY_IN_FLIGHT} \
             per key, {MAX_IN_FLIGHT} in all); retry later"
        ),
    );
    shared.count_request("refused", Duration::ZERO, Some("limit_reached"));
    let (identity, body) = envelope(&frames);
    let id = body
        .and_then(|(_, body)| drover_proto::decode_request(body, shared.config.max_frame).ok())
        .map(|envelope| envelope.id)
        .unwrap_or(rmpv::Value::Nil);
    Done {
        identity,
        delimiter: body.is_some_and(|(delimiter, _)| delimiter),
        body: error_reply(&id, &error),
        slot: None,
    }
}

/// A request as read off the socket: where its reply goes, and what to answer.
struct Request {
    identity: Vec<u8>,
    /// The request came from a REQ socket: the reply keeps the empty delimiter.
    delimiter: bool,
    /// Received at.
    started: Instant,
    body: Result<(Result<Caller, ErrorBody>, RequestEnvelope), Vec<u8>>,
}

impl Request {
    /// Split and decode a ROUTER message; what cannot be served already holds its error reply.
    fn read(shared: &Shared, caller: Result<Caller, ErrorBody>, frames: Vec<zmq::Message>) -> Self {
        let started = Instant::now();
        let (identity, body) = envelope(&frames);
        let delimiter = body.is_some_and(|(delimiter, _)| delimiter);
        let body = match body {
            Some((_, body)) => match drover_proto::decode_request(body, shared.config.max_frame) {
                Ok(envelope) => Ok((caller, envelope)),
                Err(failure) => {
                    let error = failure.error.to_body();
                    shared.count_request("invalid", started.elapsed(), Some(error.code.as_str()));
                    Err(error_reply(&failure.id, &error))
                }
            },
            None => Err(error_reply(
                &rmpv::Value::Nil,
                &ErrorBody::new(
                    ErrorCode::BadRequest,
                    format!(
                        "expected [body] (DEALER) or [empty, body] (REQ), got {} frames",
                        frames.len().saturating_sub(1)
                    ),
                ),
            )),
        };
        Request {
            identity,
            delimiter,
            started,
            body,
        }
    }

    /// Whether this request is answered at once from memory (decided per request: `health`
    /// on a fresh cache, `get` of a live agent by full id), so the control task may serve it
    /// itself. Anything that queries the registry, starts a process or waits runs in a task,
    /// so nothing slow ever holds the socket.
    fn is_quick(&self, shared: &Shared) -> bool {
        match &self.body {
            Err(_) => true,
            Ok((_, envelope)) => handler::is_in_memory(shared, &envelope.request),
        }
    }

    async fn serve(self, shared: &Arc<Shared>) -> Done {
        let body = match self.body {
            Err(reply) => reply,
            Ok((caller, envelope)) => answer(shared, caller, envelope, self.started).await,
        };
        Done {
            identity: self.identity,
            delimiter: self.delimiter,
            body,
            slot: None,
        }
    }
}

async fn answer(
    shared: &Arc<Shared>,
    caller: Result<Caller, ErrorBody>,
    envelope: RequestEnvelope,
    started: Instant,
) -> Vec<u8> {
    let op = envelope.request.op().as_str();
    let result = match caller {
        Ok(caller) => handler::dispatch(shared, caller, envelope.request).await,
        Err(refused) => Err(refused),
    };
    shared.count_request(
        op,
        started.elapsed(),
        result.as_ref().err().map(|e| e.code.as_str()),
    );
    match result {
        Ok(reply) => encode_ok(&envelope.id, reply),
        Err(error) => error_reply(&envelope.id, &error),
    }
}

fn encode_ok(id: &rmpv::Value, reply: Reply) -> Vec<u8> {
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
