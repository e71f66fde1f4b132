//! LocalStack (KMS only, no Docker) for the Lambda's KMS tests and benchmarks: started on a free
//! loopback port from the venv `bash .ci/localstack.sh install` makes, driven with boto3 from
//! that venv.

use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::procs::TempDir;
use crate::{Running, free_port};

pub fn localstack_python() -> PathBuf {
    std::env::var_os("TXBRIDGE_LOCALSTACK_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let tools = std::env::var("TXBRIDGE_TOOLS").unwrap_or_else(|_| {
                format!(
                    "{}/.cache/txbridge",
                    std::env::var("HOME").unwrap_or_default()
                )
            });
            PathBuf::from(tools).join("venv-localstack/bin/python")
        })
}

/// LocalStack (KMS only) on a free loopback port, stopped with its process group on drop.
pub fn start_localstack(dir: &TempDir) -> (Running, String) {
    let python = localstack_python();
    assert!(
        python.exists(),
        "LocalStack missing: run `bash .ci/localstack.sh install`"
    );
    let port = free_port();
    let log = std::fs::File::create(dir.path("localstack.log")).unwrap();
    let mut cmd = Command::new(&python);
    cmd.args(["-m", "localstack.runtime.main"])
        .env("DISABLE_EVENTS", "1")
        .env("GATEWAY_SERVER", "hypercorn")
        .env("GATEWAY_LISTEN", format!("127.0.0.1:{port}"))
        .env("SERVICES", "kms")
        .env("DNS_ADDRESS", "0")
        .env("LOCALSTACK_VOLUME_DIR", dir.path("volume"))
        .stdin(Stdio::null())
        .stdout(log.try_clone().unwrap())
        .stderr(log);
    std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
    let endpoint = format!("http://127.0.0.1:{port}");
    let mut running = Running::new(endpoint.clone(), cmd.spawn().unwrap());
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let ok = reqwest::blocking::get(format!("{endpoint}/_localstack/health"))
            .and_then(|r| r.text())
            .is_ok_and(|b| {
                b.contains(r#""kms": "available""#) || b.contains(r#""kms": "running""#)
            });
        if ok {
            return (running, endpoint);
        }
        assert!(running.try_wait().is_none(), "LocalStack exited");
        assert!(Instant::now() < deadline, "LocalStack not ready");
        std::thread::sleep(Duration::from_millis(200));
    }
}

pub const AWS_ENV: [(&str, &str); 4] = [
    ("AWS_REGION", "us-east-1"),
    ("AWS_ACCESS_KEY_ID", "test"),
    ("AWS_SECRET_ACCESS_KEY", "test"),
    ("AWS_EC2_METADATA_DISABLED", "true"),
];

/// Runs a boto3 snippet against LocalStack (boto3 ships in LocalStack's venv).
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
