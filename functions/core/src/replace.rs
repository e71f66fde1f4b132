//! Replacement TxTokens: a token exchange whose `subject_token` is a TxToken of this service
//! (`subject_token_type=urn:ietf:params:oauth:token-type:txn_token`).
//!
//! The input token is verified with [`txbridge_jose::verify_txtoken`] against the service's own key set
//! (active + previous public keys), `iss` = the configured issuer, `aud` = the trust domain,
//! `typ` and expiry. The rules follow draft-ietf-oauth-transaction-tokens, Security
//! Considerations, "Txn-Token as a `subject_token`" (editor's copy after -10): a replacement MAY
//! reduce the permitted actions and MAY add asserted values, MUST NOT expand them, MUST NOT
//! change `txn`, `sub` or `aud`, MUST NOT be issued for an expired token, and MUST maintain the
//! call chain of the workloads that requested the replaced token. Here:
//!
//! - `txn`, `sub`, `aud`, `iss` are copied; `iat` is now.
//! - `tctx` is immutable: `request_details`, when given, must produce exactly the original
//!   `tctx` (the original `request_details`, or the `tctx` itself, are fine; anything else is
//!   `invalid_request`). Absent means "unchanged".
//! - `scope` can only shrink: a requested scope must lie within the original one
//!   (else `invalid_scope`); absent means the original scope.
//! - The policy is evaluated again for the original subject (tctx cluster/namespace/service
//!   account, and the tctx for `tctx_constraints`): a policy change revokes replacements at once.
//!   A subject no longer allowed gets `invalid_request`; scopes outside the current ceiling are
//!   refused when requested (`invalid_scope`) and dropped when the original scope is kept.
//! - `exp` is never extended: min(original `exp`, now + `token_lifetime`). The draft allows a
//!   longer lifetime by TTS policy; txbridge does not, so no replacement limit is needed for
//!   lifetime reasons. The chain is still capped ([`MAX_CHAIN`]) to bound the token size.
//! - The replacing workload authenticates itself: the request carries its own SA token as
//!   `actor_token`, validated like any subject token and matched against the policies (default
//!   deny; the handler does this). Only TxTokens signed by the service's *active* key are
//!   replaced: a token of a previous key (still published for consumers) is never re-signed.
//! - `req_wl` stays a string (drafts -07 to -10) and keeps the call chain: the actor's workload
//!   id (its own, or a name its policies allow in `X-Txbridge-Workload`) is appended after a
//!   comma, the form draft -08 gave for several workloads in `req_wl`; at most [`MAX_CHAIN`]
//!   entries.
//! - `rctx` describes the originating request, so its values are kept (`req_ip` and `authn` of
//!   the original request; the replacement request's own address is not recorded). Its
//!   `req_wl` mirror (for consumers of drafts <= -06) follows the new `req_wl`.
//!   `request_context` may add new keys ("additional asserted values") but never replace one
//!   already present or a reserved one (`invalid_request`).

use serde_json::{Map, Value};

use crate::condition::Facts;
use crate::config::Config;
use crate::error::Error;
use crate::identity::Subject;
use crate::mint::{self, RCTX_RESERVED, TCTX_RESERVED, TxClaims};
use crate::policy::{self, ConditionInput, Decision};
use txbridge_jose::{TokenError, TxTokenClaims};

/// Most requesting workloads kept in a replaced token's `req_wl` chain.
pub const MAX_CHAIN: usize = 16;

/// What the replacement request asks for, besides the token.
#[derive(Debug)]
pub(crate) struct ReplaceRequest<'a> {
    pub scope: Option<&'a [String]>,
    pub request_details: Map<String, Value>,
    pub request_context: Map<String, Value>,
    /// The authenticated actor's workload id (already checked against its policies).
    pub actor_workload: String,
    /// The authenticated actor (`request.actor` of the subject's conditions).
    pub actor: &'a Subject,
    /// The original TxToken's claim set as written, when a condition reads `subject.claims`.
    pub original_claims: Option<Value>,
}

/// The claims of the replacement, the original subject, and the decision that still allows it.
#[derive(Debug)]
pub(crate) struct Planned<'p> {
    pub claims: TxClaims,
    pub subject: Subject,
    pub decision: Decision<'p>,
}

/// The original subject, as this service wrote it into `tctx` and `sub`.
fn original_subject(config: &Config, original: &TxTokenClaims) -> Result<Subject, Error> {
    let field = |key: &str| {
        original
            .tctx
            .get(key)
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
            .map(str::to_owned)
            .ok_or(Error::TxnToken(TokenError::BadClaims))
    };
    let [c, n, s] = TCTX_RESERVED;
    let (cluster, namespace, service_account) = (field(c)?, field(n)?, field(s)?);
    let k8s_sub = format!("system:serviceaccount:{namespace}:{service_account}");
    if original.sub != format!("{cluster}:{k8s_sub}") {
        return Err(Error::TxnToken(TokenError::BadClaims));
    }
    let Some(trusted) = config.clusters.iter().find(|c| c.name == cluster) else {
        tracing::debug!(cluster = %cluster, "replacement: the cluster is no longer trusted");
        return Err(Error::NotAuthorized);
    };
    let workload_id = trusted
        .workload_id
        .render(&cluster, &namespace, &service_account);
    Ok(Subject {
        cluster,
        namespace,
        service_account,
        k8s_sub,
        exp: original.exp,
        workload_id,
        claims: None,
    })
}

/// The `req_wl` call chain after a replacement requested by the workload `actor` (which the
/// header rules keep free of commas).
fn extend_chain(original: Option<&str>, actor: &str) -> Result<String, Error> {
    if actor.is_empty() || actor.contains(',') {
        return Err(Error::WorkloadNotAuthorized);
    }
    let chain = match original.filter(|o| !o.is_empty()) {
        Some(o) => format!("{o},{actor}"),
        None => actor.to_owned(),
    };
    if chain.split(',').count() > MAX_CHAIN {
        return Err(Error::ReplacementChainTooLong);
    }
    Ok(chain)
}

/// Applies the replacement rules (module docs) to a verified original token.
pub(crate) fn plan<'p>(
    config: &'p Config,
    original: TxTokenClaims,
    request: ReplaceRequest<'_>,
    now: u64,
) -> Result<Planned<'p>, Error> {
    let mut subject = original_subject(config, &original)?;
    // Conditions that read `subject.claims` see the TxToken's claims on a replacement.
    subject.claims = request.original_claims;

    // tctx is immutable.
    if !request.request_details.is_empty() {
        let same =
            mint::build_tctx(&subject, request.request_details).is_ok_and(|t| t == original.tctx);
        if !same {
            return Err(Error::TctxImmutable);
        }
    }

    // The current policy still has to allow the subject (revocation by policy change). Its
    // conditions see the replacement: the TxToken's claims, its tctx as request_details, the
    // scope asked for (else the original), the actor.
    let input = ConditionInput::new(Facts {
        subject: &subject,
        claims: subject.claims.as_ref(),
        scope: request.scope.unwrap_or(&original.scope),
        request_details: &original.tctx,
        request_context: &request.request_context,
        workload: &request.actor_workload,
        replacement: true,
        actor: Some(request.actor),
    });
    let decision = policy::decide(&config.policies, &subject, &original.tctx, &input)
        .ok_or(Error::NotAuthorized)?;
    drop(input);
    let ceiling = &decision.ceiling;
    let scope: Vec<String> = match request.scope {
        Some(req) => {
            if !req
                .iter()
                .all(|s| original.scope.contains(s) && ceiling.contains(s))
            {
                tracing::debug!(txn = %original.txn, "replacement scope exceeds the original or the ceiling");
                return Err(Error::InvalidScope);
            }
            req.to_vec()
        }
        None => original
            .scope
            .iter()
            .filter(|s| ceiling.contains(s))
            .cloned()
            .collect(),
    };

    // Never extended; never issued for an expired token (no leeway for issuing).
    let exp = original.exp.min(now.saturating_add(config.token_lifetime));
    if exp <= now {
        return Err(Error::TxnToken(TokenError::Expired));
    }

    let req_wl = extend_chain(original.req_wl.as_deref(), &request.actor_workload)?;

    let mut rctx = original.rctx;
    for (k, v) in request.request_context {
        if RCTX_RESERVED.contains(&k.as_str()) || rctx.contains_key(&k) {
            return Err(Error::RequestContextReserved);
        }
        rctx.insert(k, v);
    }
    rctx.insert("req_wl".into(), Value::String(req_wl.clone()));

    let claims = TxClaims {
        aud: config.trust_domain.clone(),
        exp,
        iat: now,
        iss: config.issuer.clone(),
        rctx,
        req_wl,
        scope: scope.join(" "),
        sub: original.sub,
        tctx: original.tctx,
        txn: original.txn,
    };
    Ok(Planned {
        claims,
        subject,
        decision,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn req_wl_chain() {
        // (original req_wl, actor, resulting chain or None for a rejection)
        type Case<'a> = (Option<&'a str>, &'a str, Option<&'a str>);
        let cases: &[Case<'_>] = &[
            (Some("a"), "b", Some("a,b")),
            (Some("a,b"), "b", Some("a,b,b")),
            (Some("a,b"), "a", Some("a,b,a")),
            (None, "b", Some("b")),
            (Some(""), "b", Some("b")),
            (Some("a"), "x,y", None),
            (Some("a"), "", None),
        ];
        for (orig, actor, want) in cases {
            let got = extend_chain(*orig, actor);
            assert_eq!(got.ok().as_deref(), *want, "{orig:?} + {actor:?}");
        }
        let full = vec!["w"; MAX_CHAIN - 1].join(",");
        assert_eq!(
            extend_chain(Some(&full), "x").unwrap().split(',').count(),
            MAX_CHAIN
        );
        let long = vec!["w"; MAX_CHAIN].join(",");
        assert!(matches!(
            extend_chain(Some(&long), "x"),
            Err(Error::ReplacementChainTooLong)
        ));
    }
}
