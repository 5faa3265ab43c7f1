//! Holders started by `fork` alone, without `exec`: the workspace's one `unsafe` code, a
//! reviewed exception to `unsafe_code = "deny"` (root `Cargo.toml`).
//!
//! Why: the spawner is the holder's own code, so a holder need not be a new program. Executing
//! `drover-holder` costs its `execve`, the dynamic loader's relocations and CPU probing (each
//! `cpuid` is a trap under a hypervisor) and a fresh address space: about 1.2 ms of CPU a
//! holder, as much again as the agent's own start. A `fork` of the spawner, a single-threaded
//! process of a few hundred KiB, copies its page tables and nothing else; the child turns into
//! a holder by calling [`crate::hold`] directly. A spawn of an agent that keeps running takes a
//! new holder every time (no ended holder can be recycled for it), so this is most of its cost.
//!
//! Why it is sound: after `fork` only the calling thread exists in the child, so a lock or an
//! allocator arena held by another thread would stay held forever. The spawner checks that it
//! is the only thread of its process ([`single_threaded`]) before it ever forks, and it starts
//! no thread afterwards (it is a loop of blocking reads and writes); otherwise it starts holders
//! with `exec` as before. The child then owns every lock it inherited, like any single-threaded
//! process, and may run any code.
//!
//! What `exec` did that the child now does itself: a process group of its own; the spawner's
//! handled signals back to their default dispositions (the handlers `ignored.rs` installs would
//! write into descriptors the holder no longer has); stdin, stdout and stderr set to the
//! listening socket, the pool link (or `/dev/null`) and the holder's log; every other
//! descriptor closed (the spawner's pipes to the daemon and the links of other pooled holders
//! must not be held by a holder). What differs: its command line stays the spawner's, so the
//! child renames its thread `drover-holder` (`comm`, shown by `ps -e` and `top`) and its
//! directory (the agent's) is found from its open spool, not its arguments.

use std::ffi::CStr;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::Path;

use nix::sys::signal::{SigHandler, Signal};
use nix::unistd::{ForkResult, Pid};

use crate::ignored::RESET;
use crate::spawner::Role;

/// The name a forked holder gives its thread (`/proc/PID/comm`).
pub const COMM: &CStr = c"drover-holder";

/// True when this process has exactly one thread, read from `/proc/self/status`.
pub fn single_threaded() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|status| {
        status
            .lines()
            .find_map(|line| line.strip_prefix("Threads:"))
            .is_some_and(|n| n.trim() == "1")
    })
}

/// Fork a holder for `dir`, whose listening socket and log the caller opened. Returns the
/// child's pid in the spawner; the child never returns. The caller must have checked
/// [`single_threaded`] (the spawner does, once, at its start).
pub(crate) fn fork_holder(
    dir: &Path,
    listener: OwnedFd,
    log: File,
    role: Role,
) -> Result<u32, String> {
    // SAFETY: the spawner is single-threaded (checked by the caller with `single_threaded`
    // before it chose this path, and it starts no thread), so the child is a complete copy of
    // a single-threaded process and may run any code, allocation and locks included.
    #[allow(unsafe_code)]
    let forked = unsafe { nix::unistd::fork() };
    match forked {
        Ok(ForkResult::Parent { child }) => Ok(child.as_raw().unsigned_abs()),
        Ok(ForkResult::Child) => {
            // Never back into the spawner's frames, not even by a panic's unwinding (their
            // destructors would flush and close what is the spawner's).
            let run = std::panic::AssertUnwindSafe(|| become_holder(dir, listener, log, role));
            let code = match std::panic::catch_unwind(run) {
                Ok(Ok(())) => 0,
                Ok(Err(error)) => {
                    say!("{}", crate::report(&error));
                    2
                }
                Err(_) => 101,
            };
            // No atexit handlers and no flush of buffers copied from the spawner (its pipe to
            // the daemon is closed, but nothing of it may be written anywhere).
            // SAFETY: `_exit` ends the process at once; nothing runs after it.
            #[allow(unsafe_code)]
            unsafe {
                nix::libc::_exit(code)
            }
        }
        Err(e) => Err(format!("fork: {e}")),
    }
}

/// The child's side: set up as `exec` would have, then run the holder.
fn become_holder(
    dir: &Path,
    listener: OwnedFd,
    log: File,
    role: Role,
) -> Result<(), crate::HolderError> {
    use crate::HolderError::Setup;
    let sys = |what: &'static str| move |e: nix::Error| Setup(what, e.into());
    // The log first, so whatever fails after is said there.
    nix::unistd::dup2_stderr(&log).map_err(sys("dup2"))?;
    nix::unistd::setpgid(Pid::from_raw(0), Pid::from_raw(0)).map_err(sys("setpgid"))?;
    for signal in RESET.into_iter().chain([Signal::SIGCHLD]) {
        // SAFETY: setting a default disposition installs no handler; the process is
        // single-threaded (see `fork_holder`).
        #[allow(unsafe_code)]
        unsafe { nix::sys::signal::signal(signal, SigHandler::SigDfl) }
            .map_err(sys("resetting a signal"))?;
    }
    nix::sys::prctl::set_name(COMM).map_err(sys("naming the holder"))?;
    let pooled = matches!(role, Role::Pooled(_));
    let stdout = match role {
        Role::Hold => OwnedFd::from(
            std::fs::OpenOptions::new()
                .write(true)
                .open("/dev/null")
                .map_err(|e| Setup("opening /dev/null", e))?,
        ),
        Role::Pooled(link) => link,
    };
    nix::unistd::dup2_stdin(&listener).map_err(sys("dup2"))?;
    nix::unistd::dup2_stdout(&stdout).map_err(sys("dup2"))?;
    drop((listener, stdout, log));
    close_from_3().map_err(|e| Setup("closing the spawner's descriptors", e))?;
    if pooled {
        crate::hold::run_pooled(dir)
    } else {
        crate::hold::run(dir)
    }
}

/// Close every descriptor from 3 up: what the child keeps is on 0, 1 and 2 by now. The
/// spawner's `File`s for them are never used or dropped again (the child ends in `_exit`).
fn close_from_3() -> std::io::Result<()> {
    // SAFETY: closes descriptors only; no Rust object of the child uses them again.
    #[allow(unsafe_code)]
    let closed = unsafe { nix::libc::close_range(3, u32::MAX, 0) };
    if closed == 0 {
        return Ok(());
    }
    // Kernels before 5.9 have no close_range: close what /proc lists.
    let open: Vec<i32> = std::fs::read_dir("/proc/self/fd")?
        .flatten()
        .filter_map(|entry| entry.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in open {
        // SAFETY: as above (the directory's own descriptor is among them, already closed by
        // the iterator's drop, so closing it fails harmlessly with EBADF).
        #[allow(unsafe_code)]
        unsafe {
            nix::libc::close(fd)
        };
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_process_with_a_second_thread_is_not_single_threaded() {
        let (tell, told) = std::sync::mpsc::channel::<()>();
        let second = std::thread::spawn(move || told.recv());
        assert!(!super::single_threaded());
        tell.send(()).expect("the thread waits");
        second.join().expect("joined").expect("received");
    }
}
