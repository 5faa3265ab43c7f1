//! Follows that outlive a daemon restart (`logs -f`, `events -f`): notice that the daemon went
//! away, say so on stderr, wait for one to answer again, and let the follow go on from the
//! last record or event it printed.

use std::time::Duration;

use drover_client::{Client, ClientError};
use drover_proto::DaemonId;

use super::Ctx;

/// How often the daemon is asked whether it is still there, and how long it has to answer.
const CHECK: Duration = Duration::from_secs(1);
/// Between attempts to reach a daemon that went away: the first wait, doubled after each
/// attempt up to `RETRY_AT_MOST`.
const RETRY: Duration = Duration::from_millis(200);
const RETRY_AT_MOST: Duration = Duration::from_secs(5);

/// Whether connecting failed for a reason waiting will not mend: the daemon refused this key,
/// or the key files are unusable. A failed handshake (a wrong server key in the context, but
/// also a tunnel whose far end is down) is judged by [`wait_for_daemon`] from its repeats.
pub(crate) fn is_permanent(error: &anyhow::Error) -> bool {
    matches!(
        client_error(error),
        Some(ClientError::Refused { .. } | ClientError::Keys(_))
    )
}

fn client_error(error: &anyhow::Error) -> Option<&ClientError> {
    error.chain().find_map(|c| c.downcast_ref::<ClientError>())
}

/// Handshakes that fail in a row, from the start, before a daemon that never answered is given
/// up: its context is most likely wrong (its server key). One that answered before is waited
/// for whatever its handshakes do (it may be being replaced).
const HANDSHAKES_AT_MOST: u32 = 3;

/// Resolves once `daemon` stops answering, or another daemon answers in its place.
pub(crate) async fn gone(client: &Client, daemon: DaemonId) {
    client.moved(daemon, CHECK).await;
}

/// Whether `daemon` answers right now (within [`CHECK`]).
pub(crate) async fn is_there(client: &Client, daemon: DaemonId) -> bool {
    matches!(client.health_within(CHECK).await, Ok(health) if health.daemon == daemon)
}

/// Say that the daemon went away, wait until one answers (indefinitely: Ctrl-C ends the
/// wait), say so, and return a client for it with its id.
/// `first`: the daemon never answered this command yet (see [`HANDSHAKES_AT_MOST`]).
pub(crate) async fn wait_for_daemon(ctx: &Ctx, first: bool) -> anyhow::Result<(Client, DaemonId)> {
    match &ctx.host {
        // One host of several: the others go on meanwhile.
        Some(host) => eprintln!(
            "drover: {host}: unreachable; following the others, and this one from where it \
             stopped when it answers"
        ),
        None => eprintln!("drover: the daemon went away; waiting for it to come back"),
    }
    let mut retry = RETRY;
    let mut handshakes = 0;
    loop {
        match tokio::time::timeout(CHECK, ctx.client()).await {
            Ok(Ok(client)) => {
                if let Ok(Ok(health)) = tokio::time::timeout(CHECK, client.health()).await {
                    match &ctx.host {
                        Some(host) => eprintln!("drover: {host}: back; following on"),
                        None => eprintln!("drover: the daemon is back; following on"),
                    }
                    return Ok((client, health.daemon));
                }
            }
            Ok(Err(error)) if is_permanent(&error) => return Err(error),
            Ok(Err(error))
                if matches!(client_error(&error), Some(ClientError::Handshake { .. })) =>
            {
                handshakes += 1;
                if first && handshakes >= HANDSHAKES_AT_MOST {
                    return Err(error);
                }
            }
            Ok(Err(_)) | Err(_) => handshakes = 0,
        }
        tokio::time::sleep(retry).await;
        retry = (retry * 2).min(RETRY_AT_MOST);
    }
}
