//! CURVE keys for a client: a keypair in a file (0600), and the daemon's public key.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::Path;

use crate::ClientError;

/// A client's CURVE keypair, z85. The secret never appears in `Debug` output.
#[derive(Clone, PartialEq, Eq)]
pub struct CurveKeys {
    /// The public key (what the daemon's allowed-keys file lists).
    pub public: String,
    /// The secret key.
    pub secret: String,
}

impl std::fmt::Debug for CurveKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CurveKeys")
            .field("public", &self.public)
            .field("secret", &"<redacted>")
            .finish()
    }
}

/// How to reach a daemon over TCP: its public key and our keypair.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CurveClient {
    /// The daemon's public key, z85 (`drover auth` prints it).
    pub server_key: String,
    /// This client's keypair.
    pub keys: CurveKeys,
}

impl CurveKeys {
    /// A fresh keypair (libzmq's, from libsodium).
    pub fn generate() -> Result<CurveKeys, ClientError> {
        let pair = zmq::CurveKeyPair::new().map_err(|e| ClientError::Keys(e.to_string()))?;
        Ok(CurveKeys {
            public: drover_zmq::key::encode(&pair.public_key),
            secret: drover_zmq::key::encode(&pair.secret_key),
        })
    }

    /// Write the keypair to `path` (0600; missing directories are created 0700), as two lines:
    /// public, then secret, replacing a file that is there.
    pub fn write_to(&self, path: &Path) -> Result<(), ClientError> {
        self.write(path, true)
    }

    /// [`CurveKeys::write_to`], but refused if `path` exists, decided atomically (no window
    /// between a check and the write).
    pub fn write_new(&self, path: &Path) -> Result<(), ClientError> {
        self.write(path, false)
    }

    /// A new file is created with `O_EXCL` (the kernel refuses it if `path` exists). A
    /// replacement is written to a fresh 0600 file beside `path`, synced, then renamed over it:
    /// a descriptor someone opened on the earlier file never sees the new secret, and no reader
    /// sees half a file.
    fn write(&self, path: &Path, replace: bool) -> Result<(), ClientError> {
        let fail =
            |e: std::io::Error| ClientError::Keys(format!("writing {}: {e}", path.display()));
        let dir = path
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(fail)?;
        let create = |at: &Path| {
            fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(at)
        };
        let text = format!("{}\n{}\n", self.public, self.secret);
        if !replace {
            let mut file = create(path).map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => {
                    ClientError::Keys(format!("{} exists", path.display()))
                }
                _ => fail(e),
            })?;
            return file
                .write_all(text.as_bytes())
                .and_then(|()| file.sync_all())
                .map_err(fail);
        }
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let name = path.file_name().unwrap_or_default().to_string_lossy();
        let temp = dir.join(format!(".{name}.{}.{nanos:x}.tmp", std::process::id()));
        let mut file = create(&temp).map_err(fail)?;
        let written = file
            .write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .and_then(|()| fs::rename(&temp, path));
        if let Err(e) = written {
            let _ = fs::remove_file(&temp);
            return Err(fail(e));
        }
        Ok(())
    }

    /// Read a keypair written by [`CurveKeys::write_to`].
    pub fn read_from(path: &Path) -> Result<CurveKeys, ClientError> {
        let text = fs::read_to_string(path)
            .map_err(|e| ClientError::Keys(format!("reading {}: {e}", path.display())))?;
        let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
        let (Some(public), Some(secret)) = (lines.next(), lines.next()) else {
            return Err(ClientError::Keys(format!(
                "{}: expected two lines, the public key and the secret key",
                path.display()
            )));
        };
        for (line, key) in [(1, public), (2, secret)] {
            drover_zmq::key::decode(key)
                .map_err(|e| ClientError::Keys(format!("{}: line {line}: {e}", path.display())))?;
        }
        Ok(CurveKeys {
            public: public.to_owned(),
            secret: secret.to_owned(),
        })
    }
}

/// Make a socket that will connect to `endpoint`: limits, heartbeats, and CURVE on TCP.
pub(crate) fn socket(
    kind: zmq::SocketType,
    endpoint: &str,
    curve: Option<&CurveClient>,
    max_message: usize,
) -> Result<(zmq::Context, zmq::Socket), ClientError> {
    let fail = |e: zmq::Error| ClientError::Connect {
        endpoint: endpoint.to_owned(),
        reason: e.to_string(),
    };
    // A context per connection: its I/O thread serves only this socket (and its monitor).
    let context = zmq::Context::new();
    let socket = context.socket(kind).map_err(fail)?;
    socket.set_linger(0).map_err(fail)?;
    // Messages larger than this close the connection before memory is reserved for them.
    socket
        .set_maxmsgsize(i64::try_from(max_message).unwrap_or(i64::MAX))
        .map_err(fail)?;
    socket.set_heartbeat_ivl(10_000).map_err(fail)?;
    socket.set_heartbeat_timeout(30_000).map_err(fail)?;
    if endpoint.starts_with("tcp://") {
        if let Some(curve) = curve {
            let key = |z85: &str, what: &str| {
                drover_zmq::key::decode(z85).map_err(|e| ClientError::Keys(format!("{what}: {e}")))
            };
            socket
                .set_curve_serverkey(&key(&curve.server_key, "the server key")?)
                .map_err(fail)?;
            socket
                .set_curve_publickey(&key(&curve.keys.public, "the public key")?)
                .map_err(fail)?;
            socket
                .set_curve_secretkey(&key(&curve.keys.secret, "the secret key")?)
                .map_err(fail)?;
        }
    }
    Ok((context, socket))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use std::os::unix::fs::{MetadataExt, PermissionsExt};

    use super::*;

    #[test]
    fn keys_round_trip_through_a_private_file_and_debug_hides_the_secret() {
        let dir = std::env::temp_dir().join(format!("drover-keys-{}", std::process::id()));
        let path = dir.join("sub/client.key");
        let keys = CurveKeys::generate().unwrap();
        keys.write_to(&path).unwrap();
        assert_eq!(fs::metadata(&path).unwrap().mode() & 0o777, 0o600);
        assert_eq!(CurveKeys::read_from(&path).unwrap(), keys);
        let debug = format!("{keys:?}");
        assert!(
            !debug.contains(&keys.secret) && debug.contains(&keys.public),
            "{debug}"
        );
        fs::write(&path, "short\nkey\n").unwrap();
        let error = CurveKeys::read_from(&path).unwrap_err().to_string();
        assert!(
            error.contains("line 1") && error.contains("has 5"),
            "{error}"
        );
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_new_key_file_never_replaces_one_and_a_replaced_one_is_a_new_inode() {
        let dir = std::env::temp_dir().join(format!("drover-keys-new-{}", std::process::id()));
        let path = dir.join("client.key");
        let first = CurveKeys::generate().unwrap();
        first.write_new(&path).unwrap();
        let second = CurveKeys::generate().unwrap();
        let refused = second.write_new(&path).unwrap_err().to_string();
        assert!(refused.contains("exists"), "{refused}");
        assert_eq!(CurveKeys::read_from(&path).unwrap(), first);
        // A reader that opened the old file keeps the old secret; the new one is a new file.
        let inode = fs::metadata(&path).unwrap().ino();
        second.write_to(&path).unwrap();
        let meta = fs::metadata(&path).unwrap();
        assert_ne!(meta.ino(), inode);
        assert_eq!(meta.permissions().mode() & 0o777, 0o600);
        assert_eq!(CurveKeys::read_from(&path).unwrap(), second);
        // No temporary file is left behind.
        assert_eq!(fs::read_dir(&dir).unwrap().count(), 1);
        fs::remove_dir_all(&dir).unwrap();
    }
}
