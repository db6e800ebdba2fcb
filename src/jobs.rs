//! The job service: the one entry point through which every surface (native API, gorooster,
//! later the others) creates, reads and changes jobs. It owns the rules that do not depend on
//! a request shape — what may change in which state, compare-and-set against racing workers,
//! waking the dispatcher — so that no surface needs its own path to the store.

use std::sync::Arc;

use uuid::Uuid;

use crate::clock::Clock;
use crate::domain::{Attempt, Invalid, Job, JobChange, JobFilter, JobState, Millis, NewJob};
use crate::engine::Waker;
use crate::store::{Inserted, Store, StoreError};

#[derive(Debug, thiserror::Error)]
pub enum JobError {
    #[error("job not found")]
    NotFound,
    #[error("{0}")]
    Invalid(#[from] Invalid),
    #[error("job is {state:?}: {message}")]
    Conflict { state: JobState, message: String },
    #[error("key {key:?} is already used by job {existing} with different content")]
    KeyTaken { key: String, existing: Uuid },
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Limits that apply to every job whatever the surface.
#[derive(Debug, Clone)]
pub struct Limits {
    pub max_body_bytes: usize,
    pub default_timeout_ms: i64,
    pub max_timeout_ms: i64,
    /// A requested time this far in the past is still accepted (and fires at once), to absorb
    /// clock skew between client and server. Anything older is an error.
    pub past_tolerance_ms: i64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 1024 * 1024,
            default_timeout_ms: 30_000,
            max_timeout_ms: 15 * 60_000,
            past_tolerance_ms: 1_000,
        }
    }
}

pub const MAX_FUTURE_MS: i64 = 10 * 366 * 24 * 3600 * 1000;

/// The result of a create: the job, and whether it already existed (an idempotent repeat).
#[derive(Debug)]
pub struct Created {
    pub job: Job,
    pub existed: bool,
}

#[derive(Clone)]
pub struct JobService {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    waker: Waker,
    limits: Limits,
}

pub fn validate_namespace(ns: &str, field: &str) -> Result<(), Invalid> {
    if ns.is_empty() || ns.len() > 128 || ns.chars().any(char::is_control) {
        return Err(Invalid::new(
            field,
            "must be 1 to 128 characters without control characters",
        ));
    }
    Ok(())
}

pub fn validate_key(key: &str, field: &str) -> Result<(), Invalid> {
    if key.is_empty() || key.len() > 256 || key.chars().any(char::is_control) {
        return Err(Invalid::new(
            field,
            "must be 1 to 256 characters without control characters",
        ));
    }
    Ok(())
}

impl JobService {
    pub fn new(store: Arc<dyn Store>, clock: Arc<dyn Clock>, waker: Waker, limits: Limits) -> Self {
        JobService {
            store,
            clock,
            waker,
            limits,
        }
    }

    pub fn now(&self) -> Millis {
        self.clock.now_ms()
    }

    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Checks a requested delivery time against now: not (meaningfully) in the past, not
    /// absurdly far ahead.
    pub fn check_deliver_at(&self, at: Millis, field: &str) -> Result<Millis, Invalid> {
        let now = self.now();
        if at < now - self.limits.past_tolerance_ms {
            return Err(Invalid::new(field, "is in the past"));
        }
        if at > now + MAX_FUTURE_MS {
            return Err(Invalid::new(field, "is more than 10 years ahead"));
        }
        Ok(at.max(now))
    }

    pub fn check_timeout(&self, ms: i64, field: &str) -> Result<i64, Invalid> {
        if ms <= 0 || ms > self.limits.max_timeout_ms {
            return Err(Invalid::new(
                field,
                format!(
                    "must be more than 0 and at most {}",
                    crate::duration::format_millis(self.limits.max_timeout_ms)
                ),
            ));
        }
        Ok(ms)
    }

    /// Creates a job; with a key, a repeat of the same request returns the existing job.
    /// `free_finished_key` lets a finished job's key be taken by the new one.
    pub async fn create(&self, job: NewJob, free_finished_key: bool) -> Result<Created, JobError> {
        let key = job.key.clone();
        match self
            .store
            .insert_job(&job, self.now(), free_finished_key)
            .await?
        {
            Inserted::Created(job) => {
                self.waker.wake_for(job.deliver_at);
                Ok(Created {
                    job,
                    existed: false,
                })
            }
            Inserted::Existing(job) => Ok(Created { job, existed: true }),
            Inserted::KeyTaken(existing) => Err(JobError::KeyTaken {
                key: key.unwrap_or_default(),
                existing: existing.id,
            }),
        }
    }

    pub async fn get(&self, namespace: &str, id: Uuid) -> Result<Job, JobError> {
        self.store
            .get_job(namespace, id)
            .await?
            .ok_or(JobError::NotFound)
    }

    pub async fn get_by_key(&self, namespace: &str, key: &str) -> Result<Job, JobError> {
        self.store
            .get_job_by_key(namespace, key)
            .await?
            .ok_or(JobError::NotFound)
    }

    pub async fn list(&self, filter: &JobFilter) -> Result<Vec<Job>, JobError> {
        Ok(self.store.list_jobs(filter).await?)
    }

    pub async fn attempts(
        &self,
        namespace: &str,
        id: Uuid,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Attempt>, JobError> {
        self.get(namespace, id).await?;
        Ok(self.store.list_attempts(id, after, limit).await?)
    }

    /// Applies `f` to a job that must be in `from`, and saves it with compare-and-set; if a
    /// worker or another request got there first, reads again and re-checks. This is what
    /// makes "change while it waits" safe against firing: the claim and the change cannot
    /// both succeed on the same version.
    async fn transition(
        &self,
        namespace: &str,
        id: Uuid,
        allowed: &[JobState],
        what: &str,
        f: impl Fn(&mut Job, Millis),
    ) -> Result<Job, JobError> {
        for _ in 0..16 {
            let mut job = self.get(namespace, id).await?;
            if !allowed.contains(&job.state) {
                return Err(JobError::Conflict {
                    state: job.state,
                    message: match job.state {
                        JobState::InFlight => {
                            format!("cannot {what}: the job is being delivered right now")
                        }
                        s => format!("cannot {what} a job that is {}", s.as_str()),
                    },
                });
            }
            let from = job.state;
            let now = self.now();
            f(&mut job, now);
            if let Some(saved) = self.store.save_job(&job, from, now).await? {
                if let Some(due) = saved.next_attempt_at {
                    self.waker.wake_for(due);
                }
                return Ok(saved);
            }
        }
        Err(JobError::Conflict {
            state: JobState::Scheduled,
            message: format!("cannot {what}: the job keeps changing; try again"),
        })
    }

    pub async fn change(
        &self,
        namespace: &str,
        id: Uuid,
        change: JobChange,
    ) -> Result<Job, JobError> {
        self.transition(namespace, id, &[JobState::Scheduled], "change", |job, _| {
            change.apply(job)
        })
        .await
    }

    /// Cancels a waiting job. Cancelling a cancelled job is a no-op.
    pub async fn cancel(&self, namespace: &str, id: Uuid) -> Result<Job, JobError> {
        let job = self.get(namespace, id).await?;
        if job.state == JobState::Cancelled {
            return Ok(job);
        }
        self.transition(namespace, id, &[JobState::Scheduled], "cancel", |job, _| {
            job.state = JobState::Cancelled;
            job.next_attempt_at = None;
        })
        .await
    }

    /// Runs a finished job again now, with a fresh attempt budget.
    pub async fn rerun(&self, namespace: &str, id: Uuid) -> Result<Job, JobError> {
        let finished = [JobState::Succeeded, JobState::Failed, JobState::Cancelled];
        self.transition(namespace, id, &finished, "retry", |job, now| {
            job.state = JobState::Scheduled;
            job.run_base = job.attempts;
            job.next_attempt_at = Some(now);
        })
        .await
    }
}
