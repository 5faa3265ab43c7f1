//! `drover send`: write to an agent's stdin.

use std::io::Read;

use anyhow::Context;

use super::Ctx;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Agent id, unique id prefix, or name.
    agent: String,
    /// Text to send (a newline is added), or `-` to copy this process's stdin until EOF.
    text: Option<String>,
    /// Close the agent's stdin afterwards.
    #[arg(long)]
    close: bool,
}

/// Chunk size for copying stdin: well under the 1 MiB write_stdin limit.
const CHUNK: usize = 256 * 1024;

pub(crate) async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<i32> {
    let client = ctx.client().await?;
    let mut written = 0;
    match args.text.as_deref() {
        Some("-") => {
            let mut stdin = std::io::stdin().lock();
            let mut buffer = vec![0u8; CHUNK];
            loop {
                let n = stdin.read(&mut buffer).context("reading stdin")?;
                if n == 0 {
                    break;
                }
                // As patient as the text form and `run -i`: a full queue means the agent reads
                // slower than we send, not that it stopped.
                written += write_patiently(&client, &args.agent, &buffer[..n], written).await?;
            }
        }
        Some(text) => {
            let mut data = text.as_bytes().to_vec();
            data.push(b'\n');
            written += write_patiently(&client, &args.agent, &data, written).await?;
        }
        None if args.close => {}
        None => anyhow::bail!("nothing to send: give TEXT, `-` for stdin, or --close"),
    }
    if args.close {
        client.close_stdin(&args.agent).await?;
    }
    if ctx.json {
        crate::output::json(&serde_json::json!({ "written": written, "closed": args.close }))?;
    }
    Ok(0)
}

/// How long a write may keep meeting a full stdin queue before `send` gives up.
const PATIENCE: std::time::Duration = std::time::Duration::from_secs(30);

/// Write one chunk, waiting (with backoff) while the agent's stdin queue is full: the agent is
/// reading, just slower than we send.
async fn write_patiently(
    client: &drover_client::Client,
    agent: &str,
    data: &[u8],
    written_before: u64,
) -> anyhow::Result<u64> {
    let started = tokio::time::Instant::now();
    let mut backoff = std::time::Duration::from_millis(5);
    loop {
        match client.write_stdin(agent, data.to_vec()).await {
            Ok(n) => return Ok(n),
            Err(e) if e.code() == Some(drover_proto::ErrorCode::StdinFull) => {
                if started.elapsed() > PATIENCE {
                    return Err(anyhow::Error::new(e).context(format!(
                        "the agent has not read its stdin for {PATIENCE:?}; {written_before} \
                         bytes were sent"
                    )));
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(std::time::Duration::from_millis(500));
            }
            Err(e) => return Err(e.into()),
        }
    }
}
