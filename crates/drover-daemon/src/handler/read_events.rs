//! `read_events`: stored lifecycle events after an `event_seq`, for resumable event follows.

use drover_proto::limits::{DEFAULT_READ_LIMIT, MAX_READ_LIMIT};
use drover_proto::op::{ReadEventsArgs, ReadEventsResult};
use drover_proto::EventSeq;

use super::{OpResult, Reply};
use crate::daemon::Shared;
use crate::error::store_error;

pub(crate) fn handle(shared: &Shared, args: ReadEventsArgs) -> OpResult {
    let limit = args
        .limit
        .unwrap_or(DEFAULT_READ_LIMIT)
        .clamp(1, MAX_READ_LIMIT);
    let after = args.after.unwrap_or(EventSeq(0));
    let events = shared
        .store
        .events_since(after, limit)
        .map_err(store_error)?;
    Ok(Reply::ReadEvents(ReadEventsResult {
        events,
        last_event_seq: shared.events.last(),
    }))
}
