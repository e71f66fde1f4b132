//! Shell-level measurements for BENCHMARKS.md (`bash bench/run.sh` runs this; it is a bench
//! binary, not a test: nothing here asserts a time).
//!
//! Sections (all by default; name some to run only those):
//! - `cold-start`: the release `txbridge-lambda` binary started against a minimal Lambda Runtime
//!   API on loopback, local signer, harness issuer. Times process spawn -> first
//!   `GET /runtime/invocation/next` (the init phase: exec, tokio, logging, config parse, key
//!   load, TxBridge build), the first exchange (includes the discovery + JWKS fetch) and a second
//!   (warm) one. Same-run baselines: spawning `true`, and the same binary without a config
//!   (process + runtime start-up, then a config error).
//! - `lambda`: the Lambda under `cargo lambda watch` (debug build, as the e2e suite runs it),
//!   sequential warm exchanges vs `GET /healthz` over one keep-alive connection.
//! - `worker`: the built Worker under `workerd serve`, warm exchanges vs `GET /healthz` the same
//!   way; (exchange - healthz) bounds the handler's CPU per exchange (workerd exposes no CPU time).
//!
//! - `worker-fleet`: the Worker's CPU per warm exchange (as `worker` measures it) with a config like
//!   a real fleet's: 16 clusters, 7 policies (4 with `workloads` globs), the workload header and a
//!   3-member `request_details`; without and with a policy condition (CEL).
//!
//! - `cold-interleaved`: init and start -> first answer of the release hello world and of
//!   `txbridge-lambda` (`local` signer), started alternately (the order flips every round) so that
//!   the machine's drift hits both alike: per-binary medians, the ratio of medians, and the
//!   spread of the per-round ratios. `bench/cold-start.sh` runs it twice (two processes) and
//!   compares the two runs' ratios.
//!
//! Results go to `$TXBRIDGE_BENCH_OUT` (default `target/bench/shells.json`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, ensure};
use serde_json::{Value, json};
use txbridge_tests::procs::{Harness, TempDir, lambda_base_url, start_lambda};
use txbridge_tests::suite::{JWT, TE, TXN};
use txbridge_tests::{free_port, workspace_root};

fn main() {
    let sections: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let want = |s: &str| sections.is_empty() || sections.iter().any(|a| a == s);
    let out = std::env::var_os("TXBRIDGE_BENCH_OUT")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target/bench/shells.json"));
    let mut results = serde_json::Map::new();
    let mut record = |name: &str, r: anyhow::Result<Value>| {
        let v = r.unwrap_or_else(|e| json!({ "error": format!("{e:#}") }));
        eprintln!("{name}: {v}");
        results.insert(name.to_owned(), v);
    };
    if want("cold-start") {
        record(
            "cold_start",
            cold_start(runs("TXBRIDGE_BENCH_COLD_RUNS", 15)),
        );
    }
    if want("cold-interleaved") {
        record(
            "cold_interleaved",
            cold_interleaved(runs("TXBRIDGE_BENCH_COLD_ROUNDS", 100)),
        );
    }
    if want("lambda") {
        record(
            "lambda",
            lambda_loopback(runs("TXBRIDGE_BENCH_HTTP_N", 400)),
        );
    }
    if want("worker") {
        record("worker", worker(runs("TXBRIDGE_BENCH_HTTP_N", 400)));
    }
    if want("worker-fleet") {
        record(
            "worker_fleet",
            worker_fleet(runs("TXBRIDGE_BENCH_CPU_N", 300)),
        );
    }
    if let Some(dir) = out.parent() {
        std::fs::create_dir_all(dir).unwrap();
    }
    std::fs::write(&out, serde_json::to_vec_pretty(&results).unwrap()).unwrap();
    eprintln!("wrote {}", out.display());
}

fn runs(var: &str, default: usize) -> usize {
    std::env::var(var)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// Mean, median, min and max in milliseconds.
fn summary(samples: &[Duration]) -> Value {
    let mut v: Vec<f64> = samples.iter().map(|d| ms(*d)).collect();
    v.sort_by(f64::total_cmp);
    let mean = v.iter().sum::<f64>() / v.len().max(1) as f64;
    json!({
        "n": v.len(),
        "mean_ms": mean,
        "median_ms": v.get(v.len() / 2).copied().unwrap_or(f64::NAN),
        "min_ms": v.first().copied().unwrap_or(f64::NAN),
        "max_ms": v.last().copied().unwrap_or(f64::NAN),
    })
}

fn exchange_form(token: &str) -> String {
    url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs([
            ("grant_type", TE),
            ("subject_token", token),
            ("subject_token_type", JWT),
            ("requested_token_type", TXN),
        ])
        .finish()
}

// ---------------------------------------------------------------------------------------------
// Cold start: a minimal Lambda Runtime API (just what lambda_runtime calls) on loopback.

#[derive(Default)]
struct RuntimeLog {
    /// When each `GET .../invocation/next` arrived.
    next: Vec<Instant>,
    /// When each `POST .../invocation/{id}/response` arrived, and the response's statusCode.
    responses: Vec<(Instant, u64)>,
}

struct FakeRuntimeApi {
    addr: String,
    log: Arc<(Mutex<RuntimeLog>, Condvar)>,
}

impl FakeRuntimeApi {
    /// Serves `events` (function URL payloads) in order to `next`, then holds further `next`
    /// calls open until the process is stopped.
    fn start(events: Vec<String>) -> anyhow::Result<FakeRuntimeApi> {
        let listener = TcpListener::bind("127.0.0.1:0")?;
        let addr = listener.local_addr()?.to_string();
        let log = Arc::new((Mutex::new(RuntimeLog::default()), Condvar::new()));
        let events = Arc::new(Mutex::new(events.into_iter()));
        let l = log.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { return };
                let (l, events) = (l.clone(), events.clone());
                std::thread::spawn(move || {
                    let _ = serve_runtime_conn(conn, &l, &events);
                });
            }
        });
        Ok(FakeRuntimeApi { addr, log })
    }

    /// Waits until `pred` holds for the log (or `timeout`).
    fn wait(&self, timeout: Duration, pred: impl Fn(&RuntimeLog) -> bool) -> anyhow::Result<()> {
        let (m, cv) = &*self.log;
        let guard = m.lock().unwrap();
        let (_g, res) = cv
            .wait_timeout_while(guard, timeout, |log| !pred(log))
            .unwrap();
        ensure!(!res.timed_out(), "runtime API: timed out waiting");
        Ok(())
    }
}

type Events = Mutex<std::vec::IntoIter<String>>;

fn serve_runtime_conn(
    conn: TcpStream,
    log: &(Mutex<RuntimeLog>, Condvar),
    events: &Events,
) -> anyhow::Result<()> {
    let mut reader = BufReader::new(conn.try_clone()?);
    let mut writer = conn;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let (method, path) = (
            parts.next().unwrap_or_default().to_owned(),
            parts.next().unwrap_or_default().to_owned(),
        );
        let (mut content_length, mut chunked) = (0usize, false);
        loop {
            let mut h = String::new();
            reader.read_line(&mut h)?;
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            let lower = h.to_ascii_lowercase();
            if let Some(v) = lower.strip_prefix("content-length:") {
                content_length = v.trim().parse().unwrap_or(0);
            }
            if lower.starts_with("transfer-encoding:") && lower.contains("chunked") {
                chunked = true;
            }
        }
        let body = if chunked {
            read_chunked(&mut reader)?
        } else {
            let mut b = vec![0; content_length];
            reader.read_exact(&mut b)?;
            b
        };
        let now = Instant::now();
        if method == "GET" && path.ends_with("/runtime/invocation/next") {
            {
                let (m, cv) = log;
                m.lock().unwrap().next.push(now);
                cv.notify_all();
            }
            let Some(event) = events.lock().unwrap().next() else {
                // No more events: hold the call (the process is stopped by the bench).
                std::thread::sleep(Duration::from_secs(3600));
                return Ok(());
            };
            static ID: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
            let id = format!(
                "req-{}",
                ID.fetch_add(1, std::sync::atomic::Ordering::SeqCst)
            );
            let deadline = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)?
                .as_millis()
                + 30_000;
            write!(
                writer,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
                 lambda-runtime-aws-request-id: {id}\r\nlambda-runtime-deadline-ms: {deadline}\r\n\
                 lambda-runtime-invoked-function-arn: arn:aws:lambda:eu-west-1:111122223333:function:txbridge\r\n\
                 lambda-runtime-trace-id: Root=1-00000000-000000000000000000000000\r\n\
                 content-length: {}\r\n\r\n{event}",
                event.len()
            )?;
        } else if method == "POST" && path.ends_with("/response") {
            let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
            let status = v["statusCode"].as_u64().unwrap_or(0);
            {
                let (m, cv) = log;
                m.lock().unwrap().responses.push((now, status));
                cv.notify_all();
            }
            write!(
                writer,
                "HTTP/1.1 202 Accepted\r\ncontent-type: application/json\r\ncontent-length: 16\r\n\r\n{{\"status\":\"OK\"}}"
            )?;
        } else {
            // init/error, invocation error: record nothing, acknowledge.
            write!(
                writer,
                "HTTP/1.1 202 Accepted\r\ncontent-length: 2\r\n\r\n{{}}"
            )?;
        }
        writer.flush()?;
    }
}

fn read_chunked(reader: &mut BufReader<TcpStream>) -> anyhow::Result<Vec<u8>> {
    let mut body = Vec::new();
    loop {
        let mut size = String::new();
        reader.read_line(&mut size)?;
        let n = usize::from_str_radix(size.trim().split(';').next().unwrap_or("0"), 16)?;
        let mut chunk = vec![0; n + 2];
        reader.read_exact(&mut chunk)?;
        if n == 0 {
            return Ok(body);
        }
        body.extend_from_slice(&chunk[..n]);
    }
}

/// A Function URL event (payload format 2.0) carrying an exchange of `token`.
fn function_url_event(token: &str) -> String {
    function_url_request("POST", "/token", &exchange_form(token))
}

/// A Function URL event (payload format 2.0) for `method path` with a form `body`.
fn function_url_request(method: &str, path: &str, body: &str) -> String {
    json!({
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": "",
        "headers": {
            "content-type": "application/x-www-form-urlencoded",
            "host": "abcdefghijklmnop.lambda-url.eu-west-1.on.aws",
        },
        "requestContext": {
            "accountId": "anonymous",
            "apiId": "abcdefghijklmnop",
            "domainName": "abcdefghijklmnop.lambda-url.eu-west-1.on.aws",
            "domainPrefix": "abcdefghijklmnop",
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1",
                     "sourceIp": "198.51.100.23", "userAgent": "bench"},
            "requestId": "6f2d1c4e-8a7b-4c3d-9e0f-1a2b3c4d5e6f",
            "routeKey": "$default",
            "stage": "$default",
            "time": "27/Nov/2026:12:00:00 +0000",
            "timeEpoch": 1_800_000_000_000u64
        },
        "body": (!body.is_empty()).then_some(body),
        "isBase64Encoded": false
    })
    .to_string()
}

fn lambda_command(bin: &PathBuf, api: &str) -> Command {
    let mut cmd = Command::new(bin);
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("AWS_LAMBDA_RUNTIME_API", api)
        .env("AWS_LAMBDA_FUNCTION_NAME", "txbridge")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "128")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST")
        .env("AWS_LAMBDA_LOG_STREAM_NAME", "bench")
        .env("AWS_LAMBDA_LOG_GROUP_NAME", "bench")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    cmd
}

/// One cold start of `bin` against a fresh loopback Runtime API serving `events`: process start
/// to the first `GET .../invocation/next` (init), to the first answered event, each event's own
/// time, and the statuses.
struct Cold {
    init: Duration,
    first_answer: Duration,
    /// Time of each answered event (response - its `next`).
    events: Vec<Duration>,
    statuses: Vec<u64>,
}

fn cold_run(bin: &PathBuf, env: &[(String, String)], events: &[String]) -> anyhow::Result<Cold> {
    let api = FakeRuntimeApi::start(events.to_vec())?;
    let mut cmd = lambda_command(bin, &api.addr);
    cmd.envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let started = Instant::now();
    let mut child = cmd
        .spawn()
        .with_context(|| format!("spawn {}", bin.display()))?;
    let waited = api.wait(Duration::from_secs(30), |l| l.next.len() > events.len());
    let _ = child.kill();
    let _ = child.wait();
    waited?;
    let log = api.log.0.lock().unwrap();
    ensure!(log.responses.len() == events.len(), "every event answered");
    Ok(Cold {
        init: log.next[0] - started,
        first_answer: log.responses[0].0 - started,
        events: (0..events.len())
            .map(|i| log.responses[i].0 - log.next[i])
            .collect(),
        statuses: log.responses.iter().map(|r| r.1).collect(),
    })
}

/// `runs` cold starts: init, start -> first answer, the first event's own time (for txbridge: the
/// exchange that fetches the cluster's keys), the second (warm) one, and their difference (the
/// key fetch and other first-use costs).
fn cold_series(
    bin: &PathBuf,
    env: &[(String, String)],
    events: &[String],
    runs: usize,
) -> anyhow::Result<Value> {
    let (mut init, mut first, mut ev0, mut ev1) = (vec![], vec![], vec![], vec![]);
    for _ in 0..runs {
        let c = cold_run(bin, env, events)?;
        ensure!(
            c.statuses.iter().all(|s| *s == 200),
            "{}: statuses {:?}",
            bin.display(),
            c.statuses
        );
        init.push(c.init);
        first.push(c.first_answer);
        ev0.push(c.events[0]);
        if let Some(e) = c.events.get(1) {
            ev1.push(*e);
        }
    }
    let median = |v: &[Duration]| summary(v)["median_ms"].as_f64().unwrap_or(f64::NAN);
    Ok(json!({
        "init": summary(&init),
        "start_to_first_answer": summary(&first),
        "first_event": summary(&ev0),
        "second_event": summary(&ev1),
        "key_fetch_and_first_use_ms": median(&ev0) - median(&ev1),
    }))
}

/// A release binary: `$TXBRIDGE_BENCH_RELEASE_DIR/NAME` (a profile experiment's target dir),
/// else `release/NAME` under `$CARGO_TARGET_DIR` or the workspace's `target`.
fn release_bin(name: &str) -> anyhow::Result<PathBuf> {
    let dir = std::env::var_os("TXBRIDGE_BENCH_RELEASE_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| workspace_root().join("target"))
                .join("release")
        });
    let bin = dir.join(name);
    ensure!(
        bin.exists(),
        "{} missing: cargo build --release -p {name}",
        bin.display()
    );
    Ok(bin)
}

/// Cold start side by side with a Rust hello world on Lambda (`bench/hello-lambda`, same profile,
/// target and lambda_http features), against the same loopback Runtime API in the same run: init
/// (process start -> first `next`) and process start -> first answer, for txbridge with each signer
/// kind (local; kms and kms-wrapped against LocalStack when it is installed), and for a build
/// with aws-lc's CPU-jitter entropy (`TXBRIDGE_BENCH_LAMBDA_JITTER_BIN`, the "before" of
/// AWS_LC_SYS_NO_JITTER_ENTROPY). Spawning `true` is the floor of any process.
fn cold_start(runs: usize) -> anyhow::Result<Value> {
    let txbridge = release_bin("txbridge-lambda")?;
    let hello = release_bin("hello-lambda")?;
    let harness = Harness::start(&["name=alpha,alg=RS256"])?;
    let (config, key) = harness.config("https://tts.example.test")?;
    let dir = TempDir::new("cold-start");
    let token = harness.token("alpha", "payments", "checkout", &["txbridge"], 3600)?;
    let events = vec![function_url_event(&token), function_url_event(&token)];

    let mut spawn_true = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        Command::new("true").status()?;
        spawn_true.push(t.elapsed());
    }
    let hello_event = function_url_request("GET", "/", "");
    let mut out = serde_json::Map::new();
    out.insert("runs".into(), json!(runs));
    out.insert("spawn_true".into(), summary(&spawn_true));
    out.insert(
        "hello_world".into(),
        cold_series(&hello, &[], &[hello_event.clone(), hello_event], runs)?,
    );

    let config_env = |name: &str, text: &str| -> anyhow::Result<Vec<(String, String)>> {
        let path = dir.path(name);
        std::fs::write(&path, text)?;
        Ok(vec![(
            "TXBRIDGE_CONFIG_FILE".into(),
            path.display().to_string(),
        )])
    };
    let mut local = config_env("local.toml", &config)?;
    local.push(("TXBRIDGE_SIGNING_KEY".into(), key.clone()));
    let mut signers = serde_json::Map::new();
    signers.insert(
        "local".into(),
        cold_series(&txbridge, &local, &events, runs)?,
    );
    if let Some(jitter) = std::env::var_os("TXBRIDGE_BENCH_LAMBDA_JITTER_BIN") {
        signers.insert(
            "local_with_jitter_entropy".into(),
            cold_series(&PathBuf::from(jitter), &local, &events, runs)?,
        );
    }

    if txbridge_test_support::localstack::localstack_python().exists() {
        use txbridge_test_support::localstack::{AWS_ENV, LocalStack, kms};
        let localstack = LocalStack::start();
        let endpoint = localstack.endpoint().to_owned();
        let aws: Vec<(String, String)> = AWS_ENV
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .chain([("AWS_ENDPOINT_URL".to_owned(), endpoint.clone())])
            .collect();
        let sign_key = kms(
            &endpoint,
            "print(kms.create_key(KeySpec='ECC_NIST_P256', KeyUsage='SIGN_VERIFY')['KeyMetadata']['KeyId'])",
        );
        let wrapped = kms(
            &endpoint,
            "import base64\nk = kms.create_key(KeySpec='SYMMETRIC_DEFAULT', KeyUsage='ENCRYPT_DECRYPT')['KeyMetadata']['KeyId']\n\
             r = kms.generate_data_key_pair_without_plaintext(KeyId=k, KeyPairSpec='ECC_NIST_P256', \
             EncryptionContext={'txbridge': 'signing-key'})\n\
             print(base64.b64encode(r['PrivateKeyCiphertextBlob']).decode())",
        );
        for (kind, signer) in [
            ("kms", format!("kind = \"kms\"\nkey_id = \"{sign_key}\"")),
            (
                "kms-wrapped",
                format!("kind = \"kms-wrapped\"\nwrapped_key = \"{wrapped}\""),
            ),
        ] {
            let text = config.replace("kind = \"local\"", &signer);
            let mut env = config_env(&format!("{kind}.toml"), &text)?;
            env.extend(aws.iter().cloned());
            signers.insert(kind.into(), cold_series(&txbridge, &env, &events, runs)?);
        }
    } else {
        signers.insert(
            "kms".into(),
            json!({"error": "not measured: LocalStack is not installed"}),
        );
    }
    out.insert("txbridge".into(), Value::Object(signers));

    let invocations = warm_invocations(
        &txbridge,
        &dir.path("local.toml"),
        &key,
        &events[0],
        runs_warm(),
    )?;
    out.insert("warm_invocations".into(), invocations);
    out.insert(
        "init_phases_in_process".into(),
        init_phases(&config, &key, runs)?,
    );
    out.insert(
        "binary_bytes".into(),
        json!({
            "txbridge": std::fs::metadata(&txbridge)?.len(),
            "hello_world": std::fs::metadata(&hello)?.len(),
        }),
    );
    Ok(Value::Object(out))
}

/// p10, p25, median, p75, p90 of `v` (nearest rank).
fn spread(v: &[f64]) -> Value {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    let quantile = |q: f64| {
        let i = ((v.len().max(1) - 1) as f64 * q).round() as usize;
        v.get(i).copied().unwrap_or(f64::NAN)
    };
    json!({
        "n": v.len(),
        "p10": quantile(0.10),
        "p25": quantile(0.25),
        "median": quantile(0.50),
        "p75": quantile(0.75),
        "p90": quantile(0.90),
    })
}

/// Cold starts that hold still: the hello world, `txbridge-lambda` (`local` signer, the exchange
/// of `cold_start`) and, when `TXBRIDGE_BENCH_LAMBDA_NOKMS_BIN` names one, the same built without
/// the KMS signers, started in turn `rounds` times each, the order rotated every round, each
/// against a fresh loopback Runtime API. Medians per binary, their ratios to the hello world's, and
/// the spread of the per-round ratios (each start over the hello world's start in the same round).
/// Also the in-process init steps with the shipped crypto backend.
fn cold_interleaved(rounds: usize) -> anyhow::Result<Value> {
    let txbridge = release_bin("txbridge-lambda")?;
    let hello = release_bin("hello-lambda")?;
    let harness = Harness::start(&["name=alpha,alg=RS256"])?;
    let (config, key) = harness.config("https://tts.example.test")?;
    let dir = TempDir::new("cold-interleaved");
    let path = dir.path("local.toml");
    std::fs::write(&path, &config)?;
    let token = harness.token("alpha", "payments", "checkout", &["txbridge"], 3600)?;
    let tx_env = vec![
        (
            "TXBRIDGE_CONFIG_FILE".to_owned(),
            path.display().to_string(),
        ),
        ("TXBRIDGE_SIGNING_KEY".to_owned(), key.clone()),
    ];
    let tx_events = vec![function_url_event(&token), function_url_event(&token)];
    let hello_event = function_url_request("GET", "/", "");
    let hello_events = vec![hello_event.clone(), hello_event];

    // (name in the results, binary, environment, events); the hello world first.
    let mut binaries = vec![
        ("hello_world", hello, vec![], hello_events),
        (
            "txbridge_local",
            txbridge,
            tx_env.clone(),
            tx_events.clone(),
        ),
    ];
    if let Some(bin) = std::env::var_os("TXBRIDGE_BENCH_LAMBDA_NOKMS_BIN") {
        binaries.push(("txbridge_local_without_kms", bin.into(), tx_env, tx_events));
    }
    let start = |i: usize| -> anyhow::Result<Cold> {
        let (name, bin, env, events) = &binaries[i];
        let c = cold_run(bin, env, events)?;
        ensure!(
            c.statuses.iter().all(|s| *s == 200),
            "{name}: statuses {:?}",
            c.statuses
        );
        Ok(c)
    };
    // One unrecorded start of each: the page cache, the harness's first fetch.
    for i in 0..binaries.len() {
        start(i)?;
    }
    let n = binaries.len();
    let mut init = vec![Vec::new(); n];
    let mut first = vec![Vec::new(); n];
    let mut init_ratio = vec![Vec::new(); n];
    let mut first_ratio = vec![Vec::new(); n];
    for r in 0..rounds {
        let mut got: Vec<Option<Cold>> = (0..n).map(|_| None).collect();
        for k in 0..n {
            let i = (r + k) % n;
            got[i] = Some(start(i)?);
        }
        let got: Vec<Cold> = got.into_iter().flatten().collect();
        for (i, c) in got.iter().enumerate() {
            init[i].push(c.init);
            first[i].push(c.first_answer);
            init_ratio[i].push(ms(c.init) / ms(got[0].init));
            first_ratio[i].push(ms(c.first_answer) / ms(got[0].first_answer));
        }
    }
    let median = |v: &[Duration]| summary(v)["median_ms"].as_f64().unwrap_or(f64::NAN);
    let mut out = serde_json::Map::new();
    out.insert("rounds".into(), json!(rounds));
    for (i, (name, bin, _, _)) in binaries.iter().enumerate() {
        out.insert(
            (*name).into(),
            json!({
                "binary": bin.display().to_string(),
                "binary_bytes": std::fs::metadata(bin)?.len(),
                "init": summary(&init[i]),
                "start_to_first_answer": summary(&first[i]),
                "init_ratio_of_medians": median(&init[i]) / median(&init[0]),
                "first_answer_ratio_of_medians": median(&first[i]) / median(&first[0]),
                "init_ratio_per_round": spread(&init_ratio[i]),
                "first_answer_ratio_per_round": spread(&first_ratio[i]),
            }),
        );
    }
    out.insert(
        "init_phases_in_process".into(),
        init_phases(&config, &key, rounds)?,
    );
    Ok(Value::Object(out))
}

fn runs_warm() -> usize {
    runs("TXBRIDGE_BENCH_INVOCATIONS", 300)
}

/// One warm release process, `n` exchanges interleaved with `n` `GET /healthz` invocations
/// through the Runtime API: (exchange - healthz) is the handler's own cost in the shipped build
/// (the Runtime API round trip, event parsing and response encoding cancel out).
fn warm_invocations(
    bin: &PathBuf,
    config_path: &std::path::Path,
    key: &str,
    exchange: &str,
    n: usize,
) -> anyhow::Result<Value> {
    let healthz = function_url_request("GET", "/healthz", "");
    let mut events = vec![exchange.to_owned()];
    for _ in 0..n {
        events.push(exchange.to_owned());
        events.push(healthz.clone());
    }
    let total = events.len();
    let api = FakeRuntimeApi::start(events)?;
    let mut cmd = lambda_command(bin, &api.addr);
    cmd.env("TXBRIDGE_CONFIG_FILE", config_path)
        .env("TXBRIDGE_SIGNING_KEY", key);
    let mut child = cmd.spawn().context("spawn txbridge-lambda")?;
    let waited = api.wait(Duration::from_secs(120), |l| l.next.len() > total);
    let _ = child.kill();
    let _ = child.wait();
    waited?;
    let log = api.log.0.lock().unwrap();
    ensure!(
        log.responses.len() == total && log.responses.iter().all(|(_, s)| *s == 200),
        "all invocations must answer 200"
    );
    let time = |i: usize| log.responses[i].0 - log.next[i];
    let ex: Vec<Duration> = (0..n).map(|j| time(1 + 2 * j)).collect();
    let hz: Vec<Duration> = (0..n).map(|j| time(2 + 2 * j)).collect();
    Ok(json!({ "exchange": summary(&ex), "healthz": summary(&hz) }))
}

/// The init steps of `txbridge_lambda::build` (local signer), timed one by one in this process: the
/// first round (cold in this process, though it has already used TLS and tokio) and the medians.
fn init_phases(config: &str, key: &str, runs: usize) -> anyhow::Result<Value> {
    let mut rounds: Vec<[Duration; 4]> = Vec::new();
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        let cfg = txbridge_core::Config::from_toml_str(config)?;
        let parse = t.elapsed();
        let t = Instant::now();
        let signer = txbridge_signer::LocalSigner::from_encoded(key)?;
        let keys = txbridge_signer::KeySet::new(
            Arc::new(signer),
            cfg.signer().previous_public_keys.clone(),
        )?;
        let key_load = t.elapsed();
        let t = Instant::now();
        let http = txbridge_jose::ReqwestClient::new()?;
        let client = t.elapsed();
        let t = Instant::now();
        let bridge = txbridge_core::TxBridge::new(
            cfg,
            keys,
            Arc::new(http),
            Arc::new(txbridge_jose::SystemClock),
            Arc::new(txbridge_jose::TokioRuntime),
        );
        let build = t.elapsed();
        drop(bridge);
        rounds.push([parse, key_load, client, build]);
    }
    let names = ["config_parse", "key_load", "http_client", "txbridge_new"];
    let mut first = serde_json::Map::new();
    let mut median = serde_json::Map::new();
    for (i, name) in names.iter().enumerate() {
        first.insert((*name).into(), json!(ms(rounds[0][i])));
        let col: Vec<Duration> = rounds.iter().map(|r| r[i]).collect();
        median.insert((*name).into(), summary(&col)["median_ms"].clone());
    }
    Ok(json!({
        "first_ms": first,
        "median_ms": median,
        "sign_backend": txbridge_signer::SIGN_BACKEND,
    }))
}

// ---------------------------------------------------------------------------------------------
// Loopback: warm exchanges vs /healthz over one keep-alive connection, interleaved.

fn loopback(base_url: &str, token: &str, n: usize) -> anyhow::Result<Value> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let body = exchange_form(token);
    let exchange = || -> anyhow::Result<Duration> {
        let t = Instant::now();
        let resp = client
            .post(format!("{base_url}/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body.clone())
            .send()?;
        let status = resp.status();
        let _ = resp.bytes()?;
        let d = t.elapsed();
        ensure!(status == 200, "exchange answered {status}");
        Ok(d)
    };
    let healthz = || -> anyhow::Result<Duration> {
        let t = Instant::now();
        let resp = client.get(format!("{base_url}/healthz")).send()?;
        let status = resp.status();
        let _ = resp.bytes()?;
        let d = t.elapsed();
        ensure!(status == 200, "healthz answered {status}");
        Ok(d)
    };
    for _ in 0..10 {
        exchange()?;
        healthz()?;
    }
    let (mut ex, mut hz) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let started = Instant::now();
    for _ in 0..n {
        ex.push(exchange()?);
        hz.push(healthz()?);
    }
    let wall = started.elapsed();
    let ex_total: Duration = ex.iter().sum();
    Ok(json!({
        "exchange": summary(&ex),
        "healthz": summary(&hz),
        "sequential_exchanges_per_s": n as f64 / ex_total.as_secs_f64(),
        "wall_s": wall.as_secs_f64(),
    }))
}

fn lambda_loopback(n: usize) -> anyhow::Result<Value> {
    let harness = Harness::start(&["name=alpha,alg=RS256"])?;
    let port = free_port();
    let issuer = lambda_base_url(port);
    let (config, key) = harness.config(&issuer)?;
    let (running, _log, _dir) = start_lambda(port, &config, &key, &[])?;
    let token = harness.token("alpha", "payments", "checkout", &["txbridge"], 3600)?;
    let r = loopback(&running.base_url, &token, n);
    drop(running);
    r
}

/// The Worker under workerd: warm exchanges vs `/healthz` over loopback (wall clock), and the CPU
/// time workerd spends per warm exchange, read from outside (workerd exposes no CPU time to the
/// Worker): user + system time of each of its threads from `/proc/<pid>/task/<tid>/stat` before
/// and after a batch of `/healthz` and a batch of exchanges; CPU per exchange = (exchange batch -
/// healthz batch) / N, for all threads and for the busiest one (the thread running the isolate,
/// closest to what Cloudflare bills). Median of [`CPU_ROUNDS`] rounds, RS256 and ES256 subject
/// tokens, for the current build and, when `TXBRIDGE_BENCH_WORKER_BASELINE` names one, a
/// baseline build measured in the same run.
fn worker(n: usize) -> anyhow::Result<Value> {
    let harness = Harness::start(&["name=alpha,alg=RS256", "name=beta,alg=ES256,mirror"])?;
    let (config, key) = harness.config("https://txbridge-worker.example.test")?;
    let running = txbridge_tests::worker::start(&config, &key)?;
    let token = harness.token("alpha", "payments", "checkout", &["txbridge"], 3600)?;
    let mut r = loopback(&running.base_url, &token, n)?;
    drop(running);

    let plain = plain_config(&harness)?;
    let cpu_n = runs("TXBRIDGE_BENCH_CPU_N", 1000);
    let mut builds = vec![(
        "current",
        txbridge_tests::worker::worker_dir().join("build"),
    )];
    if let Some(dir) = std::env::var_os("TXBRIDGE_BENCH_WORKER_BASELINE") {
        builds.push(("baseline", PathBuf::from(dir)));
    }
    let mut cpu = serde_json::Map::new();
    for (name, dir) in &builds {
        let wasm = std::fs::read(dir.join("index_bg.wasm"))
            .with_context(|| format!("{}: no index_bg.wasm", dir.display()))?;
        let running = txbridge_tests::worker::start_dir(dir, &plain, &key)?;
        let mut per_alg = serde_json::Map::new();
        for (alg, cluster) in [("rs256", "alpha"), ("es256", "beta")] {
            let token = harness.token(cluster, "payments", "checkout", &["txbridge"], 3600)?;
            per_alg.insert(
                alg.into(),
                cpu_per_exchange(&running.base_url, running.pid(), &token, cpu_n)?,
            );
        }
        per_alg.insert("wasm_raw".into(), json!(wasm.len()));
        per_alg.insert("wasm_gzip".into(), json!(gzip_len(&wasm)?));
        cpu.insert((*name).into(), Value::Object(per_alg));
    }
    r["cpu"] = Value::Object(cpu);
    r["cpu_n"] = json!(cpu_n);
    r["cpu_rounds"] = json!(CPU_ROUNDS);
    Ok(r)
}

/// Rounds of the CPU measurement; the median is reported.
const CPU_ROUNDS: usize = 3;

/// A config every build of the Worker understands (no keys newer than the baseline's): the
/// harness's clusters, one policy.
fn plain_config(harness: &Harness) -> anyhow::Result<String> {
    let mut out = String::from(
        "issuer = \"https://txbridge-worker.example.test\"\n[signer]\nkind = \"local\"\n",
    );
    for c in &harness.clusters {
        out.push_str(&format!(
            "[[clusters]]\nname = {}\nissuer = {}\ndiscovery_url = {}\naudiences = [\"txbridge\"]\n\
             insecure_allow_http_loopback = true\n",
            c["name"], c["issuer"], c["discovery_url"]
        ));
    }
    out.push_str(
        "[[policies]]\ncluster = \"*\"\nnamespace = \"payments\"\nservice_account = \"checkout\"\n\
         scopes = [\"orders:read\"]\n",
    );
    txbridge_core::Config::from_toml_str(&out).context("plain config")?;
    Ok(out)
}

fn gzip_len(bytes: &[u8]) -> anyhow::Result<usize> {
    let mut child = Command::new("gzip")
        .args(["-9", "-c"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    // Written from a thread: gzip's output would fill its pipe before all input is written.
    let mut stdin = child.stdin.take().context("stdin")?;
    let input = bytes.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&input));
    let out = child.wait_with_output()?;
    writer
        .join()
        .map_err(|_| anyhow::anyhow!("gzip writer"))??;
    ensure!(out.status.success(), "gzip failed");
    Ok(out.stdout.len())
}

/// Clock ticks per second of `/proc/.../stat` times.
fn clock_ticks() -> anyhow::Result<u64> {
    let out = Command::new("getconf").arg("CLK_TCK").output()?;
    Ok(String::from_utf8(out.stdout)?.trim().parse()?)
}

/// user + system time, in clock ticks, of every thread of `pid`.
fn thread_ticks(pid: u32) -> anyhow::Result<std::collections::BTreeMap<u32, u64>> {
    let mut out = std::collections::BTreeMap::new();
    for entry in std::fs::read_dir(format!("/proc/{pid}/task"))? {
        let entry = entry?;
        let Ok(tid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(entry.path().join("stat")) else {
            continue; // the thread ended
        };
        // Fields after the parenthesised command name: state is field 3, utime 14, stime 15.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
        let fields: Vec<&str> = rest.split_whitespace().collect();
        let field = |n: usize| -> anyhow::Result<u64> {
            Ok(fields.get(n - 3).context("short stat")?.parse()?)
        };
        out.insert(tid, field(14)? + field(15)?);
    }
    Ok(out)
}

fn ticks_since(
    before: &std::collections::BTreeMap<u32, u64>,
    after: &std::collections::BTreeMap<u32, u64>,
) -> std::collections::BTreeMap<u32, u64> {
    after
        .iter()
        .map(|(tid, t)| {
            (
                *tid,
                t.saturating_sub(before.get(tid).copied().unwrap_or(0)),
            )
        })
        .collect()
}

fn cpu_per_exchange(base_url: &str, pid: u32, token: &str, n: usize) -> anyhow::Result<Value> {
    cpu_per_request(base_url, pid, &exchange_form(token), &[], n)
}

/// [`cpu_per_exchange`] of a token request with this form body and these headers.
fn cpu_per_request(
    base_url: &str,
    pid: u32,
    body: &str,
    headers: &[(&str, &str)],
    n: usize,
) -> anyhow::Result<Value> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(30))
        .build()?;
    let exchange = || -> anyhow::Result<()> {
        let mut req = client
            .post(format!("{base_url}/token"))
            .header("content-type", "application/x-www-form-urlencoded");
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = req.body(body.to_owned()).send()?;
        ensure!(resp.status() == 200, "exchange answered {}", resp.status());
        let _ = resp.bytes()?;
        Ok(())
    };
    let healthz = || -> anyhow::Result<()> {
        let resp = client.get(format!("{base_url}/healthz")).send()?;
        ensure!(resp.status() == 200, "healthz answered {}", resp.status());
        let _ = resp.bytes()?;
        Ok(())
    };
    for _ in 0..50 {
        exchange()?;
        healthz()?;
    }
    let ms_per_tick = 1000.0 / clock_ticks()? as f64;
    let (mut isolate, mut all, mut wall) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..CPU_ROUNDS {
        let s0 = thread_ticks(pid)?;
        for _ in 0..n {
            healthz()?;
        }
        let s1 = thread_ticks(pid)?;
        let started = Instant::now();
        for _ in 0..n {
            exchange()?;
        }
        let took = started.elapsed();
        let s2 = thread_ticks(pid)?;
        let (hz, ex) = (ticks_since(&s0, &s1), ticks_since(&s1, &s2));
        let busiest = ex.iter().max_by_key(|(_, t)| **t).map(|(tid, _)| *tid);
        let of = |m: &std::collections::BTreeMap<u32, u64>, tid: Option<u32>| {
            tid.and_then(|t| m.get(&t)).copied().unwrap_or(0) as f64
        };
        let per = |ex_ticks: f64, hz_ticks: f64| (ex_ticks - hz_ticks) * ms_per_tick / n as f64;
        isolate.push(per(of(&ex, busiest), of(&hz, busiest)));
        all.push(per(
            ex.values().sum::<u64>() as f64,
            hz.values().sum::<u64>() as f64,
        ));
        wall.push(ms(took) / n as f64);
    }
    let median = |v: &mut Vec<f64>| {
        v.sort_by(f64::total_cmp);
        v[v.len() / 2]
    };
    Ok(json!({
        "isolate_thread_ms": median(&mut isolate),
        "all_threads_ms": median(&mut all),
        "wall_ms": median(&mut wall),
        "rounds_isolate_thread_ms": isolate,
    }))
}

/// The clusters of a fleet-like config: 16, RS256 and ES256, every fourth one mirrored.
fn fleet_specs() -> Vec<String> {
    (0..16)
        .map(|i| {
            let alg = if i % 2 == 0 { "RS256" } else { "ES256" };
            let mirror = if i % 4 == 3 { ",mirror" } else { "" };
            format!("name=c{i:02},alg={alg}{mirror}")
        })
        .collect()
}

/// Seven policies, four with `workloads` globs; `condition`, when given, on the first.
fn fleet_policies(condition: Option<&str>) -> String {
    let condition = condition
        .map(|c| format!("condition = '{c}'\n"))
        .unwrap_or_default();
    format!(
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
cluster = "c00"
namespace = "team-*"
service_account = "*"
scopes = ["reports:read"]

[[policies]]
id = "billing"
cluster = "c01"
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
    )
}

/// The Worker's CPU per warm exchange with a fleet-like config (module docs), log level info,
/// plain `workerd serve`: RS256 and ES256 subject tokens, without and with a condition.
fn worker_fleet(n: usize) -> anyhow::Result<Value> {
    let specs = fleet_specs();
    let specs: Vec<&str> = specs.iter().map(String::as_str).collect();
    let harness = Harness::start(&specs)?;
    let (_, key) = harness.config("https://txbridge-worker.example.test")?;
    let mut clusters = String::from(
        "issuer = \"https://txbridge-worker.example.test\"\n[signer]\nkind = \"local\"\n",
    );
    for c in &harness.clusters {
        clusters.push_str(&format!(
            "[[clusters]]\nname = {}\nissuer = {}\ndiscovery_url = {}\naudiences = [\"txbridge\"]\n\
             insecure_allow_http_loopback = true\n",
            c["name"], c["issuer"], c["discovery_url"]
        ));
    }
    let details = r#"{"order":"42","amount":"19.99","currency":"EUR"}"#;
    let form = |token: &str| {
        url::form_urlencoded::Serializer::new(String::new())
            .extend_pairs([
                ("grant_type", TE),
                ("subject_token", token),
                ("subject_token_type", JWT),
                ("requested_token_type", TXN),
                ("scope", "orders:read"),
                ("request_details", details),
            ])
            .finish()
    };
    let headers = [("x-txbridge-workload", "payments/checkout-web")];
    let condition = r#"request.request_details.currency in ["EUR", "USD"] && request.workload.startsWith("payments/")"#;
    let mut out = serde_json::Map::new();
    for (variant, condition) in [("plain", None), ("condition", Some(condition))] {
        let config = format!("{clusters}{}", fleet_policies(condition));
        txbridge_core::Config::from_toml_str(&config).context("fleet config")?;
        let level = std::env::var("TXBRIDGE_BENCH_WORKER_LOG").unwrap_or_else(|_| "info".into());
        let running = txbridge_tests::worker::start_with_log_level(&config, &key, &level)?;
        let mut per_alg = serde_json::Map::new();
        for (alg, cluster) in [("rs256", "c00"), ("es256", "c01")] {
            let token = harness.token(cluster, "payments", "checkout", &["txbridge"], 3600)?;
            per_alg.insert(
                alg.into(),
                cpu_per_request(&running.base_url, running.pid(), &form(&token), &headers, n)?,
            );
        }
        out.insert(variant.into(), Value::Object(per_alg));
    }
    out.insert("n".into(), json!(n));
    out.insert("rounds".into(), json!(CPU_ROUNDS));
    Ok(Value::Object(out))
}
