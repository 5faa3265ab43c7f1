//! HTTP bearer tokens: created, listed and revoked in `<state_dir>/tokens`, checked per request.
//!
//! A token is `drv_` followed by 43 base64url characters: 32 bytes (256 bits) from the operating
//! system's CSPRNG. Only its SHA-256 is stored. A plain hash, not a password hash (argon2,
//! bcrypt), is the right tool here: slow hashing exists to protect low-entropy secrets against
//! guessing, and nobody can enumerate 2^256 secrets, so a fast hash loses nothing and keeps the
//! per-request check to a microsecond. Hashes are compared in constant time (`subtle`), so the
//! time a refusal takes says nothing about how close a guess was.
//!
//! The file is text, one token per line, `<id> <role> <sha256 hex> <created ns> <comment>`,
//! written 0600 through a temporary file and a rename (a reader never sees half a file) under an
//! exclusive lock on `tokens.lock` (two `drover auth` runs never lose each other's change). The
//! daemon's [`TokenTable`] re-reads it when its metadata changes, so a revoked token stops working
//! on the next request, without a restart or a signal.
//!
//! Secrets appear only in [`NewToken::secret`], which has no `Debug` output of it.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use base64::Engine;
use drover_proto::Role;
use nix::fcntl::{Flock, FlockArg};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::DaemonError;

/// What every token starts with, so one is recognised in a config file or a leak scanner.
pub const PREFIX: &str = "drv_";

/// Random bytes in a token's secret.
const SECRET_BYTES: usize = 32;

/// Longest comment, in bytes.
const MAX_COMMENT: usize = 200;

/// Most tokens in one file (bounds the per-request comparison and the file's size).
pub const MAX_TOKENS: usize = 1000;

/// The token file in a state directory.
pub fn path(state_dir: &Path) -> PathBuf {
    state_dir.join("tokens")
}

/// A token just created: its id (for `ls` and `revoke`) and its secret, shown once.
pub struct NewToken {
    /// The token's public id.
    pub id: String,
    /// The bearer secret (`drv_...`). Never stored, never logged.
    pub secret: String,
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken")
            .field("id", &self.id)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// One stored token, without its secret.
#[derive(Clone, PartialEq, Eq)]
pub struct TokenEntry {
    /// Public id: 12 hex digits.
    pub id: String,
    /// What the token allows.
    pub role: Role,
    /// Free text given at creation.
    pub comment: String,
    /// When it was created (unix nanoseconds).
    pub created: i64,
    /// SHA-256 of the secret.
    hash: [u8; 32],
}

// Written by hand so the hash stays out of logs too.
impl std::fmt::Debug for TokenEntry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenEntry")
            .field("id", &self.id)
            .field("role", &self.role)
            .field("comment", &self.comment)
            .field("created", &self.created)
            .finish_non_exhaustive()
    }
}

/// Create a token with `role` and `comment`; the secret is returned once and stored hashed.
pub fn create(state_dir: &Path, role: Role, comment: &str) -> Result<NewToken, DaemonError> {
    if comment.len() > MAX_COMMENT || comment.chars().any(char::is_control) {
        return Err(config_error(format!(
            "a token comment is at most {MAX_COMMENT} bytes without control characters"
        )));
    }
    let mut secret_bytes = [0u8; SECRET_BYTES];
    getrandom::fill(&mut secret_bytes).map_err(|e| DaemonError::Io {
        context: "reading the operating system's random source".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let mut id_bytes = [0u8; 6];
    getrandom::fill(&mut id_bytes).map_err(|e| DaemonError::Io {
        context: "reading the operating system's random source".into(),
        source: std::io::Error::other(e.to_string()),
    })?;
    let secret = format!(
        "{PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(secret_bytes)
    );
    let id = hex(&id_bytes);
    let entry = TokenEntry {
        id: id.clone(),
        role,
        comment: comment.to_owned(),
        created: drover_proto::now_ns(),
        hash: digest(&secret),
    };
    update(state_dir, |entries| {
        if entries.len() >= MAX_TOKENS {
            return Err(config_error(format!(
                "{} already holds {MAX_TOKENS} tokens; revoke some first",
                path(state_dir).display()
            )));
        }
        entries.push(entry);
        Ok(())
    })?;
    Ok(NewToken { id, secret })
}

/// Every stored token, oldest first.
pub fn list(state_dir: &Path) -> Result<Vec<TokenEntry>, DaemonError> {
    read(&path(state_dir))
}

/// Revoke every token whose id or comment is `id_or_comment`; how many were revoked.
pub fn revoke(state_dir: &Path, id_or_comment: &str) -> Result<usize, DaemonError> {
    let mut revoked = 0;
    update(state_dir, |entries| {
        let before = entries.len();
        entries.retain(|e| e.id != id_or_comment && e.comment != id_or_comment);
        revoked = before - entries.len();
        Ok(())
    })?;
    Ok(revoked)
}

/// Read-modify-write the file under its lock.
fn update(
    state_dir: &Path,
    change: impl FnOnce(&mut Vec<TokenEntry>) -> Result<(), DaemonError>,
) -> Result<(), DaemonError> {
    // `drover auth` may run before the daemon ever did: make the state directory as it would.
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(state_dir)
        .map_err(io(format!("creating {}", state_dir.display())))?;
    let lock_path = state_dir.join("tokens.lock");
    let lock_file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&lock_path)
        .map_err(io(format!("opening {}", lock_path.display())))?;
    let _lock =
        Flock::lock(lock_file, FlockArg::LockExclusive).map_err(|(_, errno)| DaemonError::Io {
            context: format!("locking {}", lock_path.display()),
            source: std::io::Error::from(errno),
        })?;
    let file = path(state_dir);
    let mut entries = read(&file)?;
    change(&mut entries)?;
    let mut text = String::new();
    for e in &entries {
        text.push_str(&format!(
            "{} {} {} {} {}\n",
            e.id,
            e.role,
            hex(&e.hash),
            e.created,
            e.comment
        ));
    }
    write_private(&file, text.as_bytes())
}

/// Write `bytes` to `path` atomically (temporary file, fsync, rename), mode 0600.
pub(crate) fn write_private(path: &Path, bytes: &[u8]) -> Result<(), DaemonError> {
    let tmp = path.with_extension("tmp");
    let _ = fs::remove_file(&tmp);
    let mut file = OpenOptions::new()
        .create_new(true)
        .write(true)
        .mode(0o600)
        .open(&tmp)
        .map_err(io(format!("creating {}", tmp.display())))?;
    file.write_all(bytes)
        .and_then(|()| file.sync_all())
        .map_err(io(format!("writing {}", tmp.display())))?;
    fs::rename(&tmp, path).map_err(io(format!("replacing {}", path.display())))
}

/// Parse the file; a missing file holds no tokens. A malformed line names its number (and never
/// echoes the line, which holds a hash).
fn read(file: &Path) -> Result<Vec<TokenEntry>, DaemonError> {
    let text = match fs::read_to_string(file) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(io(format!("reading {}", file.display()))(e)),
    };
    let mut entries = Vec::new();
    for (number, line) in text.lines().enumerate() {
        if line.trim().is_empty() || line.starts_with('#') {
            continue;
        }
        let entry = parse_line(line).ok_or_else(|| {
            config_error(format!("{} line {}: malformed", file.display(), number + 1))
        })?;
        entries.push(entry);
    }
    if entries.len() > MAX_TOKENS {
        return Err(config_error(format!(
            "{} holds more than {MAX_TOKENS} tokens",
            file.display()
        )));
    }
    Ok(entries)
}

fn parse_line(line: &str) -> Option<TokenEntry> {
    let mut fields = line.splitn(5, ' ');
    let id = fields.next()?.to_owned();
    let role = Role::parse(fields.next()?)?;
    let hash_hex = fields.next()?;
    let created = fields.next()?.parse().ok()?;
    let comment = fields.next().unwrap_or("").to_owned();
    let mut hash = [0u8; 32];
    if hash_hex.len() != 64 || id.is_empty() {
        return None;
    }
    for (i, byte) in hash.iter_mut().enumerate() {
        *byte = u8::from_str_radix(hash_hex.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(TokenEntry {
        id,
        role,
        comment,
        created,
        hash,
    })
}

fn digest(secret: &str) -> [u8; 32] {
    Sha256::digest(secret.as_bytes()).into()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn io(context: String) -> impl FnOnce(std::io::Error) -> DaemonError {
    move |source| DaemonError::Io { context, source }
}

fn config_error(reason: String) -> DaemonError {
    DaemonError::Config { reason }
}

/// The daemon's view of the token file: re-read whenever the file's identity or metadata changes
/// (one `stat` per request), so changes from `drover auth` apply to the next request.
#[derive(Debug)]
pub(crate) struct TokenTable {
    file: PathBuf,
    // A std Mutex: held for a stat and, when the file changed, a read of a small file; never
    // across an await.
    cache: Mutex<Cache>,
}

#[derive(Debug, Default)]
struct Cache {
    /// (device, inode, size, mtime ns, ctime ns) of the file last read; `None` if it was missing.
    stamp: Option<(u64, u64, u64, i64, i64)>,
    entries: Vec<TokenEntry>,
    loaded: bool,
    /// The last read failed (logged once per episode).
    failing: bool,
}

impl TokenTable {
    pub(crate) fn new(state_dir: &Path) -> TokenTable {
        TokenTable {
            file: path(state_dir),
            cache: Mutex::new(Cache::default()),
        }
    }

    /// The role of the token whose secret is `presented`, if it is stored.
    pub(crate) fn role_of(&self, presented: &str) -> Option<Role> {
        self.entry_of(presented).map(|(_, role)| role)
    }

    /// The id and role of the token whose secret is `presented`, if it is stored.
    pub(crate) fn entry_of(&self, presented: &str) -> Option<(String, Role)> {
        if !presented.starts_with(PREFIX) {
            return None;
        }
        let wanted = digest(presented);
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        self.refresh(&mut cache);
        // Every entry is compared (no early exit), each in constant time.
        let mut found = None;
        for entry in &cache.entries {
            if bool::from(entry.hash.ct_eq(&wanted)) {
                found = Some((entry.id.clone(), entry.role));
            }
        }
        found
    }

    /// The role of the stored token with this id (not a secret: a session names its token so).
    pub(crate) fn role_by_id(&self, id: &str) -> Option<Role> {
        let mut cache = self.cache.lock().unwrap_or_else(|p| p.into_inner());
        self.refresh(&mut cache);
        cache.entries.iter().find(|e| e.id == id).map(|e| e.role)
    }

    fn refresh(&self, cache: &mut Cache) {
        let stamp = fs::metadata(&self.file).ok().map(|m| {
            (
                m.dev(),
                m.ino(),
                m.size(),
                m.mtime() * 1_000_000_000 + m.mtime_nsec(),
                m.ctime() * 1_000_000_000 + m.ctime_nsec(),
            )
        });
        if cache.loaded && stamp == cache.stamp {
            return;
        }
        match read(&self.file) {
            Ok(entries) => {
                cache.entries = entries;
                cache.stamp = stamp;
                cache.loaded = true;
                cache.failing = false;
            }
            Err(error) => {
                // A file that cannot be read admits nobody (fail closed), and is logged once
                // per episode. No stamp is kept, so it is read again at the next request: a
                // passing error (out of descriptors) or a fixed mode ends the lockout.
                if !cache.failing {
                    tracing::error!(%error, "token file unusable; HTTP tokens refused");
                }
                cache.failing = true;
                cache.entries.clear();
                cache.loaded = false;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn create_list_check_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let table = TokenTable::new(dir.path());
        let read = create(dir.path(), Role::Read, "ci reader").unwrap();
        let control = create(dir.path(), Role::Control, "me").unwrap();
        assert!(read.secret.starts_with(PREFIX));
        assert_eq!(read.secret.len(), PREFIX.len() + 43);
        assert!(!format!("{read:?}").contains(&read.secret));
        let mode = fs::metadata(path(dir.path())).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        let text = fs::read_to_string(path(dir.path())).unwrap();
        assert!(!text.contains(&read.secret[PREFIX.len()..]), "only hashes");

        let listed = list(dir.path()).unwrap();
        assert_eq!(
            listed
                .iter()
                .map(|e| (e.id.as_str(), e.role, e.comment.as_str()))
                .collect::<Vec<_>>(),
            vec![
                (read.id.as_str(), Role::Read, "ci reader"),
                (control.id.as_str(), Role::Control, "me")
            ]
        );
        assert_eq!(table.role_of(&read.secret), Some(Role::Read));
        assert_eq!(table.role_of(&control.secret), Some(Role::Control));
        assert_eq!(table.role_of("drv_nope"), None);
        assert_eq!(table.role_of(""), None);

        assert_eq!(revoke(dir.path(), "ci reader").unwrap(), 1);
        assert_eq!(table.role_of(&read.secret), None, "revocation seen at once");
        assert_eq!(table.role_of(&control.secret), Some(Role::Control));
        assert_eq!(revoke(dir.path(), &control.id).unwrap(), 1);
        assert_eq!(revoke(dir.path(), &control.id).unwrap(), 0);
        assert_eq!(table.role_of(&control.secret), None);
    }

    #[test]
    fn a_missing_state_directory_is_made_private() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("new/state");
        create(&state, Role::Read, "").unwrap();
        let mode = fs::metadata(&state).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        assert_eq!(list(&state).unwrap().len(), 1);
    }

    #[test]
    fn bad_comments_and_malformed_files_are_typed_errors() {
        let dir = tempfile::tempdir().unwrap();
        assert!(create(dir.path(), Role::Read, "two\nlines").is_err());
        fs::write(path(dir.path()), "abc read nothex 1 x\n").unwrap();
        let error = list(dir.path()).unwrap_err().to_string();
        assert!(error.contains("line 1: malformed"), "{error}");
        let table = TokenTable::new(dir.path());
        assert_eq!(table.role_of("drv_x"), None, "fails closed");
    }
}
