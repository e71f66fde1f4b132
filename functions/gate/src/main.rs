//! `txbridge-gate --config FILE [--listen ADDR] [--grpc-listen ADDR]`: the consumer gate
//! (ARCHITECTURE.md "Consumer gate"). The config file may also come from `TXBRIDGE_GATE_CONFIG`;
//! `--listen` wins over the file's `listen`. Exits 2 with the problems (key path and line, never
//! a value) when the config is wrong, 1 when it cannot listen.
#![forbid(unsafe_code)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use tokio::net::TcpListener;
use txbridge_gate::{Config, Gate};

#[derive(Debug, Parser)]
#[command(
    name = "txbridge-gate",
    version,
    about = "Enforces Transaction Tokens for the proxy in front of a service (forward-auth, Envoy ext_authz)"
)]
struct Args {
    /// The TOML config file.
    #[arg(long, env = "TXBRIDGE_GATE_CONFIG")]
    config: PathBuf,
    /// The HTTP listen address (wins over the config's `listen`).
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Also serve Envoy's gRPC ext_authz (envoy.service.auth.v3.Authorization) here.
    #[arg(long)]
    grpc_listen: Option<SocketAddr>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let filter = std::env::var("RUST_LOG").unwrap_or_else(|_| "info".to_owned());
    let metrics = std::sync::Arc::new(txbridge_gate::metrics::Metrics::default());
    let _ = tracing::subscriber::set_global_default(txbridge_gate::log::subscriber(
        &filter,
        std::io::stdout,
        metrics.clone(),
    ));
    let text = match std::fs::read_to_string(&args.config) {
        Ok(t) => t,
        Err(e) => {
            eprintln!(
                "txbridge-gate: cannot read the config file {}: {}",
                args.config.display(),
                e.kind()
            );
            return ExitCode::from(2);
        }
    };
    let config = match Config::from_toml_str(&text) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("txbridge-gate: {}: {e}", args.config.display());
            return ExitCode::from(2);
        }
    };
    let verifier = match txbridge_gate::verifier(&config) {
        Ok(v) => v,
        Err(e) => {
            eprintln!("txbridge-gate: {}: {e}", args.config.display());
            return ExitCode::from(2);
        }
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("txbridge-gate: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let listen = args.listen.unwrap_or(config.listen);
    runtime.block_on(run(
        Gate::new(config, verifier, metrics),
        listen,
        args.grpc_listen,
    ))
}

async fn run(gate: std::sync::Arc<Gate>, listen: SocketAddr, grpc: Option<SocketAddr>) -> ExitCode {
    let http = match TcpListener::bind(listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("txbridge-gate: cannot listen on {listen}: {e}");
            return ExitCode::from(1);
        }
    };
    let grpc = match grpc {
        None => None,
        Some(addr) => match TcpListener::bind(addr).await {
            Ok(l) => Some(l),
            Err(e) => {
                eprintln!("txbridge-gate: cannot listen on {addr} (gRPC): {e}");
                return ExitCode::from(1);
            }
        },
    };
    tracing::info!(
        target: "txbridge_gate",
        listen = %http.local_addr().map_or(listen, |a| a),
        grpc_listen = %grpc.as_ref().and_then(|l| l.local_addr().ok()).map_or(String::new(), |a| a.to_string()),
        routes = gate.config().routes.len(),
        "txbridge-gate started"
    );
    let http_task = tokio::spawn(txbridge_gate::http::serve(http, gate.clone()));
    let grpc_task = grpc.map(|l| tokio::spawn(txbridge_gate::grpc::serve(l, gate.clone())));
    let stop = async {
        #[cfg(unix)]
        {
            if let Ok(mut term) =
                tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
                return;
            }
        }
        let _ = tokio::signal::ctrl_c().await;
    };
    let code = match grpc_task {
        Some(grpc_task) => tokio::select! {
            _ = stop => ExitCode::SUCCESS,
            _ = http_task => ExitCode::from(1),
            r = grpc_task => {
                if let Ok(Err(e)) = r {
                    eprintln!("txbridge-gate: gRPC server failed: {e}");
                }
                ExitCode::from(1)
            }
        },
        None => tokio::select! {
            _ = stop => ExitCode::SUCCESS,
            _ = http_task => ExitCode::from(1),
        },
    };
    tracing::info!(target: "txbridge_gate", "txbridge-gate stopped");
    code
}
