//! `txbridge`: the consumer-side command line.
//!
//! ```text
//! txbridge verify --issuer ISS --audience TRUST_DOMAIN [--jwks FILE_OR_URL] [--leeway 30s] < token
//! txbridge decode < token
//! txbridge policy check --config FILE
//! txbridge policy explain --config FILE (--token FILE|- | --subject CLUSTER/NS/SA) [--scope S]
//!     [--request-details JSON] [--workload NAME] [--json]
//! ```
//! `verify`: exit 0 and the claims as JSON on stdout when the TxToken is valid; exit 1 and one
//! reason line on stderr when it is not (or its keys cannot be had). Usage errors exit 2 (clap's,
//! and nothing else exits 2). Without `--jwks` the keys come from the issuer's discovery document.
//! `decode`: header and claims WITHOUT verification, marked so on stdout and stderr.
//! `policy check`: validates a service config offline (schema, URLs, templates, CEL); each
//! problem on stderr with its line and key path, never a value; exit 0 valid, 1 invalid.
//! `policy explain`: policy by policy, whether it applies and why not, and what the service
//! would answer, without contacting any issuer (a token's signature is NOT checked); exit 0
//! allow, 1 deny. Usage errors (and an unreadable or invalid input) exit 2.
//! The token itself is never printed.
#![forbid(unsafe_code)]

use std::io::Read as _;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use serde_json::json;
use txbridge_verifier::{ReqwestClient, Verifier, decode_unverified};

/// Largest input read from stdin (TxTokens are a few KiB).
const MAX_INPUT: u64 = 64 * 1024;

#[derive(Debug, Parser)]
#[command(
    name = "txbridge",
    version,
    about = "Verify or decode txbridge Transaction Tokens (read on stdin); check or explain a service config"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Verify a TxToken read on stdin; print its claims as JSON.
    Verify {
        /// The TxToken service's issuer URL (`iss`; its discovery document lives under it).
        #[arg(long, value_parser = parse_url)]
        issuer: String,
        /// The trust domain (`aud`).
        #[arg(long)]
        audience: String,
        /// Keys from this JWKS file or http(s) URL instead of the issuer's discovery document.
        #[arg(long, value_name = "FILE_OR_URL")]
        jwks: Option<String>,
        /// Clock skew tolerated on exp and iat, e.g. 30s.
        #[arg(long, default_value = "30s", value_parser = parse_duration)]
        leeway: u64,
        /// Tests/dev only: allow http:// issuer and JWKS URLs on loopback hosts.
        #[arg(long)]
        insecure_allow_http_loopback: bool,
    },
    /// Print a token's header and claims WITHOUT verifying anything.
    Decode,
    /// Check or explain a service config, offline.
    #[command(subcommand)]
    Policy(PolicyCommand),
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Validate a service config: each problem with its line and key path; exit 0 valid, 1 not.
    Check {
        /// The service's TOML config.
        #[arg(long, value_name = "FILE")]
        config: std::path::PathBuf,
    },
    /// Explain what the service would decide, policy by policy (no signature is checked).
    Explain {
        /// The service's TOML config.
        #[arg(long, value_name = "FILE")]
        config: std::path::PathBuf,
        /// A ServiceAccount token (a file, or - for stdin), read WITHOUT verification.
        #[arg(
            long,
            value_name = "FILE|-",
            conflicts_with = "subject",
            required_unless_present = "subject"
        )]
        token: Option<String>,
        /// The subject as CLUSTER/NAMESPACE/SERVICE_ACCOUNT.
        #[arg(long, value_name = "CLUSTER/NS/SA", value_parser = parse_subject)]
        subject: Option<(String, String, String)>,
        /// The scope parameter (space-separated scopes).
        #[arg(long)]
        scope: Option<String>,
        /// The request_details parameter, a JSON object.
        #[arg(long, value_name = "JSON", value_parser = parse_json_object)]
        request_details: Option<serde_json::Map<String, serde_json::Value>>,
        /// The workload the request names (X-Txbridge-Workload).
        #[arg(long, value_name = "NAME")]
        workload: Option<String>,
        /// Print the explanation as JSON.
        #[arg(long)]
        json: bool,
    },
}

fn parse_subject(s: &str) -> Result<(String, String, String), String> {
    let mut parts = s.split('/');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(c), Some(n), Some(a), None) if !c.is_empty() && !n.is_empty() && !a.is_empty() => {
            Ok((c.to_owned(), n.to_owned(), a.to_owned()))
        }
        _ => Err("expected CLUSTER/NAMESPACE/SERVICE_ACCOUNT".to_owned()),
    }
}

fn parse_json_object(s: &str) -> Result<serde_json::Map<String, serde_json::Value>, String> {
    match serde_json::from_str(s) {
        Ok(serde_json::Value::Object(map)) => Ok(map),
        _ => Err("expected a JSON object".to_owned()),
    }
}

fn parse_url(s: &str) -> Result<String, String> {
    txbridge_verifier::parse_url_ascii(s)
        .map(|_| s.to_owned())
        .map_err(|why| format!("not a URL: {why}"))
}

fn parse_duration(s: &str) -> Result<u64, String> {
    humantime::parse_duration(s.trim())
        .map(|d| d.as_secs())
        .map_err(|_| "not a duration like 30s or 2m".to_owned())
}

/// A failure after the arguments were accepted: exit 1 with one line on stderr.
struct Failure(String);

impl<E: std::fmt::Display> From<E> for Failure {
    fn from(e: E) -> Self {
        Failure(e.to_string())
    }
}

fn read_token() -> Result<String, Failure> {
    let mut text = String::new();
    std::io::stdin()
        .take(MAX_INPUT + 1)
        .read_to_string(&mut text)
        .map_err(|_| Failure("cannot read a token (UTF-8 text) on stdin".into()))?;
    if text.len() as u64 > MAX_INPUT {
        return Err(Failure("input on stdin is too large".into()));
    }
    let token = text.trim();
    if token.is_empty() {
        return Err(Failure("no token on stdin".into()));
    }
    Ok(token.to_owned())
}

fn verify(
    issuer: &str,
    audience: &str,
    jwks: Option<&str>,
    leeway: u64,
    insecure_allow_http_loopback: bool,
) -> Result<(), Failure> {
    let token = read_token()?;
    let builder = Verifier::builder(issuer, audience)
        .leeway(leeway)
        .insecure_allow_http_loopback(insecure_allow_http_loopback);
    let is_url = |s: &str| s.starts_with("https://") || s.starts_with("http://");
    let verifier = match jwks {
        Some(file) if !is_url(file) => {
            let bytes = std::fs::read(file)
                .map_err(|e| Failure(format!("cannot read the JWKS file: {}", e.kind())))?;
            builder.build_static(&bytes)?
        }
        Some(url) => builder
            .jwks_url(url)
            .build(Arc::new(ReqwestClient::new()?))?,
        None => builder.build(Arc::new(ReqwestClient::new()?))?,
    };
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|_| Failure("cannot start the async runtime".into()))?;
    let claims = runtime.block_on(verifier.verify(&token))?;
    let out = serde_json::to_string_pretty(&claims)?;
    println!("{out}");
    Ok(())
}

fn decode() -> Result<(), Failure> {
    let token = read_token()?;
    let (header, claims) = decode_unverified(&token)?;
    eprintln!("NOT VERIFIED: decoded without checking the signature, issuer, audience or expiry");
    let out = serde_json::to_string_pretty(&json!({
        "verified": false,
        "header": header,
        "claims": claims,
    }))?;
    println!("{out}");
    Ok(())
}

/// How a policy command ends: its exit code, after it printed its own output.
enum Policy {
    /// Valid config / the service would issue a token.
    Yes,
    /// Invalid config / the service would refuse.
    No,
    /// The input could not be read or used (exit 2, like a usage error).
    Unusable(String),
}

fn read_config(path: &std::path::Path) -> Result<(String, String), Policy> {
    let name = path.display().to_string();
    std::fs::read_to_string(path)
        .map(|text| (name.clone(), text))
        .map_err(|e| Policy::Unusable(format!("cannot read {name}: {}", e.kind())))
}

/// Prints each problem as `FILE:LINE: PATH REASON` on stderr.
fn print_problems(file: &str, err: &txbridge_core::ConfigError) {
    for p in err.problems() {
        let at = p.line.map(|l| format!(":{l}")).unwrap_or_default();
        let what = if p.path.is_empty() {
            p.reason.clone()
        } else {
            format!("{} {}", p.path, p.reason)
        };
        eprintln!("{file}{at}: {what}");
    }
}

fn policy_check(path: &std::path::Path) -> Policy {
    let (file, text) = match read_config(path) {
        Ok(t) => t,
        Err(e) => return e,
    };
    match txbridge_core::Config::from_toml_str(&text) {
        Ok(config) => {
            let (clusters, policies) = (config.clusters().len(), config.policy_ids().count());
            println!("{file}: valid ({clusters} cluster(s), {policies} polic(ies))");
            Policy::Yes
        }
        Err(e) => {
            print_problems(&file, &e);
            eprintln!("{file}: invalid ({} problem(s))", e.problems().len());
            Policy::No
        }
    }
}

struct ExplainArgs<'a> {
    config: &'a std::path::Path,
    token: Option<&'a str>,
    subject: Option<&'a (String, String, String)>,
    scope: Option<&'a str>,
    request_details: Option<&'a serde_json::Map<String, serde_json::Value>>,
    workload: Option<&'a str>,
    json: bool,
}

fn policy_explain(a: ExplainArgs<'_>) -> Policy {
    use txbridge_core::{Answer, ExplainRequest, ExplainSubject};
    let (file, text) = match read_config(a.config) {
        Ok(t) => t,
        Err(e) => return e,
    };
    let config = match txbridge_core::Config::from_toml_str(&text) {
        Ok(c) => c,
        Err(e) => {
            print_problems(&file, &e);
            return Policy::Unusable(format!("{file} is not a valid config"));
        }
    };
    let subject = match (a.token, a.subject) {
        (Some("-"), _) => match read_token() {
            Ok(t) => ExplainSubject::Token(t),
            Err(Failure(why)) => return Policy::Unusable(why),
        },
        (Some(path), _) => match std::fs::read_to_string(path) {
            Ok(t) => ExplainSubject::Token(t),
            Err(e) => return Policy::Unusable(format!("cannot read the token file: {}", e.kind())),
        },
        (None, Some((cluster, namespace, service_account))) => ExplainSubject::Named {
            cluster: cluster.clone(),
            namespace: namespace.clone(),
            service_account: service_account.clone(),
        },
        (None, None) => return Policy::Unusable("give --token or --subject".into()),
    };
    let explanation = config.explain(
        subject,
        ExplainRequest {
            scope: a.scope.map(str::to_owned),
            request_details: a.request_details.cloned().unwrap_or_default(),
            workload: a.workload.map(str::to_owned),
        },
    );
    eprintln!(
        "NOT VERIFIED: offline explanation; no issuer was contacted, a token's signature, key and times were not checked"
    );
    if a.json {
        match serde_json::to_string_pretty(&explanation) {
            Ok(out) => println!("{out}"),
            Err(_) => return Policy::Unusable("cannot write the explanation".into()),
        }
    } else {
        let or_dash = |v: &Option<String>| v.clone().unwrap_or_else(|| "-".into());
        println!(
            "subject: cluster {}, namespace {}, service account {}, workload id {}",
            or_dash(&explanation.cluster),
            or_dash(&explanation.namespace),
            or_dash(&explanation.service_account),
            or_dash(&explanation.workload_id)
        );
        for p in &explanation.policies {
            match &p.reason {
                None => println!("policy {}: applies (scopes: {})", p.id, p.scopes.join(" ")),
                Some(why) => println!("policy {}: does not apply: {why}", p.id),
            }
        }
        match &explanation.answer {
            Answer::Issue { scope, req_wl } => println!(
                "answer: a TxToken with scope \"{}\" and req_wl {req_wl}",
                scope.join(" ")
            ),
            Answer::Refuse { error, description } => {
                println!("answer: refused: {error} ({description})")
            }
        }
    }
    if explanation.allowed() {
        Policy::Yes
    } else {
        Policy::No
    }
}

fn main() -> ExitCode {
    // clap prints usage errors and exits 2 itself (0 for --help/--version).
    let cli = Cli::parse();
    if let Command::Policy(command) = &cli.command {
        let outcome = match command {
            PolicyCommand::Check { config } => policy_check(config),
            PolicyCommand::Explain {
                config,
                token,
                subject,
                scope,
                request_details,
                workload,
                json,
            } => policy_explain(ExplainArgs {
                config,
                token: token.as_deref(),
                subject: subject.as_ref(),
                scope: scope.as_deref(),
                request_details: request_details.as_ref(),
                workload: workload.as_deref(),
                json: *json,
            }),
        };
        return match outcome {
            Policy::Yes => ExitCode::SUCCESS,
            Policy::No => ExitCode::FAILURE,
            Policy::Unusable(why) => {
                eprintln!("txbridge: {}", why.replace('\n', " "));
                ExitCode::from(2)
            }
        };
    }
    let result = match &cli.command {
        Command::Verify {
            issuer,
            audience,
            jwks,
            leeway,
            insecure_allow_http_loopback,
        } => verify(
            issuer,
            audience,
            jwks.as_deref(),
            *leeway,
            *insecure_allow_http_loopback,
        ),
        Command::Decode => decode(),
        Command::Policy(_) => Ok(()),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(reason)) => {
            eprintln!("txbridge: {}", reason.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
