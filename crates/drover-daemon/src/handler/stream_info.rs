//! `stream_info`: where to subscribe, and to what.

use drover_proto::op::{StreamInfoArgs, StreamInfoResult};
use drover_proto::topic;

use super::{resolve, OpResult, Reply};
use crate::caller::Caller;
use crate::daemon::Shared;

pub(crate) fn handle(shared: &Shared, _caller: Caller, args: StreamInfoArgs) -> OpResult {
    let topics = match &args.agent {
        Some(reference) => {
            let agent = resolve(shared, reference)?;
            vec![topic::log(agent.id), topic::event(agent.id)]
        }
        None => vec![topic::LOG_PREFIX.to_owned(), topic::EVENT_PREFIX.to_owned()],
    };
    Ok(Reply::StreamInfo(StreamInfoResult {
        // Binds are loopback-only, so the bound endpoint is always one a client can reach.
        pub_endpoint: shared.pub_endpoint.clone(),
        topics,
        heartbeat: topic::HEARTBEAT.to_owned(),
    }))
}
