//! Trust policy: which cluster/namespace/service account may get which scopes. Default deny.

use std::collections::BTreeMap;

use crate::identity::Subject;

pub use txbridge_jose::Glob;

/// Compiles a policy's cluster, namespace or service-account pattern: Kubernetes name
/// characters and `*`.
pub fn compile_name_glob(pattern: &str) -> Result<Glob, &'static str> {
    if pattern.is_empty() || pattern.len() > 253 {
        return Err("must be 1-253 characters");
    }
    if !pattern
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"-_.*".contains(&b))
    {
        return Err("may contain only lowercase letters, digits, '-', '_', '.' and '*'");
    }
    Ok(Glob::new(pattern))
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

/// What the policies decided for a subject: the policies that apply (globs match, tctx
/// constraints hold), scanned once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<'p> {
    /// The union of the applying policies' scope ceilings, in policy order.
    pub ceiling: Vec<String>,
    /// The `workloads` globs of the applying policies: names the subject may claim as `req_wl`.
    pub workloads: Vec<&'p Glob>,
    /// The ids of the applying policies, in order; the first names the decision in logs and
    /// metrics.
    pub policies: Vec<&'p str>,
}

impl Decision<'_> {
    /// The policy that names the decision.
    pub fn policy(&self) -> &str {
        self.policies.first().copied().unwrap_or_default()
    }
}

/// Decides for a verified subject and its `request_details`: `None` (default deny) when no
/// policy applies.
pub fn decide<'p>(
    policies: &'p [Policy],
    subject: &Subject,
    details: &serde_json::Map<String, serde_json::Value>,
) -> Option<Decision<'p>> {
    let mut decision: Option<Decision<'p>> = None;
    for policy in policies {
        if !policy.matches(subject) {
            continue;
        }
        if !policy.constraints_hold(subject, details) {
            tracing::debug!(
                policy = %policy.id,
                "policy matched but its tctx constraints do not hold"
            );
            continue;
        }
        let d = decision.get_or_insert_with(|| Decision {
            ceiling: Vec::new(),
            workloads: Vec::new(),
            policies: Vec::new(),
        });
        for s in &policy.scopes {
            if !d.ceiling.contains(s) {
                d.ceiling.push(s.clone());
            }
        }
        d.workloads.extend(policy.workloads.iter());
        d.policies.push(&policy.id);
    }
    if decision.is_none() {
        tracing::debug!(
            cluster = %subject.cluster,
            namespace = %subject.namespace,
            service_account = %subject.service_account,
            "no policy matches the subject"
        );
    }
    decision
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
    fn name_globs() {
        assert!(compile_name_glob("team-*").unwrap().matches("team-a"));
        for bad in ["", "Team", "ns/x", "a b", "?", "a:b"] {
            assert!(compile_name_glob(bad).is_err(), "{bad:?} must not compile");
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
            cluster: compile_name_glob(c).unwrap(),
            namespace: compile_name_glob(ns).unwrap(),
            service_account: compile_name_glob(sa).unwrap(),
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
        let ceiling = |s: &Subject| decide(&policies, s, &none).map(|d| d.ceiling);
        let table: &[(&str, Subject, Option<Vec<&str>>)] = &[
            (
                "exact + wildcard union",
                subject("prod", "payments", "checkout"),
                Some(vec!["orders:read", "orders:write", "audit:write"]),
            ),
            (
                "wildcard only",
                subject("dev", "payments", "web"),
                Some(vec!["orders:read", "audit:write"]),
            ),
            (
                "glob namespace",
                subject("dev", "team-x", "job"),
                Some(vec!["reports:read"]),
            ),
            (
                "other cluster's glob",
                subject("prod", "team-x", "job"),
                None,
            ),
            (
                "unknown namespace",
                subject("prod", "default", "checkout"),
                None,
            ),
        ];
        for (name, s, want) in table {
            let want = want
                .as_ref()
                .map(|w| w.iter().map(|s| s.to_string()).collect());
            assert_eq!(ceiling(s), want, "{name}");
        }
        let both = decide(&policies, &subject("prod", "payments", "checkout"), &none).unwrap();
        assert_eq!(
            both.policies,
            vec!["prod/payments/checkout", "*/payments/*"]
        );
        assert_eq!(both.policy(), "prod/payments/checkout");
        assert_eq!(decide(&[], &subject("a", "b", "c"), &none), None);
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
        assert!(decide(std::slice::from_ref(&p), &s, &ok).is_some());
        assert_eq!(decide(std::slice::from_ref(&p), &s, &other_ns), None);
        assert_eq!(decide(std::slice::from_ref(&p), &s, &missing), None);
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
