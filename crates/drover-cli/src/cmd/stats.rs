//! `drover stats`: daemon counters.

use super::Ctx;
use crate::output;

pub(crate) async fn run(ctx: &Ctx) -> anyhow::Result<i32> {
    let client = ctx.client().await?;
    let stats = client.stats().await?;
    if ctx.json {
        output::json(&stats)?;
        return Ok(0);
    }
    crate::outln!(
        "uptime        {}",
        output::duration(i64::try_from(stats.uptime_ms).unwrap_or(0) * 1_000_000)
    )?;
    crate::outln!(
        "agents        {} live, {} known, {} spawned",
        stats.agents_live,
        stats.agents_total,
        stats.spawns
    )?;
    crate::outln!(
        "captured      {} records, {} bytes",
        stats.records,
        stats.bytes
    )?;
    crate::outln!(
        "log storage   {} bytes of output kept, {} bytes on disk",
        stats.log_output_bytes,
        stats.log_bytes
    )?;
    crate::outln!("events        {}", stats.events)?;
    // Faults, shown even at zero: a full disk or a stalled client is seen here first.
    crate::outln!(
        "store         {} bytes waiting to be stored, {} registry changes queued, {} records lost",
        stats.store_backlog_bytes,
        stats.registry_queued,
        stats.records_dropped
    )?;
    crate::outln!(
        "dropped       {} publish messages (followers refill), {} replies to stalled clients",
        stats.pub_dropped,
        stats.replies_dropped
    )?;
    for (op, n) in &stats.requests {
        crate::outln!("requests      {op:<12} {n}")?;
    }
    for (code, n) in &stats.errors {
        crate::outln!("errors        {code:<12} {n}")?;
    }
    Ok(0)
}
