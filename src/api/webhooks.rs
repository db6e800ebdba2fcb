//! `/v1/topics`, `/v1/subscriptions`, `/v1/messages`, `/v1/deliveries`: the native webhook
//! API. Shapes and their translation to the webhook service; no rules of its own. A delivery
//! is a job (it also appears in `/v1/jobs`); this API is the view of jobs that have a
//! message and subscription origin.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::extract::{ApiJson, ApiQuery, Namespace};
use super::jobs::{
    duration, page_limit, parse_cursor, parse_ts, success_codes, ts, when, AttemptList,
    AttemptView, LastAttempt, PageQuery, RetryRequest, RetryResponse, StatusSpec,
};
use super::problem::Problem;
use super::AppState;
use crate::domain::{Invalid, Job, JobState, SuccessCodes};
use crate::duration::format_millis;
use crate::webhooks::model::{
    CreatedRange, DeliveryFilter, Message, MessageFilter, Page, Subscription, SubscriptionFilter,
    Topic, TopicFilter,
};
use crate::webhooks::{PublishSpec, SubscriptionChange, SubscriptionSpec, WebhookError};

impl From<WebhookError> for Problem {
    fn from(e: WebhookError) -> Self {
        match e {
            WebhookError::NotFound(what) => Problem::not_found(what),
            WebhookError::Invalid(i) => i.into(),
            e @ WebhookError::TopicExists(_) => Problem {
                field: Some("name".into()),
                ..Problem::new(StatusCode::CONFLICT, "topic-exists", e.to_string())
            },
            e @ WebhookError::SubscriptionExists(_) => Problem {
                field: Some("id".into()),
                ..Problem::new(StatusCode::CONFLICT, "subscription-exists", e.to_string())
            },
            e @ WebhookError::KeyTaken { .. } => Problem {
                field: Some("idempotency_key".into()),
                ..Problem::new(StatusCode::CONFLICT, "key-conflict", e.to_string())
            },
            WebhookError::Job(j) => j.into(),
            WebhookError::Store(s) => s.into(),
        }
    }
}

// ---------- topics ----------

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateTopicRequest {
    /// Unique in the namespace; letters, digits and `_ . + - :`, up to 128.
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateTopicRequest {
    pub description: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TopicResponse {
    pub name: String,
    pub namespace: String,
    pub description: String,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Topic> for TopicResponse {
    fn from(t: &Topic) -> Self {
        TopicResponse {
            name: t.name.clone(),
            namespace: t.namespace.clone(),
            description: t.description.clone(),
            created_at: ts(t.created_at),
            updated_at: ts(t.updated_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct TopicList {
    pub data: Vec<TopicResponse>,
    pub next_cursor: Option<String>,
}

/// Create a topic.
#[utoipa::path(post, path = "/v1/topics", tag = "webhooks", request_body = CreateTopicRequest,
    params(("Herald-Namespace" = Option<String>, Header)),
    responses((status = 201, body = TopicResponse),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Exists", body = Problem, content_type = "application/problem+json")))]
pub async fn create_topic(
    State(state): State<AppState>,
    Namespace(ns): Namespace,
    ApiJson(req): ApiJson<CreateTopicRequest>,
) -> Result<Response, Problem> {
    let t = state
        .webhooks
        .create_topic(&ns, &req.name, req.description.as_deref().unwrap_or(""))
        .await?;
    let mut resp = (StatusCode::CREATED, Json(TopicResponse::from(&t))).into_response();
    if let Ok(v) = format!("/v1/topics/{}", t.name).parse() {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

/// List topics in name order.
#[utoipa::path(get, path = "/v1/topics", tag = "webhooks",
    params(PageQuery, ("Herald-Namespace" = Option<String>, Header)),
    responses((status = 200, body = TopicList)))]
pub async fn list_topics(
    State(state): State<AppState>,
    Namespace(ns): Namespace,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<TopicList>, Problem> {
    let limit = page_limit(q.limit)?;
    let mut topics = state
        .webhooks
        .list_topics(&TopicFilter {
            namespace: ns,
            created: CreatedRange::default(),
            page: Page {
                after: q.cursor,
                offset: 0,
                limit: limit + 1,
            },
        })
        .await?;
    let more = topics.len() > limit as usize;
    topics.truncate(limit as usize);
    Ok(Json(TopicList {
        next_cursor: more
            .then(|| topics.last().map(|t| t.name.clone()))
            .flatten(),
        data: topics.iter().map(TopicResponse::from).collect(),
    }))
}

/// Get a topic.
#[utoipa::path(get, path = "/v1/topics/{topic}", tag = "webhooks",
    params(("topic" = String, Path), ("Herald-Namespace" = Option<String>, Header)),
    responses((status = 200, body = TopicResponse), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get_topic(
    State(state): State<AppState>,
    Namespace(ns): Namespace,
    Path(name): Path<String>,
) -> Result<Json<TopicResponse>, Problem> {
    let t = state.webhooks.get_topic(&ns, &name).await?;
    Ok(Json((&t).into()))
}

/// Change a topic's description.
#[utoipa::path(patch, path = "/v1/topics/{topic}", tag = "webhooks", request_body = UpdateTopicRequest,
    params(("topic" = String, Path), ("Herald-Namespace" = Option<String>, Header)),
    responses((status = 200, body = TopicResponse), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn update_topic(
    State(state): State<AppState>,
    Namespace(ns): Namespace,
    Path(name): Path<String>,
    ApiJson(req): ApiJson<UpdateTopicRequest>,
) -> Result<Json<TopicResponse>, Problem> {
    let t = state
        .webhooks
        .update_topic(&ns, &name, &req.description)
        .await?;
    Ok(Json((&t).into()))
}

/// Delete a topic with its subscriptions, messages and deliveries.
#[utoipa::path(delete, path = "/v1/topics/{topic}", tag = "webhooks",
    params(("topic" = String, Path), ("Herald-Namespace" = Option<String>, Header)),
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn delete_topic(
    State(state): State<AppState>,
    Namespace(ns): Namespace,
    Path(name): Path<String>,
) -> Result<StatusCode, Problem> {
    state.webhooks.delete_topic(&ns, &name).await?;
    Ok(StatusCode::NO_CONTENT)
}

// ---------- subscriptions ----------

/// A push subscription on a topic.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateSubscriptionRequest {
    /// `http` or `https` URL every matching message is POSTed to.
    pub url: String,
    #[serde(default)]
    pub name: Option<String>,
    /// Event types to receive: exact (`order.created`), a prefix (`order.*`) or `*`.
    /// Absent or empty: every event.
    #[serde(default)]
    pub event_types: Option<Vec<String>>,
    /// Extra headers sent with every delivery.
    #[serde(default)]
    pub headers: Option<BTreeMap<String, String>>,
    /// Signing secret, `whsec_` + base64 of 24 to 64 bytes. Generated when absent.
    #[serde(default)]
    pub secret: Option<String>,
    #[serde(default)]
    pub retry: Option<RetryRequest>,
    /// Per-attempt timeout, e.g. `10s` (default `30s`).
    #[serde(default)]
    pub timeout: Option<String>,
    /// Response codes that count as success (default `["2xx"]`).
    #[serde(default)]
    pub success_codes: Option<Vec<StatusSpec>>,
    /// Response codes that fail a delivery at once, without retrying (e.g. `["3xx"]`).
    #[serde(default)]
    pub permanent_failure_codes: Option<Vec<StatusSpec>>,
    /// A `410 Gone` fails the delivery and deletes this subscription (default false).
    #[serde(default)]
    pub unsubscribe_on_gone: Option<bool>,
    /// A disabled subscription receives nothing published while it is disabled (default true).
    #[serde(default)]
    pub enabled: Option<bool>,
}

/// A change to a subscription; absent fields stay. Deliveries already made keep their
/// snapshot. The secret changes only through rotation.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateSubscriptionRequest {
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default)]
    pub event_types: Option<Vec<String>>,
    #[serde(default)]
    pub headers: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub retry: Option<RetryRequest>,
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub success_codes: Option<Vec<StatusSpec>>,
    /// An empty list removes them.
    #[serde(default)]
    pub permanent_failure_codes: Option<Vec<StatusSpec>>,
    #[serde(default)]
    pub unsubscribe_on_gone: Option<bool>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateSecretRequest {
    /// The new secret; generated when absent.
    #[serde(default)]
    pub secret: Option<String>,
    /// How long the old secret keeps signing beside the new one (default `24h`; `0s` ends it
    /// at once).
    #[serde(default)]
    pub grace: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReplayRequest {
    /// Replay deliveries created at or after this time (RFC 3339).
    #[serde(default)]
    pub created_after: Option<String>,
    /// … and before this time.
    #[serde(default)]
    pub created_before: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ReplayResponse {
    /// How many failed deliveries were scheduled again.
    pub replayed: u64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionResponse {
    pub id: String,
    pub namespace: String,
    pub topic: String,
    pub name: String,
    pub url: String,
    pub event_types: Vec<String>,
    pub headers: BTreeMap<String, String>,
    /// The current signing secret.
    pub secret: String,
    /// Until when the secret replaced by the last rotation still signs.
    pub previous_secret_expires_at: Option<String>,
    pub retry: RetryResponse,
    pub timeout: String,
    pub success_codes: Vec<String>,
    pub permanent_failure_codes: Vec<String>,
    pub unsubscribe_on_gone: bool,
    pub enabled: bool,
    pub created_at: String,
    pub updated_at: String,
}

impl From<&Subscription> for SubscriptionResponse {
    fn from(s: &Subscription) -> Self {
        SubscriptionResponse {
            id: s.id.clone(),
            namespace: s.namespace.clone(),
            topic: s.topic.clone(),
            name: s.name.clone(),
            url: s.url.clone(),
            event_types: s.event_types.clone(),
            headers: s.headers.iter().cloned().collect(),
            secret: s.secret.clone(),
            previous_secret_expires_at: s
                .previous_secret
                .as_ref()
                .and(s.previous_secret_until)
                .map(ts),
            retry: (&s.retry).into(),
            timeout: format_millis(s.timeout_ms),
            success_codes: s.success.to_strings(),
            permanent_failure_codes: s
                .fail_codes
                .as_ref()
                .map(SuccessCodes::to_strings)
                .unwrap_or_default(),
            unsubscribe_on_gone: s.unsubscribe_on_gone,
            enabled: s.enabled,
            created_at: ts(s.created_at),
            updated_at: ts(s.updated_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SubscriptionList {
    pub data: Vec<SubscriptionResponse>,
    pub next_cursor: Option<String>,
}

fn status_set(specs: &[StatusSpec], field: &str) -> Result<Option<SuccessCodes>, Invalid> {
    if specs.is_empty() {
        return Ok(None);
    }
    let items: Vec<String> = specs
        .iter()
        .map(|s| match s {
            StatusSpec::Code(c) => c.to_string(),
            StatusSpec::Text(t) => t.clone(),
        })
        .collect();
    SuccessCodes::parse_list(&items, field).map(Some)
}

fn timeout(state: &AppState, t: &str) -> Result<i64, Invalid> {
    state
        .webhooks
        .jobs()
        .check_timeout(duration(t, "timeout")?, "timeout")
}

impl CreateSubscriptionRequest {
    fn into_spec(self, state: &AppState) -> Result<SubscriptionSpec, Invalid> {
        Ok(SubscriptionSpec {
            id: None,
            name: self.name.unwrap_or_default(),
            url: self.url,
            event_types: self.event_types.unwrap_or_default(),
            headers: self.headers.unwrap_or_default().into_iter().collect(),
            secret: self.secret,
            retry: self.retry.map(RetryRequest::into_policy).transpose()?,
            timeout_ms: self.timeout.map(|t| timeout(state, &t)).transpose()?,
            success: self.success_codes.map(|s| success_codes(&s)).transpose()?,
            fail_codes: match self.permanent_failure_codes {
                Some(c) => status_set(&c, "permanent_failure_codes")?,
                None => None,
            },
            unsubscribe_on_gone: self.unsubscribe_on_gone.unwrap_or(false),
            body_format: None,
            meta: None,
            enabled: self.enabled,
        })
    }
}

impl UpdateSubscriptionRequest {
    fn into_change(self, state: &AppState) -> Result<SubscriptionChange, Invalid> {
        Ok(SubscriptionChange {
            name: self.name,
            url: self.url,
            event_types: self.event_types,
            headers: self.headers.map(|h| h.into_iter().collect()),
            retry: self.retry.map(RetryRequest::into_policy).transpose()?,
            timeout_ms: self.timeout.map(|t| timeout(state, &t)).transpose()?,
            success: self.success_codes.map(|s| success_codes(&s)).transpose()?,
            fail_codes: self
                .permanent_failure_codes
                .map(|c| status_set(&c, "permanent_failure_codes"))
                .transpose()?,
            unsubscribe_on_gone: self.unsubscribe_on_gone,
            meta: None,
            enabled: self.enabled,
        })
    }
}

fn subscription_json(status: StatusCode, s: &Subscription) -> Response {
    let mut resp = (status, Json(SubscriptionResponse::from(s))).into_response();
    if status == StatusCode::CREATED {
        if let Ok(v) = format!("/v1/subscriptions/{}", s.id).parse() {
            resp.headers_mut().insert(header::LOCATION, v);
        }
    }
    resp
}

/// Subscribe a URL to a topic.
#[utoipa::path(post, path = "/v1/topics/{topic}/subscriptions", tag = "webhooks",
    request_body = CreateSubscriptionRequest,
    params(("topic" = String, Path), ("Herald-Namespace" = Option<String>, Header)),
    responses((status = 201, body = SubscriptionResponse),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such topic", body = Problem, content_type = "application/problem+json")))]
pub async fn create_subscription(
    State(state): State<AppState>,
    Namespace(ns): Namespace,
    Path(topic): Path<String>,
    ApiJson(req): ApiJson<CreateSubscriptionRequest>,
) -> Result<Response, Problem> {
    let spec = req.into_spec(&state)?;
    let s = state
        .webhooks
        .create_subscription(&ns, &topic, spec)
        .await?;
    Ok(subscription_json(StatusCode::CREATED, &s))
}

/// List a topic's subscriptions.
#[utoipa::path(get, path = "/v1/topics/{topic}/subscriptions", tag = "webhooks",
    params(("topic" = String, Path), PageQuery, ("Herald-Namespace" = Option<String>, Header)),
    responses((status = 200, body = SubscriptionList), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn list_subscriptions(
    State(state): State<AppState>,
    Namespace(ns): Namespace,
    Path(topic): Path<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<SubscriptionList>, Problem> {
    state.webhooks.get_topic(&ns, &topic).await?;
    let limit = page_limit(q.limit)?;
    let mut subs = state
        .webhooks
        .list_subscriptions(&SubscriptionFilter {
            namespace: ns,
            topic: Some(topic),
            created: CreatedRange::default(),
            page: Page {
                after: q.cursor,
                offset: 0,
                limit: limit + 1,
            },
        })
        .await?;
    let more = subs.len() > limit as usize;
    subs.truncate(limit as usize);
    Ok(Json(SubscriptionList {
        next_cursor: more.then(|| subs.last().map(|s| s.id.clone())).flatten(),
        data: subs.iter().map(SubscriptionResponse::from).collect(),
    }))
}

/// Get a subscription, with its signing secret.
#[utoipa::path(get, path = "/v1/subscriptions/{id}", tag = "webhooks",
    params(("id" = String, Path), ("Herald-Namespace" = Option<String>, Header)),
    responses((status = 200, body = SubscriptionResponse), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get_subscription(
    State(state): State<AppState>,
    Namespace(ns): Namespace,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let s = state.webhooks.get_subscription(Some(&ns), &id).await?;
    Ok(subscription_json(StatusCode::OK, &s))
}

/// Change a subscription. Deliveries already made keep their snapshot.
#[utoipa::path(patch, path = "/v1/subscriptions/{id}", tag = "webhooks",
    request_body = UpdateSubscriptionRequest,
    params(("id" = String, Path), ("Herald-Namespace" = Option<String>, Header)),
    responses((status = 200, body = SubscriptionResponse),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn update_subscription(
    State(state): State<AppState>,
    Namespace(ns): Namespace,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateSubscriptionRequest>,
) -> Result<Response, Problem> {
    let change = req.into_change(&state)?;
    let s = state.webhooks.update_subscription(&ns, &id, change).await?;
    Ok(subscription_json(StatusCode::OK, &s))
}

/// Delete a subscription. Its waiting deliveries are cancelled; their history stays.
#[utoipa::path(delete, path = "/v1/subscriptions/{id}", tag = "webhooks",
    params(("id" = String, Path), ("Herald-Namespace" = Option<String>, Header)),
    responses((status = 204), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn delete_subscription(
    State(state): State<AppState>,
    Namespace(ns): Namespace,
    Path(id): Path<String>,
) -> Result<StatusCode, Problem> {
    state.webhooks.delete_subscription(&ns, &id).await?;
    Ok(StatusCode::NO_CONTENT)
}

/// Rotate the signing secret. During the grace period both secrets sign every delivery.
#[utoipa::path(post, path = "/v1/subscriptions/{id}/rotate-secret", tag = "webhooks",
    request_body = RotateSecretRequest,
    params(("id" = String, Path), ("Herald-Namespace" = Option<String>, Header)),
    responses((status = 200, body = SubscriptionResponse),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn rotate_secret(
    State(state): State<AppState>,
    Namespace(ns): Namespace,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<RotateSecretRequest>,
) -> Result<Response, Problem> {
    let grace = req.grace.map(|g| duration(&g, "grace")).transpose()?;
    let s = state
        .webhooks
        .rotate_secret(&ns, &id, req.secret, grace)
        .await?;
    Ok(subscription_json(StatusCode::OK, &s))
}

/// Deliver again, now, every failed delivery of this subscription created in a time range.
#[utoipa::path(post, path = "/v1/subscriptions/{id}/replay", tag = "webhooks",
    request_body = ReplayRequest,
    params(("id" = String, Path), ("Herald-Namespace" = Option<String>, Header)),
    responses((status = 200, body = ReplayResponse),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn replay(
    State(state): State<AppState>,
    Namespace(ns): Namespace,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<ReplayRequest>,
) -> Result<Json<ReplayResponse>, Problem> {
    let t = |v: &Option<String>, f: &str| v.as_deref().map(|s| parse_ts(s, f)).transpose();
    let range = CreatedRange {
        gte: t(&req.created_after, "created_after")?,
        lt: t(&req.created_before, "created_before")?,
        ..CreatedRange::default()
    };
    let replayed = state.webhooks.replay_failed(&ns, &id, &range).await?;
    Ok(Json(ReplayResponse { replayed }))
}

// ---------- messages ----------

/// A message to publish. Give at most one of `payload`, `payload_text`, `payload_base64`.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishRequest {
    /// What happened, e.g. `order.created`; subscriptions filter on it.
    pub event_type: String,
    /// A JSON payload (content type `application/json` unless given).
    #[serde(default)]
    pub payload: Option<Value>,
    /// A text payload (content type `text/plain; charset=utf-8` unless given).
    #[serde(default)]
    pub payload_text: Option<String>,
    /// Any payload, base64-encoded (content type `application/octet-stream` unless given).
    #[serde(default)]
    pub payload_base64: Option<String>,
    #[serde(default)]
    pub content_type: Option<String>,
    /// Repeating a publish with the same key and content returns the first message; different
    /// content is a 409.
    #[serde(default)]
    pub idempotency_key: Option<String>,
    /// Deliver at this time (RFC 3339) instead of now.
    #[serde(default)]
    pub deliver_at: Option<String>,
    /// Deliver after this delay, e.g. `10m`.
    #[serde(default)]
    pub delay: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageResponse {
    pub id: Uuid,
    pub namespace: String,
    pub topic: String,
    pub event_type: String,
    pub content_type: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload_base64: Option<String>,
    pub idempotency_key: Option<String>,
    pub deliver_at: String,
    /// How many deliveries the publish created.
    pub deliveries: u32,
    /// The deliveries' ids, on the response to the publish that created them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delivery_ids: Option<Vec<Uuid>>,
    pub created_at: String,
}

impl From<&Message> for MessageResponse {
    fn from(m: &Message) -> Self {
        let ct = m.content_type.to_ascii_lowercase();
        let (payload, payload_text, payload_base64) = if ct.starts_with("application/json") {
            match serde_json::from_slice(&m.payload) {
                Ok(v) => (Some(v), None, None),
                Err(_) => (None, None, Some(STANDARD.encode(&m.payload))),
            }
        } else if ct.starts_with("text/") {
            match std::str::from_utf8(&m.payload) {
                Ok(s) => (None, Some(s.to_string()), None),
                Err(_) => (None, None, Some(STANDARD.encode(&m.payload))),
            }
        } else {
            (None, None, Some(STANDARD.encode(&m.payload)))
        };
        MessageResponse {
            id: m.id,
            namespace: m.namespace.clone(),
            topic: m.topic.clone(),
            event_type: m.event_type.clone(),
            content_type: m.content_type.clone(),
            payload,
            payload_text,
            payload_base64,
            idempotency_key: m.idempotency_key.clone(),
            deliver_at: ts(m.deliver_at),
            deliveries: m.deliveries,
            delivery_ids: None,
            created_at: ts(m.created_at),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct MessageList {
    pub data: Vec<MessageResponse>,
    pub next_cursor: Option<String>,
}

/// Publish a message: in one transaction Herald stores it and creates one delivery per
/// matching enabled subscription.
#[utoipa::path(post, path = "/v1/topics/{topic}/messages", tag = "webhooks",
    request_body = PublishRequest,
    params(("topic" = String, Path), ("Herald-Namespace" = Option<String>, Header)),
    responses((status = 201, body = MessageResponse),
        (status = 200, description = "Same idempotency key and content: the first message", body = MessageResponse),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such topic", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Idempotency key reused with different content", body = Problem, content_type = "application/problem+json")))]
pub async fn publish(
    State(state): State<AppState>,
    Namespace(ns): Namespace,
    Path(topic): Path<String>,
    ApiJson(req): ApiJson<PublishRequest>,
) -> Result<Response, Problem> {
    let given = [
        req.payload.is_some(),
        req.payload_text.is_some(),
        req.payload_base64.is_some(),
    ];
    if given.iter().filter(|g| **g).count() > 1 {
        return Err(Problem::invalid(
            "payload",
            "give only one of payload, payload_text, payload_base64",
        ));
    }
    let (default_ct, payload) = if let Some(v) = &req.payload {
        (
            "application/json",
            serde_json::to_vec(v).unwrap_or_default(),
        )
    } else if let Some(t) = req.payload_text {
        ("text/plain; charset=utf-8", t.into_bytes())
    } else if let Some(b) = &req.payload_base64 {
        (
            "application/octet-stream",
            STANDARD
                .decode(b.as_bytes())
                .map_err(|e| Problem::invalid("payload_base64", e.to_string()))?,
        )
    } else {
        ("application/octet-stream", Vec::new())
    };
    let deliver_at = when(&state, req.deliver_at.as_deref(), req.delay.as_deref())?;
    let out = state
        .webhooks
        .publish(PublishSpec {
            namespace: ns,
            topic,
            event_type: req.event_type,
            content_type: req.content_type.unwrap_or_else(|| default_ct.into()),
            payload,
            idempotency_key: req.idempotency_key,
            deliver_at,
        })
        .await?;
    let mut body = MessageResponse::from(&out.message);
    let status = if out.existed {
        StatusCode::OK
    } else {
        body.delivery_ids = Some(out.deliveries);
        StatusCode::CREATED
    };
    let mut resp = (status, Json(body)).into_response();
    if let Ok(v) = format!("/v1/messages/{}", out.message.id).parse() {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListMessagesQuery {
    /// Published at or after (RFC 3339).
    pub created_after: Option<String>,
    /// Published before (RFC 3339).
    pub created_before: Option<String>,
    pub cursor: Option<String>,
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<u32>,
}

/// List a topic's messages, oldest first.
#[utoipa::path(get, path = "/v1/topics/{topic}/messages", tag = "webhooks",
    params(("topic" = String, Path), ListMessagesQuery, ("Herald-Namespace" = Option<String>, Header)),
    responses((status = 200, body = MessageList), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn list_messages(
    State(state): State<AppState>,
    Namespace(ns): Namespace,
    Path(topic): Path<String>,
    ApiQuery(q): ApiQuery<ListMessagesQuery>,
) -> Result<Json<MessageList>, Problem> {
    state.webhooks.get_topic(&ns, &topic).await?;
    let limit = page_limit(q.limit)?;
    let after = parse_cursor(q.cursor.as_deref())?;
    let t = |v: &Option<String>, f: &str| v.as_deref().map(|s| parse_ts(s, f)).transpose();
    let mut msgs = state
        .webhooks
        .list_messages(&MessageFilter {
            namespace: ns,
            topic: Some(topic),
            created: CreatedRange {
                gte: t(&q.created_after, "created_after")?,
                lt: t(&q.created_before, "created_before")?,
                ..CreatedRange::default()
            },
            page: Page {
                after: after.map(|u| u.to_string()),
                offset: 0,
                limit: limit + 1,
            },
        })
        .await?;
    let more = msgs.len() > limit as usize;
    msgs.truncate(limit as usize);
    Ok(Json(MessageList {
        next_cursor: more
            .then(|| msgs.last().map(|m| m.id.to_string()))
            .flatten(),
        data: msgs.iter().map(MessageResponse::from).collect(),
    }))
}

fn parse_id(id: &str, what: &'static str) -> Result<Uuid, Problem> {
    Uuid::parse_str(id).map_err(|_| Problem::not_found(what))
}

/// Get a message.
#[utoipa::path(get, path = "/v1/messages/{id}", tag = "webhooks",
    params(("id" = Uuid, Path), ("Herald-Namespace" = Option<String>, Header)),
    responses((status = 200, body = MessageResponse), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get_message(
    State(state): State<AppState>,
    Namespace(ns): Namespace,
    Path(id): Path<String>,
) -> Result<Json<MessageResponse>, Problem> {
    let m = state
        .webhooks
        .get_message(&ns, parse_id(&id, "message")?)
        .await?;
    Ok(Json((&m).into()))
}

// ---------- deliveries ----------

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryResponse {
    /// The delivery's id; also its job id (`/v1/jobs/{id}`).
    pub id: Uuid,
    pub namespace: String,
    pub topic: String,
    pub subscription_id: String,
    pub message_id: Uuid,
    pub event_type: String,
    pub state: JobState,
    /// The target URL, as the subscription had it when the message was published.
    pub url: String,
    pub deliver_at: String,
    pub next_attempt_at: Option<String>,
    pub attempts: u32,
    pub max_attempts: u32,
    pub last_attempt: Option<LastAttempt>,
    pub created_at: String,
    pub updated_at: String,
}

impl DeliveryResponse {
    fn from_job(j: &Job) -> Option<Self> {
        let o = j.origin.as_ref()?;
        Some(DeliveryResponse {
            id: j.id,
            namespace: j.namespace.clone(),
            topic: o.topic.clone(),
            subscription_id: o.subscription_id.clone(),
            message_id: o.message_id,
            event_type: o.event_type.clone(),
            state: j.state,
            url: j.target.url.clone(),
            deliver_at: ts(j.deliver_at),
            next_attempt_at: (j.state == JobState::Scheduled)
                .then_some(j.next_attempt_at)
                .flatten()
                .map(ts),
            attempts: j.attempts,
            max_attempts: j.retry.max_attempts(),
            last_attempt: j.last_attempt_at.map(|at| LastAttempt {
                at: ts(at),
                status: j.last_status,
                error: j.last_error.clone(),
            }),
            created_at: ts(j.created_at),
            updated_at: ts(j.updated_at),
        })
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct DeliveryList {
    pub data: Vec<DeliveryResponse>,
    pub next_cursor: Option<String>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListDeliveriesQuery {
    /// Only deliveries of messages published to this topic.
    pub topic: Option<String>,
    /// Only deliveries to this subscription.
    pub subscription: Option<String>,
    /// Only deliveries of this message.
    pub message: Option<String>,
    /// Comma-separated states, e.g. `failed,scheduled`.
    pub state: Option<String>,
    /// Created at or after (RFC 3339).
    pub created_after: Option<String>,
    /// Created before (RFC 3339).
    pub created_before: Option<String>,
    pub cursor: Option<String>,
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<u32>,
}

fn delivery_json(j: &Job) -> Result<Json<DeliveryResponse>, Problem> {
    DeliveryResponse::from_job(j)
        .map(Json)
        .ok_or_else(|| Problem::not_found("delivery"))
}

/// List deliveries, oldest first, with filters and cursor pagination.
#[utoipa::path(get, path = "/v1/deliveries", tag = "webhooks",
    params(ListDeliveriesQuery, ("Herald-Namespace" = Option<String>, Header)),
    responses((status = 200, body = DeliveryList), (status = 400, body = Problem, content_type = "application/problem+json")))]
pub async fn list_deliveries(
    State(state): State<AppState>,
    Namespace(ns): Namespace,
    ApiQuery(q): ApiQuery<ListDeliveriesQuery>,
) -> Result<Json<DeliveryList>, Problem> {
    let mut states = Vec::new();
    for s in q
        .state
        .iter()
        .flat_map(|s| s.split(','))
        .filter(|s| !s.is_empty())
    {
        states.push(JobState::parse(s.trim()).ok_or_else(|| {
            Problem::invalid(
                "state",
                format!("{s:?} is not one of scheduled, in_flight, succeeded, failed, cancelled"),
            )
        })?);
    }
    let message_id = q
        .message
        .as_deref()
        .map(|m| Uuid::parse_str(m).map_err(|_| Problem::invalid("message", "not a message id")))
        .transpose()?;
    let t = |v: &Option<String>, f: &str| v.as_deref().map(|s| parse_ts(s, f)).transpose();
    let limit = page_limit(q.limit)?;
    let after = parse_cursor(q.cursor.as_deref())?;
    let mut jobs = state
        .webhooks
        .list_deliveries(&DeliveryFilter {
            namespace: ns,
            topic: q.topic,
            subscription_id: q.subscription,
            message_id,
            states,
            created: CreatedRange {
                gte: t(&q.created_after, "created_after")?,
                lt: t(&q.created_before, "created_before")?,
                ..CreatedRange::default()
            },
            page: Page {
                after: after.map(|u| u.to_string()),
                offset: 0,
                limit: limit + 1,
            },
        })
        .await?;
    let more = jobs.len() > limit as usize;
    jobs.truncate(limit as usize);
    Ok(Json(DeliveryList {
        next_cursor: more
            .then(|| jobs.last().map(|j| j.id.to_string()))
            .flatten(),
        data: jobs.iter().filter_map(DeliveryResponse::from_job).collect(),
    }))
}

/// Get a delivery.
#[utoipa::path(get, path = "/v1/deliveries/{id}", tag = "webhooks",
    params(("id" = Uuid, Path), ("Herald-Namespace" = Option<String>, Header)),
    responses((status = 200, body = DeliveryResponse), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get_delivery(
    State(state): State<AppState>,
    Namespace(ns): Namespace,
    Path(id): Path<String>,
) -> Result<Json<DeliveryResponse>, Problem> {
    let j = state
        .webhooks
        .get_delivery(&ns, parse_id(&id, "delivery")?)
        .await?;
    delivery_json(&j)
}

/// A delivery's attempts, oldest first: request, response, error and duration of each.
#[utoipa::path(get, path = "/v1/deliveries/{id}/attempts", tag = "webhooks",
    params(("id" = Uuid, Path), PageQuery, ("Herald-Namespace" = Option<String>, Header)),
    responses((status = 200, body = AttemptList), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn delivery_attempts(
    State(state): State<AppState>,
    Namespace(ns): Namespace,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<AttemptList>, Problem> {
    let limit = page_limit(q.limit)?;
    let mut attempts = state
        .webhooks
        .delivery_attempts(
            &ns,
            parse_id(&id, "delivery")?,
            parse_cursor(q.cursor.as_deref())?,
            limit + 1,
        )
        .await?;
    let more = attempts.len() > limit as usize;
    attempts.truncate(limit as usize);
    Ok(Json(AttemptList {
        next_cursor: more
            .then(|| attempts.last().map(|a| a.id.to_string()))
            .flatten(),
        data: attempts.into_iter().map(AttemptView::from).collect(),
    }))
}

/// Deliver a finished delivery again, now, with a fresh attempt budget.
#[utoipa::path(post, path = "/v1/deliveries/{id}/retry", tag = "webhooks",
    params(("id" = Uuid, Path), ("Herald-Namespace" = Option<String>, Header)),
    responses((status = 200, body = DeliveryResponse),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not finished", body = Problem, content_type = "application/problem+json")))]
pub async fn retry_delivery(
    State(state): State<AppState>,
    Namespace(ns): Namespace,
    Path(id): Path<String>,
) -> Result<Json<DeliveryResponse>, Problem> {
    let j = state
        .webhooks
        .retry_delivery(&ns, parse_id(&id, "delivery")?)
        .await?;
    delivery_json(&j)
}
