//! The hammer surface (allisson/hammer's grpc-gateway REST API) on a listener of its own: a
//! thin adapter over the webhook service. hammer topics, subscriptions and messages are
//! Herald's, in one namespace (`HammerConfig::namespace`); a hammer delivery is a job.
//!
//! Kept from the original: every REST route with its shapes and status codes (200 for
//! creates, `{}` for deletes), grpc-gateway's error JSON (`error`, `code`, `message`,
//! `details`) and code mapping (most failures 500), omitted zero values (an empty list is
//! `{}`), `topicId`-style field names and numbers as strings accepted, ULID ids for
//! messages, deliveries and attempts, base64 `data`, the seed README's delivery body,
//! success = {200, 201, 202, 204}, a fixed retry delay, a per-attempt timeout, raw
//! request/response dumps, pagination 25 by default and at most 50, `created_at_*` filters,
//! `/liveness` and `/readiness`. Not kept: the HTTP call inside a database transaction, the
//! non-cryptographic token generator, unsigned deliveries (each one also carries Standard
//! Webhooks headers, with a `whsec_` secret readable through the native API).

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use rand::Rng;
use serde::de::{self, Deserializer};
use serde::Deserialize;
use serde_json::{json, Map, Value};
use uuid::Uuid;

use crate::config::HammerConfig;
use crate::domain::{Attempt, AttemptOutcome, Invalid, Job, JobState, RetryPolicy, SuccessCodes};
use crate::webhooks::model::{
    rfc3339, ulid_of, uuid_of_ulid, AttemptFilter, BodyFormat, CreatedRange, DeliveryFilter,
    Message, MessageFilter, Page, Subscription, SubscriptionFilter, Topic, TopicFilter,
};
use crate::webhooks::{
    validate_subscription_id, PublishSpec, SubscriptionChange, SubscriptionSpec, WebhookError,
    WebhookService,
};

/// The event type hammer messages are published with (hammer has no event types; this is
/// the `type` its later CloudEvents body used).
pub const EVENT_TYPE: &str = "hammer.message.created";

#[derive(Clone)]
struct Hammer {
    service: WebhookService,
    config: HammerConfig,
}

pub fn router(service: WebhookService, config: HammerConfig) -> Router {
    let not_found = || async { GwError::new(StatusCode::NOT_FOUND, 5, "Not Found") };
    Router::new()
        .route("/v1/topics", get(list_topics).post(create_topic))
        .route(
            "/v1/topics/{id}",
            get(get_topic).patch(update_topic).delete(delete_topic),
        )
        .route(
            "/v1/subscriptions",
            get(list_subscriptions).post(create_subscription),
        )
        .route(
            "/v1/subscriptions/{id}",
            get(get_subscription)
                .patch(update_subscription)
                .delete(delete_subscription),
        )
        .route("/v1/messages", get(list_messages).post(create_message))
        .route("/v1/messages/{id}", get(get_message).delete(delete_message))
        .route("/v1/deliveries", get(list_deliveries))
        .route("/v1/deliveries/{id}", get(get_delivery))
        .route("/v1/delivery-attempts", get(list_attempts))
        .route("/v1/delivery-attempts/{id}", get(get_attempt))
        .route("/liveness", get(|| async { StatusCode::NO_CONTENT }))
        .route("/readiness", get(readiness))
        .fallback(not_found)
        .method_not_allowed_fallback(|| async {
            GwError::new(StatusCode::NOT_IMPLEMENTED, 12, "Method Not Allowed")
        })
        .with_state(Hammer { service, config })
}

// ---------- errors ----------

/// grpc-gateway v1's error body.
#[derive(Debug)]
struct GwError {
    status: StatusCode,
    code: u32,
    message: String,
    details: Vec<Value>,
}

impl GwError {
    fn new(status: StatusCode, code: u32, message: impl Into<String>) -> Self {
        GwError {
            status,
            code,
            message: message.into(),
            details: vec![],
        }
    }
    fn internal(message: impl Into<String>) -> Self {
        GwError::new(StatusCode::INTERNAL_SERVER_ERROR, 13, message)
    }
    fn not_found(what: &str) -> Self {
        GwError::new(StatusCode::NOT_FOUND, 5, format!("{what}_does_not_exists"))
    }
    /// A create's validation failure: `invalid_{what}` with `google.rpc.BadRequest` details.
    fn invalid_create(what: &str, field: &str, description: &str) -> Self {
        GwError {
            details: vec![json!({
                "@type": "type.googleapis.com/google.rpc.BadRequest",
                "field_violations": [{"field": field, "description": description}],
            })],
            ..GwError::new(StatusCode::BAD_REQUEST, 3, format!("invalid_{what}"))
        }
    }
    /// An update's validation failure: no details.
    fn invalid_update(field: &str, description: &str) -> Self {
        GwError::new(
            StatusCode::BAD_REQUEST,
            3,
            format!("{field}: {description}."),
        )
    }
    fn bad_body(e: impl std::fmt::Display) -> Self {
        GwError::new(StatusCode::BAD_REQUEST, 3, e.to_string())
    }
    fn store(e: WebhookError) -> Self {
        tracing::error!(error = %e, "hammer surface: storage error");
        GwError::internal("internal error")
    }
}

impl IntoResponse for GwError {
    fn into_response(self) -> Response {
        let body = json!({
            "error": self.message,
            "code": self.code,
            "message": self.message,
            "details": self.details,
        });
        (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            body.to_string(),
        )
            .into_response()
    }
}

/// Translates a Herald field name into hammer's.
fn hammer_field(f: &str) -> &str {
    match f {
        "retry.max_attempts" => "max_delivery_attempts",
        "retry.delay" => "delivery_attempt_delay",
        "timeout" => "delivery_attempt_timeout",
        "payload" => "data",
        other => other,
    }
}

// ---------- request parsing ----------

/// proto3 JSON: a uint32 may be a number or a string.
fn lenient_u32<'de, D: Deserializer<'de>>(d: D) -> Result<u32, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum N {
        Num(u64),
        Str(String),
        Null(()),
    }
    match N::deserialize(d)? {
        N::Num(n) => u32::try_from(n).map_err(de::Error::custom),
        N::Str(s) if s.trim().is_empty() => Ok(0),
        N::Str(s) => s.trim().parse().map_err(de::Error::custom),
        N::Null(()) => Ok(0),
    }
}

fn lenient_string<'de, D: Deserializer<'de>>(d: D) -> Result<String, D::Error> {
    Ok(Option::<String>::deserialize(d)?.unwrap_or_default())
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TopicIn {
    #[serde(deserialize_with = "lenient_string")]
    id: String,
    #[serde(deserialize_with = "lenient_string")]
    name: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TopicBody {
    topic: Option<TopicIn>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SubscriptionIn {
    #[serde(deserialize_with = "lenient_string")]
    id: String,
    #[serde(alias = "topicId", deserialize_with = "lenient_string")]
    topic_id: String,
    #[serde(deserialize_with = "lenient_string")]
    name: String,
    #[serde(deserialize_with = "lenient_string")]
    url: String,
    #[serde(alias = "secretToken", deserialize_with = "lenient_string")]
    secret_token: String,
    #[serde(alias = "maxDeliveryAttempts", deserialize_with = "lenient_u32")]
    max_delivery_attempts: u32,
    #[serde(alias = "deliveryAttemptDelay", deserialize_with = "lenient_u32")]
    delivery_attempt_delay: u32,
    #[serde(alias = "deliveryAttemptTimeout", deserialize_with = "lenient_u32")]
    delivery_attempt_timeout: u32,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SubscriptionBody {
    subscription: Option<SubscriptionIn>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct MessageIn {
    #[serde(alias = "topicId", deserialize_with = "lenient_string")]
    topic_id: String,
    #[serde(alias = "contentType", deserialize_with = "lenient_string")]
    content_type: String,
    #[serde(deserialize_with = "lenient_string")]
    data: String,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct MessageBody {
    message: Option<MessageIn>,
}

fn parse_body<T: for<'de> Deserialize<'de> + Default>(body: &Bytes) -> Result<T, GwError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body).map_err(GwError::bad_body)
}

fn valid_id(id: &str) -> bool {
    validate_subscription_id(id, "id").is_ok()
}

/// hammer's list query: `limit`, `offset`, `created_at_gt/gte/lt/lte` and filters.
struct ListQuery {
    page: Page,
    created: CreatedRange,
    params: HashMap<String, String>,
}

fn parse_time(name: &str, v: &str) -> Result<i64, GwError> {
    let v = v.trim();
    if let Ok(t) = v.parse::<jiff::Timestamp>() {
        return Ok(t.as_millisecond());
    }
    // The original handed these strings to PostgreSQL, which also takes a plain date or a
    // date and time without offset (read as UTC).
    if let Ok(dt) = v.parse::<jiff::civil::DateTime>() {
        if let Ok(z) = dt.to_zoned(jiff::tz::TimeZone::UTC) {
            return Ok(z.timestamp().as_millisecond());
        }
    }
    // Like the original, a value the database cannot read is an internal error.
    Err(GwError::internal(format!(
        "pq: invalid input syntax for type timestamp: \"{v}\" ({name})"
    )))
}

impl ListQuery {
    fn parse(raw: Option<&str>, config: &HammerConfig) -> Result<ListQuery, GwError> {
        let params: HashMap<String, String> = form_urlencoded::parse(raw.unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        let num = |k: &str| -> Result<u32, GwError> {
            match params.get(k).map(|v| v.trim()) {
                None | Some("") => Ok(0),
                Some(v) => v.parse().map_err(|_| {
                    GwError::bad_body(format!(
                        "type mismatch, parameter: {k}, error: strconv.ParseUint: parsing {v:?}: invalid syntax"
                    ))
                }),
            }
        };
        let limit = match num("limit")? {
            0 => config.default_page,
            n => n.min(config.max_page),
        };
        let mut created = CreatedRange::default();
        for (k, slot) in [
            ("created_at_gt", &mut created.gt),
            ("created_at_gte", &mut created.gte),
            ("created_at_lt", &mut created.lt),
            ("created_at_lte", &mut created.lte),
        ] {
            if let Some(v) = params.get(k).filter(|v| !v.is_empty()) {
                *slot = Some(parse_time(k, v)?);
            }
        }
        Ok(ListQuery {
            page: Page {
                after: None,
                offset: num("offset")?,
                limit,
            },
            created,
            params,
        })
    }

    fn param(&self, k: &str) -> Option<String> {
        self.params.get(k).filter(|v| !v.is_empty()).cloned()
    }
}

// ---------- response shapes ----------

/// A JSON object that leaves out zero values, as grpc-gateway v1 does.
#[derive(Default)]
struct Obj(Map<String, Value>);

impl Obj {
    fn s(mut self, k: &str, v: &str) -> Self {
        if !v.is_empty() {
            self.0.insert(k.into(), Value::String(v.into()));
        }
        self
    }
    fn n(mut self, k: &str, v: i64) -> Self {
        if v != 0 {
            self.0.insert(k.into(), json!(v));
        }
        self
    }
    fn b(mut self, k: &str, v: bool) -> Self {
        if v {
            self.0.insert(k.into(), Value::Bool(true));
        }
        self
    }
    fn done(self) -> Value {
        Value::Object(self.0)
    }
}

fn ok(v: Value) -> Response {
    (
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (
                header::HeaderName::from_static("grpc-metadata-content-type"),
                HeaderValue::from_static("application/grpc"),
            ),
        ],
        v.to_string(),
    )
        .into_response()
}

fn list(key: &str, items: Vec<Value>) -> Response {
    if items.is_empty() {
        ok(json!({}))
    } else {
        ok(json!({ key: items }))
    }
}

fn topic_json(t: &Topic) -> Value {
    Obj::default()
        .s("id", &t.name)
        .s("name", &t.description)
        .s("created_at", &rfc3339(t.created_at))
        .s("updated_at", &rfc3339(t.updated_at))
        .done()
}

fn secs(ms: i64) -> i64 {
    ms / 1000
}

/// `(max attempts, fixed delay in seconds)` of a policy, as hammer numbers.
fn hammer_policy(p: &RetryPolicy) -> (i64, i64) {
    let delay = match p {
        RetryPolicy::Fixed { delay_ms, .. } => *delay_ms,
        other => other.delay_after(1, 0.0).unwrap_or(0),
    };
    (p.max_attempts() as i64, secs(delay))
}

fn token(s: &Subscription) -> &str {
    s.meta
        .as_ref()
        .and_then(|m| m.get("secret_token"))
        .and_then(Value::as_str)
        .unwrap_or("")
}

fn subscription_json(s: &Subscription) -> Value {
    let (attempts, delay) = hammer_policy(&s.retry);
    Obj::default()
        .s("id", &s.id)
        .s("topic_id", &s.topic)
        .s("name", &s.name)
        .s("url", &s.url)
        .s("secret_token", token(s))
        .n("max_delivery_attempts", attempts)
        .n("delivery_attempt_delay", delay)
        .n("delivery_attempt_timeout", secs(s.timeout_ms))
        .s("created_at", &rfc3339(s.created_at))
        .s("updated_at", &rfc3339(s.updated_at))
        .done()
}

fn message_json(m: &Message) -> Value {
    Obj::default()
        .s("id", &ulid_of(m.id))
        .s("topic_id", &m.topic)
        .s("content_type", &m.content_type)
        .s("data", &STANDARD.encode(&m.payload))
        .s("created_at", &rfc3339(m.created_at))
        .done()
}

fn status_of(state: JobState) -> &'static str {
    match state {
        JobState::Scheduled | JobState::InFlight => "pending",
        JobState::Succeeded => "completed",
        JobState::Failed | JobState::Cancelled => "failed",
    }
}

fn delivery_json(j: &Job, msg: Option<&Message>) -> Value {
    let Some(o) = &j.origin else {
        return json!({});
    };
    let body = j.target.body.to_bytes().unwrap_or_default();
    // The secret token as it was snapshotted into the delivery body.
    let token = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| {
            v.get("secret_token")
                .and_then(Value::as_str)
                .map(String::from)
        })
        .unwrap_or_default();
    let (attempts, delay) = hammer_policy(&j.retry);
    let scheduled = j.next_attempt_at.unwrap_or(j.deliver_at);
    Obj::default()
        .s("id", &ulid_of(j.id))
        .s("topic_id", &o.topic)
        .s("subscription_id", &o.subscription_id)
        .s("message_id", &ulid_of(o.message_id))
        .s(
            "content_type",
            msg.map(|m| m.content_type.as_str()).unwrap_or(""),
        )
        .s(
            "data",
            &msg.map(|m| STANDARD.encode(&m.payload)).unwrap_or_default(),
        )
        .s("url", &j.target.url)
        .s("secret_token", &token)
        .n("max_delivery_attempts", attempts)
        .n("delivery_attempt_delay", delay)
        .n("delivery_attempt_timeout", secs(j.timeout_ms))
        .s(
            "scheduled_at",
            &rfc3339(if j.state.is_terminal() {
                j.last_attempt_at.unwrap_or(scheduled)
            } else {
                scheduled
            }),
        )
        .n("delivery_attempts", j.attempts as i64)
        .s("status", status_of(j.state))
        .s("created_at", &rfc3339(j.created_at))
        .s("updated_at", &rfc3339(j.updated_at))
        .done()
}

/// `Content-Type` rather than `content-type`, as Go's dumps print header names.
fn canonical(name: &str) -> String {
    name.split('-')
        .map(|p| {
            let mut c = p.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + &c.as_str().to_ascii_lowercase(),
                None => String::new(),
            }
        })
        .collect::<Vec<_>>()
        .join("-")
}

fn request_dump(a: &Attempt, job: Option<&Job>) -> String {
    let url = url::Url::parse(&a.request_url).ok();
    let path = url
        .as_ref()
        .map(|u| match u.query() {
            Some(q) => format!("{}?{q}", u.path()),
            None => u.path().to_string(),
        })
        .unwrap_or_else(|| "/".into());
    let host = url
        .as_ref()
        .and_then(|u| {
            u.host_str().map(|h| match u.port() {
                Some(p) => format!("{h}:{p}"),
                None => h.to_string(),
            })
        })
        .unwrap_or_default();
    let mut out = format!("{} {path} HTTP/1.1\r\nHost: {host}\r\n", a.request_method);
    for (k, v) in &a.request_headers {
        out.push_str(&format!("{}: {v}\r\n", canonical(k)));
    }
    out.push_str("\r\n");
    if let Some(b) = job.and_then(|j| j.target.body.to_bytes()) {
        out.push_str(&String::from_utf8_lossy(&b));
    }
    out
}

fn response_dump(a: &Attempt) -> String {
    let Some(status) = a.response_status else {
        return String::new();
    };
    let reason = StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let mut out = format!("HTTP/1.1 {status} {reason}\r\n");
    for (k, v) in &a.response_headers {
        out.push_str(&format!("{}: {v}\r\n", canonical(k)));
    }
    out.push_str("\r\n");
    if let Some(b) = &a.response_body {
        out.push_str(&String::from_utf8_lossy(b));
    }
    out
}

fn attempt_json(a: &Attempt, job: Option<&Job>) -> Value {
    Obj::default()
        .s("id", &ulid_of(a.id))
        .s("delivery_id", &ulid_of(a.job_id))
        .s("request", &request_dump(a, job))
        .s("response", &response_dump(a))
        .n(
            "response_status_code",
            a.response_status.unwrap_or(0) as i64,
        )
        .n("execution_duration", a.duration_ms)
        .b("success", a.outcome == AttemptOutcome::Succeeded)
        .s("error", a.error.as_deref().unwrap_or(""))
        .s("created_at", &rfc3339(a.started_at + a.duration_ms))
        .done()
}

fn random_token(len: usize) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
    let mut rng = rand::rng();
    (0..len)
        .map(|_| ALPHABET[rng.random_range(0..ALPHABET.len())] as char)
        .collect()
}

// ---------- handlers: topics ----------

async fn create_topic(State(h): State<Hammer>, body: Bytes) -> Result<Response, GwError> {
    let t = parse_body::<TopicBody>(&body)?.topic.unwrap_or_default();
    for (field, value) in [("id", &t.id), ("name", &t.name)] {
        if value.is_empty() {
            return Err(GwError::invalid_create("topic", field, "cannot be blank"));
        }
    }
    if !valid_id(&t.id) {
        return Err(GwError::invalid_create(
            "topic",
            "id",
            "must be in a valid format",
        ));
    }
    match h
        .service
        .create_topic(&h.config.namespace, &t.id, &t.name)
        .await
    {
        Ok(t) => Ok(ok(topic_json(&t))),
        Err(WebhookError::TopicExists(_)) => Err(GwError::internal("topic_already_exists")),
        Err(WebhookError::Invalid(i)) => Err(GwError::invalid_create(
            "topic",
            if i.field == "description" {
                "name"
            } else {
                "id"
            },
            &i.message,
        )),
        Err(e) => Err(GwError::store(e)),
    }
}

async fn update_topic(
    State(h): State<Hammer>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, GwError> {
    let t = parse_body::<TopicBody>(&body)?.topic.unwrap_or_default();
    if t.name.is_empty() {
        return Err(GwError::invalid_update("name", "cannot be blank"));
    }
    match h
        .service
        .update_topic(&h.config.namespace, &id, &t.name)
        .await
    {
        Ok(t) => Ok(ok(topic_json(&t))),
        Err(WebhookError::NotFound(_)) => Err(GwError::internal("topic_does_not_exists")),
        Err(WebhookError::Invalid(i)) => Err(GwError::invalid_update("name", &i.message)),
        Err(e) => Err(GwError::store(e)),
    }
}

async fn get_topic(State(h): State<Hammer>, Path(id): Path<String>) -> Result<Response, GwError> {
    match h.service.get_topic(&h.config.namespace, &id).await {
        Ok(t) => Ok(ok(topic_json(&t))),
        Err(WebhookError::NotFound(_)) => Err(GwError::not_found("topic")),
        Err(e) => Err(GwError::store(e)),
    }
}

async fn list_topics(State(h): State<Hammer>, RawQuery(q): RawQuery) -> Result<Response, GwError> {
    let q = ListQuery::parse(q.as_deref(), &h.config)?;
    let topics = h
        .service
        .list_topics(&TopicFilter {
            namespace: h.config.namespace.clone(),
            created: q.created,
            page: q.page,
        })
        .await
        .map_err(GwError::store)?;
    Ok(list("topics", topics.iter().map(topic_json).collect()))
}

async fn delete_topic(
    State(h): State<Hammer>,
    Path(id): Path<String>,
) -> Result<Response, GwError> {
    match h.service.delete_topic(&h.config.namespace, &id).await {
        Ok(()) => Ok(ok(json!({}))),
        Err(WebhookError::NotFound(_)) => Err(GwError::internal("sql: no rows in result set")),
        Err(e) => Err(GwError::store(e)),
    }
}

// ---------- handlers: subscriptions ----------

/// hammer's own validation rules, in its order; the first failure is reported.
fn validate_subscription(s: &SubscriptionIn, creating: bool) -> Result<(), (String, String)> {
    let blank = |f: &str| Err((f.to_string(), "cannot be blank".to_string()));
    if creating && s.id.is_empty() {
        return blank("id");
    }
    if creating && !valid_id(&s.id) {
        return Err(("id".into(), "must be in a valid format".into()));
    }
    for (f, v) in [
        ("topic_id", &s.topic_id),
        ("name", &s.name),
        ("url", &s.url),
    ] {
        if v.is_empty() {
            return blank(f);
        }
    }
    if url::Url::parse(&s.url).is_err() {
        return Err(("url".into(), "must be a valid URL".into()));
    }
    for (f, v) in [
        ("max_delivery_attempts", s.max_delivery_attempts),
        ("delivery_attempt_delay", s.delivery_attempt_delay),
        ("delivery_attempt_timeout", s.delivery_attempt_timeout),
    ] {
        if v == 0 {
            return blank(f);
        }
    }
    Ok(())
}

fn policy(s: &SubscriptionIn) -> RetryPolicy {
    RetryPolicy::Fixed {
        max_attempts: s.max_delivery_attempts,
        delay_ms: s.delivery_attempt_delay as i64 * 1000,
    }
}

fn success_set() -> SuccessCodes {
    SuccessCodes(vec![(200, 202), (204, 204)])
}

fn invalid_pair(i: &Invalid) -> (String, String) {
    (hammer_field(&i.field).to_string(), i.message.clone())
}

async fn create_subscription(State(h): State<Hammer>, body: Bytes) -> Result<Response, GwError> {
    let s = parse_body::<SubscriptionBody>(&body)?
        .subscription
        .unwrap_or_default();
    validate_subscription(&s, true)
        .map_err(|(f, d)| GwError::invalid_create("subscription", &f, &d))?;
    let token = if s.secret_token.is_empty() {
        random_token(h.config.secret_token_length)
    } else {
        s.secret_token.clone()
    };
    let spec = SubscriptionSpec {
        id: Some(s.id.clone()),
        name: s.name.clone(),
        url: s.url.clone(),
        retry: Some(policy(&s)),
        timeout_ms: Some(s.delivery_attempt_timeout as i64 * 1000),
        success: Some(success_set()),
        body_format: Some(BodyFormat::Hammer),
        meta: Some(json!({ "secret_token": token })),
        ..SubscriptionSpec::default()
    };
    match h
        .service
        .create_subscription(&h.config.namespace, &s.topic_id, spec)
        .await
    {
        Ok(sub) => Ok(ok(subscription_json(&sub))),
        Err(WebhookError::SubscriptionExists(_)) => {
            Err(GwError::internal("subscription_already_exists"))
        }
        Err(WebhookError::NotFound(_)) => Err(GwError::internal("topic_does_not_exists")),
        Err(WebhookError::Invalid(i)) => {
            let (f, d) = invalid_pair(&i);
            Err(GwError::invalid_create("subscription", &f, &d))
        }
        Err(e) => Err(GwError::store(e)),
    }
}

async fn update_subscription(
    State(h): State<Hammer>,
    Path(id): Path<String>,
    body: Bytes,
) -> Result<Response, GwError> {
    let s = parse_body::<SubscriptionBody>(&body)?
        .subscription
        .unwrap_or_default();
    validate_subscription(&s, false).map_err(|(f, d)| GwError::invalid_update(&f, &d))?;
    let ns = &h.config.namespace;
    // The topic must exist, though the subscription keeps the one it has.
    match h.service.get_topic(ns, &s.topic_id).await {
        Ok(_) => {}
        Err(WebhookError::NotFound(_)) => return Err(GwError::internal("topic_does_not_exists")),
        Err(e) => return Err(GwError::store(e)),
    }
    let change = SubscriptionChange {
        name: Some(s.name.clone()),
        url: Some(s.url.clone()),
        retry: Some(policy(&s)),
        timeout_ms: Some(s.delivery_attempt_timeout as i64 * 1000),
        // An empty token on update is stored empty, as in the original.
        meta: Some(Some(json!({ "secret_token": s.secret_token }))),
        ..SubscriptionChange::default()
    };
    match h.service.update_subscription(ns, &id, change).await {
        Ok(sub) => Ok(ok(subscription_json(&sub))),
        Err(WebhookError::NotFound(_)) => Err(GwError::internal("subscription_does_not_exists")),
        Err(WebhookError::Invalid(i)) => {
            let (f, d) = invalid_pair(&i);
            Err(GwError::invalid_update(&f, &d))
        }
        Err(e) => Err(GwError::store(e)),
    }
}

async fn get_subscription(
    State(h): State<Hammer>,
    Path(id): Path<String>,
) -> Result<Response, GwError> {
    match h
        .service
        .get_subscription(Some(&h.config.namespace), &id)
        .await
    {
        Ok(s) => Ok(ok(subscription_json(&s))),
        Err(WebhookError::NotFound(_)) => Err(GwError::not_found("subscription")),
        Err(e) => Err(GwError::store(e)),
    }
}

async fn list_subscriptions(
    State(h): State<Hammer>,
    RawQuery(q): RawQuery,
) -> Result<Response, GwError> {
    let q = ListQuery::parse(q.as_deref(), &h.config)?;
    let subs = h
        .service
        .list_subscriptions(&SubscriptionFilter {
            namespace: h.config.namespace.clone(),
            topic: q.param("topic_id"),
            created: q.created,
            page: q.page,
        })
        .await
        .map_err(GwError::store)?;
    Ok(list(
        "subscriptions",
        subs.iter().map(subscription_json).collect(),
    ))
}

async fn delete_subscription(
    State(h): State<Hammer>,
    Path(id): Path<String>,
) -> Result<Response, GwError> {
    match h
        .service
        .delete_subscription(&h.config.namespace, &id)
        .await
    {
        Ok(()) => Ok(ok(json!({}))),
        Err(WebhookError::NotFound(_)) => Err(GwError::internal("sql: no rows in result set")),
        Err(e) => Err(GwError::store(e)),
    }
}

// ---------- handlers: messages ----------

async fn create_message(State(h): State<Hammer>, body: Bytes) -> Result<Response, GwError> {
    let m = parse_body::<MessageBody>(&body)?
        .message
        .unwrap_or_default();
    for (f, v) in [("topic_id", &m.topic_id), ("data", &m.data)] {
        if v.is_empty() {
            return Err(GwError::invalid_create("message", f, "cannot be blank"));
        }
    }
    let out = h
        .service
        .publish(PublishSpec {
            namespace: h.config.namespace.clone(),
            topic: m.topic_id,
            event_type: EVENT_TYPE.into(),
            content_type: m.content_type,
            payload: m.data.into_bytes(),
            idempotency_key: None,
            deliver_at: None,
        })
        .await;
    match out {
        Ok(out) => Ok(ok(message_json(&out.message))),
        Err(WebhookError::NotFound(_)) => Err(GwError::internal("topic_does_not_exists")),
        Err(WebhookError::Invalid(i)) => Err(GwError::invalid_create(
            "message",
            hammer_field(&i.field),
            &i.message,
        )),
        Err(e) => Err(GwError::store(e)),
    }
}

fn ulid_param(id: &str) -> Option<Uuid> {
    uuid_of_ulid(id)
}

async fn get_message(State(h): State<Hammer>, Path(id): Path<String>) -> Result<Response, GwError> {
    let Some(uuid) = ulid_param(&id) else {
        return Err(GwError::not_found("message"));
    };
    match h.service.get_message(&h.config.namespace, uuid).await {
        Ok(m) => Ok(ok(message_json(&m))),
        Err(WebhookError::NotFound(_)) => Err(GwError::not_found("message")),
        Err(e) => Err(GwError::store(e)),
    }
}

async fn list_messages(
    State(h): State<Hammer>,
    RawQuery(q): RawQuery,
) -> Result<Response, GwError> {
    let q = ListQuery::parse(q.as_deref(), &h.config)?;
    let msgs = h
        .service
        .list_messages(&MessageFilter {
            namespace: h.config.namespace.clone(),
            topic: q.param("topic_id"),
            created: q.created,
            page: q.page,
        })
        .await
        .map_err(GwError::store)?;
    Ok(list("messages", msgs.iter().map(message_json).collect()))
}

async fn delete_message(
    State(h): State<Hammer>,
    Path(id): Path<String>,
) -> Result<Response, GwError> {
    let Some(uuid) = ulid_param(&id) else {
        return Err(GwError::internal("sql: no rows in result set"));
    };
    match h.service.delete_message(&h.config.namespace, uuid).await {
        Ok(()) => Ok(ok(json!({}))),
        Err(WebhookError::NotFound(_)) => Err(GwError::internal("sql: no rows in result set")),
        Err(e) => Err(GwError::store(e)),
    }
}

// ---------- handlers: deliveries and attempts ----------

/// The messages of a page of deliveries, each read once.
async fn messages_of(h: &Hammer, jobs: &[Job]) -> Result<HashMap<Uuid, Message>, GwError> {
    let mut out = HashMap::new();
    for j in jobs {
        if let Some(o) = &j.origin {
            if let std::collections::hash_map::Entry::Vacant(e) = out.entry(o.message_id) {
                match h
                    .service
                    .get_message(&h.config.namespace, o.message_id)
                    .await
                {
                    Ok(m) => {
                        e.insert(m);
                    }
                    Err(WebhookError::NotFound(_)) => {}
                    Err(err) => return Err(GwError::store(err)),
                }
            }
        }
    }
    Ok(out)
}

async fn get_delivery(
    State(h): State<Hammer>,
    Path(id): Path<String>,
) -> Result<Response, GwError> {
    let Some(uuid) = ulid_param(&id) else {
        return Err(GwError::not_found("delivery"));
    };
    let job = match h.service.get_delivery(&h.config.namespace, uuid).await {
        Ok(j) => j,
        Err(WebhookError::NotFound(_)) => return Err(GwError::not_found("delivery")),
        Err(e) => return Err(GwError::store(e)),
    };
    let msgs = messages_of(&h, std::slice::from_ref(&job)).await?;
    let msg = job.origin.as_ref().and_then(|o| msgs.get(&o.message_id));
    Ok(ok(delivery_json(&job, msg)))
}

async fn list_deliveries(
    State(h): State<Hammer>,
    RawQuery(q): RawQuery,
) -> Result<Response, GwError> {
    let q = ListQuery::parse(q.as_deref(), &h.config)?;
    let states = match q.param("status").as_deref() {
        None => vec![],
        Some("pending") => vec![JobState::Scheduled, JobState::InFlight],
        Some("completed") => vec![JobState::Succeeded],
        Some("failed") => vec![JobState::Failed, JobState::Cancelled],
        // Like the original's SQL filter: an unknown status matches nothing.
        Some(_) => return Ok(list("deliveries", vec![])),
    };
    let message_id = match q.param("message_id") {
        None => None,
        Some(m) => match ulid_param(&m) {
            Some(u) => Some(u),
            None => return Ok(list("deliveries", vec![])),
        },
    };
    let jobs = h
        .service
        .list_deliveries(&DeliveryFilter {
            namespace: h.config.namespace.clone(),
            topic: q.param("topic_id"),
            subscription_id: q.param("subscription_id"),
            message_id,
            states,
            created: q.created.clone(),
            page: q.page.clone(),
        })
        .await
        .map_err(GwError::store)?;
    let msgs = messages_of(&h, &jobs).await?;
    Ok(list(
        "deliveries",
        jobs.iter()
            .map(|j| {
                let m = j.origin.as_ref().and_then(|o| msgs.get(&o.message_id));
                delivery_json(j, m)
            })
            .collect(),
    ))
}

async fn get_attempt(State(h): State<Hammer>, Path(id): Path<String>) -> Result<Response, GwError> {
    let Some(uuid) = ulid_param(&id) else {
        return Err(GwError::not_found("delivery_attempt"));
    };
    let ns = &h.config.namespace;
    let attempt = match h.service.get_attempt(ns, uuid).await {
        Ok(a) => a,
        Err(WebhookError::NotFound(_)) => return Err(GwError::not_found("delivery_attempt")),
        Err(e) => return Err(GwError::store(e)),
    };
    let job = h.service.get_delivery(ns, attempt.job_id).await.ok();
    Ok(ok(attempt_json(&attempt, job.as_ref())))
}

async fn list_attempts(
    State(h): State<Hammer>,
    RawQuery(q): RawQuery,
) -> Result<Response, GwError> {
    let q = ListQuery::parse(q.as_deref(), &h.config)?;
    let delivery_id = match q.param("delivery_id") {
        None => None,
        Some(d) => match ulid_param(&d) {
            Some(u) => Some(u),
            None => return Ok(list("delivery_attempts", vec![])),
        },
    };
    let ns = &h.config.namespace;
    let attempts = h
        .service
        .list_attempts(&AttemptFilter {
            namespace: ns.clone(),
            delivery_id,
            created: q.created.clone(),
            page: q.page.clone(),
        })
        .await
        .map_err(GwError::store)?;
    let mut jobs: HashMap<Uuid, Option<Job>> = HashMap::new();
    let mut out = Vec::with_capacity(attempts.len());
    for a in &attempts {
        if let std::collections::hash_map::Entry::Vacant(e) = jobs.entry(a.job_id) {
            e.insert(h.service.get_delivery(ns, a.job_id).await.ok());
        }
        out.push(attempt_json(
            a,
            jobs.get(&a.job_id).and_then(Option::as_ref),
        ));
    }
    Ok(list("delivery_attempts", out))
}

async fn readiness(State(h): State<Hammer>) -> StatusCode {
    match h.service.jobs().store().ping().await {
        Ok(()) => StatusCode::NO_CONTENT,
        Err(e) => {
            tracing::warn!(error = %e, "hammer readiness: database unreachable");
            StatusCode::INTERNAL_SERVER_ERROR
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_may_be_strings_and_names_camel_case() {
        let s: SubscriptionBody = serde_json::from_str(
            r#"{"subscription": {"id": "a", "topicId": "t", "max_delivery_attempts": "5", "deliveryAttemptDelay": 60}}"#,
        )
        .unwrap();
        let s = s.subscription.unwrap();
        assert_eq!(
            (
                s.topic_id.as_str(),
                s.max_delivery_attempts,
                s.delivery_attempt_delay
            ),
            ("t", 5, 60)
        );
        assert!(serde_json::from_str::<SubscriptionBody>(
            r#"{"subscription": {"max_delivery_attempts": -1}}"#
        )
        .is_err());
    }

    #[test]
    fn zero_values_are_omitted() {
        let v = Obj::default()
            .s("a", "")
            .n("b", 0)
            .b("c", false)
            .s("d", "x")
            .done();
        assert_eq!(v, json!({"d": "x"}));
    }

    #[test]
    fn tokens_are_alphanumeric_of_the_asked_length() {
        let t = random_token(40);
        assert_eq!(t.len(), 40);
        assert!(t.bytes().all(|b| b.is_ascii_alphanumeric()));
        assert_ne!(t, random_token(40));
    }

    #[test]
    fn header_names_are_canonical_in_dumps() {
        assert_eq!(canonical("content-type"), "Content-Type");
        assert_eq!(canonical("webhook-id"), "Webhook-Id");
    }
}
