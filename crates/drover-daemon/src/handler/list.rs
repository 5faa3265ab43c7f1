//! `list`: agents by state and labels, oldest first.

use drover_proto::limits::MAX_LIST_LIMIT;
use drover_proto::op::{ListArgs, ListResult};
use drover_store::ListFilter;

use super::{OpResult, Reply};
use crate::daemon::Shared;
use crate::error::store_error;

pub(crate) fn handle(shared: &Shared, args: ListArgs) -> OpResult {
    let filter = ListFilter {
        state: args.state,
        labels: args.labels,
        limit: Some(args.limit.unwrap_or(MAX_LIST_LIMIT).min(MAX_LIST_LIMIT)),
    };
    let agents = shared.store.list(&filter).map_err(store_error)?;
    Ok(Reply::List(ListResult { agents }))
}
