//! Who may use the TCP endpoints: the server's CURVE keypair, the allowed client keys and their
//! roles, and the ZAP handler that asks them.
//!
//! The table is re-read when the file changes (its size, modification time or inode differ from
//! the last read, checked on every handshake and every TCP request, and every second by
//! [`watch_revocations`]) and on SIGHUP. A file that does not parse leaves the previous table in
//! force; the error, naming the line, is logged. A file that cannot be read (its permissions
//! changed, say) admits nobody until it can: a revocation must never be silently ignored. Roles
//! are looked up per request, so a revoked key's next request is refused even on a connection
//! that is already open; and since a subscription makes no requests, a change that takes a key
//! away ends every TCP PUB connection ([`Auth::revocations`]): the allowed ones reconnect
//! through the handshake again and refill what they missed by seq, the revoked ones are refused.

mod keys;
pub(crate) mod zap;

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use drover_proto::Role;

pub use keys::{
    allow_key, allowed_keys_path, revoke_key, AllowedKey, AllowedKeys, ServerKeys,
    ALLOWED_KEYS_FILE, SERVER_PUBLIC_FILE, SERVER_SECRET_FILE,
};

/// Failures reading or writing key files.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A line of a key file is malformed.
    #[error("{}: line {line}: {reason}", path.display())]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// The line (1-based).
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
    /// A key given to [`allow_key`] is not a z85 CURVE public key.
    #[error("not a CURVE public key: {0}")]
    BadKey(String),
    /// libzmq could not make a keypair.
    #[error("generating a CURVE keypair: {0}")]
    Generate(String),
    /// Reading or writing a key file failed.
    #[error("{context}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

impl AuthError {
    /// The line of the key file at fault, if that is what went wrong.
    pub fn line(&self) -> Option<usize> {
        match self {
            AuthError::KeyFile { line, .. } => Some(*line),
            _ => None,
        }
    }
}

/// The allowed-keys table the daemon consults; cheap to share.
#[derive(Debug, Clone)]
pub(crate) struct Auth {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    // The table and the file stamp it was read at. A std Mutex: held to compare a stamp or swap
    // the table, never across an await (file reads happen outside it).
    current: Mutex<(Option<Stamp>, Arc<AllowedKeys>)>,
    /// Counts the reloads that took a key away.
    revoked: tokio::sync::watch::Sender<u64>,
    /// The file could not be read at the last look (logged once per episode).
    unreadable: std::sync::atomic::AtomicBool,
}

/// What identifies one version of the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    modified: i64,
    modified_ns: i64,
    inode: u64,
    /// A `chmod` or `chown` changes only this.
    changed: i64,
    changed_ns: i64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let meta = std::fs::metadata(path).ok()?;
    Some(Stamp {
        len: meta.len(),
        modified: meta.mtime(),
        modified_ns: meta.mtime_nsec(),
        inode: meta.ino(),
        changed: meta.ctime(),
        changed_ns: meta.ctime_nsec(),
    })
}

impl Auth {
    /// Read the table of `state_dir` (a malformed file refuses to start: there is no previous
    /// table to keep).
    pub(crate) fn open(state_dir: &Path) -> Result<Auth, AuthError> {
        let path = allowed_keys_path(state_dir);
        let before = stamp(&path);
        let keys = AllowedKeys::read(&path)?;
        Ok(Auth {
            inner: Arc::new(Inner {
                path,
                current: Mutex::new((before, Arc::new(keys))),
                revoked: tokio::sync::watch::Sender::new(0),
                unreadable: std::sync::atomic::AtomicBool::new(false),
            }),
        })
    }

    /// The role of a client key in the current table (re-read first if the file changed).
    pub(crate) fn role_of(&self, key: &str) -> Option<Role> {
        self.refresh(false);
        self.table().role_of(key)
    }

    /// Re-read the file: if it changed, or always when `force` (SIGHUP).
    pub(crate) fn refresh(&self, force: bool) {
        let now = stamp(&self.inner.path);
        {
            let current = self.lock();
            if !force && current.0 == now {
                return;
            }
        }
        use std::sync::atomic::Ordering;
        let (stamp, loaded) = match AllowedKeys::read(&self.inner.path) {
            Ok(keys) => {
                if self.inner.unreadable.swap(false, Ordering::Relaxed) {
                    tracing::info!("allowed keys readable again");
                }
                tracing::info!(keys = keys.entries().len(), "allowed keys loaded");
                (now, keys)
            }
            Err(error @ AuthError::KeyFile { .. }) => {
                tracing::error!(%error, "allowed keys not reloaded; the previous set stays");
                // Remember the stamp so a bad file is reported once, not on every request.
                self.lock().0 = now;
                return;
            }
            Err(error) => {
                if !self.inner.unreadable.swap(true, Ordering::Relaxed) {
                    tracing::error!(
                        %error,
                        "allowed keys cannot be read: no key is allowed until they can"
                    );
                }
                // Fail closed, and keep no stamp: the file is read again at the next look, so
                // a passing error (out of descriptors) or a fixed mode ends the lockout.
                (None, AllowedKeys::default())
            }
        };
        let mut current = self.lock();
        // A key gone ends PUB connections; a role lowered needs nothing there (`read` may
        // subscribe), and control requests look the role up each time anyway.
        let took_away = current
            .1
            .entries()
            .iter()
            .any(|old| loaded.role_of(&old.key).is_none());
        *current = (stamp, Arc::new(loaded));
        drop(current);
        if took_away {
            self.inner.revoked.send_modify(|n| *n += 1);
        }
    }

    /// Changes each time a reload takes a key away.
    pub(crate) fn revocations(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.revoked.subscribe()
    }

    fn table(&self) -> Arc<AllowedKeys> {
        Arc::clone(&self.lock().1)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (Option<Stamp>, Arc<AllowedKeys>)> {
        self.inner.current.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How often the allowed-keys file is looked at when no request or handshake does it.
pub(crate) const WATCH_EVERY: std::time::Duration = std::time::Duration::from_secs(1);

/// Look at the allowed-keys file every [`WATCH_EVERY`], so a revocation reaches the PUB sockets
/// even when no TCP request comes; until aborted.
pub(crate) async fn watch_revocations(auth: Auth) {
    let mut every = tokio::time::interval(WATCH_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        let auth = auth.clone();
        let _ = tokio::task::spawn_blocking(move || auth.refresh(false)).await;
    }
}

/// Re-read the allowed keys on every SIGHUP, until aborted.
pub(crate) async fn reload_on_hangup(auth: Auth) {
    use tokio::signal::unix::{signal, SignalKind};
    let Ok(mut hangups) = signal(SignalKind::hangup()) else {
        tracing::warn!("cannot watch SIGHUP; allowed keys are still re-read when the file changes");
        return;
    };
    while hangups.recv().await.is_some() {
        auth.refresh(true);
    }
}
