//! A bounded load run on loopback: `clients` threads for `duration`, each sending a fixed mix of
//! valid and invalid requests and checking every answer (status, OAuth error code, and for an
//! issued TxToken its `sub` and `scope`). Reports counts, 5xx, wrong answers, p50/p99 latency and
//! the function process's resident memory before and after.

use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use serde_json::Value;

use crate::suite::{JWT, TE, TXN};

/// One kind of request in the mix and what its answer must be.
#[derive(Debug, Clone)]
pub struct Case {
    pub name: &'static str,
    pub method: &'static str,
    pub path: &'static str,
    pub content_type: &'static str,
    pub body: String,
    pub status: u16,
    /// For errors: the exact `error`; for an exchange: empty.
    pub error: &'static str,
    /// For a successful exchange: the `sub` and `scope` the TxToken must carry.
    pub sub: Option<String>,
    pub scope: Option<&'static str>,
}

impl Case {
    /// A token exchange with `subject_token` plus `extra` form pairs.
    pub fn exchange(name: &'static str, token: &str, extra: &[(&str, &str)]) -> Case {
        let mut ser = url::form_urlencoded::Serializer::new(String::new());
        ser.extend_pairs([
            ("grant_type", TE),
            ("subject_token", token),
            ("subject_token_type", JWT),
            ("requested_token_type", TXN),
        ]);
        ser.extend_pairs(extra);
        Case {
            name,
            method: "POST",
            path: "/token",
            content_type: "application/x-www-form-urlencoded",
            body: ser.finish(),
            status: 200,
            error: "",
            sub: None,
            scope: None,
        }
    }

    pub fn issues(mut self, sub: &str, scope: &'static str) -> Case {
        self.sub = Some(sub.to_owned());
        self.scope = Some(scope);
        self
    }

    pub fn fails(mut self, status: u16, error: &'static str) -> Case {
        self.status = status;
        self.error = error;
        self
    }

    fn check(&self, status: u16, body: &str) -> Result<(), String> {
        if status != self.status {
            return Err(format!("status {status}, want {}", self.status));
        }
        if self.path != "/token" {
            return Ok(());
        }
        let v: Value = serde_json::from_str(body).map_err(|_| "body is not JSON".to_owned())?;
        if !self.error.is_empty() {
            if v["error"] != self.error || v.get("access_token").is_some() {
                return Err(format!("error {}, want {}", v["error"], self.error));
            }
            return Ok(());
        }
        let token = v["access_token"].as_str().ok_or("no access_token")?;
        let claims: Value = token
            .split('.')
            .nth(1)
            .and_then(|p| B64.decode(p).ok())
            .and_then(|b| serde_json::from_slice(&b).ok())
            .ok_or("TxToken payload unreadable")?;
        if Some(claims["sub"].as_str().unwrap_or_default()) != self.sub.as_deref()
            || Some(claims["scope"].as_str().unwrap_or_default()) != self.scope
        {
            return Err("TxToken for the wrong subject or scope".to_owned());
        }
        Ok(())
    }
}

/// What a load run measured.
#[derive(Debug)]
pub struct Report {
    pub requests: usize,
    pub server_errors: usize,
    pub wrong: Vec<String>,
    pub p50: Duration,
    pub p99: Duration,
    pub max: Duration,
    pub elapsed: Duration,
    pub rss_start_kib: Option<u64>,
    pub rss_end_kib: Option<u64>,
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kib = |k: Option<u64>| k.map_or("n/a".to_owned(), |k| format!("{} KiB", k));
        write!(
            f,
            "{} requests in {:.1?} ({:.0}/s), 5xx {}, wrong {}, p50 {:.2?}, p99 {:.2?}, max {:.2?}, \
             function RSS {} -> {}",
            self.requests,
            self.elapsed,
            self.requests as f64 / self.elapsed.as_secs_f64(),
            self.server_errors,
            self.wrong.len(),
            self.p50,
            self.p99,
            self.max,
            kib(self.rss_start_kib),
            kib(self.rss_end_kib),
        )
    }
}

/// Resident set size of the process `pid`, from `/proc`.
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|n| n.parse().ok())
}

/// The pid of a process named `comm`: `root` itself or one of its descendants (the function started by
/// `cargo lambda watch`, which runs it under its own watcher, in a process group of its own).
pub fn find_descendant(root: u32, comm: &str) -> Option<u32> {
    let procs: Vec<(u32, u32, String)> = std::fs::read_dir("/proc")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let pid: u32 = e.file_name().to_str()?.parse().ok()?;
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // "pid (comm) state ppid ...": comm may hold spaces, so split at the last ')'.
            let (head, after) = stat.rsplit_once(')')?;
            let name = head.split_once('(')?.1.to_owned();
            let ppid: u32 = after.split_whitespace().nth(1)?.parse().ok()?;
            Some((pid, ppid, name))
        })
        .collect();
    if procs
        .iter()
        .any(|(pid, _, name)| *pid == root && name == comm)
    {
        return Some(root);
    }
    let mut family = vec![root];
    let mut i = 0;
    while i < family.len() {
        let parent = family[i];
        for (pid, ppid, name) in &procs {
            if *ppid == parent {
                if name == comm {
                    return Some(*pid);
                }
                family.push(*pid);
            }
        }
        i += 1;
    }
    None
}

/// Runs `clients` threads against `base_url` for `duration` (and at most `max_per_client`
/// requests each), cycling through `cases`. `rss` samples the function's memory once the
/// first quarter of the run has passed and again at the end.
pub fn run(
    base_url: &str,
    cases: &[Case],
    clients: usize,
    duration: Duration,
    max_per_client: usize,
    rss: &(dyn Fn() -> Option<u64> + Sync),
) -> Report {
    let started = Instant::now();
    let deadline = started + duration;
    let mut rss_start = None;
    let results: Vec<(Vec<Duration>, usize, Vec<String>)> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..clients)
            .map(|i| {
                s.spawn(move || {
                    let http = reqwest::blocking::Client::builder()
                        .timeout(Duration::from_secs(30))
                        .redirect(reqwest::redirect::Policy::none())
                        .build()
                        .expect("client");
                    let mut lat = Vec::new();
                    let mut server_errors = 0;
                    let mut wrong = Vec::new();
                    let mut n = i;
                    while Instant::now() < deadline && lat.len() < max_per_client {
                        let case = &cases[n % cases.len()];
                        n += 1;
                        let url = format!("{base_url}{}", case.path);
                        let req = match case.method {
                            "GET" => http.get(url),
                            _ => http
                                .post(url)
                                .header("content-type", case.content_type)
                                .body(case.body.clone()),
                        };
                        let t = Instant::now();
                        let outcome = req.send().and_then(|r| {
                            let status = r.status().as_u16();
                            r.text().map(|b| (status, b))
                        });
                        lat.push(t.elapsed());
                        match outcome {
                            Ok((status, body)) => {
                                if status >= 500 {
                                    server_errors += 1;
                                }
                                if let Err(e) = case.check(status, &body) {
                                    wrong.push(format!("{}: {e}", case.name));
                                }
                            }
                            Err(_) => wrong.push(format!("{}: transport error", case.name)),
                        }
                    }
                    (lat, server_errors, wrong)
                })
            })
            .collect();
        std::thread::sleep(duration / 4);
        rss_start = rss();
        handles
            .into_iter()
            .map(|h| h.join().expect("load client"))
            .collect()
    });
    let elapsed = started.elapsed();
    let rss_end = rss();
    let mut lat: Vec<Duration> = results.iter().flat_map(|r| r.0.iter().copied()).collect();
    lat.sort();
    let pct = |p: f64| {
        lat.get(((lat.len() as f64 * p) as usize).min(lat.len().saturating_sub(1)))
            .copied()
            .unwrap_or_default()
    };
    Report {
        requests: lat.len(),
        server_errors: results.iter().map(|r| r.1).sum(),
        wrong: results.iter().flat_map(|r| r.2.iter().cloned()).collect(),
        p50: pct(0.50),
        p99: pct(0.99),
        max: lat.last().copied().unwrap_or_default(),
        elapsed,
        rss_start_kib: rss_start,
        rss_end_kib: rss_end,
    }
}

/// What the Worker's own request log lines say about its memory: per request, in the order they
/// were logged, the wasm linear memory (`wasm_kib`) and the JS values held by the Rust side
/// (`js_refs`) at the end of that request (`functions/worker/src/runtime.rs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WorkerMemory {
    pub wasm_kib: u64,
    pub js_refs: u64,
}

/// The [`WorkerMemory`] of every request line in workerd's log at `path` (other lines skipped).
pub fn worker_memory(path: &std::path::Path) -> Vec<WorkerMemory> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .filter_map(|line| {
            let v: Value = serde_json::from_str(&line[line.find('{')?..]).ok()?;
            if v["target"] != "txbridge_worker::runtime" || v["message"] != "request" {
                return None;
            }
            Some(WorkerMemory {
                wasm_kib: v["wasm_kib"].as_u64()?,
                js_refs: v["js_refs"].as_u64()?,
            })
        })
        .collect()
}
