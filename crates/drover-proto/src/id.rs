//! Identifier newtypes. Agent and daemon ids are UUID v7 strings on the wire.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Hex digits in an agent's short handle ([`AgentId::handle`]).
pub const HANDLE_LEN: usize = 8;

/// The id of one agent: a UUID v7, so ids sort by creation time.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct AgentId(Uuid);

impl AgentId {
    /// A fresh, time-ordered id.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }

    /// The id's canonical hyphenated lowercase form.
    pub fn to_hyphenated(&self) -> String {
        self.0.hyphenated().to_string()
    }

    /// The agent's short handle: the id's last [`HANDLE_LEN`] hex digits. They come from the
    /// UUID's random bits (the first ones are the creation time, shared by agents made in the
    /// same minute), and the daemon never gives two agents it knows the same handle, so a
    /// handle names one agent for as long as the daemon keeps it.
    pub fn handle(&self) -> String {
        let text = self.to_hyphenated();
        text[text.len() - HANDLE_LEN..].to_owned()
    }

    /// The underlying UUID.
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }

    /// Wrap an existing UUID.
    pub fn from_uuid(uuid: Uuid) -> Self {
        Self(uuid)
    }
}

impl Default for AgentId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for AgentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

impl FromStr for AgentId {
    type Err = uuid::Error;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Uuid::parse_str(s).map(Self)
    }
}

/// The id of one daemon run, sent in heartbeats and `health` so clients notice a restart.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct DaemonId(Uuid);

impl DaemonId {
    /// A fresh id for a daemon run.
    pub fn new() -> Self {
        Self(Uuid::now_v7())
    }
}

impl Default for DaemonId {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Display for DaemonId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0.hyphenated(), f)
    }
}

// Ids are hyphenated UUID strings on the wire in every format. `Uuid`'s own impls write 16 raw
// bytes whenever the format is not "human readable", which MessagePack (rmp-serde) is not, so
// the string form is written here explicitly. Reading accepts the string and, leniently, the
// 16-byte binary form.
macro_rules! uuid_string_serde {
    ($ty:ident) => {
        impl Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                serializer
                    .serialize_str(self.0.hyphenated().encode_lower(&mut Uuid::encode_buffer()))
            }
        }

        impl<'de> Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                deserializer.deserialize_str(UuidVisitor).map(Self)
            }
        }
    };
}

uuid_string_serde!(AgentId);
uuid_string_serde!(DaemonId);

struct UuidVisitor;

impl serde::de::Visitor<'_> for UuidVisitor {
    type Value = Uuid;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a UUID string")
    }

    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<Uuid, E> {
        Uuid::parse_str(s).map_err(E::custom)
    }

    fn visit_bytes<E: serde::de::Error>(self, bytes: &[u8]) -> Result<Uuid, E> {
        if bytes.len() == 16 {
            return Uuid::from_slice(bytes).map_err(E::custom);
        }
        let s = std::str::from_utf8(bytes).map_err(E::custom)?;
        self.visit_str(s)
    }
}

/// A log record's number within its agent: 1, 2, 3, ... shared by stdout and stderr.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct Seq(pub u64);

impl Seq {
    /// The seq of the first record an agent prints.
    pub const FIRST: Seq = Seq(1);

    /// The seq after this one.
    pub fn next(self) -> Seq {
        Seq(self.0 + 1)
    }
}

impl fmt::Display for Seq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}

/// A lifecycle event's number, daemon-wide: 1, 2, 3, ... across all agents.
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize,
)]
#[serde(transparent)]
pub struct EventSeq(pub u64);

impl fmt::Display for EventSeq {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(&self.0, f)
    }
}
