//! `stats`: daemon-wide counters.

use std::sync::atomic::Ordering;

use drover_proto::op::StatsResult;

use super::{OpResult, Reply};
use crate::daemon::Shared;
use crate::error::store_error;

pub(crate) fn handle(shared: &Shared) -> OpResult {
    let counts = shared.store.count_by_state().map_err(store_error)?;
    let agents_total = counts.values().sum();
    let (requests, errors) = {
        let stats = shared.requests.lock().unwrap_or_else(|p| p.into_inner());
        let requests = stats
            .by_op
            .iter()
            .map(|(op, (n, _))| ((*op).to_owned(), *n))
            .collect();
        let errors = stats
            .errors
            .iter()
            .map(|(code, n)| ((*code).to_owned(), *n))
            .collect();
        (requests, errors)
    };
    Ok(Reply::Stats(StatsResult {
        uptime_ms: u64::try_from(shared.started.elapsed().as_millis()).unwrap_or(u64::MAX),
        spawns: shared.counters.spawns.load(Ordering::Relaxed),
        agents_live: shared.live_count() as u64,
        agents_total,
        records: shared.counters.records.load(Ordering::Relaxed),
        bytes: shared.counters.bytes.load(Ordering::Relaxed),
        requests,
        errors,
        events: shared.events.last().0,
        log_bytes: shared.store.disk_usage(),
        log_output_bytes: shared.store.output_bytes(),
        pub_dropped: shared.publisher.dropped(),
        records_dropped: shared.counters.records_dropped.load(Ordering::Relaxed),
        registry_queued: shared.events.queued() as u64,
        replies_dropped: shared.counters.replies_dropped.load(Ordering::Relaxed),
        store_backlog_bytes: shared.counters.backlog_bytes.load(Ordering::Relaxed),
    }))
}
