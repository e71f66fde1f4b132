//! The exchange through the core handler: happy paths, every rejection with its exact OAuth
//! error code, the issued TxToken's claims (verified independently), and the documents.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use futures::executor::block_on;
use serde_json::{Value, json};
use txbridge_core::ClientIp;
use txbridge_signer::Signer as _;
use txbridge_test_support::*;

fn get(world: &World, path: &str) -> (u16, Value, http::HeaderMap) {
    let req = http::Request::get(path).body(Vec::new()).unwrap();
    let resp = block_on(world.bridge.handle(req));
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    (
        status,
        serde_json::from_slice(resp.body()).unwrap_or(Value::Null),
        headers,
    )
}

#[test]
fn happy_path_both_clusters_with_independently_verified_claims() {
    let w = World::new();
    let (_, jwks, _) = get(&w, "/.well-known/jwks.json");
    for (cluster, token) in [
        ("alpha", w.alpha_token("payments", "checkout")),
        ("beta", w.beta_token("payments", "checkout")),
    ] {
        let mut f = form(&token);
        f.push(("scope", "orders:read".into()));
        f.push(("audience", TD.into()));
        f.push((
            "request_details",
            r#"{"order":"42","namespace":"payments"}"#.into(),
        ));
        f.push(("request_context", r#"{"purpose":"checkout"}"#.into()));
        let (status, body, headers) = block_on(w.exchange_with(&pairs(&f), |req| {
            req.extensions_mut()
                .insert(ClientIp("203.0.113.7".parse().unwrap()));
            req.headers_mut().insert(
                "x-kontxt-workload",
                "spiffe://example/ns/payments/sa/web".parse().unwrap(),
            );
        }));
        assert_eq!(status, 200, "{cluster}: {body}");
        assert_eq!(headers["cache-control"], "no-store");
        assert_eq!(
            body["issued_token_type"],
            "urn:ietf:params:oauth:token-type:txn_token"
        );
        assert_eq!(body["token_type"], "N_A");
        assert_eq!(body["expires_in"], 300);
        assert_eq!(body["scope"], "orders:read");
        let token = body["access_token"].as_str().unwrap();
        let (header, claims) = verify_txtoken(&jwks, token);
        assert_eq!(header.typ.as_deref(), Some("txntoken+jwt"));
        assert_eq!(header.kid.as_deref(), Some(w.signer.key_id()));
        assert_eq!(claims["iss"], TD);
        assert_eq!(claims["aud"], TD);
        assert_eq!(claims["iat"], NOW);
        assert_eq!(claims["exp"], NOW + 300);
        assert_eq!(
            claims["sub"],
            format!("{cluster}:system:serviceaccount:payments:checkout")
        );
        assert_eq!(claims["scope"], "orders:read");
        assert_eq!(claims["req_wl"], "spiffe://example/ns/payments/sa/web");
        let txn = claims["txn"].as_str().unwrap();
        assert!(txn.len() >= 22, "txn carries >= 128 bits");
        assert_eq!(
            claims["tctx"],
            json!({"order": "42", "namespace": "payments", "cluster": cluster, "service_account": "checkout"})
        );
        assert_eq!(
            claims["rctx"],
            json!({"req_wl": "spiffe://example/ns/payments/sa/web", "req_ip": "203.0.113.7",
                   "authn": "urn:ietf:params:oauth:token-type:jwt", "purpose": "checkout"})
        );
    }
}

#[test]
fn defaults_no_scope_grants_ceiling_and_req_wl_is_own_identity() {
    let w = World::new();
    let token = w.alpha_token("team-a", "reporter");
    let (status, body, _) = block_on(w.exchange(&pairs(&form(&token))));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["scope"], "reports:read");
    let (_, jwks, _) = get(&w, "/.well-known/jwks.json");
    let (_, claims) = verify_txtoken(&jwks, body["access_token"].as_str().unwrap());
    assert_eq!(claims["req_wl"], "alpha:team-a:reporter");
    assert_eq!(claims["rctx"]["req_wl"], "alpha:team-a:reporter");
    assert!(claims["rctx"].get("req_ip").is_none());
}

#[test]
fn txtoken_never_outlives_the_subject_token() {
    let w = World::new();
    let mut claims = sa_claims(ALPHA_ISS, "payments", "checkout");
    claims["exp"] = json!(NOW + 60);
    let token = craft(&json!({"alg": "RS256", "kid": "a1"}), &claims, &w.alpha);
    let (status, body, _) = block_on(w.exchange(&pairs(&form(&token))));
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expires_in"], 60);
    let (_, jwks, _) = get(&w, "/.well-known/jwks.json");
    let (_, c) = verify_txtoken(&jwks, body["access_token"].as_str().unwrap());
    assert_eq!(c["exp"], NOW + 60);
}

#[test]
fn txn_ids_are_unique() {
    let w = World::new();
    let token = w.alpha_token("payments", "checkout");
    let (_, jwks, _) = get(&w, "/.well-known/jwks.json");
    let mut seen = std::collections::HashSet::new();
    for _ in 0..20 {
        let (_, body, _) = block_on(w.exchange(&pairs(&form(&token))));
        let (_, c) = verify_txtoken(&jwks, body["access_token"].as_str().unwrap());
        assert!(seen.insert(c["txn"].as_str().unwrap().to_owned()));
    }
}

/// One row: a name, how to build the subject token, the form tweak, expected status and code.
struct Case {
    name: &'static str,
    token: Box<dyn Fn(&World) -> String>,
    extra: Vec<(&'static str, &'static str)>,
    status: u16,
    code: &'static str,
}

fn case(
    name: &'static str,
    token: impl Fn(&World) -> String + 'static,
    status: u16,
    code: &'static str,
) -> Case {
    Case {
        name,
        token: Box::new(token),
        extra: vec![],
        status,
        code,
    }
}

fn alpha_with(f: impl Fn(&mut Value, &mut Value) + 'static) -> impl Fn(&World) -> String {
    move |w: &World| {
        let mut h = json!({"alg": "RS256", "kid": "a1"});
        let mut c = sa_claims(ALPHA_ISS, "payments", "checkout");
        f(&mut h, &mut c);
        craft(&h, &c, &w.alpha)
    }
}

#[test]
fn every_rejection_has_its_exact_error_code() {
    let mut cases = vec![
        case(
            "alg none",
            alpha_with(|h, _| {
                h["alg"] = json!("none");
            }),
            400,
            "invalid_request",
        ),
        case(
            "HS256 with the RSA public key (alg confusion)",
            alpha_with(|h, _| {
                h["alg"] = json!("HS256");
            }),
            400,
            "invalid_request",
        ),
        case(
            "bad signature",
            |w: &World| {
                let t = w.alpha_token("payments", "checkout");
                let (rest, sig) = t.rsplit_once('.').unwrap();
                let mut sig = sig.to_owned();
                let flip = if sig.starts_with('A') { "B" } else { "A" };
                sig.replace_range(0..1, flip);
                format!("{rest}.{sig}")
            },
            400,
            "invalid_request",
        ),
        case(
            "unknown kid",
            alpha_with(|h, _| {
                h["kid"] = json!("nope");
            }),
            400,
            "invalid_request",
        ),
        case(
            "foreign key, trusted iss, real kid",
            |_w: &World| {
                craft(
                    &json!({"alg": "RS256", "kid": "a1"}),
                    &sa_claims(ALPHA_ISS, "payments", "checkout"),
                    &rsa_key(1),
                )
            },
            400,
            "invalid_request",
        ),
        case(
            "untrusted iss",
            alpha_with(|_, c| {
                c["iss"] = json!("https://evil.example");
            }),
            400,
            "invalid_request",
        ),
        case(
            "missing iss",
            alpha_with(|_, c| {
                c.as_object_mut().unwrap().remove("iss");
            }),
            400,
            "invalid_request",
        ),
        case(
            "wrong aud",
            alpha_with(|_, c| {
                c["aud"] = json!(["someone-else"]);
            }),
            400,
            "invalid_request",
        ),
        case(
            "aud as plain string accepted elsewhere, wrong here",
            alpha_with(|_, c| {
                c["aud"] = json!("x");
            }),
            400,
            "invalid_request",
        ),
        case(
            "expired",
            alpha_with(|_, c| {
                c["exp"] = json!(NOW - 31);
                c["iat"] = json!(NOW - 600);
            }),
            400,
            "invalid_request",
        ),
        case(
            "nbf beyond leeway",
            alpha_with(|_, c| {
                c["nbf"] = json!(NOW + 31);
            }),
            400,
            "invalid_request",
        ),
        case(
            "iat beyond leeway",
            alpha_with(|_, c| {
                c["iat"] = json!(NOW + 31);
            }),
            400,
            "invalid_request",
        ),
        case(
            "missing exp",
            alpha_with(|_, c| {
                c.as_object_mut().unwrap().remove("exp");
            }),
            400,
            "invalid_request",
        ),
        case(
            "missing iat",
            alpha_with(|_, c| {
                c.as_object_mut().unwrap().remove("iat");
            }),
            400,
            "invalid_request",
        ),
        case(
            "missing sub",
            alpha_with(|_, c| {
                c.as_object_mut().unwrap().remove("sub");
            }),
            400,
            "invalid_request",
        ),
        case(
            "missing aud",
            alpha_with(|_, c| {
                c.as_object_mut().unwrap().remove("aud");
            }),
            400,
            "invalid_request",
        ),
        case(
            "exp as string",
            alpha_with(|_, c| {
                c["exp"] = json!("soon");
            }),
            400,
            "invalid_request",
        ),
        case(
            "lifetime over the maximum",
            alpha_with(|_, c| {
                c["exp"] = json!(NOW + 90_000);
                c["iat"] = json!(NOW - 10);
            }),
            400,
            "invalid_request",
        ),
        case(
            "crit header",
            alpha_with(|h, _| {
                h["crit"] = json!(["exp"]);
                h["exp"] = json!(1);
            }),
            400,
            "invalid_request",
        ),
        case(
            "jku to an attacker key",
            |_w: &World| {
                craft(
                    &json!({"alg": "RS256", "kid": "evil", "jku": "https://evil.example/jwks"}),
                    &sa_claims(ALPHA_ISS, "payments", "checkout"),
                    &rsa_key(2),
                )
            },
            400,
            "invalid_request",
        ),
        case(
            "x5u to an attacker cert",
            |_w: &World| {
                craft(
                    &json!({"alg": "RS256", "kid": "evil", "x5u": "https://evil.example/cert"}),
                    &sa_claims(ALPHA_ISS, "payments", "checkout"),
                    &rsa_key(2),
                )
            },
            400,
            "invalid_request",
        ),
        case(
            "embedded jwk of an attacker key",
            |_w: &World| {
                let k = rsa_key(2);
                craft(
                    &json!({"alg": "RS256", "jwk": k.public_jwk("evil")}),
                    &sa_claims(ALPHA_ISS, "payments", "checkout"),
                    &k,
                )
            },
            400,
            "invalid_request",
        ),
        case(
            "cluster A token presented as cluster B",
            |w: &World| {
                craft(
                    &json!({"alg": "RS256", "kid": "a1"}),
                    &sa_claims(BETA_ISS, "payments", "checkout"),
                    &w.alpha,
                )
            },
            400,
            "invalid_request",
        ),
        case(
            "ES256 on a cluster that allows only RS256",
            |w: &World| {
                craft(
                    &json!({"alg": "ES256", "kid": "a1"}),
                    &sa_claims(ALPHA_ISS, "payments", "checkout"),
                    &w.beta,
                )
            },
            400,
            "invalid_request",
        ),
        case(
            "RS256 header with an EC key's kid",
            |w: &World| {
                craft(
                    &json!({"alg": "RS256", "kid": "b1"}),
                    &sa_claims(BETA_ISS, "payments", "checkout"),
                    &w.alpha,
                )
            },
            400,
            "invalid_request",
        ),
        case(
            "sub inconsistent with kubernetes.io",
            alpha_with(|_, c| {
                c["kubernetes.io"]["namespace"] = json!("kube-system");
            }),
            400,
            "invalid_request",
        ),
        case(
            "sub inconsistent with serviceaccount",
            alpha_with(|_, c| {
                c["kubernetes.io"]["serviceaccount"]["name"] = json!("admin");
            }),
            400,
            "invalid_request",
        ),
        case(
            "no kubernetes.io claims",
            alpha_with(|_, c| {
                c.as_object_mut().unwrap().remove("kubernetes.io");
            }),
            400,
            "invalid_request",
        ),
        case(
            "sub is not a service account",
            alpha_with(|_, c| {
                c["sub"] = json!("alice");
            }),
            400,
            "invalid_request",
        ),
        case(
            "not a JWS",
            |_w: &World| "not-a-token".into(),
            400,
            "invalid_request",
        ),
        case(
            "bad base64",
            |_w: &World| "eyJ!.eyJ.sig".into(),
            400,
            "invalid_request",
        ),
        case(
            "claims not JSON",
            |w: &World| {
                let h = base64_url(br#"{"alg":"RS256","kid":"a1"}"#);
                let p = base64_url(b"not json");
                let sig = base64_url(&w.alpha.sign(format!("{h}.{p}").as_bytes()));
                format!("{h}.{p}.{sig}")
            },
            400,
            "invalid_request",
        ),
        case(
            "huge header",
            alpha_with(|h, _| {
                h["x"] = json!("a".repeat(10_000));
            }),
            400,
            "invalid_request",
        ),
        case(
            "policy denial",
            |w: &World| w.alpha_token("default", "web"),
            400,
            "invalid_request",
        ),
        case(
            "other cluster's glob policy",
            |w: &World| w.beta_token("team-a", "reporter"),
            400,
            "invalid_request",
        ),
    ];
    let mut more = vec![
        (
            case(
                "scope escalation",
                |w: &World| w.alpha_token("payments", "checkout"),
                400,
                "invalid_scope",
            ),
            vec![("scope", "orders:read admin")],
        ),
        (
            case(
                "audience not the trust domain",
                |w: &World| w.alpha_token("payments", "checkout"),
                400,
                "invalid_target",
            ),
            vec![("audience", "https://elsewhere")],
        ),
        (
            case(
                "request_details conflicts with the verified namespace",
                |w: &World| w.alpha_token("payments", "checkout"),
                400,
                "invalid_request",
            ),
            vec![("request_details", r#"{"namespace":"kube-system"}"#)],
        ),
        (
            case(
                "request_details not an object",
                |w: &World| w.alpha_token("payments", "checkout"),
                400,
                "invalid_request",
            ),
            vec![("request_details", "[1,2]")],
        ),
        (
            case(
                "request_context sets req_ip",
                |w: &World| w.alpha_token("payments", "checkout"),
                400,
                "invalid_request",
            ),
            vec![("request_context", r#"{"req_ip":"1.2.3.4"}"#)],
        ),
        (
            case(
                "request_context sets req_wl",
                |w: &World| w.alpha_token("payments", "checkout"),
                400,
                "invalid_request",
            ),
            vec![("request_context", r#"{"req_wl":"x"}"#)],
        ),
        (
            case(
                "duplicate subject_token",
                |w: &World| w.alpha_token("payments", "checkout"),
                400,
                "invalid_request",
            ),
            vec![("subject_token", "x")],
        ),
        (
            case(
                "wrong requested_token_type",
                |w: &World| w.alpha_token("payments", "checkout"),
                400,
                "invalid_request",
            ),
            vec![("requested_token_type", "x")],
        ),
    ];
    for (c, extra) in more.drain(..) {
        cases.push(Case { extra, ..c });
    }

    for c in &cases {
        // A fresh service per case: an unknown kid settles with one refresh per interval, so
        // cases sharing a cache would see each other's refreshes (503 within the interval).
        let w = World::new();
        let token = (c.token)(&w);
        let mut f = form(&token);
        for (k, v) in &c.extra {
            if *k == "requested_token_type" {
                f.retain(|(name, _)| *name != "requested_token_type");
            }
            f.push((k, (*v).to_owned()));
        }
        let (status, body, _) = block_on(w.exchange(&pairs(&f)));
        assert_eq!(
            (status, body["error"].as_str().unwrap_or("")),
            (c.status, c.code),
            "{}: {body}",
            c.name
        );
        assert!(body.get("access_token").is_none(), "{}", c.name);
        let text = body.to_string();
        assert!(
            !text.contains(&token[..24.min(token.len())]),
            "{}: token echoed",
            c.name
        );
    }
}

fn base64_url(b: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

#[test]
fn http_level_errors() {
    let w = World::new();
    let token = w.alpha_token("payments", "checkout");
    // Wrong content type.
    let (s, b, _) = block_on(w.exchange_with(&pairs(&form(&token)), |r| {
        r.headers_mut()
            .insert("content-type", "application/json".parse().unwrap());
    }));
    assert_eq!((s, b["error"].as_str().unwrap()), (400, "invalid_request"));
    // Oversized body.
    let (s, b, _) = block_on(w.exchange_with(&[], |r| *r.body_mut() = vec![b'a'; 64 * 1024 + 1]));
    assert_eq!((s, b["error"].as_str().unwrap()), (413, "invalid_request"));
    // Missing grant_type / wrong grant_type.
    let (s, b, _) = block_on(w.exchange(&[("subject_token", "x")]));
    assert_eq!((s, b["error"].as_str().unwrap()), (400, "invalid_request"));
    let (s, b, _) = block_on(w.exchange(&[("grant_type", "client_credentials")]));
    assert_eq!(
        (s, b["error"].as_str().unwrap()),
        (400, "unsupported_grant_type")
    );
    // Wrong method and path.
    let (s, _, h) = get(&w, "/token");
    assert_eq!(s, 405);
    assert_eq!(h["allow"], "POST");
    assert_eq!(get(&w, "/nope").0, 404);
    let req = http::Request::post("/healthz").body(Vec::new()).unwrap();
    assert_eq!(block_on(w.bridge.handle(req)).status(), 405);
    // The kontxt alias.
    let mut req = http::Request::post("/token_endpoint")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            url::form_urlencoded::Serializer::new(String::new())
                .extend_pairs(pairs(&form(&token)))
                .finish()
                .into_bytes(),
        )
        .unwrap();
    req.headers_mut()
        .insert("x-txbridge-workload", "wl-1".parse().unwrap());
    assert_eq!(block_on(w.bridge.handle(req)).status(), 200);
    // A workload header with control characters is refused.
    let (s, b, _) = block_on(w.exchange_with(&pairs(&form(&token)), |r| {
        r.headers_mut().insert(
            "x-txbridge-workload",
            http::HeaderValue::from_bytes(b"a\tb").unwrap(),
        );
    }));
    assert_eq!((s, b["error"].as_str().unwrap()), (400, "invalid_request"));
}

#[test]
fn documents() {
    let w = World::new();
    let (s, jwks, h) = get(&w, "/.well-known/jwks.json");
    assert_eq!(s, 200);
    assert!(h["cache-control"].to_str().unwrap().contains("max-age"));
    assert_eq!(jwks["keys"][0]["kid"], w.signer.key_id());
    assert!(jwks["keys"][0].get("d").is_none(), "no private part");
    for path in [
        "/.well-known/openid-configuration",
        "/.well-known/oauth-authorization-server",
    ] {
        let (s, m, _) = get(&w, path);
        assert_eq!(s, 200);
        assert_eq!(m["issuer"], TD);
        assert_eq!(m["token_endpoint"], format!("{TD}/token"));
        assert_eq!(m["jwks_uri"], format!("{TD}/.well-known/jwks.json"));
        assert_eq!(
            m["grant_types_supported"],
            json!(["urn:ietf:params:oauth:grant-type:token-exchange"])
        );
    }
    let (s, h, _) = get(&w, "/healthz");
    assert_eq!((s, h["status"].as_str().unwrap()), (200, "ok"));
    assert_eq!(w.http.total(), 0, "no upstream calls for documents");
}

/// `req_wl` is authenticated: the header may name the subject's own workload id or a name in
/// the `workloads` of a policy that applies to the subject; anything else is refused.
#[test]
fn workload_header_rules() {
    let w = World::new();
    let (_, jwks, _) = get(&w, "/.well-known/jwks.json");
    let checkout = w.alpha_token("payments", "checkout");
    let reporter = w.alpha_token("team-a", "reporter");
    // (name, token, headers, Ok(req_wl) or Err(()))
    type Row<'a> = (
        &'a str,
        &'a str,
        Vec<(&'static str, &'a str)>,
        Result<&'a str, ()>,
    );
    let rows: Vec<Row> = vec![
        (
            "no header: own id",
            &checkout,
            vec![],
            Ok("alpha:payments:checkout"),
        ),
        (
            "own id",
            &checkout,
            vec![("x-txbridge-workload", "alpha:payments:checkout")],
            Ok("alpha:payments:checkout"),
        ),
        (
            "policy glob",
            &checkout,
            vec![("x-txbridge-workload", "wl-7")],
            Ok("wl-7"),
        ),
        (
            "policy glob, kontxt header",
            &checkout,
            vec![("x-kontxt-workload", "spiffe://example/ns/payments/sa/web")],
            Ok("spiffe://example/ns/payments/sa/web"),
        ),
        (
            "another subject's id, the default shape",
            &checkout,
            vec![("x-txbridge-workload", "alpha:payments:admin")],
            Err(()),
        ),
        (
            "another cluster's id",
            &checkout,
            vec![("x-txbridge-workload", "beta:payments:checkout")],
            Err(()),
        ),
        (
            "contract v3: a glob's * never crosses ':' (wl-* vs a default-shaped id)",
            &checkout,
            vec![("x-txbridge-workload", "wl-eu:payments:admin")],
            Err(()),
        ),
        (
            "contract v3: a glob's * never crosses '/' (one SPIFFE segment only)",
            &checkout,
            vec![(
                "x-txbridge-workload",
                "spiffe://example/ns/payments/sa/web/admin",
            )],
            Err(()),
        ),
        (
            "a glob of a policy that does not apply to the subject",
            &reporter,
            vec![("x-txbridge-workload", "wl-7")],
            Err(()),
        ),
        (
            "a comma (a forged call chain)",
            &checkout,
            vec![("x-txbridge-workload", "wl-1,wl-2")],
            Err(()),
        ),
        (
            "two headers",
            &checkout,
            vec![
                ("x-txbridge-workload", "wl-1"),
                ("x-txbridge-workload", "wl-1"),
            ],
            Err(()),
        ),
        (
            "both header names",
            &checkout,
            vec![
                ("x-txbridge-workload", "wl-1"),
                ("x-kontxt-workload", "wl-1"),
            ],
            Err(()),
        ),
    ];
    for (name, token, headers, want) in rows {
        let (status, body, _) = block_on(w.exchange_with(&pairs(&form(token)), |req| {
            for (k, v) in &headers {
                req.headers_mut().append(*k, v.parse().unwrap());
            }
        }));
        match want {
            Ok(req_wl) => {
                assert_eq!(status, 200, "{name}: {body}");
                let (_, c) = verify_txtoken(&jwks, body["access_token"].as_str().unwrap());
                assert_eq!(c["req_wl"], req_wl, "{name}");
                assert_eq!(c["rctx"]["req_wl"], req_wl, "{name}");
            }
            Err(()) => {
                assert_eq!(
                    (
                        status,
                        body["error"].as_str(),
                        body["error_description"].as_str()
                    ),
                    (
                        400,
                        Some("invalid_request"),
                        Some("workload not authorized")
                    ),
                    "{name}: {body}"
                );
                assert!(body.get("access_token").is_none(), "{name}");
            }
        }
    }
}

/// The kontxt quickstart's caller, unchanged: `/token_endpoint`, `X-Kontxt-Workload:
/// spiffe://<domain>/ns/<ns>/sa/<sa>`, request_details and request_context, against a cluster
/// whose `workload_id` renders exactly that id.
#[test]
fn kontxt_quickstart_caller_keeps_working() {
    let toml = config_toml("").replace(
        "name = \"alpha\"",
        "name = \"alpha\"\nworkload_id = \"spiffe://example.test/ns/${namespace}/sa/${service_account}\"",
    );
    let w = World::with_config(&toml);
    let token = w.alpha_token("payments", "checkout");
    let mut f = form(&token);
    f.push(("scope", "orders:read orders:write".into()));
    f.push((
        "request_details",
        r#"{"namespace":"payments","taskType":"container"}"#.into(),
    ));
    f.push((
        "request_context",
        r#"{"purpose":"mit-license-check","source":"kubernetes-projected-service-account","repository":"https://github.com/sozercan/orka.git"}"#.into(),
    ));
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs(&f))
        .finish();
    let req = http::Request::post("/token_endpoint")
        .header(
            "x-kontxt-workload",
            "spiffe://example.test/ns/payments/sa/checkout",
        )
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.into_bytes())
        .unwrap();
    let resp = block_on(w.bridge.handle(req));
    let body: Value = serde_json::from_slice(resp.body()).unwrap();
    assert_eq!(resp.status(), 200, "{body}");
    let (_, jwks, _) = get(&w, "/.well-known/jwks.json");
    let (_, c) = verify_txtoken(&jwks, body["access_token"].as_str().unwrap());
    assert_eq!(c["req_wl"], "spiffe://example.test/ns/payments/sa/checkout");
    assert_eq!(c["tctx"]["taskType"], "container");
    assert_eq!(c["rctx"]["purpose"], "mit-license-check");
    // Another workload of the cluster cannot claim it.
    let mut f = form(&w.alpha_token("team-a", "reporter"));
    f.push(("scope", "reports:read".into()));
    let (status, body, _) = block_on(w.exchange_with(&pairs(&f), |req| {
        req.headers_mut().insert(
            "x-kontxt-workload",
            "spiffe://example.test/ns/payments/sa/checkout"
                .parse()
                .unwrap(),
        );
    }));
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
}

/// The log fingerprint reads only a body within the size cap; a hostile `scope` is refused
/// before any key is fetched.
#[test]
fn hostile_bodies_are_refused_before_any_work() {
    let w = World::new();
    let token = w.alpha_token("payments", "checkout");
    let scopes: Vec<String> = (0..9_500).map(|i| format!("s{i}")).collect();
    let mut f = form(&token);
    f.push(("scope", scopes.join(" ")));
    let (status, body, _) = block_on(w.exchange(&pairs(&f)));
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_scope"))
    );
    assert_eq!(w.http.total(), 0, "no fetch");
}

/// The cost of refusing a hostile `scope` does not grow with the number of distinct tokens: a
/// body of ~9,500 distinct tokens is refused about as fast as one repeating a single token (it
/// was ~1.3e8 string compares before the cap stopped the parse). A regression test on the
/// ratio's order of magnitude (best of many runs, so load on the machine cannot fake it); the
/// figures themselves come from the `hostile` benchmark.
#[test]
fn hostile_scope_costs_are_linear() {
    let w = World::new();
    let token = w.alpha_token("payments", "checkout");
    let body = |scope: String| {
        let mut f = form(&token);
        f.push(("scope", scope));
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs(&f))
            .finish()
            .into_bytes()
    };
    let distinct = body(
        (0..9_500)
            .map(|i| format!("s{i}"))
            .collect::<Vec<_>>()
            .join(" "),
    );
    let repeated = body(vec!["s9999"; 9_500].join(" "));
    let best = |b: &[u8]| {
        (0..25)
            .map(|_| {
                let req = http::Request::post("/token")
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(b.to_vec())
                    .unwrap();
                let started = std::time::Instant::now();
                let resp = block_on(w.bridge.handle(req));
                let took = started.elapsed();
                assert_eq!(resp.status(), 400);
                took
            })
            .min()
            .unwrap()
    };
    let (d, r) = (best(&distinct), best(&repeated));
    let ratio = d.as_secs_f64() / r.as_secs_f64();
    assert!(ratio < 5.0, "distinct {d:?} vs repeated {r:?}: {ratio:.1}x");
}

/// Found by fuzzing (fuzz/, target `handler`): a signed token whose claims were not valid JSON
/// inside a member txbridge ignores was accepted. Refused as "claims are invalid", before any
/// key fetch.
#[test]
fn claims_must_be_completely_valid_json() {
    use base64::Engine as _;
    let b64 = |b: &[u8]| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b);
    let w = World::new();
    let header = b64(br#"{"alg":"RS256","kid":"a1"}"#);
    let bad: [Vec<u8>; 2] = [
        [
            format!(r#"{{"iss":"{ALPHA_ISS}","jti":""#).as_bytes(),
            b"\xcc\xcf\"}",
        ]
        .concat(),
        format!(r#"{{"iss":"{ALPHA_ISS}","jti":"\ud800"}}"#).into_bytes(),
    ];
    for claims in bad {
        let input = format!("{header}.{}", b64(&claims));
        let token = format!("{input}.{}", b64(&w.alpha.sign(input.as_bytes())));
        let (status, body, _) = block_on(w.exchange(&pairs(&form(&token))));
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"], "invalid_request");
        assert_eq!(
            body["error_description"],
            "invalid subject token: token claims are invalid"
        );
    }
    assert_eq!(
        w.http.total(),
        0,
        "no key fetch for a token refused on its claims"
    );
}

/// The TxToken for `details` (a `request_details` JSON text), or the error answer.
fn exchange_with_details(w: &World, details: &str) -> (u16, Value) {
    let mut f = form(&w.alpha_token("payments", "checkout"));
    f.push(("request_details", details.to_owned()));
    let (status, body, _) = block_on(w.exchange(&pairs(&f)));
    (status, body)
}

/// Contract v3: no TxToken is ever longer than the 8 KiB the service and the verifier accept.
/// A request whose token would be longer gets invalid_request "transaction token too large";
/// the largest one issued still fits, so it can be replaced and verified.
#[test]
fn tokens_never_exceed_what_consumers_accept() {
    let w = World::new();
    let blob = |n: usize| json!({ "blob": "x".repeat(n) }).to_string();
    let (status, body) = exchange_with_details(&w, &blob(12_000));
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request"))
    );
    assert_eq!(body["error_description"], "transaction token too large");
    assert!(body.get("access_token").is_none());

    // The boundary: the largest request_details still issued gives a token of at most 8 KiB.
    let (mut lo, mut hi) = (0usize, 12_000usize);
    while lo + 1 < hi {
        let mid = (lo + hi) / 2;
        if exchange_with_details(&w, &blob(mid)).0 == 200 {
            lo = mid;
        } else {
            hi = mid;
        }
    }
    let (status, body) = exchange_with_details(&w, &blob(lo));
    assert_eq!(status, 200, "{body}");
    let token = body["access_token"].as_str().unwrap();
    assert!(token.len() <= 8 * 1024, "{}", token.len());
    assert!(
        token.len() > 8 * 1024 - 8,
        "the bound is the token's length: {}",
        token.len()
    );
    txbridge_jose::parse_compact(token).expect("the service accepts its own token");
    let (status, body) = exchange_with_details(&w, &blob(hi));
    assert_eq!(
        (status, body["error_description"].as_str()),
        (400, Some("transaction token too large"))
    );
}

/// Until the signature has verified, no error_description tells a trusted issuer from an
/// untrusted one (no enumeration of the trusted clusters without a token); after it, the
/// holder of a validly signed token is told what to fix.
#[test]
fn descriptions_do_not_tell_trusted_issuers_apart() {
    let describe = |token: &dyn Fn(&World) -> String| {
        let w = World::new();
        let t = token(&w);
        let (status, body, _) = block_on(w.exchange(&pairs(&form(&t))));
        assert_eq!(status, 400, "{body}");
        body["error_description"].as_str().unwrap().to_owned()
    };
    let untrusted = describe(&alpha_with(|_, c| c["iss"] = json!("https://evil.example")));
    let bad_signature = describe(&|_w: &World| {
        craft(
            &json!({"alg": "RS256", "kid": "a1"}),
            &sa_claims(ALPHA_ISS, "payments", "checkout"),
            &rsa_key(1),
        )
    });
    let unknown_kid = describe(&alpha_with(|h, _| h["kid"] = json!("nope")));
    let wrong_alg = describe(&alpha_with(|h, _| h["alg"] = json!("ES256")));
    assert_eq!(
        untrusted,
        "invalid subject token: token could not be verified"
    );
    for (name, d) in [
        ("bad signature", &bad_signature),
        ("unknown kid", &unknown_kid),
        ("wrong alg", &wrong_alg),
    ] {
        assert_eq!(d, &untrusted, "{name}");
    }
    // Signed by the trusted issuer: the client learns what to fix.
    let expired = describe(&alpha_with(|_, c| {
        c["iat"] = json!(NOW - 7200);
        c["exp"] = json!(NOW - 3600);
    }));
    assert_eq!(expired, "invalid subject token: token is expired");
    let audience = describe(&alpha_with(|_, c| c["aud"] = json!(["other"])));
    assert_eq!(audience, "invalid subject token: audience is not accepted");
}

/// A world whose only policy for alpha's `conditional/*` subjects carries `condition`.
fn conditional_world(condition: &str) -> World {
    World::with_config(&config_toml(&format!(
        r#"
[[policies]]
id = "conditional"
cluster = "alpha"
namespace = "conditional"
service_account = "*"
scopes = ["orders:read", "orders:write"]
condition = '{condition}'
"#
    )))
}

/// An SA token of alpha's `conditional/<sa>` in pod `pod`.
fn token_in_pod(w: &World, sa: &str, pod: &str) -> String {
    let mut claims = sa_claims(ALPHA_ISS, "conditional", sa);
    claims["kubernetes.io"]["pod"]["name"] = json!(pod);
    craft(&json!({"alg": "RS256", "kid": "a1"}), &claims, &w.alpha)
}

fn status_with(w: &World, token: &str, extra: &[(&'static str, &str)]) -> (u16, Value) {
    let mut f = form(token);
    for (k, v) in extra {
        f.push((k, (*v).to_owned()));
    }
    let (status, body, _) = block_on(w.exchange(&pairs(&f)));
    (status, body)
}

/// Policy conditions through the handler: a pod-name condition over the SA token's claims; a
/// request_details + scope condition; an evaluation error counts as false (a generic refusal for
/// the client, the detail in the debug log and `policy explain`).
#[test]
fn policy_conditions_decide_with_the_policies() {
    let w =
        conditional_world(r#"subject.claims["kubernetes.io"].pod.name.startsWith("checkout-")"#);
    let (status, body) = status_with(&w, &token_in_pod(&w, "web", "checkout-7d9f"), &[]);
    assert_eq!(status, 200, "{body}");
    let (status, body) = status_with(&w, &token_in_pod(&w, "web", "admin-1"), &[]);
    assert_eq!(
        (status, body["error_description"].as_str()),
        (400, Some("subject not authorized"))
    );

    let w = conditional_world(
        r#"!("orders:write" in request.scope) || request.request_details.ticket.startsWith("INC-")"#,
    );
    let t = token_in_pod(&w, "web", "p");
    assert_eq!(status_with(&w, &t, &[("scope", "orders:read")]).0, 200);
    let ticket = r#"{"ticket":"INC-42"}"#;
    assert_eq!(
        status_with(
            &w,
            &t,
            &[("scope", "orders:write"), ("request_details", ticket)]
        )
        .0,
        200
    );
    let wrong = r#"{"ticket":"CHG-1"}"#;
    let (status, body) = status_with(
        &w,
        &t,
        &[("scope", "orders:write"), ("request_details", wrong)],
    );
    assert_eq!(
        (status, body["error"].as_str()),
        (400, Some("invalid_request")),
        "{body}"
    );
    // No ticket at all: `request.request_details.ticket` is an evaluation error, hence false.
    let (status, body) = status_with(&w, &t, &[("scope", "orders:write")]);
    assert_eq!(
        (status, body["error_description"].as_str()),
        (400, Some("subject not authorized"))
    );

    // The workload a request names is what `request.workload` reads.
    let w = conditional_world(r#"request.workload == "alpha:conditional:web""#);
    assert_eq!(status_with(&w, &token_in_pod(&w, "web", "p"), &[]).0, 200);
    assert_eq!(status_with(&w, &token_in_pod(&w, "job", "p"), &[]).0, 400);
}

/// On a replacement the subject's policies are checked again with `request.replacement` true
/// and the TxToken's claims as `subject.claims`, and the actor's with the actor as subject.
#[test]
fn conditions_see_replacements() {
    let w = World::with_config(&config_toml(
        r#"
[[policies]]
id = "no-replacement"
cluster = "alpha"
namespace = "conditional"
service_account = "*"
scopes = ["orders:read"]
condition = '!request.replacement || subject.claims.scope == "orders:read"'
"#,
    ));
    let (status, body) = status_with(
        &w,
        &token_in_pod(&w, "web", "p"),
        &[("scope", "orders:read")],
    );
    assert_eq!(status, 200, "{body}");
    let txtoken = body["access_token"].as_str().unwrap().to_owned();
    let mut f = form(&txtoken);
    f[2].1 = "urn:ietf:params:oauth:token-type:txn_token".into();
    f.push(("actor_token", w.alpha_token("orders", "worker")));
    f.push((
        "actor_token_type",
        "urn:ietf:params:oauth:token-type:jwt".into(),
    ));
    let (status, body, _) = block_on(w.exchange(&pairs(&f)));
    assert_eq!(status, 200, "{body}");
}
