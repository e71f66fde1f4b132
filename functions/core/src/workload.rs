//! The requesting workload (`req_wl`): authenticated, never merely asserted.
//!
//! A verified subject's own workload id is rendered from its cluster's `workload_id` template
//! (default `${cluster}:${namespace}:${service_account}`). The `X-Txbridge-Workload` header (or
//! `X-Kontxt-Workload`) may name the workload only when it equals that id or matches a `workloads`
//! glob of a policy that applies to the subject. Anything else is refused: "workload not
//! authorized".

use http::HeaderMap;

use txbridge_jose::{Glob, MAX_WORKLOAD_LEN, valid_workload_byte};

/// Headers naming the requesting workload (`req_wl`).
pub const WORKLOAD_HEADERS: [&str; 2] = ["x-txbridge-workload", "x-kontxt-workload"];
/// The template of clusters that set none.
#[cfg(test)]
const DEFAULT_WORKLOAD_ID: &str = "${cluster}:${namespace}:${service_account}";

#[derive(Debug, Clone, PartialEq, Eq)]
enum Part {
    Literal(String),
    Cluster,
    Namespace,
    ServiceAccount,
}

/// A compiled `workload_id` template.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WorkloadTemplate {
    parts: Vec<Part>,
}

impl Default for WorkloadTemplate {
    fn default() -> Self {
        WorkloadTemplate {
            parts: vec![
                Part::Cluster,
                Part::Literal(":".into()),
                Part::Namespace,
                Part::Literal(":".into()),
                Part::ServiceAccount,
            ],
        }
    }
}

impl WorkloadTemplate {
    /// Compiles a template: printable ASCII, no comma, `$` only in `${cluster}`, `${namespace}`
    /// or `${service_account}`. The message names the rule broken, never the template.
    pub fn compile(template: &str) -> Result<Self, &'static str> {
        if template.is_empty() || template.len() > MAX_WORKLOAD_LEN {
            return Err("must be 1-256 characters");
        }
        if template.contains(',') {
            return Err("must not contain a comma");
        }
        if !template.bytes().all(valid_workload_byte) {
            return Err("may contain only printable ASCII characters without spaces");
        }
        let mut parts = Vec::new();
        let mut rest = template;
        while let Some(i) = rest.find('$') {
            if i > 0 {
                parts.push(Part::Literal(rest[..i].to_owned()));
            }
            let after = &rest[i..];
            let (part, len) = [
                ("${cluster}", Part::Cluster),
                ("${namespace}", Part::Namespace),
                ("${service_account}", Part::ServiceAccount),
            ]
            .into_iter()
            .find(|(name, _)| after.starts_with(name))
            .map(|(name, part)| (part, name.len()))
            .ok_or(
                "has an unknown placeholder (known: ${cluster}, ${namespace}, ${service_account})",
            )?;
            parts.push(part);
            rest = &after[len..];
        }
        if !rest.is_empty() {
            parts.push(Part::Literal(rest.to_owned()));
        }
        Ok(WorkloadTemplate { parts })
    }

    /// Does the template contain `${cluster}`? Without it, two clusters with the same template
    /// render the same ids for the same namespace and service account.
    pub fn names_cluster(&self) -> bool {
        self.parts.contains(&Part::Cluster)
    }

    /// The workload id of a subject.
    pub fn render(&self, cluster: &str, namespace: &str, service_account: &str) -> String {
        let mut out = String::with_capacity(64);
        for part in &self.parts {
            out.push_str(match part {
                Part::Literal(s) => s,
                Part::Cluster => cluster,
                Part::Namespace => namespace,
                Part::ServiceAccount => service_account,
            });
        }
        out
    }
}

/// The workload the request names in its header, if any. Two such headers (of either name), an
/// empty, oversized or non-printable value, or a comma are refused.
pub fn claimed(headers: &HeaderMap) -> Result<Option<String>, WorkloadRefused> {
    let mut values = WORKLOAD_HEADERS
        .iter()
        .flat_map(|name| headers.get_all(*name).iter());
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(refuse("more than one workload header"));
    }
    let bytes = value.as_bytes();
    if bytes.contains(&b',') {
        return Err(refuse("a comma in the workload header"));
    }
    if bytes.is_empty()
        || bytes.len() > MAX_WORKLOAD_LEN
        || !bytes.iter().all(|b| valid_workload_byte(*b))
    {
        return Err(refuse(
            "the workload header is empty, too long or not printable ASCII",
        ));
    }
    Ok(value.to_str().ok().map(str::to_owned))
}

/// `req_wl` for a subject whose own id is `own`: the claimed name when it is `own` or matches
/// one of `allowed` (the `workloads` globs of the policies that apply to the subject), `own`
/// when nothing is claimed.
pub fn authorize<'a>(
    claimed: Option<String>,
    own: &str,
    mut allowed: impl Iterator<Item = &'a Glob>,
) -> Result<String, WorkloadRefused> {
    match claimed {
        None => Ok(own.to_owned()),
        Some(name) if name == own => Ok(name),
        Some(name) if allowed.any(|g| g.matches(&name)) => Ok(name),
        Some(_) => Err(refuse(
            "the workload header is neither the subject's workload id nor in a matching policy's workloads",
        )),
    }
}

/// A workload header was refused (the wire's "workload not authorized"); the rule it broke is
/// logged at debug.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("workload not authorized")]
pub struct WorkloadRefused;

fn refuse(rule: &'static str) -> WorkloadRefused {
    tracing::debug!(rule, "workload not authorized");
    WorkloadRefused
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn templates() {
        let table: &[(&str, Result<&str, ()>)] = &[
            (DEFAULT_WORKLOAD_ID, Ok("prod:payments:checkout")),
            (
                "spiffe://example.test/ns/${namespace}/sa/${service_account}",
                Ok("spiffe://example.test/ns/payments/sa/checkout"),
            ),
            ("${cluster}/${cluster}", Ok("prod/prod")),
            ("static-name", Ok("static-name")),
            ("$${namespace}", Err(())),
            ("${pod}", Err(())),
            ("${namespace", Err(())),
            ("a,${namespace}", Err(())),
            ("a ${namespace}", Err(())),
            ("", Err(())),
            ("é${namespace}", Err(())),
        ];
        for (template, want) in table {
            let got = WorkloadTemplate::compile(template)
                .map(|t| t.render("prod", "payments", "checkout"))
                .map_err(|_| ());
            assert_eq!(got.as_deref(), want.as_ref().map(|s| *s), "{template}");
        }
        assert_eq!(
            WorkloadTemplate::default(),
            WorkloadTemplate::compile(DEFAULT_WORKLOAD_ID).unwrap()
        );
        assert!(WorkloadTemplate::compile(&"a".repeat(257)).is_err());
    }

    fn headers(list: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in list {
            h.append(*k, http::HeaderValue::from_str(v).unwrap());
        }
        h
    }

    /// One row per header rule: (name, headers, globs, Ok(req_wl) or Err).
    #[test]
    fn header_rules() {
        let own = "prod:payments:checkout";
        let globs = [
            Glob::workload("checkout-*").unwrap(),
            Glob::workload("spiffe://x/*").unwrap(),
        ];
        type Row<'a> = (&'a str, Vec<(&'static str, &'a str)>, Result<&'a str, ()>);
        let long = "a".repeat(257);
        let table: Vec<Row> = vec![
            ("no header: own id", vec![], Ok(own)),
            ("own id", vec![("x-txbridge-workload", own)], Ok(own)),
            (
                "kontxt header",
                vec![("x-kontxt-workload", "checkout-web")],
                Ok("checkout-web"),
            ),
            (
                "glob",
                vec![("x-txbridge-workload", "spiffe://x/y")],
                Ok("spiffe://x/y"),
            ),
            (
                "another workload",
                vec![("x-txbridge-workload", "prod:payments:admin")],
                Err(()),
            ),
            (
                "the default shape of another",
                vec![("x-txbridge-workload", "prod-eu:payments:checkout")],
                Err(()),
            ),
            (
                "comma even when a glob matches",
                vec![("x-txbridge-workload", "checkout-a,checkout-b")],
                Err(()),
            ),
            (
                "comma chain",
                vec![("x-txbridge-workload", "prod:payments:checkout,x")],
                Err(()),
            ),
            (
                "two headers",
                vec![("x-txbridge-workload", own), ("x-txbridge-workload", own)],
                Err(()),
            ),
            (
                "both names",
                vec![("x-txbridge-workload", own), ("x-kontxt-workload", own)],
                Err(()),
            ),
            (
                "space",
                vec![("x-txbridge-workload", "checkout- x")],
                Err(()),
            ),
            ("empty", vec![("x-txbridge-workload", "")], Err(())),
            ("too long", vec![("x-txbridge-workload", &long)], Err(())),
        ];
        for (name, hs, want) in table {
            let got = claimed(&headers(&hs)).and_then(|c| authorize(c, own, globs.iter()));
            match (got, want) {
                (Ok(wl), Ok(w)) => assert_eq!(wl, w, "{name}"),
                (Err(WorkloadRefused), Err(())) => {}
                (got, want) => panic!("{name}: got {got:?}, want {want:?}"),
            }
        }
        let bad = http::HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap();
        let mut h = HeaderMap::new();
        h.insert("x-txbridge-workload", bad);
        assert!(matches!(claimed(&h), Err(WorkloadRefused)));
    }

    #[test]
    fn workload_globs() {
        for bad in ["", "a,b", "a b", "é"] {
            assert!(Glob::workload(bad).is_err(), "{bad:?}");
        }
        let g = Glob::workload("spiffe://example.test/ns/*/sa/web").unwrap();
        assert!(g.matches("spiffe://example.test/ns/payments/sa/web"));
        assert!(!g.matches("spiffe://example.test/ns/payments/sa/web2"));
    }
}
