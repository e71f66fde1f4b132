//! The txbridge Worker under plain `workerd serve` on loopback.
//!
//! [`start`] builds the Worker once per test process when `functions/worker/build/` is missing or
//! older than its sources (`functions/worker/build.sh`; toolchain from
//! `bash .ci/worker.sh install`), writes a workerd config into a fresh directory and serves the
//! built modules with the given config (var) and signing key (secret) on a free port.

use std::fs;
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;
use std::time::{Duration, SystemTime};

use anyhow::{Context as _, anyhow, bail};

use crate::{Running, free_port, workspace_root};

const READY_TIMEOUT: Duration = Duration::from_secs(20);

/// The Worker crate's folder.
pub fn worker_dir() -> PathBuf {
    workspace_root().join("functions/worker")
}

/// The log level the Worker runs at in tests (`TXBRIDGE_LOG`): the most verbose.
pub const LOG_LEVEL: &str = "trace";

/// Where workerd's output of a Worker started by [`start`] goes.
pub fn log_path(running: &Running) -> PathBuf {
    let port = running.base_url.rsplit(':').next().unwrap_or_default();
    workspace_root().join(format!("target/tmp/txbridge-worker-{port}.log"))
}

/// Starts the Worker with `config_toml` as `TXBRIDGE_CONFIG` and `signing_key_pem` as
/// `TXBRIDGE_SIGNING_KEY`, logging at [`LOG_LEVEL`]; returns once `GET /healthz` answers 200.
/// Outbound fetches may reach loopback (the harness, a test JWKS server). workerd's output goes
/// to [`log_path`].
pub fn start(config_toml: &str, signing_key_pem: &str) -> anyhow::Result<Running> {
    start_build(Build::Release, config_toml, signing_key_pem)
}

/// [`start`] for a Worker that may not be able to build its engine (it then answers 503):
/// returns once `GET /healthz` answers at all.
pub fn start_answering(config_toml: &str, signing_key_pem: &str) -> anyhow::Result<Running> {
    let build = Build::Release;
    ensure_built(build)?;
    serve(&build.dir(), config_toml, signing_key_pem, false, LOG_LEVEL)
}

/// Which build of the Worker to serve.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Build {
    /// `functions/worker/build/`: what `wrangler deploy` ships.
    Release,
    /// `functions/worker/build-test/`: the same with the `test-panic` feature (a route that
    /// panics), built on demand.
    TestPanic,
}

impl Build {
    fn dir(self) -> PathBuf {
        match self {
            Build::Release => worker_dir().join("build"),
            Build::TestPanic => worker_dir().join("build-test"),
        }
    }
}

/// [`start`] with a chosen build.
pub fn start_build(
    build: Build,
    config_toml: &str,
    signing_key_pem: &str,
) -> anyhow::Result<Running> {
    ensure_built(build)?;
    start_dir(&build.dir(), config_toml, signing_key_pem)
}

/// Serves the Worker built into `out` (its `entry.mjs` when it has one, else worker-build's
/// `index.js`, as builds before the entry module had): benchmarks compare builds this way.
pub fn start_dir(out: &Path, config_toml: &str, signing_key_pem: &str) -> anyhow::Result<Running> {
    serve(out, config_toml, signing_key_pem, true, LOG_LEVEL)
}

/// [`start`] logging at `level` (`info`: what a deployment runs; benchmarks use it).
pub fn start_with_log_level(
    config_toml: &str,
    signing_key_pem: &str,
    level: &str,
) -> anyhow::Result<Running> {
    let build = Build::Release;
    ensure_built(build)?;
    serve(&build.dir(), config_toml, signing_key_pem, true, level)
}

/// Serves the build in `out` logging at `level`; waits for a 200 from `/healthz` when
/// `ok_only`, else any answer.
fn serve(
    out: &Path,
    config_toml: &str,
    signing_key_pem: &str,
    ok_only: bool,
    level: &str,
) -> anyhow::Result<Running> {
    let workerd = worker_dir().join("node_modules/.bin/workerd");
    if !workerd.exists() {
        bail!(
            "{} missing: run 'bash .ci/worker.sh install'",
            workerd.display()
        );
    }

    let port = free_port();
    let tmp = workspace_root().join("target/tmp");
    let run_dir = tmp.join(format!("txbridge-worker-{port}"));
    let log_path = tmp.join(format!("txbridge-worker-{port}.log"));
    let _ = fs::remove_dir_all(&run_dir);
    fs::create_dir_all(&run_dir)?;
    // Copies, so that a rebuild while this instance runs cannot change what it serves.
    let modules: Vec<&str> = MODULES
        .into_iter()
        .filter(|m| out.join(m).exists())
        .collect();
    for module in &modules {
        fs::copy(out.join(module), run_dir.join(module))?;
    }
    fs::write(run_dir.join("config.toml"), config_toml)?;
    fs::write(run_dir.join("signing-key.pem"), signing_key_pem)?;
    fs::write(
        run_dir.join("workerd.capnp"),
        capnp_config(port, &compatibility_date()?, &modules, level),
    )?;

    let log = fs::File::create(&log_path)?;
    let child = Command::new(&workerd)
        .args(["serve", "workerd.capnp", "--verbose"])
        .current_dir(&run_dir)
        .stdin(Stdio::null())
        .stdout(log.try_clone()?)
        .stderr(log)
        .process_group(0)
        .spawn()
        .with_context(|| format!("spawning {}", workerd.display()))?;
    let base_url = format!("http://127.0.0.1:{port}");
    let mut running = Running::new(base_url.clone(), child);

    let ready = crate::procs::wait_answering(
        &format!("{base_url}/healthz"),
        &mut running,
        READY_TIMEOUT,
        &log_path,
        ok_only,
    );
    // workerd read its config and modules at start-up; the key file has no reason to stay.
    let _ = fs::remove_dir_all(&run_dir);
    ready?;
    Ok(running)
}

/// The workerd config: the built modules, the var and the secret as text bindings, and an
/// `internet` service (workerd's default outbound) that also allows private addresses, so the
/// Worker can fetch discovery documents and JWKS from loopback test servers.
fn capnp_config(port: u16, compatibility_date: &str, modules: &[&str], level: &str) -> String {
    let modules: String = modules
        .iter()
        .map(|m| {
            let kind = if m.ends_with(".wasm") {
                "wasm"
            } else {
                "esModule"
            };
            format!("    (name = \"{m}\", {kind} = embed \"{m}\"),\n")
        })
        .collect();
    format!(
        r#"using Workerd = import "/workerd/workerd.capnp";

const config :Workerd.Config = (
  services = [
    (name = "main", worker = .txbridge),
    (name = "internet", network = (allow = ["public", "private"])),
  ],
  sockets = [(name = "http", address = "127.0.0.1:{port}", http = (), service = "main")],
);

const txbridge :Workerd.Worker = (
  modules = [
{modules}  ],
  compatibilityDate = "{compatibility_date}",
  bindings = [
    (name = "TXBRIDGE_CONFIG", text = embed "config.toml"),
    (name = "TXBRIDGE_SIGNING_KEY", text = embed "signing-key.pem"),
    (name = "TXBRIDGE_LOG", text = "{level}"),
  ],
);
"#
    )
}

/// `compatibility_date` from wrangler.toml, so tests run what `wrangler deploy` would.
fn compatibility_date() -> anyhow::Result<String> {
    let path = worker_dir().join("wrangler.toml");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    text.lines()
        .filter_map(|l| l.trim().strip_prefix("compatibility_date"))
        .filter_map(|rest| rest.trim().strip_prefix('='))
        .map(|v| v.trim().trim_matches('"').to_owned())
        .next()
        .ok_or_else(|| anyhow!("no compatibility_date in {}", path.display()))
}

/// The modules of a build, the entry first (what workerd serves).
const MODULES: [&str; 3] = ["entry.mjs", "index.js", "index_bg.wasm"];

/// Runs `build.sh` once per test process and build when the build is missing or older than its
/// inputs.
fn ensure_built(build: Build) -> anyhow::Result<()> {
    static BUILT: Mutex<Vec<Build>> = Mutex::new(Vec::new());
    let mut built = BUILT.lock().unwrap_or_else(|e| e.into_inner());
    if built.contains(&build) {
        return Ok(());
    }
    let dir = worker_dir();
    let outputs = MODULES.map(|m| build.dir().join(m));
    let oldest_output = outputs
        .iter()
        .map(|p| fs::metadata(p).and_then(|m| m.modified()).ok())
        .collect::<Option<Vec<_>>>()
        .and_then(|times| times.into_iter().min());
    let stale = match oldest_output {
        None => true,
        Some(built_at) => newest_input()? > built_at,
    };
    if stale {
        let mut cmd = Command::new("bash");
        cmd.arg(dir.join("build.sh"))
            .current_dir(&dir)
            .stdin(Stdio::null());
        if build == Build::TestPanic {
            cmd.env("TXBRIDGE_WORKER_FEATURES", "test-panic")
                .env("TXBRIDGE_WORKER_OUT", build.dir());
        }
        let out = cmd.output().context("running functions/worker/build.sh")?;
        if !out.status.success() {
            let text = String::from_utf8_lossy(&out.stderr);
            let lines: Vec<&str> = text.lines().collect();
            bail!(
                "functions/worker/build.sh failed ({}):\n{}",
                out.status,
                lines[lines.len().saturating_sub(40)..].join("\n")
            );
        }
    }
    built.push(build);
    Ok(())
}

/// The newest modification time among the Worker's build inputs.
fn newest_input() -> anyhow::Result<SystemTime> {
    let root = workspace_root();
    let mut newest = SystemTime::UNIX_EPOCH;
    for input in [
        "Cargo.toml",
        "Cargo.lock",
        "functions/worker/Cargo.toml",
        "functions/worker/build.sh",
        "functions/worker/entry.mjs",
        "functions/worker/package-lock.json",
        "functions/worker/src",
        "functions/jose/Cargo.toml",
        "functions/jose/src",
        "functions/core/Cargo.toml",
        "functions/core/src",
        "signer/Cargo.toml",
        "signer/src",
    ] {
        visit(&root.join(input), &mut newest)?;
    }
    Ok(newest)
}

fn visit(path: &Path, newest: &mut SystemTime) -> anyhow::Result<()> {
    let meta = match fs::metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e.into()),
    };
    if meta.is_dir() {
        for entry in fs::read_dir(path)? {
            visit(&entry?.path(), newest)?;
        }
    } else {
        *newest = (*newest).max(meta.modified()?);
    }
    Ok(())
}
