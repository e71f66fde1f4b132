//! Config errors: the key path, the rule broken and the line, never a value. A private key
//! pasted into the wrong field must not reach a log, so nothing a config holds is quoted: not
//! the parser's excerpt of the offending line, not serde's "invalid type: string \"...\"".

use std::fmt;

use toml::Spanned;
use toml::de::{DeTable, DeValue};

/// One thing wrong with a config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigProblem {
    /// The key path (`clusters[1].workload_id`); empty for the document as a whole.
    pub path: String,
    /// The rule broken, in words. Never a value from the config.
    pub reason: String,
    /// The 1-based line of the key, when the config came as text.
    pub line: Option<usize>,
}

impl fmt::Display for ConfigProblem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.path.is_empty(), self.line) {
            (true, None) => write!(f, "{}", self.reason),
            (true, Some(line)) => write!(f, "{} (line {line})", self.reason),
            (false, None) => write!(f, "{} {}", self.path, self.reason),
            (false, Some(line)) => write!(f, "{} {} (line {line})", self.path, self.reason),
        }
    }
}

/// Why a config was rejected: every problem found, each with its key path and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    problems: Vec<ConfigProblem>,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("config: ")?;
        for (i, p) in self.problems.iter().enumerate() {
            if i > 0 {
                f.write_str("; ")?;
            }
            write!(f, "{p}")?;
        }
        Ok(())
    }
}

impl std::error::Error for ConfigError {}

impl ConfigError {
    /// Every problem, in the order of the document.
    pub fn problems(&self) -> &[ConfigProblem] {
        &self.problems
    }

    pub(crate) fn new(problems: Vec<ConfigProblem>) -> Self {
        ConfigError { problems }
    }

    /// One problem at `path`.
    pub(crate) fn at(path: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::new(vec![ConfigProblem {
            path: path.into(),
            reason: reason.into(),
            line: None,
        }])
    }

    /// Fills in the lines of the problems' key paths from the document they came from.
    pub(crate) fn locate(mut self, doc: &Spanned<DeTable<'_>>, text: &str) -> Self {
        for p in &mut self.problems {
            if p.line.is_none() {
                p.line = span_of(doc, &p.path).map(|offset| line_of(text, offset));
            }
        }
        self
    }
}

/// The problems found while compiling a config; the compile goes on after each, so that a
/// checker can report them all at once.
#[derive(Debug, Default)]
pub(crate) struct Problems(Vec<ConfigProblem>);

impl Problems {
    pub(crate) fn push(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.0.push(ConfigProblem {
            path: path.into(),
            reason: reason.into(),
            line: None,
        });
    }

    /// Keeps the error of `result`, if any; the value otherwise.
    pub(crate) fn keep<T>(&mut self, result: Result<T, ConfigError>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.extend(e.problems);
                None
            }
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub(crate) fn into_error(self) -> ConfigError {
        ConfigError::new(self.0)
    }
}

/// The 1-based line of a byte offset.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(0, |t| t.bytes().filter(|b| *b == b'\n').count())
        + 1
}

/// A syntax error of the TOML itself: the parser's description (a fixed phrase and the tokens
/// it expected, never the offending text) and its line.
pub(crate) fn syntax(text: &str, e: &toml::de::Error) -> ConfigError {
    ConfigError::new(vec![ConfigProblem {
        path: String::new(),
        reason: format!("is not valid TOML: {}", e.message().trim_end()),
        line: e.span().map(|s| line_of(text, s.start)),
    }])
}

/// A deserialization error (a key of the wrong type, an unknown or missing key): the key path
/// found at the error's position, and serde's message with every value left out.
pub(crate) fn shape(doc: &Spanned<DeTable<'_>>, text: &str, e: &toml::de::Error) -> ConfigError {
    let offset = e.span().map(|s| s.start);
    let path = offset.map(|o| path_at(doc, o)).unwrap_or_default();
    ConfigError::new(vec![ConfigProblem {
        path,
        reason: sanitize(e.message()),
        line: offset.map(|o| line_of(text, o)),
    }])
}

/// serde's messages, reduced to what names no value: "invalid type: string \"<value>\",
/// expected ..." and its kin become a fixed phrase; "missing field `x`" and "unknown field `x`"
/// name keys, which the path shows anyway.
fn sanitize(message: &str) -> String {
    let m = message.trim();
    if let Some(rest) = m.strip_prefix("missing field `")
        && let Some(field) = rest.split('`').next()
        && field.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
    {
        return format!("is missing the required key `{field}`");
    }
    if m.starts_with("unknown field") {
        return "is an unknown field: not a txbridge config key".into();
    }
    if m.starts_with("invalid type") {
        return "has the wrong type".into();
    }
    if m.starts_with("invalid length") {
        return "has the wrong number of entries".into();
    }
    if m.starts_with("duplicate key") || m.starts_with("duplicate field") {
        return "is given more than once".into();
    }
    "has an invalid value".into()
}

/// The span start of a key path (`a.b[2].c`) in the document: the key's own position.
fn span_of(doc: &Spanned<DeTable<'_>>, path: &str) -> Option<usize> {
    let mut table = doc.get_ref();
    let mut at = None;
    let mut segments = path.split('.').peekable();
    while let Some(segment) = segments.next() {
        let (key, index) = match segment.split_once('[') {
            Some((k, i)) => (k, i.trim_end_matches(']').parse::<usize>().ok()),
            None => (segment, None),
        };
        let (k, v) = table.iter().find(|(k, _)| k.get_ref() == key)?;
        at = Some(k.span().start);
        let mut value = v;
        if let Some(i) = index {
            let DeValue::Array(items) = value.get_ref() else {
                return at;
            };
            let Some(item) = items.get(i) else {
                return at;
            };
            value = item;
            at = Some(item.span().start);
        }
        match (value.get_ref(), segments.peek()) {
            (DeValue::Table(t), Some(_)) => table = t,
            _ => return at,
        }
    }
    at
}

/// The key path of the deepest key or value that holds `offset`. Every table is searched: a
/// table opened by a `[header]` does not span its own keys.
fn path_at(doc: &Spanned<DeTable<'_>>, offset: usize) -> String {
    find_in_table(doc.get_ref(), offset, "").unwrap_or_default()
}

fn find_in_table(table: &DeTable<'_>, offset: usize, prefix: &str) -> Option<String> {
    for (k, v) in table.iter() {
        let path = if prefix.is_empty() {
            k.get_ref().to_string()
        } else {
            format!("{prefix}.{}", k.get_ref())
        };
        if let Some(found) = find_in_value(v, offset, &path) {
            return Some(found);
        }
        if k.span().contains(&offset) {
            return Some(path);
        }
    }
    None
}

fn find_in_value(v: &Spanned<DeValue<'_>>, offset: usize, path: &str) -> Option<String> {
    let inner = match v.get_ref() {
        DeValue::Table(t) => find_in_table(t, offset, path),
        DeValue::Array(items) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| find_in_value(item, offset, &format!("{path}[{i}]"))),
        _ => None,
    };
    inner.or_else(|| v.span().contains(&offset).then(|| path.to_owned()))
}
