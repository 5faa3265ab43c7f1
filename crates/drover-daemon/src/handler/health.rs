//! `health`: version, uptime and agents by state.

use std::collections::BTreeMap;

use drover_proto::op::HealthResult;
use drover_proto::{ErrorBody, PROTOCOL_VERSION};

use super::{OpResult, Reply};
use crate::daemon::Shared;
use crate::error::store_error;

pub(crate) fn handle(shared: &Shared) -> OpResult {
    let agents = counts_by_state(shared)?;
    Ok(Reply::Health(HealthResult {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        protocol: PROTOCOL_VERSION,
        daemon: shared.daemon_id,
        uptime_ms: u64::try_from(shared.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        agents,
    }))
}

/// Whether `health` would answer from its cache (no registry query): nothing changed since.
pub(crate) fn is_cached(shared: &Shared) -> bool {
    let now = shared.events.version();
    shared
        .state_counts
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .as_ref()
        .is_some_and(|(at, _)| *at == now)
}

/// Agents by state name, from the registry or, while no event happened since, from the cache.
fn counts_by_state(shared: &Shared) -> Result<BTreeMap<String, u64>, ErrorBody> {
    // Read the change count first: a change racing the query makes the cache look stale,
    // never fresh. (Not the event number: a change the registry refused has no event yet.)
    let now = shared.events.version();
    {
        let cache = shared
            .state_counts
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if let Some((at, counts)) = cache.as_ref() {
            if *at == now {
                return Ok(counts.clone());
            }
        }
    }
    let counts: BTreeMap<String, u64> = shared
        .store
        .count_by_state()
        .map_err(store_error)?
        .into_iter()
        .map(|(state, n)| (state.as_str().to_owned(), n))
        .collect();
    *shared
        .state_counts
        .lock()
        .unwrap_or_else(|p| p.into_inner()) = Some((now, counts.clone()));
    Ok(counts)
}
