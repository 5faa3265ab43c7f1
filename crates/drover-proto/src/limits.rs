//! Size limits shared by every side of the protocol.

/// Default maximum size of one control frame (request or reply body): 10 MiB. Larger frames are
/// refused with `too_large` before any MessagePack decoding.
pub const DEFAULT_MAX_FRAME: usize = 10 * 1024 * 1024;

/// Default maximum size of one log record's bytes: 64 KiB. Longer lines are split into records
/// flagged `partial`.
pub const DEFAULT_MAX_RECORD: usize = 64 * 1024;

/// Requests one client connection may have in flight on a control socket; the daemon answers
/// more with `limit_reached`, and the Rust client queues its own past this many instead.
pub const MAX_IN_FLIGHT_PER_CLIENT: usize = 64;

/// Largest `limit` a `read_logs` may ask for; larger values are clamped.
pub const MAX_READ_LIMIT: u32 = 10_000;

/// Default number of records a `read_logs` returns when `limit` is absent.
pub const DEFAULT_READ_LIMIT: u32 = 1_000;

/// Largest number of agents a `list` returns.
pub const MAX_LIST_LIMIT: u32 = 10_000;

/// Largest number of agents one `batch` may name.
pub const MAX_BATCH: usize = 1_000;

/// Agents whose log end one heartbeat carries at most (about 46 bytes each, so at most about
/// 190 KB a heartbeat); with more live agents each heartbeat carries the next ones in turn.
pub const MAX_HEARTBEAT_LOG_ENDS: usize = 4096;

/// Largest `data` one `write_stdin` may carry: 1 MiB.
pub const MAX_STDIN_WRITE: usize = 1024 * 1024;

/// Most labels one `list` may filter on (each is a condition of the registry's query, which
/// holds the registry while it runs).
pub const MAX_LIST_LABELS: usize = 32;

/// Longest agent name, in bytes.
pub const MAX_NAME_LEN: usize = 128;

/// Largest spec, counting the bytes of every string in it (task, context, argv, env, labels):
/// 1 MiB. Every `list` reply carries specs, so they must stay small.
pub const MAX_SPEC_BYTES: usize = 1024 * 1024;

/// Deepest nesting of maps and arrays in one message, counting the body map as level 1. Deeper
/// messages are refused as malformed: decoding recurses, and without this bound a hostile frame
/// of a few hundred bytes could exhaust a thread's stack.
pub const MAX_NESTING: usize = 32;

/// Most values (array elements, map keys and values, at any depth) in one request. Checked by
/// walking the frame's headers before anything is decoded, with [`MAX_NESTING`], so decoding a
/// request costs memory in proportion to its size, never to the counts its headers claim.
pub const MAX_ELEMENTS: usize = 65_536;
