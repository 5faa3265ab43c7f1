//! `stop`: SIGTERM to the group, SIGKILL when the grace ends.

use std::time::Duration;

use drover_proto::op::StopArgs;

use super::{after, live, OpResult};
use crate::daemon::Shared;
use crate::error::supervisor_error;

pub(crate) async fn handle(shared: &Shared, args: StopArgs) -> OpResult {
    let (_, live, handle) = live(shared, &args.agent, "stop").await?;
    let grace = args
        .grace_ms
        .map(Duration::from_millis)
        .unwrap_or(shared.config.default_grace);
    let status = handle.stop(grace).await.map_err(supervisor_error)?;
    Ok(after(&live, &status))
}
