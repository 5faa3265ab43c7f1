//! `batch`: one op over many agents, with a result per agent.

use std::sync::Arc;

use drover_proto::limits::MAX_BATCH;
use drover_proto::op::{BatchArgs, BatchItem, BatchResult};
use drover_proto::{ErrorBody, ErrorCode, Op};

use super::{dispatch, OpResult, Reply};
use crate::caller::Caller;
use crate::daemon::Shared;

/// Ops that make sense per agent and return quickly.
const ALLOWED: [Op; 8] = [
    Op::Get,
    Op::Pause,
    Op::Resume,
    Op::Stop,
    Op::Kill,
    Op::Signal,
    Op::CloseStdin,
    Op::Remove,
];

pub(crate) async fn handle(shared: &Arc<Shared>, caller: Caller, args: BatchArgs) -> OpResult {
    if !ALLOWED.contains(&args.op) {
        return Err(ErrorBody::new(
            ErrorCode::BadRequest,
            format!(
                "batch cannot apply {}; allowed: get, pause, resume, stop, kill, signal, \
                 close_stdin, remove",
                args.op.as_str()
            ),
        ));
    }
    if args.agents.len() > MAX_BATCH {
        return Err(ErrorBody::new(
            ErrorCode::TooLarge,
            format!(
                "{} agents exceed the batch limit of {MAX_BATCH}",
                args.agents.len()
            ),
        ));
    }
    let mut results = Vec::with_capacity(args.agents.len());
    for agent in &args.agents {
        let mut fields: Vec<(rmpv::Value, rmpv::Value)> = args
            .args
            .iter()
            .filter(|(key, _)| key.as_str() != "agent")
            .map(|(key, value)| (rmpv::Value::from(key.as_str()), value.clone()))
            .collect();
        fields.push((
            rmpv::Value::from("agent"),
            rmpv::Value::from(agent.0.as_str()),
        ));
        let outcome = match drover_proto::request_from_value(args.op, rmpv::Value::Map(fields)) {
            Ok(request) => Box::pin(dispatch(shared, caller, request)).await,
            Err(error) => Err(error.to_body()),
        };
        let failed = outcome.is_err();
        results.push(match outcome {
            Ok(reply) => BatchItem {
                agent: agent.clone(),
                ok: true,
                error: None,
                info: reply.agent().cloned(),
            },
            Err(error) => BatchItem {
                agent: agent.clone(),
                ok: false,
                error: Some(error),
                info: None,
            },
        });
        if failed && args.fail_fast {
            break;
        }
    }
    Ok(Reply::Batch(BatchResult { results }))
}
