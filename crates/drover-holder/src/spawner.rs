//! The spawner: a small process the daemon starts first, which starts holders on request.
//!
//! Why it exists: `fork`/`clone` copies the caller's file-descriptor table and `exec` closes
//! its close-on-exec entries, so starting a process costs time in proportion to the caller's
//! open files. The daemon holds a socket per agent; the spawner holds a handful (its pipes to
//! the daemon and its pooled holders' links), so starting a holder costs the same with 10 or
//! 10,000 agents live.
//!
//! Requests and replies are wire frames on the spawner's stdin and stdout, answered in order.
//! For each request the spawner creates the holder's directory, binds the holder's socket in it
//! (so the daemon can connect the moment the reply arrives, with no race against the holder's
//! start), and starts the holder with that listening socket as its stdin, its stderr appended
//! to a log file beside it, and a process group of its own (a Ctrl-C meant for the daemon's
//! terminal does not reach holders). It reaps holders that exit, every 64 requests.
//!
//! It keeps holders started ahead ([`crate::pool`]): a request takes one, renamed into place,
//! and the next one starts after the reply, while the daemon talks to the one it got.

use std::ffi::OsString;
use std::io::{BufReader, BufWriter, Write};
use std::os::fd::AsFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use serde::{Deserialize, Serialize};

use crate::pool::{Pool, Pooled};
use crate::wire::{read_frame, write_frame, WireError};
use crate::HolderError;

/// Start a holder in `dir` (created; it must not exist).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpawnRequest {
    pub dir: PathBuf,
}

/// The holder's pid, or why it could not be started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SpawnReply {
    pub result: Result<u32, String>,
}

/// Serves requests on stdin until it closes (the daemon is gone), then exits; holders live on
/// (pooled ones, never claimed, exit too). Holders are forked from this process (see
/// [`crate::fork`]), or, if it were not single-threaded, started as `program args.. hold DIR`,
/// pooled ones as `program args.. pooled DIR`.
pub fn run(program: &Path, args: &[OsString]) -> Result<(), HolderError> {
    restore_open_files_limit();
    // Through duplicates of stdin and stdout (close-on-exec), not std's locks: a lock held at a
    // fork would stay held in every forked holder (std's stdin lock is not re-entrant).
    let duplicate = |fd: std::os::fd::BorrowedFd<'_>, what| {
        fd.try_clone_to_owned()
            .map(std::fs::File::from)
            .map_err(|e| HolderError::Setup(what, e))
    };
    let mut input = BufReader::new(duplicate(std::io::stdin().as_fd(), "taking stdin")?);
    let mut output = BufWriter::new(duplicate(std::io::stdout().as_fd(), "taking stdout")?);
    let mut served = 0u64;
    let mut pool = Pool::default();
    // Holders are forked from this process when it is single-threaded, as it always is once
    // `main` has run (see `crate::fork`); otherwise each is a new `program` run.
    let how = if crate::fork::single_threaded() {
        How::Fork
    } else {
        How::Exec(program, args)
    };
    loop {
        let request: SpawnRequest = match read_frame(&mut input) {
            Ok(request) => request,
            Err(WireError::Closed) => return Ok(()),
            Err(e) => return Err(HolderError::Wire(e)),
        };
        // `wait4` walks every child, and live holders are children: reaping at every request
        // would make a start cost in proportion to the live agents. Exited holders wait as
        // zombies for a while instead (at most REAP_EVERY of them between two reaps, beyond
        // those that exit during a burst).
        served += 1;
        if served % REAP_EVERY == 0 {
            reap();
        }
        let pooled = pool
            .root_for(&request.dir)
            .is_some()
            .then(|| pool.claim(&request.dir))
            .flatten();
        let result = match pooled {
            Some(pid) => Ok(pid),
            None => start(&how, &request.dir, Role::Hold),
        };
        write_frame(&mut output, &SpawnReply { result }).map_err(HolderError::Wire)?;
        output
            .flush()
            .map_err(|e| HolderError::Wire(WireError::Io(e)))?;
        // After the reply: the daemon meanwhile connects to its holder and starts the agent.
        while pool.wanted() {
            let Some(dir) = pool.next_dir() else {
                break;
            };
            // Close-on-exec: only the pooled holder gets the read end (as its stdout).
            let (reader, link) = match nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC) {
                Ok(pair) => pair,
                Err(e) => {
                    say!("drover-holder spawner: no pipe for a pooled holder: {e}");
                    break;
                }
            };
            match start(&how, &dir, Role::Pooled(reader)) {
                Ok(pid) => pool.add(Pooled {
                    dir,
                    pid,
                    link: std::fs::File::from(link),
                }),
                Err(e) => {
                    say!("drover-holder spawner: starting a pooled holder: {e}");
                    break;
                }
            }
        }
    }
}

/// How holders start: forked from the spawner, or by running `program args..`.
enum How<'a> {
    Fork,
    Exec(&'a Path, &'a [OsString]),
}

/// How a holder is started: for a request (`hold`, stdout `/dev/null`), or ahead into the pool
/// (`pooled`) with its link's read end as its stdout.
pub(crate) enum Role {
    Hold,
    Pooled(std::os::fd::OwnedFd),
}

/// Requests between two reaps of exited holders.
const REAP_EVERY: u64 = 64;

/// Reaps the holders that exited so far (they are our children until we exit).
fn reap() {
    while let Ok(status) = waitpid(None, Some(WaitPidFlag::WNOHANG)) {
        if status == WaitStatus::StillAlive {
            break;
        }
    }
}

fn start(how: &How<'_>, dir: &Path, role: Role) -> Result<u32, String> {
    std::fs::DirBuilder::new()
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("creating holder directory {}: {e}", dir.display()))?;
    let socket = dir.join(crate::SOCKET);
    let listener = std::os::unix::net::UnixListener::bind(&socket)
        .map_err(|e| format!("binding holder socket {}: {e}", socket.display()))?;
    // The directory is 0700 already; its socket and log are the daemon user's alone too, whatever
    // the umask.
    std::fs::set_permissions(&socket, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| format!("securing holder socket {}: {e}", socket.display()))?;
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(dir.join(crate::LOG))
        .map_err(|e| format!("opening the holder's log: {e}"))?;
    let started = match how {
        How::Fork => crate::fork::fork_holder(dir, std::os::fd::OwnedFd::from(listener), log, role),
        How::Exec(program, args) => exec(program, args, dir, listener, log, role),
    };
    if started.is_err() {
        let _ = std::fs::remove_dir_all(dir);
    }
    started
}

fn exec(
    program: &Path,
    args: &[OsString],
    dir: &Path,
    listener: std::os::unix::net::UnixListener,
    log: std::fs::File,
    role: Role,
) -> Result<u32, String> {
    let (name, stdout) = match role {
        Role::Hold => ("hold", Stdio::null()),
        Role::Pooled(link) => ("pooled", Stdio::from(link)),
    };
    std::process::Command::new(program)
        .args(args)
        .arg(name)
        .arg(dir)
        .stdin(Stdio::from(std::os::fd::OwnedFd::from(listener)))
        .stdout(stdout)
        .stderr(Stdio::from(log))
        .process_group(0)
        .spawn()
        .map(|child| child.id())
        .map_err(|e| format!("starting holder {}: {e}", program.display()))
}

/// The daemon raises its soft open-files limit to the hard one (it may hold thousands of
/// descriptors); agents get the limit the daemon was started with, as under systemd, rather
/// than one a `select()`-based program or a close-every-descriptor loop cannot live with. The
/// daemon names it in [`AGENT_NOFILE`]; the spawner lowers its own soft limit to it (it needs
/// few descriptors), and holders and their agents inherit that. Not inherited itself: the
/// variable is removed here, before any thread exists.
fn restore_open_files_limit() {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let Some(value) = std::env::var_os(AGENT_NOFILE) else {
        return;
    };
    std::env::remove_var(AGENT_NOFILE);
    let Some(soft) = value.to_str().and_then(|v| v.parse::<u64>().ok()) else {
        return;
    };
    if let Ok((current, hard)) = getrlimit(Resource::RLIMIT_NOFILE) {
        if soft < current {
            let _ = setrlimit(Resource::RLIMIT_NOFILE, soft.min(hard), hard);
        }
    }
}

/// The environment variable in which the daemon tells the spawner the open-files soft limit
/// agents get.
pub const AGENT_NOFILE: &str = "DROVER_AGENT_NOFILE";

#[cfg(test)]
mod tests {
    use super::*;

    /// The `exec` path (taken when the spawner is not single-threaded, as in this test
    /// harness): `program args.. hold DIR`, with the bound socket as stdin, `holder.log` as
    /// stderr and a process group of its own. `/bin/sh` stands in for the holder and says what
    /// it was given.
    #[test]
    fn a_holder_executed_gets_its_role_directory_socket_log_and_group() {
        let state = tempfile::tempdir().expect("tempdir");
        let dir = state.path().join("holders").join("agent");
        std::fs::create_dir_all(dir.parent().expect("parent")).expect("holders");
        let script = r#"exec 1>&2; echo "$1 $2"; readlink /proc/self/fd/0; cut -d' ' -f5 /proc/$$/stat; echo $$"#;
        let args: Vec<OsString> = ["-c", script, "sh"].map(OsString::from).to_vec();
        let how = How::Exec(Path::new("/bin/sh"), &args);
        let pid = start(&how, &dir, Role::Hold).expect("started");
        let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid"));
        assert!(matches!(waitpid(pid, None), Ok(WaitStatus::Exited(_, 0))));
        let log = std::fs::read_to_string(dir.join(crate::LOG)).expect("holder.log");
        let lines: Vec<&str> = log.lines().collect();
        assert_eq!(lines.len(), 4, "{log}");
        assert_eq!(lines[0], format!("hold {}", dir.display()));
        assert!(
            lines[1].starts_with("socket:["),
            "stdin is the socket: {log}"
        );
        assert_eq!(lines[2], lines[3], "a process group of its own: {log}");
        assert!(dir.join(crate::SOCKET).exists());
        // A directory that exists already is refused, and left as it was.
        let again = start(&how, &dir, Role::Hold).expect_err("the directory exists");
        assert!(again.contains("creating holder directory"), "{again}");
        assert!(dir.join(crate::LOG).exists());
    }
}
