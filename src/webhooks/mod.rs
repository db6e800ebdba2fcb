//! The webhook service: topics, push subscriptions, publishing, and deliveries. Every webhook
//! surface (native `/v1`, hammer, REST Hooks, the embeddable library) goes through it; it owns
//! the rules that do not depend on a request shape — validation, secret generation and
//! rotation, the publish transaction's outcome, and the view of jobs that are deliveries. A
//! delivery is a job, so retrying one is the job service's `rerun`.

pub mod model;
pub mod signing;

use std::sync::Arc;

use uuid::Uuid;

use crate::domain::{Attempt, Invalid, Job, Millis, RetryPolicy, SuccessCodes, Target};
use crate::engine::Waker;
use crate::jobs::{validate_namespace, JobError, JobService};
use crate::store::{Published, Store, StoreError, SubscriptionInsert};
use model::{
    validate_event_type, validate_subscription_headers, validate_topic_name, AttemptFilter,
    BodyFormat, CreatedRange, DeliveryFilter, Message, MessageFilter, NewMessage, Subscription,
    SubscriptionFilter, Topic, TopicFilter,
};

#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("{0} not found")]
    NotFound(&'static str),
    #[error("{0}")]
    Invalid(#[from] Invalid),
    #[error("topic {0:?} already exists")]
    TopicExists(String),
    #[error("subscription {0:?} already exists")]
    SubscriptionExists(String),
    #[error(
        "idempotency key {key:?} is already used by message {existing} with different content"
    )]
    KeyTaken { key: String, existing: Uuid },
    #[error(transparent)]
    Job(#[from] JobError),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// What a subscription is created from. `None` takes the default.
#[derive(Debug, Clone, Default)]
pub struct SubscriptionSpec {
    /// Client-chosen id (hammer, REST Hooks); a UUIDv7 when absent.
    pub id: Option<String>,
    pub name: String,
    pub url: String,
    pub event_types: Vec<String>,
    pub headers: Vec<(String, String)>,
    /// A `whsec_…` secret; generated from a CSPRNG when absent.
    pub secret: Option<String>,
    pub retry: Option<RetryPolicy>,
    pub timeout_ms: Option<i64>,
    pub success: Option<SuccessCodes>,
    pub fail_codes: Option<SuccessCodes>,
    pub unsubscribe_on_gone: bool,
    pub body_format: Option<BodyFormat>,
    pub meta: Option<serde_json::Value>,
    pub enabled: Option<bool>,
}

/// A change to a subscription; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct SubscriptionChange {
    pub name: Option<String>,
    pub url: Option<String>,
    pub event_types: Option<Vec<String>>,
    pub headers: Option<Vec<(String, String)>>,
    pub retry: Option<RetryPolicy>,
    pub timeout_ms: Option<i64>,
    pub success: Option<SuccessCodes>,
    pub fail_codes: Option<Option<SuccessCodes>>,
    pub unsubscribe_on_gone: Option<bool>,
    pub meta: Option<Option<serde_json::Value>>,
    pub enabled: Option<bool>,
}

/// A message as a surface hands it in.
#[derive(Debug, Clone)]
pub struct PublishSpec {
    pub namespace: String,
    pub topic: String,
    pub event_type: String,
    pub content_type: String,
    pub payload: Vec<u8>,
    pub idempotency_key: Option<String>,
    /// When to deliver; now when absent.
    pub deliver_at: Option<Millis>,
}

/// The outcome of a publish.
#[derive(Debug)]
pub struct PublishOutcome {
    pub message: Message,
    /// The deliveries this publish created (empty for an idempotent repeat).
    pub deliveries: Vec<Uuid>,
    /// An idempotent repeat: the message already existed.
    pub existed: bool,
}

pub const DEFAULT_ROTATION_GRACE_MS: i64 = 24 * 3600 * 1000;
pub const MAX_ROTATION_GRACE_MS: i64 = 30 * 24 * 3600 * 1000;

#[derive(Clone)]
pub struct WebhookService {
    jobs: JobService,
    waker: Waker,
}

pub fn validate_subscription_id(id: &str, field: &str) -> Result<(), Invalid> {
    model::validate_name(id, field, b"_.+-", "_ . + -")
}

fn validate_url(url: &str, field: &str) -> Result<String, Invalid> {
    Target::new("", "POST", url, vec![], crate::domain::Body::None, 0)
        .map(|t| t.url)
        .map_err(|e| Invalid::new(field, e.message))
}

fn validate_event_types(types: &[String], field: &str) -> Result<(), Invalid> {
    if types.len() > 64 {
        return Err(Invalid::new(field, "at most 64 event types"));
    }
    for (i, t) in types.iter().enumerate() {
        validate_event_type(t, &format!("{field}[{i}]"))?;
    }
    Ok(())
}

impl WebhookService {
    pub fn new(jobs: JobService, waker: Waker) -> Self {
        WebhookService { jobs, waker }
    }

    pub fn jobs(&self) -> &JobService {
        &self.jobs
    }

    fn store(&self) -> &Arc<dyn Store> {
        self.jobs.store()
    }

    pub fn now(&self) -> Millis {
        self.jobs.now()
    }

    // ---------- topics ----------

    pub async fn create_topic(
        &self,
        namespace: &str,
        name: &str,
        description: &str,
    ) -> Result<Topic, WebhookError> {
        validate_namespace(namespace, "namespace")?;
        validate_topic_name(name, "name")?;
        if description.len() > 1024 {
            return Err(Invalid::new("description", "at most 1024 bytes").into());
        }
        let now = self.now();
        let topic = Topic {
            namespace: namespace.into(),
            name: name.into(),
            description: description.into(),
            created_at: now,
            updated_at: now,
        };
        if self.store().create_topic(&topic).await? {
            Ok(topic)
        } else {
            Err(WebhookError::TopicExists(name.into()))
        }
    }

    /// The topic, created first if it does not exist (REST Hooks creates topics implicitly).
    pub async fn ensure_topic(&self, namespace: &str, name: &str) -> Result<Topic, WebhookError> {
        if let Some(t) = self.store().get_topic(namespace, name).await? {
            return Ok(t);
        }
        match self.create_topic(namespace, name, "").await {
            Err(WebhookError::TopicExists(_)) => self.get_topic(namespace, name).await,
            other => other,
        }
    }

    pub async fn get_topic(&self, namespace: &str, name: &str) -> Result<Topic, WebhookError> {
        self.store()
            .get_topic(namespace, name)
            .await?
            .ok_or(WebhookError::NotFound("topic"))
    }

    pub async fn list_topics(&self, filter: &TopicFilter) -> Result<Vec<Topic>, WebhookError> {
        Ok(self.store().list_topics(filter).await?)
    }

    pub async fn update_topic(
        &self,
        namespace: &str,
        name: &str,
        description: &str,
    ) -> Result<Topic, WebhookError> {
        if description.len() > 1024 {
            return Err(Invalid::new("description", "at most 1024 bytes").into());
        }
        self.store()
            .update_topic(namespace, name, description, self.now())
            .await?
            .ok_or(WebhookError::NotFound("topic"))
    }

    /// Deletes a topic and everything under it.
    pub async fn delete_topic(&self, namespace: &str, name: &str) -> Result<(), WebhookError> {
        if self.store().delete_topic(namespace, name).await? {
            Ok(())
        } else {
            Err(WebhookError::NotFound("topic"))
        }
    }

    // ---------- subscriptions ----------

    pub async fn create_subscription(
        &self,
        namespace: &str,
        topic: &str,
        spec: SubscriptionSpec,
    ) -> Result<Subscription, WebhookError> {
        let id = match spec.id {
            Some(id) => {
                validate_subscription_id(&id, "id")?;
                id
            }
            None => Uuid::now_v7().to_string(),
        };
        let secret = match spec.secret {
            Some(s) => {
                signing::secret_key(&s, "secret")?;
                s
            }
            None => signing::generate_secret(),
        };
        let now = self.now();
        let limits = self.jobs.limits();
        let sub = Subscription {
            id: id.clone(),
            namespace: namespace.into(),
            topic: topic.into(),
            name: spec.name,
            url: validate_url(&spec.url, "url")?,
            event_types: spec.event_types,
            headers: spec.headers,
            secret,
            previous_secret: None,
            previous_secret_until: None,
            retry: spec.retry.unwrap_or_default(),
            timeout_ms: match spec.timeout_ms {
                Some(t) => self.jobs.check_timeout(t, "timeout")?,
                None => limits.default_timeout_ms,
            },
            success: spec.success.unwrap_or_default(),
            fail_codes: spec.fail_codes,
            unsubscribe_on_gone: spec.unsubscribe_on_gone,
            body_format: spec.body_format.unwrap_or(BodyFormat::Raw),
            meta: spec.meta,
            enabled: spec.enabled.unwrap_or(true),
            created_at: now,
            updated_at: now,
        };
        validate_event_types(&sub.event_types, "event_types")?;
        validate_subscription_headers(&sub.headers, "headers")?;
        sub.retry.validate("retry")?;
        match self.store().create_subscription(&sub).await? {
            SubscriptionInsert::Created(s) => Ok(*s),
            SubscriptionInsert::IdTaken => Err(WebhookError::SubscriptionExists(id)),
            SubscriptionInsert::NoTopic => Err(WebhookError::NotFound("topic")),
        }
    }

    /// `namespace: None` finds it in any namespace.
    pub async fn get_subscription(
        &self,
        namespace: Option<&str>,
        id: &str,
    ) -> Result<Subscription, WebhookError> {
        self.store()
            .get_subscription(namespace, id)
            .await?
            .ok_or(WebhookError::NotFound("subscription"))
    }

    pub async fn list_subscriptions(
        &self,
        filter: &SubscriptionFilter,
    ) -> Result<Vec<Subscription>, WebhookError> {
        Ok(self.store().list_subscriptions(filter).await?)
    }

    async fn save_subscription(&self, sub: &Subscription) -> Result<Subscription, WebhookError> {
        self.store()
            .update_subscription(sub)
            .await?
            .ok_or(WebhookError::NotFound("subscription"))
    }

    /// Applies a change; deliveries already made keep the snapshot they were made with.
    pub async fn update_subscription(
        &self,
        namespace: &str,
        id: &str,
        change: SubscriptionChange,
    ) -> Result<Subscription, WebhookError> {
        let mut sub = self.get_subscription(Some(namespace), id).await?;
        if let Some(n) = change.name {
            sub.name = n;
        }
        if let Some(u) = change.url {
            sub.url = validate_url(&u, "url")?;
        }
        if let Some(e) = change.event_types {
            validate_event_types(&e, "event_types")?;
            sub.event_types = e;
        }
        if let Some(h) = change.headers {
            validate_subscription_headers(&h, "headers")?;
            sub.headers = h;
        }
        if let Some(r) = change.retry {
            r.validate("retry")?;
            sub.retry = r;
        }
        if let Some(t) = change.timeout_ms {
            sub.timeout_ms = self.jobs.check_timeout(t, "timeout")?;
        }
        if let Some(s) = change.success {
            sub.success = s;
        }
        if let Some(f) = change.fail_codes {
            sub.fail_codes = f;
        }
        if let Some(u) = change.unsubscribe_on_gone {
            sub.unsubscribe_on_gone = u;
        }
        if let Some(m) = change.meta {
            sub.meta = m;
        }
        if let Some(e) = change.enabled {
            sub.enabled = e;
        }
        sub.updated_at = self.now();
        self.save_subscription(&sub).await
    }

    /// Makes `new_secret` (or a generated one) current. The old secret keeps signing beside it
    /// for `grace_ms`, so receivers can switch without rejecting a delivery.
    pub async fn rotate_secret(
        &self,
        namespace: &str,
        id: &str,
        new_secret: Option<String>,
        grace_ms: Option<i64>,
    ) -> Result<Subscription, WebhookError> {
        let grace = grace_ms.unwrap_or(DEFAULT_ROTATION_GRACE_MS);
        if !(0..=MAX_ROTATION_GRACE_MS).contains(&grace) {
            return Err(Invalid::new("grace", "must be between 0 and 30 days").into());
        }
        let secret = match new_secret {
            Some(s) => {
                signing::secret_key(&s, "secret")?;
                s
            }
            None => signing::generate_secret(),
        };
        let mut sub = self.get_subscription(Some(namespace), id).await?;
        let now = self.now();
        let old = std::mem::replace(&mut sub.secret, secret);
        if grace > 0 {
            sub.previous_secret = Some(old);
            sub.previous_secret_until = Some(now + grace);
        } else {
            sub.previous_secret = None;
            sub.previous_secret_until = None;
        }
        sub.updated_at = now;
        self.save_subscription(&sub).await
    }

    /// Deletes a subscription; its waiting deliveries are cancelled, their history kept.
    pub async fn delete_subscription(&self, namespace: &str, id: &str) -> Result<(), WebhookError> {
        if self
            .store()
            .delete_subscription(namespace, id, self.now())
            .await?
        {
            Ok(())
        } else {
            Err(WebhookError::NotFound("subscription"))
        }
    }

    // ---------- messages ----------

    /// Publishes a message: one transaction stores it with one delivery per matching enabled
    /// subscription. A repeat with the same idempotency key and content returns the first.
    pub async fn publish(&self, spec: PublishSpec) -> Result<PublishOutcome, WebhookError> {
        validate_event_type(&spec.event_type, "event_type")?;
        let max = self.jobs.limits().max_body_bytes;
        if spec.payload.len() > max {
            return Err(Invalid::new(
                "payload",
                format!("is {} bytes; the limit is {max}", spec.payload.len()),
            )
            .into());
        }
        if let Some(k) = &spec.idempotency_key {
            crate::jobs::validate_key(k, "idempotency_key")?;
        }
        if reqwest::header::HeaderValue::from_str(&spec.content_type).is_err() {
            return Err(Invalid::new("content_type", "not a valid header value").into());
        }
        let deliver_at = match spec.deliver_at {
            Some(at) => self.jobs.check_deliver_at(at, "deliver_at")?,
            None => self.now(),
        };
        let fingerprint = {
            use sha2::{Digest, Sha256};
            let mut h = Sha256::new();
            for part in [
                spec.event_type.as_bytes(),
                spec.content_type.as_bytes(),
                &spec.payload,
            ] {
                h.update((part.len() as u64).to_be_bytes());
                h.update(part);
            }
            hex::encode(h.finalize())
        };
        let msg = NewMessage {
            id: Uuid::now_v7(),
            namespace: spec.namespace,
            topic: spec.topic,
            event_type: spec.event_type,
            content_type: spec.content_type,
            payload: spec.payload,
            idempotency_key: spec.idempotency_key,
            fingerprint,
            deliver_at,
        };
        match self.store().publish(&msg, self.now()).await? {
            Published::Created(message, deliveries) => {
                if !deliveries.is_empty() {
                    self.waker.wake_for(message.deliver_at);
                }
                Ok(PublishOutcome {
                    message,
                    deliveries,
                    existed: false,
                })
            }
            Published::Existing(message) => Ok(PublishOutcome {
                message,
                deliveries: vec![],
                existed: true,
            }),
            Published::KeyTaken(existing) => Err(WebhookError::KeyTaken {
                key: msg.idempotency_key.unwrap_or_default(),
                existing: existing.id,
            }),
            Published::NoTopic => Err(WebhookError::NotFound("topic")),
        }
    }

    pub async fn get_message(&self, namespace: &str, id: Uuid) -> Result<Message, WebhookError> {
        self.store()
            .get_message(namespace, id)
            .await?
            .ok_or(WebhookError::NotFound("message"))
    }

    pub async fn list_messages(
        &self,
        filter: &MessageFilter,
    ) -> Result<Vec<Message>, WebhookError> {
        Ok(self.store().list_messages(filter).await?)
    }

    pub async fn delete_message(&self, namespace: &str, id: Uuid) -> Result<(), WebhookError> {
        if self.store().delete_message(namespace, id).await? {
            Ok(())
        } else {
            Err(WebhookError::NotFound("message"))
        }
    }

    // ---------- deliveries ----------

    pub async fn get_delivery(&self, namespace: &str, id: Uuid) -> Result<Job, WebhookError> {
        match self.jobs.get(namespace, id).await {
            Ok(job) if job.origin.is_some() => Ok(job),
            Ok(_) | Err(JobError::NotFound) => Err(WebhookError::NotFound("delivery")),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn list_deliveries(&self, filter: &DeliveryFilter) -> Result<Vec<Job>, WebhookError> {
        Ok(self.store().list_deliveries(filter).await?)
    }

    pub async fn delivery_attempts(
        &self,
        namespace: &str,
        id: Uuid,
        after: Option<Uuid>,
        limit: u32,
    ) -> Result<Vec<Attempt>, WebhookError> {
        self.get_delivery(namespace, id).await?;
        Ok(self.store().list_attempts(id, after, limit).await?)
    }

    pub async fn get_attempt(&self, namespace: &str, id: Uuid) -> Result<Attempt, WebhookError> {
        self.store()
            .get_attempt(namespace, id)
            .await?
            .ok_or(WebhookError::NotFound("delivery attempt"))
    }

    pub async fn list_attempts(
        &self,
        filter: &AttemptFilter,
    ) -> Result<Vec<Attempt>, WebhookError> {
        Ok(self.store().list_delivery_attempts(filter).await?)
    }

    /// Delivers a finished delivery again now, with a fresh attempt budget.
    pub async fn retry_delivery(&self, namespace: &str, id: Uuid) -> Result<Job, WebhookError> {
        self.get_delivery(namespace, id).await?;
        Ok(self.jobs.rerun(namespace, id).await?)
    }

    /// Schedules again every failed delivery of a subscription created in `range`.
    pub async fn replay_failed(
        &self,
        namespace: &str,
        subscription_id: &str,
        range: &CreatedRange,
    ) -> Result<u64, WebhookError> {
        self.get_subscription(Some(namespace), subscription_id)
            .await?;
        let n = self
            .store()
            .replay_failed(namespace, subscription_id, range, self.now())
            .await?;
        if n > 0 {
            self.waker.wake();
        }
        Ok(n)
    }
}
