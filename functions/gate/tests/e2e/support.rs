//! What the gate's end-to-end tests share: a tiny HTTP/1.1 server (the issuer's discovery and
//! JWKS, the recording upstream) and client on loopback, an issuer minting real TxTokens with
//! the workspace's own signer, the gate binary and the proxies as child processes (stopped by
//! their pid on drop), and the proxies' binaries (skipped loudly when absent, unless
//! `TXBRIDGE_REQUIRE_PROXIES` is set).

use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::executor::block_on;
use serde_json::{Value, json};
use txbridge_signer::{LocalSigner, Signer as _};
use txbridge_test_support::{craft_with, seeded_signer};

/// A free loopback port, never the same one twice in a test process (txbridge-tests').
pub use txbridge_tests::free_port;

pub fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// A temporary directory, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(name: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "txbridge-gate-{name}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }

    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

// ---------------------------------------------------------------------------------------------
// HTTP on loopback.

/// A request as a server saw it.
#[derive(Debug, Clone)]
pub struct Seen {
    pub method: String,
    pub target: String,
    /// Lower-case names, every value in order.
    pub headers: Vec<(String, String)>,
}

impl Seen {
    pub fn all(&self, name: &str) -> Vec<&str> {
        self.headers
            .iter()
            .filter(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
            .collect()
    }

    pub fn one(&self, name: &str) -> Option<&str> {
        match self.all(name).as_slice() {
            [v] => Some(v),
            _ => None,
        }
    }
}

/// A response.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
}

impl Resp {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

type Handler = dyn Fn(&Seen) -> (u16, String) + Send + Sync;

/// A one-thread-per-connection HTTP/1.1 server answering `Connection: close`.
pub struct Server {
    pub addr: SocketAddr,
    stop: Arc<AtomicBool>,
}

impl Server {
    pub fn start(handler: Arc<Handler>) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                if stopped.load(Ordering::Relaxed) {
                    break;
                }
                let Ok(conn) = conn else { continue };
                let handler = handler.clone();
                std::thread::spawn(move || serve_one(conn, &*handler));
            }
        });
        Server { addr, stop }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(self.addr);
    }
}

fn read_head(r: &mut BufReader<TcpStream>) -> Option<(String, Vec<(String, String)>)> {
    let mut first = String::new();
    r.read_line(&mut first).ok()?;
    let mut headers = Vec::new();
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (n, v) = line.split_once(':')?;
        headers.push((n.trim().to_ascii_lowercase(), v.trim().to_owned()));
    }
    Some((first.trim_end().to_owned(), headers))
}

fn serve_one(conn: TcpStream, handler: &Handler) {
    let _ = conn.set_read_timeout(Some(Duration::from_secs(10)));
    let mut r = BufReader::new(conn);
    let Some((line, headers)) = read_head(&mut r) else {
        return;
    };
    let mut parts = line.split(' ');
    let seen = Seen {
        method: parts.next().unwrap_or_default().to_owned(),
        target: parts.next().unwrap_or_default().to_owned(),
        headers,
    };
    let len: usize = seen
        .one("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    let _ = r.read_exact(&mut body);
    let (status, body) = handler(&seen);
    let mut conn = r.into_inner();
    let _ = write!(
        conn,
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = conn.flush();
}

/// One request, `Connection: close`; `None` when nothing could be read.
pub fn try_request(
    addr: SocketAddr,
    method: &str,
    target: &str,
    headers: &[(&str, &str)],
) -> Option<Resp> {
    let mut conn = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).ok()?;
    conn.set_read_timeout(Some(Duration::from_secs(15))).ok()?;
    let mut req = format!("{method} {target} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n");
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    if method == "POST" || method == "PUT" {
        req.push_str("content-length: 0\r\n");
    }
    req.push_str("\r\n");
    conn.write_all(req.as_bytes()).ok()?;
    let mut r = BufReader::new(conn);
    let (line, headers) = read_head(&mut r)?;
    let status = line.split(' ').nth(1)?.parse().ok()?;
    let mut raw = Vec::new();
    let chunked = headers
        .iter()
        .any(|(n, v)| n == "transfer-encoding" && v.contains("chunked"));
    let len = headers
        .iter()
        .find(|(n, _)| n == "content-length")
        .and_then(|(_, v)| v.parse::<usize>().ok());
    if chunked {
        loop {
            let mut size = String::new();
            r.read_line(&mut size).ok()?;
            let n = usize::from_str_radix(size.trim(), 16).ok()?;
            if n == 0 {
                break;
            }
            let mut chunk = vec![0; n + 2];
            r.read_exact(&mut chunk).ok()?;
            raw.extend_from_slice(&chunk[..n]);
        }
    } else if let Some(n) = len {
        raw.resize(n, 0);
        r.read_exact(&mut raw).ok()?;
    } else if method != "HEAD" {
        let _ = r.read_to_end(&mut raw);
    }
    Some(Resp {
        status,
        headers,
        body: String::from_utf8_lossy(&raw).into_owned(),
    })
}

pub fn request(addr: SocketAddr, method: &str, target: &str, headers: &[(&str, &str)]) -> Resp {
    try_request(addr, method, target, headers)
        .unwrap_or_else(|| panic!("{method} {target} at {addr}: no answer"))
}

/// Waits until `addr` accepts connections.
pub fn wait_listening(addr: SocketAddr, what: &str, child: &mut Child) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
            return;
        }
        if let Ok(Some(status)) = child.try_wait() {
            panic!("{what} exited before listening on {addr}: {status}");
        }
        std::thread::sleep(Duration::from_millis(25));
    }
    panic!("{what} did not listen on {addr} within 30 s");
}

// ---------------------------------------------------------------------------------------------
// The recording upstream.

/// The service behind the proxy: answers 200 with what it saw, and keeps it.
pub struct Upstream {
    pub server: Server,
    pub seen: Arc<Mutex<Vec<Seen>>>,
}

impl Upstream {
    pub fn start() -> Upstream {
        let seen: Arc<Mutex<Vec<Seen>>> = Arc::default();
        let log = seen.clone();
        let server = Server::start(Arc::new(move |req: &Seen| {
            log.lock().unwrap().push(req.clone());
            (
                200,
                json!({"upstream": "ok", "path": req.target}).to_string(),
            )
        }));
        Upstream { server, seen }
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    pub fn last(&self) -> Seen {
        self.seen.lock().unwrap().last().cloned().unwrap()
    }
}

// ---------------------------------------------------------------------------------------------
// The issuer: discovery + JWKS on loopback, and real TxTokens.

pub const AUDIENCE: &str = "https://td.example.test";

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum JwksMode {
    Serve,
    Fail,
}

/// A TxToken service as the gate sees it: its discovery document and JWKS on loopback, and
/// tokens signed by its key (the workspace's own `LocalSigner`).
pub struct Issuer {
    pub server: Server,
    pub signer: Arc<LocalSigner>,
    /// Keys the JWKS publishes.
    pub published: Arc<Mutex<Vec<Value>>>,
    pub mode: Arc<Mutex<JwksMode>>,
    pub jwks_hits: Arc<AtomicUsize>,
}

impl Issuer {
    pub fn start() -> Issuer {
        let signer = Arc::new(seeded_signer(b"txbridge-gate e2e issuer"));
        let published = Arc::new(Mutex::new(vec![
            serde_json::to_value(signer.public_jwk()).unwrap(),
        ]));
        let mode = Arc::new(Mutex::new(JwksMode::Serve));
        let jwks_hits = Arc::new(AtomicUsize::new(0));
        let (keys, m, hits) = (published.clone(), mode.clone(), jwks_hits.clone());
        let issuer_url: Arc<Mutex<String>> = Arc::default();
        let iss = issuer_url.clone();
        let server = Server::start(Arc::new(move |req: &Seen| {
            let base = iss.lock().unwrap().clone();
            match req.target.as_str() {
                "/.well-known/openid-configuration" => (
                    200,
                    json!({"issuer": base, "jwks_uri": format!("{base}/jwks")}).to_string(),
                ),
                "/jwks" => {
                    hits.fetch_add(1, Ordering::SeqCst);
                    if *m.lock().unwrap() == JwksMode::Fail {
                        return (500, "{}".into());
                    }
                    (200, json!({"keys": *keys.lock().unwrap()}).to_string())
                }
                _ => (404, "{}".into()),
            }
        }));
        *issuer_url.lock().unwrap() = server.url();
        Issuer {
            server,
            signer,
            published,
            mode,
            jwks_hits,
        }
    }

    pub fn url(&self) -> String {
        self.server.url()
    }

    /// Claims of a valid TxToken of this issuer, now.
    pub fn claims(&self, scope: &str) -> Value {
        let now = now();
        json!({
            "iss": self.url(), "aud": AUDIENCE, "iat": now - 5, "exp": now + 300,
            "txn": format!("txn-{}", rand_id()),
            "sub": "prod:system:serviceaccount:shop:checkout",
            "scope": scope,
            "req_wl": "spiffe://example.test/ns/web/sa/front,spiffe://example.test/ns/payments/sa/checkout",
            "tctx": {"tenant": "acme", "namespace": "payments"},
        })
    }

    pub fn header(&self) -> Value {
        json!({"alg": "ES256", "typ": "txntoken+jwt", "kid": self.signer.key_id()})
    }

    /// Signs exactly `header` and `claims` with `signer` (`alg: none`: no signature).
    pub fn sign_with(signer: &LocalSigner, header: &Value, claims: &Value) -> String {
        craft_with(header, claims, |input| {
            if header["alg"] == "none" {
                Vec::new()
            } else {
                block_on(signer.sign(input)).unwrap()
            }
        })
    }

    pub fn sign(&self, claims: &Value) -> String {
        Issuer::sign_with(&self.signer, &self.header(), claims)
    }

    pub fn token(&self, scope: &str) -> String {
        self.sign(&self.claims(scope))
    }
}

fn rand_id() -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!(
        "{}-{}-{}",
        std::process::id(),
        now(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// The routes every proxy test runs against.
pub fn routes_toml() -> &'static str {
    r#"
[[routes]]
id = "orders-read"
path = "/orders/*"
methods = ["GET", "HEAD"]
scopes = ["orders:read"]

[[routes]]
id = "orders-write"
path = "/orders/*"
methods = ["POST"]
scopes = ["orders:write"]

[[routes]]
id = "payments"
path = "/payments/**"
workloads = ["spiffe://example.test/ns/payments/sa/*"]

[[routes]]
id = "tenant"
path = "/tenants/**"
tctx = { tenant = "acme" }
"#
}

pub fn gate_config(issuer: &Issuer, extra: &str) -> String {
    format!(
        "issuer = \"{}\"\naudience = \"{AUDIENCE}\"\ninsecure_allow_http_loopback = true\n{extra}\n{}",
        issuer.url(),
        routes_toml()
    )
}

// ---------------------------------------------------------------------------------------------
// Child processes.

/// A child process, killed (by its pid) and reaped on drop.
pub struct Proc {
    pub child: Child,
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The gate binary, started on free loopback ports.
pub struct GateProc {
    _proc: Proc,
    pub http: SocketAddr,
    pub grpc: SocketAddr,
    pub log: PathBuf,
    _dir: TempDir,
}

impl GateProc {
    pub fn start(config: &str, rust_log: &str) -> GateProc {
        let dir = TempDir::new("gate");
        let cfg = dir.path().join("gate.toml");
        std::fs::write(&cfg, config).unwrap();
        let http: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let grpc: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
        let log = dir.path().join("gate.log");
        let mut child = Command::new(env!("CARGO_BIN_EXE_txbridge-gate"))
            .arg("--config")
            .arg(&cfg)
            .args([
                "--listen",
                &http.to_string(),
                "--grpc-listen",
                &grpc.to_string(),
            ])
            .env("RUST_LOG", rust_log)
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&log).unwrap())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        wait_listening(http, "txbridge-gate", &mut child);
        wait_listening(grpc, "txbridge-gate (gRPC)", &mut child);
        GateProc {
            _proc: Proc { child },
            http,
            grpc,
            log,
            _dir: dir,
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The value of one sample of `/metrics`, 0 when absent.
    pub fn metric(&self, series: &str) -> u64 {
        let text = request(self.http, "GET", "/metrics", &[]).body;
        text.lines()
            .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
            .unwrap_or(0)
    }
}

/// Where a proxy's binary is: `$env` if set, else the first of `candidates` that exists. `None`
/// (after a loud message) when there is none and `TXBRIDGE_REQUIRE_PROXIES` is unset; a panic
/// when it is set.
pub fn proxy_binary(env: &str, candidates: &[PathBuf]) -> Option<PathBuf> {
    let found = match std::env::var_os(env) {
        Some(p) => Some(PathBuf::from(p)).filter(|p| p.exists()),
        None => candidates.iter().find(|p| p.exists()).cloned(),
    };
    if found.is_none() {
        let msg = format!(
            "\n!!!!! SKIPPED: no {env} binary ({}). Install the proxies with `bash .ci/proxies.sh install` \
             and export `bash .ci/proxies.sh env`. !!!!!\n",
            std::env::var(env).unwrap_or_else(|_| "not set".into())
        );
        assert!(
            std::env::var_os("TXBRIDGE_REQUIRE_PROXIES").is_none(),
            "TXBRIDGE_REQUIRE_PROXIES is set but the proxy is missing: {msg}"
        );
        eprintln!("{msg}");
    }
    found
}

pub fn on_path(name: &str) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join(name)).collect())
        .unwrap_or_default();
    v.push(PathBuf::from("/usr/sbin").join(name));
    v.push(PathBuf::from("/usr/bin").join(name));
    v
}

pub fn envoy_candidates() -> Vec<PathBuf> {
    let mut v = Vec::new();
    if let Some(home) = std::env::var_os("HOME") {
        v.push(PathBuf::from(home).join(".cache/txbridge/venv-envoy/bin/envoy"));
    }
    v.extend(on_path("envoy"));
    v
}

/// Starts a proxy process and waits until it listens on `front`.
pub fn start_proxy(name: &str, cmd: &mut Command, front: SocketAddr, log: &Path) -> Proc {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(log).unwrap())
        .stderr(std::fs::File::create(log.with_extension("err")).unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if TcpStream::connect_timeout(&front, Duration::from_millis(200)).is_ok() {
            break;
        }
        if let Ok(Some(status)) = child.try_wait() {
            let err = std::fs::read_to_string(log.with_extension("err")).unwrap_or_default();
            panic!("{name} exited ({status}) before listening on {front}:\n{err}");
        }
        assert!(
            Instant::now() < deadline,
            "{name} did not listen on {front}"
        );
        std::thread::sleep(Duration::from_millis(25));
    }
    Proc { child }
}

/// Headers as a small map, for assertions' messages.
pub fn map(headers: &[(String, String)]) -> BTreeMap<String, String> {
    headers.iter().cloned().collect()
}

/// nginx on a free loopback port: `auth_request` to the gate's `/auth`, the four
/// `X-Txbridge-*` answers forwarded, then `proxy_pass` to `up`. Stopped when the `Proc` drops.
pub fn start_nginx(nginx: &Path, gate: SocketAddr, up: SocketAddr) -> (Proc, SocketAddr, TempDir) {
    let pass: String = ["txn", "sub", "scope", "req_wl"]
        .iter()
        .map(|h| {
            let name = h.replace('_', "-");
            format!(
                "      auth_request_set $tx_{h} $upstream_http_x_txbridge_{h};\n      proxy_set_header X-Txbridge-{name} $tx_{h};\n"
            )
        })
        .collect();
    let locations = format!(
        r#"    location = /_auth {{
      internal;
      proxy_pass http://{gate}/auth;
      proxy_pass_request_body off;
      proxy_set_header Content-Length "";
      proxy_set_header X-Original-URI $request_uri;
      proxy_set_header X-Original-Method $request_method;
    }}
    location / {{
      auth_request /_auth;
{pass}      proxy_pass http://{up};
    }}
"#
    );
    start_nginx_with(nginx, "nginx", &locations)
}

/// nginx on a free loopback port, in the foreground with its files in a temporary directory,
/// one server whose `locations` are given (each line indented by four spaces).
pub fn start_nginx_with(nginx: &Path, name: &str, locations: &str) -> (Proc, SocketAddr, TempDir) {
    let dir = TempDir::new(name);
    let front: SocketAddr = format!("127.0.0.1:{}", free_port()).parse().unwrap();
    let w = dir.path().display().to_string();
    let conf = format!(
        r#"daemon off;
master_process off;
pid {w}/nginx.pid;
error_log {w}/error.log warn;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {w}/body;
  proxy_temp_path {w}/proxy;
  fastcgi_temp_path {w}/fastcgi;
  uwsgi_temp_path {w}/uwsgi;
  scgi_temp_path {w}/scgi;
  server {{
    listen {front};
{locations}  }}
}}
"#
    );
    let path = dir.path().join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let proc = start_proxy(
        "nginx",
        Command::new(nginx)
            .arg("-c")
            .arg(&path)
            .arg("-p")
            .arg(dir.path()),
        front,
        &dir.path().join("nginx.out"),
    );
    (proc, front, dir)
}

/// An Envoy static config: a listener on `front` routing everything to the cluster `upstream`
/// (`up`, HTTP/1.1) through `http_filters` (YAML list items at the filters' indentation; the
/// router is appended), and the cluster `gate` (`gate`, HTTP/2 when `gate_h2`: gRPC).
pub fn envoy_config(
    front: SocketAddr,
    http_filters: &str,
    up: SocketAddr,
    gate: SocketAddr,
    gate_h2: bool,
) -> String {
    format!(
        r#"static_resources:
  listeners:
  - name: front
    address:
      socket_address: {{ address: {ip}, port_value: {port} }}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: front
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{ prefix: "/" }}
                route: {{ cluster: upstream }}
          http_filters:{http_filters}
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:{up}{gate}
"#,
        ip = front.ip(),
        port = front.port(),
        up = envoy_cluster("upstream", up, false),
        gate = envoy_cluster("gate", gate, gate_h2),
    )
}

/// One static cluster of one loopback endpoint.
fn envoy_cluster(name: &str, addr: SocketAddr, h2: bool) -> String {
    let h2 = if h2 {
        r#"
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config:
          http2_protocol_options: {}"#
    } else {
        ""
    };
    format!(
        r#"
  - name: {name}
    type: STATIC
    connect_timeout: 1s{h2}
    load_assignment:
      cluster_name: {name}
      endpoints:
      - lb_endpoints:
        - endpoint:
            address:
              socket_address: {{ address: {ip}, port_value: {port} }}"#,
        ip = addr.ip(),
        port = addr.port()
    )
}
