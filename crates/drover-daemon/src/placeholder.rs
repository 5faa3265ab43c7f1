//! Backend templates from the config file are checked for placeholders the renderer does not
//! know: `{modle}` would otherwise reach the agent's command line literally.
//!
//! A placeholder is `{` + a name of lowercase letters, digits and `_` + `}`. Other braces
//! (`{"key": 1}`, `{ }`) are literal text, so JSON arguments need no escaping.

use drover_supervisor::backend::{ArgTemplate, BackendTemplate};

/// What a template may name.
const KNOWN: [&str; 5] = ["task", "model", "system_prompt", "session", "argv"];

/// `Err` naming the first unknown placeholder of backend `name`, or its unknown parser.
pub(crate) fn check(name: &str, template: &BackendTemplate) -> Result<(), String> {
    let words = template.argv.iter().flat_map(|arg| match arg {
        ArgTemplate::Word(word) => std::slice::from_ref(word).iter(),
        ArgTemplate::Optional(words) => words.iter(),
    });
    for word in words {
        if let Some(unknown) = placeholders(word).find(|p| !KNOWN.contains(p)) {
            return Err(format!(
                "backend {name:?}: unknown placeholder {{{unknown}}} in {word:?} (known: {{task}}, \
                 {{model}}, {{system_prompt}}, {{session}}, {{argv}})"
            ));
        }
    }
    if let Some(signal) = &template.stop_signal {
        if drover_supervisor::parse_signal(signal).is_none() {
            return Err(format!(
                "backend {name:?}: stop_signal {signal:?} is not a signal name or number"
            ));
        }
    }
    if let Some(parser) = &template.parser {
        parser
            .parse::<drover_agent::ParserKind>()
            .map_err(|e| format!("backend {name:?}: {e}"))?;
    }
    Ok(())
}

/// The placeholder names in a word.
fn placeholders(word: &str) -> impl Iterator<Item = &str> {
    word.split('{').skip(1).filter_map(|after| {
        let (name, _) = after.split_once('}')?;
        let is_name = !name.is_empty()
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        is_name.then_some(name)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(words: &[&str]) -> BackendTemplate {
        BackendTemplate {
            argv: words
                .iter()
                .map(|w| ArgTemplate::Word((*w).to_owned()))
                .collect(),
            stdin: None,
            stop_signal: None,
            parser: None,
        }
    }

    #[test]
    fn unknown_placeholders_are_named_and_literal_braces_pass() {
        assert!(check("t", &template(&["tool", "{task}", "--m={model}", "{argv}"])).is_ok());
        assert!(check("t", &template(&["tool", r#"{"a": 1}"#, "{ }", "{}"])).is_ok());
        let error = check("t", &template(&["tool", "--model", "{modle}"])).unwrap_err();
        assert!(error.contains("unknown placeholder {modle}"), "{error}");
        let optional = BackendTemplate {
            argv: vec![
                ArgTemplate::Word("tool".into()),
                ArgTemplate::Optional(vec!["--sys".into(), "{system}".into()]),
            ],
            stdin: None,
            stop_signal: None,
            parser: None,
        };
        assert!(check("t", &optional).unwrap_err().contains("{system}"));
    }
}
