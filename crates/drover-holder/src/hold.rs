//! The holder's one loop: `poll` over its listening socket, the daemon's connection, the
//! agent's pipes and a signalfd for SIGCHLD, with the nearest deadline as the timeout.

use std::io::{ErrorKind, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{SigSet, SigmaskHow, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};

use crate::agent::{self, Agent};
use crate::pool::{Link, News};
use crate::spool::Spool;
use crate::wire::{self, FromHolder, StartSpec, ToHolder, WireRecord};
use crate::{tree, unix_nanos, HolderError, Status};

/// Size of one pipe read: a Linux pipe holds 64 KiB, so one read empties a full pipe.
const READ_BUF: usize = 64 * 1024;
/// Bytes of frames queued for the daemon before the holder stops filling from the spool.
const OUT_HIGH: usize = 128 * 1024;
/// How often a holder whose agent ended checks that its socket still exists.
const ORPHAN_CHECK: Duration = Duration::from_secs(10);
/// A holder that no daemon is connected to, and none has greeted, gives up after this (a
/// daemon connects to its new holder as soon as the spawner answers).
const START_TIMEOUT: Duration = Duration::from_secs(60);

/// The daemon's connection.
#[derive(Debug)]
struct Conn {
    stream: UnixStream,
    inbuf: Vec<u8>,
    outbuf: Vec<u8>,
    /// `Hello` received (nothing is sent before it).
    greeted: bool,
    /// The protocol version chosen at the greeting.
    version: u32,
    /// The first seq this daemon wants.
    resume_from: u64,
    /// Offset in the spool of the next record to send.
    cursor: u64,
    /// The status last sent, so each change goes out once.
    sent_status: Option<Status>,
}

/// Everything one holder owns.
#[derive(Debug)]
struct Holder {
    dir: PathBuf,
    me: u32,
    listener: UnixListener,
    conn: Option<Conn>,
    signals: SignalFd,
    spool: Spool,
    spec: Option<StartSpec>,
    agent: Option<Agent>,
    status: Status,
    next_seq: u64,
    /// Every record up to this seq is stored by the daemon.
    acked: u64,
    /// Timestamp of the last record (they never go backwards as seq grows).
    last_ts: i64,
    released: bool,
    born: Instant,
    buf: Vec<u8>,
    /// Records the spool refused (a full disk): kept here, and the pipes are not read, until
    /// it takes them. At most one read's worth, so bounded.
    unspooled: Vec<WireRecord>,
    /// The refusal was logged (once per episode).
    spool_failing: bool,
    /// The agent's `max_runtime` stopped it.
    timed_out: bool,
    /// Waiting in the spawner's pool: the link that says where a spawn moved us.
    link: Option<Link>,
    /// Agents started so far (recycling starts another).
    uses: u32,
}

/// How often a refused spool append is retried.
const SPOOL_RETRY: Duration = Duration::from_millis(200);

/// Runs a holder in `dir`, listening on the socket it was given as its stdin (bound at
/// `dir/sock` by the spawner), until the daemon releases it.
pub fn run(dir: &Path) -> Result<(), HolderError> {
    hold(dir, None)
}

/// Runs a holder started ahead into the spawner's pool ([`crate::pool`]): its stdout is its
/// link to the spawner, which tells it where its directory went once a spawn claims it.
pub fn run_pooled(dir: &Path) -> Result<(), HolderError> {
    let link = std::io::stdout()
        .as_fd()
        .try_clone_to_owned()
        .map_err(|e| HolderError::Setup("taking the pool link", e))?;
    let null = std::fs::OpenOptions::new()
        .write(true)
        .open("/dev/null")
        .map_err(|e| HolderError::Setup("opening /dev/null", e))?;
    nix::unistd::dup2_stdout(&null).map_err(|e| HolderError::Setup("dup2", e.into()))?;
    drop(null);
    nix::fcntl::fcntl(
        &link,
        nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK),
    )
    .map_err(|e| HolderError::Setup("making the pool link non-blocking", e.into()))?;
    hold(dir, Some(Link::new(std::fs::File::from(link))))
}

fn hold(dir: &Path, link: Option<Link>) -> Result<(), HolderError> {
    let setup = |what: &'static str| move |e: std::io::Error| HolderError::Setup(what, e);
    // An agent's orphaned descendants come back to us, so none escapes a stop.
    nix::sys::prctl::set_child_subreaper(true)
        .map_err(|e| HolderError::Setup("PR_SET_CHILD_SUBREAPER", e.into()))?;
    let mut mask = SigSet::empty();
    mask.add(Signal::SIGCHLD);
    nix::sys::signal::sigprocmask(SigmaskHow::SIG_BLOCK, Some(&mask), None)
        .map_err(|e| HolderError::Setup("blocking SIGCHLD", e.into()))?;
    let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_NONBLOCK | SfdFlags::SFD_CLOEXEC)
        .map_err(|e| HolderError::Setup("signalfd", e.into()))?;
    let listener_fd = std::io::stdin()
        .as_fd()
        .try_clone_to_owned()
        .map_err(setup("taking the listening socket"))?;
    let listener = UnixListener::from(listener_fd);
    listener
        .set_nonblocking(true)
        .map_err(setup("making the socket non-blocking"))?;
    // Stdin goes back to /dev/null, so the listening socket is held once.
    let null = std::fs::File::open("/dev/null").map_err(setup("opening /dev/null"))?;
    nix::unistd::dup2_stdin(&null).map_err(|e| HolderError::Setup("dup2", e.into()))?;
    drop(null);
    let spool = Spool::create(&dir.join(crate::SPOOL)).map_err(setup("creating the spool"))?;
    let mut holder = Holder::new(dir, listener, signals, spool, link);
    holder.run();
    holder.cleanup();
    Ok(())
}

/// What `poll` reported, copied out so the holder can be changed afterwards.
#[derive(Debug, Default)]
struct Ready {
    signals: bool,
    listener: bool,
    conn_in: bool,
    conn_out: bool,
    conn_hup: bool,
    pipes: Vec<bool>,
    stdin: bool,
    link: bool,
}

impl Holder {
    /// A holder in `dir` with no agent yet, listening on `listener`.
    fn new(
        dir: &Path,
        listener: UnixListener,
        signals: SignalFd,
        spool: Spool,
        link: Option<Link>,
    ) -> Holder {
        Holder {
            dir: dir.to_path_buf(),
            me: std::process::id(),
            listener,
            conn: None,
            signals,
            spool,
            spec: None,
            agent: None,
            status: Status::Starting,
            next_seq: 1,
            acked: 0,
            last_ts: i64::MIN,
            released: false,
            born: Instant::now(),
            buf: vec![0; READ_BUF],
            unspooled: Vec::new(),
            spool_failing: false,
            timed_out: false,
            link,
            uses: 0,
        }
    }

    fn run(&mut self) {
        while !self.released {
            // A daemon that greeted us and keeps the connection open holds us ready for a
            // spawn to come (no timeout while it does; see `read_conn` for when it leaves).
            if self.waiting_for_a_greeting() && self.born.elapsed() > START_TIMEOUT {
                say!("drover-holder: no agent to start after {START_TIMEOUT:?}; exiting");
                return;
            }
            if self.status.is_terminal()
                && self.conn.is_none()
                && !self.dir.join(crate::SOCKET).exists()
            {
                say!("drover-holder: my socket is gone and my agent has ended; exiting");
                return;
            }
            let ready = match self.wait() {
                Ok(ready) => ready,
                Err(e) => {
                    say!("drover-holder: poll failed: {e}");
                    return;
                }
            };
            // The claim first: a daemon that connects learned of us after it.
            if ready.link && !self.read_link() {
                return;
            }
            if ready.signals {
                self.reap();
            }
            self.read_pipes(&ready.pipes);
            if ready.stdin {
                self.write_stdin();
            }
            if ready.listener {
                self.accept();
            }
            if ready.conn_in || ready.conn_hup {
                self.read_conn();
            }
            self.timers();
            self.finish_if_drained();
            self.pump();
            if ready.conn_out || self.conn.as_ref().is_some_and(|c| !c.outbuf.is_empty()) {
                self.flush_conn();
            }
        }
    }

    /// Polls everything that can make progress, until the nearest deadline.
    fn wait(&mut self) -> nix::Result<Ready> {
        let spool_full = !self.unspooled.is_empty()
            || self
                .spec
                .as_ref()
                .is_some_and(|s| self.spool.len() >= s.spool_limit);
        let mut fds = vec![
            PollFd::new(self.signals.as_fd(), PollFlags::POLLIN),
            PollFd::new(self.listener.as_fd(), PollFlags::POLLIN),
        ];
        let conn_at = self.conn.as_ref().map(|c| {
            let mut flags = PollFlags::POLLIN;
            if !c.outbuf.is_empty() {
                flags |= PollFlags::POLLOUT;
            }
            fds.push(PollFd::new(c.stream.as_fd(), flags));
            fds.len() - 1
        });
        let link_at = self.link.as_ref().map(|link| {
            fds.push(PollFd::new(link.as_fd(), PollFlags::POLLIN));
            fds.len() - 1
        });
        let mut pipe_at = Vec::new();
        let mut stdin_at = None;
        if let Some(agent) = &self.agent {
            for pipe in &agent.pipes {
                // A full spool stops the reading: the agent blocks, nothing is dropped.
                let flags = if spool_full {
                    PollFlags::empty()
                } else {
                    PollFlags::POLLIN
                };
                fds.push(PollFd::new(pipe.file.as_fd(), flags));
                pipe_at.push(fds.len() - 1);
            }
            if let Some(stdin) = &agent.stdin {
                if !agent.stdin_buf.is_empty() || agent.stdin_closing {
                    fds.push(PollFd::new(stdin.as_fd(), PollFlags::POLLOUT));
                    stdin_at = Some(fds.len() - 1);
                }
            }
        }
        let timeout = self.next_deadline().map_or(PollTimeout::NONE, |at| {
            let ms = at.saturating_duration_since(Instant::now()).as_millis() + 1;
            PollTimeout::try_from(ms.min(60_000)).unwrap_or(PollTimeout::MAX)
        });
        match poll(&mut fds, timeout) {
            Ok(_) => {}
            Err(nix::errno::Errno::EINTR) => return Ok(Ready::default()),
            Err(e) => return Err(e),
        }
        let has = |i: usize, f: PollFlags| fds[i].revents().is_some_and(|r| r.intersects(f));
        let gone = PollFlags::POLLIN | PollFlags::POLLHUP | PollFlags::POLLERR;
        Ok(Ready {
            signals: has(0, PollFlags::POLLIN),
            listener: has(1, PollFlags::POLLIN),
            conn_in: conn_at.is_some_and(|i| has(i, PollFlags::POLLIN)),
            conn_out: conn_at.is_some_and(|i| has(i, PollFlags::POLLOUT)),
            conn_hup: conn_at.is_some_and(|i| has(i, PollFlags::POLLHUP | PollFlags::POLLERR)),
            pipes: pipe_at.iter().map(|i| has(*i, gone)).collect(),
            stdin: stdin_at.is_some_and(|i| has(i, PollFlags::POLLOUT | PollFlags::POLLERR)),
            link: link_at.is_some_and(|i| has(i, gone)),
        })
    }

    /// What the spawner said: claimed (our directory moved; the start timeout counts from
    /// now), or gone before claiming us (false: exit, removing the pool directory).
    fn read_link(&mut self) -> bool {
        let Some(link) = self.link.as_mut() else {
            return true;
        };
        match link.read() {
            News::Nothing => true,
            News::Claimed(dir) => {
                self.dir = dir;
                self.born = Instant::now();
                self.link = None;
                true
            }
            News::Gone => {
                self.link = None;
                false
            }
        }
    }

    /// Started (or claimed from the pool) with no agent, and no daemon connected: the start
    /// timeout runs. (A connection not greeted yet stops it: its hello may be on its way.)
    fn waiting_for_a_greeting(&self) -> bool {
        self.status == Status::Starting
            && self.spec.is_none()
            && self.link.is_none()
            && self.conn.is_none()
    }

    fn next_deadline(&self) -> Option<Instant> {
        if self.waiting_for_a_greeting() {
            return Some(self.born + START_TIMEOUT);
        }
        if self.status.is_terminal() && self.conn.is_none() {
            // Waiting for a daemon to collect the end: look now and then whether anyone still
            // can (the state directory may be gone).
            return Some(Instant::now() + ORPHAN_CHECK);
        }
        let agent = self.agent.as_ref()?;
        let flush = self.spec.as_ref().map_or(Duration::from_millis(50), |s| {
            Duration::from_millis(s.partial_flush_ms)
        });
        let pipes = agent
            .pipes
            .iter()
            .filter_map(|p| p.pending_since.map(|t| t + flush));
        let draining = agent
            .reaped
            .is_some()
            .then(|| Instant::now() + Duration::from_millis(10));
        let retry = (!self.unspooled.is_empty()).then(|| Instant::now() + SPOOL_RETRY);
        pipes
            .chain(agent.kill_at)
            .chain(agent.runtime_at)
            .chain(agent.drain_until)
            .chain(draining)
            .chain(retry)
            .min()
    }

    /// Reaps every child that ended; the main process's end starts the drain.
    fn reap(&mut self) {
        while let Ok(Some(_)) = self.signals.read_signal() {}
        loop {
            match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::StillAlive) | Err(_) => break,
                Ok(status) => {
                    let Some(agent) = self.agent.as_mut() else {
                        continue;
                    };
                    if status.pid().map(|p| p.as_raw() as u32) == Some(agent.pid)
                        && agent.reaped.is_none()
                    {
                        agent.reaped = Some(agent.ended(status));
                        let drain = self.spec.as_ref().map_or(2000, |s| s.drain_timeout_ms);
                        agent.drain_until = Some(Instant::now() + Duration::from_millis(drain));
                        agent.kill_at = None;
                        agent.runtime_at = None;
                        // Leftovers die with the agent (group and escaped descendants alike).
                        agent.kill_everything(self.me);
                        agent.stdin = None;
                        agent.stdin_buf = Vec::new();
                    }
                }
            }
        }
    }

    /// Reads what is ready from the agent's pipes into records and the spool.
    fn read_pipes(&mut self, ready: &[bool]) {
        let Some(agent) = self.agent.as_mut() else {
            return;
        };
        let mut records = Vec::new();
        let mut closed = Vec::new();
        for (i, pipe) in agent.pipes.iter_mut().enumerate() {
            if !ready.get(i).copied().unwrap_or(false) {
                continue;
            }
            match pipe.file.read(&mut self.buf) {
                Ok(0) => closed.push(i),
                Ok(n) => {
                    let ts = unix_nanos();
                    let mut emitted = false;
                    let stream = pipe.stream;
                    pipe.splitter.push(&self.buf[..n], |data, partial| {
                        emitted = true;
                        records.push(WireRecord {
                            seq: 0,
                            ts,
                            stream,
                            data,
                            partial,
                        });
                    });
                    pipe.pending_since = crate::split::idle_since(
                        pipe.pending_since,
                        emitted,
                        pipe.splitter.has_pending(),
                        Instant::now(),
                    );
                }
                Err(e)
                    if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {}
                Err(e) => {
                    say!("drover-holder: reading the agent's output failed: {e}");
                    closed.push(i);
                }
            }
        }
        for i in closed.into_iter().rev() {
            let mut pipe = agent.pipes.remove(i);
            if let Some(data) = pipe.splitter.flush() {
                records.push(WireRecord {
                    seq: 0,
                    ts: unix_nanos(),
                    stream: pipe.stream,
                    data,
                    partial: true,
                });
            }
        }
        self.spool_records(records);
    }

    /// Numbers records and appends them to the spool (after any it refused before).
    fn spool_records(&mut self, mut records: Vec<WireRecord>) {
        for r in &mut records {
            r.seq = self.next_seq;
            self.next_seq += 1;
            r.ts = r.ts.max(self.last_ts);
            self.last_ts = r.ts;
        }
        self.unspooled.append(&mut records);
        if self.unspooled.is_empty() {
            return;
        }
        let start = self.spool.len();
        match self.spool.append(&self.unspooled) {
            Ok(()) => {
                let records = std::mem::take(&mut self.unspooled);
                self.send_appended(start, records);
                self.spool_failing = false;
            }
            Err(e) => {
                // Kept in memory, and no more is read until the spool takes them: the agent
                // blocks on its output, nothing is dropped.
                if !self.spool_failing {
                    self.spool_failing = true;
                    say!("drover-holder: the spool refuses records ({e}); holding the agent's output");
                }
            }
        }
    }

    fn write_stdin(&mut self) {
        let Some(agent) = self.agent.as_mut() else {
            return;
        };
        let Some(stdin) = agent.stdin.as_mut() else {
            return;
        };
        let mut written = 0u64;
        let mut closed = false;
        while !agent.stdin_buf.is_empty() {
            match stdin.write(&agent.stdin_buf) {
                Ok(n) => {
                    agent.stdin_buf.drain(..n);
                    written += n as u64;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    closed = true;
                    break;
                }
            }
        }
        if agent.stdin_closing && agent.stdin_buf.is_empty() {
            closed = true;
        }
        if closed {
            agent.stdin = None;
            agent.stdin_buf = Vec::new();
        }
        // Only to a daemon that greeted us: a just-accepted connection (a restarted daemon)
        // expects `Welcome` first, and takes anything else for a broken holder. Its writes
        // start afresh; one to a pipe closed by then is answered with `StdinClosed`.
        if !self.conn.as_ref().is_some_and(|c| c.greeted) {
            return;
        }
        if written > 0 {
            self.send(&FromHolder::StdinWritten { bytes: written });
        }
        if closed {
            self.send(&FromHolder::StdinClosed);
        }
    }

    /// A new daemon connection replaces the old one (a restarted daemon).
    fn accept(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => {
                    if stream.set_nonblocking(true).is_err() {
                        continue;
                    }
                    self.conn = Some(Conn {
                        stream,
                        inbuf: Vec::new(),
                        outbuf: Vec::new(),
                        greeted: false,
                        version: wire::PROTOCOL_VERSION,
                        resume_from: 1,
                        cursor: 0,
                        sent_status: None,
                    });
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    }

    fn read_conn(&mut self) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        let mut open = true;
        loop {
            match conn.stream.read(&mut self.buf) {
                Ok(0) => {
                    open = false;
                    break;
                }
                Ok(n) => conn.inbuf.extend_from_slice(&self.buf[..n]),
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    open = false;
                    break;
                }
            }
        }
        loop {
            let Some(conn) = self.conn.as_mut() else {
                return;
            };
            match wire::decode::<ToHolder>(&mut conn.inbuf) {
                Ok(Some(message)) => self.handle(message),
                Ok(None) => break,
                Err(e) => {
                    say!("drover-holder: dropping a daemon connection: {e}");
                    self.conn = None;
                    return;
                }
            }
        }
        if !open {
            // The daemon went away: keep capturing into the spool until one comes back. One
            // that greeted us and left before any start will not start an agent here (it held
            // us ready and is gone, or gave up on the spawn): exit, removing our directory.
            let greeted = self.conn.take().is_some_and(|c| c.greeted);
            if greeted && self.spec.is_none() && self.link.is_none() {
                self.released = true;
            }
        }
    }

    fn handle(&mut self, message: ToHolder) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        if !conn.greeted {
            let ToHolder::Hello {
                version,
                min_version,
                resume_from,
            } = message
            else {
                self.conn = None;
                return;
            };
            let chosen = version.min(wire::PROTOCOL_VERSION);
            if chosen < min_version.max(wire::MIN_PROTOCOL_VERSION) {
                let message = format!(
                    "this holder speaks protocol {}..={}, the daemon {min_version}..={version}",
                    wire::MIN_PROTOCOL_VERSION,
                    wire::PROTOCOL_VERSION
                );
                self.send(&FromHolder::Refused {
                    version: wire::PROTOCOL_VERSION,
                    message,
                });
                return;
            }
            conn.greeted = true;
            conn.version = chosen;
            conn.resume_from = resume_from;
            conn.cursor = 0;
            // Whatever the daemon has, it stored: those records need not be kept.
            self.acked = self.acked.max(resume_from.saturating_sub(1));
            let welcome = FromHolder::Welcome {
                version: chosen,
                holder_pid: self.me,
                status: self.status.clone(),
                next_seq: self.next_seq,
                first_kept: self.first_kept(),
                timed_out: self.timed_out,
            };
            // The status follows the replay (pump), even when unchanged: a daemon that comes
            // back to an ended agent learns the end after the last record.
            self.send(&welcome);
            return;
        }
        match message {
            ToHolder::Hello { .. } => {}
            ToHolder::Start { spec } => self.start(spec),
            ToHolder::Ack { through } => {
                self.acked = self.acked.max(through);
                self.compact();
            }
            ToHolder::Op { op } => {
                let result = match self.agent.as_mut() {
                    Some(agent) if !self.status.is_terminal() => {
                        agent.apply(self.me, op, &self.status)
                    }
                    _ => Err(wire::OpError::InvalidState {
                        op: op.name().to_owned(),
                        state: self.status.name().to_owned(),
                    }),
                };
                if let Ok(status) = &result {
                    self.status = status.clone();
                    if let Some(conn) = self.conn.as_mut() {
                        conn.sent_status = Some(status.clone());
                    }
                }
                self.send(&FromHolder::Reply { result });
            }
            ToHolder::Stdin { data } => match self.agent.as_mut() {
                Some(agent) if agent.stdin.is_some() && !agent.stdin_closing => {
                    agent.stdin_buf.extend_from_slice(&data);
                    self.write_stdin();
                }
                _ => self.send(&FromHolder::StdinClosed),
            },
            ToHolder::CloseStdin => {
                if let Some(agent) = self.agent.as_mut() {
                    agent.stdin_closing = true;
                }
                self.write_stdin();
            }
            ToHolder::Release => {
                if self.status.is_terminal() || self.spec.is_none() {
                    self.released = true;
                }
            }
            ToHolder::Recycle { dir } => {
                if self.status.is_terminal() {
                    // The daemon moved our directory already: whether we stay or go, it is
                    // there now (so a holder that goes cleans up the right one).
                    self.dir = PathBuf::from(dir);
                    // A descendant still here (killed at the drain deadline, not yet reaped)
                    // must not meet the next agent: this holder goes instead.
                    if self.uses >= wire::MAX_USES || !tree::children(self.me).is_empty() {
                        self.released = true;
                    } else {
                        self.recycle();
                    }
                }
            }
        }
    }

    /// Forget the ended agent and become a fresh holder in our (moved) directory (see
    /// [`ToHolder::Recycle`]).
    fn recycle(&mut self) {
        if let Err(e) = self.spool.clear() {
            // A spool that cannot be emptied cannot serve another agent.
            say!("drover-holder: emptying the spool to be recycled failed: {e}");
            self.released = true;
            return;
        }
        // The diagnostics of the agent before are no concern of the next one's. By path: the
        // log in our directory is ours (the spawner opened it for appending, as our stderr),
        // while our stderr itself may be anything when we were not started by a spawner.
        if let Ok(log) = std::fs::OpenOptions::new()
            .write(true)
            .open(self.dir.join(crate::LOG))
        {
            let _ = log.set_len(0);
        }
        self.spec = None;
        self.agent = None;
        self.status = Status::Starting;
        self.next_seq = 1;
        self.acked = 0;
        self.last_ts = i64::MIN;
        self.unspooled = Vec::new();
        self.spool_failing = false;
        self.timed_out = false;
        self.born = Instant::now();
        let mut version = wire::PROTOCOL_VERSION;
        if let Some(conn) = self.conn.as_mut() {
            conn.resume_from = 1;
            conn.cursor = 0;
            conn.sent_status = None;
            version = conn.version;
        }
        let welcome = FromHolder::Welcome {
            version,
            holder_pid: self.me,
            status: Status::Starting,
            next_seq: 1,
            first_kept: 1,
            timed_out: false,
        };
        self.send(&welcome);
    }

    /// The first seq still in the spool (or the next one, when it is empty).
    fn first_kept(&self) -> u64 {
        if self.spool.is_empty() {
            return self.next_seq;
        }
        match self.spool.read_at(0, 1) {
            Ok((records, _)) => records.first().map_or(self.next_seq, |r| r.seq),
            Err(_) => self.next_seq,
        }
    }

    /// Empties the spool once the daemon stored everything in it and was sent all of it.
    fn compact(&mut self) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        if self.acked + 1 >= self.next_seq && conn.cursor >= self.spool.len() {
            if let Err(e) = self.spool.clear() {
                say!("drover-holder: emptying the spool failed: {e}");
                return;
            }
            conn.cursor = 0;
        }
    }

    fn start(&mut self, spec: StartSpec) {
        if self.spec.is_some() {
            return;
        }
        if let Some(dir) = &spec.dir {
            self.dir = PathBuf::from(dir);
        }
        self.uses += 1;
        self.next_seq = spec.first_seq.max(1);
        self.acked = self.next_seq - 1;
        match agent::start(&spec) {
            Ok(agent) => {
                self.status = agent.running();
                self.agent = Some(agent);
            }
            Err(error) => {
                self.status = Status::FailedToStart {
                    error,
                    ended_at: unix_nanos(),
                };
            }
        }
        self.spec = Some(spec);
    }

    fn timers(&mut self) {
        if !self.unspooled.is_empty() {
            self.spool_records(Vec::new());
        }
        let now = Instant::now();
        let flush = self.spec.as_ref().map_or(Duration::from_millis(50), |s| {
            Duration::from_millis(s.partial_flush_ms)
        });
        let grace = self.spec.as_ref().map_or(Duration::from_secs(10), |s| {
            Duration::from_millis(s.runtime_grace_ms)
        });
        // A line is cut by the clock only when its rest has not come: read what the pipes
        // hold first. (The holder may have been off the CPU for longer than `flush` since its
        // last read while the agent went on writing.) Not past the spool's limit: that is
        // backpressure, and the pipes stay unread.
        let due = self.agent.as_ref().is_some_and(|agent| {
            agent
                .pipes
                .iter()
                .any(|pipe| pipe.pending_since.is_some_and(|t| t + flush <= now))
        });
        let spool_full = !self.unspooled.is_empty()
            || self
                .spec
                .as_ref()
                .is_some_and(|s| self.spool.len() >= s.spool_limit);
        if due && !spool_full {
            let pipes = self.agent.as_ref().map_or(0, |agent| agent.pipes.len());
            self.read_pipes(&vec![true; pipes]);
        }
        let Some(agent) = self.agent.as_mut() else {
            return;
        };
        let mut records = Vec::new();
        for pipe in &mut agent.pipes {
            if pipe.pending_since.is_some_and(|t| t + flush <= now) {
                pipe.pending_since = None;
                if let Some(data) = pipe.splitter.flush() {
                    records.push(WireRecord {
                        seq: 0,
                        ts: unix_nanos(),
                        stream: pipe.stream,
                        data,
                        partial: true,
                    });
                }
            }
        }
        if agent.kill_at.is_some_and(|t| t <= now) {
            agent.kill_at = None;
            agent.kill_everything(self.me);
        }
        if agent.runtime_at.is_some_and(|t| t <= now) {
            agent.runtime_at = None;
            if let Ok(status) = agent.stop(grace, &self.status) {
                self.status = status;
                self.timed_out = true;
            }
        }
        self.spool_records(records);
    }

    /// After the reap: once the pipes are at EOF (or the drain time is over) and no descendant
    /// is left, flush the unfinished lines and take the terminal status.
    fn finish_if_drained(&mut self) {
        let Some(agent) = self.agent.as_mut() else {
            return;
        };
        let Some(terminal) = agent.reaped.clone() else {
            return;
        };
        let late = agent.drain_until.is_some_and(|t| t <= Instant::now());
        if !agent.pipes.is_empty() && !late {
            return;
        }
        if !tree::children(self.me).is_empty() {
            // Killed already; keep reaping (SIGCHLD wakes us), and kill what appeared since.
            tree::kill_all(self.me, None);
            if !late {
                return;
            }
        }
        let mut records = Vec::new();
        for mut pipe in agent.pipes.drain(..) {
            if let Some(data) = pipe.splitter.flush() {
                records.push(WireRecord {
                    seq: 0,
                    ts: unix_nanos(),
                    stream: pipe.stream,
                    data,
                    partial: true,
                });
            }
        }
        agent.reaped = None;
        agent.drain_until = None;
        self.spool_records(records);
        self.status = terminal;
    }

    /// Records just appended at spool offset `start` go straight to a connection that had sent
    /// everything before them, rather than being read back from the spool by [`Self::pump`]
    /// (with 100-byte lines that read was a fifth of the holder's time).
    fn send_appended(&mut self, start: u64, records: Vec<WireRecord>) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        // Past these bounds `pump` sends them, in pieces of a bounded size.
        let appended = self.spool.len() - start;
        if !conn.greeted
            || conn.cursor != start
            || conn.outbuf.len() >= OUT_HIGH
            || appended > OUT_HIGH as u64
        {
            return;
        }
        conn.cursor = self.spool.len();
        let first = records.partition_point(|r| r.seq < conn.resume_from);
        if let Err(e) = wire::encode_records(&records[first..], &mut conn.outbuf) {
            say!("drover-holder: encoding records failed: {e}");
        }
    }

    /// Fills the connection from the spool, then the status once every record before it went.
    fn pump(&mut self) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        if !conn.greeted {
            return;
        }
        while conn.outbuf.len() < OUT_HIGH && conn.cursor < self.spool.len() {
            let (records, next) = match self.spool.read_at(conn.cursor, OUT_HIGH / 2) {
                Ok(read) => read,
                Err(e) => {
                    say!("drover-holder: reading the spool failed: {e}");
                    return;
                }
            };
            conn.cursor = next;
            let first = records.partition_point(|r| r.seq < conn.resume_from);
            if let Err(e) = wire::encode_records(&records[first..], &mut conn.outbuf) {
                say!("drover-holder: encoding records failed: {e}");
            }
        }
        let caught_up = conn.cursor >= self.spool.len() && self.unspooled.is_empty();
        if caught_up && conn.sent_status.as_ref() != Some(&self.status) {
            conn.sent_status = Some(self.status.clone());
            let status = FromHolder::Status {
                status: self.status.clone(),
            };
            let _ = wire::encode(&status, &mut conn.outbuf);
        }
        self.compact();
    }

    fn send(&mut self, message: &FromHolder) {
        if let Some(conn) = self.conn.as_mut() {
            if let Err(e) = wire::encode(message, &mut conn.outbuf) {
                say!("drover-holder: encoding a message failed: {e}");
            }
        }
    }

    fn flush_conn(&mut self) {
        let Some(conn) = self.conn.as_mut() else {
            return;
        };
        while !conn.outbuf.is_empty() {
            match conn.stream.write(&conn.outbuf) {
                Ok(n) => {
                    conn.outbuf.drain(..n);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => {
                    self.conn = None;
                    return;
                }
            }
        }
        // Give back a buffer a burst grew, once it is sent (never while it holds unsent bytes).
        if conn.outbuf.is_empty() && conn.outbuf.capacity() > 4 * OUT_HIGH {
            conn.outbuf = Vec::new();
        }
    }

    /// Released (or given up): remove the spool, the socket and the directory.
    fn cleanup(&mut self) {
        if let Some(conn) = self.conn.as_mut() {
            let _ = conn.stream.set_nonblocking(false);
            let _ = conn.stream.write_all(&conn.outbuf);
        }
        let _ = std::fs::remove_file(self.dir.join(crate::SPOOL));
        let _ = std::fs::remove_file(self.dir.join(crate::SOCKET));
        let _ = std::fs::remove_file(self.dir.join(crate::LOG));
        let _ = std::fs::remove_dir(&self.dir);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A holder in `dir` with no agent, as `hold` sets one up (without touching this process's
    /// stdin or signal mask).
    fn idle_holder(dir: &Path) -> Holder {
        let listener = UnixListener::bind(dir.join(crate::SOCKET)).expect("bind");
        let signals =
            SignalFd::with_flags(&SigSet::empty(), SfdFlags::SFD_CLOEXEC).expect("signalfd");
        let spool = Spool::create(&dir.join(crate::SPOOL)).expect("spool");
        Holder::new(dir, listener, signals, spool, None)
    }

    fn conn(greeted: bool) -> Conn {
        let (stream, _peer) = UnixStream::pair().expect("pair");
        Conn {
            stream,
            inbuf: Vec::new(),
            outbuf: Vec::new(),
            greeted,
            version: wire::PROTOCOL_VERSION,
            resume_from: 1,
            cursor: 0,
            sent_status: None,
        }
    }

    /// Stdin the holder writes while a new daemon connects (a restart) is not reported to that
    /// daemon before its greeting: it expects `Welcome` first, and took a `StdinWritten`
    /// there for a broken holder (it then killed the agent as lost).
    #[test]
    fn stdin_written_is_not_reported_to_a_daemon_before_its_greeting() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut holder = idle_holder(dir.path());
        holder.start(StartSpec {
            program: "cat".into(),
            args: Vec::new(),
            env: Vec::new(),
            cwd: None,
            stdin_pipe: true,
            first_seq: 1,
            max_record: 4096,
            partial_flush_ms: 50,
            max_runtime_ms: None,
            runtime_grace_ms: 1000,
            drain_timeout_ms: 1000,
            spool_limit: 1 << 20,
            stop_signal: nix::sys::signal::Signal::SIGTERM as i32,
            dir: None,
        });
        let write = |holder: &mut Holder| {
            let agent = holder.agent.as_mut().expect("started");
            agent.stdin_buf.extend_from_slice(b"hello\n");
            holder.write_stdin();
            assert!(holder.agent.as_ref().expect("started").stdin_buf.is_empty());
        };
        holder.conn = Some(conn(false));
        write(&mut holder);
        assert!(holder.conn.as_ref().expect("conn").outbuf.is_empty());
        // Greeted, the same write is reported.
        holder.conn = Some(conn(true));
        write(&mut holder);
        let mut out = std::mem::take(&mut holder.conn.as_mut().expect("conn").outbuf);
        match wire::decode_from_holder(&mut out).expect("a frame") {
            Some(FromHolder::StdinWritten { bytes }) => assert_eq!(bytes, 6),
            other => panic!("expected stdin written, got {other:?}"),
        }
        // Only the agent: this test process has other tests' children.
        let pid = nix::unistd::Pid::from_raw(holder.agent.as_ref().expect("started").pid as i32);
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL).expect("kill");
        nix::sys::wait::waitpid(pid, None).expect("reap");
    }

    #[test]
    fn a_holder_nobody_greets_has_a_deadline_and_one_kept_ready_has_none() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut holder = idle_holder(dir.path());
        // No daemon connected: the start timeout is a poll deadline (without one, a holder
        // whose daemon died before greeting it slept in `poll` for good).
        assert!(holder.waiting_for_a_greeting());
        assert_eq!(holder.next_deadline(), Some(holder.born + START_TIMEOUT));
        // A daemon connected (its hello may be on its way) or greeted: no timeout.
        holder.conn = Some(conn(false));
        assert!(!holder.waiting_for_a_greeting());
        assert_eq!(holder.next_deadline(), None);
        holder.conn = Some(conn(true));
        assert_eq!(holder.next_deadline(), None);
        // Waiting in the pool: the spawner's link ends it, not a timeout.
        holder.conn = None;
        let (reader, _writer) = nix::unistd::pipe().expect("pipe");
        holder.link = Some(Link::new(std::fs::File::from(reader)));
        assert!(!holder.waiting_for_a_greeting());
    }

    #[test]
    fn a_recycled_holder_forgets_its_agent_and_answers_as_a_new_one() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut holder = idle_holder(dir.path());
        // `me` is whose descendants block a recycle: a process with none (this test process
        // may have children of other tests).
        let mut childless = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        holder.me = childless.id();
        holder.conn = Some(conn(true));
        let record = WireRecord {
            seq: 7,
            ts: 1,
            stream: 1,
            data: b"old\n".to_vec(),
            partial: false,
        };
        holder.spool.append(&[record]).expect("append");
        holder.status = Status::Exited {
            code: 3,
            started_at: 1,
            ended_at: 2,
        };
        holder.next_seq = 8;
        holder.acked = 5;
        holder.timed_out = true;
        holder.uses = 1;
        if let Some(c) = holder.conn.as_mut() {
            c.cursor = 40;
            c.resume_from = 3;
            c.sent_status = Some(holder.status.clone());
        }
        // The daemon moved the directory, the log with it.
        let moved = dir.path().join("moved");
        std::fs::create_dir(&moved).expect("moved");
        std::fs::write(moved.join(crate::LOG), b"the agent before\n").expect("log");
        holder.handle(ToHolder::Recycle {
            dir: moved.display().to_string(),
        });
        assert_eq!(std::fs::read(moved.join(crate::LOG)).expect("log"), b"");
        assert!(!holder.released);
        assert_eq!(holder.dir, moved);
        assert_eq!(holder.status, Status::Starting);
        assert!(holder.spool.is_empty());
        assert_eq!(
            (holder.next_seq, holder.acked, holder.timed_out),
            (1, 0, false)
        );
        let c = holder.conn.as_mut().expect("conn");
        assert_eq!(
            (c.cursor, c.resume_from, c.sent_status.clone()),
            (0, 1, None)
        );
        let mut out = std::mem::take(&mut c.outbuf);
        match wire::decode_from_holder(&mut out).expect("a frame") {
            Some(FromHolder::Welcome {
                status, next_seq, ..
            }) => assert_eq!((status, next_seq), (Status::Starting, 1)),
            other => panic!("expected a welcome, got {other:?}"),
        }
        // One that has held MAX_USES agents goes instead, in its moved directory.
        holder.status = Status::Exited {
            code: 0,
            started_at: 1,
            ended_at: 2,
        };
        holder.uses = wire::MAX_USES;
        let last = dir.path().join("last");
        holder.handle(ToHolder::Recycle {
            dir: last.display().to_string(),
        });
        assert!(holder.released);
        assert_eq!(holder.dir, last);
        childless.kill().expect("kill");
        childless.wait().expect("wait");
    }

    #[test]
    fn a_holder_with_a_descendant_left_goes_instead_of_being_recycled() {
        use std::os::unix::process::CommandExt;
        let dir = tempfile::tempdir().expect("tempdir");
        let mut holder = idle_holder(dir.path());
        // `me` stands for a holder whose agent left a child behind (not reaped yet).
        // A group of its own, so the child goes with it at the end.
        let mut parent = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & echo started; wait"])
            .process_group(0)
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("sh");
        let mut started = [0u8; 8];
        std::io::Read::read_exact(parent.stdout.as_mut().expect("stdout"), &mut started)
            .expect("the child started");
        holder.me = parent.id();
        assert!(!tree::children(holder.me).is_empty());
        holder.conn = Some(conn(true));
        holder.status = Status::Killed {
            signal: 9,
            started_at: 1,
            ended_at: 2,
        };
        holder.uses = 1;
        let moved = dir.path().join("moved");
        holder.handle(ToHolder::Recycle {
            dir: moved.display().to_string(),
        });
        assert!(holder.released, "not recycled with a descendant left");
        assert_eq!(holder.dir, moved, "and it cleans up where it was moved to");
        assert_eq!(
            holder.status,
            Status::Killed {
                signal: 9,
                started_at: 1,
                ended_at: 2
            }
        );
        let pgid = nix::unistd::Pid::from_raw(-i32::try_from(parent.id()).expect("pid"));
        nix::sys::signal::kill(pgid, nix::sys::signal::Signal::SIGKILL).expect("kill the group");
        parent.wait().expect("wait");
    }
}
