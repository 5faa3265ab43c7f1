//! `health`: version, uptime and agents by state.

use std::collections::BTreeMap;

use drover_proto::op::HealthResult;
use drover_proto::PROTOCOL_VERSION;

use super::{OpResult, Reply};
use crate::daemon::Shared;
use crate::error::store_error;

pub(crate) fn handle(shared: &Shared) -> OpResult {
    let counts = shared.store.count_by_state().map_err(store_error)?;
    let agents: BTreeMap<String, u64> = counts
        .into_iter()
        .map(|(state, n)| (state.as_str().to_owned(), n))
        .collect();
    Ok(Reply::Health(HealthResult {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        protocol: PROTOCOL_VERSION,
        daemon: shared.daemon_id,
        uptime_ms: u64::try_from(shared.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        agents,
    }))
}
