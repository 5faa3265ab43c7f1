//! `drover continue`: a new agent that resumes an earlier agent's session with a new prompt.

use anyhow::Context;

use super::Ctx;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  drover continue fix-tests 'now run the linter too'
  drover continue fix-tests 'and commit' --name fix-tests-2
  drover --json continue 3f2a 'summarise what you changed' | jq -r .id")]
pub(crate) struct Args {
    /// The agent whose session to continue: an id, a unique id prefix, or a name.
    agent: String,
    /// The next prompt.
    prompt: String,
    /// A name for the new agent (names are unique among live agents, so none by default).
    #[arg(long)]
    name: Option<String>,
    /// Another model for the new turn.
    #[arg(long, short)]
    model: Option<String>,
}

pub(crate) async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<i32> {
    let client = ctx.client().await?;
    let parent = client.get(&args.agent).await?;
    let Some(session) = parent.activity.as_ref().and_then(|a| a.session_id.clone()) else {
        anyhow::bail!(
            "agent {} has no session to continue: its backend ({}) reports none, or it printed \
             none yet",
            parent.id,
            parent.backend
        );
    };
    // The same agent, asked the next thing: backend, cwd, env, labels, model and extra
    // arguments carry over.
    let mut spec = parent.spec.clone();
    spec.name = args.name;
    spec.task = Some(args.prompt);
    if args.model.is_some() {
        spec.model = args.model;
    }
    spec.resume = Some(session);
    spec.parent = Some(parent.id);
    let agent = client
        .spawn(spec)
        .await
        .context("spawning the continuation")?;
    super::spawn::print(ctx, &agent)?;
    Ok(if agent.status.error().is_some() { 1 } else { 0 })
}
