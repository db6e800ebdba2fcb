//! The SQL both stores share, written once. The dialects differ only in what the
//! `sql_store!` invocation passes in: the row lock of the claim query and the statement that
//! tells other nodes about a change. Placeholders are `$N`, which both drivers accept.

use serde_json::Value;
use uuid::Uuid;

use super::StoreError;
use crate::domain::{
    Attempt, AttemptOutcome, Body, Job, JobState, Origin, RetryPolicy, SuccessCodes, Target,
};

pub(super) const JOB_COLUMNS: &str = "id, namespace, key, state, method, url, headers, body_kind, body, retry, \
     timeout_ms, success_codes, follow_redirects, deliver_at, next_attempt_at, attempts, run_base, \
     lease_owner, last_status, last_error, last_attempt_at, meta, fingerprint, version, created_at, updated_at, \
     topic, message_id, subscription_id, event_type, fail_codes, unsubscribe_on_gone";

pub(super) const ATTEMPT_COLUMNS: &str =
    "id, job_id, number, started_at, duration_ms, request_method, request_url, \
     request_headers, request_body_bytes, response_status, response_headers, response_body, \
     response_truncated, error, outcome";

/// Most rows in one multi-row `INSERT`: well inside both databases' limits on bound
/// parameters (SQLite 32,766, PostgreSQL 65,535) at about twenty per row.
pub(super) const MAX_ROWS_PER_INSERT: usize = 256;

/// The raw column values of a job row, decoded by driver-specific code and turned into a
/// domain [`Job`] here.
pub(super) struct JobRow {
    pub id: String,
    pub namespace: String,
    pub key: Option<String>,
    pub state: String,
    pub method: String,
    pub url: String,
    pub headers: String,
    pub body_kind: String,
    pub body: Option<Vec<u8>>,
    pub retry: String,
    pub timeout_ms: i64,
    pub success_codes: String,
    pub follow_redirects: bool,
    pub deliver_at: i64,
    pub next_attempt_at: Option<i64>,
    pub attempts: i64,
    pub run_base: i64,
    pub lease_owner: Option<String>,
    pub last_status: Option<i64>,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<i64>,
    pub meta: Option<String>,
    pub fingerprint: String,
    pub version: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub topic: Option<String>,
    pub message_id: Option<String>,
    pub subscription_id: Option<String>,
    pub event_type: Option<String>,
    pub fail_codes: Option<String>,
    pub unsubscribe_on_gone: bool,
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

pub(super) fn parse_uuid(s: &str) -> Result<Uuid, StoreError> {
    Uuid::parse_str(s).map_err(|e| corrupt("id", e))
}

pub(super) fn encode_headers(h: &[(String, String)]) -> String {
    serde_json::to_string(h).unwrap_or_else(|_| "[]".into())
}

pub(super) fn decode_headers(s: &str) -> Result<Vec<(String, String)>, StoreError> {
    serde_json::from_str(s).map_err(|e| corrupt("headers", e))
}

pub(super) fn encode_retry(r: &RetryPolicy) -> String {
    serde_json::to_string(r).unwrap_or_default()
}

pub(super) fn encode_meta(m: &Option<Value>) -> Option<String> {
    m.as_ref().map(|v| v.to_string())
}

impl JobRow {
    pub fn into_job(self) -> Result<Job, StoreError> {
        let origin = match (self.subscription_id, self.message_id) {
            (Some(subscription_id), Some(message_id)) => Some(Origin {
                topic: self.topic.unwrap_or_default(),
                message_id: parse_uuid(&message_id)?,
                subscription_id,
                event_type: self.event_type.unwrap_or_default(),
                fail_codes: self.fail_codes.as_deref().map(SuccessCodes::decode),
                unsubscribe_on_gone: self.unsubscribe_on_gone,
            }),
            _ => None,
        };
        Ok(Job {
            origin,
            id: parse_uuid(&self.id)?,
            namespace: self.namespace,
            key: self.key,
            state: JobState::parse(&self.state).ok_or_else(|| corrupt("state", &self.state))?,
            target: Target {
                method: self.method,
                url: self.url,
                headers: decode_headers(&self.headers)?,
                body: Body::from_stored(&self.body_kind, self.body),
            },
            retry: serde_json::from_str(&self.retry).map_err(|e| corrupt("retry", e))?,
            timeout_ms: self.timeout_ms,
            success: SuccessCodes::decode(&self.success_codes),
            follow_redirects: self.follow_redirects,
            deliver_at: self.deliver_at,
            next_attempt_at: self.next_attempt_at,
            attempts: self.attempts as u32,
            run_base: self.run_base as u32,
            lease_owner: self.lease_owner,
            last_status: self.last_status.map(|s| s as u16),
            last_error: self.last_error,
            last_attempt_at: self.last_attempt_at,
            meta: self
                .meta
                .map(|m| serde_json::from_str(&m))
                .transpose()
                .map_err(|e| corrupt("meta", e))?,
            fingerprint: self.fingerprint,
            version: self.version,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

pub(super) struct AttemptRow {
    pub id: String,
    pub job_id: String,
    pub number: i64,
    pub started_at: i64,
    pub duration_ms: i64,
    pub request_method: String,
    pub request_url: String,
    pub request_headers: String,
    pub request_body_bytes: i64,
    pub response_status: Option<i64>,
    pub response_headers: String,
    pub response_body: Option<Vec<u8>>,
    pub response_truncated: bool,
    pub error: Option<String>,
    pub outcome: String,
}

impl AttemptRow {
    pub fn into_attempt(self) -> Result<Attempt, StoreError> {
        Ok(Attempt {
            id: parse_uuid(&self.id)?,
            job_id: parse_uuid(&self.job_id)?,
            number: self.number as u32,
            started_at: self.started_at,
            duration_ms: self.duration_ms,
            request_method: self.request_method,
            request_url: self.request_url,
            request_headers: decode_headers(&self.request_headers)?,
            request_body_bytes: self.request_body_bytes,
            response_status: self.response_status.map(|s| s as u16),
            response_headers: decode_headers(&self.response_headers)?,
            response_body: self.response_body,
            response_truncated: self.response_truncated,
            error: self.error,
            outcome: AttemptOutcome::parse(&self.outcome),
        })
    }
}

/// Implements [`super::Store`] for a store type with `write` and `read` pools of `$db`.
macro_rules! sql_store {
    (
        $store:ty,
        $db:ty,
        backend = $backend:expr,
        claim_lock = $lock:expr,
        notify = $notify:expr,
        durable_begin = $durable:expr,
        relaxed_begin = $relaxed:expr
    ) => {
        mod store_impl {
            use async_trait::async_trait;
            use sqlx::{QueryBuilder, Row};
            use uuid::Uuid;

            use super::super::sql::*;
            use super::super::{ClaimRequest, Claimed, Inserted, NewJobInsert, Store, StoreError, Writes, Written};
            use super::*;
            use crate::domain::{
                Attempt, AttemptRecord, Job, JobFilter, JobState, Millis,
            };

            type Db = $db;
            pub(super) type WriteTx = sqlx::Transaction<'static, Db>;
            type DbRow = <Db as sqlx::Database>::Row;

            /// A transaction whose commit waits for the disk: what a client is told was
            /// accepted or changed must survive a power cut.
            pub(super) async fn durable(pool: &sqlx::Pool<Db>) -> Result<WriteTx, StoreError> {
                Ok(pool.begin_with($durable).await?)
            }

            /// A transaction whose commit need not wait for the disk: claims, attempt records
            /// and lease releases. Losing one to a power cut only means a call is made again
            /// (the job is still scheduled, or its lease expires), which at-least-once
            /// delivery allows; waiting for an fsync on the firing path would cost
            /// milliseconds of precision on every call.
            async fn relaxed(pool: &sqlx::Pool<Db>) -> Result<WriteTx, StoreError> {
                Ok(pool.begin_with($relaxed).await?)
            }

            pub(super) fn job_from_row(r: &DbRow) -> Result<Job, StoreError> {
                JobRow {
                    id: r.try_get("id")?,
                    namespace: r.try_get("namespace")?,
                    key: r.try_get("key")?,
                    state: r.try_get("state")?,
                    method: r.try_get("method")?,
                    url: r.try_get("url")?,
                    headers: r.try_get("headers")?,
                    body_kind: r.try_get("body_kind")?,
                    body: r.try_get("body")?,
                    retry: r.try_get("retry")?,
                    timeout_ms: r.try_get("timeout_ms")?,
                    success_codes: r.try_get("success_codes")?,
                    follow_redirects: r.try_get("follow_redirects")?,
                    deliver_at: r.try_get("deliver_at")?,
                    next_attempt_at: r.try_get("next_attempt_at")?,
                    attempts: r.try_get("attempts")?,
                    run_base: r.try_get("run_base")?,
                    lease_owner: r.try_get("lease_owner")?,
                    last_status: r.try_get("last_status")?,
                    last_error: r.try_get("last_error")?,
                    last_attempt_at: r.try_get("last_attempt_at")?,
                    meta: r.try_get("meta")?,
                    fingerprint: r.try_get("fingerprint")?,
                    version: r.try_get("version")?,
                    created_at: r.try_get("created_at")?,
                    updated_at: r.try_get("updated_at")?,
                    topic: r.try_get("topic")?,
                    message_id: r.try_get("message_id")?,
                    subscription_id: r.try_get("subscription_id")?,
                    event_type: r.try_get("event_type")?,
                    fail_codes: r.try_get("fail_codes")?,
                    unsubscribe_on_gone: r.try_get("unsubscribe_on_gone")?,
                }
                .into_job()
            }

            pub(super) fn attempt_from_row(r: &DbRow) -> Result<Attempt, StoreError> {
                AttemptRow {
                    id: r.try_get("id")?,
                    job_id: r.try_get("job_id")?,
                    number: r.try_get("number")?,
                    started_at: r.try_get("started_at")?,
                    duration_ms: r.try_get("duration_ms")?,
                    request_method: r.try_get("request_method")?,
                    request_url: r.try_get("request_url")?,
                    request_headers: r.try_get("request_headers")?,
                    request_body_bytes: r.try_get("request_body_bytes")?,
                    response_status: r.try_get("response_status")?,
                    response_headers: r.try_get("response_headers")?,
                    response_body: r.try_get("response_body")?,
                    response_truncated: r.try_get("response_truncated")?,
                    error: r.try_get("error")?,
                    outcome: r.try_get("outcome")?,
                }
                .into_attempt()
            }

            pub(super) async fn notify_others<'c, E>(exec: E) -> Result<(), StoreError>
            where
                E: sqlx::Executor<'c, Database = Db>,
            {
                let stmt: &str = $notify;
                if !stmt.is_empty() {
                    sqlx::query(stmt).execute(exec).await?;
                }
                Ok(())
            }

            async fn find_by_key<'c, E>(
                exec: E,
                namespace: &str,
                key: &str,
            ) -> Result<Option<Job>, StoreError>
            where
                E: sqlx::Executor<'c, Database = Db>,
            {
                let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE namespace = $1 AND key = $2");
                sqlx::query(&sql)
                    .bind(namespace)
                    .bind(key)
                    .fetch_optional(exec)
                    .await?
                    .map(|r| job_from_row(&r))
                    .transpose()
            }

            /// One insert inside a batch transaction. A keyed insert runs under a savepoint:
            /// if another node commits the same key meanwhile, the unique violation rolls back
            /// only this item, and the winner is read back.
            async fn insert_one(
                tx: &mut WriteTx,
                item: &NewJobInsert,
            ) -> Result<Inserted, StoreError> {
                let job = &item.job;
                if let Some(key) = &job.key {
                    if let Some(existing) = find_by_key(&mut **tx, &job.namespace, key).await? {
                        if !(item.free_finished_key && existing.state.is_terminal()) {
                            return Ok(if existing.fingerprint == job.fingerprint {
                                Inserted::Existing(existing)
                            } else {
                                Inserted::KeyTaken(existing)
                            });
                        }
                        sqlx::query("UPDATE jobs SET key = NULL, version = version + 1, updated_at = $1 WHERE id = $2")
                            .bind(item.now)
                            .bind(existing.id.to_string())
                            .execute(&mut **tx)
                            .await?;
                    }
                }
                let sql = format!(
                    "INSERT INTO jobs ({JOB_COLUMNS}) VALUES ($1, $2, $3, 'scheduled', $4, $5, $6, $7, $8, $9, \
                     $10, $11, $12, $13, $13, 0, 0, NULL, NULL, NULL, NULL, $14, $15, 0, $16, $16, \
                     NULL, NULL, NULL, NULL, NULL, FALSE) \
                     RETURNING {JOB_COLUMNS}"
                );
                let query = sqlx::query(&sql)
                    .bind(job.id.to_string())
                    .bind(&job.namespace)
                    .bind(&job.key)
                    .bind(&job.target.method)
                    .bind(&job.target.url)
                    .bind(encode_headers(&job.target.headers))
                    .bind(job.target.body.kind())
                    .bind(job.target.body.to_bytes())
                    .bind(encode_retry(&job.retry))
                    .bind(job.timeout_ms)
                    .bind(job.success.encode())
                    .bind(job.follow_redirects)
                    .bind(job.deliver_at)
                    .bind(encode_meta(&job.meta))
                    .bind(&job.fingerprint)
                    .bind(item.now);
                if job.key.is_none() {
                    let row = query.fetch_one(&mut **tx).await?;
                    return Ok(Inserted::Created(job_from_row(&row)?));
                }
                let mut sp = sqlx::Connection::begin(&mut **tx).await?;
                match query.fetch_one(&mut *sp).await {
                    Ok(row) => {
                        let created = job_from_row(&row)?;
                        sp.commit().await?;
                        Ok(Inserted::Created(created))
                    }
                    Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                        sp.rollback().await?;
                        let key = job.key.as_deref().unwrap_or_default();
                        match find_by_key(&mut **tx, &job.namespace, key).await? {
                            Some(existing) if existing.fingerprint == job.fingerprint => {
                                Ok(Inserted::Existing(existing))
                            }
                            Some(existing) => Ok(Inserted::KeyTaken(existing)),
                            None => Err(StoreError::Corrupt("key vanished after a unique violation".into())),
                        }
                    }
                    Err(e) => Err(e.into()),
                }
            }

            /// Inserts jobs without keys in one multi-row statement. Nothing is read back:
            /// such a row is exactly [`crate::domain::NewJob::stored`].
            async fn insert_plain<'a>(
                tx: &mut WriteTx,
                items: impl ExactSizeIterator<Item = &'a NewJobInsert>,
            ) -> Result<(), StoreError> {
                let rows = items.len();
                let mut q = QueryBuilder::<Db>::new(
                    "INSERT INTO jobs (id, namespace, key, state, method, url, headers, body_kind, body, \
                     retry, timeout_ms, success_codes, follow_redirects, deliver_at, next_attempt_at, \
                     attempts, run_base, meta, fingerprint, version, created_at, updated_at) ",
                );
                q.push_values(items, |mut b, item| {
                    let job = &item.job;
                    b.push_bind(job.id.to_string())
                        .push_bind(job.namespace.clone())
                        .push("NULL")
                        .push("'scheduled'")
                        .push_bind(job.target.method.clone())
                        .push_bind(job.target.url.clone())
                        .push_bind(encode_headers(&job.target.headers))
                        .push_bind(job.target.body.kind())
                        .push_bind(job.target.body.to_bytes())
                        .push_bind(encode_retry(&job.retry))
                        .push_bind(job.timeout_ms)
                        .push_bind(job.success.encode())
                        .push_bind(job.follow_redirects)
                        .push_bind(job.deliver_at)
                        .push_bind(job.deliver_at)
                        .push("0")
                        .push("0")
                        .push_bind(encode_meta(&job.meta))
                        .push_bind(job.fingerprint.clone())
                        .push("0")
                        .push_bind(item.now)
                        .push_bind(item.now);
                });
                // Batch sizes vary; caching a prepared statement for each would only churn
                // the cache.
                q.build().persistent(rows == 1).execute(&mut **tx).await?;
                Ok(())
            }

            /// The inserts of a batch; also whether any created job is due soon enough that
            /// other nodes must hear of it.
            async fn insert_in(
                tx: &mut WriteTx,
                batch: &[NewJobInsert],
            ) -> Result<(Vec<Inserted>, bool), StoreError> {
                let mut out: Vec<Option<Inserted>> = batch.iter().map(|_| None).collect();
                // Jobs without a key cannot conflict with anything, so they go in as one
                // statement per chunk: per-statement overhead, not the rows, is what a
                // busy batch is made of.
                let plain: Vec<usize> =
                    (0..batch.len()).filter(|&i| batch[i].job.key.is_none()).collect();
                for chunk in plain.chunks(MAX_ROWS_PER_INSERT) {
                    insert_plain(tx, chunk.iter().map(|&i| &batch[i])).await?;
                    for &i in chunk {
                        out[i] = Some(Inserted::Created(batch[i].job.stored(batch[i].now)));
                    }
                }
                for (i, item) in batch.iter().enumerate() {
                    if item.job.key.is_some() {
                        out[i] = Some(insert_one(tx, item).await?);
                    }
                }
                let out: Vec<Inserted> = out.into_iter().flatten().collect();
                let due_soon = batch.iter().zip(&out).any(|(item, outcome)| {
                    matches!(outcome, Inserted::Created(_))
                        && item.job.deliver_at <= item.now + super::super::WAKE_HORIZON_MS
                });
                Ok((out, due_soon))
            }

            /// The attempt records of a batch; also whether any job was rescheduled.
            async fn record_in(
                tx: &mut WriteTx,
                batch: &[(AttemptRecord, i64)],
            ) -> Result<(Vec<bool>, bool), StoreError> {
                let mut moved = std::collections::HashSet::new();
                for chunk in batch.chunks(MAX_ROWS_PER_INSERT) {
                    insert_attempts(tx, chunk).await?;
                    moved.extend(move_recorded_jobs(tx, chunk).await?);
                }
                let mut out = Vec::with_capacity(batch.len());
                let mut rescheduled = false;
                for (rec, _) in batch {
                    let updated = moved.contains(&rec.attempt.job_id.to_string());
                    if let (true, Some(sub)) = (updated, &rec.unsubscribe) {
                        super::webhook_impl::remove_subscription(tx, sub, rec.finished_at).await?;
                    }
                    rescheduled |= updated && rec.next_state == JobState::Scheduled;
                    out.push(updated);
                }
                Ok((out, rescheduled))
            }

            /// One claim inside a write transaction; see [`super::super::Store::claim_due`].
            async fn claim_in(
                tx: &mut WriteTx,
                c: &ClaimRequest,
            ) -> Result<Vec<Claimed>, StoreError> {
                // An expired lease is reclaimed without counting a new attempt: the lost
                // attempt never finished, so it is made again under the same number.
                // `fire_at` keeps the due time the claim moves out of `next_attempt_at`
                // (both dialects evaluate SET against the row as it was).
                let sql = format!(
                    "UPDATE jobs SET \
                       attempts = CASE WHEN state = 'scheduled' THEN attempts + 1 ELSE attempts END, \
                       fire_at = next_attempt_at, \
                       state = 'in_flight', lease_owner = $1, \
                       next_attempt_at = $5 + timeout_ms + $3, \
                       version = version + 1, updated_at = $2 \
                     WHERE id IN (SELECT id FROM jobs \
                       WHERE state IN ('scheduled', 'in_flight') AND next_attempt_at <= $5 \
                         AND (state = 'scheduled' OR next_attempt_at <= $2) \
                       ORDER BY next_attempt_at LIMIT $4{}) \
                     RETURNING {JOB_COLUMNS}, fire_at",
                    $lock
                );
                let rows = sqlx::query(&sql)
                    .bind(&c.owner)
                    .bind(c.now)
                    .bind(c.lease_grace_ms)
                    .bind(c.limit as i64)
                    .bind(c.due_by.max(c.now))
                    .fetch_all(&mut **tx)
                    .await?;
                let mut claimed = rows
                    .iter()
                    .map(|r| {
                        Ok(Claimed {
                            job: job_from_row(r)?,
                            fire_at: r.try_get::<Option<i64>, _>("fire_at")?.unwrap_or(c.now),
                        })
                    })
                    .collect::<Result<Vec<_>, StoreError>>()?;
                claimed.sort_by_key(|c| (c.fire_at, c.job.id));
                Ok(claimed)
            }

            /// The attempts of a batch, as one statement. An attempt is history whether or not
            /// its job still moves.
            async fn insert_attempts(
                tx: &mut WriteTx,
                batch: &[(AttemptRecord, i64)],
            ) -> Result<(), StoreError> {
                let mut q = QueryBuilder::<Db>::new(format!("INSERT INTO attempts ({ATTEMPT_COLUMNS}) "));
                q.push_values(batch, |mut b, (rec, _)| {
                    let a = &rec.attempt;
                    b.push_bind(a.id.to_string())
                        .push_bind(a.job_id.to_string())
                        .push_bind(a.number as i64)
                        .push_bind(a.started_at)
                        .push_bind(a.duration_ms)
                        .push_bind(a.request_method.clone())
                        .push_bind(a.request_url.clone())
                        .push_bind(encode_headers(&a.request_headers))
                        .push_bind(a.request_body_bytes)
                        .push_bind(a.response_status.map(i64::from))
                        .push_bind(encode_headers(&a.response_headers))
                        .push_bind(a.response_body.clone())
                        .push_bind(a.response_truncated)
                        .push_bind(a.error.clone())
                        .push_bind(a.outcome.as_str());
                });
                q.build().persistent(batch.len() == 1).execute(&mut **tx).await?;
                Ok(())
            }

            /// Moves each recorded job to its next state if the lease is still ours (same
            /// owner, same version since the claim), in one statement; returns the ids of the
            /// jobs that moved. A job whose lease was lost is left to its new owner.
            async fn move_recorded_jobs(
                tx: &mut WriteTx,
                batch: &[(AttemptRecord, i64)],
            ) -> Result<Vec<String>, StoreError> {
                // Both dialects name the columns of an unaliased VALUES list column1, column2…
                let mut q = QueryBuilder::<Db>::new(
                    "UPDATE jobs SET state = v.column2, next_attempt_at = v.column3, lease_owner = NULL, \
                     last_status = v.column4, last_error = v.column5, last_attempt_at = v.column6, \
                     version = jobs.version + 1, updated_at = v.column7 FROM (",
                );
                q.push_values(batch, |mut b, (rec, claimed_version)| {
                    let a = &rec.attempt;
                    b.push_bind(a.job_id.to_string())
                        .push_bind(rec.next_state.as_str())
                        .push_bind(rec.next_attempt_at)
                        .push_bind(a.response_status.map(i64::from))
                        .push_bind(a.error.clone())
                        .push_bind(a.started_at)
                        .push_bind(rec.finished_at)
                        .push_bind(rec.lease_owner.clone())
                        .push_bind(*claimed_version);
                });
                q.push(
                    ") AS v WHERE jobs.id = v.column1 AND jobs.lease_owner = v.column8 \
                     AND jobs.version = v.column9 AND jobs.state = 'in_flight' RETURNING jobs.id",
                );
                let rows = q.build().persistent(batch.len() == 1).fetch_all(&mut **tx).await?;
                rows.iter().map(|r| Ok(r.try_get::<String, _>(0)?)).collect()
            }

            #[async_trait]
            impl Store for $store {
                fn backend(&self) -> &'static str {
                    $backend
                }

                async fn ping(&self) -> Result<(), StoreError> {
                    sqlx::query("SELECT 1").execute(&self.write).await?;
                    Ok(())
                }

                async fn write_batch(&self, w: Writes<'_>) -> Result<Written, StoreError> {
                    let mut tx = if w.inserts.is_empty() && w.publishes.is_empty() {
                        relaxed(&self.write).await?
                    } else {
                        durable(&self.write).await?
                    };
                    let (inserted, due_soon) = insert_in(&mut tx, w.inserts).await?;
                    let mut published = Vec::with_capacity(w.publishes.len());
                    let mut delivering = false;
                    for (m, now) in w.publishes {
                        let (p, notify) = super::webhook_impl::publish_in(&mut tx, m, *now).await?;
                        delivering |= notify;
                        published.push(p);
                    }
                    let (recorded, rescheduled) = record_in(&mut tx, w.records).await?;
                    let mut claimed = Vec::with_capacity(w.claims.len());
                    for c in w.claims {
                        claimed.push(claim_in(&mut tx, c).await?);
                    }
                    if due_soon || rescheduled || delivering {
                        notify_others(&mut *tx).await?;
                    }
                    tx.commit().await?;
                    Ok(Written { inserted, recorded, published, claimed })
                }

                async fn get_job(&self, namespace: &str, id: Uuid) -> Result<Option<Job>, StoreError> {
                    let sql = format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1 AND namespace = $2");
                    sqlx::query(&sql)
                        .bind(id.to_string())
                        .bind(namespace)
                        .fetch_optional(&self.read)
                        .await?
                        .map(|r| job_from_row(&r))
                        .transpose()
                }

                async fn get_job_by_key(&self, namespace: &str, key: &str) -> Result<Option<Job>, StoreError> {
                    find_by_key(&self.read, namespace, key).await
                }

                async fn list_jobs(&self, f: &JobFilter) -> Result<Vec<Job>, StoreError> {
                    let mut q = QueryBuilder::<Db>::new(format!("SELECT {JOB_COLUMNS} FROM jobs WHERE namespace = "));
                    q.push_bind(f.namespace.clone());
                    if !f.states.is_empty() {
                        q.push(" AND state IN (");
                        let mut sep = q.separated(", ");
                        for s in &f.states {
                            sep.push_bind(s.as_str());
                        }
                        q.push(")");
                    }
                    if let Some(t) = f.created_from {
                        q.push(" AND created_at >= ").push_bind(t);
                    }
                    if let Some(t) = f.created_to {
                        q.push(" AND created_at < ").push_bind(t);
                    }
                    if let Some(t) = f.due_from {
                        q.push(" AND deliver_at >= ").push_bind(t);
                    }
                    if let Some(t) = f.due_to {
                        q.push(" AND deliver_at < ").push_bind(t);
                    }
                    if let Some(after) = f.after {
                        q.push(" AND id > ").push_bind(after.to_string());
                    }
                    q.push(" ORDER BY id LIMIT ").push_bind(f.limit as i64);
                    q.build()
                        .fetch_all(&self.read)
                        .await?
                        .iter()
                        .map(job_from_row)
                        .collect()
                }

                async fn save_job(
                    &self,
                    job: &Job,
                    expected_state: JobState,
                    now: Millis,
                ) -> Result<Option<Job>, StoreError> {
                    let sql = format!(
                        "UPDATE jobs SET state = $1, method = $2, url = $3, headers = $4, body_kind = $5, body = $6, \
                         retry = $7, timeout_ms = $8, success_codes = $9, follow_redirects = $10, deliver_at = $11, \
                         next_attempt_at = $12, run_base = $13, meta = $14, version = version + 1, updated_at = $15 \
                         WHERE id = $16 AND version = $17 AND state = $18 RETURNING {JOB_COLUMNS}"
                    );
                    let mut tx = durable(&self.write).await?;
                    let row = sqlx::query(&sql)
                        .bind(job.state.as_str())
                        .bind(&job.target.method)
                        .bind(&job.target.url)
                        .bind(encode_headers(&job.target.headers))
                        .bind(job.target.body.kind())
                        .bind(job.target.body.to_bytes())
                        .bind(encode_retry(&job.retry))
                        .bind(job.timeout_ms)
                        .bind(job.success.encode())
                        .bind(job.follow_redirects)
                        .bind(job.deliver_at)
                        .bind(job.next_attempt_at)
                        .bind(job.run_base as i64)
                        .bind(encode_meta(&job.meta))
                        .bind(now)
                        .bind(job.id.to_string())
                        .bind(job.version)
                        .bind(expected_state.as_str())
                        .fetch_optional(&mut *tx)
                        .await?;
                    let saved = row.map(|r| job_from_row(&r)).transpose()?;
                    if saved.is_some() {
                        notify_others(&mut *tx).await?;
                    }
                    tx.commit().await?;
                    Ok(saved)
                }

                async fn release_leases(&self, owner: &str, now: Millis) -> Result<u64, StoreError> {
                    // The interrupted attempt is given back: its number will be used again.
                    let mut tx = relaxed(&self.write).await?;
                    let n = sqlx::query(
                        "UPDATE jobs SET state = 'scheduled', lease_owner = NULL, \
                         next_attempt_at = CASE WHEN fire_at > $1 THEN fire_at ELSE $1 END, \
                         attempts = attempts - 1, version = version + 1, updated_at = $1 \
                         WHERE lease_owner = $2 AND state = 'in_flight'",
                    )
                    .bind(now)
                    .bind(owner)
                    .execute(&mut *tx)
                    .await?
                    .rows_affected();
                    if n > 0 {
                        notify_others(&mut *tx).await?;
                    }
                    tx.commit().await?;
                    Ok(n)
                }

                async fn next_due_at(&self) -> Result<Option<Millis>, StoreError> {
                    let row = sqlx::query(
                        "SELECT MIN(next_attempt_at) AS due FROM jobs WHERE state IN ('scheduled', 'in_flight')",
                    )
                    .fetch_one(&self.read)
                    .await?;
                    Ok(row.try_get::<Option<i64>, _>("due")?)
                }

                async fn list_attempts(
                    &self,
                    job_id: Uuid,
                    after: Option<Uuid>,
                    limit: u32,
                ) -> Result<Vec<Attempt>, StoreError> {
                    let sql = format!(
                        "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE job_id = $1 AND id > $2 ORDER BY id LIMIT $3"
                    );
                    sqlx::query(&sql)
                        .bind(job_id.to_string())
                        .bind(after.map(|u| u.to_string()).unwrap_or_default())
                        .bind(limit as i64)
                        .fetch_all(&self.read)
                        .await?
                        .iter()
                        .map(attempt_from_row)
                        .collect()
                }

                async fn subscribe_changes(
                    &self,
                ) -> Result<Option<tokio::sync::mpsc::Receiver<()>>, StoreError> {
                    self.changes().await
                }
            }
        }
    };
}

pub(super) use sql_store;
