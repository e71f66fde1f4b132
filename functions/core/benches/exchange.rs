//! The warm exchange measured against its crypto floor, the verification backends, and the
//! in-process throughput on two worker threads.
//!
//! `bash bench/run.sh` runs this (with a bounded measurement time) and writes BENCHMARKS.md from
//! `target/criterion/*/*/new/estimates.json`; `cargo bench -p txbridge-core --bench exchange`
//! runs it alone. Benchmark ids are what BENCHMARKS.md refers to: keep them stable.
//!
//! Two builds: without features (rsa/p256, the Worker's backend) and with
//! `--features aws-lc,txbridge-signer/aws-lc` (aws-lc-rs, the Lambda's). `floor` and `exchange`
//! measure whichever backend the build has; `backend` compares the crates side by side and runs
//! only in the build without the features, where core's `VerifyKey` is rsa/p256.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    missing_debug_implementations
)]

use std::hint::black_box;
use std::sync::Arc;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use futures::executor::block_on;
use serde_json::{Value, json};
use txbridge_jose::{self as jose, Algorithm, VerifyKey};
use txbridge_signer::{LocalSigner, Signer as _};
use txbridge_test_support::{TestKey, World, form, pairs};

/// The exchange request a pod sends (no scope, no details: the policy ceiling is granted).
fn exchange_request(token: &str) -> http::Request<Vec<u8>> {
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs(&form(token)))
        .finish();
    http::Request::post("/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body.into_bytes())
        .unwrap()
}

/// A world whose key cache holds both clusters' keys (one exchange each has fetched them).
fn primed_world() -> World {
    let world = World::new();
    for token in [
        world.alpha_token("payments", "checkout"),
        world.beta_token("payments", "checkout"),
    ] {
        let resp = block_on(world.bridge.handle(exchange_request(&token)));
        assert_eq!(resp.status(), 200, "priming exchange");
    }
    world
}

/// The signing input of a TxToken the service really minted (what the floor's sign signs).
fn txtoken_signing_input(world: &World) -> Vec<u8> {
    let token = world.alpha_token("payments", "checkout");
    let resp = block_on(world.bridge.handle(exchange_request(&token)));
    let body: Value = serde_json::from_slice(resp.body()).unwrap();
    let txtoken = body["access_token"].as_str().unwrap();
    let (input, _sig) = txtoken.rsplit_once('.').unwrap();
    input.as_bytes().to_vec()
}

/// A subject token split into what a verifier needs: signing input and raw signature.
struct Signed {
    input: Vec<u8>,
    signature: Vec<u8>,
    signature_b64: String,
}

fn signed(token: &str) -> Signed {
    let jws = jose::parse_compact(token).unwrap();
    Signed {
        input: jws.signing_input.to_vec(),
        signature: jws.signature.clone(),
        signature_b64: B64.encode(&jws.signature),
    }
}

/// The core's parsed verification key for a test key (the same path as a fetched JWKS).
fn verify_key(key: &TestKey) -> VerifyKey {
    let doc = json!({"keys": [key.public_jwk("k")]});
    jose::parse_verify_keys(&serde_json::to_vec(&doc).unwrap())
        .unwrap()
        .remove(0)
}

/// (a) The crypto floor: one subject-token verify plus one TxToken sign, the way the product does
/// them (core's `VerifyKey`, the signer's `LocalSigner`: rsa/p256, or aws-lc-rs with the `aws-lc`
/// features), nothing else.
fn floor(c: &mut Criterion) {
    // bench/run.sh reads this line to label the configuration.
    eprintln!(
        "backends: verify {} / sign {}",
        jose::__internal::VERIFY_BACKEND,
        txbridge_signer::SIGN_BACKEND
    );
    let world = primed_world();
    let rs = signed(&world.alpha_token("payments", "checkout"));
    let es = signed(&world.beta_token("payments", "checkout"));
    let rs_key = verify_key(&world.alpha);
    let es_key = verify_key(&world.beta);
    let signer = LocalSigner::generate();
    let to_sign = txtoken_signing_input(&world);
    assert!(block_on(rs_key.verify(
        Algorithm::RS256,
        &rs.input,
        &rs.signature
    )));
    assert!(block_on(es_key.verify(
        Algorithm::ES256,
        &es.input,
        &es.signature
    )));

    let mut g = c.benchmark_group("floor");
    g.bench_function("rs256_verify", |b| {
        b.iter(|| block_on(rs_key.verify(Algorithm::RS256, black_box(&rs.input), &rs.signature)))
    });
    g.bench_function("es256_verify", |b| {
        b.iter(|| block_on(es_key.verify(Algorithm::ES256, black_box(&es.input), &es.signature)))
    });
    g.bench_function("es256_sign", |b| {
        b.iter(|| block_on(signer.sign(black_box(&to_sign))).unwrap())
    });
    g.bench_function("rs256_verify+es256_sign", |b| {
        b.iter(|| {
            assert!(block_on(rs_key.verify(
                Algorithm::RS256,
                black_box(&rs.input),
                &rs.signature
            )));
            block_on(signer.sign(black_box(&to_sign))).unwrap()
        })
    });
    g.bench_function("es256_verify+es256_sign", |b| {
        b.iter(|| {
            assert!(block_on(es_key.verify(
                Algorithm::ES256,
                black_box(&es.input),
                &es.signature
            )));
            block_on(signer.sign(black_box(&to_sign))).unwrap()
        })
    });
    g.finish();
}

/// (b), (c) One warm exchange through `TxBridge::handle`: keys cached, local signer. Building
/// the `http::Request` (the shell's job) is outside the measured time.
fn exchange(c: &mut Criterion) {
    // The crypto library's one-time set-up (aws-lc-rs seeds its RNG from a jitter entropy source
    // on first use, ~0.4 G instructions) happens here, outside `TxBridge::handle`, so the
    // callgrind counts of bench/run.sh (collected inside `handle`) are those of warm exchanges.
    block_on(LocalSigner::generate().sign(b"warm-up")).unwrap();
    let world = primed_world();
    let rs_token = world.alpha_token("payments", "checkout");
    let es_token = world.beta_token("payments", "checkout");
    let fetches = world.http.total();

    let mut g = c.benchmark_group("exchange");
    for (id, token) in [("rs256", &rs_token), ("es256", &es_token)] {
        g.bench_function(id, |b| {
            b.iter_batched(
                || exchange_request(token),
                |req| {
                    let resp = block_on(world.bridge.handle(req));
                    assert_eq!(resp.status(), 200);
                    resp
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
    let after = world.http.total();
    assert_eq!(fetches, after, "warm exchanges must not fetch keys");
}

/// The two hostile `scope` values of 9,500 tokens each, of the same length (the body stays under
/// the 64 KiB cap): all distinct, and one token repeated. Both must be refused at the same cost.
fn hostile_scope_bodies(token: &str) -> [(&'static str, Vec<u8>); 2] {
    let distinct: Vec<String> = (0..9_500).map(|i| format!("s{i}")).collect();
    let repeated = vec!["s9999"; 9_500].join(" ");
    let request = |scope: &str| {
        let mut f = form(token);
        f.push(("scope", scope.to_owned()));
        let body = url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs(pairs(&f))
            .finish();
        assert!(body.len() < 64 * 1024, "{} bytes", body.len());
        body.into_bytes()
    };
    [
        ("scope_9500_distinct", request(&distinct.join(" "))),
        ("scope_9500_repeated", request(&repeated)),
    ]
}

/// Hostile input: a `scope` of ~9,500 distinct tokens vs one token repeated ~9,500 times,
/// through `TxBridge::handle` (refused with invalid_scope before any key is looked at).
fn hostile(c: &mut Criterion) {
    let world = World::new();
    let token = world.alpha_token("payments", "checkout");
    let mut g = c.benchmark_group("hostile");
    for (id, body) in hostile_scope_bodies(&token) {
        g.bench_function(id, |b| {
            b.iter_batched(
                || {
                    http::Request::post("/token")
                        .header("content-type", "application/x-www-form-urlencoded")
                        .body(body.clone())
                        .unwrap()
                },
                |req| {
                    let resp = block_on(world.bridge.handle(req));
                    assert_eq!(resp.status(), 400);
                    resp
                },
                BatchSize::SmallInput,
            )
        });
    }
    g.finish();
}

/// Verification backends that build here, on the same tokens: the rsa / p256 crates as core
/// uses them (key parsed once), jsonwebtoken's `rust_crypto` provider (the same crates, key
/// rebuilt per verify), and aws-lc-rs (native only; already linked into the Lambda by rustls).
fn backends(c: &mut Criterion) {
    use aws_lc_rs::signature::{self as lc, KeyPair as _};
    use rsa::pkcs1::EncodeRsaPublicKey as _;

    // The "rsa_crate" / "p256_crate" rows go through core's `VerifyKey` and `LocalSigner`: only
    // rsa/p256 in the build without the `aws-lc` features.
    if jose::__internal::VERIFY_BACKEND != "rsa+p256" || txbridge_signer::SIGN_BACKEND != "p256" {
        eprintln!("backend: skipped (run it in the build without the aws-lc features)");
        return;
    }

    let world = primed_world();
    let rs = signed(&world.alpha_token("payments", "checkout"));
    let es = signed(&world.beta_token("payments", "checkout"));
    let rs_key = verify_key(&world.alpha);
    let es_key = verify_key(&world.beta);
    let to_sign = txtoken_signing_input(&world);

    let TestKey::Rsa(rsa_private) = &world.alpha else {
        panic!("alpha is RSA")
    };
    let rsa_der = rsa_private.to_public_key().to_pkcs1_der().unwrap();
    let lc_rsa =
        lc::ParsedPublicKey::new(&lc::RSA_PKCS1_2048_8192_SHA256, rsa_der.as_bytes()).unwrap();
    let lc_rsa_unparsed =
        lc::UnparsedPublicKey::new(&lc::RSA_PKCS1_2048_8192_SHA256, rsa_der.as_bytes().to_vec());
    let TestKey::Ec(ec_secret) = &world.beta else {
        panic!("beta is EC")
    };
    let ec_point = ec_secret.public_key().to_sec1_bytes();
    let lc_ec = lc::ParsedPublicKey::new(&lc::ECDSA_P256_SHA256_FIXED, &ec_point).unwrap();

    let jwk_rs = world.alpha.public_jwk("k");
    let jwt_rs = jsonwebtoken::DecodingKey::from_rsa_components(
        jwk_rs["n"].as_str().unwrap(),
        jwk_rs["e"].as_str().unwrap(),
    )
    .unwrap();
    let jwk_es = world.beta.public_jwk("k");
    let jwt_es = jsonwebtoken::DecodingKey::from_ec_components(
        jwk_es["x"].as_str().unwrap(),
        jwk_es["y"].as_str().unwrap(),
    )
    .unwrap();

    let lc_signer = lc::EcdsaKeyPair::generate(&lc::ECDSA_P256_SHA256_FIXED_SIGNING).unwrap();
    let lc_signer_check = lc::ParsedPublicKey::new(
        &lc::ECDSA_P256_SHA256_FIXED,
        lc_signer.public_key().as_ref(),
    )
    .unwrap();
    let rng = aws_lc_rs::rand::SystemRandom::new();

    // Every backend accepts the same signatures.
    assert!(lc_rsa.verify_sig(&rs.input, &rs.signature).is_ok());
    assert!(lc_rsa_unparsed.verify(&rs.input, &rs.signature).is_ok());
    assert!(lc_ec.verify_sig(&es.input, &es.signature).is_ok());
    let jwt_ok = |sig: &str, input: &[u8], key, alg| {
        jsonwebtoken::crypto::verify(sig, input, key, alg).unwrap()
    };
    assert!(jwt_ok(
        &rs.signature_b64,
        &rs.input,
        &jwt_rs,
        jsonwebtoken::Algorithm::RS256
    ));
    assert!(jwt_ok(
        &es.signature_b64,
        &es.input,
        &jwt_es,
        jsonwebtoken::Algorithm::ES256
    ));
    let lc_sig = lc_signer.sign(&rng, &to_sign).unwrap();
    assert!(
        lc_signer_check
            .verify_sig(&to_sign, lc_sig.as_ref())
            .is_ok()
    );

    let mut g = c.benchmark_group("backend");
    g.bench_function("rs256_verify/rsa_crate", |b| {
        b.iter(|| block_on(rs_key.verify(Algorithm::RS256, black_box(&rs.input), &rs.signature)))
    });
    g.bench_function("rs256_verify/jsonwebtoken_rust_crypto", |b| {
        b.iter(|| {
            jwt_ok(
                &rs.signature_b64,
                black_box(&rs.input),
                &jwt_rs,
                jsonwebtoken::Algorithm::RS256,
            )
        })
    });
    g.bench_function("rs256_verify/aws_lc_rs_parsed", |b| {
        b.iter(|| {
            lc_rsa
                .verify_sig(black_box(&rs.input), &rs.signature)
                .is_ok()
        })
    });
    g.bench_function("rs256_verify/aws_lc_rs_unparsed", |b| {
        b.iter(|| {
            lc_rsa_unparsed
                .verify(black_box(&rs.input), &rs.signature)
                .is_ok()
        })
    });
    g.bench_function("es256_verify/p256_crate", |b| {
        b.iter(|| block_on(es_key.verify(Algorithm::ES256, black_box(&es.input), &es.signature)))
    });
    g.bench_function("es256_verify/jsonwebtoken_rust_crypto", |b| {
        b.iter(|| {
            jwt_ok(
                &es.signature_b64,
                black_box(&es.input),
                &jwt_es,
                jsonwebtoken::Algorithm::ES256,
            )
        })
    });
    g.bench_function("es256_verify/aws_lc_rs_parsed", |b| {
        b.iter(|| {
            lc_ec
                .verify_sig(black_box(&es.input), &es.signature)
                .is_ok()
        })
    });
    let p256_signer = LocalSigner::generate();
    g.bench_function("es256_sign/p256_crate", |b| {
        b.iter(|| block_on(p256_signer.sign(black_box(&to_sign))).unwrap())
    });
    g.bench_function("es256_sign/aws_lc_rs", |b| {
        b.iter(|| lc_signer.sign(&rng, black_box(&to_sign)).unwrap())
    });
    g.finish();
}

/// Requests in flight per measured batch.
const CONCURRENT: usize = 64;

/// In-process throughput: `CONCURRENT` warm RS256 exchanges as tasks on a tokio runtime with two
/// worker threads, against the same requests one after another on one thread (the baseline).
/// The same pair for the bare crypto floor shows how much of a second core was free in this run.
fn throughput(c: &mut Criterion) {
    let world = Arc::new(primed_world());
    let token: Arc<str> = world.alpha_token("payments", "checkout").into();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .build()
        .unwrap();
    let rs = Arc::new(signed(&token));
    let rs_key = Arc::new(verify_key(&world.alpha));
    let signer = Arc::new(LocalSigner::generate());
    let to_sign: Arc<[u8]> = txtoken_signing_input(&world).into();
    let floor_once = |rs: &Signed, key: &VerifyKey, signer: &LocalSigner, to_sign: &[u8]| {
        assert!(block_on(key.verify(
            Algorithm::RS256,
            &rs.input,
            &rs.signature
        )));
        block_on(signer.sign(to_sign)).unwrap()
    };

    let mut g = c.benchmark_group("throughput");
    g.throughput(Throughput::Elements(CONCURRENT as u64));
    g.bench_function("floor_sequential_1_thread", |b| {
        b.iter(|| {
            for _ in 0..CONCURRENT {
                floor_once(&rs, &rs_key, &signer, &to_sign);
            }
        })
    });
    g.bench_function("floor_concurrent_64_tokio_2_workers", |b| {
        b.iter(|| {
            rt.block_on(async {
                let tasks: Vec<_> = (0..CONCURRENT)
                    .map(|_| {
                        let (rs, key) = (rs.clone(), rs_key.clone());
                        let (signer, to_sign) = (signer.clone(), to_sign.clone());
                        tokio::spawn(async move { floor_once(&rs, &key, &signer, &to_sign) })
                    })
                    .collect();
                for t in tasks {
                    t.await.unwrap();
                }
            })
        })
    });
    g.bench_function("sequential_1_thread", |b| {
        b.iter(|| {
            for _ in 0..CONCURRENT {
                let resp = block_on(world.bridge.handle(exchange_request(&token)));
                assert_eq!(resp.status(), 200);
            }
        })
    });
    g.bench_function("concurrent_64_tokio_2_workers", |b| {
        b.iter(|| {
            rt.block_on(async {
                let tasks: Vec<_> = (0..CONCURRENT)
                    .map(|_| {
                        let (world, token) = (world.clone(), token.clone());
                        tokio::spawn(async move {
                            world.bridge.handle(exchange_request(&token)).await.status()
                        })
                    })
                    .collect();
                for t in tasks {
                    assert_eq!(t.await.unwrap(), 200);
                }
            })
        })
    });
    g.finish();
}

/// A fleet-like config (as `tests/benches/shells.rs`'s `worker-fleet`): 16 clusters (alpha and
/// beta, whose keys the world serves, and 14 more never asked), 7 policies, 4 with `workloads`
/// globs; `condition`, when given, on the policy that allows.
fn fleet_config(condition: Option<&str>) -> String {
    use txbridge_test_support::{ALPHA_ISS, BETA_DISCOVERY, BETA_ISS, TD};
    let mut toml = format!(
        "issuer = \"{TD}\"\n[signer]\nkind = \"local\"\n\
         [[clusters]]\nname = \"alpha\"\nissuer = \"{ALPHA_ISS}\"\naudiences = [\"txbridge\"]\n\
         [[clusters]]\nname = \"beta\"\nissuer = \"{BETA_ISS}\"\ndiscovery_url = \"{BETA_DISCOVERY}\"\n\
         audiences = [\"txbridge\"]\n"
    );
    for i in 2..16 {
        toml.push_str(&format!(
            "[[clusters]]\nname = \"c{i:02}\"\nissuer = \"https://c{i:02}.example.test\"\n\
             audiences = [\"txbridge\"]\n"
        ));
    }
    let condition = condition
        .map(|c| format!("condition = '{c}'\n"))
        .unwrap_or_default();
    toml.push_str(&format!(
        r#"
[[policies]]
id = "checkout"
cluster = "*"
namespace = "payments"
service_account = "checkout"
scopes = ["orders:read", "orders:write"]
workloads = ["payments/checkout-*", "spiffe://example.test/ns/payments/sa/*"]
{condition}
[[policies]]
id = "orders-worker"
cluster = "*"
namespace = "orders"
service_account = "worker"
scopes = ["orders:read"]
workloads = ["orders-worker"]

[[policies]]
id = "reports"
cluster = "alpha"
namespace = "team-*"
service_account = "*"
scopes = ["reports:read"]

[[policies]]
id = "billing"
cluster = "beta"
namespace = "billing"
service_account = "*"
scopes = ["billing:read", "billing:write"]
workloads = ["billing-*"]

[[policies]]
id = "audit"
cluster = "*"
namespace = "audit"
service_account = "writer"
scopes = ["audit:write"]

[[policies]]
id = "inventory"
cluster = "c02"
namespace = "inventory"
service_account = "api"
scopes = ["inventory:read"]
workloads = ["inventory-*", "spiffe://example.test/ns/inventory/sa/*"]

[[policies]]
id = "ops"
cluster = "c03"
namespace = "kube-system"
service_account = "ops"
scopes = ["ops:read"]
"#
    ));
    toml
}

/// The condition of the `fleet/*_condition` benchmarks: over the request's details and workload.
const FLEET_CONDITION: &str = r#"request.request_details.currency in ["EUR", "USD"] && request.workload.startsWith("payments/")"#;

/// What a fleet's client sends: a scope, three request_details members, the workload header and
/// a W3C traceparent.
fn fleet_request(token: &str) -> http::Request<Vec<u8>> {
    let mut f = form(token);
    f.push(("scope", "orders:read".to_owned()));
    f.push((
        "request_details",
        r#"{"order":"42","amount":"19.99","currency":"EUR"}"#.to_owned(),
    ));
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(pairs(&f))
        .finish();
    http::Request::post("/token")
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-txbridge-workload", "payments/checkout-web")
        .header(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        )
        .body(body.into_bytes())
        .unwrap()
}

/// The Lambda's log subscriber before the metrics (tracing-subscriber's JSON formatter, fields
/// nested, no time), writing to nowhere.
fn plain_json_logger() -> impl tracing::Subscriber + Send + Sync {
    tracing_subscriber::fmt()
        .json()
        .with_current_span(false)
        .with_span_list(false)
        .with_target(false)
        .without_time()
        .with_writer(std::io::sink)
        .finish()
}

/// Today's log subscriber of both shells: core's one flat line per event
/// ([`txbridge_core::log_line`], the EMF record on the exchange line), writing to nowhere.
struct LogLines;

impl tracing::Subscriber for LogLines {
    fn enabled(&self, metadata: &tracing::Metadata<'_>) -> bool {
        *metadata.level() <= tracing::Level::INFO
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        use std::io::Write as _;
        let mut out = txbridge_core::log_line(event, 1_800_000_000_123)
            .into_string()
            .into_bytes();
        out.push(b'\n');
        let _ = std::io::sink().write_all(black_box(&out));
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

/// A warm exchange with a fleet-like config and request (see [`fleet_config`]): without and with
/// a policy condition, and with the exchange line written by the logger before the metrics and by
/// today's (the EMF record included). The ids are what bench/run.sh's callgrind step measures.
fn fleet(c: &mut Criterion) {
    block_on(LocalSigner::generate().sign(b"warm-up")).unwrap();
    let mut g = c.benchmark_group("fleet");
    for (variant, condition) in [("plain", None), ("condition", Some(FLEET_CONDITION))] {
        let world = World::with_config(&fleet_config(condition));
        let tokens = [
            ("rs256", world.alpha_token("payments", "checkout")),
            ("es256", world.beta_token("payments", "checkout")),
        ];
        for (_, token) in &tokens {
            let resp = block_on(world.bridge.handle(fleet_request(token)));
            assert_eq!(resp.status(), 200, "priming: {:?}", resp.body());
        }
        let fetches = world.http.total();
        let run = |b: &mut criterion::Bencher<'_>, token: &str| {
            b.iter_batched(
                || fleet_request(token),
                |req| {
                    let resp = block_on(world.bridge.handle(req));
                    assert_eq!(resp.status(), 200);
                    resp
                },
                BatchSize::SmallInput,
            )
        };
        for (alg, token) in &tokens {
            g.bench_function(format!("{alg}_{variant}"), |b| run(b, token));
        }
        if condition.is_none() {
            let token = &tokens[0].1;
            g.bench_function("rs256_plain_log_before_metrics", |b| {
                tracing::subscriber::with_default(plain_json_logger(), || run(b, token))
            });
            g.bench_function("rs256_plain_log_metrics", |b| {
                tracing::subscriber::with_default(LogLines, || run(b, token))
            });
        }
        assert_eq!(
            fetches,
            world.http.total(),
            "warm exchanges must not fetch keys"
        );
    }
    g.finish();
}

/// Results under the workspace's target dir (`target/criterion`), wherever this runs from.
fn config() -> Criterion {
    let dir = std::env::var_os("CRITERION_HOME")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(std::path::PathBuf::from)
                .unwrap_or_else(|| {
                    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../target")
                })
                .join("criterion")
        });
    Criterion::default().output_directory(&dir)
}

criterion_group! {
    name = benches;
    config = config();
    targets = floor, exchange, backends, throughput, hostile, fleet
}
criterion_main!(benches);
