//! The delivery engine: decides what is due and makes the calls.
//!
//! The database is the source of truth for what is due. The dispatcher claims due jobs in
//! batches under a lease, hands each to a bounded pool of workers, then sleeps until the
//! earliest next due time — or until woken by a change (an insert, a reschedule, a finished
//! attempt, or a `NOTIFY` from another node). Workers call outside any transaction and record
//! the attempt and the job's next state together. A node that dies mid-call loses nothing:
//! its lease expires and any node claims the job again (at-least-once).

pub mod http;

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rand::Rng;
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::clock::Clock;
use crate::domain::{Attempt, AttemptOutcome, AttemptRecord, Job, JobState, Millis};
use crate::store::{Claimed, Store};
use crate::webhooks::signing;
use http::{CallResult, HttpChannel};

/// Longest the dispatcher sleeps without looking at the database. Local changes wake it
/// directly and other nodes' changes through notifications; creates due beyond this horizon
/// send none, which is correct only because of this bound.
const IDLE_RECHECK_MS: i64 = crate::store::WAKE_HORIZON_MS;

#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Calls in flight at once on this node.
    pub workers: usize,
    /// Most jobs claimed per query.
    pub claim_batch: u32,
    /// How long before its due time a job may be claimed. The claim's database round trip
    /// then happens before the due time instead of after it, and the worker waits out the
    /// rest in memory: fire-time precision no longer depends on how busy the database is.
    /// A change to a job this close to firing is refused as in flight.
    pub claim_ahead_ms: i64,
    /// Added to a job's timeout to form its lease: how long after a node dies its calls are
    /// made again elsewhere.
    pub lease_grace_ms: i64,
    /// Response bodies are kept up to this many bytes.
    pub response_body_limit: usize,
    /// How long shutdown waits for calls in flight before giving their leases back.
    pub shutdown_grace: Duration,
    /// Upper bound on honouring a receiver's `Retry-After`.
    pub max_retry_after_ms: i64,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            workers: 64,
            claim_batch: 128,
            claim_ahead_ms: 20,
            lease_grace_ms: 30_000,
            response_body_limit: 64 * 1024,
            shutdown_grace: Duration::from_secs(30),
            max_retry_after_ms: 3_600_000,
        }
    }
}

/// A handle that makes the dispatcher look at the database again. Cheap to clone; every
/// writer of jobs holds one.
#[derive(Clone)]
pub struct Waker(Arc<WakerState>);

struct WakerState {
    notify: Notify,
    /// When the dispatcher will next look on its own, or `i64::MIN` while it is not asleep
    /// (then every wake-up is kept for it).
    next_look: AtomicI64,
    /// The engine's claim-ahead window.
    ahead_ms: i64,
}

impl Default for Waker {
    fn default() -> Self {
        Waker::new(EngineConfig::default().claim_ahead_ms)
    }
}

impl Waker {
    /// A waker for an engine that claims `claim_ahead_ms` ahead of due times.
    pub fn new(claim_ahead_ms: i64) -> Self {
        Waker(Arc::new(WakerState {
            notify: Notify::new(),
            next_look: AtomicI64::new(i64::MIN),
            ahead_ms: claim_ahead_ms.max(0),
        }))
    }

    /// Look again now, whatever changed.
    pub fn wake(&self) {
        self.0.notify.notify_one();
    }

    /// Work became due at `due` (claimable from `due - ahead`). The dispatcher is woken only
    /// if its next look would be later than that: a burst of creates due next month must not
    /// make it query the database once per commit.
    pub fn wake_for(&self, due: Millis) {
        if due - self.0.ahead_ms < self.0.next_look.load(Ordering::Acquire) {
            self.wake();
        }
    }

    fn set_next_look(&self, at: Millis) {
        self.0.next_look.store(at, Ordering::Release);
    }
}

pub struct Engine {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    waker: Waker,
    config: EngineConfig,
    node_id: String,
    channel: HttpChannel,
}

impl Engine {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        waker: Waker,
        config: EngineConfig,
    ) -> Result<Arc<Self>, reqwest::Error> {
        Ok(Arc::new(Engine {
            channel: HttpChannel::new(config.response_body_limit)?,
            node_id: format!("node-{}", Uuid::now_v7()),
            store,
            clock,
            waker,
            config,
        }))
    }

    /// Runs the dispatcher until `shutdown` fires, then drains: calls in flight get
    /// `shutdown_grace` to finish, and the leases of any still running are given back.
    pub async fn run(self: Arc<Self>, shutdown: CancellationToken) {
        let permits = Arc::new(Semaphore::new(self.config.workers.max(1)));
        let mut tasks: JoinSet<()> = JoinSet::new();
        let _listener = self.forward_remote_changes().await;
        let mut failure_backoff = Duration::from_millis(50);
        tracing::info!(node = %self.node_id, workers = self.config.workers, "engine started");
        loop {
            // Awake: wake-ups from now on are kept, so none is lost between reading the next
            // due time and going to sleep.
            self.waker.set_next_look(i64::MIN);
            while tasks.try_join_next().is_some() {}
            if shutdown.is_cancelled() {
                break;
            }
            // Nearly every worker busy: let a few more calls finish (for at most a
            // millisecond) so that the next claim takes a batch, instead of one claim
            // transaction per finished call.
            let low = (self.config.workers / 8).max(1);
            if permits.available_permits() < low {
                let deadline = tokio::time::Instant::now() + Duration::from_millis(1);
                let mut stop = false;
                loop {
                    let free = permits.available_permits();
                    if free >= low {
                        break;
                    }
                    tokio::select! {
                        _ = tasks.join_next(), if !tasks.is_empty() => {}
                        _ = tokio::time::sleep_until(deadline), if free > 0 => break,
                        _ = shutdown.cancelled() => {
                            stop = true;
                            break;
                        }
                    }
                }
                if stop {
                    break;
                }
            }
            let free = permits.available_permits();
            if free == 0 {
                continue;
            }
            let want = (free as u32).min(self.config.claim_batch);
            let now = self.clock.now_ms();
            let ahead = self.config.claim_ahead_ms.max(0);
            let claimed = match self
                .store
                .claim_due(
                    now,
                    now + ahead,
                    want,
                    &self.node_id,
                    self.config.lease_grace_ms,
                )
                .await
            {
                Ok(jobs) => jobs,
                Err(e) => {
                    tracing::warn!(error = %e, "claiming due jobs failed; will retry");
                    tokio::select! {
                        _ = tokio::time::sleep(failure_backoff) => {}
                        _ = shutdown.cancelled() => break,
                    }
                    failure_backoff = (failure_backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            failure_backoff = Duration::from_millis(50);
            let got = claimed.len() as u32;
            for claim in claimed {
                let permit = permits
                    .clone()
                    .try_acquire_owned()
                    .expect("claims never exceed free permits");
                let engine = self.clone();
                tasks.spawn(async move { engine.deliver(claim, permit).await });
            }
            if got == want {
                continue; // more may be due right now
            }
            let sleep_ms = match self.store.next_due_at().await {
                // At least a millisecond: what is due within the window now is either just
                // claimed or a lease not yet expired, which a claim cannot take before then.
                Ok(Some(due)) => (due - self.clock.now_ms() - ahead).clamp(1, IDLE_RECHECK_MS),
                Ok(None) => IDLE_RECHECK_MS,
                Err(e) => {
                    tracing::warn!(error = %e, "reading next due time failed");
                    1_000
                }
            };
            self.waker.set_next_look(self.clock.now_ms() + sleep_ms);
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_millis(sleep_ms as u64)) => {}
                _ = self.waker.0.notify.notified() => {}
                _ = shutdown.cancelled() => break,
                Some(_) = tasks.join_next(), if !tasks.is_empty() => {}
            }
        }
        self.drain(tasks).await;
    }

    async fn drain(&self, mut tasks: JoinSet<()>) {
        let in_flight = tasks.len();
        if in_flight > 0 {
            tracing::info!(in_flight, "waiting for calls in flight");
        }
        let finished = tokio::time::timeout(self.config.shutdown_grace, async {
            while tasks.join_next().await.is_some() {}
        })
        .await;
        if finished.is_err() {
            tasks.abort_all();
            while tasks.join_next().await.is_some() {}
        }
        match self
            .store
            .release_leases(&self.node_id, self.clock.now_ms())
            .await
        {
            Ok(0) => {}
            Ok(n) => tracing::info!(released = n, "gave back leases of unfinished calls"),
            Err(e) => tracing::warn!(error = %e, "could not release leases; they will expire"),
        }
        tracing::info!("engine stopped");
    }

    /// Other nodes' changes arrive as notifications; each one wakes this dispatcher.
    async fn forward_remote_changes(&self) -> Option<tokio::task::JoinHandle<()>> {
        match self.store.subscribe_changes().await {
            Ok(Some(mut rx)) => {
                let waker = self.waker.clone();
                Some(tokio::spawn(async move {
                    while rx.recv().await.is_some() {
                        waker.wake();
                    }
                }))
            }
            Ok(None) => None,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for other nodes' changes");
                None
            }
        }
    }

    /// The Standard Webhooks headers of a delivery, signed with the subscription's secrets as
    /// they are now (so a rotation applies to retries too). `Err` carries the reason the call
    /// must not be made, and whether that is final (the subscription is gone).
    async fn signature_headers(
        &self,
        job: &Job,
        now: Millis,
    ) -> Result<Vec<(&'static str, String)>, (String, bool)> {
        let Some(origin) = &job.origin else {
            return Ok(vec![]);
        };
        let secrets = self
            .store
            .signing_secrets(&origin.subscription_id)
            .await
            .map_err(|e| (format!("could not load the signing secrets: {e}"), false))?
            .ok_or_else(|| ("the subscription no longer exists".to_string(), true))?;
        let body = job.target.body.to_bytes().unwrap_or_default();
        Ok(signing::headers(
            &secrets,
            &origin.message_id.to_string(),
            now,
            &body,
        ))
    }

    async fn deliver(self: Arc<Self>, claim: Claimed, _permit: OwnedSemaphorePermit) {
        let Claimed { job, fire_at } = claim;
        // Claimed ahead of time: the call is made at its due time, never before.
        let wait_us = fire_at * 1_000 - self.clock.now_us();
        if wait_us > 0 {
            tokio::time::sleep(Duration::from_micros(wait_us as u64)).await;
        }
        let started_at = self.clock.now_ms();
        let timer = std::time::Instant::now();
        let mut subscription_gone = false;
        let result = match self.signature_headers(&job, started_at).await {
            Ok(extra) => self.channel.call_with(&job, started_at, &extra).await,
            Err((error, gone)) => {
                subscription_gone = gone;
                CallResult {
                    error: Some(error),
                    ..CallResult::default()
                }
            }
        };
        let duration_ms = timer.elapsed().as_millis() as i64;
        let finished_at = self.clock.now_ms();
        let jitter: f64 = rand::rng().random();
        let (outcome, next_state, next_attempt_at) = if subscription_gone {
            (AttemptOutcome::Failed, JobState::Cancelled, None)
        } else {
            decide(
                &job,
                &result,
                finished_at,
                jitter,
                self.config.max_retry_after_ms,
            )
        };
        let unsubscribe = job
            .origin
            .as_ref()
            .filter(|o| o.unsubscribe_on_gone && result.status == Some(410))
            .map(|o| o.subscription_id.clone());
        let record = AttemptRecord {
            attempt: Attempt {
                id: Uuid::now_v7(),
                job_id: job.id,
                number: job.attempts,
                started_at,
                duration_ms,
                request_method: job.target.method.clone(),
                request_url: job.target.url.clone(),
                request_headers: result.request_headers,
                request_body_bytes: result.request_body_bytes,
                response_status: result.status,
                response_headers: result.response_headers,
                response_body: result.body,
                response_truncated: result.truncated,
                error: result.error,
                outcome,
            },
            lease_owner: self.node_id.clone(),
            next_state,
            next_attempt_at,
            finished_at,
            unsubscribe,
        };
        // The call happened; losing its record would make it happen again. Keep trying while
        // the lease is ours, since after that the job belongs to whoever reclaims it.
        let lease_end = started_at + job.timeout_ms + self.config.lease_grace_ms;
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.store.record_attempt(&record, job.version).await {
                Ok(true) => break,
                Ok(false) => {
                    tracing::warn!(job = %job.id, "lease lost before the attempt was recorded");
                    break;
                }
                Err(e) if self.clock.now_ms() + (backoff.as_millis() as i64) < lease_end => {
                    tracing::warn!(job = %job.id, error = %e, "recording attempt failed; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(2));
                }
                Err(e) => {
                    tracing::error!(job = %job.id, error = %e, "giving up recording attempt; the lease will expire and the call be made again");
                    break;
                }
            }
        }
        if let (JobState::Scheduled, Some(due)) = (next_state, next_attempt_at) {
            self.waker.wake_for(due);
        }
    }
}

/// The verdict on an attempt: its outcome, the job's next state, and when it is due again.
pub fn decide(
    job: &Job,
    result: &CallResult,
    now: Millis,
    jitter: f64,
    max_retry_after_ms: i64,
) -> (AttemptOutcome, JobState, Option<Millis>) {
    if result.status.is_some_and(|s| job.success.matches(s)) {
        return (AttemptOutcome::Succeeded, JobState::Succeeded, None);
    }
    if let (Some(origin), Some(status)) = (&job.origin, result.status) {
        let permanent = origin
            .fail_codes
            .as_ref()
            .is_some_and(|c| c.matches(status))
            || (origin.unsubscribe_on_gone && status == 410);
        if permanent {
            return (AttemptOutcome::Failed, JobState::Failed, None);
        }
    }
    match job.retry.delay_after(job.run_attempts(), jitter) {
        Some(policy_delay) => {
            let honoured = result
                .retry_after_ms
                .map(|r| r.min(max_retry_after_ms))
                .unwrap_or(0);
            let delay = policy_delay.max(honoured);
            (
                AttemptOutcome::Retrying,
                JobState::Scheduled,
                Some(now + delay),
            )
        }
        None => (AttemptOutcome::Failed, JobState::Failed, None),
    }
}
