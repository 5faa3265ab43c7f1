//! The store's one error type: what was being done, to what, and the cause.

use std::io;
use std::path::PathBuf;

use drover_proto::{AgentId, Seq};

/// Everything that can go wrong in the store. IO and SQLite failures keep their cause as
/// `#[source]`; a full disk is its own variant so the daemon can report it distinctly.
#[derive(thiserror::Error, Debug)]
pub enum StoreError {
    /// No agent (or no log) answers to this reference.
    #[error("no agent matches {0:?}")]
    NotFound(String),
    /// An id prefix matched more than one agent.
    #[error("reference {reference:?} matches {count} agents")]
    Ambiguous {
        /// What the caller asked for.
        reference: String,
        /// How many agents it matched.
        count: u64,
    },
    /// A live agent already uses this name.
    #[error("name {0:?} is used by a live agent")]
    NameTaken(String),
    /// An append did not continue the agent's log exactly.
    #[error("agent {agent}: append expected seq {expected}, got {got}")]
    SeqMismatch {
        /// Whose log.
        agent: AgentId,
        /// The seq the log needs next.
        expected: Seq,
        /// The seq the caller supplied.
        got: Seq,
    },
    /// A file-system operation failed.
    #[error("{context}")]
    Io {
        /// What was being done, to which path.
        context: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The disk (or the quota) is full. Nothing half-written is visible; retry later.
    #[error("disk full while {context}")]
    DiskFull {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A registry operation failed.
    #[error("{context}")]
    Sqlite {
        /// What was being done.
        context: String,
        /// The cause.
        #[source]
        source: rusqlite::Error,
    },
    /// Stored data does not parse: a damaged segment or registry row.
    #[error("corrupt data in {path}: {detail}")]
    Corrupt {
        /// The file (or `registry.sqlite3`).
        path: PathBuf,
        /// What was wrong.
        detail: String,
    },
}

impl StoreError {
    /// An IO error with context; a full disk or quota becomes [`StoreError::DiskFull`].
    pub(crate) fn io(context: impl Into<String>, source: io::Error) -> StoreError {
        let context = context.into();
        let full = matches!(
            source.raw_os_error(),
            Some(libc::ENOSPC) | Some(libc::EDQUOT)
        );
        if full {
            StoreError::DiskFull { context, source }
        } else {
            StoreError::Io { context, source }
        }
    }

    /// A SQLite error with context.
    pub(crate) fn sqlite(context: impl Into<String>, source: rusqlite::Error) -> StoreError {
        StoreError::Sqlite {
            context: context.into(),
            source,
        }
    }

    /// Corrupt data in a file.
    pub(crate) fn corrupt(path: impl Into<PathBuf>, detail: impl Into<String>) -> StoreError {
        StoreError::Corrupt {
            path: path.into(),
            detail: detail.into(),
        }
    }
}
