//! Test support for txbridge's end-to-end suites: start the real shells (and the harness) on free
//! loopback ports, talk to them over HTTP, stop them by pid.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::process::Child;

pub mod concurrency;
pub mod faults;
pub mod load;
pub mod procs;
pub mod suite;
pub mod worker;

/// A process started for a test, stopped (with its process group) on drop.
#[derive(Debug)]
pub struct Running {
    /// Where the function under test answers, e.g. `http://127.0.0.1:PORT/lambda-url/txbridge-lambda`.
    pub base_url: String,
    child: Child,
    /// A process this one needs (e.g. the Runtime API an emulated function polls), stopped after it.
    companion: Option<Box<Running>>,
}

impl Running {
    /// Wraps a child started in its own process group (`process_group(0)`).
    pub fn new(base_url: String, child: Child) -> Self {
        Running {
            base_url,
            child,
            companion: None,
        }
    }

    /// Ties `other` to this process: it is stopped (by its own group) right after this one.
    pub fn with_companion(mut self, other: Running) -> Self {
        self.companion = Some(Box::new(other));
        self
    }

    /// Has the process exited? (Reaps it if so.)
    pub fn try_wait(&mut self) -> Option<std::process::ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// The child's pid.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let pid = self.child.id() as i32;
        // SIGTERM the whole group (cargo lambda watch / wrangler spawn children), then reap.
        let _ = std::process::Command::new("kill")
            .args(["-TERM", "--", &format!("-{pid}")])
            .status();
        for _ in 0..50 {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .status();
        let _ = self.child.wait();
    }
}

/// A free loopback TCP port (bound then released), never one this process was given before: the
/// kernel may hand the port it just released to the next bind, so two calls in a row (a server's
/// HTTP and gRPC ports) could otherwise return the same one.
pub fn free_port() -> u16 {
    static GIVEN: std::sync::Mutex<std::collections::BTreeSet<u16>> =
        std::sync::Mutex::new(std::collections::BTreeSet::new());
    loop {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free loopback port");
        if GIVEN.lock().unwrap_or_else(|e| e.into_inner()).insert(port) {
            return port;
        }
    }
}

/// The workspace root (for finding binaries, scripts and the shared target dir).
pub fn workspace_root() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ has a parent")
        .to_path_buf()
}
