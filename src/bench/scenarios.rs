//! The five scenarios. Each creates jobs through the native API with a pool of concurrent
//! clients, lets them call the loopback receiver, and fills a [`Report`].

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use axum::body::Bytes;
use serde::Deserialize;
use serde_json::{json, Value};
use uuid::Uuid;

use super::receiver::{now_us, FaultPlan, Receiver, Reply, Tally};
use super::stats::{rate, Summary};
use super::{ms, Api, BenchArgs, Progress, Report, Scenario, Target};
use crate::duration::format_millis;

/// Far-future jobs are due this far ahead: they never fire during a run.
const FAR_DELAY: &str = "720h";

pub async fn run(
    args: &BenchArgs,
    target: &mut Target,
    progress: &Arc<Progress>,
    report: &mut Report,
) -> anyhow::Result<()> {
    if let Some(ready) = target.first_ready {
        report.number(
            "server_start_s",
            "spawned server ready after",
            ready.as_secs_f64(),
            "s",
        );
    }
    match args.scenario {
        Scenario::Ingest => ingest(args, target, progress, report).await,
        Scenario::Delivery => delivery(args, target, progress, report).await,
        Scenario::Precision => precision(args, target, progress, report).await,
        Scenario::Backlog => backlog(args, target, progress, report).await,
        Scenario::Failures => failures(args, target, progress, report).await,
    }
}

fn wall_ms() -> i64 {
    now_us() / 1000
}

// ---------- job bodies ----------

/// When a created job is due.
#[derive(Clone, Copy)]
enum When {
    Now,
    At(i64),
    Far,
}

/// The JSON of a create request calling `url` with a `payload_bytes` text body.
fn job_body(url: &str, when: When, payload: &str, retry: &Value, timeout: Option<&str>) -> Bytes {
    let mut v = json!({
        "target": { "method": "POST", "url": url, "body_text": payload },
        "retry": retry,
    });
    match when {
        When::Now => {}
        When::At(ms) => v["deliver_at"] = json!(crate::api::jobs::ts(ms)),
        When::Far => v["delay"] = json!(FAR_DELAY),
    }
    if let Some(t) = timeout {
        v["timeout"] = json!(t);
    }
    Bytes::from(serde_json::to_vec(&v).expect("JSON"))
}

fn no_retry() -> Value {
    json!({ "strategy": "none" })
}

fn payload(bytes: usize) -> String {
    // Printable and incompressible enough not to flatter anything.
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    (0..bytes)
        .map(|i| ALPHABET[(i * 7 + i / 36) % ALPHABET.len()] as char)
        .collect()
}

// ---------- creating many jobs ----------

#[derive(Deserialize)]
struct CreatedJob {
    id: Uuid,
    created_at: String,
}

/// One accepted create.
#[derive(Debug, Clone)]
struct Created {
    index: u64,
    id: Uuid,
    /// The server's creation time (its clock, ms).
    created_at_ms: i64,
}

struct CreateRun {
    /// Latency of every accepted create, ms.
    latencies: Vec<f64>,
    /// The accepted creates the caller asked to keep.
    created: Vec<Created>,
    accepted: u64,
    errors: u64,
    first_error: Option<String>,
    /// From the first request to the end of the last.
    elapsed: Duration,
}

impl CreateRun {
    fn rate(&self) -> f64 {
        rate(self.accepted, self.elapsed)
    }
}

/// How far [`create_many`] goes.
struct Plan {
    clients: usize,
    /// Stop after this many jobs...
    count: Option<u64>,
    /// ...or at this instant.
    until: Option<Instant>,
    /// Keep the first and then every `keep_every`-th accepted create (0: none, 1: all).
    keep_every: u64,
}

type BodyFn = Arc<dyn Fn(u64) -> Bytes + Send + Sync>;

/// Creates jobs with `clients` concurrent clients, each taking the next index in turn, so
/// that jobs are created roughly in index order.
async fn create_many(api: &Api, plan: Plan, body: BodyFn, progress: &Arc<Progress>) -> CreateRun {
    let next = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let first_error: Arc<Mutex<Option<String>>> = Arc::default();
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..plan.clients.max(1) {
        let (api, next, errors, accepted, first_error, body, progress) = (
            api.clone(),
            next.clone(),
            errors.clone(),
            accepted.clone(),
            first_error.clone(),
            body.clone(),
            progress.clone(),
        );
        let (count, until, keep_every) = (plan.count, plan.until, plan.keep_every);
        set.spawn(async move {
            let mut latencies = Vec::new();
            let mut created = Vec::new();
            loop {
                if until.is_some_and(|u| Instant::now() >= u) {
                    break;
                }
                // Too many failures means the target is down or refusing: stop early.
                let e = errors.load(Ordering::Relaxed);
                if e > 1000 && e > accepted.load(Ordering::Relaxed) {
                    break;
                }
                let i = next.fetch_add(1, Ordering::Relaxed);
                if count.is_some_and(|c| i >= c) {
                    break;
                }
                let b = body(i);
                let t = Instant::now();
                let res = api.create(b).await;
                let lat = t.elapsed().as_secs_f64() * 1000.0;
                match res {
                    Ok((201, resp)) => {
                        latencies.push(lat);
                        let n = accepted.fetch_add(1, Ordering::Relaxed) + 1;
                        progress.done.fetch_add(1, Ordering::Relaxed);
                        if keep_every > 0 && (n - 1) % keep_every == 0 {
                            match serde_json::from_slice::<CreatedJob>(&resp) {
                                Ok(j) => created.push(Created {
                                    index: i,
                                    id: j.id,
                                    created_at_ms: j
                                        .created_at
                                        .parse::<jiff::Timestamp>()
                                        .map(|t| t.as_millisecond())
                                        .unwrap_or(0),
                                }),
                                Err(e) => {
                                    first_error.lock().unwrap().get_or_insert_with(|| {
                                        format!("unreadable create response: {e}")
                                    });
                                }
                            }
                        }
                    }
                    Ok((status, resp)) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        progress.errors.fetch_add(1, Ordering::Relaxed);
                        first_error.lock().unwrap().get_or_insert_with(|| {
                            format!(
                                "HTTP {status}: {}",
                                String::from_utf8_lossy(&resp[..resp.len().min(300)])
                            )
                        });
                    }
                    Err(e) => {
                        errors.fetch_add(1, Ordering::Relaxed);
                        progress.errors.fetch_add(1, Ordering::Relaxed);
                        first_error
                            .lock()
                            .unwrap()
                            .get_or_insert_with(|| format!("request failed: {e}"));
                    }
                }
            }
            (latencies, created)
        });
    }
    let mut latencies = Vec::new();
    let mut created = Vec::new();
    while let Some(r) = set.join_next().await {
        if let Ok((l, c)) = r {
            latencies.extend(l);
            created.extend(c);
        }
    }
    let elapsed = started.elapsed();
    created.sort_by_key(|c| c.index);
    let first_error = first_error.lock().unwrap().take();
    CreateRun {
        latencies,
        created,
        accepted: accepted.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
        first_error,
        elapsed,
    }
}

fn report_errors(report: &mut Report, what: &str, run: &CreateRun) {
    if run.errors > 0 {
        report.note(format!(
            "{what}: {} requests failed; the first: {}",
            run.errors,
            run.first_error.as_deref().unwrap_or("?")
        ));
    } else if let Some(e) = &run.first_error {
        report.note(format!("{what}: {e}"));
    }
}

/// Waits until the receiver has `expected` distinct deliveries or `deadline` passes.
async fn wait_for_arrivals(
    rx: &Receiver,
    expected: u64,
    deadline: Instant,
    progress: &Arc<Progress>,
) -> bool {
    loop {
        let got = rx.distinct();
        progress.set_done(got);
        if got >= expected {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn clients(args: &BenchArgs, default: usize) -> usize {
    args.clients.unwrap_or(default).max(1)
}

// ---------- ingest ----------

async fn ingest(
    args: &BenchArgs,
    target: &mut Target,
    progress: &Arc<Progress>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let c = clients(args, 16);
    report.param("clients", c);
    report.param("duration_s", args.duration.as_secs_f64());
    report.param("payload_bytes", args.payload_bytes);
    let api = Api::new(&target.base, c)?;
    let rx = Receiver::start(FaultPlan::healthy()).await?;
    let body = job_body(
        &rx.url(),
        When::Far,
        &payload(args.payload_bytes),
        &no_retry(),
        None,
    );
    api.warm_up(c).await;
    progress.phase("creating jobs", 0);
    let run = create_many(
        &api,
        Plan {
            clients: c,
            count: None,
            until: Some(Instant::now() + args.duration),
            keep_every: 0,
        },
        Arc::new(move |_| body.clone()),
        progress,
    )
    .await;
    let lat = Summary::of(&run.latencies);
    report.count("accepted", "jobs accepted", run.accepted);
    report.count("errors", "requests failed", run.errors);
    report.number("accepted_per_s", "accepted", run.rate(), "jobs/s");
    report.latency("latency_ms", "create latency", lat);
    report.memory("server_memory", "server memory", target.memory());
    report_errors(report, "create", &run);
    report.note(format!(
        "jobs are due {FAR_DELAY} ahead, so no delivery runs during the measurement; a 201 means the job is committed"
    ));
    if c == 16 {
        let p99 = lat.map_or(f64::INFINITY, |s| s.p99);
        report.target(
            "ingest rate",
            "≥ 20,000 jobs/s at 16 clients",
            format!("{:.0} jobs/s", run.rate()),
            run.rate() >= 20_000.0,
        );
        report.target("ingest p99", "≤ 10 ms at 16 clients", ms(p99), p99 <= 10.0);
    } else {
        report.note(
            "the ingest targets are stated for 16 clients; rerun with --clients 16 to compare",
        );
    }
    report.check(
        "no failed creates",
        run.errors == 0,
        format!("{} failed", run.errors),
    );
    Ok(())
}

// ---------- delivery ----------

async fn delivery(
    args: &BenchArgs,
    target: &mut Target,
    progress: &Arc<Progress>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let c = clients(args, 16);
    let n = args.jobs.unwrap_or(10_000).max(1);
    report.param("jobs", n);
    report.param("clients", c);
    report.param("payload_bytes", args.payload_bytes);
    report.param("preload", args.preload);
    let api = Api::new(&target.base, c)?;
    let rx = Receiver::start(FaultPlan::healthy()).await?;
    if args.preload {
        // Every job due at one instant, created beforehand: the firing rate alone.
        let window = Duration::ZERO;
        let f = fire_on_schedule(args, &api, &rx, c, n, window, None, progress, report).await?;
        let last = f.last_arrival_ms.unwrap_or(f.t0_ms as f64);
        let span_s = ((last - f.t0_ms as f64) / 1000.0).max(1e-3);
        let delivered = f.arrived as f64;
        report.number(
            "deliveries_per_s",
            "delivered (from the due time to the last arrival)",
            delivered / span_s,
            "deliveries/s",
        );
        report.number("drain_s", "all delivered after the due time", span_s, "s");
        report.latency("lateness_ms", "lateness (arrival − due)", f.lateness);
        report.target(
            "delivery rate (preloaded)",
            "≥ 10,000 deliveries/s",
            format!("{:.0} deliveries/s", delivered / span_s),
            delivered / span_s >= 10_000.0,
        );
        return Ok(());
    }
    let body_url = rx.url();
    let text = payload(args.payload_bytes);
    let body = job_body(&body_url, When::Now, &text, &no_retry(), None);
    api.warm_up(c).await;
    progress.phase("creating jobs due now", n);
    let start_ms = wall_ms();
    let started = Instant::now();
    // Arrivals are watched while the jobs are created.
    let run = create_many(
        &api,
        Plan {
            clients: c,
            count: Some(n),
            until: None,
            keep_every: 1,
        },
        Arc::new(move |_| body.clone()),
        progress,
    )
    .await;
    let created_ms = wall_ms();
    progress.phase("waiting for deliveries", run.accepted);
    let deadline = started + Duration::from_secs(120) + Duration::from_millis(n * 10);
    let complete = wait_for_arrivals(&rx, run.accepted, deadline, progress).await;
    let tally = rx.tally();
    let mut to_arrival = Vec::with_capacity(run.created.len());
    let mut last_us = i64::MIN;
    let mut first_us = i64::MAX;
    let mut arrived = 0u64;
    for c in &run.created {
        if let Some(at) = tally.first_arrival_us(&c.id.to_string()) {
            arrived += 1;
            to_arrival.push(at as f64 / 1000.0 - c.created_at_ms as f64);
            last_us = last_us.max(at);
            first_us = first_us.min(at);
        }
    }
    let total_s = if arrived > 0 {
        (last_us as f64 / 1000.0 - start_ms as f64) / 1000.0
    } else {
        f64::NAN
    };
    let e2e = arrived as f64 / total_s;
    report.count("accepted", "jobs accepted", run.accepted);
    report.count("delivered", "jobs delivered", arrived);
    report.number(
        "create_s",
        "all created after",
        (created_ms - start_ms) as f64 / 1000.0,
        "s",
    );
    report.number("create_per_s", "created", run.rate(), "jobs/s");
    report.number(
        "total_s",
        "all delivered after (from the first create)",
        total_s,
        "s",
    );
    report.number("deliveries_per_s", "end to end", e2e, "deliveries/s");
    if arrived > 1 {
        report.number(
            "arrival_rate_per_s",
            "arrival rate (first to last arrival)",
            (arrived - 1) as f64 / ((last_us - first_us) as f64 / 1e6).max(1e-3),
            "deliveries/s",
        );
        report.number(
            "drain_after_last_create_s",
            "last arrival after the last create",
            (last_us as f64 / 1000.0 - created_ms as f64) / 1000.0,
            "s",
        );
    }
    report.latency(
        "accept_to_arrival_ms",
        "accept → arrival (server created_at to receiver)",
        Summary::of(&to_arrival),
    );
    report.count("duplicates", "duplicate calls", tally.duplicates);
    report.memory("server_memory", "server memory", target.memory());
    report_errors(report, "create", &run);
    report.note("jobs are created due now while deliveries run: the end-to-end rate includes creating them (see --preload for firing alone)");
    report.target(
        "delivery rate",
        "≥ 10,000 deliveries/s end to end",
        format!("{e2e:.0} deliveries/s"),
        e2e >= 10_000.0,
    );
    report.check(
        "every accepted job delivered",
        complete && arrived == run.accepted,
        format!("{arrived} of {} accepted", run.accepted),
    );
    report.check(
        "no failed creates",
        run.errors == 0,
        format!("{} failed", run.errors),
    );
    Ok(())
}

// ---------- firing on a schedule (precision, backlog, delivery --preload) ----------

struct Fired {
    t0_ms: i64,
    arrived: u64,
    early: u64,
    lateness: Option<Summary>,
    last_arrival_ms: Option<f64>,
}

/// Measures how fast the target creates far-future jobs for one second (used to choose how
/// far ahead a schedule must start).
async fn calibrate(api: &Api, url: &str, c: usize, progress: &Arc<Progress>) -> f64 {
    let body = job_body(url, When::Far, "x", &no_retry(), None);
    progress.phase("calibrating the create rate", 0);
    let run = create_many(
        api,
        Plan {
            clients: c,
            count: None,
            until: Some(Instant::now() + Duration::from_secs(1)),
            keep_every: 0,
        },
        Arc::new(move |_| body.clone()),
        progress,
    )
    .await;
    run.rate()
}

/// Creates `n` jobs due uniformly over `window`, starting far enough ahead that every job
/// exists before the first is due, then waits for them and measures lateness (first arrival
/// minus due time) at the receiver.
#[allow(clippy::too_many_arguments)]
async fn fire_on_schedule(
    args: &BenchArgs,
    api: &Api,
    rx: &Receiver,
    c: usize,
    n: u64,
    window: Duration,
    known_rate: Option<f64>,
    progress: &Arc<Progress>,
    report: &mut Report,
) -> anyhow::Result<Fired> {
    let lead = match args.lead {
        Some(l) => l,
        None => {
            let r = match known_rate {
                Some(r) => r,
                None => calibrate(api, &rx.url(), c, progress).await,
            };
            if r <= 0.0 {
                bail!("the target accepted no jobs while calibrating; is it healthy?");
            }
            report.number(
                "calibrated_create_per_s",
                "create rate measured before scheduling",
                r,
                "jobs/s",
            );
            let secs = 2.0 + 1.5 * n as f64 / r;
            Duration::from_secs_f64(secs.min(3600.0))
        }
    };
    report.number("lead_s", "window opens after", lead.as_secs_f64(), "s");
    let window_ms = window.as_millis() as i64;
    let t0 = wall_ms() + lead.as_millis() as i64;
    let due = move |i: u64| t0 + (i as i64 * window_ms) / n as i64;
    let url = rx.url();
    let text = payload(args.payload_bytes);
    let retry = no_retry();
    rx.reset();
    progress.phase("creating scheduled jobs", n);
    let run = create_many(
        api,
        Plan {
            clients: c,
            count: Some(n),
            until: None,
            keep_every: 1,
        },
        Arc::new(move |i| job_body(&url, When::At(due(i)), &text, &retry, None)),
        progress,
    )
    .await;
    let created_end = wall_ms();
    report_errors(report, "scheduling", &run);
    report.number(
        "schedule_create_s",
        "scheduled jobs created in",
        run.elapsed.as_secs_f64(),
        "s",
    );
    let margin = t0 - created_end;
    report.number(
        "margin_ms",
        "last create finished before the window opened by",
        margin as f64,
        "ms",
    );
    if margin < 0 {
        report.note(format!(
            "creating the jobs ran {} ms into the window, so creation and firing overlapped; give a longer --lead",
            -margin
        ));
    }
    progress.phase("waiting for deliveries", run.accepted);
    let until_open = Duration::from_millis((t0 - wall_ms()).max(0) as u64);
    let deadline = Instant::now()
        + Duration::from_millis((t0 + window_ms - wall_ms()).max(0) as u64)
        + Duration::from_secs(30);
    // The floor this machine sets: how late the bench's own timers wake during the window.
    let baseline = tokio::spawn(timer_lateness(
        Instant::now() + until_open,
        window.max(Duration::from_secs(1)),
    ));
    wait_for_arrivals(rx, run.accepted, deadline, progress).await;
    let baseline = baseline.await.unwrap_or_default();
    report.latency(
        "bench_timer_lateness_ms",
        "baseline: the bench's own 1 ms timers woke late by",
        Summary::of(&baseline),
    );
    let tally = rx.tally();
    let mut lateness = Vec::with_capacity(run.created.len());
    let mut early = 0;
    let mut last: Option<f64> = None;
    for c in &run.created {
        if let Some(at) = tally.first_arrival_us(&c.id.to_string()) {
            let at_ms = at as f64 / 1000.0;
            let late = at_ms - due(c.index) as f64;
            if late < 0.0 {
                early += 1;
            }
            lateness.push(late);
            last = Some(last.map_or(at_ms, |l: f64| l.max(at_ms)));
        }
    }
    let arrived = lateness.len() as u64;
    report.count("accepted", "jobs accepted", run.accepted);
    report.count("delivered", "jobs delivered", arrived);
    report.count("early", "arrived before their due time", early);
    report.count("duplicates", "duplicate calls", tally.duplicates);
    report.check(
        "every accepted job delivered",
        arrived == run.accepted,
        format!("{arrived} of {}", run.accepted),
    );
    report.check(
        "no early arrivals",
        early == 0,
        format!("{early} early (deliver_at has millisecond resolution)"),
    );
    report.check(
        "no failed creates",
        run.errors == 0,
        format!("{} failed", run.errors),
    );
    Ok(Fired {
        t0_ms: t0,
        arrived,
        early,
        lateness: Summary::of(&lateness),
        last_arrival_ms: last,
    })
}

/// Sleeps to a deadline every millisecond from `start` for `span`, and returns how late
/// each wake-up was (ms). Tokio's timers have millisecond resolution, so on an idle machine
/// this stays under about a millisecond; its tail shows how much scheduling noise any
/// lateness figure from the same machine carries.
async fn timer_lateness(start: Instant, span: Duration) -> Vec<f64> {
    let step = Duration::from_millis(1);
    let n = (span.as_millis() as u64).max(1);
    let mut out = Vec::with_capacity(n as usize);
    let mut at = start;
    for _ in 0..n {
        tokio::time::sleep_until(at.into()).await;
        out.push(at.elapsed().as_secs_f64() * 1000.0);
        at += step;
        // Catch up rather than measure one long stall many times.
        while at < Instant::now() {
            at += step;
        }
    }
    out
}

fn precision_targets(report: &mut Report, label: &str, f: &Fired) {
    let (p50, p99) = f
        .lateness
        .map_or((f64::INFINITY, f64::INFINITY), |s| (s.p50, s.p99));
    report.target(
        &format!("{label} p50"),
        "lateness p50 ≤ 2 ms at 1,000 jobs/s",
        ms(p50),
        p50 <= 2.0,
    );
    report.target(
        &format!("{label} p99"),
        "lateness p99 ≤ 10 ms at 1,000 jobs/s",
        ms(p99),
        p99 <= 10.0,
    );
    report.target(
        &format!("{label} early"),
        "no early arrivals",
        f.early.to_string(),
        f.early == 0 && f.arrived > 0,
    );
}

async fn precision(
    args: &BenchArgs,
    target: &mut Target,
    progress: &Arc<Progress>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let c = clients(args, 16);
    let n = args.jobs.unwrap_or(10_000).max(1);
    let window = args.window.unwrap_or(Duration::from_secs(10));
    let per_s = n as f64 / window.as_secs_f64().max(1e-3);
    report.param("jobs", n);
    report.param("window_s", window.as_secs_f64());
    report.param("jobs_per_s", per_s);
    report.param("clients", c);
    let api = Api::new(&target.base, c)?;
    let rx = Receiver::start(FaultPlan::healthy()).await?;
    api.warm_up(c).await;
    let f = fire_on_schedule(args, &api, &rx, c, n, window, None, progress, report).await?;
    report.latency("lateness_ms", "lateness (arrival − due)", f.lateness);
    report.memory("server_memory", "server memory", target.memory());
    report.note(
        "every job is created before the window opens, so creating them does not disturb firing",
    );
    if (per_s - 1000.0).abs() > 100.0 {
        report.note(format!(
            "the precision targets are stated at 1,000 jobs/s; this run fired {per_s:.0} jobs/s"
        ));
    }
    precision_targets(report, "precision", &f);
    Ok(())
}

// ---------- backlog ----------

async fn backlog(
    args: &BenchArgs,
    target: &mut Target,
    progress: &Arc<Progress>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let fill_clients = clients(args, 32);
    let probe_clients = 16;
    let m = args.backlog;
    let n = args.jobs.unwrap_or(5_000).max(1);
    let window = args.window.unwrap_or(Duration::from_secs(5));
    report.param("backlog", m);
    report.param("fill_clients", fill_clients);
    report.param("due_soon_jobs", n);
    report.param("window_s", window.as_secs_f64());
    report.param("payload_bytes", args.payload_bytes);
    let api = Api::new(&target.base, fill_clients.max(probe_clients))?;
    let rx = Receiver::start(FaultPlan::healthy()).await?;
    let far = job_body(
        &rx.url(),
        When::Far,
        &payload(args.payload_bytes),
        &no_retry(),
        None,
    );

    // 1. The backlog, as fast as the API takes it.
    api.warm_up(fill_clients).await;
    progress.phase(format!("filling the backlog ({FAR_DELAY} ahead)"), m);
    let body = far.clone();
    let fill = create_many(
        &api,
        Plan {
            clients: fill_clients,
            count: Some(m),
            until: None,
            keep_every: 1000,
        },
        Arc::new(move |_| body.clone()),
        progress,
    )
    .await;
    report_errors(report, "backlog", &fill);
    report.count("backlog_accepted", "backlog jobs accepted", fill.accepted);
    report.number(
        "backlog_fill_s",
        "backlog filled in",
        fill.elapsed.as_secs_f64(),
        "s",
    );
    report.number(
        "backlog_fill_per_s",
        "backlog fill rate",
        fill.rate(),
        "jobs/s",
    );
    report.latency(
        "backlog_fill_latency_ms",
        "create latency while filling",
        Summary::of(&fill.latencies),
    );
    let mem_filled = target.memory();
    report.memory(
        "memory_after_fill",
        "server memory with the backlog",
        mem_filled,
    );

    // 2. API latency with the backlog in place.
    progress.phase("probing create latency", 0);
    let body = far.clone();
    let probe = create_many(
        &api,
        Plan {
            clients: probe_clients,
            count: None,
            until: Some(Instant::now() + Duration::from_secs(3)),
            keep_every: 0,
        },
        Arc::new(move |_| body.clone()),
        progress,
    )
    .await;
    report.number(
        "create_per_s",
        "create rate (16 clients, 3 s)",
        probe.rate(),
        "jobs/s",
    );
    report.latency(
        "create_latency_ms",
        "create latency",
        Summary::of(&probe.latencies),
    );
    let ids: Vec<Uuid> = fill.created.iter().map(|c| c.id).collect();
    if !ids.is_empty() {
        progress.phase("probing read latency", 2000);
        let lat = get_probe(&api, &ids, 2000, probe_clients, progress).await;
        report.latency(
            "get_latency_ms",
            "GET /v1/jobs/{id} latency",
            Summary::of(&lat),
        );
    }

    // 3. A small set due soon, at the precision scenario's rate.
    let f = fire_on_schedule(
        args,
        &api,
        &rx,
        probe_clients,
        n,
        window,
        Some(probe.rate()),
        progress,
        report,
    )
    .await?;
    report.latency(
        "lateness_ms",
        "due-soon lateness (arrival − due)",
        f.lateness,
    );
    let mem_fired = target.memory();
    report.memory(
        "memory_after_firing",
        "server memory after firing",
        mem_fired,
    );
    precision_targets(report, "backlog precision", &f);

    // 4. Restart on the same data.
    let mut peak = [mem_filled, mem_fired]
        .iter()
        .flatten()
        .map(|m| m.peak_rss_mb)
        .fold(0.0, f64::max);
    if let Some(s) = target.spawned.as_mut() {
        progress.phase("restarting (SIGTERM)", 0);
        let (stop, ready) = s.restart(true).await?;
        report.number("restart_stop_s", "SIGTERM to exit", stop.as_secs_f64(), "s");
        report.number(
            "restart_ready_s",
            "start to ready (after SIGTERM)",
            ready.as_secs_f64(),
            "s",
        );
        let mem = s.memory();
        report.memory("memory_after_restart", "server memory after restart", mem);
        if let Some(id) = ids.first() {
            let t = Instant::now();
            let r = api.get_json(&format!("/v1/jobs/{id}")).await;
            report.number(
                "first_get_after_restart_ms",
                "first GET after restart",
                t.elapsed().as_secs_f64() * 1000.0,
                "ms",
            );
            report.check(
                "backlog readable after restart",
                r.is_ok(),
                r.err()
                    .map(|e| e.to_string())
                    .unwrap_or_else(|| "ok".into()),
            );
        }
        progress.phase("restarting (SIGKILL)", 0);
        let (_, ready_kill) = s.restart(false).await?;
        report.number(
            "restart_after_kill_ready_s",
            "start to ready (after SIGKILL)",
            ready_kill.as_secs_f64(),
            "s",
        );
        // A moment after ready, so the scheduler's first look at the backlog is included.
        tokio::time::sleep(Duration::from_secs(1)).await;
        let mem_k = s.memory();
        report.memory(
            "memory_after_kill_restart",
            "server memory 1 s after SIGKILL restart",
            mem_k,
        );
        peak = [mem, mem_k]
            .iter()
            .flatten()
            .map(|m| m.peak_rss_mb)
            .fold(peak, f64::max);
        let total = stop + ready;
        report.number(
            "restart_total_s",
            "restart (SIGTERM to ready)",
            total.as_secs_f64(),
            "s",
        );
        report.target(
            "backlog restart",
            "ready in ≤ 2 s after a restart with 1,000,000 pending",
            format!(
                "{:.2} s (SIGTERM+start), {:.2} s (start after SIGKILL)",
                total.as_secs_f64(),
                ready_kill.as_secs_f64()
            ),
            total <= Duration::from_secs(2) && ready_kill <= Duration::from_secs(2),
        );
        report.target(
            "backlog memory",
            "server RSS ≤ 200 MB with 1,000,000 pending",
            format!("{peak:.1} MB peak"),
            peak <= 200.0,
        );
    } else {
        report.note("not a spawned server: memory and restart time are not measured");
    }
    if m < 1_000_000 {
        report.note(format!(
            "the backlog targets are stated for 1,000,000 pending jobs; this run had {m}"
        ));
    }
    Ok(())
}

/// `count` GETs of jobs picked from `ids`, by `c` clients: their latencies, ms.
async fn get_probe(
    api: &Api,
    ids: &[Uuid],
    count: u64,
    c: usize,
    progress: &Arc<Progress>,
) -> Vec<f64> {
    let ids = Arc::new(ids.to_vec());
    let next = Arc::new(AtomicU64::new(0));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..c {
        let (api, ids, next, progress) = (api.clone(), ids.clone(), next.clone(), progress.clone());
        set.spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let id = ids[(i as usize * 7919) % ids.len()];
                let t = Instant::now();
                if api.get_json(&format!("/v1/jobs/{id}")).await.is_ok() {
                    lat.push(t.elapsed().as_secs_f64() * 1000.0);
                    progress.done.fetch_add(1, Ordering::Relaxed);
                } else {
                    progress.errors.fetch_add(1, Ordering::Relaxed);
                }
            }
            lat
        });
    }
    let mut all = Vec::new();
    while let Some(r) = set.join_next().await {
        all.extend(r.unwrap_or_default());
    }
    all
}

// ---------- failures ----------

/// One job's disagreement with the plan.
#[derive(Debug)]
struct Mismatch {
    id: Uuid,
    what: String,
}

/// Compares how each job ended (from the API and the receiver) with what the plan says.
fn judge(
    plan: &FaultPlan,
    max_attempts: u32,
    ids: &[Uuid],
    states: &HashMap<Uuid, (String, u32)>,
    history: &HashMap<Uuid, Vec<String>>,
    tally: &Tally,
) -> (Vec<Mismatch>, u64, u64) {
    let mut bad = Vec::new();
    let (mut ok_jobs, mut failed_jobs) = (0, 0);
    for id in ids {
        let key = id.to_string();
        let (succeeds, attempts) = plan.expected(&key, max_attempts);
        if succeeds {
            ok_jobs += 1;
        } else {
            failed_jobs += 1;
        }
        let want_state = if succeeds { "succeeded" } else { "failed" };
        match states.get(id) {
            None => bad.push(Mismatch {
                id: *id,
                what: "not listed by the API".into(),
            }),
            Some((state, n)) => {
                if state != want_state || *n != attempts {
                    bad.push(Mismatch {
                        id: *id,
                        what: format!(
                            "ended {state} after {n} attempts; expected {want_state} after {attempts}"
                        ),
                    });
                }
            }
        }
        let calls: Vec<u32> = tally
            .by_id
            .get(&key)
            .map(|a| {
                let mut v: Vec<u32> = a.calls.iter().map(|(n, _)| *n).collect();
                v.sort_unstable();
                v
            })
            .unwrap_or_default();
        let want_calls: Vec<u32> = (1..=attempts).collect();
        if calls != want_calls {
            bad.push(Mismatch {
                id: *id,
                what: format!("receiver saw attempts {calls:?}; expected {want_calls:?}"),
            });
        }
        if let Some(h) = history.get(id) {
            let mut want: Vec<&str> = vec!["retrying"; attempts.saturating_sub(1) as usize];
            want.push(if succeeds { "succeeded" } else { "failed" });
            if h.iter().map(String::as_str).ne(want.iter().copied()) {
                bad.push(Mismatch {
                    id: *id,
                    what: format!("attempt history {h:?}; expected {want:?}"),
                });
            }
        }
    }
    (bad, ok_jobs, failed_jobs)
}

async fn failures(
    args: &BenchArgs,
    target: &mut Target,
    progress: &Arc<Progress>,
    report: &mut Report,
) -> anyhow::Result<()> {
    let c = clients(args, 16);
    let n = args.jobs.unwrap_or(1_000).max(1);
    let a = args.attempts.max(1);
    let seed = args.seed.unwrap_or_else(rand::random);
    let plan = FaultPlan {
        seed,
        error: args.error_rate,
        late: args.timeout_rate,
        drop: args.refuse_rate,
        late_by: args.call_timeout + Duration::from_millis(500),
    };
    report.param("jobs", n);
    report.param("attempts", a);
    report.param("error_rate", args.error_rate);
    report.param("timeout_rate", args.timeout_rate);
    report.param("refuse_rate", args.refuse_rate);
    report.param(
        "call_timeout",
        format_millis(args.call_timeout.as_millis() as i64),
    );
    report.param(
        "retry_delay",
        format_millis(args.retry_delay.as_millis() as i64),
    );
    report.param("seed", seed);
    let api = Api::new(&target.base, c)?;
    let rx = Receiver::start(plan).await?;
    let retry = json!({
        "strategy": "fixed",
        "delay": format_millis(args.retry_delay.as_millis() as i64),
        "max_attempts": a,
    });
    let timeout = format_millis(args.call_timeout.as_millis() as i64);
    let body = job_body(
        &rx.url(),
        When::Now,
        &payload(args.payload_bytes),
        &retry,
        Some(&timeout),
    );
    api.warm_up(c).await;
    progress.phase("creating jobs due now", n);
    let started = Instant::now();
    let run = create_many(
        &api,
        Plan {
            clients: c,
            count: Some(n),
            until: None,
            keep_every: 1,
        },
        Arc::new(move |_| body.clone()),
        progress,
    )
    .await;
    report_errors(report, "create", &run);

    // Wait until nothing is scheduled or in flight in this run's namespace.
    progress.phase("waiting for every job to finish", 0);
    let per_attempt = args.call_timeout + args.retry_delay + Duration::from_millis(50);
    let deadline = Instant::now()
        + Duration::from_secs(60)
        + per_attempt * ((n * u64::from(a)) as u32 / 32 + a);
    let mut finished = false;
    while Instant::now() < deadline {
        progress.set_done(rx.calls());
        let open = api
            .get_json("/v1/jobs?state=scheduled,in_flight&limit=1")
            .await
            .context("listing unfinished jobs")?;
        if open["data"].as_array().is_some_and(|d| d.is_empty()) {
            finished = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    let settle_s = started.elapsed().as_secs_f64();
    // Late replies may still be sleeping in the receiver; they do not change any job.

    // Every job's state and attempt count, from the API.
    progress.phase("reading back every job", run.accepted);
    let mut states = HashMap::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut path = "/v1/jobs?limit=500".to_string();
        if let Some(c) = &cursor {
            path.push_str(&format!("&cursor={c}"));
        }
        let page = api.get_json(&path).await?;
        for j in page["data"].as_array().into_iter().flatten() {
            if let (Some(id), Some(state), Some(n)) = (
                j["id"].as_str().and_then(|s| Uuid::parse_str(s).ok()),
                j["state"].as_str(),
                j["attempts"].as_u64(),
            ) {
                states.insert(id, (state.to_string(), n as u32));
            }
        }
        progress.set_done(states.len() as u64);
        match page["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => break,
        }
    }
    // Every job's attempt history.
    progress.phase("reading attempt histories", run.accepted);
    let ids: Vec<Uuid> = run.created.iter().map(|c| c.id).collect();
    let history = attempt_histories(&api, &ids, c, progress).await;
    let tally = rx.tally();
    let (bad, ok_jobs, failed_jobs) = judge(&plan, a, &ids, &states, &history, &tally);

    let replies = |r: Reply| tally.replies.get(&r).copied().unwrap_or(0);
    report.count("accepted", "jobs accepted", run.accepted);
    report.count("calls", "calls received", tally.calls);
    report.value(
        "replies",
        "replies given",
        json!({
            "ok": replies(Reply::Ok),
            "error_500": replies(Reply::Error),
            "too_late": replies(Reply::Late),
            "dropped": replies(Reply::Drop),
        }),
        format!(
            "{} ok, {} HTTP 500, {} too late, {} dropped",
            replies(Reply::Ok),
            replies(Reply::Error),
            replies(Reply::Late),
            replies(Reply::Drop)
        ),
    );
    report.value(
        "expected",
        "planned outcome",
        json!({ "succeeded": ok_jobs, "failed": failed_jobs }),
        format!("{ok_jobs} succeed, {failed_jobs} fail after {a} attempts"),
    );
    let mut ended: HashMap<&str, u64> = HashMap::new();
    for (s, _) in states.values() {
        *ended.entry(s.as_str()).or_default() += 1;
    }
    report.value("ended", "jobs ended", &ended, format!("{ended:?}"));
    report.count("duplicates", "duplicate calls", tally.duplicates);
    report.number("settle_s", "every job finished after", settle_s, "s");
    report.count(
        "mismatches",
        "jobs that disagree with the plan",
        bad.len() as u64,
    );
    for m in bad.iter().take(5) {
        report.note(format!("job {}: {}", m.id, m.what));
    }
    report.check(
        "every job finished",
        finished,
        if finished {
            "nothing scheduled or in flight".to_string()
        } else {
            "jobs still open at the deadline".to_string()
        },
    );
    report.check(
        "right state and attempts for every job",
        bad.is_empty() && run.accepted == n,
        format!("{} mismatches among {} jobs", bad.len(), run.accepted),
    );
    report.check(
        "no failed creates",
        run.errors == 0,
        format!("{} failed", run.errors),
    );
    Ok(())
}

/// The outcomes of every job's attempts, oldest first.
async fn attempt_histories(
    api: &Api,
    ids: &[Uuid],
    c: usize,
    progress: &Arc<Progress>,
) -> HashMap<Uuid, Vec<String>> {
    let ids = Arc::new(ids.to_vec());
    let next = Arc::new(AtomicU64::new(0));
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..c {
        let (api, ids, next, progress) = (api.clone(), ids.clone(), next.clone(), progress.clone());
        set.spawn(async move {
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(id) = ids.get(i).copied() else { break };
                if let Ok(v) = api
                    .get_json(&format!("/v1/jobs/{id}/attempts?limit=500"))
                    .await
                {
                    let outcomes = v["data"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .map(|a| a["outcome"].as_str().unwrap_or("?").to_string())
                        .collect();
                    out.push((id, outcomes));
                }
                progress.done.fetch_add(1, Ordering::Relaxed);
            }
            out
        });
    }
    let mut all = HashMap::new();
    while let Some(r) = set.join_next().await {
        all.extend(r.unwrap_or_default());
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_has_the_asked_size() {
        assert_eq!(payload(0).len(), 0);
        assert_eq!(payload(256).len(), 256);
        assert_eq!(payload(10_000).len(), 10_000);
    }

    #[test]
    fn job_bodies_are_valid_requests() {
        let b = job_body(
            "http://127.0.0.1:1/hook",
            When::At(1_700_000_000_123),
            "abc",
            &no_retry(),
            Some("1s"),
        );
        let v: Value = serde_json::from_slice(&b).unwrap();
        assert_eq!(v["deliver_at"], "2023-11-14T22:13:20.123Z");
        assert_eq!(v["target"]["body_text"], "abc");
        assert_eq!(v["timeout"], "1s");
        // The API's own request type accepts it.
        let _: crate::api::jobs::CreateJobRequest = serde_json::from_slice(&b).unwrap();
        let far: Value =
            serde_json::from_slice(&job_body("http://x/", When::Far, "", &no_retry(), None))
                .unwrap();
        assert_eq!(far["delay"], FAR_DELAY);
        assert!(far.get("deliver_at").is_none());
    }

    #[test]
    fn judge_finds_wrong_endings() {
        let plan = FaultPlan {
            seed: 3,
            error: 0.4,
            late: 0.1,
            drop: 0.1,
            late_by: Duration::ZERO,
        };
        let ids: Vec<Uuid> = (0..200).map(|_| Uuid::now_v7()).collect();
        let mut states = HashMap::new();
        let mut history = HashMap::new();
        let mut tally = Tally::default();
        for id in &ids {
            let (ok, n) = plan.expected(&id.to_string(), 3);
            states.insert(
                *id,
                (if ok { "succeeded" } else { "failed" }.to_string(), n),
            );
            let mut h = vec!["retrying".to_string(); n as usize - 1];
            h.push(if ok { "succeeded" } else { "failed" }.into());
            history.insert(*id, h);
            for k in 1..=n {
                tally.record(Some(&id.to_string()), k, 0, plan.reply(&id.to_string(), k));
            }
        }
        let (bad, ok, failed) = judge(&plan, 3, &ids, &states, &history, &tally);
        assert!(bad.is_empty(), "{bad:?}");
        assert_eq!(ok + failed, 200);
        assert!(ok > 0 && failed > 0);

        // A job that ended with one attempt too many, and one the receiver saw twice.
        let (a, b) = (ids[0], ids[1]);
        states.get_mut(&a).unwrap().1 += 1;
        tally.record(Some(&b.to_string()), 1, 0, Reply::Ok);
        let (bad, _, _) = judge(&plan, 3, &ids, &states, &history, &tally);
        assert_eq!(bad.len(), 2, "{bad:?}");
        assert!(bad.iter().any(|m| m.id == a && m.what.contains("attempts")));
        assert!(bad.iter().any(|m| m.id == b && m.what.contains("receiver")));
    }
}
