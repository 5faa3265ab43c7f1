//! `drover logs` over several hosts (`--all`, `-l`, or `HOST/AGENT` names on several
//! contexts): stored logs host after host; with `-f`, one follow per host, all at once, each
//! line prefixed `[HOST/NAME]`.
//!
//! Each host's follow is the single-daemon one ([`follow_across_restarts`]): when a host stops
//! answering (its daemon restarts, or the link to it drops), it says so on stderr, the other
//! hosts' follows go on, and once the host answers again its follow resumes from the first
//! record not yet printed of each agent (its resume points), so nothing is missed and nothing
//! is printed twice.

use super::{connect, Share};
use crate::cmd::logs::{follow_across_restarts, follow_options, history, printer, selection, Args};
use crate::cmd::reconnect;

/// Run `logs` on every share; the status is the first non-zero one of any host.
pub(crate) async fn run(shares: Vec<Share>, args: &Args) -> anyhow::Result<i32> {
    let mut status = 0;
    if !args.follow {
        for share in &shares {
            let result = history_on(share, args).await;
            super::fold(&mut status, true, share.ctx.host.as_deref(), result)?;
        }
        return Ok(status);
    }
    let codes = futures::future::join_all(shares.iter().map(|share| follow_on(share, args))).await;
    Ok(codes.into_iter().find(|code| *code != 0).unwrap_or(0))
}

/// One host's stored logs.
async fn history_on(share: &Share, args: &Args) -> anyhow::Result<i32> {
    let client = connect(&share.ctx).await?;
    let Some(selection) = selection(&client, args, &share.refs).await? else {
        return Ok(0);
    };
    let printer = printer(&share.ctx, args, true);
    history(&client, &selection, args, &printer).await
}

/// Follow one host until its selection ends (for ever with `--all` and `-l`), reporting its
/// failure at once as `drover: HOST: ...` and returning its exit status. A host that does not
/// answer at the start is waited for, as one that goes away later is.
async fn follow_on(share: &Share, args: &Args) -> i32 {
    let ctx = &share.ctx;
    let host = ctx.host.as_deref().unwrap_or("?");
    let result = async {
        let client = match connect(ctx).await {
            Ok(client) => client,
            // Misconfigured, not away: waiting would never end (the others go on).
            Err(error) if reconnect::is_permanent(&error) => return Err(error),
            Err(error) => {
                eprintln!(
                    "drover: {host}: unreachable: {}",
                    crate::output::shown(format_args!("{error:#}"))
                );
                reconnect::wait_for_daemon(ctx, true).await?.0
            }
        };
        let Some(selection) = selection(&client, args, &share.refs).await? else {
            return Ok(());
        };
        let printer = printer(ctx, args, true);
        follow_across_restarts(ctx, client, selection, follow_options(args), &printer)
            .await
            .map(drop)
    }
    .await;
    match result {
        Ok(()) => 0,
        Err(error) => {
            eprintln!(
                "drover: {host}: {}",
                crate::output::shown(format_args!("{error:#}"))
            );
            crate::output::exit_code(&error)
        }
    }
}
