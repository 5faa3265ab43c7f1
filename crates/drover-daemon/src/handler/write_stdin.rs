//! `write_stdin`: queue bytes for the agent's stdin without ever blocking on the child.

use drover_proto::limits::MAX_STDIN_WRITE;
use drover_proto::op::{WriteStdinArgs, WriteStdinResult};
use drover_proto::{ErrorBody, ErrorCode};

use super::{live, OpResult, Reply};
use crate::daemon::Shared;
use crate::error::supervisor_error;

pub(crate) async fn handle(shared: &Shared, args: WriteStdinArgs) -> OpResult {
    if args.data.len() > MAX_STDIN_WRITE {
        return Err(ErrorBody::new(
            ErrorCode::TooLarge,
            format!(
                "{} bytes exceed the {MAX_STDIN_WRITE}-byte write_stdin limit",
                args.data.len()
            ),
        ));
    }
    let (_, _, handle) = live(shared, &args.agent, "write to").await?;
    let written = handle.write_stdin(args.data).map_err(supervisor_error)?;
    Ok(Reply::WriteStdin(WriteStdinResult {
        written: written as u64,
    }))
}
