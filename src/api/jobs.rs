//! `/v1/jobs`: request and response shapes of the native jobs API, their translation to and
//! from domain types, and the handlers.

use std::collections::BTreeMap;

use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use base64::Engine as _;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};
use utoipa::{IntoParams, ToSchema};
use uuid::Uuid;

use super::extract::{ApiJson, ApiQuery, Namespace};
use super::problem::Problem;
use super::AppState;
use crate::domain::{
    Attempt, AttemptOutcome, Body, Invalid, Job, JobChange, JobFilter, JobState, Millis, NewJob,
    RetryPolicy, SuccessCodes, Target,
};
use crate::duration::{format_millis, parse_millis};
use crate::jobs::validate_key;

// ---------- request shapes ----------

/// The HTTP call a job makes. Give at most one of `body`, `body_text`, `body_base64`.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetRequest {
    /// HTTP method; default `POST`.
    #[serde(default)]
    pub method: Option<String>,
    /// `http` or `https` URL.
    pub url: String,
    /// Headers to send, name → value.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A JSON body, sent as `application/json` unless a `Content-Type` header is given.
    #[serde(default)]
    pub body: Option<Value>,
    /// A text body, sent as `text/plain; charset=utf-8` unless a `Content-Type` is given.
    #[serde(default)]
    pub body_text: Option<String>,
    /// A binary body, base64-encoded.
    #[serde(default)]
    pub body_base64: Option<String>,
}

/// A retry policy. `strategy` is `exponential` (default), `fixed`, `schedule`, or `none`.
/// Durations are Go-style strings such as `500ms`, `30s`, `1h30m`.
#[derive(Debug, Default, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryRequest {
    #[serde(default)]
    pub strategy: Option<String>,
    /// Total attempts including the first (exponential, fixed). Default 5.
    #[serde(default)]
    pub max_attempts: Option<u32>,
    /// exponential: first delay (default `1s`).
    #[serde(default)]
    pub initial_delay: Option<String>,
    /// exponential: cap on any delay (default `10m`).
    #[serde(default)]
    pub max_delay: Option<String>,
    /// exponential: growth factor (default 2).
    #[serde(default)]
    pub multiplier: Option<f64>,
    /// exponential: randomise each delay between half and all of it (default true).
    #[serde(default)]
    pub jitter: Option<bool>,
    /// fixed: the delay between attempts.
    #[serde(default)]
    pub delay: Option<String>,
    /// schedule: the delay before each retry; attempts = delays + 1.
    #[serde(default)]
    pub delays: Option<Vec<String>>,
}

/// A status code (`200`), a range (`"200-204"`) or a class (`"2xx"`).
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(untagged)]
pub enum StatusSpec {
    Code(u16),
    Text(String),
}

impl StatusSpec {
    fn as_string(&self) -> String {
        match self {
            StatusSpec::Code(c) => c.to_string(),
            StatusSpec::Text(s) => s.clone(),
        }
    }
}

#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateJobRequest {
    pub target: TargetRequest,
    /// When to make the call (RFC 3339). Give this or `delay`; neither means now.
    #[serde(default)]
    pub deliver_at: Option<String>,
    /// How long from now to make the call, e.g. `1h30m20s`.
    #[serde(default)]
    pub delay: Option<String>,
    #[serde(default)]
    pub retry: Option<RetryRequest>,
    /// Per-attempt timeout, e.g. `10s` (default `30s`).
    #[serde(default)]
    pub timeout: Option<String>,
    /// Which response codes count as success (default `["2xx"]`).
    #[serde(default)]
    pub success_codes: Option<Vec<StatusSpec>>,
    /// Follow redirects (default false: a 3xx is the response).
    #[serde(default)]
    pub follow_redirects: Option<bool>,
    /// Unique within the namespace. Repeating a create with the same key and content returns
    /// the existing job; different content is a 409.
    #[serde(default)]
    pub key: Option<String>,
}

/// A change to the target: given fields replace the current ones (`headers` as a whole;
/// any of the body fields replaces the body).
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct TargetPatch {
    #[serde(default)]
    pub method: Option<String>,
    #[serde(default)]
    pub url: Option<String>,
    #[serde(default)]
    pub headers: Option<BTreeMap<String, String>>,
    #[serde(default)]
    pub body: Option<Value>,
    #[serde(default)]
    pub body_text: Option<String>,
    #[serde(default)]
    pub body_base64: Option<String>,
}

/// A change to a scheduled job; absent fields stay as they are.
#[derive(Debug, Deserialize, Serialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateJobRequest {
    #[serde(default)]
    pub target: Option<TargetPatch>,
    #[serde(default)]
    pub deliver_at: Option<String>,
    #[serde(default)]
    pub delay: Option<String>,
    #[serde(default)]
    pub retry: Option<RetryRequest>,
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub success_codes: Option<Vec<StatusSpec>>,
    #[serde(default)]
    pub follow_redirects: Option<bool>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct ListJobsQuery {
    /// Comma-separated states, e.g. `scheduled,failed`.
    pub state: Option<String>,
    /// Namespace to list (default: the `Herald-Namespace` header, or `default`).
    pub namespace: Option<String>,
    /// Created at or after (RFC 3339).
    pub created_after: Option<String>,
    /// Created before (RFC 3339).
    pub created_before: Option<String>,
    /// Due at or after (RFC 3339).
    pub due_after: Option<String>,
    /// Due before (RFC 3339).
    pub due_before: Option<String>,
    /// `next_cursor` of the previous page.
    pub cursor: Option<String>,
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<u32>,
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
pub struct PageQuery {
    pub cursor: Option<String>,
    /// Page size, 1 to 500 (default 50).
    pub limit: Option<u32>,
}

// ---------- response shapes ----------

#[derive(Debug, Serialize, ToSchema)]
pub struct TargetResponse {
    pub method: String,
    pub url: String,
    pub headers: BTreeMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_text: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct RetryResponse {
    pub strategy: String,
    pub max_attempts: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub initial_delay: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_delay: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub multiplier: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub jitter: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delay: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub delays: Option<Vec<String>>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct LastAttempt {
    pub at: String,
    pub status: Option<u16>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobResponse {
    pub id: Uuid,
    pub namespace: String,
    pub key: Option<String>,
    pub state: JobState,
    pub target: TargetResponse,
    /// When the job was (re)scheduled to make its first call.
    pub deliver_at: String,
    /// When the next attempt is due; null unless scheduled.
    pub next_attempt_at: Option<String>,
    /// Attempts made so far over the job's life.
    pub attempts: u32,
    /// Attempt budget of the current run.
    pub max_attempts: u32,
    pub retry: RetryResponse,
    pub timeout: String,
    pub success_codes: Vec<String>,
    pub follow_redirects: bool,
    pub last_attempt: Option<LastAttempt>,
    pub created_at: String,
    pub updated_at: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct JobList {
    pub data: Vec<JobResponse>,
    /// Pass as `cursor` to get the next page; null on the last page.
    pub next_cursor: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptRequestSummary {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub body_bytes: i64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptResponseSummary {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    /// The body as text, when it is UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body: Option<String>,
    /// The body base64-encoded, when it is not UTF-8.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_base64: Option<String>,
    /// The body was cut at the configured limit.
    pub truncated: bool,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptView {
    pub id: Uuid,
    pub number: u32,
    pub outcome: AttemptOutcome,
    pub started_at: String,
    pub duration_ms: i64,
    pub request: AttemptRequestSummary,
    pub response: Option<AttemptResponseSummary>,
    pub error: Option<String>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AttemptList {
    pub data: Vec<AttemptView>,
    pub next_cursor: Option<String>,
}

// ---------- translation ----------

pub fn ts(ms: Millis) -> String {
    jiff::Timestamp::from_millisecond(ms)
        .map(|t| t.to_string())
        .unwrap_or_default()
}

pub fn parse_ts(s: &str, field: &str) -> Result<Millis, Invalid> {
    s.parse::<jiff::Timestamp>()
        .map(|t| t.as_millisecond())
        .map_err(|e| Invalid::new(field, format!("not an RFC 3339 time with offset: {e}")))
}

pub(crate) fn duration(s: &str, field: &str) -> Result<i64, Invalid> {
    parse_millis(s).map_err(|e| Invalid::new(field, e.to_string()))
}

impl TargetRequest {
    fn into_target(self, prefix: &str, max_body: usize) -> Result<Target, Invalid> {
        let given = [
            self.body.is_some(),
            self.body_text.is_some(),
            self.body_base64.is_some(),
        ];
        if given.iter().filter(|g| **g).count() > 1 {
            return Err(Invalid::new(
                format!("{prefix}body"),
                "give only one of body, body_text, body_base64",
            ));
        }
        let body = if let Some(v) = self.body {
            Body::Json(v)
        } else if let Some(t) = self.body_text {
            Body::Text(t)
        } else if let Some(b) = self.body_base64 {
            Body::Binary(
                base64::engine::general_purpose::STANDARD
                    .decode(b.as_bytes())
                    .map_err(|e| Invalid::new(format!("{prefix}body_base64"), e.to_string()))?,
            )
        } else {
            Body::None
        };
        Target::new(
            prefix,
            self.method.as_deref().unwrap_or("POST"),
            &self.url,
            self.headers.into_iter().collect(),
            body,
            max_body,
        )
    }
}

impl RetryRequest {
    pub(crate) fn into_policy(self) -> Result<RetryPolicy, Invalid> {
        let strategy = self.strategy.as_deref().unwrap_or("exponential");
        let only = |allowed: &[&str]| -> Result<(), Invalid> {
            let present = [
                ("max_attempts", self.max_attempts.is_some()),
                ("initial_delay", self.initial_delay.is_some()),
                ("max_delay", self.max_delay.is_some()),
                ("multiplier", self.multiplier.is_some()),
                ("jitter", self.jitter.is_some()),
                ("delay", self.delay.is_some()),
                ("delays", self.delays.is_some()),
            ];
            match present.iter().find(|(n, p)| *p && !allowed.contains(n)) {
                Some((n, _)) => Err(Invalid::new(
                    format!("retry.{n}"),
                    format!("does not apply to strategy {strategy}"),
                )),
                None => Ok(()),
            }
        };
        let policy = match strategy {
            "exponential" => {
                only(&[
                    "max_attempts",
                    "initial_delay",
                    "max_delay",
                    "multiplier",
                    "jitter",
                ])?;
                let RetryPolicy::Exponential {
                    max_attempts,
                    initial_ms,
                    max_delay_ms,
                    multiplier,
                    jitter,
                } = RetryPolicy::default()
                else {
                    unreachable!("the default policy is exponential")
                };
                RetryPolicy::Exponential {
                    max_attempts: self.max_attempts.unwrap_or(max_attempts),
                    initial_ms: match &self.initial_delay {
                        Some(d) => duration(d, "retry.initial_delay")?,
                        None => initial_ms,
                    },
                    max_delay_ms: match &self.max_delay {
                        Some(d) => duration(d, "retry.max_delay")?,
                        None => max_delay_ms,
                    },
                    multiplier: self.multiplier.unwrap_or(multiplier),
                    jitter: self.jitter.unwrap_or(jitter),
                }
            }
            "fixed" => {
                only(&["max_attempts", "delay"])?;
                let delay = self
                    .delay
                    .as_deref()
                    .ok_or_else(|| Invalid::new("retry.delay", "is required for strategy fixed"))?;
                RetryPolicy::Fixed {
                    max_attempts: self.max_attempts.unwrap_or(5),
                    delay_ms: duration(delay, "retry.delay")?,
                }
            }
            "schedule" => {
                only(&["delays"])?;
                let delays = self.delays.as_ref().ok_or_else(|| {
                    Invalid::new("retry.delays", "is required for strategy schedule")
                })?;
                RetryPolicy::Schedule {
                    delays_ms: delays
                        .iter()
                        .enumerate()
                        .map(|(i, d)| duration(d, &format!("retry.delays[{i}]")))
                        .collect::<Result<_, _>>()?,
                }
            }
            "none" => {
                only(&[])?;
                RetryPolicy::Schedule { delays_ms: vec![] }
            }
            other => {
                return Err(Invalid::new(
                    "retry.strategy",
                    format!("unknown strategy {other:?}; use exponential, fixed, schedule or none"),
                ))
            }
        };
        policy.validate("retry")?;
        Ok(policy)
    }
}

pub(crate) fn success_codes(specs: &[StatusSpec]) -> Result<SuccessCodes, Invalid> {
    let items: Vec<String> = specs.iter().map(StatusSpec::as_string).collect();
    SuccessCodes::parse_list(&items, "success_codes")
}

pub(crate) fn when(
    state: &AppState,
    deliver_at: Option<&str>,
    delay: Option<&str>,
) -> Result<Option<Millis>, Invalid> {
    match (deliver_at, delay) {
        (Some(_), Some(_)) => Err(Invalid::new("delay", "give deliver_at or delay, not both")),
        (Some(at), None) => state
            .jobs
            .check_deliver_at(parse_ts(at, "deliver_at")?, "deliver_at")
            .map(Some),
        (None, Some(d)) => {
            let ms = duration(d, "delay")?;
            if ms < 0 {
                return Err(Invalid::new("delay", "must not be negative"));
            }
            state
                .jobs
                .check_deliver_at(state.jobs.now() + ms, "delay")
                .map(Some)
        }
        (None, None) => Ok(None),
    }
}

fn fingerprint(req: &CreateJobRequest) -> String {
    let canonical = serde_json::to_vec(req).unwrap_or_default();
    hex::encode(Sha256::digest(&canonical))
}

impl CreateJobRequest {
    fn into_new_job(self, state: &AppState, namespace: String) -> Result<NewJob, Invalid> {
        // Only a keyed create can be repeated, so only it needs the hash of its content.
        let fingerprint = if self.key.is_some() {
            fingerprint(&self)
        } else {
            String::new()
        };
        if let Some(k) = &self.key {
            validate_key(k, "key")?;
        }
        let limits = state.jobs.limits();
        let deliver_at = when(state, self.deliver_at.as_deref(), self.delay.as_deref())?
            .unwrap_or_else(|| state.jobs.now());
        Ok(NewJob {
            id: Uuid::now_v7(),
            namespace,
            key: self.key,
            target: self.target.into_target("target.", limits.max_body_bytes)?,
            retry: self.retry.unwrap_or_default().into_policy()?,
            timeout_ms: match &self.timeout {
                Some(t) => state
                    .jobs
                    .check_timeout(duration(t, "timeout")?, "timeout")?,
                None => limits.default_timeout_ms,
            },
            success: match &self.success_codes {
                Some(s) => success_codes(s)?,
                None => SuccessCodes::default(),
            },
            follow_redirects: self.follow_redirects.unwrap_or(false),
            deliver_at,
            meta: None,
            fingerprint,
        })
    }
}

/// A body as the API's three mutually exclusive fields: `body`, `body_text`, `body_base64`.
fn body_fields(body: &Body) -> (Option<Value>, Option<String>, Option<String>) {
    match body {
        Body::None => (None, None, None),
        Body::Json(v) => (Some(v.clone()), None, None),
        Body::Text(t) => (None, Some(t.clone()), None),
        Body::Binary(b) => (
            None,
            None,
            Some(base64::engine::general_purpose::STANDARD.encode(b)),
        ),
    }
}

impl TargetPatch {
    /// The current target with this patch applied, validated as a whole.
    fn merge(self, current: &Target, max_body: usize) -> Result<Target, Invalid> {
        let replaces_body =
            self.body.is_some() || self.body_text.is_some() || self.body_base64.is_some();
        let (body, body_text, body_base64) = if replaces_body {
            (self.body, self.body_text, self.body_base64)
        } else {
            body_fields(&current.body)
        };
        TargetRequest {
            method: Some(self.method.unwrap_or_else(|| current.method.clone())),
            url: self.url.unwrap_or_else(|| current.url.clone()),
            headers: self
                .headers
                .unwrap_or_else(|| current.headers.iter().cloned().collect()),
            body,
            body_text,
            body_base64,
        }
        .into_target("target.", max_body)
    }
}

impl UpdateJobRequest {
    fn into_change(self, state: &AppState, current: &Job) -> Result<JobChange, Invalid> {
        let limits = state.jobs.limits();
        Ok(JobChange {
            deliver_at: when(state, self.deliver_at.as_deref(), self.delay.as_deref())?,
            target: self
                .target
                .map(|t| t.merge(&current.target, limits.max_body_bytes))
                .transpose()?,
            retry: self.retry.map(RetryRequest::into_policy).transpose()?,
            timeout_ms: self
                .timeout
                .map(|t| {
                    state
                        .jobs
                        .check_timeout(duration(&t, "timeout")?, "timeout")
                })
                .transpose()?,
            success: self.success_codes.map(|s| success_codes(&s)).transpose()?,
            follow_redirects: self.follow_redirects,
            meta: None,
        })
    }
}

impl From<&RetryPolicy> for RetryResponse {
    fn from(p: &RetryPolicy) -> Self {
        let base = RetryResponse {
            strategy: String::new(),
            max_attempts: p.max_attempts(),
            initial_delay: None,
            max_delay: None,
            multiplier: None,
            jitter: None,
            delay: None,
            delays: None,
        };
        match p {
            RetryPolicy::Exponential {
                initial_ms,
                max_delay_ms,
                multiplier,
                jitter,
                ..
            } => RetryResponse {
                strategy: "exponential".into(),
                initial_delay: Some(format_millis(*initial_ms)),
                max_delay: Some(format_millis(*max_delay_ms)),
                multiplier: Some(*multiplier),
                jitter: Some(*jitter),
                ..base
            },
            RetryPolicy::Fixed { delay_ms, .. } => RetryResponse {
                strategy: "fixed".into(),
                delay: Some(format_millis(*delay_ms)),
                ..base
            },
            RetryPolicy::Schedule { delays_ms } if delays_ms.is_empty() => RetryResponse {
                strategy: "none".into(),
                ..base
            },
            RetryPolicy::Schedule { delays_ms } => RetryResponse {
                strategy: "schedule".into(),
                delays: Some(delays_ms.iter().map(|d| format_millis(*d)).collect()),
                ..base
            },
        }
    }
}

impl From<&Job> for JobResponse {
    fn from(j: &Job) -> Self {
        let (body, body_text, body_base64) = body_fields(&j.target.body);
        JobResponse {
            id: j.id,
            namespace: j.namespace.clone(),
            key: j.key.clone(),
            state: j.state,
            target: TargetResponse {
                method: j.target.method.clone(),
                url: j.target.url.clone(),
                headers: j.target.headers.iter().cloned().collect(),
                body,
                body_text,
                body_base64,
            },
            deliver_at: ts(j.deliver_at),
            next_attempt_at: (j.state == JobState::Scheduled)
                .then_some(j.next_attempt_at)
                .flatten()
                .map(ts),
            attempts: j.attempts,
            max_attempts: j.retry.max_attempts(),
            retry: (&j.retry).into(),
            timeout: format_millis(j.timeout_ms),
            success_codes: j.success.to_strings(),
            follow_redirects: j.follow_redirects,
            last_attempt: j.last_attempt_at.map(|at| LastAttempt {
                at: ts(at),
                status: j.last_status,
                error: j.last_error.clone(),
            }),
            created_at: ts(j.created_at),
            updated_at: ts(j.updated_at),
        }
    }
}

impl From<Attempt> for AttemptView {
    fn from(a: Attempt) -> Self {
        AttemptView {
            id: a.id,
            number: a.number,
            outcome: a.outcome,
            started_at: ts(a.started_at),
            duration_ms: a.duration_ms,
            request: AttemptRequestSummary {
                method: a.request_method,
                url: a.request_url,
                headers: a.request_headers,
                body_bytes: a.request_body_bytes,
            },
            response: a.response_status.map(|status| {
                let (body, body_base64) = match a.response_body {
                    None => (None, None),
                    Some(b) => match String::from_utf8(b) {
                        Ok(s) => (Some(s), None),
                        Err(e) => (
                            None,
                            Some(base64::engine::general_purpose::STANDARD.encode(e.as_bytes())),
                        ),
                    },
                };
                AttemptResponseSummary {
                    status,
                    headers: a.response_headers,
                    body,
                    body_base64,
                    truncated: a.response_truncated,
                }
            }),
            error: a.error,
        }
    }
}

fn parse_id(id: &str) -> Result<Uuid, Problem> {
    // An id that cannot exist is simply not found, like any other unknown id.
    Uuid::parse_str(id).map_err(|_| Problem::not_found("job"))
}

pub(crate) fn page_limit(limit: Option<u32>) -> Result<u32, Problem> {
    match limit {
        None => Ok(50),
        Some(n) if (1..=500).contains(&n) => Ok(n),
        Some(_) => Err(Problem::invalid("limit", "must be between 1 and 500")),
    }
}

pub(crate) fn parse_cursor(c: Option<&str>) -> Result<Option<Uuid>, Problem> {
    c.map(|c| {
        Uuid::parse_str(c)
            .map_err(|_| Problem::invalid("cursor", "not a cursor from a previous page"))
    })
    .transpose()
}

fn job_json(status: StatusCode, job: &Job) -> Response {
    let mut resp = (status, Json(JobResponse::from(job))).into_response();
    if status == StatusCode::CREATED {
        if let Ok(v) = format!("/v1/jobs/{}", job.id).parse() {
            resp.headers_mut().insert(header::LOCATION, v);
        }
    }
    resp
}

// ---------- handlers ----------

/// Schedule an HTTP call.
#[utoipa::path(post, path = "/v1/jobs", tag = "jobs",
    request_body = CreateJobRequest,
    params(("Herald-Namespace" = Option<String>, Header, description = "Namespace (default `default`)")),
    responses(
        (status = 201, description = "Created", body = JobResponse),
        (status = 200, description = "Same key and content as an existing job: that job", body = JobResponse),
        (status = 400, description = "Invalid field", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Key used with different content", body = Problem, content_type = "application/problem+json"),
    ))]
pub async fn create_job(
    State(state): State<AppState>,
    Namespace(ns): Namespace,
    ApiJson(req): ApiJson<CreateJobRequest>,
) -> Result<Response, Problem> {
    let new = req.into_new_job(&state, ns)?;
    let created = state.jobs.create(new, false).await?;
    let status = if created.existed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(job_json(status, &created.job))
}

/// Get a job.
#[utoipa::path(get, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = Uuid, Path), ("Herald-Namespace" = Option<String>, Header)),
    responses((status = 400, description = "Invalid namespace header or parameter", body = Problem, content_type = "application/problem+json"), (status = 200, body = JobResponse), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get_job(
    State(state): State<AppState>,
    Namespace(ns): Namespace,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let job = state.jobs.get(&ns, parse_id(&id)?).await?;
    Ok(job_json(StatusCode::OK, &job))
}

/// Get a job by its key.
#[utoipa::path(get, path = "/v1/jobs/by-key/{key}", tag = "jobs",
    params(("key" = String, Path), ("Herald-Namespace" = Option<String>, Header)),
    responses((status = 400, description = "Invalid namespace header or parameter", body = Problem, content_type = "application/problem+json"), (status = 200, body = JobResponse), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn get_job_by_key(
    State(state): State<AppState>,
    Namespace(ns): Namespace,
    Path(key): Path<String>,
) -> Result<Response, Problem> {
    let job = state.jobs.get_by_key(&ns, &key).await?;
    Ok(job_json(StatusCode::OK, &job))
}

/// List jobs, oldest first, with filters and cursor pagination.
#[utoipa::path(get, path = "/v1/jobs", tag = "jobs",
    params(ListJobsQuery, ("Herald-Namespace" = Option<String>, Header)),
    responses((status = 200, body = JobList), (status = 400, body = Problem, content_type = "application/problem+json")))]
pub async fn list_jobs(
    State(state): State<AppState>,
    Namespace(header_ns): Namespace,
    ApiQuery(q): ApiQuery<ListJobsQuery>,
) -> Result<Json<JobList>, Problem> {
    let namespace = match q.namespace {
        Some(ns) => {
            crate::jobs::validate_namespace(&ns, "namespace")?;
            ns
        }
        None => header_ns,
    };
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
    let t = |v: &Option<String>, f: &str| v.as_deref().map(|s| parse_ts(s, f)).transpose();
    let limit = page_limit(q.limit)?;
    let filter = JobFilter {
        namespace,
        states,
        created_from: t(&q.created_after, "created_after")?,
        created_to: t(&q.created_before, "created_before")?,
        due_from: t(&q.due_after, "due_after")?,
        due_to: t(&q.due_before, "due_before")?,
        after: parse_cursor(q.cursor.as_deref())?,
        limit: limit + 1,
    };
    let mut jobs = state.jobs.list(&filter).await?;
    let more = jobs.len() > limit as usize;
    jobs.truncate(limit as usize);
    Ok(Json(JobList {
        next_cursor: more
            .then(|| jobs.last().map(|j| j.id.to_string()))
            .flatten(),
        data: jobs.iter().map(JobResponse::from).collect(),
    }))
}

/// Change a scheduled job: reschedule it, replace its target or policy.
#[utoipa::path(patch, path = "/v1/jobs/{id}", tag = "jobs",
    request_body = UpdateJobRequest,
    params(("id" = Uuid, Path), ("Herald-Namespace" = Option<String>, Header)),
    responses(
        (status = 200, body = JobResponse),
        (status = 400, body = Problem, content_type = "application/problem+json"),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "In flight or finished", body = Problem, content_type = "application/problem+json")))]
pub async fn update_job(
    State(state): State<AppState>,
    Namespace(ns): Namespace,
    Path(id): Path<String>,
    ApiJson(req): ApiJson<UpdateJobRequest>,
) -> Result<Response, Problem> {
    let id = parse_id(&id)?;
    // A partial target is merged onto the job as read now; the change itself is still a
    // compare-and-set, so it lands whole or answers 409.
    let current = state.jobs.get(&ns, id).await?;
    let change = req.into_change(&state, &current)?;
    let job = state.jobs.change(&ns, id, change).await?;
    Ok(job_json(StatusCode::OK, &job))
}

/// Cancel a scheduled job.
#[utoipa::path(delete, path = "/v1/jobs/{id}", tag = "jobs",
    params(("id" = Uuid, Path), ("Herald-Namespace" = Option<String>, Header)),
    responses((status = 400, description = "Invalid namespace header or parameter", body = Problem, content_type = "application/problem+json"), 
        (status = 200, body = JobResponse),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "In flight or finished", body = Problem, content_type = "application/problem+json")))]
pub async fn cancel_job(
    State(state): State<AppState>,
    Namespace(ns): Namespace,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let job = state.jobs.cancel(&ns, parse_id(&id)?).await?;
    Ok(job_json(StatusCode::OK, &job))
}

/// Run a finished job again, now, with a fresh attempt budget.
#[utoipa::path(post, path = "/v1/jobs/{id}/retry", tag = "jobs",
    params(("id" = Uuid, Path), ("Herald-Namespace" = Option<String>, Header)),
    responses((status = 400, description = "Invalid namespace header or parameter", body = Problem, content_type = "application/problem+json"), 
        (status = 200, body = JobResponse),
        (status = 404, body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "Not finished", body = Problem, content_type = "application/problem+json")))]
pub async fn retry_job(
    State(state): State<AppState>,
    Namespace(ns): Namespace,
    Path(id): Path<String>,
) -> Result<Response, Problem> {
    let job = state.jobs.rerun(&ns, parse_id(&id)?).await?;
    Ok(job_json(StatusCode::OK, &job))
}

/// The attempts made for a job, oldest first.
#[utoipa::path(get, path = "/v1/jobs/{id}/attempts", tag = "jobs",
    params(("id" = Uuid, Path), PageQuery, ("Herald-Namespace" = Option<String>, Header)),
    responses((status = 400, description = "Invalid namespace header or parameter", body = Problem, content_type = "application/problem+json"), (status = 200, body = AttemptList), (status = 404, body = Problem, content_type = "application/problem+json")))]
pub async fn list_attempts(
    State(state): State<AppState>,
    Namespace(ns): Namespace,
    Path(id): Path<String>,
    ApiQuery(q): ApiQuery<PageQuery>,
) -> Result<Json<AttemptList>, Problem> {
    let limit = page_limit(q.limit)?;
    let mut attempts = state
        .jobs
        .attempts(
            &ns,
            parse_id(&id)?,
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
