//! The gate's config file (ARCHITECTURE.md "Consumer gate"): `RawConfig` as written (serde,
//! unknown keys are errors), compiled once at start into a checked [`Config`]. Errors name the
//! key path, the rule and the line, never a value (txbridge-toml).

use std::collections::BTreeMap;
use std::net::SocketAddr;

use http::HeaderName;
use serde::Deserialize;
use serde_json::Value;
use txbridge_jose::Glob;
use txbridge_toml::Problems;
pub use txbridge_toml::{ConfigError, ConfigProblem};
use url::Url;

use crate::route::PathGlob;

/// Where the gate listens when neither the file nor `--listen` says.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
/// The request header that carries the TxToken unless `token_header` says otherwise.
pub const DEFAULT_TOKEN_HEADER: &str = "Txn-Token";
/// Clock skew tolerated on `exp` and `iat` unless `leeway` says otherwise.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;
const MAX_LEEWAY_SECS: u64 = 300;

/// The config file as written.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawConfig {
    /// `iss` of the TxTokens (the TxToken service's issuer); its discovery document
    /// (`<issuer>/.well-known/openid-configuration`) names the JWKS unless `jwks_url` is set.
    /// https (http only on loopback with `insecure_allow_http_loopback`).
    pub issuer: String,
    /// The trust domain: the `aud` every TxToken must carry. Default: `issuer`.
    #[serde(default)]
    pub audience: Option<String>,
    /// The JWKS URL, instead of the one the discovery document names.
    #[serde(default)]
    pub jwks_url: Option<String>,
    /// Clock skew tolerated on `exp` and `iat`, e.g. "30s" (0..=5m). Default 30s.
    #[serde(default)]
    pub leeway: Option<String>,
    /// The request header carrying the TxToken (case-insensitive). Default "Txn-Token".
    #[serde(default)]
    pub token_header: Option<String>,
    /// A request no route matches: "deny" (403) or "verify" (any valid TxToken). Default "deny".
    #[serde(default)]
    pub default: Option<String>,
    /// Tests and development only: http:// issuer and JWKS URLs on 127.0.0.1, [::1] or localhost.
    #[serde(default)]
    pub insecure_allow_http_loopback: bool,
    /// The HTTP listen address, e.g. "127.0.0.1:8080" (the `--listen` flag wins). Default
    /// 127.0.0.1:8080.
    #[serde(default)]
    pub listen: Option<String>,
    /// The routes, in order: the first whose path and method match decides.
    #[serde(default)]
    pub routes: Vec<RawRoute>,
}

/// One route as written.
#[derive(Debug, Deserialize)]
#[cfg_attr(test, derive(schemars::JsonSchema))]
#[serde(deny_unknown_fields)]
pub struct RawRoute {
    /// A name for logs and metrics (1-64 of `A-Z a-z 0-9 - _ . :`). Default: `routes[N]`.
    #[serde(default)]
    pub id: Option<String>,
    /// The original path (no query) as a glob: `*` matches within one segment (a whole-segment
    /// `*` one non-empty segment), `**` (a whole segment) any number of segments.
    pub path: String,
    /// The methods this route is for (e.g. ["GET", "HEAD"]). Default: any method.
    #[serde(default)]
    pub methods: Option<Vec<String>>,
    /// Scopes the token must all grant.
    #[serde(default)]
    pub scopes: Vec<String>,
    /// Globs the last `req_wl` entry (the workload that sent the request) must match one of
    /// (`*` never matches `/` or `:`). Default: any workload.
    #[serde(default)]
    pub workloads: Option<Vec<String>>,
    /// Each value must equal the token's `tctx` member of that name (JSON equality).
    #[serde(default)]
    #[cfg_attr(test, schemars(with = "Option<BTreeMap<String, serde_json::Value>>"))]
    pub tctx: Option<BTreeMap<String, Value>>,
}

/// What a request no route matches gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Default {
    /// 403 whatever the token.
    Deny,
    /// Allowed with any valid TxToken.
    Verify,
}

/// One compiled route.
#[derive(Debug, Clone)]
pub struct Route {
    /// The configured id, or `routes[N]`.
    pub id: String,
    pub path: PathGlob,
    /// Upper-case method names; `None`: any.
    pub methods: Option<Vec<String>>,
    pub scopes: Vec<String>,
    pub workloads: Vec<Glob>,
    pub tctx: Vec<(String, Value)>,
}

impl Route {
    /// Does this route take a request with this method and (normalised) path?
    pub fn matches(&self, method: &str, path: &str) -> bool {
        self.methods
            .as_ref()
            .is_none_or(|ms| ms.iter().any(|m| m.eq_ignore_ascii_case(method)))
            && self.path.matches(path)
    }

    /// The verifier's requirements for this route: scopes, tctx, workloads.
    pub fn requirements(&self) -> txbridge_verifier::Requirements {
        let mut r = txbridge_verifier::Requirements::new();
        for s in &self.scopes {
            r = r.scope(s);
        }
        for (k, v) in &self.tctx {
            r = r.tctx(k, v.clone());
        }
        for g in &self.workloads {
            r = r.workload(g.clone());
        }
        r
    }
}

/// The checked config.
#[derive(Debug, Clone)]
pub struct Config {
    /// `iss` of the TxTokens, without a trailing `/`.
    pub issuer: String,
    pub audience: String,
    pub jwks_url: Option<Url>,
    pub leeway: u64,
    /// Lower-case header name.
    pub token_header: HeaderName,
    pub default: Default,
    pub insecure_allow_http_loopback: bool,
    pub listen: SocketAddr,
    pub routes: Vec<Route>,
}

impl Config {
    /// Parses and checks a config file's text.
    pub fn from_toml_str(text: &str) -> Result<Config, ConfigError> {
        let (raw, doc) = txbridge_toml::parse::<RawConfig>(text)?;
        Config::try_from(raw).map_err(|e| e.locate(&doc))
    }

    /// The first route whose path and method match, with its index.
    pub fn route(&self, method: &str, path: &str) -> Option<&Route> {
        self.routes.iter().find(|r| r.matches(method, path))
    }
}

fn url(p: &mut Problems, key: &str, text: &str, allow_http_loopback: bool) -> Option<Url> {
    p.keep(
        txbridge_jose::parse_url(text, allow_http_loopback)
            .map_err(|why| ConfigError::at(key, why.to_string())),
    )
}

/// Route ids: 1-64 ASCII letters, digits, '-', '_', '.' or ':'.
fn valid_id(id: &str) -> bool {
    !id.is_empty()
        && id.len() <= 64
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.:".contains(&b))
}

/// RFC 6749 §3.3 scope-token: 1*( %x21 / %x23-5B / %x5D-7E ).
fn valid_scope_token(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 256
        && s.bytes()
            .all(|b| b == 0x21 || (0x23..=0x5B).contains(&b) || (0x5D..=0x7E).contains(&b))
}

/// RFC 9110 method token (tchar), at most 32 characters.
fn valid_method(m: &str) -> bool {
    !m.is_empty()
        && m.len() <= 32
        && m.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

fn leeway(p: &mut Problems, value: Option<&str>) -> u64 {
    let Some(text) = value else {
        return DEFAULT_LEEWAY_SECS;
    };
    match humantime::parse_duration(text.trim()) {
        Ok(d) if d.as_secs() <= MAX_LEEWAY_SECS => d.as_secs(),
        Ok(_) => {
            p.push("leeway", "must be at most 5m");
            DEFAULT_LEEWAY_SECS
        }
        Err(_) => {
            p.push(
                "leeway",
                "must be a duration like \"30s\", \"5m\" or \"24h\"",
            );
            DEFAULT_LEEWAY_SECS
        }
    }
}

fn compile_route(
    problems: &mut Problems,
    i: usize,
    raw: RawRoute,
    ids: &mut Vec<String>,
) -> Option<Route> {
    let at = |key: &str| format!("routes[{i}].{key}");
    let mut route_problems = Problems::default();
    let p = &mut route_problems;
    let id = match raw.id {
        Some(id) if !valid_id(&id) => {
            p.push(at("id"), "must be 1-64 of A-Z a-z 0-9 - _ . :");
            String::new()
        }
        Some(id) if ids.contains(&id) => {
            p.push(at("id"), "is the id of an earlier route");
            String::new()
        }
        Some(id) => id,
        None => format!("routes[{i}]"),
    };
    ids.push(id.clone());
    let path = match PathGlob::new(&raw.path) {
        Ok(g) => Some(g),
        Err(why) => {
            p.push(at("path"), why);
            None
        }
    };
    let methods = raw.methods.map(|ms| {
        if ms.is_empty() {
            p.push(
                at("methods"),
                "must list at least one method (leave it out for any)",
            );
        }
        ms.iter()
            .enumerate()
            .filter_map(|(j, m)| {
                if valid_method(m) {
                    Some(m.to_ascii_uppercase())
                } else {
                    p.push(format!("routes[{i}].methods[{j}]"), "is not an HTTP method");
                    None
                }
            })
            .collect::<Vec<_>>()
    });
    for (j, s) in raw.scopes.iter().enumerate() {
        if !valid_scope_token(s) {
            p.push(
                format!("routes[{i}].scopes[{j}]"),
                "must be one scope token (printable ASCII, no space, quote or backslash)",
            );
        }
    }
    let mut workloads = Vec::new();
    if let Some(ws) = raw.workloads {
        if ws.is_empty() {
            p.push(
                at("workloads"),
                "must list at least one glob (leave it out for any workload)",
            );
        }
        for (j, w) in ws.iter().enumerate() {
            match Glob::workload(w) {
                Ok(g) => workloads.push(g),
                Err(why) => p.push(format!("routes[{i}].workloads[{j}]"), why),
            }
        }
    }
    let mut tctx = Vec::new();
    for (k, v) in raw.tctx.unwrap_or_default() {
        if k.is_empty() {
            p.push(at("tctx"), "has an empty member name");
        }
        tctx.push((k, v));
    }
    if !route_problems.is_empty() {
        problems.keep::<()>(Err(route_problems.into_error()));
        return None;
    }
    Some(Route {
        id,
        path: path?,
        methods,
        scopes: raw.scopes,
        workloads,
        tctx,
    })
}

impl TryFrom<RawConfig> for Config {
    type Error = ConfigError;

    fn try_from(raw: RawConfig) -> Result<Config, ConfigError> {
        let mut p = Problems::default();
        let allow = raw.insecure_allow_http_loopback;
        let issuer = raw.issuer.trim_end_matches('/').to_owned();
        url(&mut p, "issuer", &issuer, allow);
        let audience = match raw.audience {
            Some(a) if a.trim().is_empty() => {
                p.push("audience", "must not be empty");
                a
            }
            Some(a) => a,
            None => issuer.clone(),
        };
        let jwks_url = raw
            .jwks_url
            .as_deref()
            .and_then(|u| url(&mut p, "jwks_url", u, allow));
        let leeway = leeway(&mut p, raw.leeway.as_deref());
        let token_header = match raw.token_header.as_deref() {
            None => HeaderName::from_static("txn-token"),
            Some(h) => match HeaderName::from_bytes(h.as_bytes()) {
                Ok(name) => name,
                Err(_) => {
                    p.push("token_header", "must be an HTTP header name");
                    HeaderName::from_static("txn-token")
                }
            },
        };
        let default = match raw.default.as_deref() {
            None | Some("deny") => Default::Deny,
            Some("verify") => Default::Verify,
            Some(_) => {
                p.push("default", "must be \"deny\" or \"verify\"");
                Default::Deny
            }
        };
        let listen = raw.listen.as_deref().unwrap_or(DEFAULT_LISTEN);
        let listen = match listen.parse::<SocketAddr>() {
            Ok(a) => a,
            Err(_) => {
                p.push(
                    "listen",
                    "must be an IP address and port, like \"127.0.0.1:8080\"",
                );
                SocketAddr::from(([127, 0, 0, 1], 8080))
            }
        };
        let mut ids = Vec::new();
        let routes: Vec<Route> = raw
            .routes
            .into_iter()
            .enumerate()
            .filter_map(|(i, r)| compile_route(&mut p, i, r, &mut ids))
            .collect();
        if !p.is_empty() {
            return Err(p.into_error());
        }
        Ok(Config {
            issuer,
            audience,
            jwks_url,
            leeway,
            token_header,
            default,
            insecure_allow_http_loopback: allow,
            listen,
            routes,
        })
    }
}

#[cfg(test)]
mod tests;
