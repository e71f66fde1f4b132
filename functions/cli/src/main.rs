//! `txbridge`: the consumer-side command line.
//!
//! ```text
//! txbridge verify --issuer ISS --audience TRUST_DOMAIN [--jwks FILE_OR_URL] [--leeway 30s] < token
//! txbridge decode < token
//! ```
//! `verify`: exit 0 and the claims as JSON on stdout when the TxToken is valid; exit 1 and one
//! reason line on stderr when it is not (or its keys cannot be had). Usage errors exit 2 (clap's,
//! and nothing else exits 2). Without `--jwks` the keys come from the issuer's discovery document.
//! `decode`: header and claims WITHOUT verification, marked so on stdout and stderr.
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
    about = "Verify or decode txbridge Transaction Tokens (read on stdin)"
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

fn main() -> ExitCode {
    // clap prints usage errors and exits 2 itself (0 for --help/--version).
    let cli = Cli::parse();
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
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(Failure(reason)) => {
            eprintln!("txbridge: {}", reason.replace('\n', " "));
            ExitCode::FAILURE
        }
    }
}
