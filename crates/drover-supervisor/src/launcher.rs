//! Starting holders: the holder executable, and the spawner process that starts them.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::{Arc, Mutex};

use drover_holder::spawner::{SpawnReply, SpawnRequest};
use drover_holder::wire;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::{mpsc, oneshot};

use crate::remote::Conn;

/// How to run the holder executable: `program args.. spawner` (its forks are the holders;
/// `program args.. hold DIR` only from a spawner that cannot fork).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HolderProgram {
    pub program: PathBuf,
    pub args: Vec<OsString>,
}

impl HolderProgram {
    /// The `drover` executable's hidden subcommand: `drover holder ...`.
    pub fn drover(drover: PathBuf) -> Self {
        HolderProgram {
            program: drover,
            args: vec!["holder".into()],
        }
    }

    /// A `drover-holder` executable in the same directory as `exe` that holds the same holder
    /// code as this process ([`drover_holder::BUILD`], asked with `drover-holder build`), or
    /// `None`: none is there, it fails, or it is of another build (a stale one must not run
    /// this build's agents).
    pub fn same_build_beside(exe: &Path) -> Option<Self> {
        let program = exe.parent()?.join("drover-holder");
        if !program.is_file() {
            return None;
        }
        let mut child = std::process::Command::new(&program)
            .arg("build")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .ok()?;
        // It answers at once; one that does not within BUILD_ANSWER is not used.
        let asked = std::time::Instant::now();
        let status = loop {
            match child.try_wait() {
                Ok(Some(status)) => break status,
                Ok(None) if asked.elapsed() < BUILD_ANSWER => {
                    std::thread::sleep(std::time::Duration::from_millis(5));
                }
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    return None;
                }
            }
        };
        let mut build = String::new();
        if let Some(out) = child.stdout.take() {
            use std::io::Read;
            let _ = out.take(256).read_to_string(&mut build);
        }
        if !status.success() || build.trim() != drover_holder::BUILD {
            tracing::info!(
                program = %program.display(),
                build = %build.trim(),
                ours = drover_holder::BUILD,
                "not using the drover-holder beside this executable: it is of another build"
            );
            return None;
        }
        Some(HolderProgram {
            program,
            args: Vec::new(),
        })
    }

    /// A `drover-holder` executable beside the running one, or in its parent directory (a
    /// test binary in `target/*/deps` finds `target/*/drover-holder`).
    pub fn beside_current_exe() -> Option<Self> {
        let exe = std::env::current_exe().ok()?;
        let dir = exe.parent()?;
        let found = [Some(dir), dir.parent()]
            .into_iter()
            .flatten()
            .map(|d| d.join("drover-holder"))
            .find(|p| p.is_file());
        found.map(|program| HolderProgram {
            program,
            args: Vec::new(),
        })
    }
}

/// How long `drover-holder build` may take to answer before that executable is not used.
const BUILD_ANSWER: std::time::Duration = std::time::Duration::from_secs(5);

type Pending = oneshot::Sender<Result<u32, String>>;

/// The daemon's side of the spawner: requests are queued to one task that owns the spawner
/// process, writes requests and reads the replies in order. A spawner that died is started
/// again at the next request.
#[derive(Debug, Clone)]
pub struct Launcher {
    requests: mpsc::Sender<(SpawnRequest, Pending)>,
    root: PathBuf,
    ready: Arc<Ready>,
}

/// Holders the daemon keeps ready ahead of any spawn: started (by the spawner, from its own
/// pool), connected and greeted, each in its own directory under `holders.ready/`. A spawn
/// takes one, renames its directory to the agent's and sends `Start` (with the new directory)
/// on the connection it already has: no round trip to the spawner and no connect on the
/// spawn's path. The one taken is replaced in the background.
///
/// A ready holder exits, removing its directory, when its connection closes before a start
/// (the daemon stopped or died), so none outlives its daemon.
#[derive(Debug)]
struct Ready {
    dir: PathBuf,
    state: Mutex<ReadyState>,
}

#[derive(Debug, Default)]
struct ReadyState {
    waiting: VecDeque<ReadyHolder>,
    /// Being started and greeted.
    preparing: usize,
    /// Names their directories.
    next: u64,
    /// Failed to get ready since the last one that did.
    failed: u32,
    /// Turned off after [`MOST_FAILED`] failures in a row, until then: spawns go to the
    /// spawner meanwhile.
    off_until: Option<std::time::Instant>,
    /// Names this launcher's ready directories apart from an earlier daemon's (a holder of
    /// a crashed daemon may still be going away in `holders.ready`).
    instance: String,
}

/// A holder ready for a spawn: its pid, its directory and its greeted connection.
#[derive(Debug)]
pub(crate) struct ReadyHolder {
    pub(crate) pid: u32,
    pub(crate) dir: PathBuf,
    pub(crate) conn: Conn,
    /// The protocol version it chose.
    pub(crate) version: u32,
}

/// Holders started ahead to be kept ready.
pub const READY: usize = 2;
/// Holders kept ready at most, counting those recycled: a holder whose agent ended is kept
/// (rather than exiting) while fewer are ready, so a steady run of short agents starts none.
pub const READY_MAX: usize = 8;
/// Holders that fail to get ready in a row before the launcher stops keeping any, for
/// [`OFF_FOR`].
const MOST_FAILED: u32 = 4;
const OFF_FOR: std::time::Duration = std::time::Duration::from_secs(30);

/// Requests queued for the spawner before `spawn_holder` waits for room.
const QUEUE: usize = 256;

impl Launcher {
    /// Starts the spawner now (while the caller's descriptor table is still small) and
    /// returns the launcher for holders under `root` (created 0700 if missing).
    pub fn start(program: HolderProgram, root: PathBuf) -> std::io::Result<Launcher> {
        use std::os::unix::fs::DirBuilderExt;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&root)?;
        // What an earlier daemon kept ready is gone with it (its holders exit once their
        // connection closes); one killed outright leaves its directory, removed here.
        let ready_dir = ready_dir(&root);
        let _ = std::fs::remove_dir_all(&ready_dir);
        std::fs::DirBuilder::new().mode(0o700).create(&ready_dir)?;
        let spawner = Spawner::start(&program)?;
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(program, Some(spawner), rx));
        let launcher = Launcher {
            requests: tx,
            root,
            ready: Arc::new(Ready {
                dir: ready_dir,
                state: Mutex::new(ReadyState {
                    instance: format!("{:x}", crate::status::unix_nanos()),
                    ..ReadyState::default()
                }),
            }),
        };
        launcher.refill();
        Ok(launcher)
    }

    /// A ready holder moved to `root/name`, or `None` when none is ready (or the move
    /// failed): the caller then starts one through the spawner. Starts a replacement.
    pub(crate) fn take_ready(&self, name: &str) -> Option<ReadyHolder> {
        let taken = self.take_ready_holder(name);
        self.refill();
        taken
    }

    fn take_ready_holder(&self, name: &str) -> Option<ReadyHolder> {
        let dir = self.root.join(name);
        loop {
            let mut ready = self.ready.lock().waiting.pop_front()?;
            // One that exited meanwhile (killed, say) has its connection closed: skip it,
            // removing what it left.
            if !ready.conn.is_open() {
                let _ = std::fs::remove_dir_all(&ready.dir);
                continue;
            }
            // Dropped on failure: its connection closes and it exits.
            std::fs::rename(&ready.dir, &dir).ok()?;
            ready.dir = dir;
            return Some(ready);
        }
    }

    /// Starts getting holders ready until [`READY`] are ready or on their way.
    fn refill(&self) {
        let names: Vec<PathBuf> = {
            let mut state = self.ready.lock();
            let mut names = Vec::new();
            while !state.is_off() && state.waiting.len() + state.preparing < READY {
                names.push(self.ready.dir.join(state.reserve()));
            }
            names
        };
        for dir in names {
            let launcher = self.clone();
            tokio::spawn(async move {
                let prepared = launcher.prepare(&dir).await;
                let mut state = launcher.ready.lock();
                state.preparing -= 1;
                // Only a holder of protocol 2 understands `spec.dir` (and `recycle`).
                let prepared = prepared.and_then(|(pid, (conn, version))| {
                    if version >= 2 {
                        Ok((pid, (conn, version)))
                    } else {
                        let _ = std::fs::remove_dir_all(&dir);
                        Err(format!("the holder speaks protocol {version}, not 2"))
                    }
                });
                match prepared {
                    Ok((pid, (conn, version))) => {
                        state.got_one();
                        state.waiting.push_back(ReadyHolder {
                            pid,
                            dir,
                            conn,
                            version,
                        });
                    }
                    Err(error) => {
                        tracing::warn!(%error, "a holder kept ready failed to start");
                        if state.failed_one(std::time::Instant::now()) {
                            tracing::warn!("holders kept ready keep failing: none for {OFF_FOR:?}");
                        }
                    }
                }
            });
        }
    }

    /// Where the holder of the ended agent `name` was moved to be kept ready, or `None`: as
    /// many as [`READY_MAX`] are ready or on their way, or it could not be moved (it is then
    /// released).
    pub(crate) fn recycle_slot(&self, name: &str) -> Option<PathBuf> {
        let dir = {
            let mut state = self.ready.lock();
            if state.is_off() || state.waiting.len() + state.preparing >= READY_MAX {
                return None;
            }
            self.ready.dir.join(state.reserve())
        };
        if std::fs::rename(self.root.join(name), &dir).is_err() {
            self.ready.lock().preparing -= 1;
            return None;
        }
        Some(dir)
    }

    /// The holder moved to `dir` was told to be recycled on `conn`: once it answers as a new
    /// holder it is ready. One that does not is dropped (it exits when its connection
    /// closes) and what it left removed.
    pub(crate) fn recycled(&self, pid: u32, dir: PathBuf, mut conn: Conn) {
        let launcher = self.clone();
        tokio::spawn(async move {
            let fresh = crate::remote::recycled(&mut conn).await;
            let mut state = launcher.ready.lock();
            state.preparing -= 1;
            match fresh {
                Ok(version) => state.waiting.push_back(ReadyHolder {
                    pid,
                    dir,
                    conn,
                    version,
                }),
                Err(_) => {
                    drop(state);
                    let _ = std::fs::remove_dir_all(&dir);
                }
            }
        });
    }

    /// Starts a holder in `dir` and greets it.
    async fn prepare(&self, dir: &Path) -> Result<(u32, (Conn, u32)), String> {
        let pid = self.request(dir.to_path_buf()).await?;
        let conn = crate::remote::greet(dir).await;
        if conn.is_err() {
            let _ = std::fs::remove_dir_all(dir);
        }
        Ok((pid, conn?))
    }

    /// Where holders live: one directory per agent.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Starts a holder in `root/name` and returns its pid once its socket is bound.
    pub async fn spawn_holder(&self, name: &str) -> Result<u32, String> {
        self.request(self.root.join(name)).await
    }

    async fn request(&self, dir: PathBuf) -> Result<u32, String> {
        let (reply, answer) = oneshot::channel();
        let request = SpawnRequest { dir };
        self.requests
            .send((request, reply))
            .await
            .map_err(|_| "the holder spawner is gone".to_owned())?;
        answer
            .await
            .map_err(|_| "the holder spawner died".to_owned())?
    }
}

impl ReadyState {
    /// A holder got ready: failures are counted in a row, so the count starts again.
    fn got_one(&mut self) {
        self.failed = 0;
    }

    /// Counts a holder that failed to get ready at `now`; true when that turns keeping holders
    /// ready off (the [`MOST_FAILED`]th in a row), for [`OFF_FOR`].
    fn failed_one(&mut self, now: std::time::Instant) -> bool {
        self.failed += 1;
        if self.failed < MOST_FAILED {
            return false;
        }
        self.off_until = Some(now + OFF_FOR);
        true
    }

    /// Turned off for now; once the time is over it is on again, with a clean slate.
    fn is_off(&mut self) -> bool {
        self.is_off_at(std::time::Instant::now())
    }

    fn is_off_at(&mut self, now: std::time::Instant) -> bool {
        match self.off_until {
            Some(until) if now < until => true,
            Some(_) => {
                self.off_until = None;
                self.failed = 0;
                false
            }
            None => false,
        }
    }

    /// A new ready directory's name, counted as on its way.
    fn reserve(&mut self) -> String {
        self.preparing += 1;
        self.next += 1;
        format!("{}.{}", self.instance, self.next)
    }
}

impl Ready {
    fn lock(&self) -> std::sync::MutexGuard<'_, ReadyState> {
        // Nothing panics while holding it; a poisoned state is still consistent.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// `<state>/holders` → `<state>/holders.ready`.
fn ready_dir(root: &Path) -> PathBuf {
    let mut name = root.file_name().unwrap_or_default().to_os_string();
    name.push(drover_holder::pool::READY_SUFFIX);
    root.with_file_name(name)
}

/// The open-files soft limit agents start with (the daemon's own, before it raised it).
static AGENT_NOFILE: std::sync::OnceLock<u64> = std::sync::OnceLock::new();

/// Give agents `soft` as their open-files soft limit, whatever the daemon raises its own to:
/// passed to the spawner, which holders and agents inherit it from. Set once, before the
/// spawner starts.
pub fn set_agent_open_files(soft: u64) {
    let _ = AGENT_NOFILE.set(soft);
}

/// A running spawner process and its pipes.
#[derive(Debug)]
struct Spawner {
    _child: Child,
    input: ChildStdin,
    output: ChildStdout,
}

impl Spawner {
    fn start(program: &HolderProgram) -> std::io::Result<Spawner> {
        let mut command = tokio::process::Command::new(&program.program);
        if let Some(soft) = AGENT_NOFILE.get() {
            command.env(drover_holder::spawner::AGENT_NOFILE, soft.to_string());
        }
        let mut child = command
            .args(&program.args)
            .arg("spawner")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(false)
            .spawn()?;
        let input = child
            .stdin
            .take()
            .ok_or_else(|| std::io::Error::other("no stdin"))?;
        let output = child
            .stdout
            .take()
            .ok_or_else(|| std::io::Error::other("no stdout"))?;
        Ok(Spawner {
            _child: child,
            input,
            output,
        })
    }
}

async fn run(
    program: HolderProgram,
    mut spawner: Option<Spawner>,
    mut requests: mpsc::Receiver<(SpawnRequest, Pending)>,
) {
    let mut pending: VecDeque<Pending> = VecDeque::new();
    let mut buf = Vec::new();
    let mut chunk = vec![0u8; 4096];
    loop {
        let reading = spawner.is_some() && !pending.is_empty();
        tokio::select! {
            request = requests.recv() => {
                let Some((request, reply)) = request else { return };
                if spawner.is_none() {
                    match Spawner::start(&program) {
                        Ok(s) => spawner = Some(s),
                        Err(e) => {
                            let _ = reply.send(Err(format!("cannot start the holder spawner {}: {e}", program.program.display())));
                            continue;
                        }
                    }
                }
                let mut frame = Vec::new();
                let written = match (wire::encode(&request, &mut frame), spawner.as_mut()) {
                    (Ok(()), Some(s)) => s.input.write_all(&frame).await.map_err(|e| e.to_string()),
                    (Err(e), _) => Err(e.to_string()),
                    (_, None) => Err("no spawner".to_owned()),
                };
                match written {
                    Ok(()) => pending.push_back(reply),
                    Err(e) => {
                        let _ = reply.send(Err(format!("the holder spawner is gone: {e}")));
                        fail_all(&mut pending, &mut spawner, &mut buf);
                    }
                }
            }
            n = async { match spawner.as_mut() { Some(s) => s.output.read(&mut chunk).await, None => Ok(0) } }, if reading => {
                match n {
                    Ok(n) if n > 0 => {
                        buf.extend_from_slice(&chunk[..n]);
                        loop {
                            match wire::decode::<SpawnReply>(&mut buf) {
                                Ok(Some(reply)) => {
                                    if let Some(waiter) = pending.pop_front() {
                                        let _ = waiter.send(reply.result);
                                    }
                                }
                                Ok(None) => break,
                                Err(_) => {
                                    fail_all(&mut pending, &mut spawner, &mut buf);
                                    break;
                                }
                            }
                        }
                    }
                    _ => fail_all(&mut pending, &mut spawner, &mut buf),
                }
            }
        }
    }
}

/// The spawner died or spoke nonsense: everyone waiting is told, and the next request starts
/// a new one.
fn fail_all(pending: &mut VecDeque<Pending>, spawner: &mut Option<Spawner>, buf: &mut Vec<u8>) {
    tracing::warn!("the holder spawner died; starting another at the next spawn");
    for waiter in pending.drain(..) {
        let _ = waiter.send(Err("the holder spawner died".to_owned()));
    }
    *spawner = None;
    buf.clear();
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    #[test]
    fn holders_kept_ready_are_off_for_a_while_after_failing_in_a_row() {
        let mut state = ReadyState::default();
        let now = Instant::now();
        // A holder that gets ready between failures starts the count again.
        for _ in 1..MOST_FAILED {
            assert!(!state.failed_one(now));
        }
        state.got_one();
        for _ in 1..MOST_FAILED {
            assert!(!state.failed_one(now));
            assert!(!state.is_off_at(now));
        }
        assert!(state.failed_one(now), "the fourth in a row turns it off");
        assert!(state.is_off_at(now));
        assert!(state.is_off_at(now + OFF_FOR - Duration::from_millis(1)));
        // Once the time is over: on again, with a clean slate.
        assert!(!state.is_off_at(now + OFF_FOR));
        assert_eq!((state.failed, state.off_until), (0, None));
        assert!(!state.failed_one(now + OFF_FOR));
    }
}
