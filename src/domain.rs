//! Domain types shared by every surface: a job (one outbound HTTP call under a policy), its
//! state machine, its attempts, and the validation that makes a job acceptable. Nothing here
//! knows about HTTP request shapes or SQL; the API edge and the stores translate to and from
//! these types.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use uuid::Uuid;

/// Milliseconds since the Unix epoch: Herald's one time representation inside the engine
/// and in both stores, so that ordering and arithmetic are exact and portable.
pub type Millis = i64;

/// A field-level validation failure. `field` is a dotted path in the request that caused it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct Invalid {
    pub field: String,
    pub message: String,
}

impl Invalid {
    pub fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// Where a job is in its life. `scheduled` covers both "waiting for its first attempt" and
/// "waiting to retry"; `in_flight` means a worker holds a lease and is calling the target.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Scheduled,
    InFlight,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub const ALL: [JobState; 5] = [
        JobState::Scheduled,
        JobState::InFlight,
        JobState::Succeeded,
        JobState::Failed,
        JobState::Cancelled,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Scheduled => "scheduled",
            JobState::InFlight => "in_flight",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|st| st.as_str() == s)
    }

    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

/// The request body a job sends. Kept with its kind so the API can show it back as it was given.
#[derive(Debug, Clone, PartialEq)]
pub enum Body {
    None,
    Json(Value),
    Text(String),
    Binary(Vec<u8>),
}

impl Body {
    pub fn kind(&self) -> &'static str {
        match self {
            Body::None => "none",
            Body::Json(_) => "json",
            Body::Text(_) => "text",
            Body::Binary(_) => "binary",
        }
    }

    pub fn to_bytes(&self) -> Option<Vec<u8>> {
        match self {
            Body::None => None,
            Body::Json(v) => Some(serde_json::to_vec(v).unwrap_or_default()),
            Body::Text(t) => Some(t.as_bytes().to_vec()),
            Body::Binary(b) => Some(b.clone()),
        }
    }

    pub fn from_stored(kind: &str, bytes: Option<Vec<u8>>) -> Body {
        match (kind, bytes) {
            ("json", Some(b)) => serde_json::from_slice(&b)
                .map(Body::Json)
                .unwrap_or_else(|_| Body::Binary(b)),
            ("text", Some(b)) => match String::from_utf8(b) {
                Ok(s) => Body::Text(s),
                Err(e) => Body::Binary(e.into_bytes()),
            },
            ("binary", Some(b)) => Body::Binary(b),
            _ => Body::None,
        }
    }

    pub fn len(&self) -> usize {
        self.to_bytes().map(|b| b.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The outbound call itself.
#[derive(Debug, Clone, PartialEq)]
pub struct Target {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body: Body,
}

const METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// Headers Herald sets itself; a job may not override them, because receivers rely on them
/// to de-duplicate and the transport needs them to be right.
pub const RESERVED_HEADERS: &[&str] = &[
    "herald-delivery-id",
    "herald-attempt",
    "content-length",
    "host",
    "transfer-encoding",
    "connection",
];

impl Target {
    /// Validates and normalises a target. `prefix` is the request path of the target, used
    /// in error field names.
    pub fn new(
        prefix: &str,
        method: &str,
        url: &str,
        headers: Vec<(String, String)>,
        body: Body,
        max_body: usize,
    ) -> Result<Target, Invalid> {
        let method = method.trim().to_ascii_uppercase();
        if !METHODS.contains(&method.as_str()) {
            return Err(Invalid::new(
                format!("{prefix}method"),
                format!("must be one of {}", METHODS.join(", ")),
            ));
        }
        let parsed = url::Url::parse(url.trim())
            .map_err(|e| Invalid::new(format!("{prefix}url"), format!("not a valid URL: {e}")))?;
        if !matches!(parsed.scheme(), "http" | "https") {
            return Err(Invalid::new(
                format!("{prefix}url"),
                "scheme must be http or https",
            ));
        }
        if parsed.host_str().is_none_or(str::is_empty) {
            return Err(Invalid::new(format!("{prefix}url"), "must have a host"));
        }
        for (i, (name, value)) in headers.iter().enumerate() {
            if reqwest::header::HeaderName::from_bytes(name.as_bytes()).is_err() {
                return Err(Invalid::new(
                    format!("{prefix}headers.{name}"),
                    format!("header {i} has an invalid name"),
                ));
            }
            if reqwest::header::HeaderValue::from_str(value).is_err() {
                return Err(Invalid::new(
                    format!("{prefix}headers.{name}"),
                    "invalid header value (control characters or non-visible bytes)",
                ));
            }
            if RESERVED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                return Err(Invalid::new(
                    format!("{prefix}headers.{name}"),
                    "this header is set by Herald and cannot be overridden",
                ));
            }
        }
        if body.len() > max_body {
            return Err(Invalid::new(
                format!("{prefix}body"),
                format!("body is {} bytes; the limit is {max_body}", body.len()),
            ));
        }
        Ok(Target {
            method,
            url: parsed.to_string(),
            headers,
            body,
        })
    }
}

/// How a failed job is retried. Delays are in milliseconds.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "strategy", rename_all = "snake_case")]
pub enum RetryPolicy {
    /// `initial_ms × multiplier^(n-1)`, capped at `max_delay_ms`, with full jitter between
    /// half and all of it so that a failing receiver is not hit by synchronised retries.
    Exponential {
        max_attempts: u32,
        initial_ms: i64,
        max_delay_ms: i64,
        multiplier: f64,
        jitter: bool,
    },
    Fixed {
        max_attempts: u32,
        delay_ms: i64,
    },
    /// An explicit list of delays: attempt n+1 waits `delays_ms[n-1]`.
    Schedule {
        delays_ms: Vec<i64>,
    },
}

pub const MAX_ATTEMPTS_LIMIT: u32 = 100;
pub const MAX_DELAY_MS: i64 = 30 * 24 * 3600 * 1000;

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy::Exponential {
            max_attempts: 5,
            initial_ms: 1_000,
            max_delay_ms: 10 * 60 * 1000,
            multiplier: 2.0,
            jitter: true,
        }
    }
}

impl RetryPolicy {
    pub fn max_attempts(&self) -> u32 {
        match self {
            RetryPolicy::Exponential { max_attempts, .. }
            | RetryPolicy::Fixed { max_attempts, .. } => *max_attempts,
            RetryPolicy::Schedule { delays_ms } => delays_ms.len() as u32 + 1,
        }
    }

    /// The delay before the attempt that follows attempt number `attempt` (1-based), or
    /// `None` when the budget is spent. `unit` in [0,1) is the jitter source, injected so
    /// the maths is testable.
    pub fn delay_after(&self, attempt: u32, unit: f64) -> Option<i64> {
        if attempt >= self.max_attempts() {
            return None;
        }
        Some(match self {
            RetryPolicy::Exponential {
                initial_ms,
                max_delay_ms,
                multiplier,
                jitter,
                ..
            } => {
                let exp = multiplier.powi(attempt.saturating_sub(1).min(64) as i32);
                let raw = (*initial_ms as f64 * exp).min(*max_delay_ms as f64);
                let d = if *jitter {
                    raw * (0.5 + 0.5 * unit)
                } else {
                    raw
                };
                d.round() as i64
            }
            RetryPolicy::Fixed { delay_ms, .. } => *delay_ms,
            RetryPolicy::Schedule { delays_ms } => delays_ms[(attempt - 1) as usize],
        })
    }

    pub fn validate(&self, field: &str) -> Result<(), Invalid> {
        let check_delay = |name: &str, d: i64| {
            if !(0..=MAX_DELAY_MS).contains(&d) {
                Err(Invalid::new(
                    format!("{field}.{name}"),
                    "must be between 0 and 30 days",
                ))
            } else {
                Ok(())
            }
        };
        let check_attempts = |n: u32| {
            if n == 0 || n > MAX_ATTEMPTS_LIMIT {
                Err(Invalid::new(
                    format!("{field}.max_attempts"),
                    format!("must be between 1 and {MAX_ATTEMPTS_LIMIT}"),
                ))
            } else {
                Ok(())
            }
        };
        match self {
            RetryPolicy::Exponential {
                max_attempts,
                initial_ms,
                max_delay_ms,
                multiplier,
                ..
            } => {
                check_attempts(*max_attempts)?;
                check_delay("initial_delay", *initial_ms)?;
                check_delay("max_delay", *max_delay_ms)?;
                if !(1.0..=10.0).contains(multiplier) {
                    return Err(Invalid::new(
                        format!("{field}.multiplier"),
                        "must be between 1 and 10",
                    ));
                }
            }
            RetryPolicy::Fixed {
                max_attempts,
                delay_ms,
            } => {
                check_attempts(*max_attempts)?;
                check_delay("delay", *delay_ms)?;
            }
            RetryPolicy::Schedule { delays_ms } => {
                if delays_ms.len() as u32 >= MAX_ATTEMPTS_LIMIT {
                    return Err(Invalid::new(
                        format!("{field}.delays"),
                        format!("at most {} delays", MAX_ATTEMPTS_LIMIT - 1),
                    ));
                }
                for d in delays_ms {
                    check_delay("delays", *d)?;
                }
            }
        }
        Ok(())
    }
}

/// Which response status codes count as success: a list of inclusive ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SuccessCodes(pub Vec<(u16, u16)>);

impl Default for SuccessCodes {
    fn default() -> Self {
        SuccessCodes(vec![(200, 299)])
    }
}

impl SuccessCodes {
    pub fn matches(&self, status: u16) -> bool {
        self.0.iter().any(|(lo, hi)| (*lo..=*hi).contains(&status))
    }

    /// Parses one item: `"2xx"`, `"200-204"`, or `"201"`.
    pub fn parse_item(s: &str) -> Option<(u16, u16)> {
        let s = s.trim();
        let valid = |c: u16| (100..=599).contains(&c);
        if let Some(class) = s.strip_suffix("xx").or_else(|| s.strip_suffix("XX")) {
            let d: u16 = class.parse().ok()?;
            return (1..=5).contains(&d).then_some((d * 100, d * 100 + 99));
        }
        if let Some((a, b)) = s.split_once('-') {
            let (a, b): (u16, u16) = (a.trim().parse().ok()?, b.trim().parse().ok()?);
            return (valid(a) && valid(b) && a <= b).then_some((a, b));
        }
        let c: u16 = s.parse().ok()?;
        valid(c).then_some((c, c))
    }

    pub fn parse_list(items: &[String], field: &str) -> Result<SuccessCodes, Invalid> {
        if items.is_empty() {
            return Err(Invalid::new(field, "must name at least one status code"));
        }
        let mut out = Vec::with_capacity(items.len());
        for (i, item) in items.iter().enumerate() {
            out.push(Self::parse_item(item).ok_or_else(|| {
                Invalid::new(
                    format!("{field}[{i}]"),
                    format!(
                        "{item:?} is not a status code, a range like 200-204, or a class like 2xx"
                    ),
                )
            })?);
        }
        Ok(SuccessCodes(out))
    }

    pub fn to_strings(&self) -> Vec<String> {
        self.0
            .iter()
            .map(|(lo, hi)| {
                if lo == hi {
                    lo.to_string()
                } else if lo % 100 == 0 && *hi == lo + 99 {
                    format!("{}xx", lo / 100)
                } else {
                    format!("{lo}-{hi}")
                }
            })
            .collect()
    }

    pub fn encode(&self) -> String {
        self.to_strings().join(",")
    }

    pub fn decode(s: &str) -> SuccessCodes {
        let v: Vec<(u16, u16)> = s.split(',').filter_map(Self::parse_item).collect();
        if v.is_empty() {
            SuccessCodes::default()
        } else {
            SuccessCodes(v)
        }
    }
}

/// Everything needed to create a job. Built by a surface after validation.
#[derive(Debug, Clone)]
pub struct NewJob {
    pub id: Uuid,
    pub namespace: String,
    pub key: Option<String>,
    pub target: Target,
    pub retry: RetryPolicy,
    pub timeout_ms: i64,
    pub success: SuccessCodes,
    pub follow_redirects: bool,
    pub deliver_at: Millis,
    /// Surface-specific data kept with the job (e.g. the gorooster event as sent).
    pub meta: Option<Value>,
    /// Hash of the create request as the client sent it, to tell an idempotent repeat
    /// from a different request that reuses a key.
    pub fingerprint: String,
}

impl NewJob {
    /// The row a plain insert stores, as reading it back would give it: the stores build
    /// their answer from this instead of a `RETURNING` of every column.
    pub fn stored(&self, now: Millis) -> Job {
        Job {
            id: self.id,
            namespace: self.namespace.clone(),
            key: self.key.clone(),
            state: JobState::Scheduled,
            target: self.target.clone(),
            retry: self.retry.clone(),
            timeout_ms: self.timeout_ms,
            success: self.success.clone(),
            follow_redirects: self.follow_redirects,
            deliver_at: self.deliver_at,
            next_attempt_at: Some(self.deliver_at),
            attempts: 0,
            run_base: 0,
            lease_owner: None,
            last_status: None,
            last_error: None,
            last_attempt_at: None,
            meta: self.meta.clone(),
            fingerprint: self.fingerprint.clone(),
            version: 0,
            created_at: now,
            updated_at: now,
            origin: None,
        }
    }
}

/// A stored job.
#[derive(Debug, Clone, PartialEq)]
pub struct Job {
    pub id: Uuid,
    pub namespace: String,
    pub key: Option<String>,
    pub state: JobState,
    pub target: Target,
    pub retry: RetryPolicy,
    pub timeout_ms: i64,
    pub success: SuccessCodes,
    pub follow_redirects: bool,
    pub deliver_at: Millis,
    /// When the job is next due: its next attempt while scheduled, its lease expiry while in
    /// flight (so one time index serves both firing and lease reclaim), `None` when finished.
    pub next_attempt_at: Option<Millis>,
    /// Attempts made over the job's whole life (numbering of attempts).
    pub attempts: u32,
    /// Value of `attempts` when the current run began (`retry` starts a new run with a
    /// fresh attempt budget).
    pub run_base: u32,
    pub lease_owner: Option<String>,
    pub last_status: Option<u16>,
    pub last_error: Option<String>,
    pub last_attempt_at: Option<Millis>,
    pub meta: Option<Value>,
    pub fingerprint: String,
    pub version: i64,
    pub created_at: Millis,
    pub updated_at: Millis,
    /// Set when the job is a webhook delivery: the message and subscription it came from.
    pub origin: Option<Origin>,
}

/// Where a delivery came from, and the two policy points only deliveries have. A delivery is
/// an ordinary job otherwise: same state machine, lease, retry policy and attempts.
#[derive(Debug, Clone, PartialEq)]
pub struct Origin {
    pub topic: String,
    pub message_id: Uuid,
    pub subscription_id: String,
    pub event_type: String,
    /// Response codes that fail the delivery at once, without retry (REST Hooks: 3xx).
    pub fail_codes: Option<SuccessCodes>,
    /// A `410 Gone` fails the delivery and removes its subscription (REST Hooks).
    pub unsubscribe_on_gone: bool,
}

impl Job {
    /// Attempts made in the current run.
    pub fn run_attempts(&self) -> u32 {
        self.attempts.saturating_sub(self.run_base)
    }
}

/// A change to a waiting job. `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct JobChange {
    pub deliver_at: Option<Millis>,
    pub target: Option<Target>,
    pub retry: Option<RetryPolicy>,
    pub timeout_ms: Option<i64>,
    pub success: Option<SuccessCodes>,
    pub follow_redirects: Option<bool>,
    pub meta: Option<Option<Value>>,
}

impl JobChange {
    pub fn apply(&self, job: &mut Job) {
        if let Some(at) = self.deliver_at {
            job.deliver_at = at;
            job.next_attempt_at = Some(at);
        }
        if let Some(t) = &self.target {
            job.target = t.clone();
        }
        if let Some(r) = &self.retry {
            job.retry = r.clone();
        }
        if let Some(t) = self.timeout_ms {
            job.timeout_ms = t;
        }
        if let Some(s) = &self.success {
            job.success = s.clone();
        }
        if let Some(f) = self.follow_redirects {
            job.follow_redirects = f;
        }
        if let Some(m) = &self.meta {
            job.meta = m.clone();
        }
    }
}

/// What happened on one attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct Attempt {
    pub id: Uuid,
    pub job_id: Uuid,
    pub number: u32,
    pub started_at: Millis,
    pub duration_ms: i64,
    pub request_method: String,
    pub request_url: String,
    pub request_headers: Vec<(String, String)>,
    pub request_body_bytes: i64,
    pub response_status: Option<u16>,
    pub response_headers: Vec<(String, String)>,
    pub response_body: Option<Vec<u8>>,
    pub response_truncated: bool,
    pub error: Option<String>,
    pub outcome: AttemptOutcome,
}

/// The verdict on one attempt, and what it did to the job.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum AttemptOutcome {
    /// The response status is in the job's success set.
    Succeeded,
    /// Failed; another attempt is scheduled.
    Retrying,
    /// Failed, and the attempt budget is spent (or the failure is permanent).
    Failed,
}

impl AttemptOutcome {
    pub fn as_str(self) -> &'static str {
        match self {
            AttemptOutcome::Succeeded => "succeeded",
            AttemptOutcome::Retrying => "retrying",
            AttemptOutcome::Failed => "failed",
        }
    }
    pub fn parse(s: &str) -> Self {
        match s {
            "succeeded" => AttemptOutcome::Succeeded,
            "retrying" => AttemptOutcome::Retrying,
            _ => AttemptOutcome::Failed,
        }
    }
}

/// A finished attempt with the job state it leads to, recorded in one transaction.
#[derive(Debug, Clone)]
pub struct AttemptRecord {
    pub attempt: Attempt,
    pub lease_owner: String,
    pub next_state: JobState,
    pub next_attempt_at: Option<Millis>,
    pub finished_at: Millis,
    /// Remove this subscription in the same transaction (the target answered `410 Gone`).
    pub unsubscribe: Option<String>,
}

/// Filters for listing jobs; `after` is the cursor (the last id of the previous page).
#[derive(Debug, Clone, Default)]
pub struct JobFilter {
    pub namespace: String,
    pub states: Vec<JobState>,
    pub created_from: Option<Millis>,
    pub created_to: Option<Millis>,
    pub due_from: Option<Millis>,
    pub due_to: Option<Millis>,
    pub after: Option<Uuid>,
    pub limit: u32,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exponential_grows_and_caps() {
        let p = RetryPolicy::Exponential {
            max_attempts: 10,
            initial_ms: 1000,
            max_delay_ms: 5000,
            multiplier: 2.0,
            jitter: false,
        };
        let d: Vec<_> = (1..10).map(|n| p.delay_after(n, 0.0).unwrap()).collect();
        assert_eq!(
            d,
            vec![1000, 2000, 4000, 5000, 5000, 5000, 5000, 5000, 5000]
        );
        assert_eq!(p.delay_after(10, 0.0), None);
    }

    #[test]
    fn jitter_stays_within_half_to_full() {
        let p = RetryPolicy::default();
        assert_eq!(p.delay_after(3, 0.0), Some(2000));
        assert_eq!(p.delay_after(3, 0.999_999), Some(4000));
    }

    #[test]
    fn schedule_and_fixed() {
        let s = RetryPolicy::Schedule {
            delays_ms: vec![10, 20, 30],
        };
        assert_eq!(s.max_attempts(), 4);
        assert_eq!(s.delay_after(1, 0.5), Some(10));
        assert_eq!(s.delay_after(3, 0.5), Some(30));
        assert_eq!(s.delay_after(4, 0.5), None);
        let f = RetryPolicy::Fixed {
            max_attempts: 2,
            delay_ms: 7,
        };
        assert_eq!(f.delay_after(1, 0.1), Some(7));
        assert_eq!(f.delay_after(2, 0.1), None);
    }

    #[test]
    fn success_codes() {
        let c =
            SuccessCodes::parse_list(&["2xx".into(), "301".into(), "400-404".into()], "s").unwrap();
        assert!(c.matches(204) && c.matches(301) && c.matches(404));
        assert!(!c.matches(300) && !c.matches(405) && !c.matches(500));
        assert_eq!(SuccessCodes::decode(&c.encode()), c);
        assert!(SuccessCodes::parse_list(&["6xx".into()], "s").is_err());
        assert!(SuccessCodes::parse_list(&["204-200".into()], "s").is_err());
        assert!(SuccessCodes::parse_list(&[], "s").is_err());
    }

    #[test]
    fn target_validation_names_fields() {
        let t = |m: &str, u: &str, h: Vec<(String, String)>| {
            Target::new("target.", m, u, h, Body::None, 10)
        };
        assert_eq!(
            t("FETCH", "http://x", vec![]).unwrap_err().field,
            "target.method"
        );
        assert_eq!(
            t("get", "not a url", vec![]).unwrap_err().field,
            "target.url"
        );
        assert_eq!(
            t("get", "ftp://x/y", vec![]).unwrap_err().field,
            "target.url"
        );
        assert_eq!(
            t("get", "http://x", vec![("bad name".into(), "v".into())])
                .unwrap_err()
                .field,
            "target.headers.bad name"
        );
        assert_eq!(
            t(
                "get",
                "http://x",
                vec![("Herald-Attempt".into(), "v".into())]
            )
            .unwrap_err()
            .field,
            "target.headers.Herald-Attempt"
        );
        let big = Target::new(
            "",
            "POST",
            "http://x",
            vec![],
            Body::Text("x".repeat(11)),
            10,
        );
        assert_eq!(big.unwrap_err().field, "body");
        assert_eq!(t("get", "http://x", vec![]).unwrap().method, "GET");
    }
}
