//! `drover context`: name the daemons this client talks to, like `docker context`.

use std::path::PathBuf;

use anyhow::bail;

use super::Ctx;
use crate::context::{self, Context, Contexts, LOCAL};
use crate::output;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  drover auth keygen                          # once, on this machine
  drover context add prod --control tcp://10.0.0.2:7710 --server-key 'rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7'
  drover context use prod && drover ls
  drover --context local ls                   # the local daemon, this once
  drover context fleet add builders b1 b2 b3  # a fleet: --context builders means all three
  drover --context builders ls                # every agent of the three, with a HOST column")]
pub(crate) struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Add (or with --force replace) a context.
    Add(AddArgs),
    /// List contexts; the current one is marked.
    #[command(alias = "list")]
    Ls,
    /// Make a context (or a fleet) the current one.
    Use {
        /// The context's or fleet's name (`local` is the local daemon).
        name: String,
    },
    /// Remove a context.
    Rm {
        /// The context's name.
        name: String,
    },
    /// Show a context (the current one by default).
    Show {
        /// The context's name.
        name: Option<String>,
    },
    /// Named lists of contexts: `--context FLEET` selects them all.
    #[command(subcommand)]
    Fleet(FleetCommand),
}

#[derive(Debug, clap::Subcommand)]
enum FleetCommand {
    /// Add (or with --force replace) a fleet of contexts.
    Add {
        /// The fleet's name (not a context's).
        name: String,
        /// Its contexts.
        #[arg(required = true)]
        contexts: Vec<String>,
        /// Replace a fleet of the same name.
        #[arg(long)]
        force: bool,
    },
    /// List fleets and their contexts.
    #[command(alias = "list")]
    Ls,
    /// Remove a fleet (its contexts stay).
    Rm {
        /// The fleet's name.
        name: String,
    },
}

#[derive(Debug, clap::Args)]
struct AddArgs {
    /// The new context's name.
    name: String,
    /// The daemon's control endpoint, e.g. tcp://10.0.0.2:7710.
    #[arg(long)]
    control: String,
    /// The daemon's public key, as printed by `drover auth server-key` on its host.
    // A z85 key may begin with `-`: it is a value, never a flag.
    #[arg(long, allow_hyphen_values = true)]
    server_key: Option<String>,
    /// This client's keypair file [default: <config dir>/client.key, made by `drover auth keygen`].
    #[arg(long)]
    key: Option<PathBuf>,
    /// The PUB endpoint to follow on, when the daemon's own answer is not reachable from here.
    #[arg(long = "pub")]
    publish: Option<String>,
    /// The daemon's HTTP base URL (for reference).
    #[arg(long)]
    http: Option<String>,
    /// Replace a context of the same name.
    #[arg(long)]
    force: bool,
}

pub(crate) async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<i32> {
    // Writers one at a time (readers see whole files either way: each write is a rename), so
    // `ls` and `show` still work with a read-only config directory.
    let writes = !matches!(
        args.command,
        Command::Ls | Command::Show { .. } | Command::Fleet(FleetCommand::Ls)
    );
    let _lock = if writes {
        Some(Contexts::lock()?)
    } else {
        None
    };
    let mut contexts = Contexts::load()?;
    match args.command {
        Command::Add(add) => {
            context::validate_name(&add.name)?;
            if contexts.fleets.contains_key(&add.name) {
                bail!(
                    "{:?} is a fleet; a context needs a name of its own",
                    add.name
                );
            }
            if contexts.contexts.contains_key(&add.name) && !add.force {
                bail!(
                    "a context named {:?} exists; pass --force to replace it",
                    add.name
                );
            }
            let new = checked(add)?;
            let name = new.0;
            contexts.contexts.insert(name.clone(), new.1);
            contexts.save()?;
            outln!("added context {name} (use it with `drover context use {name}`)")?;
        }
        Command::Ls => {
            if ctx.json {
                output::json(&serde_json::json!({
                    "current": contexts.current_name(),
                    "contexts": listing(&contexts)?,
                }))?;
            } else {
                let current = contexts.current_name().to_owned();
                let mut rows = Vec::new();
                for name in contexts.names() {
                    let context = contexts.get(&name)?;
                    let marker = if name == current { "*" } else { "" };
                    rows.push(vec![marker.to_owned(), name, context.control]);
                }
                output::table(&["", "NAME", "CONTROL"], &rows)?;
            }
        }
        Command::Use { name } => {
            if !contexts.fleets.contains_key(&name) {
                contexts.get(&name)?;
            }
            contexts.current = (name != LOCAL).then(|| name.clone());
            contexts.save()?;
            outln!("current context: {name}")?;
        }
        Command::Rm { name } => {
            if name == LOCAL {
                bail!("{LOCAL:?} is built in and cannot be removed");
            }
            if let Some((fleet, _)) = contexts.fleets.iter().find(|(_, m)| m.contains(&name)) {
                bail!("context {name:?} is in fleet {fleet:?}; take it out of the fleet first");
            }
            if contexts.contexts.remove(&name).is_none() {
                bail!("no context named {name:?}");
            }
            if contexts.current.as_deref() == Some(name.as_str()) {
                contexts.current = None;
            }
            contexts.save()?;
            outln!("removed context {name}")?;
        }
        Command::Show { name } => {
            let name = name.unwrap_or_else(|| contexts.current_name().to_owned());
            if let Some(members) = contexts.fleets.get(&name) {
                if ctx.json {
                    output::json(&serde_json::json!({ "name": name, "fleet": members }))?;
                } else {
                    outln!("name:       {name}")?;
                    outln!("fleet:      {}", members.join(","))?;
                }
                return Ok(0);
            }
            let context = contexts.get(&name)?;
            if ctx.json {
                output::json(&serde_json::json!({ "name": name, "context": context }))?;
            } else {
                outln!("name:       {name}")?;
                outln!("control:    {}", context.control)?;
                if let Some(key) = &context.server_key {
                    outln!("server key: {key}")?;
                }
                if let Some(key) = &context.key {
                    outln!("client key: {}", key.display())?;
                }
                if let Some(publish) = &context.publish {
                    outln!("pub:        {publish}")?;
                }
                if let Some(http) = &context.http {
                    outln!("http:       {http}")?;
                }
            }
        }
        Command::Fleet(command) => fleet(ctx, &mut contexts, command)?,
    }
    Ok(0)
}

/// `drover context fleet ...`.
fn fleet(ctx: &Ctx, contexts: &mut Contexts, command: FleetCommand) -> anyhow::Result<()> {
    match command {
        FleetCommand::Add {
            name,
            contexts: members,
            force,
        } => {
            if contexts.fleets.contains_key(&name) && !force {
                bail!("a fleet named {name:?} exists; pass --force to replace it");
            }
            contexts.check_fleet(&name, &members)?;
            contexts.fleets.insert(name.clone(), members);
            contexts.save()?;
            outln!("added fleet {name} (use it with `drover --context {name} ls`)")?;
        }
        FleetCommand::Ls => {
            if ctx.json {
                output::json(&contexts.fleets)?;
            } else {
                let rows: Vec<Vec<String>> = contexts
                    .fleets
                    .iter()
                    .map(|(name, members)| vec![name.clone(), members.join(",")])
                    .collect();
                output::table(&["FLEET", "CONTEXTS"], &rows)?;
            }
        }
        FleetCommand::Rm { name } => {
            if contexts.fleets.remove(&name).is_none() {
                bail!("no fleet named {name:?}");
            }
            if contexts.current.as_deref() == Some(name.as_str()) {
                contexts.current = None;
            }
            contexts.save()?;
            outln!("removed fleet {name}")?;
        }
    }
    Ok(())
}

/// Every context as JSON, `local` included.
fn listing(contexts: &Contexts) -> anyhow::Result<Vec<serde_json::Value>> {
    contexts
        .names()
        .into_iter()
        .map(|name| {
            let context = contexts.get(&name)?;
            Ok(serde_json::json!({ "name": name, "context": context }))
        })
        .collect()
}

/// A context from `add`'s flags, checked: TCP needs the server's key and a client key file.
fn checked(mut add: AddArgs) -> anyhow::Result<(String, Context)> {
    // `HOST:PORT`, as the ready line prints it, is a TCP endpoint.
    add.control = super::normalise_endpoint(&add.control);
    add.publish = add.publish.map(|p| super::normalise_endpoint(&p));
    let is_tcp = add.control.starts_with("tcp://");
    if !is_tcp && !add.control.starts_with("ipc://") {
        bail!(
            "--control must be tcp://HOST:PORT or ipc://PATH, got {:?}",
            add.control
        );
    }
    if let Some(key) = &add.server_key {
        context::validate_z85_key("--server-key", key)?;
    }
    let key = match (&add.key, is_tcp) {
        (Some(key), _) => Some(context::absolute(key.clone())?),
        (None, true) => Some(context::default_key_file()?),
        (None, false) => None,
    };
    if is_tcp {
        if add.server_key.is_none() {
            bail!("a tcp:// daemon needs --server-key (run `drover auth server-key` on its host)");
        }
        if let Some(key) = &key {
            if !key.exists() {
                bail!(
                    "no client key at {} (make one with `drover auth keygen`, then allow its \
                     public key on the daemon's host with `drover auth allow`)",
                    key.display()
                );
            }
        }
    }
    if let Some(publish) = &add.publish {
        if !publish.starts_with("tcp://") && !publish.starts_with("ipc://") {
            bail!("--pub must be tcp://HOST:PORT or ipc://PATH, got {publish:?}");
        }
    }
    let context = Context {
        control: add.control,
        server_key: add.server_key,
        key,
        publish: add.publish,
        http: add.http,
    };
    Ok((add.name, context))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn add(control: &str, server_key: Option<&str>, key: Option<PathBuf>) -> AddArgs {
        AddArgs {
            name: "x".into(),
            control: control.into(),
            server_key: server_key.map(str::to_owned),
            key,
            publish: None,
            http: None,
            force: false,
        }
    }

    #[test]
    fn tcp_needs_a_server_key_and_an_existing_client_key() {
        let dir = tempfile::tempdir().expect("tempdir");
        let key_file = dir.path().join("client.key");
        let server = "rq:rM>}U?@Lns47E1%kR.o@n%FcmmsL/@{H8]yf7";
        assert!(checked(add("tcp://h:1", None, Some(key_file.clone()))).is_err());
        let missing = checked(add("tcp://h:1", Some(server), Some(key_file.clone())));
        assert!(format!("{:#}", missing.expect_err("no key file")).contains("drover auth keygen"));
        std::fs::write(&key_file, "x").expect("write");
        let (_, context) =
            checked(add("tcp://h:1", Some(server), Some(key_file.clone()))).expect("valid");
        assert_eq!(context.key, Some(key_file));
        assert!(checked(add("http://h:1", None, None)).is_err());
        assert!(checked(add("ipc:///run/d/control.sock", None, None)).is_ok());
    }
}
