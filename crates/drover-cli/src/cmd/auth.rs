//! `drover auth`: the daemon's keys, the client keys it allows, and HTTP tokens.
//!
//! Everything but `keygen` works on a state directory on this host (the daemon's), so it runs
//! as the daemon's user; a running daemon notices changes to the allowed keys and tokens without
//! a restart. `keygen` makes this user's client keypair.

use std::path::PathBuf;

use anyhow::{bail, Context as _};
use drover_client::CurveKeys;
use drover_daemon::{auth, token};
use drover_proto::Role;

use super::Ctx;
use crate::context;
use crate::output;

#[derive(Debug, clap::Args)]
#[command(after_help = "Examples:
  drover auth server-key                                  # on the daemon's host: its public key
  drover auth keygen                                      # on a client: make its keypair
  drover auth allow 'Yne@$w-vo<fVvi]a<NY6T1ed:M$fCG*[IaLV{hID' --role read --comment laptop
  drover auth ls
  drover auth revoke laptop
  drover auth token create --role control --comment ci   # prints the token once
  curl -H \"Authorization: Bearer $TOKEN\" http://127.0.0.1:7712/v1/agents")]
pub(crate) struct Args {
    /// The daemon's state directory [default: `DROVER_STATE_DIR`, else $XDG_DATA_HOME/drover].
    /// Given as a flag it is this host's, whatever context is named; from the environment it
    /// gives way to a refusal when the command names another daemon.
    #[arg(long, global = true)]
    state_dir: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, clap::Subcommand)]
enum Command {
    /// Print the daemon's public key (made at its first start), for `drover context add`.
    ServerKey,
    /// Print the SHA-256 fingerprint of the daemon's HTTP TLS certificate (the self-signed one
    /// it made, or --cert), to pin it in clients.
    Fingerprint {
        /// A configured certificate (PEM) instead of the self-signed one.
        #[arg(long)]
        cert: Option<PathBuf>,
    },
    /// Make a client keypair (secret file 0600) and print its public key.
    Keygen {
        /// Where to write it [default: <config dir>/client.key].
        #[arg(long)]
        out: Option<PathBuf>,
        /// Replace an existing keypair file.
        #[arg(long)]
        force: bool,
    },
    /// Allow a client public key, with a role.
    Allow {
        /// The client's public key (z85, 40 characters), from its `drover auth keygen`.
        // A z85 key may begin with `-`: it is a value, never a flag.
        #[arg(allow_hyphen_values = true)]
        key: String,
        #[command(flatten)]
        grant: Grant,
    },
    /// List the allowed keys and the HTTP tokens.
    #[command(alias = "list")]
    Ls,
    /// Stop allowing a key (by key or by comment).
    Revoke {
        /// The key, or the comment it was allowed with.
        #[arg(allow_hyphen_values = true)]
        key: String,
    },
    /// HTTP bearer tokens.
    Token {
        #[command(subcommand)]
        command: TokenCommand,
    },
}

#[derive(Debug, clap::Subcommand)]
enum TokenCommand {
    /// Make a token with a role; it is printed once and stored only as a hash.
    Create {
        #[command(flatten)]
        grant: Grant,
    },
    /// List tokens (ids, roles, comments; never the tokens themselves).
    #[command(alias = "list")]
    Ls,
    /// Revoke a token (by id or by comment).
    Revoke {
        /// The token's id, or the comment it was made with.
        token: String,
    },
}

/// What a key or token may do, and whom it is for.
#[derive(Debug, clap::Args)]
struct Grant {
    /// `read` (look and follow) or `control` (everything).
    #[arg(long, value_parser = parse_role)]
    role: Role,
    /// Who or what it is for (also a handle for `revoke`).
    #[arg(long, default_value = "")]
    comment: String,
}

fn parse_role(s: &str) -> Result<Role, String> {
    Role::parse(s).ok_or_else(|| format!("unknown role {s:?}: use `read` or `control`"))
}

pub(crate) async fn run(ctx: &Ctx, args: Args) -> anyhow::Result<i32> {
    if args.state_dir.is_none() && !matches!(args.command, Command::Keygen { .. }) {
        refuse_another_daemon(ctx)?;
    }
    let from_env = std::env::var_os("DROVER_STATE_DIR")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from);
    let state_dir = match args.state_dir.or(from_env) {
        Some(dir) => context::absolute(dir)?,
        None => context::default_state_dir()?,
    };
    match args.command {
        Command::ServerKey => {
            let keys = auth::ServerKeys::load_or_create(&state_dir)?;
            if ctx.json {
                output::json(&serde_json::json!({ "server_key": keys.public() }))?;
            } else {
                outln!("{}", keys.public())?;
            }
        }
        Command::Fingerprint { cert } => {
            let cert = match cert {
                Some(cert) => context::absolute(cert)?,
                None => drover_daemon::tls::self_signed_cert_path(&state_dir),
            };
            let fingerprint = drover_daemon::tls::fingerprint_file(&cert)?;
            if ctx.json {
                output::json(&serde_json::json!({ "fingerprint": fingerprint, "cert": cert }))?;
            } else {
                outln!("{fingerprint}")?;
            }
        }
        Command::Keygen { out, force } => {
            let path = match out {
                Some(path) => context::absolute(path)?,
                None => context::default_key_file()?,
            };
            if path.exists() && !force {
                bail!(
                    "{} exists; pass --force to replace it (every daemon that allowed its \
                     public key would have to allow the new one)",
                    path.display()
                );
            }
            let keys = CurveKeys::generate()?;
            // Without --force, refused at the write itself too, should the file appear meanwhile.
            let written = if force {
                keys.write_to(&path)
            } else {
                keys.write_new(&path)
            };
            written.with_context(|| format!("writing {}", path.display()))?;
            if ctx.json {
                output::json(&serde_json::json!({
                    "public_key": keys.public,
                    "file": path,
                }))?;
            } else {
                outln!("{}", keys.public)?;
                eprintln!(
                    "wrote {}; allow it on a daemon's host with: drover auth allow '{}' --role \
                     control",
                    path.display(),
                    keys.public
                );
            }
        }
        Command::Allow { key, grant } => {
            auth::allow_key(&state_dir, &key, grant.role, &grant.comment)?;
            outln!("allowed {key} as {}", grant.role)?;
        }
        Command::Ls => list(ctx, &state_dir)?,
        Command::Revoke { key } => {
            let removed = auth::revoke_key(&state_dir, &key)?;
            if removed == 0 {
                bail!("no allowed key matches {key:?}");
            }
            outln!("revoked {removed} key(s)")?;
        }
        Command::Token { command } => token_command(ctx, &state_dir, command)?,
    }
    Ok(0)
}

fn list(ctx: &Ctx, state_dir: &std::path::Path) -> anyhow::Result<()> {
    let keys = auth::AllowedKeys::read(&auth::allowed_keys_path(state_dir))?;
    let tokens = token::list(state_dir)?;
    if ctx.json {
        let keys: Vec<_> = keys
            .entries()
            .iter()
            .map(|k| serde_json::json!({"key": k.key, "role": k.role, "comment": k.comment}))
            .collect();
        let tokens: Vec<_> = tokens
            .iter()
            .map(|t| serde_json::json!({"id": t.id, "role": t.role, "comment": t.comment}))
            .collect();
        output::json(&serde_json::json!({ "keys": keys, "tokens": tokens }))?;
        return Ok(());
    }
    let mut rows: Vec<Vec<String>> = keys
        .entries()
        .iter()
        .map(|k| {
            vec![
                "key".to_owned(),
                k.key.clone(),
                k.role.to_string(),
                k.comment.clone(),
            ]
        })
        .collect();
    rows.extend(tokens.iter().map(|t| {
        vec![
            "token".to_owned(),
            t.id.clone(),
            t.role.to_string(),
            t.comment.clone(),
        ]
    }));
    output::table(&["KIND", "KEY / ID", "ROLE", "COMMENT"], &rows)
}

fn token_command(
    ctx: &Ctx,
    state_dir: &std::path::Path,
    command: TokenCommand,
) -> anyhow::Result<()> {
    match command {
        TokenCommand::Create { grant } => {
            let role = grant.role;
            let new = token::create(state_dir, role, &grant.comment)?;
            if ctx.json {
                output::json(&serde_json::json!({
                    "id": new.id,
                    "role": role,
                    "token": new.secret,
                }))?;
            } else {
                outln!("{}", new.secret)?;
                eprintln!(
                    "token {} ({role}); it is shown only now and stored as a hash",
                    new.id
                );
            }
        }
        TokenCommand::Ls => list(ctx, state_dir)?,
        TokenCommand::Revoke { token } => {
            let removed = token::revoke(state_dir, &token)?;
            if removed == 0 {
                bail!("no token matches {token:?}");
            }
            outln!("revoked {removed} token(s)")?;
        }
    }
    Ok(())
}

/// `drover auth` works on a state directory on this host. A command that names another daemon
/// (`--context`, `DROVER_CONTEXT`, the current context, `--control`) would otherwise print or
/// change the local daemon's keys while seeming to act on that one: refused, saying how to
/// reach the right one. `--state-dir` names the directory outright, and `keygen` makes the
/// user's own keypair, which belongs to no daemon.
fn refuse_another_daemon(ctx: &Ctx) -> anyhow::Result<()> {
    let named = if ctx.all_contexts {
        Some("--all-contexts".to_owned())
    } else if ctx.control_flag {
        Some(format!(
            "--control {}",
            ctx.control.as_deref().unwrap_or("")
        ))
    } else {
        let contexts = context::Contexts::load()?;
        let name = match &ctx.context {
            Some(name) => name.clone(),
            None => contexts.current_name().to_owned(),
        };
        (name != context::LOCAL).then(|| format!("context {name}"))
    };
    if let Some(named) = named {
        bail!(
            "drover auth manages the keys and tokens of a daemon on this host (its state \
             directory), and this command names {named}: run `drover auth` on that daemon's host, \
             or pass --context local or --state-dir DIR for one here"
        );
    }
    Ok(())
}
