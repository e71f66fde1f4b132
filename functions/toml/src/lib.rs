//! Strict TOML config documents: typed parsing, and errors that name the key path, the rule
//! broken and the line, never a value. A private key pasted into the wrong field must not reach
//! a log, so nothing a config holds is quoted: not the parser's excerpt of the offending line,
//! not serde's "invalid type: string \"...\"".
#![forbid(unsafe_code)]

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

    pub fn new(problems: Vec<ConfigProblem>) -> Self {
        ConfigError { problems }
    }

    /// One problem at `path`.
    pub fn at(path: impl Into<String>, reason: impl Into<String>) -> Self {
        ConfigError::new(vec![ConfigProblem {
            path: path.into(),
            reason: reason.into(),
            line: None,
        }])
    }

    /// Fills in the lines of the problems' key paths from the document they came from.
    pub fn locate(mut self, doc: &Document<'_>) -> Self {
        for p in &mut self.problems {
            if p.line.is_none() {
                p.line = span_of(&doc.table, &p.path).map(|offset| line_of(doc.text, offset));
            }
        }
        self
    }
}

/// The problems found while compiling a config; the compile goes on after each, so that a
/// checker can report them all at once.
#[derive(Debug, Default)]
pub struct Problems(Vec<ConfigProblem>);

impl Problems {
    pub fn push(&mut self, path: impl Into<String>, reason: impl Into<String>) {
        self.0.push(ConfigProblem {
            path: path.into(),
            reason: reason.into(),
            line: None,
        });
    }

    /// Keeps the error of `result`, if any; the value otherwise.
    pub fn keep<T>(&mut self, result: Result<T, ConfigError>) -> Option<T> {
        match result {
            Ok(v) => Some(v),
            Err(e) => {
                self.0.extend(e.problems);
                None
            }
        }
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn into_error(self) -> ConfigError {
        ConfigError::new(self.0)
    }
}

/// A parsed TOML document, kept to locate key paths of later problems.
pub struct Document<'t> {
    text: &'t str,
    table: Spanned<DeTable<'t>>,
}

impl std::fmt::Debug for Document<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Document")
    }
}

/// Parses `text` into `T` (whose serde types should deny unknown fields), keeping the document
/// to locate the key paths of problems found later ([`ConfigError::locate`]).
pub fn parse<'t, T: serde::de::DeserializeOwned>(
    text: &'t str,
) -> Result<(T, Document<'t>), ConfigError> {
    let table = DeTable::parse(text).map_err(|e| syntax(text, &e))?;
    let doc = Document { text, table };
    let value: T = toml::from_str(text).map_err(|e| shape(&doc.table, text, &e))?;
    Ok((value, doc))
}

/// The 1-based line of a byte offset.
fn line_of(text: &str, offset: usize) -> usize {
    text.get(..offset)
        .map_or(0, |t| t.bytes().filter(|b| *b == b'\n').count())
        + 1
}

/// A syntax error of the TOML itself: the parser's description (a fixed phrase and the tokens
/// it expected, never the offending text) and its line.
fn syntax(text: &str, e: &toml::de::Error) -> ConfigError {
    ConfigError::new(vec![ConfigProblem {
        path: String::new(),
        reason: format!("is not valid TOML: {}", e.message().trim_end()),
        line: e.span().map(|s| line_of(text, s.start)),
    }])
}

/// A deserialization error (a key of the wrong type, an unknown or missing key): the key path
/// found at the error's position, and serde's message with every value left out.
fn shape(doc: &Spanned<DeTable<'_>>, text: &str, e: &toml::de::Error) -> ConfigError {
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

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Doc {
        name: String,
        #[serde(default)]
        items: Vec<Item>,
    }

    #[derive(Debug, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Item {
        size: u32,
    }

    const SECRET: &str = "c2VjcmV0LXZhbHVlLXRoYXQtbXVzdC1ub3QtbGVhaw";

    fn problem(text: &str) -> ConfigProblem {
        let err = parse::<Doc>(text).unwrap_err();
        assert!(!err.to_string().contains(SECRET), "{err}");
        assert_eq!(err.problems().len(), 1, "{err}");
        err.problems()[0].clone()
    }

    #[test]
    fn shape_errors_name_path_and_line_not_the_value() {
        let p = problem(&format!(
            "name = \"x\"\n\n[[items]]\nsize = 1\n\n[[items]]\nsize = \"{SECRET}\"\n"
        ));
        assert_eq!((p.path.as_str(), p.line), ("items[1].size", Some(7)));
        assert_eq!(p.reason, "has the wrong type");
        let p = problem(&format!("name = \"x\"\nkey = \"{SECRET}\"\n"));
        assert_eq!((p.path.as_str(), p.line), ("key", Some(2)));
        assert!(p.reason.contains("unknown field"), "{}", p.reason);
        let p = problem("items = []\n");
        assert!(p.reason.contains("`name`"), "{}", p.reason);
    }

    #[test]
    fn syntax_errors_give_the_line_only() {
        let p = problem(&format!("name = \"{SECRET}\"\n[[items]\n"));
        assert_eq!((p.path.as_str(), p.line), ("", Some(2)));
        assert!(p.reason.starts_with("is not valid TOML"), "{}", p.reason);
    }

    #[test]
    fn later_problems_are_located_by_path() {
        let (_doc, d) =
            parse::<Doc>("name = \"x\"\n\n[[items]]\nsize = 1\n[[items]]\nsize = 2\n").unwrap();
        let mut p = Problems::default();
        p.push("items[1].size", "is too small");
        p.push("name", "is taken");
        p.push("", "is empty");
        let err = p.into_error().locate(&d);
        let lines: Vec<_> = err.problems().iter().map(|p| p.line).collect();
        assert_eq!(lines, vec![Some(6), Some(1), None]);
        assert_eq!(
            err.to_string(),
            "config: items[1].size is too small (line 6); name is taken (line 1); is empty"
        );
    }
}
