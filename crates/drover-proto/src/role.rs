//! Roles: what an authenticated client may do.
//!
//! Every credential (a CURVE client key on the ZeroMQ endpoints, a bearer token on HTTP) carries
//! one role. `read` may look (health, list, get, logs, events, stream info, wait, stats, and
//! subscribing to PUB); `control` may do everything. Local clients on the ipc socket and the
//! HTTP unix socket are trusted by file permission and act as `control`.

use serde::{Deserialize, Serialize};

use crate::op::{Op, Request};

/// What a credential allows. `Control` includes everything `Read` allows.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Look, never touch.
    Read,
    /// Everything.
    Control,
}

impl Role {
    /// The role's wire string.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Read => "read",
            Role::Control => "control",
        }
    }

    /// The role for a wire string.
    pub fn parse(s: &str) -> Option<Role> {
        match s {
            "read" => Some(Role::Read),
            "control" => Some(Role::Control),
            _ => None,
        }
    }

    /// Whether a credential with this role may do what needs `needed`.
    pub fn allows(self, needed: Role) -> bool {
        self >= needed
    }
}

impl std::fmt::Display for Role {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Op {
    /// The role an op needs. `batch` is judged by the op it applies ([`Request::required_role`]).
    pub fn required_role(self) -> Role {
        match self {
            Op::Health
            | Op::List
            | Op::Get
            | Op::ReadLogs
            | Op::ReadEvents
            | Op::StreamInfo
            | Op::Wait
            | Op::Stats => Role::Read,
            Op::Spawn
            | Op::Pause
            | Op::Resume
            | Op::Stop
            | Op::Kill
            | Op::Signal
            | Op::WriteStdin
            | Op::CloseStdin
            | Op::Remove
            | Op::Batch => Role::Control,
        }
    }
}

impl Request {
    /// The role this request needs: its op's, or for `batch` the applied op's.
    pub fn required_role(&self) -> Role {
        match self {
            Request::Batch(args) if args.op != Op::Batch => args.op.required_role(),
            other => other.op().required_role(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_ops_need_read_and_the_rest_control() {
        let read: Vec<&str> = Op::ALL
            .into_iter()
            .filter(|op| op.required_role() == Role::Read)
            .map(Op::as_str)
            .collect();
        assert_eq!(
            read,
            [
                "health",
                "list",
                "get",
                "read_logs",
                "stream_info",
                "wait",
                "stats",
                "read_events"
            ]
        );
        assert!(Role::Control.allows(Role::Read));
        assert!(!Role::Read.allows(Role::Control));
        assert_eq!(Role::parse("read"), Some(Role::Read));
        assert_eq!(Role::parse("admin"), None);
    }
}
