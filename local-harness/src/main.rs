//! `txbridge-harness`: plays Kubernetes clusters' ServiceAccount token issuers on loopback for
//! txbridge development and tests. See `txbridge-harness --help`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use txbridge_harness::client::{self, ConfigOptions, TokenParams};
use txbridge_harness::server::{startup_summary, write_json_atomically, write_private_file};
use txbridge_harness::{ClusterSpec, Error, Harness, ServeOptions, keys};

#[derive(Debug, Parser)]
#[command(
    name = "txbridge-harness",
    version,
    about = "Simulated Kubernetes ServiceAccount token issuers for txbridge development and tests"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the simulated clusters (discovery, JWKS, TokenRequest API) and the admin API.
    Serve(ServeArgs),
    /// Request a ServiceAccount token from a running harness and print it.
    Token(TokenArgs),
    /// Print a txbridge development config (TOML) that trusts a running harness.
    Config(ConfigArgs),
    /// Verify a TxToken (stdin) against a txbridge JWKS and print its header and claims.
    VerifyTxtoken(VerifyArgs),
}

#[derive(Debug, Args)]
struct VerifyArgs {
    /// URL of txbridge's published JWKS (`/.well-known/jwks.json`).
    #[arg(long)]
    jwks: String,
    /// Expected `iss`.
    #[arg(long)]
    issuer: String,
    /// Expected `aud` (the trust domain); default: the issuer.
    #[arg(long)]
    audience: Option<String>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Address to listen on (port 0: a free port).
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// A simulated cluster: name=NAME[,alg=RS256|ES256][,mirror][,issuer=URL]. Repeatable.
    /// Default: name=alpha,alg=RS256 and name=beta,alg=ES256,mirror.
    #[arg(long = "cluster", value_name = "SPEC")]
    clusters: Vec<ClusterSpec>,
    /// When listening, write {"base_url", "clusters"} here as JSON (atomically).
    #[arg(long, value_name = "PATH")]
    ready_file: Option<PathBuf>,
    /// Load signing keys from DIR/NAME.pem (PKCS#8), generating and saving missing ones.
    #[arg(long, value_name = "DIR")]
    key_dir: Option<PathBuf>,
}

#[derive(Debug, Args)]
struct TokenArgs {
    /// Base URL of the running harness (http://127.0.0.1:PORT).
    #[arg(long)]
    harness: String,
    /// Cluster name.
    #[arg(long)]
    cluster: String,
    /// Namespace of the ServiceAccount.
    #[arg(long, short = 'n')]
    namespace: String,
    /// ServiceAccount name.
    #[arg(long)]
    service_account: String,
    /// Audience (repeatable); default: the cluster's issuer.
    #[arg(long = "audience")]
    audiences: Vec<String>,
    /// Token lifetime in seconds (at least 600; default 3600).
    #[arg(long)]
    expiration_seconds: Option<i64>,
    /// Bind the token to this pod (adds kubernetes.io.pod).
    #[arg(long)]
    pod: Option<String>,
}

#[derive(Debug, Args)]
struct ConfigArgs {
    /// Base URL of the running harness (http://127.0.0.1:PORT).
    #[arg(long)]
    harness: String,
    /// issuer of the txbridge instance under test.
    #[arg(long)]
    issuer: String,
    /// trust_domain (default: the issuer).
    #[arg(long)]
    trust_domain: Option<String>,
    /// Audience txbridge accepts on ServiceAccount tokens.
    #[arg(long, default_value = "txbridge")]
    audience: String,
    /// Also write a fresh P-256 PKCS#8 PEM signing key here (mode 0600), for TXBRIDGE_SIGNING_KEY.
    #[arg(long, value_name = "PATH")]
    key_out: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("txbridge-harness: cannot start the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async {
        match cli.command {
            Command::Serve(args) => serve(args).await,
            Command::Token(args) => token(args).await,
            Command::Config(args) => config(args).await,
            Command::VerifyTxtoken(args) => verify_txtoken(args).await,
        }
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("txbridge-harness: {e}");
            ExitCode::FAILURE
        }
    }
}

async fn serve(args: ServeArgs) -> Result<(), Error> {
    let options = ServeOptions {
        clusters: args.clusters,
        key_dir: args.key_dir,
    };
    let harness = Harness::bind(args.listen, options).await?;
    print!(
        "{}",
        startup_summary(harness.base_url(), &harness.clusters())
    );
    if let Some(path) = &args.ready_file {
        write_json_atomically(path, &harness.ready_document())?;
        println!("ready file: {}", path.display());
    }
    harness.run(shutdown_signal()).await?;
    println!("txbridge-harness stopped");
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = tokio::signal::ctrl_c() => {}
                    _ = term.recv() => {}
                }
            }
            Err(e) => {
                eprintln!("txbridge-harness: cannot watch SIGTERM ({e}); stop with Ctrl-C");
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}

async fn token(args: TokenArgs) -> Result<(), Error> {
    let params = TokenParams {
        cluster: args.cluster,
        namespace: args.namespace,
        service_account: args.service_account,
        audiences: args.audiences,
        expiration_seconds: args.expiration_seconds,
        pod: args.pod,
    };
    let token = client::request_token(&client::http_client()?, &args.harness, &params).await?;
    println!("{token}");
    Ok(())
}

/// Independent check of a TxToken (jsonwebtoken, not txbridge's code): ES256 on the published
/// JWKS, `typ` txntoken+jwt, iss, aud, exp. Prints `{"header", "claims"}`, never the token.
async fn verify_txtoken(args: VerifyArgs) -> Result<(), Error> {
    use std::io::Read as _;
    let mut token = String::new();
    std::io::stdin()
        .read_to_string(&mut token)
        .map_err(|source| Error::Io {
            context: "reading the token from stdin".into(),
            source,
        })?;
    let token = token.trim();
    let jwks: jsonwebtoken::jwk::JwkSet = client::http_client()?
        .get(&args.jwks)
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| Error::Http(format!("fetching {}: {e}", args.jwks)))?
        .json()
        .await
        .map_err(|e| Error::Http(format!("JWKS is not valid: {e}")))?;
    let header = jsonwebtoken::decode_header(token).map_err(|_| Error::Spec("not a JWS".into()))?;
    if header.typ.as_deref() != Some("txntoken+jwt") {
        return Err(Error::Spec("typ is not txntoken+jwt".into()));
    }
    let kid = header.kid.clone().unwrap_or_default();
    let jwk = jwks
        .find(&kid)
        .ok_or_else(|| Error::Spec("kid is not in the JWKS".into()))?;
    let key = jsonwebtoken::DecodingKey::from_jwk(jwk)
        .map_err(|e| Error::Key(format!("JWKS key: {e}")))?;
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::ES256);
    validation.set_issuer(&[&args.issuer]);
    validation.set_audience(&[args.audience.as_deref().unwrap_or(&args.issuer)]);
    validation.set_required_spec_claims(&["iss", "aud", "exp", "sub"]);
    let data = jsonwebtoken::decode::<serde_json::Value>(token, &key, &validation)
        .map_err(|e| Error::Spec(format!("TxToken rejected: {e}")))?;
    let out = serde_json::json!({"header": data.header, "claims": data.claims});
    println!(
        "{}",
        serde_json::to_string_pretty(&out).map_err(|e| Error::Spec(e.to_string()))?
    );
    Ok(())
}

async fn config(args: ConfigArgs) -> Result<(), Error> {
    let clusters = client::fetch_clusters(&client::http_client()?, &args.harness).await?;
    let options = ConfigOptions {
        issuer: args.issuer,
        trust_domain: args.trust_domain,
        audience: args.audience,
    };
    if let Some(path) = &args.key_out {
        write_private_file(path, &keys::generate_p256_pkcs8_pem()?)?;
        eprintln!(
            "wrote a fresh P-256 development signing key (PKCS#8 PEM, mode 0600) to {}; \
             use it as TXBRIDGE_SIGNING_KEY=\"$(cat {})\"",
            path.display(),
            path.display()
        );
    }
    print!("{}", client::render_config(&options, &clusters));
    Ok(())
}
