//! Who sent a request, as far as the handlers need to know: the role its credential carries and
//! the transport it came in on.
//!
//! The transports decide the role (a CURVE key's entry in the allowed-keys file, an HTTP token,
//! or trust by file permission on the unix sockets); [`crate::handler::dispatch`] refuses an op
//! the role does not allow before any handler runs.

use drover_proto::Role;

/// The sender of one request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Caller {
    /// What its credential allows.
    pub(crate) role: Role,
    /// Where it came from.
    pub(crate) via: Via,
}

/// The transport a request arrived on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Via {
    /// The ipc control socket in the state directory (trusted by file permission).
    Ipc,
    /// A TCP control endpoint (CURVE).
    Tcp,
    /// HTTP, on TCP or the unix socket.
    Http,
}

impl Via {
    /// A short name for logs and thread names.
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Via::Ipc => "ipc",
            Via::Tcp => "tcp",
            Via::Http => "http",
        }
    }
}

impl Caller {
    /// A caller with full control over `via`.
    pub(crate) fn control(via: Via) -> Caller {
        Caller {
            role: Role::Control,
            via,
        }
    }
}
