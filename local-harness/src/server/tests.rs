//! In-process tests: the server on 127.0.0.1:0, driven over real HTTP.

use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use jsonwebtoken::jwk::JwkSet;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::*;

struct Running {
    base: String,
    http: reqwest::Client,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), Error>>,
}

impl Running {
    async fn start(clusters: Vec<ClusterSpec>) -> Running {
        let options = ServeOptions {
            clusters,
            key_dir: None,
        };
        let harness = Harness::bind("127.0.0.1:0".parse().unwrap(), options)
            .await
            .unwrap();
        let base = harness.base_url().to_owned();
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(harness.run(async {
            let _ = stopped.await;
        }));
        let http = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap();
        Running {
            base,
            http,
            stop: Some(stop),
            task,
        }
    }

    async fn defaults() -> Running {
        Running::start(Vec::new()).await
    }

    async fn get(&self, url: &str) -> reqwest::Response {
        self.http.get(url).send().await.unwrap()
    }

    async fn get_json(&self, url: &str) -> Value {
        let resp = self.get(url).await;
        assert_eq!(resp.status(), 200, "GET {url}");
        resp.json().await.unwrap()
    }

    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let resp = self
            .http
            .post(format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = resp.status().as_u16();
        (status, resp.json().await.unwrap())
    }

    async fn cluster(&self, name: &str) -> Value {
        let all = self
            .get_json(&format!("{}/admin/clusters", self.base))
            .await;
        all["clusters"]
            .as_array()
            .unwrap()
            .iter()
            .find(|c| c["name"] == name)
            .unwrap()
            .clone()
    }

    async fn token(&self, cluster: &str, spec: Value) -> (u16, Value) {
        self.post(
            &format!(
                "/clusters/{cluster}/api/v1/namespaces/payments/serviceaccounts/checkout/token"
            ),
            json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest", "spec": spec}),
        )
        .await
    }

    async fn sign(&self, cluster: &str, body: Value) -> (u16, Value) {
        self.post(&format!("/admin/clusters/{cluster}/sign"), body)
            .await
    }

    async fn fault(&self, cluster: &str, target: &str, mode: &str) {
        let (status, _) = self
            .post(
                &format!("/admin/clusters/{cluster}/fault"),
                json!({"target": target, "mode": mode}),
            )
            .await;
        assert_eq!(status, 200);
    }

    async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(10), self.task)
            .await
            .expect("server stops within the grace period")
            .unwrap()
            .unwrap();
    }
}

fn segment(token: &str, i: usize) -> Value {
    let part = token.split('.').nth(i).unwrap();
    serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
}

/// Verifies `token` against the JWKS the cluster serves, as a relying party would.
async fn verify(h: &Running, cluster: &str, token: &str, alg: Algorithm) -> Result<Value, String> {
    let info = h.cluster(cluster).await;
    let jwks: JwkSet =
        serde_json::from_value(h.get_json(info["jwks_url"].as_str().unwrap()).await).unwrap();
    let header = jsonwebtoken::decode_header(token).map_err(|e| e.to_string())?;
    let kid = header.kid.ok_or("no kid")?;
    let jwk = jwks.find(&kid).ok_or("kid not in JWKS")?;
    let mut v = Validation::new(alg);
    v.set_audience(&["txbridge"]);
    v.set_issuer(&[info["issuer"].as_str().unwrap()]);
    jsonwebtoken::decode::<Value>(token, &DecodingKey::from_jwk(jwk).unwrap(), &v)
        .map(|d| d.claims)
        .map_err(|e| e.to_string())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serves_discovery_jwks_and_tokens_like_kube_apiserver() {
    let h = Running::defaults().await;
    let alpha = h.cluster("alpha").await;
    let beta = h.cluster("beta").await;
    let base = &h.base;

    // Direct cluster: issuer is its own URL, documents under it.
    assert_eq!(alpha["issuer"], format!("{base}/clusters/alpha"));
    assert_eq!(alpha["api_server"], format!("{base}/clusters/alpha"));
    assert_eq!(alpha["alg"], "RS256");
    assert_eq!(alpha["mirror"], false);
    let disc = h.get_json(alpha["discovery_url"].as_str().unwrap()).await;
    assert_eq!(
        alpha["discovery_url"],
        format!("{base}/clusters/alpha/.well-known/openid-configuration")
    );
    assert_eq!(disc["issuer"], alpha["issuer"]);
    assert_eq!(
        disc["jwks_uri"],
        format!("{base}/clusters/alpha/openid/v1/jwks")
    );
    assert_eq!(disc["response_types_supported"], json!(["id_token"]));
    assert_eq!(disc["subject_types_supported"], json!(["public"]));
    assert_eq!(
        disc["id_token_signing_alg_values_supported"],
        json!(["RS256"])
    );
    let jwks = h.get_json(disc["jwks_uri"].as_str().unwrap()).await;
    assert_eq!(jwks["keys"].as_array().unwrap().len(), 1);
    assert_eq!(jwks["keys"][0]["kid"], alpha["kids"][0]);
    assert_eq!(jwks["keys"][0]["kty"], "RSA");
    assert_eq!(jwks["keys"][0]["use"], "sig");
    // Not a mirror: nothing under /mirror.
    assert_eq!(
        h.get(&format!(
            "{base}/mirror/alpha/.well-known/openid-configuration"
        ))
        .await
        .status(),
        404
    );

    // Mirror cluster: issuer string elsewhere, documents under /mirror.
    assert_eq!(beta["issuer"], "https://beta.cluster.invalid");
    assert_eq!(
        beta["discovery_url"],
        format!("{base}/mirror/beta/.well-known/openid-configuration")
    );
    assert_eq!(
        beta["jwks_url"],
        format!("{base}/mirror/beta/openid/v1/jwks")
    );
    let disc = h.get_json(beta["discovery_url"].as_str().unwrap()).await;
    assert_eq!(disc["issuer"], "https://beta.cluster.invalid");
    assert_eq!(disc["jwks_uri"], beta["jwks_url"]);
    assert_eq!(
        disc["id_token_signing_alg_values_supported"],
        json!(["ES256"])
    );
    let jwks = h.get_json(beta["jwks_url"].as_str().unwrap()).await;
    assert_eq!(jwks["keys"][0]["kty"], "EC");
    assert_eq!(jwks["keys"][0]["crv"], "P-256");

    // TokenRequest API, both clusters; tokens verify against the served JWKS.
    for (name, alg) in [("alpha", Algorithm::RS256), ("beta", Algorithm::ES256)] {
        let (status, resp) = h
            .token(
                name,
                json!({"audiences": ["txbridge"], "expirationSeconds": 900,
                       "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": "web-0"}}),
            )
            .await;
        assert_eq!(status, 201, "{resp}");
        assert_eq!(resp["kind"], "TokenRequest");
        assert_eq!(resp["apiVersion"], "authentication.k8s.io/v1");
        assert_eq!(resp["metadata"]["name"], "checkout");
        assert_eq!(resp["spec"]["expirationSeconds"], 900);
        let token = resp["status"]["token"].as_str().unwrap();
        let expires = resp["status"]["expirationTimestamp"].as_str().unwrap();
        assert!(humantime::parse_rfc3339(expires).is_ok(), "{expires}");
        let header = segment(token, 0);
        assert_eq!(
            header.as_object().unwrap().len(),
            2,
            "alg and kid only: {header}"
        );
        let claims = verify(&h, name, token, alg).await.unwrap();
        assert_eq!(claims["sub"], "system:serviceaccount:payments:checkout");
        assert_eq!(
            claims["exp"].as_i64().unwrap() - claims["iat"].as_i64().unwrap(),
            900
        );
        assert_eq!(claims["nbf"], claims["iat"]);
        assert_eq!(claims["kubernetes.io"]["pod"]["name"], "web-0");
        assert_eq!(claims["kubernetes.io"]["namespace"], "payments");
    }

    // Defaults: audience = issuer, one hour; too short is refused like kube-apiserver (422).
    let (status, resp) = h.token("alpha", json!({})).await;
    assert_eq!(status, 201);
    assert_eq!(resp["spec"]["audiences"], json!([alpha["issuer"]]));
    assert_eq!(resp["spec"]["expirationSeconds"], 3600);
    let claims = segment(resp["status"]["token"].as_str().unwrap(), 1);
    assert!(claims["kubernetes.io"].get("pod").is_none());
    let (status, resp) = h.token("alpha", json!({"expirationSeconds": 60})).await;
    assert_eq!((status, resp["kind"].as_str()), (422, Some("Status")));
    let (status, _) = h.token("nope", json!({})).await;
    assert_eq!(status, 404);

    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_sign_modes() {
    let h = Running::defaults().await;
    let alpha = h.cluster("alpha").await;
    let beta = h.cluster("beta").await;
    let now = jsonwebtoken::get_current_timestamp();
    let claims = |iss: &Value| {
        json!({"iss": iss, "sub": "system:serviceaccount:payments:checkout", "aud": ["txbridge"],
               "iat": now, "nbf": now, "exp": now + 600, "extra": "x"})
    };

    // Active keys: verify against the JWKS; header and claims are signed byte for byte.
    for (name, info, alg) in [
        ("alpha", &alpha, Algorithm::RS256),
        ("beta", &beta, Algorithm::ES256),
    ] {
        let header = json!({"alg": info["alg"], "kid": info["kids"][0], "typ": "JWT"});
        let (status, resp) = h
            .sign(
                name,
                json!({"header": header, "claims": claims(&info["issuer"]), "key": "active"}),
            )
            .await;
        assert_eq!(status, 200, "{resp}");
        let token = resp["token"].as_str().unwrap();
        assert_eq!(segment(token, 0), header);
        assert_eq!(verify(&h, name, token, alg).await.unwrap()["extra"], "x");
    }
    // Exact bytes: odd key order and spacing survive.
    let raw = r#"{"header": {"kid":"k", "alg":"RS256"}, "claims": {"sub":"a","sub":"b"}}"#;
    let resp: Value = h
        .http
        .post(format!("{}/admin/clusters/alpha/sign", h.base))
        .body(raw)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = resp["token"].as_str().unwrap();
    let part = |i: usize| {
        URL_SAFE_NO_PAD
            .decode(token.split('.').nth(i).unwrap())
            .unwrap()
    };
    assert_eq!(part(0), br#"{"kid":"k", "alg":"RS256"}"#);
    assert_eq!(part(1), br#"{"sub":"a","sub":"b"}"#);

    // Foreign key: well-formed, not published, does not verify.
    let header = json!({"alg": "RS256", "kid": alpha["kids"][0]});
    let (status, resp) = h
        .sign(
            "alpha",
            json!({"header": header, "claims": claims(&alpha["issuer"]), "key": "foreign"}),
        )
        .await;
    assert_eq!(status, 200);
    assert_ne!(resp["kid"], alpha["kids"][0]);
    let err = verify(
        &h,
        "alpha",
        resp["token"].as_str().unwrap(),
        Algorithm::RS256,
    )
    .await
    .unwrap_err();
    assert!(err.contains("InvalidSignature"), "{err}");

    // No kid given: none added.
    let (_, resp) = h
        .sign(
            "beta",
            json!({"header": {"alg": "ES256"}, "claims": claims(&beta["issuer"])}),
        )
        .await;
    assert_eq!(
        segment(resp["token"].as_str().unwrap(), 0),
        json!({"alg": "ES256"})
    );

    // alg none: empty signature.
    let (status, resp) = h
        .sign(
            "alpha",
            json!({"header": {"alg": "none"}, "claims": claims(&alpha["issuer"])}),
        )
        .await;
    assert_eq!(status, 200);
    let token = resp["token"].as_str().unwrap();
    assert!(token.ends_with('.'), "{token}");
    assert_eq!(token.split('.').count(), 3);

    // HS256 keyed with the public key PEM (algorithm confusion).
    let jwks: JwkSet =
        serde_json::from_value(h.get_json(alpha["jwks_url"].as_str().unwrap()).await).unwrap();
    let pem = {
        use rsa::pkcs8::EncodePublicKey as _;
        let jsonwebtoken::jwk::AlgorithmParameters::RSA(p) = &jwks.keys[0].algorithm else {
            panic!("RSA key expected");
        };
        let n = rsa::BigUint::from_bytes_be(&URL_SAFE_NO_PAD.decode(&p.n).unwrap());
        let e = rsa::BigUint::from_bytes_be(&URL_SAFE_NO_PAD.decode(&p.e).unwrap());
        rsa::RsaPublicKey::new(n, e)
            .unwrap()
            .to_public_key_pem(rsa::pkcs8::LineEnding::LF)
            .unwrap()
    };
    let (status, resp) = h
        .sign(
            "alpha",
            json!({"header": {"alg": "HS256", "kid": alpha["kids"][0]}, "claims": claims(&alpha["issuer"])}),
        )
        .await;
    assert_eq!(status, 200);
    let mut v = Validation::new(Algorithm::HS256);
    v.set_audience(&["txbridge"]);
    let token = resp["token"].as_str().unwrap();
    jsonwebtoken::decode::<Value>(token, &DecodingKey::from_secret(pem.as_bytes()), &v).unwrap();

    // Header alg that does not fit the key: refused, unless key_mismatch.
    let body = json!({"header": {"alg": "RS256", "kid": beta["kids"][0]}, "claims": claims(&beta["issuer"])});
    let (status, _) = h.sign("beta", body.clone()).await;
    assert_eq!(status, 400);
    let mut body = body;
    body["key_mismatch"] = json!(true);
    let (status, resp) = h.sign("beta", body).await;
    assert_eq!(status, 200);
    assert_eq!(resp["signed_with"], "ES256");
    let token = resp["token"].as_str().unwrap();
    assert_eq!(segment(token, 0)["alg"], "RS256");
    let (input, signature) = token.rsplit_once('.').unwrap();
    let jwk = jwks_of(&h, &beta).await.keys.remove(0);
    assert!(
        jsonwebtoken::crypto::verify(
            signature,
            input.as_bytes(),
            &DecodingKey::from_jwk(&jwk).unwrap(),
            Algorithm::ES256
        )
        .unwrap()
    );

    h.stop().await;
}

async fn jwks_of(h: &Running, info: &Value) -> JwkSet {
    serde_json::from_value(h.get_json(info["jwks_url"].as_str().unwrap()).await).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_keeps_or_drops_the_old_key() {
    let h = Running::start(vec![ClusterSpec::direct("gamma", Alg::ES256)]).await;
    let before = h.cluster("gamma").await;
    let old_kid = before["kids"][0].clone();
    let (_, resp) = h.token("gamma", json!({"audiences": ["txbridge"]})).await;
    let old_token = resp["status"]["token"].as_str().unwrap().to_owned();

    let (status, resp) = h.post("/admin/clusters/gamma/rotate", json!({})).await;
    assert_eq!(status, 200);
    let new_kid = resp["kid"].clone();
    assert_ne!(new_kid, old_kid);
    let after = h.cluster("gamma").await;
    assert_eq!(after["kids"], json!([new_kid, old_kid]));
    assert_eq!(jwks_of(&h, &after).await.keys.len(), 2);
    // Old tokens still verify (overlap); new ones carry the new kid.
    verify(&h, "gamma", &old_token, Algorithm::ES256)
        .await
        .unwrap();
    let (_, resp) = h.token("gamma", json!({"audiences": ["txbridge"]})).await;
    let new_token = resp["status"]["token"].as_str().unwrap();
    assert_eq!(segment(new_token, 0)["kid"], new_kid);

    let (status, resp) = h
        .post("/admin/clusters/gamma/rotate?keep_old=false", json!({}))
        .await;
    assert_eq!(status, 200);
    let after = h.cluster("gamma").await;
    assert_eq!(after["kids"], json!([resp["kid"]]));
    let err = verify(&h, "gamma", &old_token, Algorithm::ES256)
        .await
        .unwrap_err();
    assert!(err.contains("kid not in JWKS"), "{err}");

    // A key published late: it signs at once, the JWKS lists it only after /publish.
    let (status, resp) = h
        .post("/admin/clusters/gamma/rotate?publish=false", json!({}))
        .await;
    assert_eq!(status, 200);
    let late_kid = resp["kid"].clone();
    let (_, resp) = h.token("gamma", json!({"audiences": ["txbridge"]})).await;
    let late_token = resp["status"]["token"].as_str().unwrap().to_owned();
    assert_eq!(segment(&late_token, 0)["kid"], late_kid);
    let info = h.cluster("gamma").await;
    let listed = |jwks: &JwkSet| {
        jwks.keys
            .iter()
            .any(|k| k.common.key_id.as_deref() == late_kid.as_str())
    };
    assert!(!listed(&jwks_of(&h, &info).await), "not published yet");
    let (status, _) = h.post("/admin/clusters/gamma/publish", json!({})).await;
    assert_eq!(status, 200);
    assert!(listed(&jwks_of(&h, &info).await), "published");
    verify(&h, "gamma", &late_token, Algorithm::ES256)
        .await
        .unwrap();

    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn faults_and_stats() {
    let h = Running::defaults().await;
    let beta = h.cluster("beta").await;
    let disc = beta["discovery_url"].as_str().unwrap();
    let jwks = beta["jwks_url"].as_str().unwrap();
    let (status, _) = h.post("/admin/stats/reset", json!({})).await;
    assert_eq!(status, 200);

    h.fault("beta", "both", "status500").await;
    assert_eq!(h.get(disc).await.status(), 500);
    assert_eq!(h.get(jwks).await.status(), 500);

    h.fault("beta", "jwks", "garbage").await;
    let resp = h.get(jwks).await;
    assert_eq!(resp.status(), 200);
    assert!(serde_json::from_slice::<Value>(&resp.bytes().await.unwrap()).is_err());
    assert_eq!(h.get(disc).await.status(), 500, "discovery fault unchanged");

    h.fault("beta", "jwks", "huge").await;
    let resp = h.get(jwks).await;
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.bytes().await.unwrap().len(), HUGE_BODY_BYTES);

    h.fault("beta", "discovery", "redirect").await;
    let resp = h.get(disc).await;
    assert_eq!(resp.status(), 302);
    let port = h.base.rsplit(':').next().unwrap();
    assert_eq!(
        resp.headers()[header::LOCATION],
        format!("http://127.0.0.2:{port}/mirror/beta/.well-known/openid-configuration")
    );

    // Hang: no answer within a client timeout; a hanging request completes once healed.
    h.fault("beta", "jwks", "hang").await;
    let timed_out = h
        .http
        .get(jwks)
        .timeout(Duration::from_millis(300))
        .send()
        .await
        .unwrap_err();
    assert!(timed_out.is_timeout());
    let pending = tokio::spawn(h.http.get(jwks).send());
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(!pending.is_finished());
    h.fault("beta", "both", "none").await;
    let resp = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert!(resp.json::<Value>().await.unwrap()["keys"].is_array());
    assert_eq!(h.get_json(disc).await["issuer"], beta["issuer"]);

    // Other cluster untouched; stats count every request, faulted or not.
    let _ = h.token("alpha", json!({})).await;
    let stats = h.get_json(&format!("{}/admin/stats", h.base)).await;
    assert_eq!(
        stats["clusters"]["beta"],
        json!({"discovery": 4, "jwks": 5, "token_requests": 0})
    );
    assert_eq!(
        stats["clusters"]["alpha"],
        json!({"discovery": 0, "jwks": 0, "token_requests": 1})
    );
    h.post("/admin/stats/reset", json!({})).await;
    let stats = h.get_json(&format!("{}/admin/stats", h.base)).await;
    assert_eq!(stats["clusters"]["beta"]["jwks"], 0);

    // Shutdown releases a hanging request at once.
    h.fault("beta", "jwks", "hang").await;
    let pending = tokio::spawn(h.http.get(jwks).send());
    tokio::time::sleep(Duration::from_millis(200)).await;
    h.stop().await;
    let _ = tokio::time::timeout(Duration::from_secs(5), pending)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn custom_issuers_and_key_dir() {
    let dir = std::env::temp_dir().join(format!("txbridge-harness-keys-{}", std::process::id()));
    let specs = vec![
        "name=m1,alg=ES256,mirror,issuer=https://oidc.example/id/ABC"
            .parse::<ClusterSpec>()
            .unwrap(),
        "name=d1,alg=ES256,issuer=https://kubernetes.default.svc"
            .parse()
            .unwrap(),
    ];
    let options = ServeOptions {
        clusters: specs.clone(),
        key_dir: Some(dir.clone()),
    };
    let first = Harness::bind("127.0.0.1:0".parse().unwrap(), options.clone())
        .await
        .unwrap();
    let infos = first.clusters();
    assert_eq!(infos[0].issuer, "https://oidc.example/id/ABC");
    assert!(
        infos[0]
            .discovery_url
            .ends_with("/mirror/m1/.well-known/openid-configuration")
    );
    assert_eq!(infos[1].issuer, "https://kubernetes.default.svc");
    assert!(
        infos[1]
            .discovery_url
            .ends_with("/clusters/d1/.well-known/openid-configuration")
    );
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(dir.join("m1.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    drop(first);
    // Same keys on the next start.
    let second = Harness::bind("127.0.0.1:0".parse().unwrap(), options)
        .await
        .unwrap();
    assert_eq!(second.clusters()[0].kids, infos[0].kids);
    std::fs::remove_dir_all(&dir).unwrap();

    let doubled = ServeOptions {
        clusters: vec![specs[0].clone(), specs[0].clone()],
        key_dir: None,
    };
    assert!(
        Harness::bind("127.0.0.1:0".parse().unwrap(), doubled)
            .await
            .is_err()
    );
}

#[test]
fn ready_file_is_written_atomically() {
    let path = std::env::temp_dir().join(format!(
        "txbridge-harness-ready-{}.json",
        std::process::id()
    ));
    write_json_atomically(
        &path,
        &json!({"base_url": "http://127.0.0.1:1", "clusters": []}),
    )
    .unwrap();
    let doc: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(doc["base_url"], "http://127.0.0.1:1");
    std::fs::remove_file(&path).unwrap();
}
