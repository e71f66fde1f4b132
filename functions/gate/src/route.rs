//! Path globs of routes, and the original path as the gate compares it.
//!
//! A glob is split at `/` into segments. A segment `**` matches any number of segments (none
//! included); a segment `*` matches exactly one non-empty segment; any other `*` matches any run
//! of characters within its segment (`/v1/*.json`). Everything else matches itself, exactly.
//!
//! The original path is normalised before it is compared, so that a path the upstream reads as
//! another cannot slip past a route: percent-encoded unreserved characters are decoded (`%61` is
//! `a`), and a path that still has a dot segment (`.`, `..`), an encoded `/` or `\`, a backslash or
//! a character outside RFC 3986's path set is refused outright.

/// A compiled route path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PathGlob {
    pattern: String,
    segments: Vec<Segment>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Segment {
    /// `**`
    Any,
    /// `*`
    One,
    /// Literal text, possibly with `*` wildcards inside.
    Text { text: String, wildcard: bool },
}

impl PathGlob {
    /// A route's `path`: starts with `/`, at most 1024 characters, printable ASCII without space,
    /// `?` or `#`; `**` only as a whole segment.
    pub fn new(pattern: &str) -> Result<PathGlob, &'static str> {
        if !pattern.starts_with('/') {
            return Err("must start with /");
        }
        if pattern.len() > 1024 {
            return Err("must be at most 1024 characters");
        }
        if !pattern
            .bytes()
            .all(|b| b.is_ascii_graphic() && b != b'?' && b != b'#')
        {
            return Err("may contain only printable ASCII without spaces, ? or #");
        }
        let mut segments = Vec::new();
        for seg in pattern[1..].split('/') {
            segments.push(match seg {
                "**" => Segment::Any,
                "*" => Segment::One,
                s if s.contains("**") => return Err("may use ** only as a whole segment"),
                s => Segment::Text {
                    text: s.to_owned(),
                    wildcard: s.contains('*'),
                },
            });
        }
        Ok(PathGlob {
            pattern: pattern.to_owned(),
            segments,
        })
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Does the (normalised, [`normalize_path`]) path match?
    pub fn matches(&self, path: &str) -> bool {
        let Some(rest) = path.strip_prefix('/') else {
            return false;
        };
        let parts: Vec<&str> = rest.split('/').collect();
        match_segments(&self.segments, &parts)
    }
}

fn match_segments(globs: &[Segment], parts: &[&str]) -> bool {
    match globs.split_first() {
        None => parts.is_empty(),
        Some((Segment::Any, rest)) => {
            // Zero or more segments.
            (0..=parts.len()).any(|skip| match_segments(rest, &parts[skip..]))
        }
        Some((g, rest)) => match parts.split_first() {
            Some((p, more)) => segment_matches(g, p) && match_segments(rest, more),
            None => false,
        },
    }
}

fn segment_matches(g: &Segment, part: &str) -> bool {
    match g {
        Segment::Any => true,
        Segment::One => !part.is_empty(),
        Segment::Text {
            text,
            wildcard: false,
        } => text == part,
        Segment::Text { text, .. } => wildcard_match(text.as_bytes(), part.as_bytes()),
    }
}

/// `*` matches any run of bytes (the caller keeps to one segment); linear-time with one
/// backtrack point, like txbridge-jose's workload globs.
fn wildcard_match(p: &[u8], s: &[u8]) -> bool {
    let (mut pi, mut si) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while si < s.len() {
        if pi < p.len() && p[pi] == b'*' {
            star = Some((pi, si));
            pi += 1;
        } else if pi < p.len() && p[pi] == s[si] {
            pi += 1;
            si += 1;
        } else if let Some((sp, ss)) = star {
            pi = sp + 1;
            si = ss + 1;
            star = Some((sp, ss + 1));
        } else {
            return false;
        }
    }
    while pi < p.len() && p[pi] == b'*' {
        pi += 1;
    }
    pi == p.len()
}

/// Why an original path was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathError {
    /// Not an absolute path (`/...`).
    NotAbsolute,
    /// A dot segment, an encoded `/` or `\`, a backslash, a bad escape or a character outside
    /// the path set: the upstream might read it as another path.
    Ambiguous,
    /// Longer than 8 KiB.
    TooLong,
}

impl PathError {
    pub fn as_str(self) -> &'static str {
        match self {
            PathError::NotAbsolute => "the original path is not absolute",
            PathError::Ambiguous => "the original path is not in normal form",
            PathError::TooLong => "the original path is too long",
        }
    }
}

/// The original URI (or path) as routes see it: the query dropped, unreserved characters
/// decoded, and refused when it could mean another path upstream (module docs).
pub fn normalize_path(uri: &str) -> Result<String, PathError> {
    let path = uri.split(['?', '#']).next().unwrap_or_default();
    if path.len() > 8192 {
        return Err(PathError::TooLong);
    }
    if !path.starts_with('/') {
        return Err(PathError::NotAbsolute);
    }
    let bytes = path.as_bytes();
    let mut out = String::with_capacity(path.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b == b'%' {
            let hex = |c: u8| (c as char).to_digit(16);
            let (Some(h), Some(l)) = (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) else {
                return Err(PathError::Ambiguous);
            };
            let c = (h * 16 + l) as u8;
            if c.is_ascii_alphanumeric() || b"-._~".contains(&c) {
                out.push(c as char);
            } else if c == b'/' || c == b'\\' {
                return Err(PathError::Ambiguous);
            } else {
                // Kept encoded, upper-case hex (RFC 3986 §6.2.2.1).
                out.push('%');
                out.push_str(&format!("{c:02X}"));
            }
            i += 3;
            continue;
        }
        // RFC 3986 pchar and '/': unreserved, sub-delims, ':' and '@'.
        if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=:@/".contains(&b) {
            out.push(b as char);
            i += 1;
            continue;
        }
        return Err(PathError::Ambiguous);
    }
    if out.split('/').any(|seg| seg == "." || seg == "..") {
        return Err(PathError::Ambiguous);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn globs_follow_the_segment_rules() {
        let cases: &[(&str, &str, bool)] = &[
            ("/orders/*", "/orders/42", true),
            ("/orders/*", "/orders/42/items", false),
            ("/orders/*", "/orders/", false),
            ("/orders/*", "/orders", false),
            ("/orders/**", "/orders", true),
            ("/orders/**", "/orders/", true),
            ("/orders/**", "/orders/42/items/7", true),
            ("/orders/**", "/ordersx/1", false),
            ("/orders/*/items", "/orders/42/items", true),
            ("/orders/*/items", "/orders/42/43/items", false),
            ("/orders/**/items", "/orders/items", true),
            ("/orders/**/items", "/orders/1/2/items", true),
            ("/orders/**/items", "/orders/1/2/item", false),
            ("/v1/*.json", "/v1/a.json", true),
            ("/v1/*.json", "/v1/a/b.json", false),
            ("/v1/a*c", "/v1/abbc", true),
            ("/v1/a*c", "/v1/abbd", false),
            ("/**", "/", true),
            ("/**", "/anything/at/all", true),
            ("/", "/", true),
            ("/", "/x", false),
            ("/health", "/health", true),
            ("/health", "/Health", false),
            ("/health", "/health/", false),
        ];
        for (glob, path, want) in cases {
            let g = PathGlob::new(glob).unwrap();
            assert_eq!(g.matches(path), *want, "{glob} vs {path}");
        }
    }

    #[test]
    fn bad_globs_are_refused() {
        for bad in ["orders", "/a b", "/a?x", "/a/**x", "/a/x**", ""] {
            assert!(PathGlob::new(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn original_paths_are_normalised_or_refused() {
        let ok: &[(&str, &str)] = &[
            ("/orders/42?x=1", "/orders/42"),
            ("/orders/42#frag", "/orders/42"),
            ("/%61dmin/%7Ex", "/admin/~x"),
            ("/a%20b", "/a%20b"),
            ("/a%3ab", "/a%3Ab"),
            ("/", "/"),
            ("/a;b=c/@:", "/a;b=c/@:"),
        ];
        for (raw, want) in ok {
            assert_eq!(normalize_path(raw).as_deref(), Ok(*want), "{raw}");
        }
        let bad: &[(&str, PathError)] = &[
            ("orders", PathError::NotAbsolute),
            ("", PathError::NotAbsolute),
            ("http://x/a", PathError::NotAbsolute),
            ("/a/../admin", PathError::Ambiguous),
            ("/a/./b", PathError::Ambiguous),
            ("/a/%2e%2E/admin", PathError::Ambiguous),
            ("/a/.%2e", PathError::Ambiguous),
            ("/a%2fb", PathError::Ambiguous),
            ("/a%5Cb", PathError::Ambiguous),
            ("/a\\b", PathError::Ambiguous),
            ("/a b", PathError::Ambiguous),
            ("/a%zz", PathError::Ambiguous),
            ("/a%4", PathError::Ambiguous),
            ("/a\"b", PathError::Ambiguous),
        ];
        for (raw, want) in bad {
            assert_eq!(normalize_path(raw), Err(*want), "{raw}");
        }
        assert_eq!(
            normalize_path(&format!("/{}", "a".repeat(9000))),
            Err(PathError::TooLong)
        );
    }
}
