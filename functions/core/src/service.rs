//! The exchange service and its one pipeline. Both grants run the same skeleton: verify the
//! presented token(s) -> decide (the policies, scanned once) -> the requesting workload -> the
//! scope -> the claims -> sign -> the RFC 8693 response; only how the subject is established and
//! how the claims are built differ (an SA token and fresh claims for an exchange; the original
//! TxToken, an authenticated actor and the replacement rules of [`crate::replace`]).

use std::sync::Arc;

use txbridge_signer::KeySet;

use crate::condition::Facts;
use crate::config::Config;
use crate::error::Error;
use crate::form::{self, GRANT_TYPE_TOKEN_EXCHANGE, SubjectToken, TOKEN_TYPE_TXN_TOKEN};
use crate::identity::Subject;
use crate::mint::{self, Grant, TxClaims};
use crate::policy::{self, ConditionInput, Decision};
use crate::replace::{self, ReplaceRequest};
use crate::request::{Kind, TokenRequest};
use crate::subject::{self, Rejected};
use crate::workload;
use txbridge_jose::{
    AsyncRuntime, Clock, Expectations, HttpClient, KeyCache, TokenError, VerifyBackend, VerifyKey,
    parse_compact, parse_txtoken_keys, verify_txtoken,
};

/// The exchange service, built once per cold start and shared by all requests.
pub struct TxBridge {
    pub(crate) config: Config,
    pub(crate) keys: KeySet,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) runtime: Arc<dyn AsyncRuntime>,
    cache: KeyCache,
    pub(crate) jwks_body: Vec<u8>,
    pub(crate) metadata_body: Vec<u8>,
    /// The active key, parsed once: it verifies the TxTokens to replace.
    active_key: Vec<VerifyKey>,
}

impl std::fmt::Debug for TxBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TxBridge")
            .field("issuer", &self.config.issuer)
            .field("clusters", &self.config.clusters.len())
            .finish_non_exhaustive()
    }
}

/// What the pipeline learnt about a request, success or not: what its log line and metrics name.
#[derive(Debug, Default)]
pub(crate) struct Trail {
    pub kind: Option<Kind>,
    /// The verified subject's cluster.
    pub cluster: Option<String>,
    /// The policy that allowed it (the first that applied).
    pub policy: Option<String>,
    pub txn: Option<String>,
    /// The authenticated workload that asked for a replacement.
    pub actor: Option<String>,
}

/// A signed TxToken and what the response and the log line need.
#[derive(Debug)]
pub(crate) struct Issued {
    pub token: mint::TxToken,
    pub subject: Subject,
    pub scope: String,
    pub expires_in: u64,
}

/// What a grant decided before signing.
struct Plan {
    claims: TxClaims,
    subject: Subject,
}

impl TxBridge {
    /// The service from its config and keys, and the shell's ports: outbound HTTP (discovery,
    /// JWKS), the clock, and the async runtime (timers, background key refreshes).
    pub fn new(
        config: Config,
        keys: KeySet,
        http: Arc<dyn HttpClient>,
        clock: Arc<dyn Clock>,
        runtime: Arc<dyn AsyncRuntime>,
    ) -> Self {
        let sources = config.clusters.iter().map(|c| c.key_source()).collect();
        let cache = KeyCache::new(
            sources,
            config.key_cache,
            http,
            clock.clone(),
            runtime.clone(),
        );
        let jwks_body = serde_json::to_vec(&keys.jwks()).unwrap_or_default();
        let metadata_body = serde_json::to_vec(&metadata(&config)).unwrap_or_default();
        // The active key is a checked P-256 key with a kid, so this cannot drop it.
        let active = serde_json::json!({ "keys": [keys.signer().public_jwk()] });
        let active_key = serde_json::to_vec(&active)
            .ok()
            .and_then(|body| parse_txtoken_keys(&body).ok())
            .unwrap_or_default();
        TxBridge {
            config,
            keys,
            clock,
            runtime,
            cache,
            jwks_body,
            metadata_body,
            active_key,
        }
    }

    /// Verifies subject-token signatures through `backend` where it can import the key (the
    /// Worker: WebCrypto); the build's own backend verifies the rest.
    pub fn with_verify_backend(mut self, backend: Arc<dyn VerifyBackend>) -> Self {
        self.cache = self.cache.with_verify_backend(backend);
        self
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The pipeline: a signed TxToken for `req`, or why not; `trail` records what was learnt on
    /// the way, for the log line and the metrics.
    pub(crate) async fn issue(
        &self,
        req: TokenRequest,
        now: u64,
        trail: &mut Trail,
    ) -> Result<Issued, Error> {
        trail.kind = Some(req.kind);
        if req
            .form
            .audience
            .as_ref()
            .is_some_and(|aud| aud != &self.config.trust_domain)
        {
            return Err(Error::InvalidTarget);
        }
        let plan = match req.kind {
            Kind::Exchange => self.plan_exchange(req, now, trail).await?,
            Kind::Replacement => self.plan_replacement(req, now, trail).await?,
        };
        trail.txn = Some(plan.claims.txn.clone());
        let token = mint::sign(self.keys.signer(), &plan.claims).await?;
        Ok(Issued {
            token,
            subject: plan.subject,
            scope: plan.claims.scope,
            expires_in: plan.claims.exp - plan.claims.iat,
        })
    }

    /// A ServiceAccount token's subject, and the decision for it.
    async fn plan_exchange(
        &self,
        req: TokenRequest,
        now: u64,
        trail: &mut Trail,
    ) -> Result<Plan, Error> {
        if req.form.actor_token.is_some() {
            return Err(Error::ActorTokenNotSupported);
        }
        let subject = self
            .verified(req.subject_token(), now)
            .await
            .map_err(Error::from)
            .inspect_err(|e| tracing::debug!(reason = %e, "subject token rejected"))?;
        trail.cluster = Some(subject.cluster.clone());
        // Conditions see the workload the request names (else the subject's own) and the
        // scopes it asks for (none when it asks for the whole ceiling).
        let input = ConditionInput::new(Facts {
            subject: &subject,
            claims: subject.claims.as_ref(),
            scope: req.form.scope.as_deref().unwrap_or(&[]),
            request_details: &req.form.request_details,
            request_context: &req.form.request_context,
            workload: req.workload.as_deref().unwrap_or(&subject.workload_id),
            replacement: false,
            actor: None,
        });
        let decision = self.decide(&subject, &req.form.request_details, &input, trail)?;
        drop(input);
        let req_wl = workload::authorize(
            req.workload,
            &subject.workload_id,
            decision.workloads.iter().copied(),
        )?;
        let scope =
            policy::grant(&decision.ceiling, req.form.scope.as_deref()).ok_or_else(|| {
                tracing::debug!(cluster = %subject.cluster, namespace = %subject.namespace,
                service_account = %subject.service_account, "requested scope exceeds the ceiling");
                Error::InvalidScope
            })?;
        let claims = mint::exchange_claims(
            &self.config.issuer,
            &self.config.trust_domain,
            self.config.token_lifetime,
            Grant {
                subject: &subject,
                scope: &scope,
                req_wl,
                req_ip: req.client_ip,
                authn: req.form.subject_token_type,
                request_details: req.form.request_details,
                request_context: req.form.request_context,
            },
            now,
        )?;
        Ok(Plan { claims, subject })
    }

    /// A replacement TxToken for a TxToken of this service, requested by the workload its
    /// `actor_token` authenticates (rules in [`crate::replace`]).
    async fn plan_replacement(
        &self,
        req: TokenRequest,
        now: u64,
        trail: &mut Trail,
    ) -> Result<Plan, Error> {
        let expect = Expectations {
            issuer: &self.config.issuer,
            audience: &self.config.trust_domain,
            leeway: self.config.leeway,
        };
        let token = req.subject_token().expose();
        let original = verify_txtoken(token, &self.active_key, &expect, now)
            .await
            .map_err(|e| match e {
                TokenError::UnknownKey if self.signed_by_retired_key(token) => {
                    Error::ReplacementKeyRetired
                }
                e => Error::TxnToken(e),
            })
            .inspect_err(
                |e| tracing::debug!(reason = %e, "transaction token to replace rejected"),
            )?;
        trail.txn = Some(original.txn.clone());
        // Its claim set as written, for conditions that read `subject.claims`.
        let original_claims = self
            .config
            .conditions_read_claims
            .then(|| parse_compact(token).ok())
            .flatten()
            .and_then(|jws| serde_json::from_slice(&jws.payload).ok());

        // The replacing workload: its own SA token, validated like a subject token, allowed by a
        // policy (default deny); its workload id under the header rules.
        let (actor_token, _) = req
            .form
            .actor_token
            .as_ref()
            .ok_or(Error::ActorTokenRequired)?;
        let actor = self
            .verified(actor_token, now)
            .await
            .map_err(|e| match e {
                Rejected::Token(e) => Error::ActorToken(e),
                keys @ Rejected::KeysUnavailable(_) => keys.into(),
            })
            .inspect_err(|e| tracing::debug!(reason = %e, "actor token rejected"))?;
        let input = ConditionInput::new(Facts {
            subject: &actor,
            claims: actor.claims.as_ref(),
            scope: req.form.scope.as_deref().unwrap_or(&original.scope),
            request_details: &original.tctx,
            request_context: &req.form.request_context,
            workload: req.workload.as_deref().unwrap_or(&actor.workload_id),
            replacement: true,
            actor: Some(&actor),
        });
        let actor_decision = policy::decide(&self.config.policies, &actor, &original.tctx, &input);
        drop(input);
        let Some(actor_decision) = actor_decision else {
            tracing::debug!(cluster = %actor.cluster, namespace = %actor.namespace,
                service_account = %actor.service_account, "no policy matches the actor");
            return Err(Error::ActorNotAuthorized);
        };
        let actor_workload = workload::authorize(
            req.workload,
            &actor.workload_id,
            actor_decision.workloads.iter().copied(),
        )?;
        trail.actor = Some(actor_workload.clone());

        let planned = replace::plan(
            &self.config,
            original,
            ReplaceRequest {
                scope: req.form.scope.as_deref(),
                request_details: req.form.request_details,
                request_context: req.form.request_context,
                actor_workload,
                actor: &actor,
                original_claims,
            },
            now,
        )?;
        trail.cluster = Some(planned.subject.cluster.clone());
        trail.policy = Some(planned.decision.policy().to_owned());
        Ok(Plan {
            claims: planned.claims,
            subject: planned.subject,
        })
    }

    /// The policies' decision for `subject`, recorded in `trail`; default deny.
    fn decide(
        &self,
        subject: &Subject,
        details: &serde_json::Map<String, serde_json::Value>,
        input: &ConditionInput<'_>,
        trail: &mut Trail,
    ) -> Result<Decision<'_>, Error> {
        let decision = policy::decide(&self.config.policies, subject, details, input)
            .ok_or(Error::NotAuthorized)?;
        trail.policy = Some(decision.policy().to_owned());
        Ok(decision)
    }

    /// A ServiceAccount token (subject or actor) verified against its cluster's keys.
    async fn verified(&self, token: &SubjectToken, now: u64) -> Result<Subject, Rejected> {
        subject::validate(&self.config, &self.cache, token.expose(), now).await
    }

    /// Does the token name (in its header) one of the previous keys the JWKS still publishes?
    fn signed_by_retired_key(&self, token: &str) -> bool {
        let kid = parse_compact(token).ok().and_then(|jws| jws.kid);
        kid.is_some_and(|kid| {
            kid != self.keys.signer().key_id()
                && self.keys.public_keys().iter().any(|k| k.kid() == kid)
        })
    }
}

/// The RFC 8414 metadata document.
fn metadata(config: &Config) -> serde_json::Value {
    let issuer = &config.issuer;
    serde_json::json!({
        "issuer": issuer,
        "token_endpoint": format!("{issuer}/token"),
        "jwks_uri": format!("{issuer}/.well-known/jwks.json"),
        "grant_types_supported": [GRANT_TYPE_TOKEN_EXCHANGE],
        "token_endpoint_auth_methods_supported": ["none"],
        "response_types_supported": [],
        "subject_types_supported": ["public"],
        "id_token_signing_alg_values_supported": ["ES256"],
        "issued_token_types_supported": [TOKEN_TYPE_TXN_TOKEN],
        "subject_token_types_supported": [form::TOKEN_TYPE_JWT, form::TOKEN_TYPE_ID_TOKEN, TOKEN_TYPE_TXN_TOKEN],
    })
}
