//! The TokenRequest API (`authentication.k8s.io/v1`) and projected ServiceAccount token claims.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use uuid::Uuid;

/// Default `expirationSeconds` (kube-apiserver defaults to one hour).
pub const DEFAULT_EXPIRATION_SECONDS: i64 = 3600;
/// kube-apiserver rejects shorter requests ("may not specify a duration less than 10 minutes").
pub const MIN_EXPIRATION_SECONDS: i64 = 600;
/// kube-apiserver rejects longer requests ("... larger than 2^32 seconds").
pub const MAX_EXPIRATION_SECONDS: i64 = 1 << 32;

/// Namespace for the name-based (v5) UUIDs of simulated objects, so they are stable across runs.
const UID_NAMESPACE: Uuid = Uuid::from_u128(0x6f1d_2b47_8a3c_4e59_9b0d_7c2e_41a8_d3f6);

/// A `TokenRequest` body as sent by `kubectl create token` (all fields optional).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRequest {
    /// `authentication.k8s.io/v1` when given.
    pub api_version: Option<String>,
    /// `TokenRequest` when given.
    pub kind: Option<String>,
    /// The request's spec.
    #[serde(default)]
    pub spec: TokenRequestSpec,
}

/// `TokenRequest.spec`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TokenRequestSpec {
    /// Audiences; empty means the issuer's default audience (the issuer itself).
    #[serde(default)]
    pub audiences: Vec<String>,
    /// Requested lifetime; absent means one hour.
    pub expiration_seconds: Option<i64>,
    /// Object the token is bound to (a Pod, Secret or Node).
    pub bound_object_ref: Option<BoundObjectRef>,
}

/// `TokenRequest.spec.boundObjectRef`.
#[derive(Debug, Clone, Default, Deserialize, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BoundObjectRef {
    /// `Pod`, `Secret` or `Node`.
    #[serde(default)]
    pub kind: String,
    /// `v1`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    /// Object name.
    #[serde(default)]
    pub name: String,
    /// Object uid; derived from the name when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uid: Option<String>,
}

/// Why a TokenRequest was refused, with the HTTP status kube-apiserver would use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rejection {
    /// 400 (BadRequest) or 422 (Invalid).
    pub code: u16,
    /// Kubernetes `Status.reason`.
    pub reason: &'static str,
    /// Human-readable message.
    pub message: String,
}

impl Rejection {
    fn bad_request(message: String) -> Self {
        Rejection {
            code: 400,
            reason: "BadRequest",
            message,
        }
    }

    fn invalid(message: String) -> Self {
        Rejection {
            code: 422,
            reason: "Invalid",
            message: format!("TokenRequest.authentication.k8s.io \"\" is invalid: {message}"),
        }
    }
}

/// A checked TokenRequest: audiences and lifetime resolved.
#[derive(Debug, Clone)]
pub struct ResolvedRequest {
    /// Audiences (defaulted).
    pub audiences: Vec<String>,
    /// Lifetime in seconds (defaulted).
    pub expiration_seconds: i64,
    /// Bound object with its uid filled in.
    pub bound: Option<BoundObjectRef>,
}

/// DNS-1123 subdomain, the shape of namespace and ServiceAccount names.
pub fn valid_object_name(name: &str) -> bool {
    let bytes = name.as_bytes();
    !bytes.is_empty()
        && bytes.len() <= 253
        && bytes
            .iter()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || *b == b'-' || *b == b'.')
        && bytes.first().is_some_and(u8::is_ascii_alphanumeric)
        && bytes.last().is_some_and(u8::is_ascii_alphanumeric)
}

/// Stable uid for a simulated object of `kind` named `name` in `namespace` of `cluster`.
pub fn object_uid(cluster: &str, namespace: &str, kind: &str, name: &str) -> Uuid {
    Uuid::new_v5(
        &UID_NAMESPACE,
        format!("{cluster}/{namespace}/{kind}/{name}").as_bytes(),
    )
}

/// Stable ServiceAccount uid derived from cluster, namespace and name.
pub fn service_account_uid(cluster: &str, namespace: &str, service_account: &str) -> Uuid {
    object_uid(cluster, namespace, "ServiceAccount", service_account)
}

impl TokenRequest {
    /// Checks the request like kube-apiserver and fills in the defaults.
    pub fn resolve(
        self,
        cluster: &str,
        namespace: &str,
        default_audience: &str,
    ) -> Result<ResolvedRequest, Rejection> {
        if let Some(kind) = self.kind.as_deref().filter(|k| *k != "TokenRequest") {
            return Err(Rejection::bad_request(format!(
                "expected kind TokenRequest, got {kind:?}"
            )));
        }
        if let Some(v) = self
            .api_version
            .as_deref()
            .filter(|v| *v != "authentication.k8s.io/v1")
        {
            return Err(Rejection::bad_request(format!(
                "expected apiVersion authentication.k8s.io/v1, got {v:?}"
            )));
        }
        let spec = self.spec;
        let expiration_seconds = spec
            .expiration_seconds
            .unwrap_or(DEFAULT_EXPIRATION_SECONDS);
        if expiration_seconds < MIN_EXPIRATION_SECONDS {
            return Err(Rejection::invalid(format!(
                "spec.expirationSeconds: Invalid value: {expiration_seconds}: \
                 may not specify a duration less than 10 minutes"
            )));
        }
        if expiration_seconds > MAX_EXPIRATION_SECONDS {
            return Err(Rejection::invalid(format!(
                "spec.expirationSeconds: Invalid value: {expiration_seconds}: \
                 may not specify a duration larger than 2^32 seconds"
            )));
        }
        let audiences = if spec.audiences.is_empty() {
            vec![default_audience.to_owned()]
        } else {
            spec.audiences
        };
        let bound = match spec.bound_object_ref {
            None => None,
            Some(mut r) => {
                if !matches!(r.kind.as_str(), "Pod" | "Secret" | "Node") {
                    return Err(Rejection::bad_request(format!(
                        "cannot bind token for object of kind {:?}",
                        r.kind
                    )));
                }
                if r.name.is_empty() {
                    return Err(Rejection::bad_request(
                        "boundObjectRef.name is required".into(),
                    ));
                }
                if r.uid.as_deref().is_none_or(str::is_empty) {
                    let ns = if r.kind == "Node" { "" } else { namespace };
                    r.uid = Some(object_uid(cluster, ns, &r.kind, &r.name).to_string());
                }
                Some(r)
            }
        };
        Ok(ResolvedRequest {
            audiences,
            expiration_seconds,
            bound,
        })
    }
}

/// What a projected ServiceAccount token says about its subject.
#[derive(Debug, Clone)]
pub struct TokenSubject<'a> {
    /// Cluster name (only used to derive uids).
    pub cluster: &'a str,
    /// Namespace.
    pub namespace: &'a str,
    /// ServiceAccount name.
    pub service_account: &'a str,
}

/// The claims of a projected ServiceAccount token, as kube-apiserver issues them.
pub fn projected_claims(
    issuer: &str,
    subject: &TokenSubject<'_>,
    request: &ResolvedRequest,
    now: i64,
) -> Value {
    let TokenSubject {
        cluster,
        namespace,
        service_account,
    } = *subject;
    let mut kube = json!({
        "namespace": namespace,
        "serviceaccount": {
            "name": service_account,
            "uid": service_account_uid(cluster, namespace, service_account).to_string(),
        },
    });
    if let Some(bound) = &request.bound {
        let field = match bound.kind.as_str() {
            "Pod" => "pod",
            "Secret" => "secret",
            _ => "node",
        };
        kube[field] = json!({"name": bound.name, "uid": bound.uid});
    }
    json!({
        "aud": request.audiences,
        "exp": now + request.expiration_seconds,
        "iat": now,
        "iss": issuer,
        "jti": Uuid::new_v4().to_string(),
        "kubernetes.io": kube,
        "nbf": now,
        "sub": format!("system:serviceaccount:{namespace}:{service_account}"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: Value) -> TokenRequest {
        serde_json::from_value(body).unwrap()
    }

    #[test]
    fn claims_look_like_a_projected_token() {
        let req = request(json!({
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "metadata": {"creationTimestamp": null},
            "spec": {"audiences": ["txbridge"], "expirationSeconds": 1200,
                     "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web-0"}}
        }))
        .resolve("alpha", "payments", "https://iss")
        .unwrap();
        let subject = TokenSubject {
            cluster: "alpha",
            namespace: "payments",
            service_account: "checkout",
        };
        let c = projected_claims("https://iss", &subject, &req, 1_000_000);
        assert_eq!(c["iss"], "https://iss");
        assert_eq!(c["sub"], "system:serviceaccount:payments:checkout");
        assert_eq!(c["aud"], json!(["txbridge"]));
        assert_eq!(c["iat"], 1_000_000);
        assert_eq!(c["nbf"], 1_000_000);
        assert_eq!(c["exp"], 1_001_200);
        assert!(Uuid::parse_str(c["jti"].as_str().unwrap()).is_ok());
        let k = &c["kubernetes.io"];
        assert_eq!(k["namespace"], "payments");
        assert_eq!(k["serviceaccount"]["name"], "checkout");
        assert_eq!(
            k["serviceaccount"]["uid"],
            service_account_uid("alpha", "payments", "checkout").to_string()
        );
        assert_eq!(k["pod"]["name"], "web-0");
        assert_eq!(
            k["pod"]["uid"],
            object_uid("alpha", "payments", "Pod", "web-0").to_string()
        );
        // Two tokens never share a jti.
        let again = projected_claims("https://iss", &subject, &req, 1_000_000);
        assert_ne!(again["jti"], c["jti"]);
    }

    #[test]
    fn defaults_and_no_pod_claim_without_binding() {
        let req = request(json!({"spec": {}}))
            .resolve("a", "ns", "https://iss")
            .unwrap();
        assert_eq!(req.audiences, ["https://iss"]);
        assert_eq!(req.expiration_seconds, 3600);
        let subject = TokenSubject {
            cluster: "a",
            namespace: "ns",
            service_account: "sa",
        };
        let c = projected_claims("https://iss", &subject, &req, 0);
        assert!(c["kubernetes.io"].get("pod").is_none());
        // uids are stable and differ between clusters.
        assert_eq!(
            service_account_uid("a", "ns", "sa"),
            service_account_uid("a", "ns", "sa")
        );
        assert_ne!(
            service_account_uid("a", "ns", "sa"),
            service_account_uid("b", "ns", "sa")
        );
    }

    #[test]
    fn rejections_match_kube_apiserver() {
        let cases = [
            (
                "too short",
                json!({"spec": {"expirationSeconds": 599}}),
                422,
            ),
            ("zero", json!({"spec": {"expirationSeconds": 0}}), 422),
            (
                "too long",
                json!({"spec": {"expirationSeconds": 1_i64 << 33}}),
                422,
            ),
            ("wrong kind", json!({"kind": "Pod"}), 400),
            (
                "bad binding",
                json!({"spec": {"boundObjectRef": {"kind": "ConfigMap", "name": "x"}}}),
                400,
            ),
            (
                "unnamed binding",
                json!({"spec": {"boundObjectRef": {"kind": "Pod"}}}),
                400,
            ),
        ];
        for (name, body, code) in cases {
            let err = request(body).resolve("a", "ns", "iss").unwrap_err();
            assert_eq!(err.code, code, "{name}");
        }
        assert!(
            request(json!({"spec": {"expirationSeconds": 600}}))
                .resolve("a", "ns", "i")
                .is_ok()
        );
    }

    #[test]
    fn object_names() {
        for ok in ["default", "team-a", "a.b", "x1"] {
            assert!(valid_object_name(ok), "{ok}");
        }
        for bad in ["", "A", "-a", "a-", "a/b", "a:b", "a b"] {
            assert!(!valid_object_name(bad), "{bad}");
        }
    }
}
