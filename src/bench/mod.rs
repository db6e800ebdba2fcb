//! `herald bench`: a load generator and a loopback receiver in one program.
//!
//! It targets a running Herald (`--url`, loopback only) or starts one itself (`--spawn`,
//! SQLite on a fresh temporary directory, or PostgreSQL on a fresh schema with
//! `--database-url`), runs one scenario, shows progress on stderr and prints a summary on
//! stdout (`--json` for machine-readable output). Every request goes to 127.0.0.1 and is
//! bounded in time; every scenario is bounded in count or duration.
//!
//! Scenarios: `ingest` (creation throughput and latency), `delivery` (end-to-end
//! deliveries per second), `precision` (lateness against the due time), `backlog` (memory,
//! latency, precision and restart time with a large number of jobs waiting), `failures`
//! (every job ends in the right state with the right attempts when calls fail).

pub mod receiver;
pub mod scenarios;
pub mod spawn;
pub mod stats;

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use axum::body::Bytes;
use clap::{Args, ValueEnum};
use serde::Serialize;
use serde_json::{json, Map, Value};

use spawn::{SpawnOptions, SpawnStore, Spawned};
use stats::{fmt_ms, Summary};

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scenario {
    /// C clients create jobs for D seconds: accepted/s and latency.
    Ingest,
    /// N jobs due now: time until the receiver has every one.
    Delivery,
    /// N jobs due over a window W: lateness at the receiver.
    Precision,
    /// M jobs far ahead, then a small set due soon: memory, latency, lateness, restart.
    Backlog,
    /// The receiver fails a fraction of calls: every job ends right.
    Failures,
}

impl Scenario {
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Ingest => "ingest",
            Scenario::Delivery => "delivery",
            Scenario::Precision => "precision",
            Scenario::Backlog => "backlog",
            Scenario::Failures => "failures",
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(value_enum)]
    pub scenario: Scenario,
    /// A running Herald's native API, e.g. http://127.0.0.1:7700 (loopback addresses only).
    #[arg(long, conflicts_with = "spawn")]
    pub url: Option<String>,
    /// Start a Herald child process for the run, on a fresh temporary SQLite directory (or a
    /// fresh schema of --database-url), and remove it afterwards.
    #[arg(long)]
    pub spawn: bool,
    /// With --spawn: run the server on PostgreSQL (postgres://…) in a fresh schema.
    #[arg(long, requires = "spawn")]
    pub database_url: Option<String>,
    /// With --spawn: the server's --workers (calls in flight).
    #[arg(long, default_value_t = 64)]
    pub workers: usize,
    /// With --spawn: the server's --database-max-connections (PostgreSQL).
    #[arg(long)]
    pub database_max_connections: Option<u32>,
    /// Concurrent API clients (default 16; 32 for filling a backlog).
    #[arg(long)]
    pub clients: Option<usize>,
    /// ingest: how long to create jobs.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Size of each job's request body, in bytes.
    #[arg(long, default_value_t = 256)]
    pub payload_bytes: usize,
    /// Jobs to create (delivery: 10000; precision: 10000; backlog's due-soon set: 5000;
    /// failures: 1000).
    #[arg(long)]
    pub jobs: Option<u64>,
    /// precision, backlog: the window the due times spread over (precision 10s, backlog 5s).
    #[arg(long, value_parser = parse_duration)]
    pub window: Option<Duration>,
    /// precision, backlog: time between the bench starting to create the jobs and the
    /// window opening (default: measured, so that every job exists before the window).
    #[arg(long, value_parser = parse_duration)]
    pub lead: Option<Duration>,
    /// delivery: create every job due at one instant a little ahead, and measure only the
    /// firing (instead of creating them due now and measuring end to end).
    #[arg(long)]
    pub preload: bool,
    /// backlog: jobs due far in the future.
    #[arg(long, default_value_t = 1_000_000)]
    pub backlog: u64,
    /// failures: fraction of calls answered with HTTP 500.
    #[arg(long, default_value_t = 0.2)]
    pub error_rate: f64,
    /// failures: fraction of calls answered only after the job's timeout.
    #[arg(long, default_value_t = 0.1)]
    pub timeout_rate: f64,
    /// failures: fraction of calls whose connection is closed without an answer.
    #[arg(long, default_value_t = 0.1)]
    pub refuse_rate: f64,
    /// failures: attempts per job (fixed retry policy).
    #[arg(long, default_value_t = 3)]
    pub attempts: u32,
    /// failures: the jobs' per-attempt timeout.
    #[arg(long, default_value = "1s", value_parser = parse_duration)]
    pub call_timeout: Duration,
    /// failures: the delay between attempts.
    #[arg(long, default_value = "100ms", value_parser = parse_duration)]
    pub retry_delay: Duration,
    /// failures: seed of the fault plan (which calls fail).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print the summary as JSON.
    #[arg(long)]
    pub json: bool,
    /// No progress line on stderr.
    #[arg(long)]
    pub quiet: bool,
    /// With --spawn: keep the data directory or schema afterwards.
    #[arg(long)]
    pub keep: bool,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let ms = crate::duration::parse_millis(s).map_err(|e| e.to_string())?;
    if ms < 0 {
        return Err("must not be negative".into());
    }
    Ok(Duration::from_millis(ms as u64))
}

/// Refuses any base URL that is not on the loopback interface: the bench's load must never
/// leave the machine.
pub fn check_loopback(url: &str) -> anyhow::Result<String> {
    let u = url::Url::parse(url).with_context(|| format!("--url {url:?} is not a URL"))?;
    if u.scheme() != "http" {
        bail!("--url must be http:// (got {})", u.scheme());
    }
    let ok = match u.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    };
    if !ok {
        bail!("--url must point at this machine's loopback (127.0.0.1, ::1 or localhost), got {url:?}");
    }
    Ok(url.trim_end_matches('/').to_string())
}

/// The Herald under test.
pub struct Target {
    pub base: String,
    pub spawned: Option<Spawned>,
    /// How long the spawned server took from spawn to ready.
    pub first_ready: Option<Duration>,
}

impl Target {
    pub fn store(&self) -> &'static str {
        self.spawned
            .as_ref()
            .map(|s| s.store_name())
            .unwrap_or("external")
    }

    pub fn memory(&self) -> Option<spawn::Memory> {
        self.spawned.as_ref().and_then(|s| s.memory())
    }
}

/// The native API as the bench uses it: a keep-alive client and a namespace of its own, so
/// that a run against a shared server only ever sees its own jobs.
#[derive(Clone)]
pub struct Api {
    pub http: reqwest::Client,
    pub base: String,
    pub namespace: String,
}

impl Api {
    pub fn new(base: &str, clients: usize) -> anyhow::Result<Api> {
        let http = reqwest::Client::builder()
            .no_proxy()
            .tcp_nodelay(true)
            .pool_max_idle_per_host(clients * 2 + 16)
            .pool_idle_timeout(Duration::from_secs(90))
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(60))
            .build()?;
        Ok(Api {
            http,
            base: base.to_string(),
            namespace: format!("bench-{}", uuid::Uuid::now_v7().simple()),
        })
    }

    /// `POST /v1/jobs` with a prepared body: the status and the response body.
    pub async fn create(&self, body: Bytes) -> reqwest::Result<(u16, Bytes)> {
        let r = self
            .http
            .post(format!("{}/v1/jobs", self.base))
            .header("herald-namespace", &self.namespace)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        let status = r.status().as_u16();
        Ok((status, r.bytes().await?))
    }

    /// A GET that must answer 200 with JSON.
    pub async fn get_json(&self, path: &str) -> anyhow::Result<Value> {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .header("herald-namespace", &self.namespace)
            .send()
            .await?;
        let status = r.status();
        let body = r.bytes().await?;
        if !status.is_success() {
            bail!(
                "GET {path} answered {status}: {}",
                String::from_utf8_lossy(&body)
            );
        }
        Ok(serde_json::from_slice(&body)?)
    }

    /// Opens `n` connections at once, so that the timed part does not pay for them.
    pub async fn warm_up(&self, n: usize) {
        let mut set = tokio::task::JoinSet::new();
        for _ in 0..n {
            let api = self.clone();
            set.spawn(async move {
                let _ = api
                    .http
                    .get(format!("{}/healthz", api.base))
                    .send()
                    .await
                    .map(|r| r.bytes());
            });
        }
        while set.join_next().await.is_some() {}
    }
}

/// The live progress line on stderr.
pub struct Progress {
    enabled: bool,
    phase: Mutex<(String, u64, Instant)>,
    pub done: AtomicU64,
    pub errors: AtomicU64,
    stop: AtomicBool,
}

impl Progress {
    pub fn new(enabled: bool) -> Arc<Progress> {
        Arc::new(Progress {
            enabled,
            phase: Mutex::new((String::new(), 0, Instant::now())),
            done: AtomicU64::new(0),
            errors: AtomicU64::new(0),
            stop: AtomicBool::new(false),
        })
    }

    /// Starts a phase with `total` expected units (0: unknown), resetting the counters.
    pub fn phase(&self, name: impl Into<String>, total: u64) {
        let name = name.into();
        *self.phase.lock().expect("progress lock") = (name.clone(), total, Instant::now());
        self.done.store(0, Ordering::Relaxed);
        self.errors.store(0, Ordering::Relaxed);
        if self.enabled && !std::io::stderr().is_terminal() {
            eprintln!("bench: {name}");
        }
    }

    pub fn set_done(&self, n: u64) {
        self.done.store(n, Ordering::Relaxed);
    }

    fn line(&self) -> String {
        let (name, total, started) = self.phase.lock().expect("progress lock").clone();
        let done = self.done.load(Ordering::Relaxed);
        let errors = self.errors.load(Ordering::Relaxed);
        let secs = started.elapsed().as_secs_f64();
        let rate = if secs > 0.0 { done as f64 / secs } else { 0.0 };
        let mut s = format!("{name}: {done}");
        if total > 0 {
            s.push_str(&format!("/{total}"));
        }
        s.push_str(&format!("  {rate:.0}/s  {secs:.1}s"));
        if errors > 0 {
            s.push_str(&format!("  errors {errors}"));
        }
        s
    }

    /// Draws the line until [`Progress::finish`]: in place on a terminal, every 5 s otherwise.
    pub fn spawn_printer(self: &Arc<Self>) -> Option<tokio::task::JoinHandle<()>> {
        if !self.enabled {
            return None;
        }
        let me = self.clone();
        Some(tokio::spawn(async move {
            let tty = std::io::stderr().is_terminal();
            let every = if tty {
                Duration::from_millis(200)
            } else {
                Duration::from_secs(5)
            };
            while !me.stop.load(Ordering::Relaxed) {
                tokio::time::sleep(every).await;
                if me.stop.load(Ordering::Relaxed) {
                    break;
                }
                if tty {
                    eprint!("\r\x1b[2K{}", me.line());
                } else {
                    eprintln!("{}", me.line());
                }
            }
            if tty {
                eprint!("\r\x1b[2K");
            }
        }))
    }

    pub fn finish(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

/// A target from the issue, compared with what was measured.
#[derive(Debug, Clone, Serialize)]
pub struct TargetCheck {
    pub name: String,
    pub target: String,
    pub measured: String,
    pub met: bool,
}

/// The outcome of a run: what was measured, which correctness checks passed, and how the
/// figures compare with the targets.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    pub scenario: String,
    pub target: Map<String, Value>,
    pub params: Map<String, Value>,
    pub results: Map<String, Value>,
    /// Correctness: a failed check fails the run.
    pub checks: Vec<Check>,
    pub targets: Vec<TargetCheck>,
    pub notes: Vec<String>,
    #[serde(skip)]
    lines: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Check {
    pub name: String,
    pub ok: bool,
    pub detail: String,
}

impl Report {
    pub fn param(&mut self, key: &str, v: impl Serialize) {
        self.params.insert(key.into(), json!(v));
    }

    /// A result: stored under `key` for JSON, shown as `label: text` for people.
    pub fn value(&mut self, key: &str, label: &str, v: impl Serialize, text: impl Into<String>) {
        self.results.insert(key.into(), json!(v));
        self.lines.push(format!("{label}: {}", text.into()));
    }

    pub fn number(&mut self, key: &str, label: &str, v: f64, unit: &str) {
        let text = if v.abs() >= 100.0 {
            format!("{v:.0} {unit}")
        } else {
            format!("{v:.2} {unit}")
        };
        self.value(key, label, v, text.trim_end());
    }

    pub fn count(&mut self, key: &str, label: &str, v: u64) {
        self.value(key, label, v, v.to_string());
    }

    pub fn latency(&mut self, key: &str, label: &str, s: Option<Summary>) {
        match s {
            Some(s) => self.value(key, label, s, s.line()),
            None => self.value(key, label, Value::Null, "no samples"),
        }
    }

    pub fn memory(&mut self, key: &str, label: &str, m: Option<spawn::Memory>) {
        match m {
            Some(m) => self.value(
                key,
                label,
                m,
                format!("{:.1} MB (peak {:.1} MB)", m.rss_mb, m.peak_rss_mb),
            ),
            None => self.value(key, label, Value::Null, "unknown (not a spawned server)"),
        }
    }

    pub fn check(&mut self, name: &str, ok: bool, detail: impl Into<String>) {
        self.checks.push(Check {
            name: name.into(),
            ok,
            detail: detail.into(),
        });
    }

    pub fn target(&mut self, name: &str, target: &str, measured: String, met: bool) {
        self.targets.push(TargetCheck {
            name: name.into(),
            target: target.into(),
            measured,
            met,
        });
    }

    pub fn note(&mut self, n: impl Into<String>) {
        self.notes.push(n.into());
    }

    pub fn passed(&self) -> bool {
        self.checks.iter().all(|c| c.ok)
    }

    pub fn text(&self) -> String {
        let mut out = format!("herald bench {}", self.scenario);
        let t: Vec<String> = self
            .target
            .iter()
            .map(|(k, v)| format!("{k}={}", plain(v)))
            .collect();
        out.push_str(&format!("  [{}]\n", t.join(" ")));
        let p: Vec<String> = self
            .params
            .iter()
            .map(|(k, v)| format!("{k}={}", plain(v)))
            .collect();
        out.push_str(&format!("  params: {}\n", p.join(" ")));
        for l in &self.lines {
            out.push_str(&format!("  {l}\n"));
        }
        for c in &self.checks {
            out.push_str(&format!(
                "  check {}: {} — {}\n",
                c.name,
                if c.ok { "ok" } else { "FAILED" },
                c.detail
            ));
        }
        for t in &self.targets {
            out.push_str(&format!(
                "  target {}: {} — measured {} → {}\n",
                t.name,
                t.target,
                t.measured,
                if t.met { "met" } else { "NOT met" }
            ));
        }
        for n in &self.notes {
            out.push_str(&format!("  note: {n}\n"));
        }
        out
    }
}

fn plain(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// Formats milliseconds for a target line.
pub fn ms(v: f64) -> String {
    format!("{} ms", fmt_ms(v))
}

fn machine() -> Map<String, Value> {
    let mut m = Map::new();
    m.insert(
        "cpus".into(),
        json!(std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0)),
    );
    if let Ok(l) = std::fs::read_to_string("/proc/loadavg") {
        // Other work on the machine skews every figure: keep the 1-minute load with them.
        if let Some(one) = l.split_whitespace().next() {
            m.insert("load_1m".into(), json!(one));
        }
    }
    if let Ok(info) = std::fs::read_to_string("/proc/cpuinfo") {
        if let Some(model) = info
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
        {
            m.insert("cpu".into(), json!(model.trim()));
        }
    }
    m
}

/// Runs `herald bench`: the report goes to stdout, and a failed correctness check makes the
/// command fail.
pub async fn main(args: BenchArgs) -> anyhow::Result<()> {
    let report = run(args.clone()).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", report.text());
    }
    if !report.passed() {
        bail!("correctness checks failed");
    }
    Ok(())
}

/// Runs one scenario and returns its report.
pub async fn run(args: BenchArgs) -> anyhow::Result<Report> {
    for (name, f) in [
        ("--error-rate", args.error_rate),
        ("--timeout-rate", args.timeout_rate),
        ("--refuse-rate", args.refuse_rate),
    ] {
        if !(0.0..=1.0).contains(&f) {
            bail!("{name} must be between 0 and 1");
        }
    }
    if args.error_rate + args.timeout_rate + args.refuse_rate > 1.0 {
        bail!("--error-rate, --timeout-rate and --refuse-rate add up to more than 1");
    }
    let mut target = match (&args.url, args.spawn) {
        (Some(url), false) => Target {
            base: check_loopback(url)?,
            spawned: None,
            first_ready: None,
        },
        (None, true) => {
            let store = match &args.database_url {
                Some(u) if u.starts_with("postgres://") || u.starts_with("postgresql://") => {
                    SpawnStore::Postgres(u.clone())
                }
                Some(u) => bail!("--database-url must be a postgres:// URL, got {u:?}"),
                None => SpawnStore::Sqlite,
            };
            let mut extra_args = Vec::new();
            if let Some(n) = args.database_max_connections {
                extra_args.push("--database-max-connections".into());
                extra_args.push(n.to_string());
            }
            let opts = SpawnOptions {
                store,
                workers: args.workers,
                extra_args,
                keep: args.keep,
            };
            if !args.quiet {
                eprintln!("bench: starting herald serve…");
            }
            let (s, ready) = Spawned::start(&opts).await?;
            Target {
                base: s.base.clone(),
                spawned: Some(s),
                first_ready: Some(ready),
            }
        }
        (None, false) => bail!(
            "give --spawn to start a Herald for the run, or --url http://127.0.0.1:PORT of a running one"
        ),
        (Some(_), true) => bail!("give --url or --spawn, not both"),
    };

    let progress = Progress::new(!args.quiet);
    let printer = progress.spawn_printer();
    let mut report = Report {
        scenario: args.scenario.name().into(),
        ..Default::default()
    };
    report.target.insert("store".into(), json!(target.store()));
    report.target.insert("url".into(), json!(target.base));
    if target.spawned.is_some() {
        report.target.insert("workers".into(), json!(args.workers));
    }
    for (k, v) in machine() {
        report.target.insert(k, v);
    }
    report
        .target
        .insert("version".into(), json!(env!("CARGO_PKG_VERSION")));

    // Ctrl-C stops the scenario but still removes a spawned server and its data.
    let outcome = tokio::select! {
        r = scenarios::run(&args, &mut target, &progress, &mut report) => r,
        _ = tokio::signal::ctrl_c() => Err(anyhow::anyhow!("interrupted")),
    };
    progress.finish();
    if let Some(p) = printer {
        let _ = p.await;
    }
    if let Some(s) = target.spawned.take() {
        if let Err(e) = s.finish().await {
            eprintln!("bench: cleaning up the spawned server: {e:#}");
        }
    }
    outcome?;
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_loopback_targets() {
        assert_eq!(
            check_loopback("http://127.0.0.1:7700/").unwrap(),
            "http://127.0.0.1:7700"
        );
        assert!(check_loopback("http://localhost:1").is_ok());
        assert!(check_loopback("http://[::1]:1").is_ok());
        assert!(check_loopback("http://10.0.0.1:7700").is_err());
        assert!(check_loopback("http://example.com").is_err());
        assert!(check_loopback("https://127.0.0.1").is_err());
        assert!(check_loopback("nonsense").is_err());
    }

    #[test]
    fn report_text_and_checks() {
        let mut r = Report {
            scenario: "x".into(),
            ..Default::default()
        };
        r.number("rate", "rate", 1234.5, "jobs/s");
        r.latency("lat", "latency", Summary::of(&[1.0, 2.0, 3.0]));
        r.check("all arrived", true, "3 of 3");
        assert!(r.passed());
        r.check("no early", false, "1 early");
        assert!(!r.passed());
        let t = r.text();
        assert!(t.contains("rate: 1234 jobs/s") || t.contains("rate: 1235 jobs/s"));
        assert!(t.contains("p50 2.00 ms"));
        assert!(t.contains("FAILED"));
        assert_eq!(r.results["lat"]["p99"], json!(3.0));
    }
}
