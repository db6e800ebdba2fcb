//! Group commit. Concurrent job inserts and attempt records are queued and written by a few
//! writer tasks, each taking everything queued (up to a cap) into one transaction: one
//! commit — one fsync — for many requests. Under light load a batch is a single item, so
//! this adds no waiting; under heavy load it is what keeps durable writes from being the
//! ceiling. Every caller still gets its own answer only after its transaction committed.

use std::sync::Arc;

use async_trait::async_trait;
use futures::future::BoxFuture;
use tokio::sync::{mpsc, oneshot, Mutex};
use uuid::Uuid;

use super::{Claimed, Inserted, NewJobInsert, Store, StoreError};
use crate::domain::{Attempt, AttemptRecord, Job, JobFilter, JobState, Millis};

const MAX_BATCH: usize = 256;
const QUEUE: usize = 4096;

struct Pending<I, O> {
    item: I,
    reply: oneshot::Sender<Result<O, StoreError>>,
}

type Runner<I, O> =
    Arc<dyn Fn(Vec<I>) -> BoxFuture<'static, Result<Vec<O>, StoreError>> + Send + Sync>;

pub struct GroupCommit {
    pub(super) inner: Arc<dyn Store>,
    inserts: mpsc::Sender<Pending<NewJobInsert, Inserted>>,
    records: mpsc::Sender<Pending<(AttemptRecord, i64), bool>>,
}

impl GroupCommit {
    /// Wraps `inner` with `writers` writer tasks per kind of write (one is right for SQLite,
    /// whose writes are serial anyway; a few let PostgreSQL commit in parallel).
    pub fn new(inner: Arc<dyn Store>, writers: usize) -> GroupCommit {
        let (itx, irx) = mpsc::channel(QUEUE);
        let (rtx, rrx) = mpsc::channel(QUEUE);
        let irx = Arc::new(Mutex::new(irx));
        let rrx = Arc::new(Mutex::new(rrx));
        let store = inner.clone();
        let insert_runner: Runner<NewJobInsert, Inserted> = Arc::new(move |items| {
            let store = store.clone();
            Box::pin(async move { store.insert_jobs(&items).await })
        });
        let store = inner.clone();
        let record_runner: Runner<(AttemptRecord, i64), bool> = Arc::new(move |items| {
            let store = store.clone();
            Box::pin(async move { store.record_attempts(&items).await })
        });
        for _ in 0..writers.max(1) {
            tokio::spawn(writer(irx.clone(), insert_runner.clone()));
            tokio::spawn(writer(rrx.clone(), record_runner.clone()));
        }
        GroupCommit {
            inner,
            inserts: itx,
            records: rtx,
        }
    }
}

async fn writer<I, O>(rx: Arc<Mutex<mpsc::Receiver<Pending<I, O>>>>, run: Runner<I, O>)
where
    I: Clone + Send + 'static,
    O: Send + 'static,
{
    loop {
        let mut batch = Vec::new();
        {
            let mut rx = rx.lock().await;
            match rx.recv().await {
                Some(p) => batch.push(p),
                None => return,
            }
            while batch.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(p) => batch.push(p),
                    Err(_) => break,
                }
            }
        }
        let items: Vec<I> = batch.iter().map(|p| p.item.clone()).collect();
        match run(items).await {
            Ok(outs) if outs.len() == batch.len() => {
                for (p, o) in batch.into_iter().zip(outs) {
                    let _ = p.reply.send(Ok(o));
                }
            }
            result => {
                // Nothing of the batch was committed. Retry each item on its own so that one
                // bad item cannot fail its neighbours and every caller gets its own error.
                if batch.len() == 1 {
                    let p = batch.pop().expect("one item");
                    let _ = p.reply.send(result.and_then(|mut v| {
                        v.pop()
                            .ok_or_else(|| StoreError::Corrupt("empty batch result".into()))
                    }));
                    continue;
                }
                for p in batch {
                    let r = run(vec![p.item.clone()]).await.and_then(|mut v| {
                        v.pop()
                            .ok_or_else(|| StoreError::Corrupt("empty batch result".into()))
                    });
                    let _ = p.reply.send(r);
                }
            }
        }
    }
}

async fn submit<I, O>(queue: &mpsc::Sender<Pending<I, O>>, item: I) -> Result<O, StoreError> {
    let (reply, rx) = oneshot::channel();
    queue
        .send(Pending { item, reply })
        .await
        .map_err(|_| StoreError::Corrupt("group-commit writer stopped".into()))?;
    rx.await
        .map_err(|_| StoreError::Corrupt("group-commit writer dropped a request".into()))?
}

#[async_trait]
impl Store for GroupCommit {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }

    async fn insert_jobs(&self, batch: &[NewJobInsert]) -> Result<Vec<Inserted>, StoreError> {
        self.inner.insert_jobs(batch).await
    }

    async fn insert_job(
        &self,
        job: &crate::domain::NewJob,
        now: Millis,
        free_finished_key: bool,
    ) -> Result<Inserted, StoreError> {
        let item = NewJobInsert {
            job: job.clone(),
            now,
            free_finished_key,
        };
        submit(&self.inserts, item).await
    }

    async fn get_job(&self, namespace: &str, id: Uuid) -> Result<Option<Job>, StoreError> {
        self.inner.get_job(namespace, id).await
    }

    async fn get_job_by_key(&self, namespace: &str, key: &str) -> Result<Option<Job>, StoreError> {
        self.inner.get_job_by_key(namespace, key).await
    }

    async fn list_jobs(&self, filter: &JobFilter) -> Result<Vec<Job>, StoreError> {
        self.inner.list_jobs(filter).await
    }

    async fn save_job(
        &self,
        job: &Job,
        expected_state: JobState,
        now: Millis,
    ) -> Result<Option<Job>, StoreError> {
        self.inner.save_job(job, expected_state, now).await
    }

    async fn claim_due(
        &self,
        now: Millis,
        due_by: Millis,
        limit: u32,
        owner: &str,
        lease_grace_ms: i64,
    ) -> Result<Vec<Claimed>, StoreError> {
        self.inner
            .claim_due(now, due_by, limit, owner, lease_grace_ms)
            .await
    }

    async fn record_attempts(
        &self,
        batch: &[(AttemptRecord, i64)],
    ) -> Result<Vec<bool>, StoreError> {
        self.inner.record_attempts(batch).await
    }

    async fn record_attempt(
        &self,
        record: &AttemptRecord,
        claimed_version: i64,
    ) -> Result<bool, StoreError> {
        submit(&self.records, (record.clone(), claimed_version)).await
    }

    async fn release_leases(&self, owner: &str, now: Millis) -> Result<u64, StoreError> {
        self.inner.release_leases(owner, now).await
    }

    async fn next_due_at(&self) -> Result<Option<Millis>, StoreError> {
        self.inner.next_due_at().await
    }

    async fn list_attempts(
        &self,
        job_id: Uuid,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Attempt>, StoreError> {
        self.inner.list_attempts(job_id, after, limit).await
    }

    async fn subscribe_changes(
        &self,
    ) -> Result<Option<tokio::sync::mpsc::Receiver<()>>, StoreError> {
        self.inner.subscribe_changes().await
    }
}
