//! What the service would decide for a subject and a request, policy by policy, offline
//! (`txbridge policy explain`): no issuer is contacted and a token's signature, key and times
//! are NOT checked; the rest is the service's own code (the same policy checks, conditions,
//! scope ceiling and workload rules as the token endpoint).

use serde::Serialize;
use serde_json::{Map, Value};

use crate::condition::Facts;
use crate::config::Config;
use crate::form::parse_scope;
use crate::identity::Subject;
use crate::policy::{self, ConditionInput, Miss};
use crate::subject::read_unverified;
use crate::workload;

/// Whom to explain for.
#[derive(Debug, Clone)]
pub enum ExplainSubject {
    /// A ServiceAccount token, read WITHOUT verification.
    Token(String),
    /// A cluster, namespace and service account, as `CLUSTER/NS/SA`.
    Named {
        cluster: String,
        namespace: String,
        service_account: String,
    },
}

/// What the request asks for.
#[derive(Debug, Clone, Default)]
pub struct ExplainRequest {
    /// The `scope` parameter (space-separated), if any.
    pub scope: Option<String>,
    /// `request_details`, a JSON object.
    pub request_details: Map<String, Value>,
    /// The workload named in `X-Txbridge-Workload`, if any.
    pub workload: Option<String>,
}

/// One policy's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct PolicyVerdict {
    pub id: String,
    pub applies: bool,
    /// Why not, when it does not apply.
    pub reason: Option<String>,
    /// Its scope ceiling.
    pub scopes: Vec<String>,
}

/// What the service would answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "answer", rename_all = "snake_case")]
pub enum Answer {
    /// A TxToken with this scope and `req_wl`.
    Issue { scope: Vec<String>, req_wl: String },
    /// An OAuth error.
    Refuse {
        error: &'static str,
        description: String,
    },
}

/// The explanation: the subject as the service sees it, each policy, the answer.
#[derive(Debug, Clone, Serialize)]
pub struct Explanation {
    /// Always false: nothing was verified.
    pub signature_checked: bool,
    pub cluster: Option<String>,
    pub namespace: Option<String>,
    pub service_account: Option<String>,
    pub workload_id: Option<String>,
    pub policies: Vec<PolicyVerdict>,
    #[serde(flatten)]
    pub answer: Answer,
}

impl Explanation {
    /// Would the service issue a token?
    pub fn allowed(&self) -> bool {
        matches!(self.answer, Answer::Issue { .. })
    }
}

fn refuse(error: &'static str, description: impl Into<String>) -> Answer {
    Answer::Refuse {
        error,
        description: description.into(),
    }
}

impl Config {
    /// Explains, policy by policy, what the token endpoint would decide (module docs).
    pub fn explain(&self, subject: ExplainSubject, request: ExplainRequest) -> Explanation {
        let mut out = Explanation {
            signature_checked: false,
            cluster: None,
            namespace: None,
            service_account: None,
            workload_id: None,
            policies: Vec::new(),
            answer: refuse("invalid_request", "subject not authorized"),
        };
        let subject = match subject {
            ExplainSubject::Token(token) => match read_unverified(self, token.trim()) {
                Ok(s) => s,
                Err(e) => {
                    out.answer = refuse("invalid_request", format!("invalid subject token: {e}"));
                    return out;
                }
            },
            ExplainSubject::Named {
                cluster,
                namespace,
                service_account,
            } => {
                let Some(c) = self.clusters.iter().find(|c| c.name == cluster) else {
                    out.answer = refuse(
                        "invalid_request",
                        "invalid subject token: issuer is not trusted (no such cluster)",
                    );
                    return out;
                };
                let workload_id = c.workload_id.render(&cluster, &namespace, &service_account);
                Subject {
                    k8s_sub: format!("system:serviceaccount:{namespace}:{service_account}"),
                    cluster,
                    namespace,
                    service_account,
                    exp: 0,
                    workload_id,
                    claims: None,
                }
            }
        };
        out.cluster = Some(subject.cluster.clone());
        out.namespace = Some(subject.namespace.clone());
        out.service_account = Some(subject.service_account.clone());
        out.workload_id = Some(subject.workload_id.clone());

        let scope = match request.scope.as_deref().map(parse_scope).transpose() {
            Ok(scope) => scope,
            Err(_) => {
                out.answer = refuse("invalid_scope", "the scope parameter is invalid");
                return out;
            }
        };
        let empty = Map::new();
        let input = ConditionInput::new(Facts {
            subject: &subject,
            claims: subject.claims.as_ref(),
            scope: scope.as_deref().unwrap_or(&[]),
            request_details: &request.request_details,
            request_context: &empty,
            workload: request.workload.as_deref().unwrap_or(&subject.workload_id),
            replacement: false,
            actor: None,
        });
        for p in &self.policies {
            let verdict = p.check(&subject, &request.request_details, &input);
            out.policies.push(PolicyVerdict {
                id: p.id().to_owned(),
                applies: verdict.is_ok(),
                reason: verdict.err().map(|m: Miss| m.to_string()),
                scopes: p.scopes().to_vec(),
            });
        }
        let Some(decision) =
            policy::decide(&self.policies, &subject, &request.request_details, &input)
        else {
            out.answer = refuse("invalid_request", "subject not authorized");
            return out;
        };
        let req_wl = match workload::authorize(
            request.workload.clone(),
            &subject.workload_id,
            decision.workloads.iter().copied(),
        ) {
            Ok(w) => w,
            Err(_) => {
                out.answer = refuse(
                    "invalid_request",
                    "workload not authorized: neither the subject's workload id nor a workloads glob of a policy that applies",
                );
                return out;
            }
        };
        out.answer = match policy::grant(&decision.ceiling, scope.as_deref()) {
            Some(scope) => Answer::Issue { scope, req_wl },
            None => refuse(
                "invalid_scope",
                format!(
                    "the requested scope exceeds the ceiling of the policies that apply ({})",
                    decision.ceiling.join(" ")
                ),
            ),
        };
        out
    }
}
