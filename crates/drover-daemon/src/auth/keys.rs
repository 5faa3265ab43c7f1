//! Key files in the state directory: the server's keypair and the allowed client keys.
//!
//! The allowed-keys file is text, one key per line, like `authorized_keys`:
//! `<z85 public key> <role> <comment...>`; blank lines and lines starting with `#` are ignored.
//! Writes go to a temporary file renamed over the old one (0600), so a reader never sees half a
//! file.

use std::fs::{self, OpenOptions};
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use drover_proto::Role;

use super::AuthError;

/// Name of the allowed-keys file in the state directory.
pub const ALLOWED_KEYS_FILE: &str = "allowed_keys";
/// Name of the server's public key file (z85) in the state directory.
pub const SERVER_PUBLIC_FILE: &str = "server.key.pub";
/// Name of the server's secret key file (z85) in the state directory.
pub const SERVER_SECRET_FILE: &str = "server.key";

/// The daemon's CURVE keypair. The secret never appears in `Debug` output.
#[derive(Clone)]
pub struct ServerKeys {
    public: String,
    secret: String,
}

impl std::fmt::Debug for ServerKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServerKeys")
            .field("public", &self.public)
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl ServerKeys {
    /// Read the keypair from `state_dir`, or make one (files 0600) if there is none.
    pub fn load_or_create(state_dir: &Path) -> Result<ServerKeys, crate::DaemonError> {
        Ok(Self::load_or_create_inner(state_dir)?)
    }

    fn load_or_create_inner(state_dir: &Path) -> Result<ServerKeys, AuthError> {
        let public_path = state_dir.join(SERVER_PUBLIC_FILE);
        let secret_path = state_dir.join(SERVER_SECRET_FILE);
        if secret_path.exists() {
            let public = read_key(&public_path)?;
            let secret = read_key(&secret_path)?;
            return Ok(ServerKeys { public, secret });
        }
        let pair = zmq::CurveKeyPair::new().map_err(|e| AuthError::Generate(e.to_string()))?;
        let keys = ServerKeys {
            public: drover_zmq::key::encode(&pair.public_key),
            secret: drover_zmq::key::encode(&pair.secret_key),
        };
        // The public half first: a secret without its public half is never left behind.
        write_private(&public_path, &format!("{}\n", keys.public))?;
        write_private(&secret_path, &format!("{}\n", keys.secret))?;
        Ok(keys)
    }

    /// The public key, z85 (what clients set as `curve_serverkey`).
    pub fn public(&self) -> &str {
        &self.public
    }

    /// The secret key, z85, for the server sockets only.
    pub(crate) fn secret(&self) -> &str {
        &self.secret
    }
}

fn read_key(path: &Path) -> Result<String, AuthError> {
    let text = fs::read_to_string(path).map_err(|source| AuthError::Io {
        context: format!("reading {}", path.display()),
        source,
    })?;
    let key = text.trim().to_owned();
    drover_zmq::key::decode(&key).map_err(|error| AuthError::KeyFile {
        path: path.to_owned(),
        line: 1,
        reason: error.to_string(),
    })?;
    Ok(key)
}

/// One line of the allowed-keys file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AllowedKey {
    /// The client's public key, z85.
    pub key: String,
    /// What it may do.
    pub role: Role,
    /// Free text (who or what the key is for).
    pub comment: String,
}

/// The allowed client keys, as read from the file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AllowedKeys {
    entries: Vec<AllowedKey>,
}

/// Where the allowed-keys file of a state directory is.
pub fn allowed_keys_path(state_dir: &Path) -> PathBuf {
    state_dir.join(ALLOWED_KEYS_FILE)
}

impl AllowedKeys {
    /// Read and check the file; a missing file is an empty set. A malformed line is an error
    /// naming its number (1-based).
    pub fn read(path: &Path) -> Result<AllowedKeys, AuthError> {
        let text = match fs::read_to_string(path) {
            Ok(text) => text,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(AuthError::Io {
                    context: format!("reading {}", path.display()),
                    source,
                })
            }
        };
        Self::parse(&text).map_err(|(line, reason)| AuthError::KeyFile {
            path: path.to_owned(),
            line,
            reason,
        })
    }

    /// Parse the file's text; on error, the line number and what is wrong with it.
    pub fn parse(text: &str) -> Result<AllowedKeys, (usize, String)> {
        let mut entries = Vec::new();
        for (index, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let number = index + 1;
            let mut words = line.split_whitespace();
            let key = words.next().unwrap_or_default();
            drover_zmq::key::decode(key).map_err(|e| (number, e.to_string()))?;
            let role = words
                .next()
                .ok_or_else(|| (number, "missing the role (read or control)".to_owned()))?;
            let role = Role::parse(role)
                .ok_or_else(|| (number, format!("unknown role {role:?} (read or control)")))?;
            let comment = words.collect::<Vec<_>>().join(" ");
            entries.push(AllowedKey {
                key: key.to_owned(),
                role,
                comment,
            });
        }
        Ok(AllowedKeys { entries })
    }

    /// Every allowed key, in file order.
    pub fn entries(&self) -> &[AllowedKey] {
        &self.entries
    }

    /// The role of `key`, if it is allowed (the last line for a key wins).
    pub fn role_of(&self, key: &str) -> Option<Role> {
        self.entries
            .iter()
            .rev()
            .find(|e| e.key == key)
            .map(|e| e.role)
    }

    fn render(&self) -> String {
        let mut text =
            String::from("# Drover allowed client keys: <z85 public key> <role> <comment>\n");
        for entry in &self.entries {
            text.push_str(&format!("{} {} {}\n", entry.key, entry.role, entry.comment));
        }
        text
    }
}

/// Allow `key` with `role`, replacing any line for the same key. The file is rewritten
/// atomically (0600); a running daemon picks the change up on its next check.
pub fn allow_key(
    state_dir: &Path,
    key: &str,
    role: Role,
    comment: &str,
) -> Result<(), crate::DaemonError> {
    drover_zmq::key::decode(key).map_err(|e| AuthError::BadKey(e.to_string()))?;
    if comment.contains('\n') {
        return Err(AuthError::BadKey("a comment is one line".into()).into());
    }
    let _lock = lock(state_dir)?;
    let path = allowed_keys_path(state_dir);
    let mut keys = AllowedKeys::read(&path)?;
    keys.entries.retain(|e| e.key != key);
    keys.entries.push(AllowedKey {
        key: key.to_owned(),
        role,
        comment: comment.trim().to_owned(),
    });
    Ok(write_private(&path, &keys.render())?)
}

/// Remove every line whose key, or whose comment, is `key_or_comment`; returns how many went.
pub fn revoke_key(state_dir: &Path, key_or_comment: &str) -> Result<usize, crate::DaemonError> {
    let _lock = lock(state_dir)?;
    let path = allowed_keys_path(state_dir);
    let mut keys = AllowedKeys::read(&path)?;
    let before = keys.entries.len();
    keys.entries
        .retain(|e| e.key != key_or_comment && e.comment != key_or_comment);
    let removed = before - keys.entries.len();
    if removed > 0 {
        write_private(&path, &keys.render())?;
    }
    Ok(removed)
}

/// An exclusive lock on `allowed_keys.lock`, held for one read-modify-write, so two `drover auth`
/// runs at once never lose each other's change (a lost revocation would bring a key back).
fn lock(state_dir: &Path) -> Result<nix::fcntl::Flock<fs::File>, AuthError> {
    let path = state_dir.join("allowed_keys.lock");
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(&path)
        .map_err(|source| AuthError::Io {
            context: format!("opening {}", path.display()),
            source,
        })?;
    nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive).map_err(|(_, errno)| {
        AuthError::Io {
            context: format!("locking {}", path.display()),
            source: std::io::Error::from(errno),
        }
    })
}

/// Write `text` to `path` through a temporary file in the same directory, 0600, then rename.
fn write_private(path: &Path, text: &str) -> Result<(), AuthError> {
    let io = |context: String| move |source| AuthError::Io { context, source };
    let temp = path.with_extension(format!("tmp{}", std::process::id()));
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&temp)
        .map_err(io(format!("creating {}", temp.display())))?;
    // `mode` applies only to a file created now; a leftover temp file is tightened too.
    fs::set_permissions(&temp, fs::Permissions::from_mode(0o600))
        .map_err(io(format!("securing {}", temp.display())))?;
    file.write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(io(format!("writing {}", temp.display())))?;
    fs::rename(&temp, path).map_err(io(format!("replacing {}", path.display())))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::os::unix::fs::MetadataExt;

    use super::*;

    fn key() -> String {
        drover_zmq::key::encode(&zmq::CurveKeyPair::new().unwrap().public_key)
    }

    #[test]
    fn the_server_keypair_is_made_once_private_and_never_printed() {
        let dir = tempfile::tempdir().unwrap();
        let keys = ServerKeys::load_or_create(dir.path()).unwrap();
        let again = ServerKeys::load_or_create(dir.path()).unwrap();
        assert_eq!(keys.public(), again.public());
        assert_eq!(keys.secret(), again.secret());
        for name in [SERVER_PUBLIC_FILE, SERVER_SECRET_FILE] {
            let mode = fs::metadata(dir.path().join(name)).unwrap().mode() & 0o777;
            assert_eq!(mode, 0o600, "{name}");
        }
        let debug = format!("{keys:?}");
        assert!(!debug.contains(keys.secret()), "{debug}");
        assert!(debug.contains(keys.public()), "{debug}");
    }

    #[test]
    fn concurrent_allows_lose_no_key() {
        let dir = tempfile::tempdir().unwrap();
        let keys: Vec<String> = (0..16).map(|_| key()).collect();
        std::thread::scope(|scope| {
            for (i, k) in keys.iter().enumerate() {
                let dir = dir.path();
                scope.spawn(move || allow_key(dir, k, Role::Read, &format!("n{i}")).unwrap());
            }
        });
        let stored = AllowedKeys::read(&allowed_keys_path(dir.path())).unwrap();
        let mut stored: Vec<&str> = stored.entries().iter().map(|e| e.key.as_str()).collect();
        let mut expected: Vec<&str> = keys.iter().map(String::as_str).collect();
        stored.sort_unstable();
        expected.sort_unstable();
        assert_eq!(stored, expected);
    }

    #[test]
    fn allowing_replaces_a_line_and_revoking_by_key_or_comment_removes_it() {
        let dir = tempfile::tempdir().unwrap();
        let (a, b) = (key(), key());
        allow_key(dir.path(), &a, Role::Read, "alice laptop").unwrap();
        allow_key(dir.path(), &b, Role::Control, "ci").unwrap();
        allow_key(dir.path(), &a, Role::Control, "alice laptop").unwrap();
        let path = allowed_keys_path(dir.path());
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        let keys = AllowedKeys::read(&path).unwrap();
        let lines: Vec<(&str, Role, &str)> = keys
            .entries()
            .iter()
            .map(|e| (e.key.as_str(), e.role, e.comment.as_str()))
            .collect();
        assert_eq!(
            lines,
            vec![
                (b.as_str(), Role::Control, "ci"),
                (a.as_str(), Role::Control, "alice laptop")
            ]
        );
        assert_eq!(revoke_key(dir.path(), "ci").unwrap(), 1);
        assert_eq!(revoke_key(dir.path(), &a).unwrap(), 1);
        assert_eq!(revoke_key(dir.path(), &a).unwrap(), 0);
        assert!(AllowedKeys::read(&path).unwrap().entries().is_empty());
    }

    #[test]
    fn malformed_lines_are_named_by_number() {
        let good = key();
        let cases = [
            (
                format!("# c\n\n{good} read x\n{} read\n", &good[..39]),
                4,
                "has 39",
            ),
            (format!("{good} admin x\n"), 1, "unknown role"),
            (format!("{good}\n"), 1, "missing the role"),
            (
                format!("{}~ read\n", &good[..39]),
                1,
                "outside that alphabet",
            ),
        ];
        for (text, line, reason) in cases {
            let (number, message) = AllowedKeys::parse(&text).unwrap_err();
            assert_eq!(number, line, "{text}");
            assert!(message.contains(reason), "{message}");
        }
        let error = allow_key(Path::new("/nonexistent"), "short", Role::Read, "").unwrap_err();
        assert!(error.to_string().contains("40 z85 characters"), "{error}");
    }
}
