//! Starting the pieces under test: the harness, the Lambda under `cargo lambda watch`.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::{Running, workspace_root};

/// A private temp dir for one test run, removed on drop.
#[derive(Debug)]
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let dir = std::env::temp_dir().join(format!("txbridge-{tag}-{}-{n}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        TempDir(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"))
}

/// Builds the harness and Lambda binaries once per test process.
pub fn ensure_built() {
    static BUILT: OnceLock<()> = OnceLock::new();
    BUILT.get_or_init(|| {
        let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
            .current_dir(workspace_root())
            .args([
                "build",
                "-q",
                "-p",
                "txbridge-harness",
                "-p",
                "txbridge-lambda",
            ])
            .status()
            .expect("run cargo build");
        assert!(
            status.success(),
            "building the harness and the Lambda failed"
        );
    });
}

pub fn harness_bin() -> PathBuf {
    target_dir().join("debug/txbridge-harness")
}

/// Waits until `url` answers 200 (or the child dies, or the deadline passes).
pub fn wait_ready(
    url: &str,
    child: &mut Running,
    timeout: Duration,
    log: &Path,
) -> anyhow::Result<()> {
    wait_answering(url, child, timeout, log, true)
}

/// Waits until `url` answers at all (200 when `ok_only`; a 502, the emulator's "no function
/// yet", never counts), with the tail of `log` in the error.
pub(crate) fn wait_answering(
    url: &str,
    child: &mut Running,
    timeout: Duration,
    log: &Path,
    ok_only: bool,
) -> anyhow::Result<()> {
    let client = reqwest::blocking::Client::builder()
        .timeout(Duration::from_secs(5))
        .build()?;
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if let Some(status) = child.try_wait() {
            bail!(
                "process exited ({status}) before it was ready; log:\n{}",
                tail(log)
            );
        }
        if client
            .get(url)
            .send()
            .map(|r| r.status().is_success() || (!ok_only && r.status().as_u16() != 502))
            .unwrap_or(false)
        {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    bail!("{url} not ready after {timeout:?}; log:\n{}", tail(log))
}

fn tail(path: &Path) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

/// A running harness and what it serves.
#[derive(Debug)]
pub struct Harness {
    pub base_url: String,
    pub clusters: Vec<Value>,
    pub log: PathBuf,
    _proc: Running,
    _dir: TempDir,
}

impl Harness {
    /// Starts `txbridge-harness serve` with the given cluster specs on a free port.
    pub fn start(specs: &[&str]) -> anyhow::Result<Harness> {
        ensure_built();
        let dir = TempDir::new("harness");
        let ready = dir.path("ready.json");
        let log = dir.path("harness.log");
        let mut cmd = Command::new(harness_bin());
        cmd.args(["serve", "--listen", "127.0.0.1:0", "--ready-file"])
            .arg(&ready);
        for s in specs {
            cmd.args(["--cluster", s]);
        }
        let out = std::fs::File::create(&log)?;
        cmd.stdout(out.try_clone()?)
            .stderr(out)
            .stdin(Stdio::null());
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut proc = Running::new(String::new(), cmd.spawn().context("spawn harness")?);
        let deadline = Instant::now() + Duration::from_secs(30);
        let doc: Value = loop {
            if let Ok(text) = std::fs::read_to_string(&ready) {
                break serde_json::from_str(&text)?;
            }
            if let Some(s) = proc.try_wait() {
                bail!("harness exited ({s}): {}", tail(&log));
            }
            if Instant::now() > deadline {
                bail!("harness not ready: {}", tail(&log));
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        let base_url = doc["base_url"].as_str().context("base_url")?.to_owned();
        proc.base_url = base_url.clone();
        Ok(Harness {
            base_url,
            clusters: doc["clusters"].as_array().cloned().unwrap_or_default(),
            log,
            _proc: proc,
            _dir: dir,
        })
    }

    pub fn cluster(&self, name: &str) -> &Value {
        self.clusters
            .iter()
            .find(|c| c["name"] == name)
            .expect("cluster in harness")
    }

    /// A development config trusting every harness cluster, and a fresh signing key PEM.
    pub fn config(&self, issuer: &str) -> anyhow::Result<(String, String)> {
        let dir = TempDir::new("config");
        let key = dir.path("key.pem");
        let out = Command::new(harness_bin())
            .args([
                "config",
                "--harness",
                &self.base_url,
                "--issuer",
                issuer,
                "--key-out",
            ])
            .arg(&key)
            .output()?;
        if !out.status.success() {
            bail!(
                "harness config failed: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        Ok((
            String::from_utf8(out.stdout)?,
            std::fs::read_to_string(&key)?,
        ))
    }

    fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        let resp = reqwest::blocking::Client::new()
            .post(format!("{}{path}", self.base_url))
            .json(body)
            .send()?;
        let status = resp.status();
        let v: Value = resp.json().unwrap_or(Value::Null);
        if !status.is_success() {
            bail!("harness {path}: {status} {v}");
        }
        Ok(v)
    }

    /// A projected SA token from the TokenRequest API.
    pub fn token(
        &self,
        cluster: &str,
        ns: &str,
        sa: &str,
        audiences: &[&str],
        secs: u64,
    ) -> anyhow::Result<String> {
        let v = self.post(
            &format!("/clusters/{cluster}/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token"),
            &serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"audiences": audiences, "expirationSeconds": secs}}),
        )?;
        Ok(v["status"]["token"].as_str().context("token")?.to_owned())
    }

    /// A projected SA token bound to pod `pod` (its `kubernetes.io.pod` claims).
    pub fn token_in_pod(
        &self,
        cluster: &str,
        ns: &str,
        sa: &str,
        pod: &str,
    ) -> anyhow::Result<String> {
        let v = self.post(
            &format!("/clusters/{cluster}/api/v1/namespaces/{ns}/serviceaccounts/{sa}/token"),
            &serde_json::json!({"apiVersion": "authentication.k8s.io/v1", "kind": "TokenRequest",
                "spec": {"audiences": ["txbridge"], "expirationSeconds": 600,
                    "boundObjectRef": {"kind": "Pod", "apiVersion": "v1", "name": pod}}}),
        )?;
        Ok(v["status"]["token"].as_str().context("token")?.to_owned())
    }

    /// Signs exactly `header`/`claims` with the cluster's active key or a foreign one.
    pub fn sign(
        &self,
        cluster: &str,
        header: Value,
        claims: Value,
        key: &str,
    ) -> anyhow::Result<String> {
        let v = self.post(
            &format!("/admin/clusters/{cluster}/sign"),
            &serde_json::json!({"header": header, "claims": claims, "key": key, "key_mismatch": true}),
        )?;
        Ok(v["token"].as_str().context("token")?.to_owned())
    }

    pub fn rotate(&self, cluster: &str, keep_old: bool) -> anyhow::Result<String> {
        let v = self.post(
            &format!("/admin/clusters/{cluster}/rotate?keep_old={keep_old}"),
            &Value::Null,
        )?;
        Ok(v["kid"].as_str().context("kid")?.to_owned())
    }

    /// Rotates to a new key that signs at once but is not in the JWKS yet (a lagging apiserver
    /// replica or mirror); [`Harness::publish`] lists it.
    pub fn rotate_unpublished(&self, cluster: &str) -> anyhow::Result<String> {
        let v = self.post(
            &format!("/admin/clusters/{cluster}/rotate?keep_old=true&publish=false"),
            &Value::Null,
        )?;
        Ok(v["kid"].as_str().context("kid")?.to_owned())
    }

    pub fn publish(&self, cluster: &str) -> anyhow::Result<()> {
        self.post(&format!("/admin/clusters/{cluster}/publish"), &Value::Null)?;
        Ok(())
    }

    pub fn fault(&self, cluster: &str, target: &str, mode: &str) -> anyhow::Result<()> {
        self.post(
            &format!("/admin/clusters/{cluster}/fault"),
            &serde_json::json!({"target": target, "mode": mode}),
        )?;
        Ok(())
    }

    pub fn stats(&self) -> anyhow::Result<Value> {
        Ok(reqwest::blocking::get(format!("{}/admin/stats", self.base_url))?.json()?)
    }
}

/// The cargo-lambda bin dir: `TXBRIDGE_CARGO_LAMBDA_BIN`, else the one `.ci/lambda.sh` installs.
fn cargo_lambda_path() -> anyhow::Result<String> {
    let bin = std::env::var("TXBRIDGE_CARGO_LAMBDA_BIN")
        .ok()
        .unwrap_or_else(|| {
            let tools = std::env::var("TXBRIDGE_TOOLS").unwrap_or_else(|_| {
                format!(
                    "{}/.cache/txbridge",
                    std::env::var("HOME").unwrap_or_default()
                )
            });
            format!("{tools}/venv-cargo-lambda/bin")
        });
    if !Path::new(&bin).join("cargo-lambda").exists() {
        bail!(
            "cargo-lambda not found in {bin}: run `bash .ci/lambda.sh install` (or `bash .ci/run`)"
        );
    }
    Ok(format!(
        "{bin}:{}",
        std::env::var("PATH").unwrap_or_default()
    ))
}

/// Picks the Lambda's port first, so the config can name its own issuer URL.
pub fn lambda_base_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}/lambda-url/txbridge-lambda")
}

/// Runs the Lambda under `cargo lambda watch` on `port` with this config and signing key;
/// returns once `/healthz` answers 200.
pub fn start_lambda(
    port: u16,
    config: &str,
    key: &str,
    env: &[(&str, &str)],
) -> anyhow::Result<(Running, PathBuf, TempDir)> {
    start_lambda_with(port, config, key, env, true)
}

/// [`start_lambda`] for a function that may not be able to start (it then answers 503):
/// returns once `/healthz` answers at all.
pub fn start_lambda_answering(
    port: u16,
    config: &str,
    key: &str,
    env: &[(&str, &str)],
) -> anyhow::Result<(Running, PathBuf, TempDir)> {
    start_lambda_with(port, config, key, env, false)
}

fn start_lambda_with(
    port: u16,
    config: &str,
    key: &str,
    env: &[(&str, &str)],
    ok_only: bool,
) -> anyhow::Result<(Running, PathBuf, TempDir)> {
    ensure_built();
    let dir = TempDir::new("lambda");
    let cfg = dir.path("config.toml");
    std::fs::write(&cfg, config)?;
    let log = dir.path("lambda.log");
    let out = std::fs::File::create(&log)?;
    let mut cmd = Command::new("cargo");
    cmd.current_dir(workspace_root().join("functions/lambda"))
        .args([
            "lambda",
            "watch",
            "-A",
            "127.0.0.1",
            "-P",
            &port.to_string(),
            "--ignore-changes",
        ])
        .env("PATH", cargo_lambda_path()?)
        .env("TXBRIDGE_CONFIG_FILE", &cfg)
        .env("TXBRIDGE_SIGNING_KEY", key)
        .env_remove("RUST_LOG")
        .env_remove("TXBRIDGE_CONFIG")
        .stdout(out.try_clone()?)
        .stderr(out)
        .stdin(Stdio::null());
    // Settings for the function only (cargo lambda's own logging stays at its default).
    for (k, v) in env {
        cmd.arg("--env-var").arg(format!("{k}={v}"));
    }
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut running = Running::new(
        lambda_base_url(port),
        cmd.spawn().context("spawn cargo lambda watch")?,
    );
    wait_answering(
        &format!("{}/healthz", running.base_url),
        &mut running,
        Duration::from_secs(600),
        &log,
        ok_only,
    )?;
    Ok((running, log, dir))
}

/// The environment variable naming a `txbridge-lambda` bootstrap built for aarch64 (set by
/// `.ci/run` after its cross build); `tests/lambda_arm64.rs` runs it under qemu.
pub const ARM64_BOOTSTRAP_VAR: &str = "TXBRIDGE_ARM64_BOOTSTRAP";

/// Where `qemu-aarch64` finds the aarch64 loader and libc (Debian's libc6-arm64-cross).
pub const AARCH64_SYSROOT: &str = "/usr/aarch64-linux-gnu";

/// Where the emulated function answers: cargo-lambda's Runtime API without a function of its own
/// serves the function named `_` (a request for any other name makes it try to build one).
pub fn emulated_base_url(port: u16) -> String {
    format!("http://127.0.0.1:{port}/lambda-url/_")
}

/// Checks that `path` is an aarch64 ELF executable (so that a misplaced x86_64 build cannot pass
/// for the arm64 one).
pub fn check_aarch64_elf(path: &Path) -> anyhow::Result<()> {
    let bytes = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
    // ELF magic, 64-bit, little-endian; e_machine (offset 18, u16) 183 = EM_AARCH64.
    let machine = bytes.get(18..20).map(|m| u16::from_le_bytes([m[0], m[1]]));
    if !bytes.starts_with(b"\x7fELF\x02\x01") || machine != Some(183) {
        bail!(
            "{} is not an aarch64 ELF executable (e_machine {machine:?})",
            path.display()
        );
    }
    Ok(())
}

/// Runs a Lambda `bootstrap` built for aarch64 under `qemu-aarch64` against cargo-lambda's
/// Runtime API (`cargo lambda watch --only-lambda-apis`: the emulator's Function URL and Runtime
/// API without a function of its own) on `port`, with this config and signing key; returns once
/// `/healthz` answers 200 at [`emulated_base_url`]. The function's output goes to the returned
/// log; the emulator's to `api.log` beside it.
pub fn start_lambda_emulated(
    port: u16,
    bootstrap: &Path,
    config: &str,
    key: &str,
    env: &[(&str, &str)],
) -> anyhow::Result<(Running, PathBuf, TempDir)> {
    check_aarch64_elf(bootstrap)?;
    let qemu = "qemu-aarch64";
    if Command::new(qemu).arg("--version").output().is_err()
        || !Path::new(AARCH64_SYSROOT).join("lib").exists()
    {
        bail!("{qemu} or {AARCH64_SYSROOT} missing: apt-get install qemu-user libc6-arm64-cross");
    }
    let dir = TempDir::new("lambda-arm64");
    let cfg = dir.path("config.toml");
    std::fs::write(&cfg, config)?;

    // The Runtime API. It stops when its stdin closes: the pipe stays open while `api` lives.
    let api_log = dir.path("api.log");
    let out = std::fs::File::create(&api_log)?;
    let mut cmd = Command::new("cargo");
    // It reads the package's metadata even so.
    cmd.current_dir(workspace_root().join("functions/lambda"))
        .args([
            "lambda",
            "watch",
            "--only-lambda-apis",
            "-A",
            "127.0.0.1",
            "-P",
            &port.to_string(),
        ])
        .env("PATH", cargo_lambda_path()?)
        .env_remove("RUST_LOG")
        .stdout(out.try_clone()?)
        .stderr(out)
        .stdin(Stdio::piped());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut api = Running::new(
        emulated_base_url(port),
        cmd.spawn()
            .context("spawn cargo lambda watch --only-lambda-apis")?,
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        if let Some(status) = api.try_wait() {
            bail!(
                "the Runtime API exited ({status}); log:\n{}",
                tail(&api_log)
            );
        }
        if Instant::now() > deadline {
            bail!("the Runtime API is not listening; log:\n{}", tail(&api_log));
        }
        std::thread::sleep(Duration::from_millis(100));
    }

    // The function, as Lambda starts it: the Runtime API's address and the function's identity
    // in the environment.
    let log = dir.path("lambda.log");
    let out = std::fs::File::create(&log)?;
    let mut cmd = Command::new(qemu);
    cmd.arg("-L")
        .arg(AARCH64_SYSROOT)
        .arg(bootstrap)
        .env(
            "AWS_LAMBDA_RUNTIME_API",
            format!("http://127.0.0.1:{port}/.rt"),
        )
        .env("AWS_LAMBDA_FUNCTION_NAME", "_")
        .env("AWS_LAMBDA_FUNCTION_VERSION", "1")
        .env("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "512")
        .env("TXBRIDGE_CONFIG_FILE", &cfg)
        .env("TXBRIDGE_SIGNING_KEY", key)
        .env_remove("RUST_LOG")
        .env_remove("TXBRIDGE_CONFIG")
        .envs(env.iter().copied())
        .stdout(out.try_clone()?)
        .stderr(out)
        .stdin(Stdio::null());
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let mut running = Running::new(emulated_base_url(port), cmd.spawn().context("spawn qemu")?)
        .with_companion(api);
    wait_answering(
        &format!("{}/healthz", running.base_url),
        &mut running,
        Duration::from_secs(120),
        &log,
        true,
    )?;
    Ok((running, log, dir))
}
