//! PUB socket topics. Every topic string in Drover is built here.

use crate::AgentId;

/// Prefix of log batch topics; subscribe to it alone for every agent's logs.
pub const LOG_PREFIX: &str = "log.";
/// Prefix of lifecycle event topics; subscribe to it alone for every agent's events.
pub const EVENT_PREFIX: &str = "evt.";
/// Topic of the daemon heartbeat.
pub const HEARTBEAT: &str = "hb";

/// `log.<agent_id>`: batches of one agent's records.
pub fn log(agent: AgentId) -> String {
    format!("{LOG_PREFIX}{agent}")
}

/// `evt.<agent_id>`: one agent's lifecycle events.
pub fn event(agent: AgentId) -> String {
    format!("{EVENT_PREFIX}{agent}")
}
