//! `drover health`: is the daemon there, and what does it hold.

use super::Ctx;
use crate::output;

pub(crate) async fn run(ctx: &Ctx) -> anyhow::Result<i32> {
    let client = ctx.client().await?;
    let health = client.health().await?;
    if ctx.json {
        output::json(&health)?;
        return Ok(0);
    }
    let agents: Vec<String> = health
        .agents
        .iter()
        .map(|(state, n)| format!("{n} {state}"))
        .collect();
    crate::outln!(
        "ok: drover {} (protocol {}), daemon {}, up {}, agents: {}",
        health.version,
        health.protocol,
        health.daemon,
        output::duration(i64::try_from(health.uptime_ms).unwrap_or(i64::MAX) * 1_000_000),
        if agents.is_empty() {
            "none".to_owned()
        } else {
            agents.join(", ")
        }
    )?;
    Ok(0)
}
