//! The storage boundary. Everything Herald persists goes through [`Store`]; SQL lives only
//! below this module. Two implementations share one body of SQL ([`sql`]): embedded SQLite
//! (the default, one node) and PostgreSQL (several stateless nodes on one database). Both
//! must pass the same test suite.

mod batch;
mod postgres;
mod sql;
mod sqlite;
pub mod webhooks;

use std::sync::Arc;

use async_trait::async_trait;
use uuid::Uuid;

use crate::domain::{Attempt, AttemptRecord, Job, JobFilter, JobState, Millis, NewJob};
use crate::webhooks::model::NewMessage;

pub use batch::GroupCommit;
pub use postgres::PgStore;
pub use sqlite::SqliteStore;
pub use webhooks::{Published, SubscriptionInsert, WebhookStore};

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database unavailable: {0}")]
    Unavailable(#[source] sqlx::Error),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("stored row is corrupt: {0}")]
    Corrupt(String),
    #[error("cannot open data directory {path}: {source}")]
    DataDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::Tls(_)
            | sqlx::Error::WorkerCrashed => StoreError::Unavailable(e),
            other => StoreError::Database(other),
        }
    }
}

/// Every dispatcher looks at the database at least this often, so a job due further ahead
/// than this needs no cross-node wake-up when it is created: the next routine look finds it
/// in time. Notifying only for work due sooner keeps PostgreSQL's notification lock (taken
/// at commit) off the path of bulk, far-future inserts.
pub const WAKE_HORIZON_MS: i64 = 30_000;

/// One job to insert, with the time of the request and whether a finished job's key may be
/// taken over.
#[derive(Debug, Clone)]
pub struct NewJobInsert {
    pub job: NewJob,
    pub now: Millis,
    pub free_finished_key: bool,
}

/// A job taken by a claim, and when its call is due: the worker must not call before then.
#[derive(Debug, Clone)]
pub struct Claimed {
    pub job: Job,
    pub fire_at: Millis,
}

/// A claim of due work: see [`Store::claim_due`].
#[derive(Debug, Clone)]
pub struct ClaimRequest {
    pub now: Millis,
    pub due_by: Millis,
    pub limit: u32,
    pub owner: String,
    pub lease_grace_ms: i64,
}

impl ClaimRequest {
    pub fn new(now: Millis, due_by: Millis, limit: u32, owner: &str, lease_grace_ms: i64) -> Self {
        ClaimRequest {
            now,
            due_by,
            limit,
            owner: owner.to_string(),
            lease_grace_ms,
        }
    }
}

/// Everything one [`Store::write_batch`] transaction does.
#[derive(Debug, Default, Clone, Copy)]
pub struct Writes<'a> {
    pub inserts: &'a [NewJobInsert],
    pub records: &'a [(AttemptRecord, i64)],
    pub publishes: &'a [(NewMessage, Millis)],
    pub claims: &'a [ClaimRequest],
}

/// What one [`Store::write_batch`] did, item by item in the order given.
#[derive(Debug, Default)]
pub struct Written {
    pub inserted: Vec<Inserted>,
    pub recorded: Vec<bool>,
    pub published: Vec<Published>,
    pub claimed: Vec<Vec<Claimed>>,
}

/// Result of inserting a job.
#[derive(Debug)]
pub enum Inserted {
    Created(Job),
    /// A job with this key exists and was created by the same request: the repeat is a no-op.
    Existing(Job),
    /// A job with this key exists with different content.
    KeyTaken(Job),
}

/// Which database to use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Database {
    /// A SQLite file inside this directory.
    Sqlite {
        data_dir: std::path::PathBuf,
    },
    Postgres {
        url: String,
        max_connections: u32,
    },
}

/// Everything Herald persists. Webhook storage (topics, subscriptions, messages) is its own
/// trait, [`WebhookStore`], implemented by the same stores.
#[async_trait]
pub trait Store: WebhookStore + Send + Sync + 'static {
    fn backend(&self) -> &'static str;

    async fn ping(&self) -> Result<(), StoreError>;

    /// Inserts jobs, records attempts, publishes messages and claims due work, all in one
    /// transaction: one commit for the lot (group commit). Durable if anything is inserted
    /// or published, relaxed otherwise (see `docs/ARCHITECTURE.md`). Claims run last, so
    /// they see the jobs inserted in the same transaction.
    ///
    /// With a key, an existing job holding it is returned instead; when `free_finished_key`
    /// is set and that job has finished, the key moves to the new job (the old one keeps its
    /// history, without the key) — gorooster reuses keys this way.
    ///
    /// Each record moves its job to its next state; false if the lease was lost meanwhile
    /// (the attempt is kept as history; the job is not touched, because its new owner
    /// decides). The `i64` is the version the claim saw.
    ///
    /// Each publish is [`WebhookStore::publish`]; each claim is [`Store::claim_due`].
    async fn write_batch(&self, writes: Writes<'_>) -> Result<Written, StoreError>;

    async fn insert_jobs(&self, batch: &[NewJobInsert]) -> Result<Vec<Inserted>, StoreError> {
        let writes = Writes {
            inserts: batch,
            ..Writes::default()
        };
        Ok(self.write_batch(writes).await?.inserted)
    }

    async fn insert_job(
        &self,
        job: &NewJob,
        now: Millis,
        free_finished_key: bool,
    ) -> Result<Inserted, StoreError> {
        let item = NewJobInsert {
            job: job.clone(),
            now,
            free_finished_key,
        };
        let mut out = self.insert_jobs(std::slice::from_ref(&item)).await?;
        out.pop()
            .ok_or_else(|| StoreError::Corrupt("insert returned nothing".into()))
    }

    async fn get_job(&self, namespace: &str, id: Uuid) -> Result<Option<Job>, StoreError>;

    async fn get_job_by_key(&self, namespace: &str, key: &str) -> Result<Option<Job>, StoreError>;

    /// Jobs in id (creation) order after the cursor.
    async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<Job>, StoreError>;

    /// Writes a job's mutable fields back if nobody changed it since it was read: its
    /// version is still `job.version` and its state still `expected_state`. Returns the
    /// stored job, or `None` if it lost the race. This compare-and-set is what makes a change
    /// that races with firing safe.
    async fn save_job(
        &self,
        job: &Job,
        expected_state: JobState,
        now: Millis,
    ) -> Result<Option<Job>, StoreError>;

    /// Claims up to `limit` jobs for `owner`: scheduled jobs due by `due_by` (which may be a
    /// little after `now`: claim-ahead) and in-flight jobs whose lease has expired by `now`.
    /// Each gets a lease until `due_by` plus its timeout plus `lease_grace_ms`. The answer is
    /// in firing order.
    async fn claim_due(
        &self,
        now: Millis,
        due_by: Millis,
        limit: u32,
        owner: &str,
        lease_grace_ms: i64,
    ) -> Result<Vec<Claimed>, StoreError> {
        let claim = ClaimRequest::new(now, due_by, limit, owner, lease_grace_ms);
        let writes = Writes {
            claims: std::slice::from_ref(&claim),
            ..Writes::default()
        };
        let mut w = self.write_batch(writes).await?;
        w.claimed
            .pop()
            .ok_or_else(|| StoreError::Corrupt("claim returned nothing".into()))
    }

    async fn record_attempts(
        &self,
        batch: &[(AttemptRecord, i64)],
    ) -> Result<Vec<bool>, StoreError> {
        let writes = Writes {
            records: batch,
            ..Writes::default()
        };
        Ok(self.write_batch(writes).await?.recorded)
    }

    async fn record_attempt(
        &self,
        record: &AttemptRecord,
        claimed_version: i64,
    ) -> Result<bool, StoreError> {
        let item = (record.clone(), claimed_version);
        let out = self.record_attempts(std::slice::from_ref(&item)).await?;
        Ok(out.first().copied().unwrap_or(false))
    }

    /// Gives back every lease `owner` holds (graceful shutdown): those jobs are due again
    /// now, or when they were due if a claim took them ahead of time.
    async fn release_leases(&self, owner: &str, now: Millis) -> Result<u64, StoreError>;

    /// The earliest time anything becomes due (a scheduled attempt or a lease expiry).
    async fn next_due_at(&self) -> Result<Option<Millis>, StoreError>;

    async fn list_attempts(
        &self,
        job_id: Uuid,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Attempt>, StoreError>;

    /// A stream of "something changed, look again" signals from other nodes sharing the
    /// database. `None` where the store has no other writers (SQLite).
    async fn subscribe_changes(
        &self,
    ) -> Result<Option<tokio::sync::mpsc::Receiver<()>>, StoreError>;
}

/// Opens (and migrates) the configured database, with group commit in front of it.
pub async fn connect(db: &Database) -> Result<Arc<dyn Store>, StoreError> {
    let (inner, writers): (Arc<dyn Store>, usize) = match db {
        Database::Sqlite { data_dir } => (Arc::new(SqliteStore::open(data_dir).await?), 1),
        Database::Postgres {
            url,
            max_connections,
        } => (
            Arc::new(PgStore::connect(url, *max_connections).await?),
            (*max_connections as usize / 4).clamp(1, 4),
        ),
    };
    Ok(Arc::new(GroupCommit::new(inner, writers)))
}

/// Runs migrations only (`herald migrate`).
pub async fn migrate(db: &Database) -> Result<(), StoreError> {
    match db {
        Database::Sqlite { data_dir } => SqliteStore::open(data_dir).await.map(|_| ()),
        Database::Postgres { url, .. } => PgStore::connect(url, 2).await.map(|_| ()),
    }
}
