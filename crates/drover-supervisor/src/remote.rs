//! Agents held by a holder process: starting one, re-attaching to one, and the actor that
//! stands for the holder inside the daemon (same [`Handle`], same [`Observer`] calls as the
//! in-process actor).

use std::collections::{HashSet, VecDeque};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use drover_holder::wire::{
    self, FromHolder, OpError, StartSpec, ToHolder, WireRecord, MIN_PROTOCOL_VERSION,
    PROTOCOL_VERSION,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::UnixStream;
use tokio::sync::{mpsc, oneshot, watch};

use crate::actor::{Op, Request};
use crate::handle::REQUEST_QUEUE;
use crate::observer::{CapturedRecord, Sink, Stream};
use crate::status::unix_nanos;
use crate::stdin::StdinSlot;
use crate::SupervisorError;
use crate::{Command, Handle, Launcher, Observer, Status, StdinMode, SupervisorConfig};

/// Bytes of stdin sent to a holder and not yet written by it: the holder buffers at most this.
const STDIN_WINDOW: u64 = 64 * 1024;
/// How long a holder may take to answer a new connection.
const GREETING: Duration = Duration::from_secs(5);

/// Why a holder could not be re-attached.
#[derive(thiserror::Error, Debug)]
#[non_exhaustive]
pub enum AttachError {
    /// Nothing listens on its socket: the holder is gone.
    #[error("the agent's holder is gone ({0})")]
    Gone(#[source] std::io::Error),
    /// The holder speaks no protocol version this daemon speaks; it keeps its agent.
    #[error("the agent's holder speaks holder protocol {version}, this daemon {MIN_PROTOCOL_VERSION}..={PROTOCOL_VERSION}: {message}")]
    Incompatible { version: u32, message: String },
    /// It answered, but not as a holder does.
    #[error("the agent's holder did not answer as expected: {0}")]
    Protocol(String),
}

/// An agent's holder directory under the launcher's root.
pub fn holder_dir(root: &Path, agent: &str) -> PathBuf {
    root.join(agent)
}

/// Starts `command` under a new holder in `launcher.root()/agent`; `agent` must be a name
/// fit for a directory (the agent id). Never fails: a holder or spawn failure becomes
/// [`Status::FailedToStart`]. Records are numbered from `first_seq`.
pub async fn spawn_held(
    launcher: &Launcher,
    agent: &str,
    command: Command,
    config: SupervisorConfig,
    observer: Arc<dyn Observer>,
    first_seq: u64,
) -> Handle {
    let sink = Arc::new(Sink::new(observer));
    let dir = holder_dir(launcher.root(), agent);
    let spec = StartSpec {
        program: command.program,
        args: command.args,
        env: command.env,
        cwd: command.cwd.map(|p| p.to_string_lossy().into_owned()),
        stdin_pipe: command.stdin == StdinMode::Pipe,
        first_seq,
        max_record: config.max_record as u64,
        partial_flush_ms: millis(config.partial_flush),
        max_runtime_ms: config.max_runtime.map(millis),
        runtime_grace_ms: millis(config.runtime_grace),
        drain_timeout_ms: millis(config.drain_timeout),
        spool_limit: config.spool_limit,
        stop_signal: config.stop_signal,
        dir: None,
    };
    // Boxed: its state (two specs, a greeting) would otherwise sit in every caller's future.
    let (holder_pid, mut conn, version) =
        match Box::pin(start_holder(launcher, agent, &dir, spec)).await {
            Ok(started) => started,
            Err((error, sent_to)) => {
                if let Some(pid) = sent_to {
                    abandon(pid, agent, &dir).await;
                }
                return Handle::failed(&sink, error);
            }
        };
    // The agent's first status (running, or failed to start) comes before any record.
    let started = async {
        loop {
            match conn.next().await? {
                FromHolder::Status { status } if status != Status::Starting => {
                    return Ok::<_, String>(status)
                }
                _ => {}
            }
        }
    };
    let failed = match tokio::time::timeout(GREETING, started).await {
        Ok(Ok(status)) => Ok(status),
        Ok(Err(error)) => Err(format!("the agent's holder failed: {error}")),
        Err(_) => Err("the agent's holder did not answer".to_owned()),
    };
    let status = match failed {
        Ok(status) => status,
        Err(error) => {
            drop(conn);
            abandon(holder_pid, agent, &dir).await;
            return Handle::failed(&sink, error);
        }
    };
    sink.status(&status);
    if status.is_terminal() {
        // Failed to start: nothing more will come; the holder may go.
        let _ = conn.send(&ToHolder::Release).await;
    }
    let (stdin, stdin_rx) = match command.stdin {
        StdinMode::Pipe => {
            let (slot, rx) = StdinSlot::channel(config.stdin_queue);
            (slot, Some(rx))
        }
        StdinMode::Null => (StdinSlot::default(), None),
    };
    // A holder of protocol 2 that started its agent is recycled for another once the agent
    // ends (when the launcher wants one ready), rather than exiting.
    let recycle = (version >= 2 && !status.is_terminal()).then(|| launcher.clone());
    launch(
        conn,
        sink,
        status,
        (stdin, stdin_rx),
        (agent.to_owned(), holder_pid),
        ack_bytes(config.spool_limit),
        recycle,
    )
}

/// What re-attaching found.
#[derive(Debug)]
pub struct Attached {
    pub handle: Handle,
    /// The holder's own pid.
    pub holder_pid: u32,
}

/// Re-attaches to the holder of `agent` (a daemon restart): asks for every record from
/// `resume_from` on. `last_known` is the status the registry has: a live status of the holder
/// that differs is reported at once; an end is kept until after the spooled records.
/// `stdin_queue`: the agent was started with a stdin pipe; the new daemon writes to it through
/// a fresh queue of that many chunks (bytes the old daemon had queued but not yet handed to the
/// holder died with it: `write_stdin` promises only that they were queued). The holder answers
/// a write to a pipe that is closed by now with `StdinClosed`.
pub async fn attach(
    root: &Path,
    agent: &str,
    observer: Arc<dyn Observer>,
    resume_from: u64,
    last_known: Status,
    stdin_queue: Option<usize>,
) -> Result<Attached, AttachError> {
    let dir = holder_dir(root, agent);
    let mut conn = Conn::connect(&dir).await.map_err(AttachError::Gone)?;
    let hello = hello(resume_from);
    conn.send(&hello).await.map_err(AttachError::Protocol)?;
    let answer = tokio::time::timeout(GREETING, conn.next())
        .await
        .map_err(|_| AttachError::Protocol("no answer to hello".to_owned()))?;
    let (holder_pid, status, timed_out) = match answer {
        Ok(FromHolder::Welcome {
            version,
            holder_pid,
            status,
            timed_out,
            ..
        }) => {
            if !(MIN_PROTOCOL_VERSION..=PROTOCOL_VERSION).contains(&version) {
                return Err(AttachError::Incompatible {
                    version,
                    message: "it chose a version this daemon does not speak".to_owned(),
                });
            }
            (holder_pid, status, timed_out)
        }
        Ok(FromHolder::Refused { version, message }) => {
            return Err(AttachError::Incompatible { version, message })
        }
        Ok(other) => return Err(AttachError::Protocol(format!("{other:?}"))),
        Err(e) => return Err(AttachError::Protocol(e)),
    };
    if status == Status::Starting {
        // The old daemon died between starting the holder and starting the agent.
        let _ = conn.send(&ToHolder::Release).await;
        return Err(AttachError::Gone(std::io::Error::other(
            "the holder never started its agent",
        )));
    }
    if timed_out {
        observer.timed_out();
    } else if matches!(status, Status::Stopping { .. }) {
        // Stopping, and not by its timeout: a stop someone asked for (its end is no timeout).
        observer.end_asked();
    }
    let sink = Arc::new(Sink::new(observer));
    let current = if status.is_terminal() {
        last_known
    } else {
        // What changed while no daemon listened (a timeout's stop, a pause or stop whose
        // reply the last daemon never read, the start it never recorded) is recorded now: the
        // holder sends its status again after the replay, but as no change from this one.
        if status != last_known {
            sink.status(&status);
        }
        status
    };
    let (stdin, stdin_rx) = match stdin_queue {
        Some(queue) if !current.is_terminal() => {
            let (slot, rx) = StdinSlot::channel(queue);
            (slot, Some(rx))
        }
        _ => (StdinSlot::default(), None),
    };
    let handle = launch(
        conn,
        sink,
        current,
        (stdin, stdin_rx),
        (agent.to_owned(), holder_pid),
        ACK_BYTES,
        None,
    );
    Ok(Attached { handle, holder_pid })
}

/// Tells the holder of `agent` that its agent's end is recorded, if its agent has ended (a
/// daemon died between recording the end and releasing the holder). Returns whether a holder
/// answered at all; one whose agent still runs is left alone.
pub async fn release(root: &Path, agent: &str) -> bool {
    let dir = holder_dir(root, agent);
    let talk = async {
        let mut conn = Conn::connect(&dir).await.map_err(|e| e.to_string())?;
        let hello = ToHolder::Hello {
            version: PROTOCOL_VERSION,
            min_version: MIN_PROTOCOL_VERSION,
            resume_from: u64::MAX,
        };
        conn.send(&hello).await?;
        if let FromHolder::Welcome { status, .. } = conn.next().await? {
            if status.is_terminal() || status == Status::Starting {
                conn.send(&ToHolder::Release).await?;
            }
        }
        Ok::<(), String>(())
    };
    matches!(tokio::time::timeout(GREETING, talk).await, Ok(Ok(())))
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

fn launch(
    conn: Conn,
    sink: Arc<Sink>,
    status: Status,
    (stdin, stdin_rx): (StdinSlot, Option<mpsc::Receiver<Vec<u8>>>),
    (agent, holder_pid): (String, u32),
    ack_bytes: usize,
    recycle: Option<Launcher>,
) -> Handle {
    let (status_tx, status_rx) = watch::channel(status);
    let (requests_tx, requests_rx) = mpsc::channel(REQUEST_QUEUE);
    let actor = RemoteActor {
        conn,
        sink,
        status: status_tx,
        stdin: stdin.clone(),
        stdin_rx,
        in_flight: 0,
        pending: VecDeque::new(),
        acked: 0,
        delivered: 0,
        unacked_bytes: 0,
        ack_at: None,
        ack_bytes,
        agent,
        holder_pid,
        recycle,
        recycled_to: None,
    };
    tokio::spawn(actor.run(requests_rx));
    Handle::from_parts(requests_tx, status_rx, stdin)
}

/// A holder for `agent` in `dir`, sent its `Start`: one kept ready (started, connected and
/// greeted ahead) when there is one, else one the spawner starts now. The error is the
/// agent's `failed_to_start` reason, with the pid of the holder that may have been sent the
/// start (see [`abandon`]).
async fn start_holder(
    launcher: &Launcher,
    agent: &str,
    dir: &Path,
    spec: StartSpec,
) -> Result<(u32, Conn, u32), (String, Option<u32>)> {
    if let Some(mut ready) = launcher.take_ready(agent) {
        let moved = StartSpec {
            dir: Some(dir.to_string_lossy().into_owned()),
            ..spec.clone()
        };
        // A send fails only when the holder is gone (it died since it got ready): it never
        // had the start, so the agent gets a new holder. Once sent, the start is the agent's.
        if ready
            .conn
            .send(&ToHolder::Start { spec: moved })
            .await
            .is_ok()
        {
            return Ok((ready.pid, ready.conn, ready.version));
        }
        let _ = std::fs::remove_dir_all(dir);
    }
    let pid = launcher
        .spawn_holder(agent)
        .await
        .map_err(|error| (format!("cannot start the agent's holder: {error}"), None))?;
    let first_seq = spec.first_seq;
    let greeting = async {
        // Hello and start in one go: the holder answers both at one wake.
        let mut conn = Conn::connect(dir).await.map_err(|e| e.to_string())?;
        conn.send(&hello(first_seq)).await?;
        conn.send(&ToHolder::Start { spec }).await?;
        let version = welcome(&mut conn).await?;
        Ok::<_, String>((conn, version))
    };
    match tokio::time::timeout(GREETING, greeting).await {
        Ok(Ok((conn, version))) => Ok((pid, conn, version)),
        Ok(Err(error)) => Err((format!("the agent's holder failed: {error}"), Some(pid))),
        Err(_) => Err(("the agent's holder did not answer".to_owned(), Some(pid))),
    }
}

/// A spawn gave up on the holder it sent the start to (no first status in time, a broken
/// greeting): the spawn is reported `failed_to_start`, so no daemon would ever manage the
/// agent, yet the holder may start it later (it was stopped, or starved of CPU) or has started
/// it already. So the holder is killed (if `pid` still holds the agent's spool: a pid is not
/// signalled once reused), its directory removed, and whatever of the agent runs killed.
async fn abandon(pid: u32, agent: &str, dir: &Path) {
    let spool = dir.join(drover_holder::SPOOL);
    let spool = spool.canonicalize().unwrap_or(spool);
    if drover_holder::tree::has_open(pid, &spool) {
        if let Ok(raw) = i32::try_from(pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(raw),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    let _ = std::fs::remove_dir_all(dir);
    let killed = kill_agent_processes(agent).await;
    tracing::warn!(
        agent,
        holder = pid,
        killed = killed.len(),
        "spawn abandoned its holder"
    );
}

/// SIGKILLs every process carrying the agent's id (`DROVER_AGENT_ID`): a scan of every
/// process's environment, off the runtime's threads. `agent` is the holder's directory name,
/// which may add `.<run>` to the id (a run its restart policy started).
async fn kill_agent_processes(agent: &str) -> Vec<u32> {
    let id = agent.split('.').next().unwrap_or(agent).to_owned();
    let ids = HashSet::from([id]);
    tokio::task::spawn_blocking(move || drover_holder::tree::kill_agents(&ids))
        .await
        .unwrap_or_default()
}

/// Connects to the new holder in `dir` and greets it: the connection is ready for `Start`.
/// (Its records could only start at the first seq of the run, so `resume_from` is 1.)
pub(crate) async fn greet(dir: &Path) -> Result<(Conn, u32), String> {
    let greeting = async {
        let mut conn = Conn::connect(dir).await.map_err(|e| e.to_string())?;
        conn.send(&hello(1)).await?;
        let version = welcome(&mut conn).await?;
        Ok((conn, version))
    };
    tokio::time::timeout(GREETING, greeting)
        .await
        .map_err(|_| "the agent's holder did not answer".to_owned())?
}

fn hello(resume_from: u64) -> ToHolder {
    ToHolder::Hello {
        version: PROTOCOL_VERSION,
        min_version: MIN_PROTOCOL_VERSION,
        resume_from,
    }
}

/// A new holder's first answer: the protocol version it chose.
async fn welcome(conn: &mut Conn) -> Result<u32, String> {
    match conn.next().await? {
        FromHolder::Welcome { version, .. } => Ok(version),
        other => Err(format!("unexpected first answer {other:?}")),
    }
}

/// Waits for the `Welcome` a recycled holder sends once it is new (what the agent before it
/// sent is passed over), so its connection is ready for `Start`.
pub(crate) async fn recycled(conn: &mut Conn) -> Result<u32, String> {
    let fresh = async {
        loop {
            if let FromHolder::Welcome { version, .. } = conn.next().await? {
                return Ok(version);
            }
        }
    };
    tokio::time::timeout(GREETING, fresh)
        .await
        .map_err(|_| "the recycled holder did not answer".to_owned())?
}

/// One connection to a holder: frames in and out.
#[derive(Debug)]
pub(crate) struct Conn {
    reader: OwnedReadHalf,
    writer: OwnedWriteHalf,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
}

impl Conn {
    async fn connect(dir: &Path) -> std::io::Result<Conn> {
        let stream = UnixStream::connect(dir.join(drover_holder::SOCKET)).await?;
        let (reader, writer) = stream.into_split();
        Ok(Conn {
            reader,
            writer,
            inbuf: Vec::new(),
            outbuf: Vec::new(),
        })
    }

    /// Not closed by the holder, as far as can be told without waiting: reads what the socket
    /// holds (kept for [`Self::next`]) up to the point where it would wait (open) or ends
    /// (closed). It asks the socket itself: tokio's own `try_read` answers from the readiness
    /// its reactor last saw, which may predate the holder's death.
    pub(crate) fn is_open(&mut self) -> bool {
        use nix::sys::socket::{recv, MsgFlags};
        use std::os::fd::AsRawFd;
        let fd = AsRef::<UnixStream>::as_ref(&self.reader).as_raw_fd();
        let mut chunk = [0u8; 4096];
        loop {
            match recv(fd, &mut chunk, MsgFlags::MSG_DONTWAIT) {
                Ok(0) => return false,
                Ok(n) => self.inbuf.extend_from_slice(&chunk[..n]),
                Err(nix::errno::Errno::EAGAIN) => return true,
                Err(nix::errno::Errno::EINTR) => {}
                Err(_) => return false,
            }
        }
    }

    async fn send(&mut self, message: &ToHolder) -> Result<(), String> {
        self.outbuf.clear();
        wire::encode(message, &mut self.outbuf).map_err(|e| e.to_string())?;
        self.writer
            .write_all(&self.outbuf)
            .await
            .map_err(|e| e.to_string())
    }

    /// The next frame, reading as needed.
    async fn next(&mut self) -> Result<FromHolder, String> {
        loop {
            if let Some(message) = self.decoded()? {
                return Ok(message);
            }
            self.fill().await?;
        }
    }

    fn decoded(&mut self) -> Result<Option<FromHolder>, String> {
        wire::decode_from_holder(&mut self.inbuf).map_err(|e| e.to_string())
    }

    /// One read into the buffer (cancel-safe: a read either happened or did not).
    async fn fill(&mut self) -> Result<(), String> {
        let mut chunk = [0u8; 64 * 1024];
        match self.reader.read(&mut chunk).await {
            Ok(0) => Err("the holder closed the connection".to_owned()),
            Ok(n) => {
                self.inbuf.extend_from_slice(&chunk[..n]);
                Ok(())
            }
            Err(e) => Err(e.to_string()),
        }
    }
}

type Reply = oneshot::Sender<Result<Status, SupervisorError>>;

/// Stands for the holder in the daemon: forwards requests and stdin, delivers records and
/// statuses, acknowledges what the observer kept.
#[derive(Debug)]
struct RemoteActor {
    conn: Conn,
    sink: Arc<Sink>,
    status: watch::Sender<Status>,
    stdin: StdinSlot,
    stdin_rx: Option<mpsc::Receiver<Vec<u8>>>,
    in_flight: u64,
    pending: VecDeque<(Op, Reply)>,
    acked: u64,
    /// The last seq delivered to the observer, its output bytes since the last ack, and when
    /// the coalesced ack is due (see `ACK_AFTER`).
    delivered: u64,
    unacked_bytes: usize,
    ack_at: Option<tokio::time::Instant>,
    /// Unacknowledged spool bytes that call for an ack at once (see `ack_bytes`).
    ack_bytes: usize,
    agent: String,
    /// The holder's pid: when the connection ends while it still runs, the holder let go of
    /// this daemon (another one connected) and the agent is not lost to it.
    holder_pid: u32,
    /// The launcher to give the holder back to once the agent ended (protocol 2 holders this
    /// daemon started), and where it was moved when it was.
    recycle: Option<Launcher>,
    recycled_to: Option<PathBuf>,
}

impl RemoteActor {
    async fn run(mut self, mut requests: mpsc::Receiver<Request>) {
        let mut handles_open = true;
        let end = loop {
            // Frames already buffered first.
            match self.conn.decoded() {
                Ok(Some(message)) => {
                    // Boxed: the frame handling's state would otherwise sit in this loop's
                    // future, polled on the stack of whichever thread runs it.
                    if let Some(end) = Box::pin(self.on_message(message)).await {
                        break end;
                    }
                    continue;
                }
                Ok(None) => {}
                Err(e) => {
                    break self
                        .lost(format!("the holder sent a malformed frame: {e}"))
                        .await
                }
            }
            let stdin_ready = self.stdin_rx.is_some() && self.in_flight < STDIN_WINDOW;
            let ack_at = self.ack_at;
            tokio::select! {
                () = tokio::time::sleep_until(ack_at.unwrap_or_else(tokio::time::Instant::now)),
                    if ack_at.is_some() => self.ack().await,
                filled = self.conn.fill() => {
                    if let Err(e) = filled {
                        break self.lost(format!("the holder is gone: {e}")).await;
                    }
                }
                req = requests.recv(), if handles_open => match req {
                    Some(req) if matches!(req.op, Op::Detach) => {
                        let _ = req.reply.send(Ok(self.status.borrow().clone()));
                        // Ends without a status: the agent lives on under its holder.
                        return;
                    }
                    Some(req) => {
                        let op = match req.op {
                            Op::Detach => continue,
                            Op::Pause => wire::Op::Pause,
                            Op::Resume => wire::Op::Resume,
                            Op::Stop(grace) => wire::Op::Stop { grace_ms: millis(grace) },
                            Op::Kill => wire::Op::Kill,
                            Op::Signal(signal) => wire::Op::Signal { signal },
                        };
                        if self.conn.send(&ToHolder::Op { op }).await.is_err() {
                            let _ = req.reply.send(Err(SupervisorError::ActorGone));
                            break self.lost("the holder is gone".to_owned()).await;
                        }
                        self.pending.push_back((req.op, req.reply));
                    }
                    // Nobody can control the agent from here any more, but its holder keeps
                    // it: keep delivering its output and its end.
                    None => handles_open = false,
                },
                chunk = recv_stdin(&mut self.stdin_rx), if stdin_ready => match chunk {
                    Some(data) => {
                        self.in_flight += data.len() as u64;
                        let _ = self.conn.send(&ToHolder::Stdin { data }).await;
                    }
                    None => {
                        self.stdin_rx = None;
                        let _ = self.conn.send(&ToHolder::CloseStdin).await;
                    }
                },
            }
        };
        for (op, reply) in self.pending.drain(..) {
            let _ = reply.send(Err(SupervisorError::InvalidState {
                op: op.name(),
                state: end.name(),
            }));
        }
        self.set_status(end);
        if let (Some(launcher), Some(dir)) = (self.recycle.take(), self.recycled_to.take()) {
            launcher.recycled(self.holder_pid, dir, self.conn);
        }
    }

    /// Acknowledge what the observer kept of what was delivered.
    async fn ack(&mut self) {
        self.ack_at = None;
        let through = self
            .sink
            .kept_through()
            .unwrap_or(self.delivered)
            .min(self.delivered);
        if through > self.acked {
            self.acked = through;
            self.unacked_bytes = 0;
            let _ = self.conn.send(&ToHolder::Ack { through }).await;
        }
        if through < self.delivered {
            self.ack_at = Some(tokio::time::Instant::now() + ACK_RETRY);
        }
    }

    /// Handles one frame; the terminal status when the agent's life is over.
    async fn on_message(&mut self, message: FromHolder) -> Option<Status> {
        match message {
            FromHolder::Records { records } => {
                let last = records.last().map(|r| r.seq)?;
                let bytes: usize = records
                    .iter()
                    .map(|r| r.data.len() + drover_holder::spool::HEADER)
                    .sum();
                self.sink
                    .deliver_numbered(records.into_iter().map(convert_record).collect());
                self.delivered = self.delivered.max(last);
                self.unacked_bytes = self.unacked_bytes.saturating_add(bytes);
                if self.delivered.saturating_sub(self.acked) >= ACK_RECORDS
                    || self.unacked_bytes >= self.ack_bytes
                {
                    self.ack().await;
                } else if self.ack_at.is_none() {
                    self.ack_at = Some(tokio::time::Instant::now() + ACK_AFTER);
                }
            }
            FromHolder::Status { status } => {
                if status.is_terminal() {
                    // Everything before it was delivered; recorded by the caller of `run`.
                    // The holder may go once the observer has it: release it after, or move it
                    // to be kept ready for another agent.
                    self.set_status(status.clone());
                    let moved = self
                        .recycle
                        .as_ref()
                        .and_then(|launcher| launcher.recycle_slot(&self.agent));
                    let message = match &moved {
                        Some(dir) => ToHolder::Recycle {
                            dir: dir.to_string_lossy().into_owned(),
                        },
                        None => ToHolder::Release,
                    };
                    let _ = self.conn.send(&message).await;
                    self.recycled_to = moved;
                    return Some(status);
                }
                self.set_status(status);
            }
            FromHolder::Reply { result } => {
                if let Ok(status) = &result {
                    self.set_status(status.clone());
                }
                if let Some((_, reply)) = self.pending.pop_front() {
                    let _ = reply.send(result.map_err(convert_error));
                }
            }
            FromHolder::StdinWritten { bytes } => {
                self.in_flight = self.in_flight.saturating_sub(bytes);
            }
            FromHolder::StdinClosed => {
                let _ = self.stdin.close();
                self.stdin_rx = None;
                self.in_flight = 0;
            }
            FromHolder::Welcome { .. } | FromHolder::Refused { .. } => {}
        }
        None
    }

    /// The connection ended: the agent is lost to this daemon. If the holder is gone too,
    /// whatever is left of the agent is killed; a holder that still runs keeps it.
    async fn lost(&mut self, error: String) -> Status {
        let current = self.status.borrow().clone();
        if current.is_terminal() {
            return current;
        }
        if holder_stays(self.holder_pid).await {
            tracing::warn!(agent = %self.agent, %error, "the holder let go of this daemon");
            return Status::Lost {
                pid: current.pid(),
                started_at: current.started_at(),
                ended_at: unix_nanos(),
                error: format!(
                    "{error}; its holder (pid {}) still runs it",
                    self.holder_pid
                ),
            };
        }
        let killed = kill_agent_processes(&self.agent).await;
        tracing::warn!(agent = %self.agent, %error, killed = killed.len(), "holder lost");
        Status::Lost {
            pid: current.pid(),
            started_at: current.started_at(),
            ended_at: unix_nanos(),
            error,
        }
    }

    /// Observer first, then the watch (as the in-process actor); each change once.
    fn set_status(&self, status: Status) {
        if *self.status.borrow() == status {
            return;
        }
        self.sink.status(&status);
        self.status.send_replace(status);
    }
}

/// How long a holder whose connection closed is watched before it counts as still running.
const EXIT_SETTLE: Duration = Duration::from_millis(250);

/// Acknowledgements are coalesced: one goes out once `ACK_RECORDS` records or `ACK_BYTES` bytes
/// of output are unacknowledged, else `ACK_AFTER` after the first unacknowledged batch. An ack
/// is a write here and a wake-up in the holder; one per batch (a few lines each at a modest
/// rate) doubled the holder's wake-ups. The cost: the holder's spool keeps records the store
/// already holds up to that much longer before it is emptied. Bytes count as the spool holds
/// them (data and record header), and a quarter of a small `spool_limit` is the threshold when
/// lower, so a holder does not stop reading for want of an ack at full speed; the timer acks
/// whatever is left when output stops. (A re-attached holder's limit is not known here: the
/// default threshold applies.)
const ACK_RECORDS: u64 = 1024;
const ACK_BYTES: usize = 16 * 1024;
const ACK_AFTER: Duration = Duration::from_millis(20);
/// When the store has not kept everything delivered (its backlog is retrying a refused
/// append), the ack is tried again this often: the holder may have stopped reading its agent
/// on a full spool, and no records frame would come to prompt one.
const ACK_RETRY: Duration = Duration::from_millis(200);

/// The ack threshold in spool bytes for a holder with this spool limit.
fn ack_bytes(spool_limit: u64) -> usize {
    usize::try_from(spool_limit / 4)
        .unwrap_or(usize::MAX)
        .clamp(1024, ACK_BYTES)
}

/// True when the holder `pid` still runs once the connection closed, so it let go of this
/// daemon rather than died. A dying process closes its descriptors (the daemon reads EOF)
/// before it becomes a zombie, so a holder just SIGKILLed can look alive for a moment: it is
/// watched for up to [`EXIT_SETTLE`] before it is believed.
async fn holder_stays(pid: u32) -> bool {
    let deadline = tokio::time::Instant::now() + EXIT_SETTLE;
    loop {
        if !drover_holder::tree::is_alive(pid) {
            return false;
        }
        if tokio::time::Instant::now() >= deadline {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

async fn recv_stdin(rx: &mut Option<mpsc::Receiver<Vec<u8>>>) -> Option<Vec<u8>> {
    match rx {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn convert_record(r: WireRecord) -> CapturedRecord {
    CapturedRecord {
        seq: r.seq,
        ts: r.ts,
        stream: if r.stream == 2 {
            Stream::Stderr
        } else {
            Stream::Stdout
        },
        data: r.data,
        partial: r.partial,
    }
}

/// Names from the wire as the `&'static str`s the error type carries.
fn known(name: &str) -> &'static str {
    const NAMES: [&str; 13] = [
        "pause",
        "resume",
        "stop",
        "kill",
        "signal",
        "starting",
        "running",
        "paused",
        "stopping",
        "exited",
        "killed",
        "failed_to_start",
        "lost",
    ];
    NAMES
        .iter()
        .find(|n| **n == name)
        .copied()
        .unwrap_or("unknown")
}

fn convert_error(e: OpError) -> SupervisorError {
    match e {
        OpError::InvalidState { op, state } => SupervisorError::InvalidState {
            op: known(&op),
            state: known(&state),
        },
        OpError::InvalidSignal { signal } => SupervisorError::InvalidSignal(signal),
        OpError::Signal {
            signal,
            pgid,
            errno,
        } => SupervisorError::Signal {
            signal,
            pgid,
            source: nix::Error::from_raw(errno),
        },
    }
}
