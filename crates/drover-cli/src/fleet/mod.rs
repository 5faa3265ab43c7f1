//! Several daemons at once: which hosts a command goes to, host-qualified agent references
//! (`HOST/AGENT`), and the deadline a host has to answer before it is reported unreachable.
//!
//! A fleet is a list of contexts (see [`crate::context`]); one daemon per host, no scheduler.
//! The client fans out to every host concurrently and merges what comes back; a host that does
//! not answer is reported on stderr and makes the exit status non-zero, while the others'
//! answers are still printed.

pub(crate) mod logs;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use drover_client::Client;

use crate::cmd::Ctx;
use crate::context::Contexts;

/// How long one host of several has to connect and answer in full (`ls`), before it is
/// reported as unreachable: short enough that a dead host never holds up the rest for long.
pub(crate) const HOST_DEADLINE: Duration = Duration::from_millis(2500);

/// One host's share of a command: the command narrowed to it, and the agents named there
/// (with the `HOST/` removed; empty for a selector or `--all`).
#[derive(Debug)]
pub(crate) struct Share {
    pub(crate) ctx: Ctx,
    pub(crate) refs: Vec<String>,
}

/// A reference `HOST/AGENT` whose `HOST` is a context's name, split; anything else (an id, a
/// name, a name that itself holds a `/`) is `None`.
fn split<'a>(contexts: &Contexts, reference: &'a str) -> Option<(&'a str, &'a str)> {
    let (host, agent) = reference.split_once('/')?;
    let known = host == crate::context::LOCAL || contexts.contexts.contains_key(host);
    (known && !agent.is_empty()).then_some((host, agent))
}

/// Where a command on agents goes. Named agents go to their host (`HOST/AGENT`) or, unqualified,
/// to the one selected context; with no names (a selector, `--all`), every selected host gets
/// the command. One share on the one selected context is today's single-daemon command, with
/// unchanged output; otherwise each share's reports name agents `HOST/NAME`.
pub(crate) fn route(ctx: &Ctx, refs: &[String]) -> anyhow::Result<Vec<Share>> {
    let hosts = ctx.hosts()?;
    if refs.is_empty() {
        return Ok(match hosts {
            None => vec![Share {
                ctx: ctx.clone(),
                refs: Vec::new(),
            }],
            Some(hosts) => hosts
                .iter()
                .map(|host| Share {
                    ctx: ctx.on(host, true),
                    refs: Vec::new(),
                })
                .collect(),
        });
    }
    let contexts = Contexts::load()?;
    // Shares in order of first mention; `None` is the selected context.
    let mut groups: Vec<(Option<String>, Vec<String>)> = Vec::new();
    for reference in refs {
        let (host, agent) = match split(&contexts, reference) {
            Some((host, agent)) => (Some(host.to_owned()), agent.to_owned()),
            None if hosts.is_some() => anyhow::bail!(
                "several contexts are selected: name the agent's host too, as HOST/{reference}"
            ),
            None => (None, reference.clone()),
        };
        match groups.iter_mut().find(|(h, _)| *h == host) {
            Some((_, agents)) => agents.push(agent),
            None => groups.push((host, vec![agent])),
        }
    }
    let labelled = hosts.is_some() || groups.len() > 1;
    Ok(groups
        .into_iter()
        .map(|(host, refs)| Share {
            ctx: match host {
                Some(host) => ctx.on(&host, labelled),
                None => ctx.clone(),
            },
            refs,
        })
        .collect())
}

/// Connect to one host of several, within [`HOST_DEADLINE`].
pub(crate) async fn connect(ctx: &Ctx) -> anyhow::Result<Client> {
    match tokio::time::timeout(HOST_DEADLINE, ctx.client()).await {
        Ok(result) => result,
        Err(_) => anyhow::bail!("no answer within {} ms", HOST_DEADLINE.as_millis()),
    }
}

/// `value` as JSON, with a `"host"` field when it comes from one host of several, so that one
/// document over a fleet still says where each agent lives.
pub(crate) fn with_host(
    host: Option<&str>,
    value: &impl serde::Serialize,
) -> serde_json::Result<serde_json::Value> {
    let mut value = serde_json::to_value(value)?;
    if let (Some(host), Some(map)) = (host, value.as_object_mut()) {
        map.insert("host".into(), host.into());
    }
    Ok(value)
}

/// The `--json` items of a command run host after host, gathered so that the fleet prints ONE
/// document (an array) at the end instead of one per host. Each item carries its host.
#[derive(Clone, Debug, Default)]
pub(crate) struct JsonSink(Arc<Mutex<Vec<serde_json::Value>>>);

impl JsonSink {
    /// Keep `items`, each given `host`.
    pub(crate) fn extend(&self, host: Option<&str>, items: Vec<serde_json::Value>) {
        // The lock is only held to append, never across an `.await`; a panic while it was
        // held cannot leave the vector half-written, so a poisoned lock is still usable.
        let mut kept = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        for mut item in items {
            if let (Some(host), Some(map)) = (host, item.as_object_mut()) {
                map.insert("host".into(), host.into());
            }
            kept.push(item);
        }
    }

    /// Every item kept, in the order kept.
    pub(crate) fn take(&self) -> Vec<serde_json::Value> {
        std::mem::take(&mut *self.0.lock().unwrap_or_else(PoisonError::into_inner))
    }
}

/// Run `share`'s part of a command and fold its status into `status` (the first non-zero
/// wins). With several shares, a host's failure is reported as `drover: HOST: ...` and the
/// others still run; alone, it is the command's error as before.
pub(crate) fn fold(
    status: &mut i32,
    several: bool,
    host: Option<&str>,
    result: anyhow::Result<i32>,
) -> anyhow::Result<()> {
    let code = match result {
        Ok(code) => code,
        Err(error) if several => {
            eprintln!(
                "drover: {}: {}",
                host.unwrap_or("?"),
                crate::output::shown(format_args!("{error:#}"))
            );
            crate::output::exit_code(&error)
        }
        Err(error) => return Err(error),
    };
    if *status == 0 {
        *status = code;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_known_context_qualifies_a_reference() {
        let mut contexts = Contexts::default();
        contexts.contexts.insert(
            "b1".into(),
            crate::context::Context {
                control: "tcp://10.0.0.2:7710".into(),
                server_key: None,
                key: None,
                publish: None,
                http: None,
            },
        );
        assert_eq!(split(&contexts, "b1/fix"), Some(("b1", "fix")));
        assert_eq!(split(&contexts, "local/fix"), Some(("local", "fix")));
        // The rest of the reference is the agent's, slashes and all.
        assert_eq!(split(&contexts, "b1/a/b"), Some(("b1", "a/b")));
        // Not a context: an agent whose name holds a slash.
        assert_eq!(split(&contexts, "team/fix"), None);
        assert_eq!(split(&contexts, "b1/"), None);
        assert_eq!(split(&contexts, "fix"), None);
    }
}
