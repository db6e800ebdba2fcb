//! Group commit. Concurrent job inserts, attempt records, publishes and the dispatcher's
//! claims are queued and written by a few writer tasks, each taking everything queued (up to
//! a cap), all kinds together, into one transaction: one commit — one fsync — for many requests. Under light load a batch is a
//! single item, so this adds no waiting; under heavy load it is what keeps durable writes
//! from being the ceiling. Every caller still gets its own answer only after its
//! transaction committed.

use std::sync::Arc;

use async_trait::async_trait;
use tokio::sync::{mpsc, oneshot, Mutex};
use uuid::Uuid;

use super::{
    ClaimRequest, Claimed, Inserted, NewJobInsert, Published, Store, StoreError, Writes, Written,
};
use crate::domain::{Attempt, AttemptRecord, Job, JobFilter, JobState, Millis};
use crate::webhooks::model::NewMessage;

const MAX_BATCH: usize = 256;
const QUEUE: usize = 4096;

type Reply<O> = oneshot::Sender<Result<O, StoreError>>;

/// One queued write and where its answer goes.
pub(super) enum Op {
    Insert(NewJobInsert, Reply<Inserted>),
    Record((AttemptRecord, i64), Reply<bool>),
    Publish((NewMessage, Millis), Reply<Published>),
    Claim(ClaimRequest, Reply<Vec<Claimed>>),
}

pub struct GroupCommit {
    pub(super) inner: Arc<dyn Store>,
    pub(super) queue: mpsc::Sender<Op>,
}

impl GroupCommit {
    /// Wraps `inner` with `writers` writer tasks (one is right for SQLite, whose writes are
    /// serial anyway; a few let PostgreSQL commit in parallel).
    pub fn new(inner: Arc<dyn Store>, writers: usize) -> GroupCommit {
        let (tx, rx) = mpsc::channel(QUEUE);
        let rx = Arc::new(Mutex::new(rx));
        for _ in 0..writers.max(1) {
            tokio::spawn(writer(rx.clone(), inner.clone()));
        }
        GroupCommit { inner, queue: tx }
    }
}

async fn writer(rx: Arc<Mutex<mpsc::Receiver<Op>>>, store: Arc<dyn Store>) {
    loop {
        let mut ops = Vec::new();
        {
            let mut rx = rx.lock().await;
            match rx.recv().await {
                Some(op) => ops.push(op),
                None => return,
            }
            while ops.len() < MAX_BATCH {
                match rx.try_recv() {
                    Ok(op) => ops.push(op),
                    Err(_) => break,
                }
            }
        }
        let (mut inserts, mut insert_replies) = (Vec::new(), Vec::new());
        let (mut records, mut record_replies) = (Vec::new(), Vec::new());
        let (mut publishes, mut publish_replies) = (Vec::new(), Vec::new());
        let (mut claims, mut claim_replies) = (Vec::new(), Vec::new());
        for op in ops {
            match op {
                Op::Insert(item, reply) => {
                    inserts.push(item);
                    insert_replies.push(reply);
                }
                Op::Record(item, reply) => {
                    records.push(item);
                    record_replies.push(reply);
                }
                Op::Publish(item, reply) => {
                    publishes.push(item);
                    publish_replies.push(reply);
                }
                Op::Claim(item, reply) => {
                    claims.push(item);
                    claim_replies.push(reply);
                }
            }
        }
        let writes = Writes {
            inserts: &inserts,
            records: &records,
            publishes: &publishes,
            claims: &claims,
        };
        let single = inserts.len() + records.len() + publishes.len() + claims.len() == 1;
        match store.write_batch(writes).await {
            Ok(w)
                if w.inserted.len() == inserts.len()
                    && w.recorded.len() == records.len()
                    && w.published.len() == publishes.len()
                    && w.claimed.len() == claims.len() =>
            {
                answer(insert_replies, w.inserted);
                answer(record_replies, w.recorded);
                answer(publish_replies, w.published);
                answer(claim_replies, w.claimed);
            }
            Err(e) if single => {
                if let Some(reply) = insert_replies.pop() {
                    let _ = reply.send(Err(e));
                } else if let Some(reply) = record_replies.pop() {
                    let _ = reply.send(Err(e));
                } else if let Some(reply) = publish_replies.pop() {
                    let _ = reply.send(Err(e));
                } else if let Some(reply) = claim_replies.pop() {
                    let _ = reply.send(Err(e));
                }
            }
            _ => {
                // Nothing of the batch was committed. Retry each item on its own so that one
                // bad item cannot fail its neighbours and every caller gets its own error.
                alone(
                    &store,
                    &inserts,
                    insert_replies,
                    |i| Writes {
                        inserts: std::slice::from_ref(i),
                        ..Writes::default()
                    },
                    |w| w.inserted,
                )
                .await;
                alone(
                    &store,
                    &records,
                    record_replies,
                    |i| Writes {
                        records: std::slice::from_ref(i),
                        ..Writes::default()
                    },
                    |w| w.recorded,
                )
                .await;
                alone(
                    &store,
                    &publishes,
                    publish_replies,
                    |i| Writes {
                        publishes: std::slice::from_ref(i),
                        ..Writes::default()
                    },
                    |w| w.published,
                )
                .await;
                alone(
                    &store,
                    &claims,
                    claim_replies,
                    |i| Writes {
                        claims: std::slice::from_ref(i),
                        ..Writes::default()
                    },
                    |w| w.claimed,
                )
                .await;
            }
        }
    }
}

/// Writes each item in a transaction of its own and answers its caller.
async fn alone<I, O>(
    store: &Arc<dyn Store>,
    items: &[I],
    replies: Vec<Reply<O>>,
    writes: fn(&I) -> Writes<'_>,
    pick: fn(Written) -> Vec<O>,
) {
    for (item, reply) in items.iter().zip(replies) {
        let r = store.write_batch(writes(item)).await;
        let _ = reply.send(r.and_then(|w| first(pick(w))));
    }
}

fn first<O>(v: Vec<O>) -> Result<O, StoreError> {
    v.into_iter().next().ok_or_else(empty)
}

fn answer<O>(replies: Vec<Reply<O>>, outcomes: Vec<O>) {
    for (reply, o) in replies.into_iter().zip(outcomes) {
        let _ = reply.send(Ok(o));
    }
}

fn empty() -> StoreError {
    StoreError::Corrupt("empty batch result".into())
}

/// Queues one write for the writers and waits for its own answer.
pub(super) async fn submit<O>(
    queue: &mpsc::Sender<Op>,
    op: impl FnOnce(Reply<O>) -> Op,
) -> Result<O, StoreError> {
    let (reply, rx) = oneshot::channel();
    queue
        .send(op(reply))
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

    async fn write_batch(&self, writes: Writes<'_>) -> Result<Written, StoreError> {
        self.inner.write_batch(writes).await
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
        submit(&self.queue, |reply| Op::Insert(item, reply)).await
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
        let claim = ClaimRequest::new(now, due_by, limit, owner, lease_grace_ms);
        submit(&self.queue, |reply| Op::Claim(claim, reply)).await
    }

    async fn record_attempt(
        &self,
        record: &AttemptRecord,
        claimed_version: i64,
    ) -> Result<bool, StoreError> {
        let item = (record.clone(), claimed_version);
        submit(&self.queue, |reply| Op::Record(item, reply)).await
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
