//! `read_logs`: stored records, never consumed by reading.

use drover_proto::limits::{DEFAULT_READ_LIMIT, MAX_READ_LIMIT};
use drover_proto::op::{ReadLogsArgs, ReadLogsResult};
use drover_store::LogQuery;

use super::{resolve, OpResult, Reply};
use crate::daemon::Shared;
use crate::error::store_error;

pub(crate) fn handle(shared: &Shared, args: ReadLogsArgs) -> OpResult {
    let agent = resolve(shared, &args.agent)?;
    let query = LogQuery {
        since_seq: args.since_seq,
        until_seq: args.until_seq,
        tail: args.tail,
        since: args.since,
        stream: args.stream,
        limit: args
            .limit
            .unwrap_or(DEFAULT_READ_LIMIT)
            .clamp(1, MAX_READ_LIMIT),
    };
    let read = shared.store.read(agent.id, &query).map_err(store_error)?;
    // Taken after the read, so it is never behind what the read saw (the max below only guards
    // that). Not `read.next_seq`: a `since_seq` past the end comes back as `next_seq`, and the
    // end must stay the true one.
    let bounds = shared.store.log_bounds(agent.id).map_err(store_error)?;
    let past_record = read.records.last().map(|r| r.seq.0 + 1);
    let past_dropped = read.dropped.map(|range| range.to.0 + 1);
    let past_read = drover_proto::Seq(past_record.max(past_dropped).unwrap_or(0));
    Ok(Reply::ReadLogs(ReadLogsResult {
        records: read.records,
        first_seq: read.first_seq,
        next_seq: read.next_seq,
        truncated: read.truncated,
        end_seq: bounds.next_seq.max(past_read),
        dropped: read.dropped,
        output_bytes: bounds.output,
        disk_bytes: bounds.bytes,
    }))
}
