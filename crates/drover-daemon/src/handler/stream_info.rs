//! `stream_info`: where to subscribe, and to what.

use drover_proto::op::{StreamInfoArgs, StreamInfoResult};
use drover_proto::topic;

use super::{resolve, OpResult, Reply};
use crate::caller::{Caller, Via};
use crate::daemon::Shared;

pub(crate) fn handle(shared: &Shared, caller: Caller, args: StreamInfoArgs) -> OpResult {
    let topics = match &args.agent {
        Some(reference) => {
            let agent = resolve(shared, reference)?;
            vec![topic::log(agent.id), topic::event(agent.id)]
        }
        None => vec![topic::LOG_PREFIX.to_owned(), topic::EVENT_PREFIX.to_owned()],
    };
    Ok(Reply::StreamInfo(StreamInfoResult {
        // The PUB endpoint on the caller's own transport: a local ipc caller follows without a
        // key, a TCP caller over CURVE with the key it already uses.
        pub_endpoint: match (caller.via, &shared.pub_ipc) {
            (Via::Ipc, Some(ipc)) => ipc.clone(),
            _ => shared.pub_endpoint.clone(),
        },
        topics,
        heartbeat: topic::HEARTBEAT.to_owned(),
    }))
}
