//! Label selectors in Kubernetes syntax: `k=v` (or `k==v`), `k!=v`, `k in (a,b)`,
//! `k notin (a,b)`, `k` (has the label), `!k` (lacks it); requirements separated by commas,
//! all of which must hold. An invalid selector is an error, never a silent empty match.

use std::collections::BTreeMap;
use std::fmt;

/// One requirement on an agent's labels.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Requirement {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    Absent(String),
}

/// A parsed selector: every requirement must hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Selector(Vec<Requirement>);

/// Why a selector could not be parsed.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct SelectorError {
    selector: String,
    reason: String,
}

impl fmt::Display for SelectorError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "invalid selector {:?}: {} (use k=v, k!=v, 'k in (a,b)', 'k notin (a,b)', k, !k)",
            self.selector, self.reason
        )
    }
}

impl std::error::Error for SelectorError {}

impl Selector {
    /// Parse one `-l` argument.
    pub(crate) fn parse(text: &str) -> Result<Selector, SelectorError> {
        let fail = |reason: String| SelectorError {
            selector: text.to_owned(),
            reason,
        };
        let mut requirements = Vec::new();
        for part in split_top_level(text).map_err(&fail)? {
            requirements.push(requirement(part.trim()).map_err(&fail)?);
        }
        Ok(Selector(requirements))
    }

    /// This selector and `other`, both required.
    pub(crate) fn and(mut self, other: Selector) -> Selector {
        self.0.extend(other.0);
        self
    }

    /// Whether labels satisfy every requirement.
    pub(crate) fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        self.0.iter().all(|requirement| match requirement {
            Requirement::Equals(k, v) => labels.get(k) == Some(v),
            Requirement::NotEquals(k, v) => labels.get(k) != Some(v),
            Requirement::In(k, set) => labels.get(k).is_some_and(|v| set.contains(v)),
            Requirement::NotIn(k, set) => labels.get(k).is_none_or(|v| !set.contains(v)),
            Requirement::Exists(k) => labels.contains_key(k),
            Requirement::Absent(k) => !labels.contains_key(k),
        })
    }

    /// The `k=v` requirements, which the daemon can filter by itself (`list`'s `labels`).
    pub(crate) fn equalities(&self) -> BTreeMap<String, String> {
        self.0
            .iter()
            .filter_map(|r| match r {
                Requirement::Equals(k, v) => Some((k.clone(), v.clone())),
                _ => None,
            })
            .collect()
    }

    /// Whether every requirement is a `k=v` (the daemon's follow selection can take it whole).
    pub(crate) fn is_only_equalities(&self) -> bool {
        self.0.iter().all(|r| matches!(r, Requirement::Equals(..)))
    }
}

/// Parse every `-l` flag into one selector.
pub(crate) fn parse_all(flags: &[String]) -> anyhow::Result<Selector> {
    let mut selector = Selector::default();
    for flag in flags {
        selector = selector.and(Selector::parse(flag)?);
    }
    Ok(selector)
}

/// Split on commas outside parentheses.
fn split_top_level(text: &str) -> Result<Vec<&str>, String> {
    let mut parts = Vec::new();
    let mut depth = 0u32;
    let mut start = 0;
    for (i, c) in text.char_indices() {
        match c {
            '(' if depth == 0 => depth = 1,
            '(' => return Err("nested parentheses".into()),
            ')' if depth == 1 => depth = 0,
            ')' => return Err("')' without '('".into()),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err("'(' is never closed".into());
    }
    parts.push(&text[start..]);
    Ok(parts)
}

fn requirement(part: &str) -> Result<Requirement, String> {
    if part.is_empty() {
        return Err("an empty requirement".into());
    }
    if let Some(key) = part.strip_prefix('!') {
        return Ok(Requirement::Absent(key_name(key.trim())?));
    }
    if let Some((key, value)) = part.split_once("!=") {
        return Ok(Requirement::NotEquals(
            key_name(key.trim())?,
            value_text(value.trim())?,
        ));
    }
    if let Some((key, value)) = part.split_once("==").or_else(|| part.split_once('=')) {
        return Ok(Requirement::Equals(
            key_name(key.trim())?,
            value_text(value.trim())?,
        ));
    }
    let words: Vec<&str> = part.splitn(2, char::is_whitespace).collect();
    if let [key, rest] = words[..] {
        let rest = rest.trim_start();
        let (negated, set) = if let Some(set) = rest.strip_prefix("notin") {
            (true, set)
        } else if let Some(set) = rest.strip_prefix("in") {
            (false, set)
        } else {
            return Err(format!(
                "expected `in` or `notin` after {key:?}, got {rest:?}"
            ));
        };
        let key = key_name(key)?;
        let values = value_set(set.trim())?;
        return Ok(if negated {
            Requirement::NotIn(key, values)
        } else {
            Requirement::In(key, values)
        });
    }
    Ok(Requirement::Exists(key_name(part)?))
}

/// Label keys: letters, digits, `-`, `_`, `.` and `/` (as Kubernetes allows).
fn key_name(key: &str) -> Result<String, String> {
    let ok = !key.is_empty()
        && key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok {
        Ok(key.to_owned())
    } else {
        Err(format!("{key:?} is not a label key"))
    }
}

/// A value may be empty (`k=`), but holds no operator or separator characters.
fn value_text(value: &str) -> Result<String, String> {
    if value
        .chars()
        .any(|c| matches!(c, '=' | '!' | '(' | ')' | ',') || c.is_whitespace())
    {
        return Err(format!("{value:?} is not a label value"));
    }
    Ok(value.to_owned())
}

/// `(a, b, c)`.
fn value_set(set: &str) -> Result<Vec<String>, String> {
    let inner = set
        .strip_prefix('(')
        .and_then(|s| s.strip_suffix(')'))
        .ok_or_else(|| format!("expected a set like (a,b), got {set:?}"))?;
    let values = inner
        .split(',')
        .map(|v| value_text(v.trim()))
        .collect::<Result<Vec<_>, _>>()?;
    if values.iter().all(String::is_empty) {
        return Err("an empty set".into());
    }
    Ok(values)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    #[test]
    fn every_form_matches_as_kubernetes_does() {
        let a = labels(&[("team", "a"), ("tier", "web")]);
        let b = labels(&[("team", "b")]);
        let cases = [
            ("team=a", true, false),
            ("team==a", true, false),
            ("team!=a", false, true),
            ("team in (a, c)", true, false),
            ("team notin (a,c)", false, true),
            ("tier", true, false),
            ("!tier", false, true),
            ("team in (a,b),!tier", false, true),
            ("team=a,tier=web", true, false),
        ];
        for (text, on_a, on_b) in cases {
            let selector = Selector::parse(text).unwrap();
            assert_eq!(selector.matches(&a), on_a, "{text} on a");
            assert_eq!(selector.matches(&b), on_b, "{text} on b");
        }
        let mixed = Selector::parse("team=a,tier!=db").unwrap();
        assert_eq!(mixed.equalities(), labels(&[("team", "a")]));
        assert!(!mixed.is_only_equalities());
    }

    #[test]
    fn invalid_selectors_are_errors() {
        // An empty value is valid: the label is present and empty.
        assert!(Selector::parse("team=")
            .unwrap()
            .matches(&labels(&[("team", "")])));
        for text in [
            "",
            "team in (a",
            "team in a,b",
            "team=a,",
            "=a",
            "team in ()",
            "a b c",
            "team)=a",
            "!",
            "te am",
        ] {
            let error = Selector::parse(text).unwrap_err().to_string();
            assert!(error.starts_with("invalid selector"), "{text:?}: {error}");
        }
    }
}
