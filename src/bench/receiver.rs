//! The built-in loopback receiver: an HTTP server on `127.0.0.1:0` that Herald's jobs call.
//! It records when each delivery first arrived (by its `herald-delivery-id`), counts every
//! call and every duplicate (the same attempt of the same job arriving twice), and — for the
//! `failures` scenario — answers a planned fraction of calls with an error, with a reply
//! that comes too late, or by dropping the connection without a reply.
//!
//! The plan is a pure function of (job id, attempt number, seed), so the bench knows in
//! advance how every job must end and with how many attempts.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::{Request, Response, StatusCode};
use serde::Serialize;
use tokio::net::TcpListener;

use crate::engine::http::{ATTEMPT_HEADER, DELIVERY_ID_HEADER};

/// How the receiver answers one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Reply {
    /// `200 OK` at once.
    Ok,
    /// `500 Internal Server Error` at once.
    Error,
    /// `200 OK`, but only after the plan's delay, which is longer than the job's timeout.
    Late,
    /// The connection is closed without any response.
    Drop,
}

/// Which calls fail and how. Fractions are of calls, each decided independently.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct FaultPlan {
    pub seed: u64,
    pub error: f64,
    pub late: f64,
    pub drop: f64,
    /// How long a `Late` reply waits before answering.
    pub late_by: Duration,
}

impl FaultPlan {
    /// Every call answered `200 OK` at once.
    pub fn healthy() -> Self {
        FaultPlan {
            seed: 0,
            error: 0.0,
            late: 0.0,
            drop: 0.0,
            late_by: Duration::ZERO,
        }
    }

    /// The reply to attempt `attempt` of delivery `id`: the same every time it is asked.
    pub fn reply(&self, id: &str, attempt: u32) -> Reply {
        let u = unit(self.seed, id, attempt);
        if u < self.error {
            Reply::Error
        } else if u < self.error + self.late {
            Reply::Late
        } else if u < self.error + self.late + self.drop {
            Reply::Drop
        } else {
            Reply::Ok
        }
    }

    /// How a job with this id and attempt budget must end: `(succeeded, attempts)`. It
    /// succeeds on the first attempt that gets `Ok`, and fails after `max_attempts` others.
    pub fn expected(&self, id: &str, max_attempts: u32) -> (bool, u32) {
        for n in 1..=max_attempts {
            if self.reply(id, n) == Reply::Ok {
                return (true, n);
            }
        }
        (false, max_attempts)
    }
}

/// A deterministic number in [0, 1) from (seed, id, attempt): FNV-1a over the bytes, then
/// the SplitMix64 finaliser to spread the bits.
fn unit(seed: u64, id: &str, attempt: u32) -> f64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325 ^ seed;
    for b in id.bytes().chain(attempt.to_le_bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h = h.wrapping_add(0x9e37_79b9_7f4a_7c15);
    h = (h ^ (h >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    h = (h ^ (h >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    h ^= h >> 31;
    (h >> 11) as f64 / (1u64 << 53) as f64
}

/// What arrived for one delivery id.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Arrivals {
    /// Wall-clock time of the first call, in microseconds since the Unix epoch.
    pub first_us: i64,
    /// Every call, in order of arrival: (attempt number, reply given).
    pub calls: Vec<(u32, Reply)>,
}

/// Everything the receiver has seen. Pure bookkeeping, so it is tested without a network.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    pub by_id: HashMap<String, Arrivals>,
    /// Calls in total, with or without an id.
    pub calls: u64,
    /// Calls that repeated an (id, attempt) already seen.
    pub duplicates: u64,
    /// Calls that carried no delivery id (not from Herald, or a broken header).
    pub without_id: u64,
    /// Calls per reply kind.
    pub replies: HashMap<Reply, u64>,
}

impl Tally {
    /// Records one call arriving at `at_us`. Returns true when it is the first call for `id`.
    pub fn record(&mut self, id: Option<&str>, attempt: u32, at_us: i64, reply: Reply) -> bool {
        self.calls += 1;
        *self.replies.entry(reply).or_default() += 1;
        let Some(id) = id else {
            self.without_id += 1;
            return false;
        };
        match self.by_id.get_mut(id) {
            Some(a) => {
                if a.calls.iter().any(|(n, _)| *n == attempt) {
                    self.duplicates += 1;
                }
                a.calls.push((attempt, reply));
                if at_us < a.first_us {
                    a.first_us = at_us;
                }
                false
            }
            None => {
                self.by_id.insert(
                    id.to_string(),
                    Arrivals {
                        first_us: at_us,
                        calls: vec![(attempt, reply)],
                    },
                );
                true
            }
        }
    }

    /// Distinct delivery ids seen.
    pub fn distinct(&self) -> usize {
        self.by_id.len()
    }

    pub fn first_arrival_us(&self, id: &str) -> Option<i64> {
        self.by_id.get(id).map(|a| a.first_us)
    }
}

struct Shared {
    plan: FaultPlan,
    tally: Mutex<Tally>,
    distinct: AtomicU64,
    calls: AtomicU64,
}

/// A running receiver. Stops when dropped.
pub struct Receiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    task: tokio::task::JoinHandle<()>,
}

/// Wall-clock now in microseconds since the Unix epoch.
pub fn now_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

impl Receiver {
    /// Binds `127.0.0.1:0` and starts answering.
    pub async fn start(plan: FaultPlan) -> std::io::Result<Receiver> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            plan,
            tally: Mutex::new(Tally::default()),
            distinct: AtomicU64::new(0),
            calls: AtomicU64::new(0),
        });
        let accept = shared.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                let shared = accept.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let shared = shared.clone();
                        async move { handle(&shared, req).await }
                    });
                    // An error here is usually a `Drop` reply closing the connection on
                    // purpose, or the caller giving up on a `Late` one.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .keep_alive(true)
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Ok(Receiver { addr, shared, task })
    }

    /// The URL jobs should call.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Distinct delivery ids seen so far.
    pub fn distinct(&self) -> u64 {
        self.shared.distinct.load(Ordering::Relaxed)
    }

    /// Calls seen so far.
    pub fn calls(&self) -> u64 {
        self.shared.calls.load(Ordering::Relaxed)
    }

    /// A copy of everything recorded so far.
    pub fn tally(&self) -> Tally {
        self.shared.tally.lock().expect("tally lock").clone()
    }

    /// Forgets everything recorded so far (between phases of one scenario).
    pub fn reset(&self) {
        *self.shared.tally.lock().expect("tally lock") = Tally::default();
        self.shared.distinct.store(0, Ordering::Relaxed);
        self.shared.calls.store(0, Ordering::Relaxed);
    }
}

impl Drop for Receiver {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The error that makes hyper close the connection without answering.
#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped on purpose")
    }
}

impl std::error::Error for Dropped {}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Result<Response<Full<Bytes>>, Dropped> {
    let at = now_us();
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let id = header(DELIVERY_ID_HEADER);
    let attempt: u32 = header(ATTEMPT_HEADER)
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or(0);
    let reply = match &id {
        Some(id) => shared.plan.reply(id, attempt),
        None => Reply::Ok,
    };
    let first = shared
        .tally
        .lock()
        .expect("tally lock")
        .record(id.as_deref(), attempt, at, reply);
    shared.calls.fetch_add(1, Ordering::Relaxed);
    if first {
        shared.distinct.fetch_add(1, Ordering::Relaxed);
    }
    // Read the request to its end so the connection can be reused.
    let _ = req.into_body().collect().await;
    let respond = |status: StatusCode| -> Result<Response<Full<Bytes>>, Dropped> {
        let mut r = Response::new(Full::new(Bytes::from_static(b"ok")));
        *r.status_mut() = status;
        Ok(r)
    };
    match reply {
        Reply::Ok => respond(StatusCode::OK),
        Reply::Error => respond(StatusCode::INTERNAL_SERVER_ERROR),
        Reply::Late => {
            tokio::time::sleep(shared.plan.late_by).await;
            respond(StatusCode::OK)
        }
        Reply::Drop => Err(Dropped),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn first_arrival_and_duplicates() {
        let mut t = Tally::default();
        assert!(t.record(Some("a"), 1, 1_000, Reply::Ok));
        assert!(t.record(Some("b"), 1, 1_500, Reply::Ok));
        // The same attempt again: a duplicate, not a new id, first arrival unchanged.
        assert!(!t.record(Some("a"), 1, 2_000, Reply::Ok));
        // A later attempt of the same job is a retry, not a duplicate.
        assert!(!t.record(Some("b"), 2, 3_000, Reply::Ok));
        // A call without an id is counted but belongs to nobody.
        assert!(!t.record(None, 0, 4_000, Reply::Ok));
        assert_eq!(t.calls, 5);
        assert_eq!(t.distinct(), 2);
        assert_eq!(t.duplicates, 1);
        assert_eq!(t.without_id, 1);
        assert_eq!(t.first_arrival_us("a"), Some(1_000));
        assert_eq!(t.first_arrival_us("b"), Some(1_500));
        assert_eq!(t.first_arrival_us("c"), None);
        assert_eq!(t.by_id["a"].calls, vec![(1, Reply::Ok), (1, Reply::Ok)]);
        assert_eq!(t.by_id["b"].calls, vec![(1, Reply::Ok), (2, Reply::Ok)]);
        assert_eq!(t.replies[&Reply::Ok], 5);
    }

    #[test]
    fn first_arrival_is_the_earliest_even_if_recorded_late() {
        // Two calls racing for the lock can be recorded out of order.
        let mut t = Tally::default();
        t.record(Some("a"), 1, 5_000, Reply::Ok);
        t.record(Some("a"), 1, 4_000, Reply::Ok);
        assert_eq!(t.first_arrival_us("a"), Some(4_000));
        assert_eq!(t.duplicates, 1);
    }

    #[test]
    fn plan_is_deterministic_and_honours_fractions() {
        let plan = FaultPlan {
            seed: 42,
            error: 0.2,
            late: 0.1,
            drop: 0.1,
            late_by: Duration::from_millis(1),
        };
        let mut counts: HashMap<Reply, u32> = HashMap::new();
        let n = 20_000;
        for i in 0..n {
            let id = format!("job-{i}");
            let r = plan.reply(&id, 1);
            assert_eq!(r, plan.reply(&id, 1), "same question, same answer");
            *counts.entry(r).or_default() += 1;
        }
        let frac = |r| f64::from(counts.get(&r).copied().unwrap_or(0)) / f64::from(n);
        assert!((frac(Reply::Error) - 0.2).abs() < 0.02, "{counts:?}");
        assert!((frac(Reply::Late) - 0.1).abs() < 0.015, "{counts:?}");
        assert!((frac(Reply::Drop) - 0.1).abs() < 0.015, "{counts:?}");
        assert!((frac(Reply::Ok) - 0.6).abs() < 0.02, "{counts:?}");
        // Attempts of one job are decided independently.
        let differing = (0..1000)
            .filter(|i| {
                let id = format!("job-{i}");
                plan.reply(&id, 1) != plan.reply(&id, 2)
            })
            .count();
        assert!(differing > 300, "{differing}");
        // Another seed is another plan.
        let other = FaultPlan { seed: 43, ..plan };
        assert!((0..1000).any(|i| {
            let id = format!("job-{i}");
            plan.reply(&id, 1) != other.reply(&id, 1)
        }));
    }

    #[test]
    fn healthy_plan_and_extremes() {
        let ok = FaultPlan::healthy();
        assert!((0..1000).all(|i| ok.reply(&i.to_string(), 1) == Reply::Ok));
        let all_err = FaultPlan {
            error: 1.0,
            ..FaultPlan::healthy()
        };
        assert!((0..1000).all(|i| all_err.reply(&i.to_string(), 3) == Reply::Error));
        assert_eq!(all_err.expected("x", 4), (false, 4));
        assert_eq!(ok.expected("x", 4), (true, 1));
    }

    #[test]
    fn expected_outcome_follows_the_plan() {
        let plan = FaultPlan {
            seed: 7,
            error: 0.3,
            late: 0.1,
            drop: 0.1,
            late_by: Duration::from_millis(1),
        };
        for i in 0..500 {
            let id = format!("j{i}");
            let (ok, n) = plan.expected(&id, 3);
            // Every attempt before the last is a failure; the last is Ok iff succeeded.
            for k in 1..n {
                assert_ne!(plan.reply(&id, k), Reply::Ok);
            }
            assert_eq!(plan.reply(&id, n) == Reply::Ok, ok);
            if !ok {
                assert_eq!(n, 3);
            }
        }
    }

    #[tokio::test]
    async fn receiver_counts_over_http() {
        let plan = FaultPlan {
            seed: 1,
            error: 0.5,
            late: 0.0,
            drop: 0.25,
            late_by: Duration::ZERO,
        };
        let rx = Receiver::start(plan).await.unwrap();
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let mut seen = HashMap::new();
        for i in 0..40u32 {
            let id = format!("id-{}", i % 20);
            let attempt = 1 + i / 20;
            let res = http
                .post(rx.url())
                .header(DELIVERY_ID_HEADER, &id)
                .header(ATTEMPT_HEADER, attempt.to_string())
                .body("x")
                .send()
                .await;
            let got = match res {
                Ok(r) if r.status() == 200 => Reply::Ok,
                Ok(r) if r.status() == 500 => Reply::Error,
                Ok(r) => panic!("unexpected status {}", r.status()),
                Err(_) => Reply::Drop,
            };
            assert_eq!(got, plan.reply(&id, attempt), "{id} attempt {attempt}");
            *seen.entry(got).or_insert(0u64) += 1;
        }
        // A duplicate of attempt 1 of id-0.
        let _ = http
            .post(rx.url())
            .header(DELIVERY_ID_HEADER, "id-0")
            .header(ATTEMPT_HEADER, "1")
            .send()
            .await;
        let t = rx.tally();
        assert_eq!(rx.calls(), 41);
        assert_eq!(rx.distinct(), 20);
        assert_eq!(t.calls, 41);
        assert_eq!(t.duplicates, 1);
        assert_eq!(t.by_id["id-3"].calls.len(), 2);
        for (reply, n) in seen {
            let extra = u64::from(reply == plan.reply("id-0", 1));
            assert_eq!(t.replies[&reply], n + extra, "{reply:?}");
        }
        rx.reset();
        assert_eq!((rx.calls(), rx.distinct(), rx.tally().calls), (0, 0, 0));
    }
}
