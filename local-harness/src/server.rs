//! The HTTP side of `txbridge-harness serve`: per simulated cluster, what a kube-apiserver serves
//! (discovery document, JWKS, TokenRequest API), the mirror copies of the documents, and the
//! admin API for tests.
//!
//! Routes (BASE = `http://127.0.0.1:PORT`):
//! - `GET BASE/clusters/NAME/.well-known/openid-configuration`, `GET BASE/clusters/NAME/openid/v1/jwks`
//! - `GET BASE/mirror/NAME/...` the same documents for mirror clusters (`issuer` is the issuer string)
//! - `POST BASE/clusters/NAME/api/v1/namespaces/NS/serviceaccounts/SA/token` (JSON or the protobuf
//!   kubectl sends) -> 201 TokenRequest; plus `/version`, `/api`, `/apis`, `/api/v1` stubs
//! - `GET BASE/admin/clusters`; `POST BASE/admin/clusters/NAME/rotate[?keep_old=false]
//!   [&publish=false]` (`publish=false`: the new key signs at once but is left out of the JWKS,
//!   as a lagging apiserver replica or mirror would serve it, until `POST
//!   BASE/admin/clusters/NAME/publish`);
//!   `POST BASE/admin/clusters/NAME/sign` `{"header", "claims", "key": "active"|"foreign",
//!   "key_mismatch"?, "hmac_secret"?}` (header and claims signed byte for byte as sent);
//!   `POST BASE/admin/clusters/NAME/fault` `{"target": "discovery"|"jwks"|"both", "mode": ...}`;
//!   `GET BASE/admin/stats`, `POST BASE/admin/stats/reset`

use std::future::{Future, IntoFuture as _};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path as FsPath, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock, PoisonError, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use jsonwebtoken::{Algorithm, EncodingKey};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::keys::{KeyPair, signing_input};
use crate::token::{TokenRequest, TokenSubject, projected_claims, valid_object_name};
use crate::{Alg, ClusterSpec, Error};

/// How long a `hang` fault holds a request before giving up (unless healed or shut down first).
const HANG_LIMIT: Duration = Duration::from_secs(600);
/// Size of the `huge` fault's body.
pub const HUGE_BODY_BYTES: usize = 10 * 1024 * 1024;
/// How long shutdown waits for in-flight requests.
const SHUTDOWN_GRACE: Duration = Duration::from_secs(5);
/// Largest request body accepted by any route.
const MAX_BODY_BYTES: usize = 1024 * 1024;

/// Options of `txbridge-harness serve`.
#[derive(Debug, Clone, Default)]
pub struct ServeOptions {
    /// Clusters to simulate; empty means [`ClusterSpec::defaults`].
    pub clusters: Vec<ClusterSpec>,
    /// Directory of `NAME.pem` PKCS#8 private keys: loaded when present, generated and written
    /// (mode 0600) when absent. Without it, keys are generated in memory at start.
    pub key_dir: Option<PathBuf>,
}

/// A simulated cluster as the admin API and the ready file describe it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ClusterInfo {
    /// Cluster name.
    pub name: String,
    /// `iss` of its tokens.
    pub issuer: String,
    /// Where its discovery document is served.
    pub discovery_url: String,
    /// Where its JWKS is served.
    pub jwks_url: String,
    /// Its "kube-apiserver" (`--server` for kubectl): `BASE/clusters/NAME`.
    pub api_server: String,
    /// Signing algorithm.
    pub alg: Alg,
    /// Whether the documents are served away from the issuer string.
    pub mirror: bool,
    /// Published key ids, active first.
    pub kids: Vec<String>,
    /// The key id new tokens are signed with.
    #[serde(default)]
    pub active_kid: String,
}

/// Fault injected into a cluster's discovery or JWKS endpoint.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultMode {
    /// Serve normally.
    #[default]
    None,
    /// 500 with a short body.
    Status500,
    /// 200 with a body that is not JSON.
    Garbage,
    /// 200 with a 10 MiB JSON-ish body.
    Huge,
    /// 302 to the same path on another host (127.0.0.2).
    Redirect,
    /// Accept and never answer (until healed, shut down, or ten minutes pass).
    Hang,
    /// Answer normally after [`SLOW_DELAY`] (a slow but working upstream).
    Slow,
}

/// How long a `slow` fault delays the answer.
pub const SLOW_DELAY: Duration = Duration::from_millis(500);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Doc {
    Discovery,
    Jwks,
}

/// Which URL a document was requested under.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum View {
    /// `BASE/clusters/NAME/...` (the cluster's own API server).
    ApiServer,
    /// `BASE/mirror/NAME/...` (mirror clusters only).
    Mirror,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Faults {
    discovery: FaultMode,
    jwks: FaultMode,
}

impl Faults {
    fn get(self, doc: Doc) -> FaultMode {
        match doc {
            Doc::Discovery => self.discovery,
            Doc::Jwks => self.jwks,
        }
    }
}

#[derive(Debug, Default)]
struct Stats {
    discovery: AtomicU64,
    jwks: AtomicU64,
    token_requests: AtomicU64,
}

impl Stats {
    fn snapshot(&self) -> Value {
        json!({
            "discovery": self.discovery.load(Ordering::Relaxed),
            "jwks": self.jwks.load(Ordering::Relaxed),
            "token_requests": self.token_requests.load(Ordering::Relaxed),
        })
    }

    fn reset(&self) {
        self.discovery.store(0, Ordering::Relaxed);
        self.jwks.store(0, Ordering::Relaxed);
        self.token_requests.store(0, Ordering::Relaxed);
    }
}

#[derive(Debug)]
struct KeySet {
    active: Arc<KeyPair>,
    /// Older keys still published (rotation overlap), newest first.
    previous: Vec<Arc<KeyPair>>,
    /// The active key signs, but the JWKS does not list it yet (a lagging replica or mirror).
    unpublished: bool,
}

#[derive(Debug)]
struct Cluster {
    name: String,
    alg: Alg,
    mirror: bool,
    issuer: String,
    api_server: String,
    discovery_url: String,
    jwks_url: String,
    keys: RwLock<KeySet>,
    faults: watch::Sender<Faults>,
    stats: Stats,
}

impl Cluster {
    fn keys(&self) -> std::sync::RwLockReadGuard<'_, KeySet> {
        self.keys.read().unwrap_or_else(PoisonError::into_inner)
    }

    fn active_key(&self) -> Arc<KeyPair> {
        Arc::clone(&self.keys().active)
    }

    fn info(&self) -> ClusterInfo {
        let keys = self.keys();
        let kids = std::iter::once(&keys.active)
            .chain(&keys.previous)
            .map(|k| k.kid().to_owned())
            .collect();
        ClusterInfo {
            name: self.name.clone(),
            issuer: self.issuer.clone(),
            discovery_url: self.discovery_url.clone(),
            jwks_url: self.jwks_url.clone(),
            api_server: self.api_server.clone(),
            alg: self.alg,
            mirror: self.mirror,
            kids,
            active_kid: keys.active.kid().to_owned(),
        }
    }

    fn jwks(&self) -> Value {
        let keys = self.keys();
        let active = (!keys.unpublished).then_some(&keys.active);
        let jwks: Vec<&Value> = active
            .into_iter()
            .chain(&keys.previous)
            .map(|k| k.public_jwk())
            .collect();
        json!({ "keys": jwks })
    }

    fn discovery(&self, view: View) -> Value {
        let jwks_uri = match view {
            View::Mirror => self.jwks_url.clone(),
            View::ApiServer => format!("{}/openid/v1/jwks", self.api_server),
        };
        json!({
            "issuer": self.issuer,
            "jwks_uri": jwks_uri,
            "response_types_supported": ["id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": [self.alg.as_str()],
        })
    }
}

#[derive(Debug)]
struct AppState {
    base_url: String,
    redirect_base: String,
    clusters: Vec<Arc<Cluster>>,
    shutdown: watch::Receiver<bool>,
}

impl AppState {
    fn cluster(&self, name: &str) -> Option<&Arc<Cluster>> {
        self.clusters.iter().find(|c| c.name == name)
    }
}

type Shared = Arc<AppState>;

/// A bound, not yet running harness server.
#[derive(Debug)]
pub struct Harness {
    listener: TcpListener,
    state: Shared,
    shutdown: watch::Sender<bool>,
}

impl Harness {
    /// Binds `listen` (port 0 picks a free port) and prepares the clusters' keys.
    pub async fn bind(listen: SocketAddr, options: ServeOptions) -> Result<Self, Error> {
        let specs = if options.clusters.is_empty() {
            ClusterSpec::defaults()
        } else {
            options.clusters
        };
        for (i, spec) in specs.iter().enumerate() {
            if specs[..i].iter().any(|s| s.name == spec.name) {
                return Err(Error::Spec(format!("cluster {:?} given twice", spec.name)));
            }
        }
        let listener = TcpListener::bind(listen)
            .await
            .map_err(Error::io(format!("cannot listen on {listen}")))?;
        let local = listener
            .local_addr()
            .map_err(Error::io("cannot read the listening address"))?;
        let host = match local.ip() {
            IpAddr::V4(ip) if ip.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
            IpAddr::V6(ip) if ip.is_unspecified() => IpAddr::V6(Ipv6Addr::LOCALHOST),
            ip => ip,
        };
        let base_url = format!("http://{}", SocketAddr::new(host, local.port()));
        let redirect_base = format!("http://127.0.0.2:{}", local.port());

        // Keys are independent: generate (RSA takes a moment) in parallel, off the runtime.
        let mut tasks = Vec::new();
        for spec in &specs {
            let (name, alg, dir) = (spec.name.clone(), spec.alg, options.key_dir.clone());
            tasks.push(tokio::task::spawn_blocking(move || {
                load_or_generate(&name, alg, dir.as_deref())
            }));
        }
        let mut clusters = Vec::new();
        for (spec, task) in specs.into_iter().zip(tasks) {
            let key = task
                .await
                .map_err(|e| Error::Key(format!("key generation task failed: {e}")))??;
            clusters.push(Arc::new(new_cluster(&base_url, spec, key)));
        }
        let (shutdown, shutdown_rx) = watch::channel(false);
        let state = Arc::new(AppState {
            base_url,
            redirect_base,
            clusters,
            shutdown: shutdown_rx,
        });
        Ok(Harness {
            listener,
            state,
            shutdown,
        })
    }

    /// `http://127.0.0.1:PORT` (or the bound address).
    pub fn base_url(&self) -> &str {
        &self.state.base_url
    }

    /// The simulated clusters, as `GET /admin/clusters` lists them.
    pub fn clusters(&self) -> Vec<ClusterInfo> {
        self.state.clusters.iter().map(|c| c.info()).collect()
    }

    /// The ready-file / startup document: `{"base_url": ..., "clusters": [...]}`.
    pub fn ready_document(&self) -> Value {
        json!({ "base_url": self.base_url(), "clusters": self.clusters() })
    }

    /// Serves until `shutdown` completes, then drains for a few seconds (hanging fault requests
    /// are released at once).
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send) -> Result<(), Error> {
        let Harness {
            listener,
            state,
            shutdown: stop,
        } = self;
        let mut stopping = state.shutdown.clone();
        let app = router(state);
        let mut server = tokio::spawn(
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopping.wait_for(|s| *s).await;
                })
                .into_future(),
        );
        let joined = tokio::select! {
            joined = &mut server => Some(joined),
            () = shutdown => None,
        };
        let joined = match joined {
            Some(joined) => joined,
            None => {
                let _ = stop.send(true);
                match tokio::time::timeout(SHUTDOWN_GRACE, &mut server).await {
                    Ok(joined) => joined,
                    Err(_) => {
                        server.abort();
                        return Ok(());
                    }
                }
            }
        };
        match joined {
            Ok(result) => result.map_err(Error::io("server failed")),
            Err(e) => Err(Error::Io {
                context: "server task failed".into(),
                source: std::io::Error::other(e.to_string()),
            }),
        }
    }
}

fn load_or_generate(name: &str, alg: Alg, dir: Option<&FsPath>) -> Result<KeyPair, Error> {
    let Some(dir) = dir else {
        return KeyPair::generate(alg);
    };
    let path = dir.join(format!("{name}.pem"));
    match std::fs::read_to_string(&path) {
        Ok(pem) => KeyPair::from_pkcs8_pem(alg, &pem)
            .map_err(|e| Error::Key(format!("{}: {e}", path.display()))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let key = KeyPair::generate(alg)?;
            std::fs::create_dir_all(dir)
                .map_err(Error::io(format!("cannot create {}", dir.display())))?;
            write_private_file(&path, key.private_pkcs8_pem())?;
            Ok(key)
        }
        Err(e) => Err(Error::Io {
            context: format!("cannot read {}", path.display()),
            source: e,
        }),
    }
}

/// Writes `contents` to `path` readable by the owner only (0600 on Unix).
pub fn write_private_file(path: &FsPath, contents: &str) -> Result<(), Error> {
    use std::io::Write as _;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
        options.mode(0o600);
        let mut file = options
            .open(path)
            .map_err(Error::io(format!("cannot write {}", path.display())))?;
        // The file may have existed with wider permissions.
        file.set_permissions(std::fs::Permissions::from_mode(0o600))
            .map_err(Error::io(format!("cannot chmod {}", path.display())))?;
        file.write_all(contents.as_bytes())
            .map_err(Error::io(format!("cannot write {}", path.display())))
    }
    #[cfg(not(unix))]
    {
        let mut file = options
            .open(path)
            .map_err(Error::io(format!("cannot write {}", path.display())))?;
        file.write_all(contents.as_bytes())
            .map_err(Error::io(format!("cannot write {}", path.display())))
    }
}

/// Writes `doc` as JSON to `path` atomically (temporary file in the same directory + rename).
pub fn write_json_atomically(path: &FsPath, doc: &Value) -> Result<(), Error> {
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(format!(".tmp.{}", std::process::id()));
    let tmp = PathBuf::from(tmp);
    let text = serde_json::to_string_pretty(doc)
        .map_err(|e| Error::Spec(format!("cannot serialize the ready file: {e}")))?;
    std::fs::write(&tmp, text + "\n")
        .map_err(Error::io(format!("cannot write {}", tmp.display())))?;
    std::fs::rename(&tmp, path).map_err(Error::io(format!(
        "cannot rename {} to {}",
        tmp.display(),
        path.display()
    )))
}

fn new_cluster(base_url: &str, spec: ClusterSpec, key: KeyPair) -> Cluster {
    let api_server = format!("{base_url}/clusters/{}", spec.name);
    let (issuer, docs_root) = if spec.mirror {
        let issuer = spec
            .issuer
            .unwrap_or_else(|| format!("https://{}.cluster.invalid", spec.name));
        (issuer, format!("{base_url}/mirror/{}", spec.name))
    } else {
        // Like kube-apiserver with --service-account-issuer set elsewhere: the documents stay
        // on the API server even when the issuer string is external.
        (
            spec.issuer.unwrap_or_else(|| api_server.clone()),
            api_server.clone(),
        )
    };
    Cluster {
        discovery_url: format!("{docs_root}/.well-known/openid-configuration"),
        jwks_url: format!("{docs_root}/openid/v1/jwks"),
        name: spec.name,
        alg: spec.alg,
        mirror: spec.mirror,
        issuer,
        api_server,
        keys: RwLock::new(KeySet {
            active: Arc::new(key),
            previous: Vec::new(),
            unpublished: false,
        }),
        faults: watch::Sender::new(Faults::default()),
        stats: Stats::default(),
    }
}

/// Human-readable lines printed by `serve` at start-up. No secrets.
pub fn startup_summary(base_url: &str, clusters: &[ClusterInfo]) -> String {
    let mut out = format!("txbridge-harness listening on {base_url}\n");
    for c in clusters {
        let kind = if c.mirror { "mirror" } else { "direct" };
        out.push_str(&format!(
            "cluster {name} ({alg}, {kind})\n  issuer:     {iss}\n  discovery:  {disc}\n  \
             jwks:       {jwks}\n  token API:  POST {api}/api/v1/namespaces/NS/serviceaccounts/SA/token\n  \
             kubectl:    kubectl --server {api} --insecure-skip-tls-verify create token SA -n NS --audience txbridge\n",
            name = c.name,
            alg = c.alg,
            iss = c.issuer,
            disc = c.discovery_url,
            jwks = c.jwks_url,
            api = c.api_server,
        ));
    }
    out.push_str(&format!(
        "admin API: {base_url}/admin/clusters (rotate, sign, fault, stats)\n\
         dev config: txbridge-harness config --harness {base_url} --issuer URL\n"
    ));
    out
}

fn router(state: Shared) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route(
            "/clusters/{name}/.well-known/openid-configuration",
            get(api_server_discovery),
        )
        .route("/clusters/{name}/openid/v1/jwks", get(api_server_jwks))
        .route(
            "/mirror/{name}/.well-known/openid-configuration",
            get(mirror_discovery),
        )
        .route("/mirror/{name}/openid/v1/jwks", get(mirror_jwks))
        .route(
            "/clusters/{name}/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token",
            post(create_token),
        )
        .route("/clusters/{name}/version", get(kube_version))
        .route("/clusters/{name}/api", get(kube_api_versions))
        .route("/clusters/{name}/apis", get(kube_api_groups))
        .route("/clusters/{name}/api/v1", get(kube_api_v1))
        .route("/admin/clusters", get(admin_clusters))
        .route("/admin/clusters/{name}/rotate", post(admin_rotate))
        .route("/admin/clusters/{name}/publish", post(admin_publish))
        .route("/admin/clusters/{name}/sign", post(admin_sign))
        .route("/admin/clusters/{name}/fault", post(admin_fault))
        .route("/admin/stats", get(admin_stats))
        .route("/admin/stats/reset", post(admin_stats_reset))
        .fallback(|| async { kube_status(StatusCode::NOT_FOUND, "NotFound", "not found") })
        .layer(axum::extract::DefaultBodyLimit::max(MAX_BODY_BYTES))
        .with_state(state)
}

// ---------------------------------------------------------------------------------------------
// Discovery documents and JWKS (with fault injection).

async fn api_server_discovery(
    State(s): State<Shared>,
    Path(name): Path<String>,
    uri: Uri,
) -> Response {
    document(s, &name, Doc::Discovery, View::ApiServer, uri).await
}

async fn api_server_jwks(State(s): State<Shared>, Path(name): Path<String>, uri: Uri) -> Response {
    document(s, &name, Doc::Jwks, View::ApiServer, uri).await
}

async fn mirror_discovery(State(s): State<Shared>, Path(name): Path<String>, uri: Uri) -> Response {
    document(s, &name, Doc::Discovery, View::Mirror, uri).await
}

async fn mirror_jwks(State(s): State<Shared>, Path(name): Path<String>, uri: Uri) -> Response {
    document(s, &name, Doc::Jwks, View::Mirror, uri).await
}

async fn document(state: Shared, name: &str, doc: Doc, view: View, uri: Uri) -> Response {
    let Some(cluster) = state.cluster(name) else {
        return kube_status(StatusCode::NOT_FOUND, "NotFound", "no such cluster");
    };
    if view == View::Mirror && !cluster.mirror {
        return kube_status(StatusCode::NOT_FOUND, "NotFound", "cluster is not mirrored");
    }
    let counter = match doc {
        Doc::Discovery => &cluster.stats.discovery,
        Doc::Jwks => &cluster.stats.jwks,
    };
    counter.fetch_add(1, Ordering::Relaxed);

    let mut faults = cluster.faults.subscribe();
    let mut shutdown = state.shutdown.clone();
    let give_up = tokio::time::Instant::now() + HANG_LIMIT;
    loop {
        let mode = faults.borrow_and_update().get(doc);
        match mode {
            FaultMode::None => break,
            FaultMode::Status500 => {
                return (StatusCode::INTERNAL_SERVER_ERROR, "internal server error\n")
                    .into_response();
            }
            FaultMode::Garbage => {
                return (
                    [(header::CONTENT_TYPE, "application/json")],
                    "<html><body>this is not JSON {\"keys\": [</body></html>\n",
                )
                    .into_response();
            }
            FaultMode::Huge => {
                return ([(header::CONTENT_TYPE, "application/json")], huge_body()).into_response();
            }
            FaultMode::Redirect => {
                let path = uri.path_and_query().map_or(uri.path(), |p| p.as_str());
                let location = format!("{}{path}", state.redirect_base);
                return (StatusCode::FOUND, [(header::LOCATION, location)], "").into_response();
            }
            FaultMode::Slow => {
                tokio::select! {
                    () = tokio::time::sleep(SLOW_DELAY) => break,
                    _ = shutdown.wait_for(|s| *s) => {
                        return StatusCode::SERVICE_UNAVAILABLE.into_response();
                    }
                }
            }
            FaultMode::Hang => {
                tokio::select! {
                    changed = faults.changed() => {
                        if changed.is_err() {
                            return StatusCode::SERVICE_UNAVAILABLE.into_response();
                        }
                    }
                    _ = shutdown.wait_for(|s| *s) => {
                        return StatusCode::SERVICE_UNAVAILABLE.into_response();
                    }
                    () = tokio::time::sleep_until(give_up) => {
                        return StatusCode::GATEWAY_TIMEOUT.into_response();
                    }
                }
            }
        }
    }
    match doc {
        Doc::Discovery => json_response(StatusCode::OK, &cluster.discovery(view)),
        Doc::Jwks => {
            let mut resp = json_response(StatusCode::OK, &cluster.jwks());
            let h = resp.headers_mut();
            // As kube-apiserver serves it.
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/jwk-set+json"),
            );
            h.insert(
                header::CACHE_CONTROL,
                HeaderValue::from_static("public, max-age=3600"),
            );
            resp
        }
    }
}

fn huge_body() -> Bytes {
    static HUGE: OnceLock<Bytes> = OnceLock::new();
    HUGE.get_or_init(|| {
        let (head, tail) = (b"{\"keys\":[],\"padding\":\"", b"\"}");
        let mut body = Vec::with_capacity(HUGE_BODY_BYTES);
        body.extend_from_slice(head);
        body.resize(HUGE_BODY_BYTES - tail.len(), b'A');
        body.extend_from_slice(tail);
        Bytes::from(body)
    })
    .clone()
}

fn json_response(status: StatusCode, body: &Value) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/json")],
        body.to_string(),
    )
        .into_response()
}

// ---------------------------------------------------------------------------------------------
// The TokenRequest API and the bits of discovery kubectl may ask for.

fn kube_status(code: StatusCode, reason: &str, message: &str) -> Response {
    json_response(
        code,
        &json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": message,
            "reason": reason,
            "code": code.as_u16(),
        }),
    )
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

fn rfc3339(unix: i64) -> String {
    let t = UNIX_EPOCH + Duration::from_secs(u64::try_from(unix).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

async fn create_token(
    State(state): State<Shared>,
    Path((name, namespace, service_account)): Path<(String, String, String)>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(cluster) = state.cluster(&name) else {
        return kube_status(StatusCode::NOT_FOUND, "NotFound", "no such cluster");
    };
    cluster.stats.token_requests.fetch_add(1, Ordering::Relaxed);
    if !valid_object_name(&namespace) || !valid_object_name(&service_account) {
        return kube_status(
            StatusCode::NOT_FOUND,
            "NotFound",
            &format!("serviceaccounts \"{service_account}\" not found"),
        );
    }
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let decoded = if content_type.starts_with("application/vnd.kubernetes.protobuf") {
        crate::kubeproto::decode_token_request(&body)
    } else if body.iter().all(u8::is_ascii_whitespace) {
        Ok(TokenRequest::default())
    } else {
        serde_json::from_slice(&body).map_err(|e| e.to_string())
    };
    let request = match decoded {
        Ok(r) => r,
        Err(e) => {
            return kube_status(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                &format!("cannot decode TokenRequest: {e}"),
            );
        }
    };
    let resolved = match request.resolve(&cluster.name, &namespace, &cluster.issuer) {
        Ok(r) => r,
        Err(rejection) => {
            let code = StatusCode::from_u16(rejection.code).unwrap_or(StatusCode::BAD_REQUEST);
            return kube_status(code, rejection.reason, &rejection.message);
        }
    };
    let now = unix_now();
    let subject = TokenSubject {
        cluster: &cluster.name,
        namespace: &namespace,
        service_account: &service_account,
    };
    let claims = projected_claims(&cluster.issuer, &subject, &resolved, now);
    let key = cluster.active_key();
    // kube-apiserver's header: alg and kid, no typ.
    let header = json!({ "alg": key.alg().as_str(), "kid": key.kid() });
    let token = match key.sign_jwt(&header, &claims) {
        Ok(t) => t,
        Err(e) => {
            return kube_status(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalError",
                &e.to_string(),
            );
        }
    };
    let expires = now + resolved.expiration_seconds;
    json_response(
        StatusCode::CREATED,
        &json!({
            "kind": "TokenRequest",
            "apiVersion": "authentication.k8s.io/v1",
            "metadata": {
                "name": service_account,
                "namespace": namespace,
                "creationTimestamp": rfc3339(now),
            },
            "spec": {
                "audiences": resolved.audiences,
                "expirationSeconds": resolved.expiration_seconds,
                "boundObjectRef": resolved.bound,
            },
            "status": {
                "token": token,
                "expirationTimestamp": rfc3339(expires),
            },
        }),
    )
}

async fn kube_version() -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "major": "1",
            "minor": "32",
            "gitVersion": "v1.32.0-txbridge-harness",
            "gitCommit": "0000000000000000000000000000000000000000",
            "gitTreeState": "clean",
            "buildDate": "2025-01-01T00:00:00Z",
            "goVersion": "go1.23.0",
            "compiler": "gc",
            "platform": "linux/amd64",
        }),
    )
}

async fn kube_api_versions(State(state): State<Shared>) -> Response {
    let address = state.base_url.trim_start_matches("http://");
    json_response(
        StatusCode::OK,
        &json!({
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": address}],
        }),
    )
}

async fn kube_api_groups() -> Response {
    json_response(
        StatusCode::OK,
        &json!({"kind": "APIGroupList", "apiVersion": "v1", "groups": []}),
    )
}

async fn kube_api_v1() -> Response {
    json_response(
        StatusCode::OK,
        &json!({
            "kind": "APIResourceList",
            "groupVersion": "v1",
            "resources": [
                {"name": "serviceaccounts", "singularName": "serviceaccount", "namespaced": true,
                 "kind": "ServiceAccount", "verbs": [], "shortNames": ["sa"]},
                {"name": "serviceaccounts/token", "singularName": "", "namespaced": true,
                 "group": "authentication.k8s.io", "version": "v1", "kind": "TokenRequest",
                 "verbs": ["create"]},
            ],
        }),
    )
}

// ---------------------------------------------------------------------------------------------
// Admin API.

fn admin_error(status: StatusCode, message: impl Into<String>) -> Response {
    json_response(status, &json!({ "error": message.into() }))
}

fn no_such_cluster(name: &str) -> Response {
    admin_error(StatusCode::NOT_FOUND, format!("no such cluster {name:?}"))
}

async fn admin_clusters(State(state): State<Shared>) -> Response {
    let clusters: Vec<ClusterInfo> = state.clusters.iter().map(|c| c.info()).collect();
    json_response(StatusCode::OK, &json!({ "clusters": clusters }))
}

#[derive(Debug, Deserialize)]
struct RotateQuery {
    keep_old: Option<bool>,
    /// `false`: leave the new key out of the JWKS until `/publish`.
    publish: Option<bool>,
}

async fn admin_rotate(
    State(state): State<Shared>,
    Path(name): Path<String>,
    Query(query): Query<RotateQuery>,
) -> Response {
    let Some(cluster) = state.cluster(&name) else {
        return no_such_cluster(&name);
    };
    let alg = cluster.alg;
    let key = match tokio::task::spawn_blocking(move || KeyPair::generate(alg)).await {
        Ok(Ok(key)) => Arc::new(key),
        Ok(Err(e)) => return admin_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Err(e) => return admin_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
    };
    let kid = key.kid().to_owned();
    {
        let mut keys = cluster.keys.write().unwrap_or_else(PoisonError::into_inner);
        let old = std::mem::replace(&mut keys.active, key);
        if query.keep_old.unwrap_or(true) {
            keys.previous.insert(0, old);
        } else {
            keys.previous.clear();
        }
        keys.unpublished = !query.publish.unwrap_or(true);
    }
    json_response(
        StatusCode::OK,
        &json!({ "kid": kid, "kids": cluster.info().kids }),
    )
}

/// Publishes a key that `rotate?publish=false` left out of the JWKS.
async fn admin_publish(State(state): State<Shared>, Path(name): Path<String>) -> Response {
    let Some(cluster) = state.cluster(&name) else {
        return no_such_cluster(&name);
    };
    cluster
        .keys
        .write()
        .unwrap_or_else(PoisonError::into_inner)
        .unpublished = false;
    json_response(StatusCode::OK, &json!({ "kids": cluster.info().kids }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
enum KeyChoice {
    #[default]
    Active,
    Foreign,
}

#[derive(Debug, Deserialize)]
struct SignRequest {
    /// Signed byte for byte as it appears in the request.
    header: Box<RawValue>,
    /// Signed byte for byte as it appears in the request.
    claims: Box<RawValue>,
    #[serde(default)]
    key: KeyChoice,
    #[serde(default)]
    key_mismatch: bool,
    /// HMAC secret for HS* headers; default: the key's public SPKI PEM text.
    #[serde(default)]
    hmac_secret: Option<String>,
}

async fn admin_sign(
    State(state): State<Shared>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let Some(cluster) = state.cluster(&name) else {
        return no_such_cluster(&name);
    };
    let request: SignRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return admin_error(StatusCode::BAD_REQUEST, format!("bad sign request: {e}"));
        }
    };
    let header: Value = match serde_json::from_str(request.header.get()) {
        Ok(h) => h,
        Err(e) => return admin_error(StatusCode::BAD_REQUEST, format!("bad header: {e}")),
    };
    let Some(alg) = header.get("alg").and_then(Value::as_str).map(str::to_owned) else {
        return admin_error(
            StatusCode::BAD_REQUEST,
            "header must be an object with a string alg",
        );
    };
    let key = match request.key {
        KeyChoice::Active => cluster.active_key(),
        KeyChoice::Foreign => {
            let alg = cluster.alg;
            match tokio::task::spawn_blocking(move || KeyPair::generate(alg)).await {
                Ok(Ok(key)) => Arc::new(key),
                Ok(Err(e)) => return admin_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
                Err(e) => return admin_error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
            }
        }
    };
    let input = signing_input(
        request.header.get().as_bytes(),
        request.claims.get().as_bytes(),
    );
    let signed = sign_as_requested(
        &key,
        &alg,
        input.as_bytes(),
        request.key_mismatch,
        request.hmac_secret.as_deref(),
    );
    match signed {
        Ok((signature, signed_with)) => json_response(
            StatusCode::OK,
            &json!({
                "token": format!("{input}.{signature}"),
                "kid": key.kid(),
                "signed_with": signed_with,
            }),
        ),
        Err(message) => admin_error(StatusCode::BAD_REQUEST, message),
    }
}

/// Signs `input` as the header's `alg` asks: `none` (empty signature), HS* (HMAC keyed with the
/// public key PEM, the algorithm-confusion attack), or the key's own family. Returns the
/// base64url signature and the algorithm actually used.
fn sign_as_requested(
    key: &KeyPair,
    alg: &str,
    input: &[u8],
    key_mismatch: bool,
    hmac_secret: Option<&str>,
) -> Result<(String, String), String> {
    if alg.eq_ignore_ascii_case("none") {
        return Ok((String::new(), "none".into()));
    }
    let parsed: Option<Algorithm> = alg.parse().ok();
    if let Some(hs @ (Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512)) = parsed {
        let secret = hmac_secret.unwrap_or_else(|| key.public_pem());
        let signature =
            jsonwebtoken::crypto::sign(input, &EncodingKey::from_secret(secret.as_bytes()), hs)
                .map_err(|e| format!("HMAC signing failed: {e}"))?;
        return Ok((signature, format!("{hs:?}")));
    }
    let use_alg = match parsed {
        Some(a) if key.can_sign(a) => a,
        _ if key_mismatch => key.alg().jwt(),
        _ => {
            return Err(format!(
                "header alg {alg:?} does not fit the cluster's {} key; \
                 set \"key_mismatch\": true to sign with {} anyway",
                key.alg(),
                key.alg()
            ));
        }
    };
    let signature = key.sign(input, use_alg).map_err(|e| e.to_string())?;
    Ok((signature, format!("{use_alg:?}")))
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "lowercase")]
enum FaultTarget {
    Discovery,
    Jwks,
    Both,
}

#[derive(Debug, Deserialize)]
struct FaultRequest {
    target: FaultTarget,
    mode: FaultMode,
}

async fn admin_fault(
    State(state): State<Shared>,
    Path(name): Path<String>,
    body: Bytes,
) -> Response {
    let Some(cluster) = state.cluster(&name) else {
        return no_such_cluster(&name);
    };
    let request: FaultRequest = match serde_json::from_slice(&body) {
        Ok(r) => r,
        Err(e) => {
            return admin_error(StatusCode::BAD_REQUEST, format!("bad fault request: {e}"));
        }
    };
    cluster.faults.send_modify(|f| match request.target {
        FaultTarget::Discovery => f.discovery = request.mode,
        FaultTarget::Jwks => f.jwks = request.mode,
        FaultTarget::Both => {
            f.discovery = request.mode;
            f.jwks = request.mode;
        }
    });
    let now = *cluster.faults.borrow();
    json_response(
        StatusCode::OK,
        &json!({ "discovery": now.discovery, "jwks": now.jwks }),
    )
}

async fn admin_stats(State(state): State<Shared>) -> Response {
    let clusters: serde_json::Map<String, Value> = state
        .clusters
        .iter()
        .map(|c| (c.name.clone(), c.stats.snapshot()))
        .collect();
    json_response(StatusCode::OK, &json!({ "clusters": clusters }))
}

async fn admin_stats_reset(State(state): State<Shared>) -> Response {
    for c in &state.clusters {
        c.stats.reset();
    }
    json_response(StatusCode::OK, &json!({ "reset": true }))
}

#[cfg(test)]
mod tests;
