//! Webhook domain types: topics, push subscriptions, published messages, and the pure rules
//! that connect them — which subscriptions a message matches, and the delivery (a job
//! snapshot of the subscription's target and policy) each match becomes. The store calls
//! [`Subscription::plan`] inside the publish transaction, so the rule lives here once.

use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Serialize;
use serde_json::Value;
use uuid::Uuid;

use crate::domain::{Body, Invalid, JobState, Millis, RetryPolicy, SuccessCodes, Target};

/// A named stream of messages in a namespace. `name` is the identity (it appears in URLs).
#[derive(Debug, Clone, PartialEq)]
pub struct Topic {
    pub namespace: String,
    pub name: String,
    pub description: String,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// How a delivery's body is built from a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyFormat {
    /// The message payload byte for byte, with its content type.
    Raw,
    /// hammer's JSON document: `topic_id`, `subscription_id`, `message_id`, `secret_token`,
    /// `data` (base64 of the payload), `created_at`.
    Hammer,
}

impl BodyFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            BodyFormat::Raw => "raw",
            BodyFormat::Hammer => "hammer",
        }
    }
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "raw" => Some(BodyFormat::Raw),
            "hammer" => Some(BodyFormat::Hammer),
            _ => None,
        }
    }
}

/// A push subscription: where a topic's matching messages go, and under which policy.
#[derive(Debug, Clone, PartialEq)]
pub struct Subscription {
    pub id: String,
    pub namespace: String,
    pub topic: String,
    pub name: String,
    pub url: String,
    /// Event-type patterns (`order.created`, `order.*`, `*`); empty means every event.
    pub event_types: Vec<String>,
    pub headers: Vec<(String, String)>,
    pub secret: String,
    pub previous_secret: Option<String>,
    pub previous_secret_until: Option<Millis>,
    pub retry: RetryPolicy,
    pub timeout_ms: i64,
    pub success: SuccessCodes,
    pub fail_codes: Option<SuccessCodes>,
    pub unsubscribe_on_gone: bool,
    pub body_format: BodyFormat,
    /// Surface-specific data (hammer's `secret_token`, REST Hooks' `user_id`).
    pub meta: Option<Value>,
    pub enabled: bool,
    pub created_at: Millis,
    pub updated_at: Millis,
}

/// A message as a surface hands it to the service.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub id: Uuid,
    pub namespace: String,
    pub topic: String,
    pub event_type: String,
    pub content_type: String,
    pub payload: Vec<u8>,
    pub idempotency_key: Option<String>,
    /// Hash of what the publisher sent, to tell a repeat from a different message that reuses
    /// an idempotency key.
    pub fingerprint: String,
    pub deliver_at: Millis,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub id: Uuid,
    pub namespace: String,
    pub topic: String,
    pub event_type: String,
    pub content_type: String,
    pub payload: Vec<u8>,
    pub idempotency_key: Option<String>,
    pub fingerprint: String,
    pub deliver_at: Millis,
    /// How many deliveries the publish created.
    pub deliveries: u32,
    pub created_at: Millis,
}

/// The job a matching subscription turns a message into: a snapshot, so later changes to the
/// subscription do not touch deliveries already made.
#[derive(Debug, Clone)]
pub struct DeliveryPlan {
    pub target: Target,
    pub retry: RetryPolicy,
    pub timeout_ms: i64,
    pub success: SuccessCodes,
    pub fail_codes: Option<SuccessCodes>,
    pub unsubscribe_on_gone: bool,
}

/// The hammer delivery body, fields in the seed README's order.
#[derive(Serialize)]
struct HammerBody<'a> {
    topic_id: &'a str,
    subscription_id: &'a str,
    message_id: String,
    secret_token: &'a str,
    data: String,
    created_at: String,
}

/// The id of a message as hammer shows it: the same 128 bits as a ULID (Herald's ids are
/// UUIDv7, whose leading 48 bits are the same millisecond timestamp a ULID has).
pub fn ulid_of(id: Uuid) -> String {
    ulid::Ulid::from(id.as_u128()).to_string()
}

/// The inverse of [`ulid_of`]; `None` if `s` is not a ULID.
pub fn uuid_of_ulid(s: &str) -> Option<Uuid> {
    s.parse::<ulid::Ulid>().ok().map(|u| Uuid::from_u128(u.0))
}

pub fn rfc3339(ms: Millis) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

/// Does `pattern` select `event_type`? `*` selects everything, `a.*` everything under `a.`.
pub fn pattern_matches(pattern: &str, event_type: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_suffix('*') {
        Some(prefix) => event_type.starts_with(prefix),
        None => pattern == event_type,
    }
}

impl Subscription {
    pub fn matches(&self, event_type: &str) -> bool {
        self.enabled
            && (self.event_types.is_empty()
                || self
                    .event_types
                    .iter()
                    .any(|p| pattern_matches(p, event_type)))
    }

    /// The delivery of `msg` to this subscription, created at `now`.
    pub fn plan(&self, msg: &Message, now: Millis) -> DeliveryPlan {
        let (content_type, body) = match self.body_format {
            BodyFormat::Raw => (
                if msg.content_type.is_empty() {
                    "application/octet-stream".to_string()
                } else {
                    msg.content_type.clone()
                },
                msg.payload.clone(),
            ),
            BodyFormat::Hammer => {
                let token = self
                    .meta
                    .as_ref()
                    .and_then(|m| m.get("secret_token"))
                    .and_then(Value::as_str)
                    .unwrap_or("");
                let doc = HammerBody {
                    topic_id: &msg.topic,
                    subscription_id: &self.id,
                    message_id: ulid_of(msg.id),
                    secret_token: token,
                    data: STANDARD.encode(&msg.payload),
                    created_at: rfc3339(now),
                };
                (
                    "application/json".to_string(),
                    serde_json::to_vec(&doc).unwrap_or_default(),
                )
            }
        };
        // The subscription's own headers come after, so they may set their own content type.
        let mut headers = vec![("content-type".to_string(), content_type)];
        headers.extend(self.headers.iter().cloned());
        DeliveryPlan {
            target: Target {
                method: "POST".into(),
                url: self.url.clone(),
                headers,
                // Binary: the bytes signed are exactly the bytes sent, never re-serialised.
                body: Body::Binary(body),
            },
            retry: self.retry.clone(),
            timeout_ms: self.timeout_ms,
            success: self.success.clone(),
            fail_codes: self.fail_codes.clone(),
            unsubscribe_on_gone: self.unsubscribe_on_gone,
        }
    }
}

/// Topic names appear in URLs and in hammer ids: ASCII word characters and `.+-:`.
pub fn validate_topic_name(name: &str, field: &str) -> Result<(), Invalid> {
    validate_name(name, field, b"_.+-:", "_ . + - :")
}

/// 1 to 128 ASCII letters, digits and the given punctuation: the names that go into URLs
/// and ids.
pub(crate) fn validate_name(
    name: &str,
    field: &str,
    punctuation: &[u8],
    listed: &str,
) -> Result<(), Invalid> {
    let ok = !name.is_empty()
        && name.len() <= 128
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || punctuation.contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Invalid::new(
            field,
            format!("must be 1 to 128 characters among letters, digits and {listed}"),
        ))
    }
}

pub fn validate_event_type(e: &str, field: &str) -> Result<(), Invalid> {
    if e.is_empty() || e.len() > 256 || e.chars().any(|c| c.is_control() || c.is_whitespace()) {
        return Err(Invalid::new(
            field,
            "must be 1 to 256 characters without spaces or control characters",
        ));
    }
    Ok(())
}

/// Headers a subscription may not set: Herald's own and the signature's.
pub fn validate_subscription_headers(
    headers: &[(String, String)],
    field: &str,
) -> Result<(), Invalid> {
    for (name, _) in headers {
        let lower = name.to_ascii_lowercase();
        if lower.starts_with("webhook-") {
            return Err(Invalid::new(
                format!("{field}.{name}"),
                "webhook-* headers carry the signature and are set by Herald",
            ));
        }
    }
    // The rest of the rules are the job target's.
    Target::new(
        "",
        "POST",
        "http://placeholder.invalid",
        headers.to_vec(),
        Body::None,
        0,
    )
    .map(|_| ())
    .map_err(|e| Invalid::new(e.field.replacen("headers", field, 1), e.message))
}

/// A creation-time range; each bound optional. Native lists use `gte`/`lt`, hammer all four.
#[derive(Debug, Clone, Default)]
pub struct CreatedRange {
    pub gt: Option<Millis>,
    pub gte: Option<Millis>,
    pub lt: Option<Millis>,
    pub lte: Option<Millis>,
}

/// A page of a list: after a cursor (the last key of the previous page), or at an offset.
#[derive(Debug, Clone, Default)]
pub struct Page {
    pub after: Option<String>,
    pub offset: u32,
    pub limit: u32,
}

#[derive(Debug, Clone, Default)]
pub struct TopicFilter {
    pub namespace: String,
    pub created: CreatedRange,
    pub page: Page,
}

#[derive(Debug, Clone, Default)]
pub struct SubscriptionFilter {
    pub namespace: String,
    pub topic: Option<String>,
    pub created: CreatedRange,
    pub page: Page,
}

#[derive(Debug, Clone, Default)]
pub struct MessageFilter {
    pub namespace: String,
    pub topic: Option<String>,
    pub created: CreatedRange,
    pub page: Page,
}

#[derive(Debug, Clone, Default)]
pub struct DeliveryFilter {
    pub namespace: String,
    pub topic: Option<String>,
    pub subscription_id: Option<String>,
    pub message_id: Option<Uuid>,
    pub states: Vec<JobState>,
    pub created: CreatedRange,
    pub page: Page,
}

#[derive(Debug, Clone, Default)]
pub struct AttemptFilter {
    pub namespace: String,
    pub delivery_id: Option<Uuid>,
    pub created: CreatedRange,
    pub page: Page,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sub(format: BodyFormat, event_types: &[&str]) -> Subscription {
        Subscription {
            id: "s1".into(),
            namespace: "default".into(),
            topic: "person".into(),
            name: "n".into(),
            url: "http://r/x".into(),
            event_types: event_types.iter().map(|s| s.to_string()).collect(),
            headers: vec![("x-a".into(), "1".into())],
            secret: crate::webhooks::signing::generate_secret(),
            previous_secret: None,
            previous_secret_until: None,
            retry: RetryPolicy::default(),
            timeout_ms: 1000,
            success: SuccessCodes::default(),
            fail_codes: None,
            unsubscribe_on_gone: false,
            body_format: format,
            meta: Some(serde_json::json!({"secret_token": "tok"})),
            enabled: true,
            created_at: 0,
            updated_at: 0,
        }
    }

    fn msg() -> Message {
        Message {
            id: Uuid::now_v7(),
            namespace: "default".into(),
            topic: "person".into(),
            event_type: "person.created".into(),
            content_type: String::new(),
            payload: br#"{"name": "Allisson"}"#.to_vec(),
            idempotency_key: None,
            fingerprint: String::new(),
            deliver_at: 0,
            deliveries: 0,
            created_at: 0,
        }
    }

    #[test]
    fn event_type_patterns() {
        assert!(sub(BodyFormat::Raw, &[]).matches("anything"));
        assert!(sub(BodyFormat::Raw, &["person.*"]).matches("person.created"));
        assert!(!sub(BodyFormat::Raw, &["person.*"]).matches("order.created"));
        assert!(sub(BodyFormat::Raw, &["a", "person.created"]).matches("person.created"));
        assert!(!sub(BodyFormat::Raw, &["person"]).matches("person.created"));
        let mut off = sub(BodyFormat::Raw, &[]);
        off.enabled = false;
        assert!(!off.matches("x"));
    }

    #[test]
    fn hammer_body_is_the_seed_document() {
        let m = msg();
        let p = sub(BodyFormat::Hammer, &[]).plan(&m, 0);
        let Body::Binary(b) = &p.target.body else {
            panic!("binary body")
        };
        let v: Value = serde_json::from_slice(b).unwrap();
        assert_eq!(v["data"], "eyJuYW1lIjogIkFsbGlzc29uIn0=");
        assert_eq!(v["secret_token"], "tok");
        assert_eq!(v["message_id"], ulid_of(m.id));
        let keys: Vec<_> = v.as_object().unwrap().keys().cloned().collect();
        assert_eq!(keys.len(), 6);
        assert_eq!(uuid_of_ulid(&ulid_of(m.id)), Some(m.id));
    }

    #[test]
    fn raw_body_is_the_payload() {
        let m = msg();
        let p = sub(BodyFormat::Raw, &[]).plan(&m, 0);
        assert_eq!(p.target.body, Body::Binary(m.payload.clone()));
        assert_eq!(
            p.target.headers[0],
            ("content-type".into(), "application/octet-stream".into())
        );
    }
}
