//! BENCHMARKS.md section 9 (run by `bash bench/gate.sh`): latency per request over loopback of
//! the same ES256 TxToken through (a) Envoy -> upstream, no auth, (b) Envoy's own `jwt_authn`,
//! (c) Envoy -> gate over gRPC ext_authz, (d) Envoy -> gate over HTTP ext_authz, (e) nginx ->
//! upstream, no auth, (f) nginx -> gate (`auth_request`). One keep-alive client per variant,
//! the variants interleaved in rounds, same machine, same run. Prints a JSON document.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[allow(dead_code)]
#[path = "../tests/e2e/support.rs"]
mod support;

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use serde_json::json;
use support::*;
use txbridge_signer::Signer as _;

const ROUNDS: usize = 20;
const PER_ROUND: usize = 200;
const WARMUP: usize = 200;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Envoy {
    NoAuth,
    JwtAuthn,
    Grpc,
    Http,
}

fn envoy_config(
    mode: Envoy,
    front: SocketAddr,
    gate: &GateProc,
    up: SocketAddr,
    issuer: &Issuer,
) -> String {
    let jwks = serde_json::to_string(&json!({"keys": [issuer.signer.public_jwk()]})).unwrap();
    let filter = match mode {
        Envoy::NoAuth => String::new(),
        Envoy::JwtAuthn => format!(
            r#"
          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                txbridge:
                  issuer: "{iss}"
                  audiences: ["{AUDIENCE}"]
                  from_headers: [ {{ name: txn-token }} ]
                  forward: true
                  local_jwks: {{ inline_string: {jwks} }}
              rules:
              - match: {{ prefix: "/" }}
                requires: {{ provider_name: txbridge }}"#,
            iss = issuer.url(),
            jwks = serde_json::to_string(&jwks).unwrap(),
        ),
        Envoy::Http => r#"
          - name: envoy.filters.http.ext_authz
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              transport_api_version: V3
              failure_mode_allow: false
              http_service:
                server_uri: { uri: "http://gate", cluster: gate, timeout: 5s }
                path_prefix: /ext_authz
                authorization_request:
                  allowed_headers:
                    patterns: [ { exact: txn-token, ignore_case: true } ]
                authorization_response:
                  allowed_upstream_headers:
                    patterns: [ { prefix: x-txbridge- } ]"#
            .to_owned(),
        Envoy::Grpc => r#"
          - name: envoy.filters.http.ext_authz
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz
              transport_api_version: V3
              failure_mode_allow: false
              grpc_service:
                envoy_grpc: { cluster_name: gate }
                timeout: 5s"#
            .to_owned(),
    };
    let (gate_addr, h2) = match mode {
        Envoy::Grpc => (gate.grpc, true),
        _ => (gate.http, false),
    };
    support::envoy_config(front, &filter, up, gate_addr, h2)
}

fn start_envoy(
    bin: &Path,
    mode: Envoy,
    gate: &GateProc,
    up: SocketAddr,
    issuer: &Issuer,
) -> (Proc, SocketAddr, TempDir) {
    let dir = TempDir::new("bench-envoy");
    let front: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let path = dir.path().join("envoy.yaml");
    std::fs::write(&path, envoy_config(mode, front, gate, up, issuer)).unwrap();
    let proc = start_proxy(
        "envoy",
        Command::new(bin)
            .arg("-c")
            .arg(&path)
            .args(["--concurrency", "1", "-l", "error", "--base-id"])
            .arg(free_port().to_string())
            .arg("--disable-hot-restart"),
        front,
        &dir.path().join("envoy.out"),
    );
    (proc, front, dir)
}

/// nginx -> upstream with no auth.
fn start_nginx_plain(nginx: &Path, up: SocketAddr) -> (Proc, SocketAddr, TempDir) {
    let locations = format!("    location / {{ proxy_pass http://{up}; }}\n");
    start_nginx_with(nginx, "bench-nginx", &locations)
}

/// A keep-alive HTTP/1.1 client (reconnects when the server closes).
struct Client {
    addr: SocketAddr,
    conn: Option<BufReader<TcpStream>>,
    request: Vec<u8>,
}

impl Client {
    fn new(addr: SocketAddr, token: &str) -> Client {
        let request =
            format!("GET /orders/42 HTTP/1.1\r\nhost: bench\r\ntxn-token: {token}\r\n\r\n")
                .into_bytes();
        Client {
            addr,
            conn: None,
            request,
        }
    }

    /// One request; its status and latency.
    fn get(&mut self) -> (u16, Duration) {
        let start = Instant::now();
        let mut conn = match self.conn.take() {
            Some(c) => c,
            None => {
                let s = TcpStream::connect(self.addr).unwrap();
                s.set_nodelay(true).unwrap();
                BufReader::new(s)
            }
        };
        conn.get_mut().write_all(&self.request).unwrap();
        let mut line = String::new();
        conn.read_line(&mut line).unwrap();
        let status: u16 = line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let mut len = 0;
        let mut close = false;
        loop {
            let mut h = String::new();
            conn.read_line(&mut h).unwrap();
            let h = h.trim_end().to_ascii_lowercase();
            if h.is_empty() {
                break;
            }
            if let Some(v) = h.strip_prefix("content-length:") {
                len = v.trim().parse().unwrap();
            }
            if h == "connection: close" {
                close = true;
            }
        }
        let mut body = vec![0; len];
        conn.read_exact(&mut body).unwrap();
        let took = start.elapsed();
        if !close {
            self.conn = Some(conn);
        }
        (status, took)
    }
}

fn pct(sorted: &[Duration], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i].as_secs_f64() * 1e6
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let nginx = proxy_binary("TXBRIDGE_NGINX", &on_path("nginx")).expect("nginx");
    let envoy = proxy_binary("TXBRIDGE_ENVOY", &envoy_candidates()).expect("envoy");
    let issuer = Issuer::start();
    let upstream = Upstream::start();
    let gate = GateProc::start(&gate_config(&issuer, ""), "warn");
    let token = issuer.token("orders:read");
    let up = upstream.server.addr;

    let (_a, a, _da) = start_envoy(&envoy, Envoy::NoAuth, &gate, up, &issuer);
    let (_b, b, _db) = start_envoy(&envoy, Envoy::JwtAuthn, &gate, up, &issuer);
    let (_c, c, _dc) = start_envoy(&envoy, Envoy::Grpc, &gate, up, &issuer);
    let (_d, d, _dd) = start_envoy(&envoy, Envoy::Http, &gate, up, &issuer);
    let (_e, e, _de) = start_nginx_plain(&nginx, up);
    let (_f, f, _df) = start_nginx(&nginx, gate.http, up);
    let variants = [
        ("envoy_noauth", a),
        ("envoy_jwt_authn", b),
        ("envoy_gate_grpc", c),
        ("envoy_gate_http", d),
        ("nginx_noauth", e),
        ("nginx_gate", f),
    ];
    let mut clients: Vec<Client> = variants
        .iter()
        .map(|(_, addr)| Client::new(*addr, &token))
        .collect();
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); variants.len()];
    for (i, c) in clients.iter_mut().enumerate() {
        for _ in 0..WARMUP {
            let (status, _) = c.get();
            assert_eq!(status, 200, "{}: status {status}", variants[i].0);
        }
    }
    // A token without the scope: every authorizing variant refuses it (the check is real).
    let bad = Issuer::sign_with(&issuer.signer, &issuer.header(), &{
        let mut cl = issuer.claims("orders:read");
        cl["aud"] = json!("https://other.example.test");
        cl
    });
    for (i, (name, addr)) in variants.iter().enumerate() {
        let (status, _) = Client::new(*addr, &bad).get();
        let noauth = i == 0 || i == 4;
        assert_eq!(
            status == 200,
            noauth,
            "{name}: wrong-aud token got {status}"
        );
    }
    for _ in 0..ROUNDS {
        for (i, c) in clients.iter_mut().enumerate() {
            for _ in 0..PER_ROUND {
                let (status, took) = c.get();
                assert_eq!(status, 200, "{}", variants[i].0);
                samples[i].push(took);
            }
        }
    }
    let mut out = serde_json::Map::new();
    for (i, (name, _)) in variants.iter().enumerate() {
        let s = &mut samples[i];
        s.sort();
        out.insert(
            (*name).to_owned(),
            json!({"n": s.len(), "p50_us": pct(s, 0.5), "p99_us": pct(s, 0.99)}),
        );
    }
    let mut uname = String::new();
    if let Ok(mut f) = std::fs::File::open("/proc/cpuinfo") {
        let _ = f.read_to_string(&mut uname);
    }
    let cpu = uname
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
        .unwrap_or_default();
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(0);
    println!(
        "{}",
        json!({"variants": out, "rounds": ROUNDS, "per_round": PER_ROUND, "cpu": cpu, "cores": cores})
    );
}
