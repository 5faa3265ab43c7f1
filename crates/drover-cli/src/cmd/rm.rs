//! `drover rm`: remove ended agents and their logs.

use super::Ctx;

#[derive(Debug, clap::Args)]
pub(crate) struct Args {
    /// Agent ids, unique id prefixes, or names.
    #[arg(required = true)]
    agents: Vec<String>,
    /// Kill live agents first, then remove them.
    #[arg(long, short)]
    force: bool,
}

pub(crate) async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<i32> {
    let client = ctx.client().await?;
    let mut status = 0;
    for agent in &args.agents {
        let result = async {
            if args.force {
                let info = client.get(agent).await?;
                if !info.state().is_terminal() {
                    client.kill(agent).await?;
                    client.wait(&info.id.to_string(), None).await?;
                }
            }
            client.remove(agent).await
        }
        .await;
        match result {
            Ok(()) if !ctx.json => crate::outln!("removed {agent}")?,
            Ok(()) => {}
            Err(error) => {
                eprintln!("drover: {agent}: {error}");
                if status == 0 {
                    status = error.code().map(|c| c.exit_code()).unwrap_or(1);
                }
            }
        }
    }
    Ok(status)
}
