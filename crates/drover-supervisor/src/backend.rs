//! Agent backends as data: argv templates rendered into a program and its arguments.
//!
//! A template is a list of words. A word is always emitted with `{task}`, `{model}`,
//! `{system_prompt}` and `{session}` replaced by their values (a missing value is an error); an
//! optional group (a nested list) is emitted only if every placeholder in it has a value; the
//! word `{argv}` splices the caller's argv (for an agent backend: the extra arguments given
//! after `--`), and a template without `{argv}` gets them appended at its end. Values are substituted once and never re-scanned, and no shell is
//! ever involved, so a task is always exactly one argv element whatever it contains.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::StdinMode;

/// One backend: its argv template and the stdin mode it wants (if it has an opinion).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BackendTemplate {
    pub argv: Vec<ArgTemplate>,
    #[serde(default)]
    pub stdin: Option<StdinMode>,
    /// The signal a stop sends first (a name or number), when not SIGTERM: `claude` finishes
    /// its turn and exits on SIGINT.
    #[serde(default)]
    pub stop_signal: Option<String>,
    /// The parser that reads the agent's stdout into its activity (`claude-stream-json`,
    /// `codex-json`, `gemini-stream-json`, `opencode-json`); none for plain commands.
    #[serde(default)]
    pub parser: Option<String>,
}

impl BackendTemplate {
    /// Whether the template can resume a session (it uses `{session}`).
    pub fn resumes(&self) -> bool {
        self.argv.iter().any(|arg| match arg {
            ArgTemplate::Word(word) => word.contains(SESSION),
            ArgTemplate::Optional(words) => words.iter().any(|w| w.contains(SESSION)),
        })
    }

    fn splices_argv(&self) -> bool {
        self.argv.iter().any(|arg| match arg {
            ArgTemplate::Word(word) => word == ARGV,
            ArgTemplate::Optional(words) => words.iter().any(|w| w == ARGV),
        })
    }
}

/// A word, or an optional group of words emitted only when all its placeholders have values.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum ArgTemplate {
    Word(String),
    Optional(Vec<String>),
}

/// The values a template is rendered with.
#[derive(Debug, Clone, Copy, Default)]
pub struct RenderInput<'a> {
    pub task: Option<&'a str>,
    pub model: Option<&'a str>,
    pub system_prompt: Option<&'a str>,
    /// The agent session to resume.
    pub session: Option<&'a str>,
    /// Spliced where the template has the word `{argv}` (the `command` backend), else appended.
    pub argv: &'a [String],
}

/// Why a backend could not be rendered or loaded.
#[derive(thiserror::Error, Debug)]
#[non_exhaustive]
pub enum BackendError {
    #[error("unknown backend {backend:?}")]
    Unknown { backend: String },
    #[error("backend {backend:?} needs a value for {field}, and the spec gives none")]
    Missing {
        backend: String,
        field: &'static str,
    },
    #[error("backend {backend:?} renders to an empty command")]
    Empty { backend: String },
    #[error("invalid [backends] configuration")]
    Toml(#[source] toml::de::Error),
}

/// The backends a daemon knows: the builtins, overridden or extended by configuration.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BackendTable {
    backends: BTreeMap<String, BackendTemplate>,
}

const ARGV: &str = "{argv}";
const SESSION: &str = "{session}";
const PLACEHOLDERS: [&str; 4] = ["task", "model", "system_prompt", "session"];

fn w(s: &str) -> ArgTemplate {
    ArgTemplate::Word(s.to_owned())
}

fn opt(words: &[&str]) -> ArgTemplate {
    ArgTemplate::Optional(words.iter().map(|s| (*s).to_owned()).collect())
}

impl BackendTable {
    /// `claude`, `codex`, `gemini`, `opencode`, `aider` and `command` (their command lines are
    /// documented in `docs/BACKENDS.md`).
    pub fn builtin() -> Self {
        let model = opt(&["--model", "{model}"]);
        let extra = opt(&[ARGV]);
        let t = |argv: Vec<ArgTemplate>, parser: Option<&str>| BackendTemplate {
            argv,
            stdin: None,
            stop_signal: None,
            parser: parser.map(str::to_owned),
        };
        let backends = BTreeMap::from([
            (
                "claude".to_owned(),
                BackendTemplate {
                    // claude waits on an open stdin; it finishes its turn and exits on SIGINT.
                    stdin: Some(StdinMode::Null),
                    stop_signal: Some("INT".to_owned()),
                    ..t(
                        vec![
                            w("claude"),
                            w("-p"),
                            w("{task}"),
                            w("--output-format"),
                            w("stream-json"),
                            w("--verbose"),
                            model.clone(),
                            opt(&["--append-system-prompt", "{system_prompt}"]),
                            opt(&["--resume", SESSION]),
                            extra.clone(),
                        ],
                        Some("claude-stream-json"),
                    )
                },
            ),
            (
                "codex".to_owned(),
                BackendTemplate {
                    // codex reads a prompt from a stdin that is not a terminal.
                    stdin: Some(StdinMode::Null),
                    ..t(
                        vec![
                            w("codex"),
                            w("exec"),
                            w("--json"),
                            // Agents run in any directory, not only a trusted git checkout.
                            w("--skip-git-repo-check"),
                            model.clone(),
                            extra.clone(),
                            opt(&["resume", SESSION]),
                            w("{task}"),
                        ],
                        Some("codex-json"),
                    )
                },
            ),
            (
                "gemini".to_owned(),
                t(
                    vec![
                        w("gemini"),
                        w("-p"),
                        w("{task}"),
                        w("--output-format"),
                        w("stream-json"),
                        model.clone(),
                        opt(&["--resume", SESSION]),
                        extra.clone(),
                    ],
                    Some("gemini-stream-json"),
                ),
            ),
            (
                "opencode".to_owned(),
                BackendTemplate {
                    // opencode reads a stdin that is not a terminal to its end before it starts.
                    stdin: Some(StdinMode::Null),
                    ..t(
                        vec![
                            w("opencode"),
                            w("run"),
                            w("--format"),
                            w("json"),
                            opt(&["--session", SESSION]),
                            model.clone(),
                            extra.clone(),
                            w("{task}"),
                        ],
                        Some("opencode-json"),
                    )
                },
            ),
            (
                "aider".to_owned(),
                t(
                    vec![
                        w("aider"),
                        w("--yes"),
                        w("--message"),
                        w("{task}"),
                        model,
                        extra,
                    ],
                    None,
                ),
            ),
            ("command".to_owned(), t(vec![w(ARGV)], None)),
        ]);
        BackendTable { backends }
    }

    /// Adds or replaces backends from the contents of a `[backends]` table
    /// (`[mytool]\nargv = [...]`). A document that still has the `[backends]` wrapper
    /// (`[backends.mytool]`) is accepted too.
    pub fn extend_from_toml(&mut self, text: &str) -> Result<(), BackendError> {
        let mut table: toml::Table = toml::from_str(text).map_err(BackendError::Toml)?;
        let wrapped = table.len() == 1
            && matches!(table.get("backends"), Some(toml::Value::Table(t)) if !t.contains_key("argv"));
        if wrapped {
            if let Some(toml::Value::Table(inner)) = table.remove("backends") {
                table = inner;
            }
        }
        let parsed: BTreeMap<String, BackendTemplate> = toml::Value::Table(table)
            .try_into()
            .map_err(BackendError::Toml)?;
        self.merge(parsed);
        Ok(())
    }

    /// Adds or replaces backends.
    pub fn merge(&mut self, backends: BTreeMap<String, BackendTemplate>) {
        self.backends.extend(backends);
    }

    /// Backend names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.backends.keys().map(String::as_str)
    }

    pub fn get(&self, name: &str) -> Option<&BackendTemplate> {
        self.backends.get(name)
    }

    /// Renders `backend` into an argv (program first) and its stdin preference.
    pub fn render(
        &self,
        backend: &str,
        input: &RenderInput,
    ) -> Result<(Vec<String>, Option<StdinMode>), BackendError> {
        let template = self.get(backend).ok_or_else(|| BackendError::Unknown {
            backend: backend.to_owned(),
        })?;
        let missing = |field| BackendError::Missing {
            backend: backend.to_owned(),
            field,
        };
        let mut out = Vec::new();
        for arg in &template.argv {
            match arg {
                ArgTemplate::Word(word) if word == ARGV => {
                    if input.argv.is_empty() {
                        return Err(missing("argv"));
                    }
                    out.extend(input.argv.iter().cloned());
                }
                ArgTemplate::Word(word) => out.push(substitute(word, input).map_err(missing)?),
                ArgTemplate::Optional(words) => {
                    let mut group = Vec::with_capacity(words.len());
                    for word in words {
                        if word == ARGV {
                            if input.argv.is_empty() {
                                group.clear();
                                break;
                            }
                            group.extend(input.argv.iter().cloned());
                        } else if let Ok(s) = substitute(word, input) {
                            group.push(s);
                        } else {
                            group.clear();
                            break;
                        }
                    }
                    out.extend(group);
                }
            }
        }
        if !template.splices_argv() {
            out.extend(input.argv.iter().cloned());
        }
        if out.first().is_none_or(String::is_empty) {
            return Err(BackendError::Empty {
                backend: backend.to_owned(),
            });
        }
        Ok((out, template.stdin))
    }
}

/// Replaces each known `{placeholder}` in one pass; `Err(field)` if a value is absent. Unknown
/// `{...}` text is left as it is, so literal braces (JSON arguments) need no escaping.
fn substitute(word: &str, input: &RenderInput) -> Result<String, &'static str> {
    let mut out = String::with_capacity(word.len());
    let mut rest = word;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let hit = PLACEHOLDERS.iter().find(|name| {
            after
                .strip_prefix(**name)
                .is_some_and(|r| r.starts_with('}'))
        });
        match hit {
            Some(name) => {
                let value = match *name {
                    "task" => input.task,
                    "model" => input.model,
                    "session" => input.session,
                    _ => input.system_prompt,
                };
                out.push_str(value.ok_or(*name)?);
                rest = &after[name.len() + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    Ok(out)
}
