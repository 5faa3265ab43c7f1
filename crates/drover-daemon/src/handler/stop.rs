//! `stop`: SIGTERM to the group, SIGKILL when the grace ends.

use std::time::Duration;

use drover_proto::op::StopArgs;

use super::{after, end_restart, live, OpResult};
use crate::daemon::Shared;
use crate::error::supervisor_error;

pub(crate) async fn handle(shared: &Shared, args: StopArgs) -> OpResult {
    if let Some(ended) = end_restart(shared, &args.agent).await? {
        return Ok(ended);
    }
    let (_, live, handle) = live(shared, &args.agent, "stop").await?;
    // Asked for: neither a timeout nor a reason to restart.
    live.ask_end();
    let grace = args
        .grace_ms
        .map(Duration::from_millis)
        .unwrap_or(shared.config.default_grace);
    let status = handle.stop(grace).await.map_err(supervisor_error)?;
    Ok(after(&live, &status))
}
