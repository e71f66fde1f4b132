//! Trust policy: which cluster/namespace/service account may get which scopes. Default deny.

use std::collections::BTreeMap;

use crate::identity::Subject;

/// A compiled name pattern: exact, or with `*` wildcards. A `*` matches any run of characters
/// except `/` and `:`, so a glob never reaches into another segment of a SPIFFE id
/// (`spiffe://td/ns/NS/sa/SA`) or of the default `cluster:namespace:sa` workload id:
/// `checkout-worker-*` does not match `checkout-worker-eu:payments:admin`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Glob {
    pattern: String,
    wildcard: bool,
}

/// Characters a `*` never matches: segment separators of workload ids.
const SEPARATORS: [char; 2] = ['/', ':'];

impl Glob {
    /// Compiles a pattern of Kubernetes name characters and `*`.
    pub fn compile(pattern: &str) -> Result<Glob, &'static str> {
        if pattern.is_empty() || pattern.len() > 253 {
            return Err("must be 1-253 characters");
        }
        if !pattern
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.*".contains(&b))
        {
            return Err("may contain only lowercase letters, digits, '-', '_', '.' and '*'");
        }
        Ok(Glob::unchecked(pattern))
    }

    /// A glob of any characters (the caller checked them); `*` is the wildcard.
    pub(crate) fn unchecked(pattern: &str) -> Glob {
        Glob {
            pattern: pattern.to_owned(),
            wildcard: pattern.contains('*'),
        }
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

/// One compiled `[[policies]]` entry.
#[derive(Debug, Clone)]
pub struct Policy {
    /// Names the policy in logs, metrics and explanations (`policies[N]` when unset).
    pub(crate) id: String,
    pub(crate) cluster: Glob,
    pub(crate) namespace: Glob,
    pub(crate) service_account: Glob,
    pub(crate) scopes: Vec<String>,
    pub(crate) tctx_constraints: BTreeMap<String, String>,
    /// Extra `req_wl` names the subjects of this policy may claim (globs).
    pub(crate) workloads: Vec<Glob>,
}

impl Policy {
    fn matches(&self, subject: &Subject) -> bool {
        self.cluster.matches(&subject.cluster)
            && self.namespace.matches(&subject.namespace)
            && self.service_account.matches(&subject.service_account)
    }

    fn constraints_hold(
        &self,
        subject: &Subject,
        details: &serde_json::Map<String, serde_json::Value>,
    ) -> bool {
        self.tctx_constraints.iter().all(|(key, want)| {
            let want = match want.as_str() {
                "${cluster}" => subject.cluster.as_str(),
                "${namespace}" => subject.namespace.as_str(),
                "${service_account}" => subject.service_account.as_str(),
                literal => literal,
            };
            details.get(key).and_then(|v| v.as_str()) == Some(want)
        })
    }
}

/// The outcome of evaluating the policy for a subject.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// No policy matches the subject (or none whose tctx constraints hold).
    Deny,
    /// The union of the matching policies' scope ceilings, in policy order.
    Allow { ceiling: Vec<String> },
}

/// The policies that apply to a subject with these `request_details`: those matching it whose
/// tctx constraints hold.
pub fn applicable<'a>(
    policies: &'a [Policy],
    subject: &'a Subject,
    details: &'a serde_json::Map<String, serde_json::Value>,
) -> impl Iterator<Item = &'a Policy> + 'a {
    policies.iter().enumerate().filter_map(move |(i, policy)| {
        if !policy.matches(subject) {
            return None;
        }
        if !policy.constraints_hold(subject, details) {
            tracing::debug!(
                policy = i,
                "policy matched but its tctx constraints do not hold"
            );
            return None;
        }
        Some(policy)
    })
}

/// The `workloads` globs of the policies that apply (see [`applicable`]).
pub fn workload_globs<'a>(
    policies: &'a [Policy],
    subject: &'a Subject,
    details: &'a serde_json::Map<String, serde_json::Value>,
) -> impl Iterator<Item = &'a Glob> + 'a {
    applicable(policies, subject, details).flat_map(|p| p.workloads.iter())
}

/// Evaluates the policies for a verified subject and its `request_details`.
pub fn evaluate(
    policies: &[Policy],
    subject: &Subject,
    details: &serde_json::Map<String, serde_json::Value>,
) -> Decision {
    let mut matched = false;
    let mut ceiling: Vec<String> = Vec::new();
    for policy in applicable(policies, subject, details) {
        matched = true;
        for s in &policy.scopes {
            if !ceiling.contains(s) {
                ceiling.push(s.clone());
            }
        }
    }
    if matched {
        Decision::Allow { ceiling }
    } else {
        tracing::debug!(
            cluster = %subject.cluster,
            namespace = %subject.namespace,
            service_account = %subject.service_account,
            "no policy matches the subject"
        );
        Decision::Deny
    }
}

/// Grants the requested scopes if all lie within the ceiling; no request means the whole
/// ceiling. Returns None when something beyond the ceiling was asked for.
pub fn grant(ceiling: &[String], requested: Option<&[String]>) -> Option<Vec<String>> {
    match requested {
        None => Some(ceiling.to_vec()),
        Some(req) => req
            .iter()
            .all(|s| ceiling.contains(s))
            .then(|| req.to_vec()),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
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
        ];
        for (pattern, name, want) in cases {
            assert_eq!(
                Glob::compile(pattern).unwrap().matches(name),
                *want,
                "{pattern} vs {name}"
            );
        }
        // Workload globs: `*` stops at `/` and `:` (segments of SPIFFE and default ids).
        let workload_cases: &[(&str, &str, bool)] = &[
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
        for (pattern, name, want) in workload_cases {
            assert_eq!(
                Glob::unchecked(pattern).matches(name),
                *want,
                "{pattern} vs {name}"
            );
        }
        for bad in ["", "Team", "ns/x", "a b", "?"] {
            assert!(Glob::compile(bad).is_err(), "{bad:?} must not compile");
        }
    }

    fn subject(cluster: &str, ns: &str, sa: &str) -> Subject {
        Subject {
            cluster: cluster.into(),
            namespace: ns.into(),
            service_account: sa.into(),
            k8s_sub: format!("system:serviceaccount:{ns}:{sa}"),
            exp: 0,
            workload_id: format!("{cluster}:{ns}:{sa}"),
        }
    }

    fn policy(c: &str, ns: &str, sa: &str, scopes: &[&str]) -> Policy {
        Policy {
            id: format!("{c}/{ns}/{sa}"),
            cluster: Glob::compile(c).unwrap(),
            namespace: Glob::compile(ns).unwrap(),
            service_account: Glob::compile(sa).unwrap(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            tctx_constraints: BTreeMap::new(),
            workloads: Vec::new(),
        }
    }

    #[test]
    fn default_deny_and_union_of_ceilings() {
        let policies = vec![
            policy(
                "prod",
                "payments",
                "checkout",
                &["orders:read", "orders:write"],
            ),
            policy("*", "payments", "*", &["orders:read", "audit:write"]),
            policy("dev", "team-*", "*", &["reports:read"]),
        ];
        let none = serde_json::Map::new();
        let table: &[(&str, Subject, Decision)] = &[
            (
                "exact + wildcard union",
                subject("prod", "payments", "checkout"),
                Decision::Allow {
                    ceiling: vec![
                        "orders:read".into(),
                        "orders:write".into(),
                        "audit:write".into(),
                    ],
                },
            ),
            (
                "wildcard only",
                subject("dev", "payments", "web"),
                Decision::Allow {
                    ceiling: vec!["orders:read".into(), "audit:write".into()],
                },
            ),
            (
                "glob namespace",
                subject("dev", "team-x", "job"),
                Decision::Allow {
                    ceiling: vec!["reports:read".into()],
                },
            ),
            (
                "other cluster's glob",
                subject("prod", "team-x", "job"),
                Decision::Deny,
            ),
            (
                "unknown namespace",
                subject("prod", "default", "checkout"),
                Decision::Deny,
            ),
        ];
        for (name, s, want) in table {
            assert_eq!(&evaluate(&policies, s, &none), want, "{name}");
        }
        assert_eq!(
            evaluate(&[], &subject("a", "b", "c"), &none),
            Decision::Deny
        );
    }

    #[test]
    fn tctx_constraints() {
        let mut p = policy("*", "*", "*", &["x"]);
        p.tctx_constraints
            .insert("namespace".into(), "${namespace}".into());
        p.tctx_constraints.insert("kind".into(), "task".into());
        let s = subject("c", "default", "sa");
        let ok: serde_json::Map<_, _> =
            serde_json::from_str(r#"{"namespace":"default","kind":"task"}"#).unwrap();
        let other_ns: serde_json::Map<_, _> =
            serde_json::from_str(r#"{"namespace":"kube-system","kind":"task"}"#).unwrap();
        let missing: serde_json::Map<_, _> = serde_json::from_str(r#"{"kind":"task"}"#).unwrap();
        assert!(matches!(
            evaluate(std::slice::from_ref(&p), &s, &ok),
            Decision::Allow { .. }
        ));
        assert_eq!(
            evaluate(std::slice::from_ref(&p), &s, &other_ns),
            Decision::Deny
        );
        assert_eq!(
            evaluate(std::slice::from_ref(&p), &s, &missing),
            Decision::Deny
        );
    }

    #[test]
    fn scope_grant() {
        let ceiling = vec!["a".to_string(), "b".to_string()];
        assert_eq!(grant(&ceiling, None), Some(ceiling.clone()));
        assert_eq!(grant(&ceiling, Some(&["b".into()])), Some(vec!["b".into()]));
        assert_eq!(grant(&ceiling, Some(&["a".into(), "c".into()])), None);
        assert_eq!(grant(&[], Some(&["a".into()])), None);
    }
}
