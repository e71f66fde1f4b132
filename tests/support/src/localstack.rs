//! LocalStack (KMS only, no Docker) for the KMS signer tests and the Lambda's KMS e2e tests and
//! benchmarks: started on a free loopback port from the venv `bash .ci/localstack.sh install`
//! makes (`TXBRIDGE_LOCALSTACK_PYTHON`, default
//! `${TXBRIDGE_TOOLS:-~/.cache/txbridge}/venv-localstack/bin/python`), stopped with its whole
//! process group on drop; or, with [`LocalStack::start`], the one already running at
//! `TXBRIDGE_TEST_KMS_ENDPOINT` when that is set.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::net::{SocketAddr, TcpStream};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The AWS settings for an SDK or a process talking to LocalStack (add `AWS_ENDPOINT_URL`).
pub const AWS_ENV: [(&str, &str); 4] = [
    ("AWS_REGION", "us-east-1"),
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

/// How long LocalStack may take to report KMS ready.
const READY_WITHIN: Duration = Duration::from_secs(90);

/// LocalStack's KMS: started for the test (stopped with its process group on drop), or one that
/// is already running.
#[derive(Debug)]
pub struct LocalStack {
    endpoint: String,
    child: Option<Child>,
    dir: Option<PathBuf>,
}

impl LocalStack {
    /// The LocalStack at `TXBRIDGE_TEST_KMS_ENDPOINT` when that is set (and not empty), else one
    /// started on a free loopback port ([`LocalStack::launch`]).
    pub fn start() -> LocalStack {
        if let Some(endpoint) = std::env::var("TXBRIDGE_TEST_KMS_ENDPOINT")
            .ok()
            .filter(|e| !e.is_empty())
        {
            println!("LocalStack: using TXBRIDGE_TEST_KMS_ENDPOINT={endpoint}");
            return LocalStack {
                endpoint,
                child: None,
                dir: None,
            };
        }
        LocalStack::launch()
    }

    /// A LocalStack of this test's own on a free loopback port, whatever
    /// `TXBRIDGE_TEST_KMS_ENDPOINT` says (for tests that stop it to make KMS unreachable).
    /// Panics when LocalStack is not installed or not ready within 90 s.
    pub fn launch() -> LocalStack {
        let python = localstack_python();
        if !python.exists() {
            panic!(
                "LocalStack is not installed: no {} (and TXBRIDGE_TEST_KMS_ENDPOINT is not set). \
                 Run `bash .ci/localstack.sh install` (or set TXBRIDGE_LOCALSTACK_PYTHON / \
                 TXBRIDGE_TEST_KMS_ENDPOINT).",
                python.display()
            );
        }
        let port = free_port();
        let dir =
            std::env::temp_dir().join(format!("txbridge-localstack-{}-{port}", std::process::id()));
        std::fs::create_dir_all(dir.join("volume")).unwrap();
        let log = File::create(dir.join("localstack.log")).unwrap();
        let child = Command::new(&python)
            .args(["-m", "localstack.runtime.main"])
            .env("DISABLE_EVENTS", "1")
            .env("GATEWAY_SERVER", "hypercorn")
            .env("GATEWAY_LISTEN", format!("127.0.0.1:{port}"))
            .env("SERVICES", "kms")
            .env("DNS_ADDRESS", "0")
            .env("LOCALSTACK_VOLUME_DIR", dir.join("volume"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .process_group(0)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start LocalStack with {}: {e}", python.display()));
        let mut localstack = LocalStack {
            endpoint: format!("http://127.0.0.1:{port}"),
            child: Some(child),
            dir: Some(dir),
        };
        let start = Instant::now();
        localstack.wait_ready(port);
        println!(
            "LocalStack ready on {} in {:?}",
            localstack.endpoint,
            start.elapsed()
        );
        localstack
    }

    /// Where KMS answers, e.g. `http://127.0.0.1:PORT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// Whether this is a LocalStack that was already running (dropping it does not stop it).
    pub fn is_external(&self) -> bool {
        self.child.is_none()
    }

    fn wait_ready(&mut self, port: u16) {
        let deadline = Instant::now() + READY_WITHIN;
        loop {
            if let Some(body) = http_get(port, "/_localstack/health")
                && (body.contains(r#""kms": "available""#) || body.contains(r#""kms": "running""#))
            {
                return;
            }
            if let Some(status) = self.child.as_mut().and_then(|c| c.try_wait().unwrap()) {
                panic!(
                    "LocalStack exited ({status}) before it was ready:\n{}",
                    self.log_tail()
                );
            }
            if Instant::now() > deadline {
                panic!(
                    "LocalStack not ready after {READY_WITHIN:?}:\n{}",
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn log_tail(&self) -> String {
        self.dir.as_deref().map(log_tail).unwrap_or_default()
    }
}

impl Drop for LocalStack {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            // The child leads its own process group: signal the group, workers included.
            let group = format!("-{}", child.id());
            let _ = Command::new("kill").args(["-TERM", "--", &group]).status();
            let deadline = Instant::now() + Duration::from_secs(10);
            while child.try_wait().ok().flatten().is_none() && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(100));
            }
            let _ = Command::new("kill")
                .args(["-KILL", "--", &group])
                .stderr(Stdio::null())
                .status();
            let _ = child.wait();
        }
        if let Some(dir) = self.dir.take() {
            if std::thread::panicking() {
                eprintln!("LocalStack log ({}):\n{}", dir.display(), log_tail(&dir));
            }
            let _ = std::fs::remove_dir_all(&dir);
        }
    }
}

/// The Python of LocalStack's venv (which also has boto3).
pub fn localstack_python() -> PathBuf {
    if let Some(python) = std::env::var_os("TXBRIDGE_LOCALSTACK_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(python);
    }
    let tools = std::env::var_os("TXBRIDGE_TOOLS")
        .filter(|p| !p.is_empty())
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/txbridge")
        });
    tools.join("venv-localstack/bin/python")
}

/// Runs a boto3 snippet with a KMS client `kms` for `endpoint`; returns its trimmed stdout.
pub fn kms(endpoint: &str, code: &str) -> String {
    let script = format!(
        "import boto3\nkms = boto3.client('kms', endpoint_url='{endpoint}', region_name='us-east-1', \
         aws_access_key_id='test', aws_secret_access_key='test')\n{code}"
    );
    let out = Command::new(localstack_python())
        .args(["-c", &script])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "boto3: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap().trim().to_owned()
}

/// The last lines of LocalStack's log, for failure messages.
fn log_tail(dir: &Path) -> String {
    let log = std::fs::read_to_string(dir.join("localstack.log")).unwrap_or_default();
    let lines: Vec<_> = log.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A minimal HTTP/1.0 GET on loopback, for the readiness probe.
fn http_get(port: u16, path: &str) -> Option<String> {
    let addr = SocketAddr::from(([127, 0, 0, 1], port));
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500)).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(2))).ok()?;
    write!(
        stream,
        "GET {path} HTTP/1.0\r\nHost: 127.0.0.1:{port}\r\n\r\n"
    )
    .ok()?;
    let mut body = String::new();
    stream.read_to_string(&mut body).ok()?;
    Some(body)
}
