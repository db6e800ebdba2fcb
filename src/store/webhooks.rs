//! Storage of topics, subscriptions and messages, and the publish transaction that turns a
//! message into one delivery job per matching subscription. Like the jobs SQL, it is written
//! once (`webhook_store!`) and instantiated for SQLite and PostgreSQL; deliveries are rows of
//! `jobs`, decoded by the jobs code.

use async_trait::async_trait;
use uuid::Uuid;

use super::sql::{decode_headers, parse_uuid};
use super::StoreError;
use crate::domain::{Attempt, Job, Millis, SuccessCodes};
use crate::webhooks::model::{
    AttemptFilter, BodyFormat, CreatedRange, DeliveryFilter, Message, MessageFilter, NewMessage,
    Subscription, SubscriptionFilter, Topic, TopicFilter,
};
use crate::webhooks::signing::SigningSecrets;

pub(super) const SUBSCRIPTION_COLUMNS: &str =
    "id, namespace, topic, name, url, event_types, headers, secret, \
     previous_secret, previous_secret_until, retry, timeout_ms, success_codes, fail_codes, \
     unsubscribe_on_gone, body_format, meta, enabled, created_at, updated_at";

pub(super) const MESSAGE_COLUMNS: &str =
    "id, namespace, topic, event_type, content_type, payload, \
     idempotency_key, fingerprint, deliver_at, deliveries, created_at";

pub(super) const TOPIC_COLUMNS: &str = "namespace, name, description, created_at, updated_at";

/// Result of creating a subscription.
#[derive(Debug)]
pub enum SubscriptionInsert {
    Created(Box<Subscription>),
    IdTaken,
    NoTopic,
}

/// Result of a publish.
#[derive(Debug)]
pub enum Published {
    /// The message and its deliveries (job ids), created in one transaction.
    Created(Message, Vec<Uuid>),
    /// Same idempotency key and content as an existing message: that message.
    Existing(Message),
    /// The idempotency key is taken by a message with different content.
    KeyTaken(Message),
    NoTopic,
}

#[async_trait]
pub trait WebhookStore: Send + Sync {
    /// False when a topic of that name exists in the namespace.
    async fn create_topic(&self, topic: &Topic) -> Result<bool, StoreError>;
    async fn get_topic(&self, namespace: &str, name: &str) -> Result<Option<Topic>, StoreError>;
    /// Topics in name order.
    async fn list_topics(&self, filter: &TopicFilter) -> Result<Vec<Topic>, StoreError>;
    async fn update_topic(
        &self,
        namespace: &str,
        name: &str,
        description: &str,
        now: Millis,
    ) -> Result<Option<Topic>, StoreError>;
    /// Deletes a topic with everything under it: subscriptions, messages, deliveries and
    /// their attempts.
    async fn delete_topic(&self, namespace: &str, name: &str) -> Result<bool, StoreError>;

    async fn create_subscription(
        &self,
        sub: &Subscription,
    ) -> Result<SubscriptionInsert, StoreError>;
    /// `namespace: None` finds a subscription in any namespace (REST Hooks ids are global).
    async fn get_subscription(
        &self,
        namespace: Option<&str>,
        id: &str,
    ) -> Result<Option<Subscription>, StoreError>;
    /// Subscriptions in id order.
    async fn list_subscriptions(
        &self,
        filter: &SubscriptionFilter,
    ) -> Result<Vec<Subscription>, StoreError>;
    /// Writes every mutable field (all but id, namespace, topic and creation time).
    async fn update_subscription(
        &self,
        sub: &Subscription,
    ) -> Result<Option<Subscription>, StoreError>;
    /// Deletes a subscription and cancels its deliveries that are still waiting; the
    /// deliveries' history stays readable.
    async fn delete_subscription(
        &self,
        namespace: &str,
        id: &str,
        now: Millis,
    ) -> Result<bool, StoreError>;
    /// The secrets a subscription signs with now; `None` if it no longer exists.
    async fn signing_secrets(
        &self,
        subscription_id: &str,
    ) -> Result<Option<SigningSecrets>, StoreError>;

    /// Inserts the message and one delivery job per matching enabled subscription, in one
    /// transaction, and tells other nodes.
    async fn publish(&self, msg: &NewMessage, now: Millis) -> Result<Published, StoreError>;
    async fn get_message(&self, namespace: &str, id: Uuid) -> Result<Option<Message>, StoreError>;
    /// Messages in id (publish) order.
    async fn list_messages(&self, filter: &MessageFilter) -> Result<Vec<Message>, StoreError>;
    /// Deletes a message with its deliveries and their attempts.
    async fn delete_message(&self, namespace: &str, id: Uuid) -> Result<bool, StoreError>;

    /// Delivery jobs in id (creation) order.
    async fn list_deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<Job>, StoreError>;
    async fn get_attempt(&self, namespace: &str, id: Uuid) -> Result<Option<Attempt>, StoreError>;
    /// Attempts of deliveries in id order.
    async fn list_delivery_attempts(
        &self,
        filter: &AttemptFilter,
    ) -> Result<Vec<Attempt>, StoreError>;
    /// Schedules every failed delivery of a subscription created in `created` again, now, with
    /// a fresh attempt budget. Returns how many.
    async fn replay_failed(
        &self,
        namespace: &str,
        subscription_id: &str,
        created: &CreatedRange,
        now: Millis,
    ) -> Result<u64, StoreError>;
}

fn corrupt(what: &str, e: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{what}: {e}"))
}

pub(super) struct SubscriptionRow {
    pub id: String,
    pub namespace: String,
    pub topic: String,
    pub name: String,
    pub url: String,
    pub event_types: String,
    pub headers: String,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_secret_until: Option<i64>,
    pub retry: String,
    pub timeout_ms: i64,
    pub success_codes: String,
    pub fail_codes: Option<String>,
    pub unsubscribe_on_gone: bool,
    pub body_format: String,
    pub meta: Option<String>,
    pub enabled: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

impl SubscriptionRow {
    pub fn into_subscription(self) -> Result<Subscription, StoreError> {
        Ok(Subscription {
            id: self.id,
            namespace: self.namespace,
            topic: self.topic,
            name: self.name,
            url: self.url,
            event_types: serde_json::from_str(&self.event_types)
                .map_err(|e| corrupt("event_types", e))?,
            headers: decode_headers(&self.headers)?,
            secret: self.secret,
            previous_secret: self.previous_secret,
            previous_secret_until: self.previous_secret_until,
            retry: serde_json::from_str(&self.retry).map_err(|e| corrupt("retry", e))?,
            timeout_ms: self.timeout_ms,
            success: SuccessCodes::decode(&self.success_codes),
            fail_codes: self.fail_codes.as_deref().map(SuccessCodes::decode),
            unsubscribe_on_gone: self.unsubscribe_on_gone,
            body_format: BodyFormat::parse(&self.body_format)
                .ok_or_else(|| corrupt("body_format", &self.body_format))?,
            meta: self
                .meta
                .map(|m| serde_json::from_str(&m))
                .transpose()
                .map_err(|e| corrupt("meta", e))?,
            enabled: self.enabled,
            created_at: self.created_at,
            updated_at: self.updated_at,
        })
    }
}

pub(super) struct MessageRow {
    pub id: String,
    pub namespace: String,
    pub topic: String,
    pub event_type: String,
    pub content_type: String,
    pub payload: Vec<u8>,
    pub idempotency_key: Option<String>,
    pub fingerprint: String,
    pub deliver_at: i64,
    pub deliveries: i64,
    pub created_at: i64,
}

impl MessageRow {
    pub fn into_message(self) -> Result<Message, StoreError> {
        Ok(Message {
            id: parse_uuid(&self.id)?,
            namespace: self.namespace,
            topic: self.topic,
            event_type: self.event_type,
            content_type: self.content_type,
            payload: self.payload,
            idempotency_key: self.idempotency_key,
            fingerprint: self.fingerprint,
            deliver_at: self.deliver_at,
            deliveries: self.deliveries as u32,
            created_at: self.created_at,
        })
    }
}

pub(super) fn encode_event_types(e: &[String]) -> String {
    serde_json::to_string(e).unwrap_or_else(|_| "[]".into())
}

/// Rows per multi-row insert of deliveries: well under both drivers' bind-parameter limits.
pub(super) const DELIVERY_INSERT_CHUNK: usize = 500;

/// Implements [`WebhookStore`] for a store type that already has `sql_store!`.
/// `share_lock` keeps a subscription from being deleted while a publish reads it.
macro_rules! webhook_store {
    ($store:ty, $db:ty, share_lock = $share:expr) => {
        mod webhook_impl {
            use async_trait::async_trait;
            use sqlx::{QueryBuilder, Row};
            use uuid::Uuid;

            use super::super::sql::*;
            use super::super::webhooks::*;
            use super::super::StoreError;
            use super::store_impl::{attempt_from_row, durable, job_from_row, notify_others};
            use super::*;
            use crate::domain::{Attempt, Job, Millis};
            use crate::webhooks::model::{
                AttemptFilter, CreatedRange, DeliveryFilter, Message, MessageFilter, NewMessage,
                Page, Subscription, SubscriptionFilter, Topic, TopicFilter,
            };
            use crate::webhooks::signing::SigningSecrets;

            type Db = $db;
            type DbRow = <Db as sqlx::Database>::Row;

            fn topic_from_row(r: &DbRow) -> Result<Topic, StoreError> {
                Ok(Topic {
                    namespace: r.try_get("namespace")?,
                    name: r.try_get("name")?,
                    description: r.try_get("description")?,
                    created_at: r.try_get("created_at")?,
                    updated_at: r.try_get("updated_at")?,
                })
            }

            fn subscription_from_row(r: &DbRow) -> Result<Subscription, StoreError> {
                SubscriptionRow {
                    id: r.try_get("id")?,
                    namespace: r.try_get("namespace")?,
                    topic: r.try_get("topic")?,
                    name: r.try_get("name")?,
                    url: r.try_get("url")?,
                    event_types: r.try_get("event_types")?,
                    headers: r.try_get("headers")?,
                    secret: r.try_get("secret")?,
                    previous_secret: r.try_get("previous_secret")?,
                    previous_secret_until: r.try_get("previous_secret_until")?,
                    retry: r.try_get("retry")?,
                    timeout_ms: r.try_get("timeout_ms")?,
                    success_codes: r.try_get("success_codes")?,
                    fail_codes: r.try_get("fail_codes")?,
                    unsubscribe_on_gone: r.try_get("unsubscribe_on_gone")?,
                    body_format: r.try_get("body_format")?,
                    meta: r.try_get("meta")?,
                    enabled: r.try_get("enabled")?,
                    created_at: r.try_get("created_at")?,
                    updated_at: r.try_get("updated_at")?,
                }
                .into_subscription()
            }

            fn message_from_row(r: &DbRow) -> Result<Message, StoreError> {
                MessageRow {
                    id: r.try_get("id")?,
                    namespace: r.try_get("namespace")?,
                    topic: r.try_get("topic")?,
                    event_type: r.try_get("event_type")?,
                    content_type: r.try_get("content_type")?,
                    payload: r.try_get("payload")?,
                    idempotency_key: r.try_get("idempotency_key")?,
                    fingerprint: r.try_get("fingerprint")?,
                    deliver_at: r.try_get("deliver_at")?,
                    deliveries: r.try_get("deliveries")?,
                    created_at: r.try_get("created_at")?,
                }
                .into_message()
            }

            fn push_created(q: &mut QueryBuilder<'_, Db>, column: &str, r: &CreatedRange) {
                for (op, v) in [(">", r.gt), (">=", r.gte), ("<", r.lt), ("<=", r.lte)] {
                    if let Some(v) = v {
                        q.push(format!(" AND {column} {op} ")).push_bind(v);
                    }
                }
            }

            fn push_page(q: &mut QueryBuilder<'_, Db>, key: &str, p: &Page) {
                if let Some(after) = &p.after {
                    q.push(format!(" AND {key} > ")).push_bind(after.clone());
                }
                q.push(format!(" ORDER BY {key} LIMIT "))
                    .push_bind(p.limit as i64)
                    .push(" OFFSET ")
                    .push_bind(p.offset as i64);
            }

            /// One publish inside a write transaction (alone, or in a group-commit batch): the
            /// message and one delivery job per matching enabled subscription. Also says
            /// whether deliveries were created, for the caller's one notification per commit.
            pub(in super::super) async fn publish_in(
                tx: &mut super::store_impl::WriteTx,
                m: &NewMessage,
                now: Millis,
            ) -> Result<(Published, bool), StoreError> {
                if !topic_exists(&mut **tx, &m.namespace, &m.topic).await? {
                    return Ok((Published::NoTopic, false));
                }
                if let Some(key) = &m.idempotency_key {
                    if let Some(existing) = message_by_key(&mut **tx, m, key).await? {
                        return Ok((repeat_of(existing, m), false));
                    }
                }
                let sql = format!(
                    "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions \
                     WHERE namespace = $1 AND topic = $2 AND enabled ORDER BY id{}",
                    $share
                );
                let subs = sqlx::query(&sql)
                    .bind(&m.namespace)
                    .bind(&m.topic)
                    .fetch_all(&mut **tx)
                    .await?
                    .iter()
                    .map(subscription_from_row)
                    .collect::<Result<Vec<_>, _>>()?;
                let matching: Vec<&Subscription> =
                    subs.iter().filter(|s| s.matches(&m.event_type)).collect();
                let message = Message {
                    id: m.id,
                    namespace: m.namespace.clone(),
                    topic: m.topic.clone(),
                    event_type: m.event_type.clone(),
                    content_type: m.content_type.clone(),
                    payload: m.payload.clone(),
                    idempotency_key: m.idempotency_key.clone(),
                    fingerprint: m.fingerprint.clone(),
                    deliver_at: m.deliver_at,
                    deliveries: matching.len() as u32,
                    created_at: now,
                };
                let sql = format!(
                    "INSERT INTO messages ({MESSAGE_COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)"
                );
                let insert = sqlx::query(&sql)
                    .bind(message.id.to_string())
                    .bind(&message.namespace)
                    .bind(&message.topic)
                    .bind(&message.event_type)
                    .bind(&message.content_type)
                    .bind(&message.payload)
                    .bind(&message.idempotency_key)
                    .bind(&message.fingerprint)
                    .bind(message.deliver_at)
                    .bind(message.deliveries as i64)
                    .bind(message.created_at);
                match &m.idempotency_key {
                    None => {
                        insert.execute(&mut **tx).await?;
                    }
                    // Another node may commit the same key meanwhile: the unique violation
                    // then rolls back only this savepoint, and the winner is read back.
                    Some(key) => {
                        let mut sp = sqlx::Connection::begin(&mut **tx).await?;
                        match insert.execute(&mut *sp).await {
                            Ok(_) => sp.commit().await?,
                            Err(sqlx::Error::Database(e)) if e.is_unique_violation() => {
                                sp.rollback().await?;
                                let existing = message_by_key(&mut **tx, m, key).await?.ok_or_else(|| {
                                    StoreError::Corrupt("idempotency key vanished after a unique violation".into())
                                })?;
                                return Ok((repeat_of(existing, m), false));
                            }
                            Err(e) => return Err(e.into()),
                        }
                    }
                }
                let mut ids = Vec::with_capacity(matching.len());
                for chunk in matching.chunks(DELIVERY_INSERT_CHUNK) {
                    let mut q = QueryBuilder::<Db>::new(format!("INSERT INTO jobs ({JOB_COLUMNS}) "));
                    q.push_values(chunk, |mut b, sub| {
                        let plan = sub.plan(&message, now);
                        let id = Uuid::now_v7();
                        ids.push(id);
                        b.push_bind(id.to_string())
                            .push_bind(message.namespace.clone())
                            .push("NULL")
                            .push("'scheduled'")
                            .push_bind(plan.target.method.clone())
                            .push_bind(plan.target.url.clone())
                            .push_bind(encode_headers(&plan.target.headers))
                            .push_bind(plan.target.body.kind())
                            .push_bind(plan.target.body.to_bytes())
                            .push_bind(encode_retry(&plan.retry))
                            .push_bind(plan.timeout_ms)
                            .push_bind(plan.success.encode())
                            .push_bind(false)
                            .push_bind(message.deliver_at)
                            .push_bind(message.deliver_at)
                            .push("0")
                            .push("0")
                            .push("NULL")
                            .push("NULL")
                            .push("NULL")
                            .push("NULL")
                            .push("NULL")
                            .push_bind(message.fingerprint.clone())
                            .push("0")
                            .push_bind(now)
                            .push_bind(now)
                            .push_bind(message.topic.clone())
                            .push_bind(message.id.to_string())
                            .push_bind(sub.id.clone())
                            .push_bind(message.event_type.clone())
                            .push_bind(plan.fail_codes.as_ref().map(|c| c.encode()))
                            .push_bind(plan.unsubscribe_on_gone);
                    });
                    q.build().execute(&mut **tx).await?;
                }
                let notify = !ids.is_empty();
                Ok((Published::Created(message, ids), notify))
            }

            async fn message_by_key<'c, E>(
                exec: E,
                m: &NewMessage,
                key: &str,
            ) -> Result<Option<Message>, StoreError>
            where
                E: sqlx::Executor<'c, Database = Db>,
            {
                let sql = format!(
                    "SELECT {MESSAGE_COLUMNS} FROM messages \
                     WHERE namespace = $1 AND topic = $2 AND idempotency_key = $3"
                );
                sqlx::query(&sql)
                    .bind(&m.namespace)
                    .bind(&m.topic)
                    .bind(key)
                    .fetch_optional(exec)
                    .await?
                    .map(|r| message_from_row(&r))
                    .transpose()
            }

            /// A publish repeating an idempotency key: the same content is a repeat, other
            /// content a conflict.
            fn repeat_of(existing: Message, m: &NewMessage) -> Published {
                if existing.fingerprint == m.fingerprint {
                    Published::Existing(existing)
                } else {
                    Published::KeyTaken(existing)
                }
            }

            /// Cancels a subscription's waiting deliveries and deletes it. Shared by the API's
            /// delete and by the engine when a target answers `410 Gone`.
            pub(in super::super) async fn remove_subscription(
                tx: &mut super::store_impl::WriteTx,
                id: &str,
                now: Millis,
            ) -> Result<bool, StoreError> {
                sqlx::query(
                    "UPDATE jobs SET state = 'cancelled', next_attempt_at = NULL, \
                     version = version + 1, updated_at = $1 \
                     WHERE subscription_id = $2 AND state = 'scheduled'",
                )
                .bind(now)
                .bind(id)
                .execute(&mut **tx)
                .await?;
                let n = sqlx::query("DELETE FROM subscriptions WHERE id = $1")
                    .bind(id)
                    .execute(&mut **tx)
                    .await?
                    .rows_affected();
                Ok(n > 0)
            }

            async fn topic_exists<'c, E>(exec: E, namespace: &str, name: &str) -> Result<bool, StoreError>
            where
                E: sqlx::Executor<'c, Database = Db>,
            {
                Ok(sqlx::query("SELECT 1 AS one FROM topics WHERE namespace = $1 AND name = $2")
                    .bind(namespace)
                    .bind(name)
                    .fetch_optional(exec)
                    .await?
                    .is_some())
            }

            #[async_trait]
            impl WebhookStore for $store {
                async fn create_topic(&self, t: &Topic) -> Result<bool, StoreError> {
                    let sql = format!(
                        "INSERT INTO topics ({TOPIC_COLUMNS}) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING"
                    );
                    let mut tx = durable(&self.write).await?;
                    let n = sqlx::query(&sql)
                        .bind(&t.namespace)
                        .bind(&t.name)
                        .bind(&t.description)
                        .bind(t.created_at)
                        .bind(t.updated_at)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    tx.commit().await?;
                    Ok(n == 1)
                }

                async fn get_topic(&self, namespace: &str, name: &str) -> Result<Option<Topic>, StoreError> {
                    let sql = format!("SELECT {TOPIC_COLUMNS} FROM topics WHERE namespace = $1 AND name = $2");
                    sqlx::query(&sql)
                        .bind(namespace)
                        .bind(name)
                        .fetch_optional(&self.read)
                        .await?
                        .map(|r| topic_from_row(&r))
                        .transpose()
                }

                async fn list_topics(&self, f: &TopicFilter) -> Result<Vec<Topic>, StoreError> {
                    let mut q = QueryBuilder::<Db>::new(format!("SELECT {TOPIC_COLUMNS} FROM topics WHERE namespace = "));
                    q.push_bind(f.namespace.clone());
                    push_created(&mut q, "created_at", &f.created);
                    push_page(&mut q, "name", &f.page);
                    q.build().fetch_all(&self.read).await?.iter().map(topic_from_row).collect()
                }

                async fn update_topic(
                    &self,
                    namespace: &str,
                    name: &str,
                    description: &str,
                    now: Millis,
                ) -> Result<Option<Topic>, StoreError> {
                    let sql = format!(
                        "UPDATE topics SET description = $1, updated_at = $2 WHERE namespace = $3 AND name = $4 \
                         RETURNING {TOPIC_COLUMNS}"
                    );
                    let mut tx = durable(&self.write).await?;
                    let topic = sqlx::query(&sql)
                        .bind(description)
                        .bind(now)
                        .bind(namespace)
                        .bind(name)
                        .fetch_optional(&mut *tx)
                        .await?
                        .map(|r| topic_from_row(&r))
                        .transpose()?;
                    tx.commit().await?;
                    Ok(topic)
                }

                async fn delete_topic(&self, namespace: &str, name: &str) -> Result<bool, StoreError> {
                    let mut tx = durable(&self.write).await?;
                    sqlx::query("DELETE FROM jobs WHERE namespace = $1 AND topic = $2")
                        .bind(namespace)
                        .bind(name)
                        .execute(&mut *tx)
                        .await?;
                    // Subscriptions and messages go with the topic (ON DELETE CASCADE).
                    let n = sqlx::query("DELETE FROM topics WHERE namespace = $1 AND name = $2")
                        .bind(namespace)
                        .bind(name)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    tx.commit().await?;
                    Ok(n > 0)
                }

                async fn create_subscription(&self, s: &Subscription) -> Result<SubscriptionInsert, StoreError> {
                    let mut tx = durable(&self.write).await?;
                    if !topic_exists(&mut *tx, &s.namespace, &s.topic).await? {
                        return Ok(SubscriptionInsert::NoTopic);
                    }
                    let sql = format!(
                        "INSERT INTO subscriptions ({SUBSCRIPTION_COLUMNS}) VALUES \
                         ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17, $18, $19, $20) \
                         ON CONFLICT DO NOTHING RETURNING {SUBSCRIPTION_COLUMNS}"
                    );
                    let row = sqlx::query(&sql)
                        .bind(&s.id)
                        .bind(&s.namespace)
                        .bind(&s.topic)
                        .bind(&s.name)
                        .bind(&s.url)
                        .bind(encode_event_types(&s.event_types))
                        .bind(encode_headers(&s.headers))
                        .bind(&s.secret)
                        .bind(&s.previous_secret)
                        .bind(s.previous_secret_until)
                        .bind(encode_retry(&s.retry))
                        .bind(s.timeout_ms)
                        .bind(s.success.encode())
                        .bind(s.fail_codes.as_ref().map(|c| c.encode()))
                        .bind(s.unsubscribe_on_gone)
                        .bind(s.body_format.as_str())
                        .bind(encode_meta(&s.meta))
                        .bind(s.enabled)
                        .bind(s.created_at)
                        .bind(s.updated_at)
                        .fetch_optional(&mut *tx)
                        .await?;
                    let Some(row) = row else {
                        return Ok(SubscriptionInsert::IdTaken);
                    };
                    let created = subscription_from_row(&row)?;
                    tx.commit().await?;
                    Ok(SubscriptionInsert::Created(Box::new(created)))
                }

                async fn get_subscription(
                    &self,
                    namespace: Option<&str>,
                    id: &str,
                ) -> Result<Option<Subscription>, StoreError> {
                    let sql = format!(
                        "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE id = $1 AND ($2 IS NULL OR namespace = $2)"
                    );
                    sqlx::query(&sql)
                        .bind(id)
                        .bind(namespace)
                        .fetch_optional(&self.read)
                        .await?
                        .map(|r| subscription_from_row(&r))
                        .transpose()
                }

                async fn list_subscriptions(&self, f: &SubscriptionFilter) -> Result<Vec<Subscription>, StoreError> {
                    let mut q = QueryBuilder::<Db>::new(format!(
                        "SELECT {SUBSCRIPTION_COLUMNS} FROM subscriptions WHERE namespace = "
                    ));
                    q.push_bind(f.namespace.clone());
                    if let Some(t) = &f.topic {
                        q.push(" AND topic = ").push_bind(t.clone());
                    }
                    push_created(&mut q, "created_at", &f.created);
                    push_page(&mut q, "id", &f.page);
                    q.build().fetch_all(&self.read).await?.iter().map(subscription_from_row).collect()
                }

                async fn update_subscription(&self, s: &Subscription) -> Result<Option<Subscription>, StoreError> {
                    let sql = format!(
                        "UPDATE subscriptions SET name = $1, url = $2, event_types = $3, headers = $4, secret = $5, \
                         previous_secret = $6, previous_secret_until = $7, retry = $8, timeout_ms = $9, \
                         success_codes = $10, fail_codes = $11, unsubscribe_on_gone = $12, body_format = $13, \
                         meta = $14, enabled = $15, updated_at = $16 \
                         WHERE id = $17 AND namespace = $18 RETURNING {SUBSCRIPTION_COLUMNS}"
                    );
                    let mut tx = durable(&self.write).await?;
                    let updated = sqlx::query(&sql)
                        .bind(&s.name)
                        .bind(&s.url)
                        .bind(encode_event_types(&s.event_types))
                        .bind(encode_headers(&s.headers))
                        .bind(&s.secret)
                        .bind(&s.previous_secret)
                        .bind(s.previous_secret_until)
                        .bind(encode_retry(&s.retry))
                        .bind(s.timeout_ms)
                        .bind(s.success.encode())
                        .bind(s.fail_codes.as_ref().map(|c| c.encode()))
                        .bind(s.unsubscribe_on_gone)
                        .bind(s.body_format.as_str())
                        .bind(encode_meta(&s.meta))
                        .bind(s.enabled)
                        .bind(s.updated_at)
                        .bind(&s.id)
                        .bind(&s.namespace)
                        .fetch_optional(&mut *tx)
                        .await?
                        .map(|r| subscription_from_row(&r))
                        .transpose()?;
                    tx.commit().await?;
                    Ok(updated)
                }

                async fn delete_subscription(&self, namespace: &str, id: &str, now: Millis) -> Result<bool, StoreError> {
                    let mut tx = durable(&self.write).await?;
                    let exists = sqlx::query("SELECT 1 AS one FROM subscriptions WHERE id = $1 AND namespace = $2")
                        .bind(id)
                        .bind(namespace)
                        .fetch_optional(&mut *tx)
                        .await?
                        .is_some();
                    if !exists {
                        return Ok(false);
                    }
                    let removed = remove_subscription(&mut tx, id, now).await?;
                    tx.commit().await?;
                    Ok(removed)
                }

                async fn signing_secrets(&self, id: &str) -> Result<Option<SigningSecrets>, StoreError> {
                    let row = sqlx::query(
                        "SELECT secret, previous_secret, previous_secret_until FROM subscriptions WHERE id = $1",
                    )
                    .bind(id)
                    .fetch_optional(&self.read)
                    .await?;
                    let Some(r) = row else { return Ok(None) };
                    let previous: Option<String> = r.try_get("previous_secret")?;
                    let until: Option<i64> = r.try_get("previous_secret_until")?;
                    Ok(Some(SigningSecrets {
                        current: r.try_get("secret")?,
                        previous: previous.zip(until),
                    }))
                }

                async fn publish(&self, m: &NewMessage, now: Millis) -> Result<Published, StoreError> {
                    let mut tx = durable(&self.write).await?;
                    let (published, notify) = publish_in(&mut tx, m, now).await?;
                    if notify {
                        notify_others(&mut *tx).await?;
                    }
                    tx.commit().await?;
                    Ok(published)
                }

                async fn get_message(&self, namespace: &str, id: Uuid) -> Result<Option<Message>, StoreError> {
                    let sql = format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE id = $1 AND namespace = $2");
                    sqlx::query(&sql)
                        .bind(id.to_string())
                        .bind(namespace)
                        .fetch_optional(&self.read)
                        .await?
                        .map(|r| message_from_row(&r))
                        .transpose()
                }

                async fn list_messages(&self, f: &MessageFilter) -> Result<Vec<Message>, StoreError> {
                    let mut q = QueryBuilder::<Db>::new(format!("SELECT {MESSAGE_COLUMNS} FROM messages WHERE namespace = "));
                    q.push_bind(f.namespace.clone());
                    if let Some(t) = &f.topic {
                        q.push(" AND topic = ").push_bind(t.clone());
                    }
                    push_created(&mut q, "created_at", &f.created);
                    push_page(&mut q, "id", &f.page);
                    q.build().fetch_all(&self.read).await?.iter().map(message_from_row).collect()
                }

                async fn delete_message(&self, namespace: &str, id: Uuid) -> Result<bool, StoreError> {
                    let mut tx = durable(&self.write).await?;
                    sqlx::query("DELETE FROM jobs WHERE message_id = $1 AND namespace = $2")
                        .bind(id.to_string())
                        .bind(namespace)
                        .execute(&mut *tx)
                        .await?;
                    let n = sqlx::query("DELETE FROM messages WHERE id = $1 AND namespace = $2")
                        .bind(id.to_string())
                        .bind(namespace)
                        .execute(&mut *tx)
                        .await?
                        .rows_affected();
                    tx.commit().await?;
                    Ok(n > 0)
                }

                async fn list_deliveries(&self, f: &DeliveryFilter) -> Result<Vec<Job>, StoreError> {
                    let mut q = QueryBuilder::<Db>::new(format!(
                        "SELECT {JOB_COLUMNS} FROM jobs WHERE subscription_id IS NOT NULL AND namespace = "
                    ));
                    q.push_bind(f.namespace.clone());
                    if let Some(t) = &f.topic {
                        q.push(" AND topic = ").push_bind(t.clone());
                    }
                    if let Some(s) = &f.subscription_id {
                        q.push(" AND subscription_id = ").push_bind(s.clone());
                    }
                    if let Some(m) = &f.message_id {
                        q.push(" AND message_id = ").push_bind(m.to_string());
                    }
                    if !f.states.is_empty() {
                        q.push(" AND state IN (");
                        let mut sep = q.separated(", ");
                        for s in &f.states {
                            sep.push_bind(s.as_str());
                        }
                        q.push(")");
                    }
                    push_created(&mut q, "created_at", &f.created);
                    push_page(&mut q, "id", &f.page);
                    q.build().fetch_all(&self.read).await?.iter().map(job_from_row).collect()
                }

                async fn get_attempt(&self, namespace: &str, id: Uuid) -> Result<Option<Attempt>, StoreError> {
                    let sql = format!(
                        "SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE id = $1 \
                         AND job_id IN (SELECT id FROM jobs WHERE namespace = $2)"
                    );
                    sqlx::query(&sql)
                        .bind(id.to_string())
                        .bind(namespace)
                        .fetch_optional(&self.read)
                        .await?
                        .map(|r| attempt_from_row(&r))
                        .transpose()
                }

                async fn list_delivery_attempts(&self, f: &AttemptFilter) -> Result<Vec<Attempt>, StoreError> {
                    let mut q = QueryBuilder::<Db>::new(format!("SELECT {ATTEMPT_COLUMNS} FROM attempts WHERE "));
                    match f.delivery_id {
                        Some(d) => {
                            q.push("job_id = ").push_bind(d.to_string());
                            q.push(" AND job_id IN (SELECT id FROM jobs WHERE namespace = ")
                                .push_bind(f.namespace.clone())
                                .push(")");
                        }
                        None => {
                            q.push("job_id IN (SELECT id FROM jobs WHERE subscription_id IS NOT NULL AND namespace = ")
                                .push_bind(f.namespace.clone())
                                .push(")");
                        }
                    }
                    push_created(&mut q, "started_at", &f.created);
                    push_page(&mut q, "id", &f.page);
                    q.build().fetch_all(&self.read).await?.iter().map(attempt_from_row).collect()
                }

                async fn replay_failed(
                    &self,
                    namespace: &str,
                    subscription_id: &str,
                    created: &CreatedRange,
                    now: Millis,
                ) -> Result<u64, StoreError> {
                    let mut tx = durable(&self.write).await?;
                    let mut q = QueryBuilder::<Db>::new(
                        "UPDATE jobs SET state = 'scheduled', run_base = attempts, next_attempt_at = ",
                    );
                    q.push_bind(now)
                        .push(", version = version + 1, updated_at = ")
                        .push_bind(now)
                        .push(" WHERE state = 'failed' AND namespace = ")
                        .push_bind(namespace.to_string())
                        .push(" AND subscription_id = ")
                        .push_bind(subscription_id.to_string());
                    push_created(&mut q, "created_at", created);
                    let n = q.build().execute(&mut *tx).await?.rows_affected();
                    if n > 0 {
                        notify_others(&mut *tx).await?;
                    }
                    tx.commit().await?;
                    Ok(n)
                }
            }
        }
    };
}

pub(super) use webhook_store;

/// Group commit batches publishes (with job inserts and attempt records); every other
/// webhook write goes straight to the store it wraps.
#[async_trait]
impl WebhookStore for super::GroupCommit {
    async fn create_topic(&self, topic: &Topic) -> Result<bool, StoreError> {
        self.inner.create_topic(topic).await
    }
    async fn get_topic(&self, namespace: &str, name: &str) -> Result<Option<Topic>, StoreError> {
        self.inner.get_topic(namespace, name).await
    }
    async fn list_topics(&self, filter: &TopicFilter) -> Result<Vec<Topic>, StoreError> {
        self.inner.list_topics(filter).await
    }
    async fn update_topic(
        &self,
        namespace: &str,
        name: &str,
        description: &str,
        now: Millis,
    ) -> Result<Option<Topic>, StoreError> {
        self.inner
            .update_topic(namespace, name, description, now)
            .await
    }
    async fn delete_topic(&self, namespace: &str, name: &str) -> Result<bool, StoreError> {
        self.inner.delete_topic(namespace, name).await
    }
    async fn create_subscription(
        &self,
        sub: &Subscription,
    ) -> Result<SubscriptionInsert, StoreError> {
        self.inner.create_subscription(sub).await
    }
    async fn get_subscription(
        &self,
        namespace: Option<&str>,
        id: &str,
    ) -> Result<Option<Subscription>, StoreError> {
        self.inner.get_subscription(namespace, id).await
    }
    async fn list_subscriptions(
        &self,
        filter: &SubscriptionFilter,
    ) -> Result<Vec<Subscription>, StoreError> {
        self.inner.list_subscriptions(filter).await
    }
    async fn update_subscription(
        &self,
        sub: &Subscription,
    ) -> Result<Option<Subscription>, StoreError> {
        self.inner.update_subscription(sub).await
    }
    async fn delete_subscription(
        &self,
        namespace: &str,
        id: &str,
        now: Millis,
    ) -> Result<bool, StoreError> {
        self.inner.delete_subscription(namespace, id, now).await
    }
    async fn signing_secrets(
        &self,
        subscription_id: &str,
    ) -> Result<Option<SigningSecrets>, StoreError> {
        self.inner.signing_secrets(subscription_id).await
    }
    async fn publish(&self, msg: &NewMessage, now: Millis) -> Result<Published, StoreError> {
        let item = (msg.clone(), now);
        super::batch::submit(&self.queue, |reply| super::batch::Op::Publish(item, reply)).await
    }
    async fn get_message(&self, namespace: &str, id: Uuid) -> Result<Option<Message>, StoreError> {
        self.inner.get_message(namespace, id).await
    }
    async fn list_messages(&self, filter: &MessageFilter) -> Result<Vec<Message>, StoreError> {
        self.inner.list_messages(filter).await
    }
    async fn delete_message(&self, namespace: &str, id: Uuid) -> Result<bool, StoreError> {
        self.inner.delete_message(namespace, id).await
    }
    async fn list_deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<Job>, StoreError> {
        self.inner.list_deliveries(filter).await
    }
    async fn get_attempt(&self, namespace: &str, id: Uuid) -> Result<Option<Attempt>, StoreError> {
        self.inner.get_attempt(namespace, id).await
    }
    async fn list_delivery_attempts(
        &self,
        filter: &AttemptFilter,
    ) -> Result<Vec<Attempt>, StoreError> {
        self.inner.list_delivery_attempts(filter).await
    }
    async fn replay_failed(
        &self,
        namespace: &str,
        subscription_id: &str,
        created: &CreatedRange,
        now: Millis,
    ) -> Result<u64, StoreError> {
        self.inner
            .replay_failed(namespace, subscription_id, created, now)
            .await
    }
}
