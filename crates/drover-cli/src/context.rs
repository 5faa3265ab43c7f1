//! Contexts: named daemons the client can talk to, like docker and kubectl contexts.
//!
//! A context names a daemon's control endpoint and, for TCP, the daemon's CURVE public key and
//! the file holding this user's client keypair; optionally the PUB endpoint to follow on and the
//! HTTP base URL. They live in `contexts.toml` in the user's config directory
//! (`$DROVER_CONFIG_DIR`, else `$XDG_CONFIG_HOME/drover`, else `~/.config/drover`), with the
//! one in use under `current`. The built-in context `local` is never stored: it is the local
//! daemon's ipc socket in the default state directory, trusted by file permission.
//!
//! A fleet is a named list of contexts (`[fleets]` in the same file: `NAME = ["a", "b"]`); a
//! file without fleets is written exactly as before, so older clients keep reading it.

use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use anyhow::{bail, Context as _};
use serde::{Deserialize, Serialize};

/// The name of the built-in context.
pub(crate) const LOCAL: &str = "local";

/// One named daemon.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Context {
    /// Control endpoint: `tcp://HOST:PORT` or `ipc://PATH`.
    pub(crate) control: String,
    /// The daemon's CURVE public key (z85), required for `tcp://`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) server_key: Option<String>,
    /// The client keypair file (see `drover auth keygen`), required for `tcp://`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) key: Option<PathBuf>,
    /// PUB endpoint to follow on, when the daemon's own answer is not reachable from here.
    #[serde(default, rename = "pub", skip_serializing_if = "Option::is_none")]
    pub(crate) publish: Option<String>,
    /// HTTP base URL, for reference (`drover context show`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) http: Option<String>,
}

/// The contexts file.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Contexts {
    /// The context used when none is named.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub(crate) current: Option<String>,
    /// Every stored context by name.
    #[serde(default)]
    pub(crate) contexts: BTreeMap<String, Context>,
    /// Named fleets: lists of context names.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub(crate) fleets: BTreeMap<String, Vec<String>>,
}

/// The user's Drover config directory.
pub(crate) fn config_dir() -> anyhow::Result<PathBuf> {
    if let Some(dir) = std::env::var_os("DROVER_CONFIG_DIR").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(dir));
    }
    if let Some(config) = std::env::var_os("XDG_CONFIG_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(config).join("drover"));
    }
    let home = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .context("neither XDG_CONFIG_HOME nor HOME is set (or set DROVER_CONFIG_DIR)")?;
    Ok(PathBuf::from(home).join(".config/drover"))
}

/// Where a client keypair is kept unless told otherwise.
pub(crate) fn default_key_file() -> anyhow::Result<PathBuf> {
    Ok(config_dir()?.join("client.key"))
}

/// `$XDG_DATA_HOME/drover`, else `~/.local/share/drover`: the default state directory of a
/// local daemon.
pub(crate) fn default_state_dir() -> anyhow::Result<PathBuf> {
    if let Some(data) = std::env::var_os("XDG_DATA_HOME").filter(|v| !v.is_empty()) {
        return Ok(PathBuf::from(data).join("drover"));
    }
    let home = std::env::var_os("HOME")
        .filter(|v| !v.is_empty())
        .context("neither XDG_DATA_HOME nor HOME is set; pass --state-dir")?;
    Ok(PathBuf::from(home).join(".local/share/drover"))
}

/// A state directory as given, made absolute against the working directory.
pub(crate) fn absolute(dir: PathBuf) -> anyhow::Result<PathBuf> {
    if dir.is_absolute() {
        return Ok(dir);
    }
    let cwd = std::env::current_dir().context("reading the working directory")?;
    Ok(cwd.join(dir))
}

/// The built-in context: the local daemon's ipc socket, in `DROVER_STATE_DIR` when that is set
/// (as `drover serve` and `drover auth` take it), else in the default state directory.
pub(crate) fn local() -> anyhow::Result<Context> {
    let dir = match std::env::var_os("DROVER_STATE_DIR").filter(|v| !v.is_empty()) {
        Some(dir) => absolute(PathBuf::from(dir))?,
        None => default_state_dir()?,
    };
    let socket = dir.join("control.sock");
    Ok(Context {
        control: format!("ipc://{}", socket.display()),
        server_key: None,
        key: None,
        publish: None,
        http: None,
    })
}

impl Contexts {
    /// The contexts file's path.
    pub(crate) fn path() -> anyhow::Result<PathBuf> {
        Ok(config_dir()?.join("contexts.toml"))
    }

    /// Read the contexts file; a missing file is an empty one.
    pub(crate) fn load() -> anyhow::Result<Contexts> {
        Self::load_from(&Self::path()?)
    }

    fn load_from(path: &Path) -> anyhow::Result<Contexts> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Contexts::default()),
            Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
        };
        toml::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }

    /// Write the contexts file atomically (0600: it names key files).
    pub(crate) fn save(&self) -> anyhow::Result<()> {
        self.save_to(&Self::path()?)
    }

    fn save_to(&self, path: &Path) -> anyhow::Result<()> {
        let dir = path
            .parent()
            .context("the contexts file has no directory")?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let text = toml::to_string_pretty(self).context("encoding the contexts")?;
        // A file of this process's own: two writers sharing one would rename each other's
        // half-written file into place.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let temp = dir.join(format!(".contexts.toml.{}.{nanos}.tmp", std::process::id()));
        let written = (|| -> anyhow::Result<()> {
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(0o600)
                .open(&temp)
                .with_context(|| format!("writing {}", temp.display()))?;
            file.set_permissions(std::fs::Permissions::from_mode(0o600))?;
            file.write_all(text.as_bytes())?;
            file.sync_all()?;
            std::fs::rename(&temp, path).with_context(|| format!("replacing {}", path.display()))
        })();
        if written.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        written?;
        // The rename itself lasts only once the directory is synced.
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .with_context(|| format!("syncing {}", dir.display()))
    }

    /// Hold the contexts file's lock (`contexts.toml.lock`, `flock`) for a read-modify-write:
    /// concurrent `drover context` commands then apply one after the other, none losing
    /// another's change. Released when the returned guard is dropped.
    pub(crate) fn lock() -> anyhow::Result<nix::fcntl::Flock<std::fs::File>> {
        let path = Self::path()?;
        let dir = path
            .parent()
            .context("the contexts file has no directory")?;
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
        let lock_path = dir.join("contexts.toml.lock");
        let file = std::fs::OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(&lock_path)
            .with_context(|| format!("opening {}", lock_path.display()))?;
        nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
            .map_err(|(_, errno)| anyhow::anyhow!("locking {}: {errno}", lock_path.display()))
    }

    /// The context called `name` (`local` is built in).
    pub(crate) fn get(&self, name: &str) -> anyhow::Result<Context> {
        if name == LOCAL {
            return local();
        }
        match self.contexts.get(name) {
            Some(context) => Ok(context.clone()),
            None => bail!(
                "no context named {name:?} (known: {})",
                self.names().join(", ")
            ),
        }
    }

    /// Every context name, `local` first.
    pub(crate) fn names(&self) -> Vec<String> {
        std::iter::once(LOCAL.to_owned())
            .chain(self.contexts.keys().cloned())
            .collect()
    }

    /// The name of the context in use when none is named.
    pub(crate) fn current_name(&self) -> &str {
        self.current.as_deref().unwrap_or(LOCAL)
    }

    /// Whether `choice` (a `--context` value) selects several daemons: a comma list or a
    /// fleet's name, even a list or fleet of one, so the output's shape follows what was asked
    /// rather than how many contexts the file holds.
    pub(crate) fn is_several(&self, choice: &str) -> bool {
        choice.contains(',') || self.fleets.contains_key(choice)
    }

    /// The context names a `--context` value selects: each comma-separated item is a context
    /// or a fleet (expanded); the first mention of a context wins, so none is asked twice.
    pub(crate) fn expand(&self, choice: &str) -> anyhow::Result<Vec<String>> {
        let mut names: Vec<String> = Vec::new();
        for item in choice.split(',').map(str::trim) {
            if item.is_empty() {
                bail!("empty context name in {choice:?}");
            }
            let members = match self.fleets.get(item) {
                Some(members) => members.clone(),
                None => {
                    self.get(item)?;
                    vec![item.to_owned()]
                }
            };
            for member in members {
                if !names.contains(&member) {
                    names.push(member);
                }
            }
        }
        Ok(names)
    }

    /// `--all-contexts`: every stored context, in name order (not the built-in `local`,
    /// which is there whether or not a local daemon runs; name it with `--context local,...`
    /// or in a fleet).
    pub(crate) fn all_stored(&self) -> anyhow::Result<Vec<String>> {
        if self.contexts.is_empty() {
            bail!("no stored contexts (add one with `drover context add`)");
        }
        Ok(self.contexts.keys().cloned().collect())
    }

    /// Check a new fleet: a valid name that no context has, and members that are contexts.
    pub(crate) fn check_fleet(&self, name: &str, members: &[String]) -> anyhow::Result<()> {
        validate_name(name)?;
        if self.contexts.contains_key(name) {
            bail!("{name:?} is a context; a fleet needs a name of its own");
        }
        if members.is_empty() {
            bail!("a fleet needs at least one context");
        }
        for member in members {
            if self.fleets.contains_key(member) {
                bail!("{member:?} is a fleet; a fleet lists contexts");
            }
            self.get(member)?;
        }
        Ok(())
    }
}

/// Check a context name: short, printable, no path separators, not the built-in one.
pub(crate) fn validate_name(name: &str) -> anyhow::Result<()> {
    if name == LOCAL {
        bail!("{LOCAL:?} is the built-in context of the local daemon and cannot be redefined");
    }
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        && !name.starts_with('.');
    if !ok {
        bail!(
            "invalid context name {name:?}: use 1-64 letters, digits, '-', '_' or '.', not \
             starting with '.'"
        );
    }
    Ok(())
}

/// Check a CURVE public key as printed by `drover auth`: 40 z85 characters.
pub(crate) fn validate_z85_key(what: &str, key: &str) -> anyhow::Result<()> {
    const Z85: &str =
        "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";
    if key.len() != 40 || !key.chars().all(|c| Z85.contains(c)) {
        bail!(
            "{what} must be 40 z85 characters (as printed by `drover auth server-key`), got {} \
             characters",
            key.chars().count()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_saved_file_reads_back_and_is_private() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub/contexts.toml");
        let mut contexts = Contexts::default();
        contexts.contexts.insert(
            "prod".into(),
            Context {
                control: "tcp://10.0.0.2:7710".into(),
                server_key: Some("rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7".into()),
                key: Some(PathBuf::from("/home/u/.config/drover/client.key")),
                publish: Some("tcp://10.0.0.2:7711".into()),
                http: None,
            },
        );
        contexts.current = Some("prod".into());
        contexts.save_to(&path).expect("save");
        assert_eq!(Contexts::load_from(&path).expect("load"), contexts);
        let mode = std::fs::metadata(&path).expect("stat").permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        assert_eq!(contexts.current_name(), "prod");
        assert!(contexts.get("nope").is_err());
    }

    #[test]
    fn names_and_keys_are_checked() {
        assert!(validate_name("prod-1").is_ok());
        assert!(validate_name("local").is_err());
        assert!(validate_name("../x").is_err());
        assert!(validate_name("").is_err());
        assert!(validate_z85_key("key", "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7").is_ok());
        assert!(validate_z85_key("key", "short").is_err());
        assert!(validate_z85_key("key", "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf\"").is_err());
    }

    #[test]
    fn a_missing_file_is_empty_and_local_is_built_in() {
        let dir = tempfile::tempdir().expect("tempdir");
        let contexts = Contexts::load_from(&dir.path().join("none.toml")).expect("load");
        assert_eq!(contexts.current_name(), LOCAL);
        assert_eq!(contexts.names(), vec![LOCAL.to_owned()]);
    }

    fn tcp(host: &str) -> Context {
        Context {
            control: format!("tcp://{host}:7710"),
            server_key: None,
            key: None,
            publish: None,
            http: None,
        }
    }

    #[test]
    fn fleets_expand_and_files_without_them_are_unchanged() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("contexts.toml");
        let mut contexts = Contexts::default();
        for name in ["a", "b", "c"] {
            contexts.contexts.insert(name.into(), tcp(name));
        }
        contexts.save_to(&path).expect("save");
        let before = std::fs::read_to_string(&path).expect("read");
        assert!(!before.contains("fleets"), "{before}");
        // A file written before fleets existed reads the same.
        assert_eq!(Contexts::load_from(&path).expect("load"), contexts);

        assert!(contexts.check_fleet("a", &["b".into()]).is_err());
        assert!(contexts.check_fleet("f", &[]).is_err());
        assert!(contexts.check_fleet("f", &["nope".into()]).is_err());
        contexts
            .check_fleet("f", &["b".into(), "c".into()])
            .expect("valid");
        contexts
            .fleets
            .insert("f".into(), vec!["b".into(), "c".into()]);
        contexts.save_to(&path).expect("save");
        assert_eq!(Contexts::load_from(&path).expect("load"), contexts);

        assert!(!contexts.is_several("a"));
        assert!(contexts.is_several("f"));
        assert!(contexts.is_several("a,b"));
        assert_eq!(contexts.expand("a").expect("one"), ["a"]);
        assert_eq!(contexts.expand("f").expect("fleet"), ["b", "c"]);
        assert_eq!(contexts.expand("c,f,a").expect("mixed"), ["c", "b", "a"]);
        assert!(contexts.expand("a,,b").is_err());
        assert!(contexts.expand("a,nope").is_err());
        assert_eq!(contexts.all_stored().expect("all"), ["a", "b", "c"]);
        assert!(Contexts::default().all_stored().is_err());
    }
}
