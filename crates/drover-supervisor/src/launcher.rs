//! Starting holders: the holder executable, and the spawner process that starts them.

use std::collections::VecDeque;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use drover_holder::spawner::{SpawnReply, SpawnRequest};
use drover_holder::wire;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::{Child, ChildStdin, ChildStdout};
use tokio::sync::{mpsc, oneshot};

/// How to run the holder executable: `program args.. spawner` and `program args.. hold DIR`.
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
}

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
        let spawner = Spawner::start(&program)?;
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(run(program, Some(spawner), rx));
        Ok(Launcher { requests: tx, root })
    }

    /// Where holders live: one directory per agent.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Starts a holder in `root/name` and returns its pid once its socket is bound.
    pub async fn spawn_holder(&self, name: &str) -> Result<u32, String> {
        let (reply, answer) = oneshot::channel();
        let request = SpawnRequest {
            dir: self.root.join(name),
        };
        self.requests
            .send((request, reply))
            .await
            .map_err(|_| "the holder spawner is gone".to_owned())?;
        answer
            .await
            .map_err(|_| "the holder spawner died".to_owned())?
    }
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
        let mut child = tokio::process::Command::new(&program.program)
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
