//! Holders started ahead: the spawner keeps [`POOL_SIZE`] holders waiting in a pool directory
//! beside the daemon's holder directories, so a spawn only renames one into place and starts
//! the agent; the next pooled holder starts while the daemon talks to the claimed one.
//!
//! A pooled holder is `hold` with a link to the spawner: a pipe whose read end is the holder's
//! stdout (the spawner keeps the write end). Claiming a holder renames its directory to the
//! agent's, writes the new path and a newline into the link and closes it. A pooled holder
//! that reads end-of-file before any path was never claimed: the spawner is gone (so is the
//! daemon), and it removes its directory and exits. Nothing else ever goes through the link.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

/// Holders kept started ahead.
pub const POOL_SIZE: usize = 2;

/// Longest directory path a claim carries (Linux's `PATH_MAX`).
const MAX_PATH: usize = 4096;

/// The pool directory beside a holder directory: `<state>/holders/<id>` → `<state>/holders.pool`.
/// The daemon's ready holders (`<state>/holders.ready/<n>`, see the supervisor's launcher) are
/// taken from the same pool.
pub fn pool_root(holder_dir: &Path) -> Option<PathBuf> {
    let holders = holder_dir.parent()?;
    let name = holders.file_name()?;
    let mut name = name
        .to_str()
        .and_then(|n| n.strip_suffix(READY_SUFFIX))
        .map_or_else(|| name.to_os_string(), std::ffi::OsString::from);
    name.push(".pool");
    Some(holders.with_file_name(name))
}

/// Suffix of the directory beside `holders` where the daemon keeps holders ready ahead.
pub const READY_SUFFIX: &str = ".ready";

/// What a pooled holder learned from its link.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum News {
    /// Nothing complete yet.
    Nothing,
    /// Claimed: its directory is now this.
    Claimed(PathBuf),
    /// The spawner went away before claiming it.
    Gone,
}

/// The holder's end of its link to the spawner, while it waits in the pool.
#[derive(Debug)]
pub(crate) struct Link {
    file: File,
    line: Vec<u8>,
}

impl Link {
    pub(crate) fn new(file: File) -> Link {
        Link {
            file,
            line: Vec::new(),
        }
    }

    pub(crate) fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }

    /// Read what the spawner wrote (the link is non-blocking or was reported readable).
    pub(crate) fn read(&mut self) -> News {
        let mut buf = [0u8; 512];
        loop {
            match self.file.read(&mut buf) {
                Ok(0) => return News::Gone,
                Ok(n) => {
                    self.line.extend_from_slice(&buf[..n]);
                    if let Some(end) = self.line.iter().position(|b| *b == b'\n') {
                        let path = String::from_utf8_lossy(&self.line[..end]).into_owned();
                        return News::Claimed(PathBuf::from(path));
                    }
                    if self.line.len() > MAX_PATH {
                        return News::Gone;
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) if e.kind() == ErrorKind::WouldBlock => return News::Nothing,
                Err(_) => return News::Gone,
            }
        }
    }
}

/// A holder waiting in the pool, as the spawner keeps it.
#[derive(Debug)]
pub(crate) struct Pooled {
    pub(crate) dir: PathBuf,
    pub(crate) pid: u32,
    pub(crate) link: File,
}

/// Pooled holders found dead in a row (one that cannot run `pooled`, an older build) before
/// the pool is turned off.
const MOST_DEAD: u32 = 4;

/// The spawner's pool.
#[derive(Debug, Default)]
pub(crate) struct Pool {
    /// Where pooled holders wait; known from the first request.
    root: Option<PathBuf>,
    waiting: VecDeque<Pooled>,
    /// Names pool directories.
    next: u64,
    /// Pooled holders found dead at a claim since the last good one.
    dead: u32,
    /// Turned off: renames into the holders' directory fail (another filesystem, no
    /// permission) or pooled holders keep dying, so each spawn starts its holder itself.
    off: bool,
}

impl Pool {
    /// The pool's directory for requests like `dir`, emptied of what an earlier spawner left
    /// (its pooled holders exit on their own once their link ends).
    pub(crate) fn root_for(&mut self, dir: &Path) -> Option<&Path> {
        if self.root.is_none() {
            let root = pool_root(dir)?;
            let _ = std::fs::remove_dir_all(&root);
            use std::os::unix::fs::DirBuilderExt;
            std::fs::DirBuilder::new().mode(0o700).create(&root).ok()?;
            self.root = Some(root);
        }
        self.root.as_deref()
    }

    /// A fresh directory name in the pool.
    pub(crate) fn next_dir(&mut self) -> Option<PathBuf> {
        let root = self.root.clone()?;
        self.next += 1;
        Some(root.join(self.next.to_string()))
    }

    pub(crate) fn wanted(&self) -> bool {
        !self.off && self.root.is_some() && self.waiting.len() < POOL_SIZE
    }

    /// Stop pooling, saying why once; the holders waiting go (their links close).
    fn turn_off(&mut self, why: &str) {
        say!("drover-holder spawner: no more holders started ahead: {why}");
        self.off = true;
        for pooled in self.waiting.drain(..) {
            let _ = std::fs::remove_dir_all(&pooled.dir);
        }
    }

    pub(crate) fn add(&mut self, pooled: Pooled) {
        self.waiting.push_back(pooled);
    }

    /// Move a pooled holder that is still alive and ready to `dir` and tell it so; its pid, or
    /// `None` when none is ready (the caller starts one the usual way).
    ///
    /// Ready means its spool exists: the holder opens it by path as the last step of its
    /// setup, so one renamed before that would find its directory gone and exit (a spawn right
    /// after another, on a loaded machine, used to fail to start that way). One not ready yet
    /// stays in the pool, in its place.
    pub(crate) fn claim(&mut self, dir: &Path) -> Option<u32> {
        let mut starting = Vec::new();
        let claimed = self.claim_ready(dir, &mut starting);
        for pooled in starting.into_iter().rev() {
            self.waiting.push_front(pooled);
        }
        claimed
    }

    fn claim_ready(&mut self, dir: &Path, starting: &mut Vec<Pooled>) -> Option<u32> {
        while let Some(mut pooled) = self.waiting.pop_front() {
            let pid = Pid::from_raw(i32::try_from(pooled.pid).ok()?);
            // One that died in the pool is reaped here and skipped (dropping its link).
            if !matches!(
                waitpid(pid, Some(WaitPidFlag::WNOHANG)),
                Ok(WaitStatus::StillAlive)
            ) {
                let _ = std::fs::remove_dir_all(&pooled.dir);
                self.dead += 1;
                if self.dead >= MOST_DEAD {
                    self.turn_off("pooled holders keep exiting before a spawn takes them");
                    return None;
                }
                continue;
            }
            self.dead = 0;
            if !pooled.dir.join(crate::SPOOL).exists() {
                starting.push(pooled);
                continue;
            }
            if let Err(error) = std::fs::rename(&pooled.dir, dir) {
                // The link closes unclaimed: the holder removes its directory and exits. A
                // directory that exists is the request's own failure; anything else would
                // fail every time.
                if !matches!(
                    error.kind(),
                    ErrorKind::AlreadyExists | ErrorKind::DirectoryNotEmpty
                ) {
                    self.turn_off(&format!(
                        "moving {} into place: {error}",
                        pooled.dir.display()
                    ));
                }
                return None;
            }
            let mut line = dir.as_os_str().as_encoded_bytes().to_vec();
            line.push(b'\n');
            if pooled.link.write_all(&line).is_err() {
                let _ = std::fs::remove_dir_all(dir);
                continue;
            }
            return Some(pooled.pid);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dead_pooled(root: &Path, n: u64) -> Pooled {
        let child = std::process::Command::new("true").spawn().expect("true");
        let pid = child.id();
        // Ended, not reaped: the claim's `waitpid` finds it gone.
        while std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .is_ok_and(|stat| !stat.contains(") Z"))
        {
            std::thread::yield_now();
        }
        let dir = root.join(n.to_string());
        std::fs::create_dir_all(&dir).expect("pool dir");
        let (_reader, link) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
        std::mem::forget(child);
        Pooled {
            dir,
            pid,
            link: File::from(link),
        }
    }

    #[test]
    fn a_pooled_holder_is_claimed_only_once_its_spool_exists() {
        let state = tempfile::tempdir().expect("tempdir");
        let request = state.path().join("holders").join("agent");
        std::fs::create_dir_all(request.parent().expect("parent")).expect("holders");
        let mut pool = Pool::default();
        let root = pool.root_for(&request).expect("a pool root").to_owned();
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .expect("sleep");
        let dir = root.join("1");
        std::fs::create_dir_all(&dir).expect("pool dir");
        let (reader, link) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).expect("pipe");
        pool.add(Pooled {
            dir: dir.clone(),
            pid: child.id(),
            link: File::from(link),
        });
        // Still setting up: left where it is, and the caller starts a holder itself.
        assert_eq!(pool.claim(&request), None);
        assert!(dir.is_dir() && !request.exists());
        assert_eq!(pool.waiting.len(), 1);
        // Set up: claimed, moved and told where it went.
        std::fs::write(dir.join(crate::SPOOL), b"").expect("spool");
        assert_eq!(pool.claim(&request), Some(child.id()));
        assert!(request.join(crate::SPOOL).exists() && !dir.exists());
        assert!(pool.waiting.is_empty());
        let mut told = String::new();
        File::from(reader).read_to_string(&mut told).expect("link");
        assert_eq!(told, format!("{}\n", request.display()));
        child.kill().expect("kill");
        child.wait().expect("wait");
    }

    #[test]
    fn pooled_holders_that_keep_dying_turn_the_pool_off() {
        let state = tempfile::tempdir().expect("tempdir");
        let request = state.path().join("holders").join("agent");
        let mut pool = Pool::default();
        let root = pool.root_for(&request).expect("a pool root").to_owned();
        assert_eq!(root, state.path().join("holders.pool"));
        let ready = state.path().join("holders.ready").join("1");
        assert_eq!(pool_root(&ready), Some(root.clone()), "one pool for both");
        assert!(pool.wanted());
        for n in 0..u64::from(MOST_DEAD) {
            pool.add(dead_pooled(&root, n));
        }
        assert_eq!(pool.claim(&request), None, "no live holder to claim");
        assert!(!pool.wanted(), "the pool is off");
        assert!(!request.exists());
        // Every dead holder's directory is gone.
        assert_eq!(std::fs::read_dir(&root).expect("root").count(), 0);
    }
}
