//! Forwarding this process's stdin to an agent's (`run -i`), end-of-file included.

use std::io::Read;
use std::time::Duration;

use anyhow::Context;
use drover_client::Client;
use drover_proto::ErrorCode;

/// Bytes read from stdin per `write_stdin` call.
const CHUNK: usize = 64 * 1024;
/// Chunks read ahead of the daemon: bounds this process's memory when the agent reads slowly.
const READ_AHEAD: usize = 4;

/// Copy stdin to the agent until end-of-file, then close the agent's stdin. Returns early
/// (successfully) when the agent stops taking input because it ended.
pub(crate) async fn forward(client: &Client, agent: &str) -> anyhow::Result<()> {
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<Vec<u8>>>(READ_AHEAD);
    // A plain thread, not the runtime's blocking pool: a read blocked on a terminal must not
    // keep `drover` from exiting once the agent has ended.
    std::thread::Builder::new()
        .name("stdin".into())
        .spawn(move || read_stdin(&tx))
        .context("starting the stdin reader")?;
    while let Some(chunk) = rx.recv().await {
        let chunk = chunk.context("reading stdin")?;
        if !write_patiently(client, agent, chunk).await? {
            return Ok(());
        }
    }
    match client.close_stdin(agent).await {
        Ok(()) => Ok(()),
        Err(e) if is_gone(e.code()) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

/// Read stdin in chunks until end-of-file (an empty chunk is never sent), or until nobody
/// listens.
fn read_stdin(tx: &tokio::sync::mpsc::Sender<std::io::Result<Vec<u8>>>) {
    let mut stdin = std::io::stdin().lock();
    let mut buffer = vec![0; CHUNK];
    loop {
        let message = match stdin.read(&mut buffer) {
            Ok(0) => return,
            Ok(n) => Ok(buffer[..n].to_vec()),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => Err(e),
        };
        let failed = message.is_err();
        if tx.blocking_send(message).is_err() || failed {
            return;
        }
    }
}

/// Whether an error says the agent takes no more input (it ended, or closed its stdin).
fn is_gone(code: Option<ErrorCode>) -> bool {
    matches!(
        code,
        Some(ErrorCode::InvalidState | ErrorCode::StdinClosed | ErrorCode::NotFound)
    )
}

/// Write one chunk, waiting with backoff while the agent's stdin queue is full (it reads,
/// just slower than we send). False when the agent takes no more input.
async fn write_patiently(client: &Client, agent: &str, chunk: Vec<u8>) -> anyhow::Result<bool> {
    let mut backoff = Duration::from_millis(5);
    loop {
        match client.write_stdin(agent, chunk.clone()).await {
            Ok(_) => return Ok(true),
            Err(e) if e.code() == Some(ErrorCode::StdinFull) => {
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_millis(500));
            }
            Err(e) if is_gone(e.code()) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
    }
}
