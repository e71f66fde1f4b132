//! Name globs: exact, or with `*` wildcards that never match `/` or `:`, so a glob never reaches
//! into another segment of a SPIFFE id (`spiffe://td/ns/NS/sa/SA`) or of the default
//! `cluster:namespace:service_account` workload id: `checkout-worker-*` does not match
//! `checkout-worker-eu:payments:admin`. Used for trust-policy names and `workloads` in the
//! exchange, and for workload requirements on the consumer side (verifier, gate).

/// Characters a `*` never matches: segment separators of workload ids.
const SEPARATORS: [char; 2] = ['/', ':'];

/// Longest workload name or workload glob.
pub const MAX_WORKLOAD_LEN: usize = 256;

/// A compiled glob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
    wildcard: bool,
}

/// Workload names and globs: printable ASCII without space or comma (a comma separates the
/// entries of a replaced token's `req_wl` call chain).
pub fn valid_workload_byte(b: u8) -> bool {
    (0x21..=0x7e).contains(&b) && b != b','
}

impl Glob {
    /// A glob of any characters; `*` is the wildcard. The caller checked the character set.
    pub fn new(pattern: &str) -> Glob {
        Glob {
            pattern: pattern.to_owned(),
            wildcard: pattern.contains('*'),
        }
    }

    /// A `workloads` glob: 1-256 printable ASCII characters without space or comma.
    pub fn workload(pattern: &str) -> Result<Glob, &'static str> {
        if pattern.is_empty() || pattern.len() > MAX_WORKLOAD_LEN {
            return Err("must be 1-256 characters");
        }
        if !pattern.bytes().all(valid_workload_byte) {
            return Err("may contain only printable ASCII characters without spaces or commas");
        }
        Ok(Glob::new(pattern))
    }

    /// The pattern as written.
    pub fn as_str(&self) -> &str {
        &self.pattern
    }

    /// Does `name` match? Separators (`/`, `:`) must line up one for one; within a segment `*`
    /// matches any run of characters. Linear in the lengths of pattern and name.
    pub fn matches(&self, name: &str) -> bool {
        if !self.wildcard {
            return self.pattern == name;
        }
        let separators = |s: &str| {
            s.chars()
                .filter(|c| SEPARATORS.contains(c))
                .collect::<Vec<_>>()
        };
        if separators(&self.pattern) != separators(name) {
            return false;
        }
        self.pattern
            .split(SEPARATORS)
            .zip(name.split(SEPARATORS))
            .all(|(p, n)| segment_matches(p, n))
    }
}

/// A glob segment (no separators) against a name segment: `*` matches any run of characters.
/// Each literal part is matched at its leftmost possible place, which is correct for globs whose
/// only wildcard is `*`.
fn segment_matches(pattern: &str, name: &str) -> bool {
    let mut parts = pattern.split('*');
    let first = parts.next().unwrap_or_default();
    let Some(mut rest) = name.strip_prefix(first) else {
        return false;
    };
    let parts: Vec<&str> = parts.collect();
    let Some((last, middle)) = parts.split_last() else {
        return rest.is_empty();
    };
    for part in middle {
        match rest.find(part) {
            Some(pos) => rest = &rest[pos + part.len()..],
            None => return false,
        }
    }
    rest.len() >= last.len() && rest.ends_with(last)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs() {
        let cases: &[(&str, &str, bool)] = &[
            ("checkout", "checkout", true),
            ("checkout", "checkouts", false),
            ("*", "anything", true),
            ("team-*", "team-a", true),
            ("team-*", "team-", true),
            ("team-*", "teams", false),
            ("*-prod", "api-prod", true),
            ("*-prod", "api-prod-2", false),
            ("a*b*c", "abc", true),
            ("a*b*c", "axxbyyc", true),
            ("a*b*c", "axxcyyb", false),
            ("a*a", "a", false),
            ("a*a", "aa", true),
            // `*` stops at `/` and `:` (segments of SPIFFE and default workload ids).
            ("checkout-worker-*", "checkout-worker-eu", true),
            (
                "checkout-worker-*",
                "checkout-worker-eu:payments:admin",
                false,
            ),
            ("checkout-worker-*", "checkout-worker-eu/x", false),
            ("prod:payments:*", "prod:payments:checkout", true),
            ("prod:payments:*", "prod:payments:checkout:x", false),
            ("prod:*:checkout", "prod:payments:checkout", true),
            ("prod:*:checkout", "prod:a:b:checkout", false),
            ("*", "a:b", false),
            ("*:*:*", "a:b:c", true),
            ("*:*:*", "::", true),
            (
                "spiffe://example.test/ns/payments/sa/*",
                "spiffe://example.test/ns/payments/sa/checkout",
                true,
            ),
            (
                "spiffe://example.test/ns/*/sa/checkout",
                "spiffe://example.test/ns/payments/sa/checkout",
                true,
            ),
            (
                "spiffe://example.test/ns/payments/sa/*",
                "spiffe://example.test/ns/payments/sa/x/y",
                false,
            ),
            (
                "spiffe://example.test/*",
                "spiffe://example.test/ns/payments/sa/checkout",
                false,
            ),
            ("spiffe://*/ns/a/sa/b", "spiffe://evil.test/ns/a/sa/b", true),
            (
                "spiffe://*/ns/a/sa/b",
                "spiffe://evil.test/x/ns/a/sa/b",
                false,
            ),
            ("web-*-x", "web-a:b-x", false),
            ("a*b", "a:b", false),
            ("exact:name", "exact:name", true),
            ("exact:name", "exact:other", false),
        ];
        for (pattern, name, want) in cases {
            assert_eq!(
                Glob::new(pattern).matches(name),
                *want,
                "{pattern} vs {name}"
            );
        }
    }

    #[test]
    fn workload_globs_are_checked() {
        assert!(Glob::workload("spiffe://x/ns/*/sa/*").is_ok());
        for bad in ["", "a b", "a,b", "é", &"x".repeat(257)] {
            assert!(Glob::workload(bad).is_err(), "{bad:?}");
        }
    }

    /// A hostile name against a glob of many stars costs time linear in both.
    #[test]
    fn cost_is_linear() {
        let glob = Glob::new(&"a*".repeat(100));
        let name = "a".repeat(100_000) + "b";
        let started = std::time::Instant::now();
        assert!(glob.matches(&name) || !glob.matches(&name));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
    }
}
