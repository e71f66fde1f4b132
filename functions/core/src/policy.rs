//! Trust policy: which cluster/namespace/service account may get which scopes. Default deny.

use std::collections::BTreeMap;

use std::cell::OnceCell;

use crate::condition::{Activation, Condition, Facts};
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
    /// Applies only when this is true (CEL).
    pub(crate) condition: Option<Condition>,
}

/// Why a policy does not apply to a request (debug logs, `txbridge policy explain`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Miss {
    Cluster,
    Namespace,
    ServiceAccount,
    /// A `tctx_constraints` key whose value `request_details` does not carry.
    TctxConstraint(String),
    /// The condition evaluated to false.
    ConditionFalse,
    /// The condition could not be evaluated (counts as false): why, in words that quote nothing.
    ConditionError(&'static str),
}

impl std::fmt::Display for Miss {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Miss::Cluster => f.write_str("the cluster does not match"),
            Miss::Namespace => f.write_str("the namespace does not match"),
            Miss::ServiceAccount => f.write_str("the service account does not match"),
            Miss::TctxConstraint(key) => {
                write!(f, "request_details.{key} does not carry the required value")
            }
            Miss::ConditionFalse => f.write_str("the condition is false"),
            Miss::ConditionError(why) => {
                write!(
                    f,
                    "the condition could not be evaluated ({why}): counts as false"
                )
            }
        }
    }
}

/// What the conditions of a request may read, converted for CEL on the first condition that
/// is evaluated (never when no applicable policy has one).
#[derive(Debug)]
pub struct ConditionInput<'a> {
    facts: Facts<'a>,
    activation: OnceCell<Activation<'a>>,
}

impl<'a> ConditionInput<'a> {
    pub fn new(facts: Facts<'a>) -> Self {
        ConditionInput {
            facts,
            activation: OnceCell::new(),
        }
    }

    fn activation(&self) -> &Activation<'a> {
        self.activation.get_or_init(|| Activation::new(&self.facts))
    }
}

impl Policy {
    /// The policy's id (`policies[N]` when the config gives none).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The scopes it allows.
    pub fn scopes(&self) -> &[String] {
        &self.scopes
    }

    /// Does the policy apply? Globs first, then the tctx constraints, then the condition (only
    /// evaluated when everything else matched).
    pub fn check(
        &self,
        subject: &Subject,
        details: &serde_json::Map<String, serde_json::Value>,
        input: &ConditionInput<'_>,
    ) -> Result<(), Miss> {
        if !self.cluster.matches(&subject.cluster) {
            return Err(Miss::Cluster);
        }
        if !self.namespace.matches(&subject.namespace) {
            return Err(Miss::Namespace);
        }
        if !self.service_account.matches(&subject.service_account) {
            return Err(Miss::ServiceAccount);
        }
        for (key, want) in &self.tctx_constraints {
            let want = match want.as_str() {
                "${cluster}" => subject.cluster.as_str(),
                "${namespace}" => subject.namespace.as_str(),
                "${service_account}" => subject.service_account.as_str(),
                literal => literal,
            };
            if details.get(key).and_then(|v| v.as_str()) != Some(want) {
                return Err(Miss::TctxConstraint(key.clone()));
            }
        }
        match &self.condition {
            None => Ok(()),
            Some(condition) => match condition.evaluate(input.activation()) {
                Ok(true) => Ok(()),
                Ok(false) => Err(Miss::ConditionFalse),
                Err(why) => Err(Miss::ConditionError(why)),
            },
        }
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

/// Decides for a verified subject and its `request_details` (and what its conditions read):
/// `None` (default deny) when no policy applies.
pub fn decide<'p>(
    policies: &'p [Policy],
    subject: &Subject,
    details: &serde_json::Map<String, serde_json::Value>,
    input: &ConditionInput<'_>,
) -> Option<Decision<'p>> {
    let mut decision: Option<Decision<'p>> = None;
    for policy in policies {
        match policy.check(subject, details, input) {
            Ok(()) => {}
            Err(Miss::Cluster | Miss::Namespace | Miss::ServiceAccount) => continue,
            Err(miss) => {
                tracing::debug!(policy = %policy.id, reason = %miss, "policy matched the subject but does not apply");
                continue;
            }
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
    use crate::condition::Condition;

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
            claims: None,
        }
    }

    /// What conditions read for `s` with no request details, scopes or context.
    fn input<'a>(
        s: &'a Subject,
        details: &'a serde_json::Map<String, serde_json::Value>,
    ) -> ConditionInput<'a> {
        ConditionInput::new(Facts {
            subject: s,
            claims: s.claims.as_ref(),
            scope: &[],
            request_details: details,
            request_context: details,
            workload: &s.workload_id,
            replacement: false,
            actor: None,
        })
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
            condition: None,
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
        let ceiling =
            |s: &Subject| decide(&policies, s, &none, &input(s, &none)).map(|d| d.ceiling);
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
        let prod = subject("prod", "payments", "checkout");
        let both = decide(&policies, &prod, &none, &input(&prod, &none)).unwrap();
        assert_eq!(
            both.policies,
            vec!["prod/payments/checkout", "*/payments/*"]
        );
        assert_eq!(both.policy(), "prod/payments/checkout");
        let abc = subject("a", "b", "c");
        assert_eq!(decide(&[], &abc, &none, &input(&abc, &none)), None);
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
        let one = std::slice::from_ref(&p);
        assert!(decide(one, &s, &ok, &input(&s, &ok)).is_some());
        assert_eq!(decide(one, &s, &other_ns, &input(&s, &other_ns)), None);
        assert_eq!(decide(one, &s, &missing, &input(&s, &missing)), None);
        assert_eq!(
            p.check(&s, &missing, &input(&s, &missing)),
            Err(Miss::TctxConstraint("namespace".into()))
        );
    }

    /// A condition applies the policy only when true; an evaluation error counts as false; the
    /// globs are checked first (a condition is never evaluated for a subject they exclude).
    #[test]
    fn conditions() {
        let with = |condition: &str| Policy {
            condition: Some(Condition::compile(condition).unwrap()),
            ..policy("*", "payments", "*", &["orders:read"])
        };
        let mut s = subject("prod", "payments", "checkout");
        s.claims = Some(serde_json::json!({
            "kubernetes.io": {"namespace": "payments", "pod": {"name": "checkout-7d9f", "uid": "u"}}
        }));
        let details: serde_json::Map<_, _> =
            serde_json::from_str(r#"{"ticket":"INC-42"}"#).unwrap();
        let scopes = ["orders:write".to_owned()];
        let facts = |scope: &'static [String]| Facts {
            subject: &s,
            claims: s.claims.as_ref(),
            scope,
            request_details: &details,
            request_context: &details,
            workload: &s.workload_id,
            replacement: false,
            actor: None,
        };
        let table: &[(&str, &str, Result<(), Miss>)] = &[
            (
                "pod name",
                r#"subject.claims["kubernetes.io"].pod.name.startsWith("checkout-")"#,
                Ok(()),
            ),
            (
                "pod name, false",
                r#"subject.claims["kubernetes.io"].pod.name.startsWith("admin-")"#,
                Err(Miss::ConditionFalse),
            ),
            (
                "details and scope",
                r#"!("orders:write" in request.scope) || request.request_details.ticket.startsWith("INC-")"#,
                Ok(()),
            ),
            (
                "a missing key is false",
                r#"request.request_details.nope == "x""#,
                Err(Miss::ConditionError("a key is missing")),
            ),
            (
                "a wrong type is false",
                r#"request.request_details.ticket > 3"#,
                Err(Miss::ConditionError("a value has the wrong type")),
            ),
            (
                "not a bool is false",
                r#"request.workload"#,
                Err(Miss::ConditionError("the result is not a bool")),
            ),
            (
                "subject fields",
                r#"subject.namespace == "payments" && subject.cluster == "prod" && subject.sub.endsWith(":checkout")"#,
                Ok(()),
            ),
            (
                "no actor",
                r#"request.actor == null && !request.replacement"#,
                Ok(()),
            ),
        ];
        let scopes: &'static [String] = Box::leak(Box::new(scopes));
        for (name, condition, want) in table {
            let p = with(condition);
            let input = ConditionInput::new(facts(scopes));
            assert_eq!(&p.check(&s, &details, &input), want, "{name}");
        }
        // The globs come first: another namespace never reaches the condition.
        let other = subject("prod", "billing", "x");
        let p = with(r#"request.request_details.nope == "x""#);
        assert_eq!(
            p.check(&other, &details, &input(&other, &details)),
            Err(Miss::Namespace)
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
