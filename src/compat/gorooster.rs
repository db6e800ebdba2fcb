//! The gorooster v2 compatibility surface (default port 1407): the original's HTTP API —
//! events keyed by `X-CLIENT-NAME` + event key, released in or at a time — translated to jobs
//! of the one job service. It owns request decoding with Go's `encoding/json` rules, the
//! translation of an `api_event` into a target and policy, and gorooster's response and
//! `CROW-xxx` error shapes; storage, firing and the rules of change-while-waiting stay in
//! [`JobService`].
//!
//! Where Herald deliberately differs from the original: events are validated when they are
//! accepted (not silently dropped at fire time), a release time must be in the future, every
//! call has a timeout, retries wait between attempts, and firing is at-least-once.

use std::fmt;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::Router;
use serde::de::{self, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Number, Value};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::config::GoroosterConfig;
use crate::domain::{
    Body, Invalid, Job, JobChange, JobState, Millis, NewJob, RetryPolicy, SuccessCodes, Target,
    MAX_ATTEMPTS_LIMIT,
};
use crate::duration::{format_go_duration, parse_go_duration};
use crate::jobs::{validate_key, validate_namespace, JobError, JobService};

const CLIENT_NAME: &str = "X-CLIENT-NAME";
const RELEASE_FORMAT: &str = "x-release-format";
const API_EVENT: &str = "api_event";
/// The only methods the original's `JobAPI` accepts (Herald's own targets allow more).
const METHODS: &[&str] = &["POST", "GET", "PUT", "PATCH", "DELETE"];
/// Headers Go's client takes from the request itself and never from `Header`: the original
/// silently ignored them in a job's header list, so they are dropped rather than rejected.
const IGNORED_HEADERS: &[&str] = &["host", "content-length", "transfer-encoding", "trailer"];

#[derive(Clone)]
struct Surface {
    jobs: JobService,
    cfg: GoroosterConfig,
}

pub fn router(jobs: JobService, cfg: GoroosterConfig) -> Router {
    Router::new()
        .route("/", get(|| async { StatusCode::OK }))
        .route(
            "/event/relin/{event_key}",
            post(create_release_in).put(update_release_in),
        )
        .route(
            "/event/relat/{event_key}",
            post(create_release_at).put(update_release_at),
        )
        .route(
            "/event/{event_key}",
            get(get_event).put(update_event).delete(delete_event),
        )
        // chi's defaults, which the original never replaced.
        .fallback(|| async { (StatusCode::NOT_FOUND, "404 page not found\n") })
        .method_not_allowed_fallback(|| async { StatusCode::METHOD_NOT_ALLOWED })
        .with_state(Surface { jobs, cfg })
}

// ---------- errors ----------

/// The original's error catalogue; each maps to one status, code and message pair.
#[derive(Debug)]
enum Crow {
    /// CROW-400, naming the parameter.
    Field(String),
    /// CROW-401.
    PastRelease,
    /// CROW-402.
    DuplicateKey,
    /// CROW-404.
    NotFound,
    /// CROW-001: the body could not be read, and the original's catch-all for some routes.
    ReadBody,
    /// CROW-500.
    Server,
}

impl Crow {
    fn field(name: impl Into<String>) -> Crow {
        Crow::Field(name.into())
    }
}

#[derive(Serialize)]
struct ErrorBody {
    error_code: &'static str,
    error_message: String,
    localized_message: Localized,
}

#[derive(Serialize)]
struct Localized {
    en: String,
    id: String,
}

impl IntoResponse for Crow {
    fn into_response(self) -> Response {
        let (status, code, en, id) = match self {
            Crow::Field(f) => (
                StatusCode::BAD_REQUEST,
                "CROW-400",
                format!("there is an error in the {f} parameter"),
                format!("ada kesalahan pada parameter {f}"),
            ),
            Crow::PastRelease => (
                StatusCode::BAD_REQUEST,
                "CROW-401",
                "unable to release past events.".into(),
                "tidak dapat merilis event masa lalu.".into(),
            ),
            Crow::DuplicateKey => (
                StatusCode::BAD_REQUEST,
                "CROW-402",
                "duplicat key.".into(),
                "key duplikat.".into(),
            ),
            Crow::NotFound => (
                StatusCode::NOT_FOUND,
                "CROW-404",
                "event not Found".into(),
                "event tidak dapat ditemukan".into(),
            ),
            Crow::ReadBody => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "CROW-001",
                "failed to read data".into(),
                "gagal membaca data".into(),
            ),
            Crow::Server => (
                StatusCode::INTERNAL_SERVER_ERROR,
                "CROW-500",
                "failed to process the request".into(),
                // Sic: the original's spelling.
                "gagal memperoses permintaan".into(),
            ),
        };
        json_response(
            status,
            &ErrorBody {
                error_code: code,
                error_message: en.clone(),
                localized_message: Localized { en, id },
            },
        )
    }
}

fn json_response(status: StatusCode, body: &impl Serialize) -> Response {
    match serde_json::to_vec(body) {
        Ok(bytes) => (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            bytes,
        )
            .into_response(),
        Err(e) => {
            tracing::error!(error = %e, "cannot encode a gorooster response");
            StatusCode::INTERNAL_SERVER_ERROR.into_response()
        }
    }
}

fn store_error(e: &JobError) {
    tracing::error!(error = %e, "gorooster request failed in the job service");
}

// ---------- JSON decoding with Go's rules ----------

/// A JSON value that keeps object members in document order and keeps repeated names, because
/// Go's decoder applies members one after another: the last member whose name matches a field
/// (in any letter case) wins, and `null` leaves a string or number field as it was.
#[derive(Debug, Clone)]
enum J {
    Null,
    Bool(bool),
    Num(Number),
    Str(String),
    Arr(Vec<J>),
    Obj(Vec<(String, J)>),
}

impl<'de> Deserialize<'de> for J {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<J, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = J;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("any JSON value")
            }
            fn visit_bool<E>(self, b: bool) -> Result<J, E> {
                Ok(J::Bool(b))
            }
            fn visit_i64<E>(self, n: i64) -> Result<J, E> {
                Ok(J::Num(n.into()))
            }
            fn visit_u64<E>(self, n: u64) -> Result<J, E> {
                Ok(J::Num(n.into()))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<J, E> {
                Number::from_f64(n)
                    .map(J::Num)
                    .ok_or_else(|| E::custom("not a finite number"))
            }
            fn visit_str<E>(self, s: &str) -> Result<J, E> {
                Ok(J::Str(s.to_owned()))
            }
            fn visit_string<E>(self, s: String) -> Result<J, E> {
                Ok(J::Str(s))
            }
            fn visit_unit<E>(self) -> Result<J, E> {
                Ok(J::Null)
            }
            fn visit_none<E>(self) -> Result<J, E> {
                Ok(J::Null)
            }
            fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<J, D::Error> {
                J::deserialize(d)
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut a: A) -> Result<J, A::Error> {
                let mut items = Vec::new();
                while let Some(item) = a.next_element()? {
                    items.push(item);
                }
                Ok(J::Arr(items))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut a: A) -> Result<J, A::Error> {
                let mut members = Vec::new();
                while let Some(member) = a.next_entry::<String, J>()? {
                    members.push(member);
                }
                Ok(J::Obj(members))
            }
        }
        d.deserialize_any(V)
    }
}

impl J {
    /// As Go's `interface{}` holds it: a map, so a repeated name keeps its last value.
    fn into_value(self) -> Value {
        match self {
            J::Null => Value::Null,
            J::Bool(b) => Value::Bool(b),
            J::Num(n) => Value::Number(n),
            J::Str(s) => Value::String(s),
            J::Arr(a) => Value::Array(a.into_iter().map(J::into_value).collect()),
            J::Obj(members) => {
                let mut m = Map::new();
                for (k, v) in members {
                    m.insert(k, v.into_value());
                }
                Value::Object(m)
            }
        }
    }
}

/// Go's `encoding/json` name folding (`ToUpper(ToLower(r))`), for the characters that can fold
/// onto the ASCII letters of gorooster's field names.
fn fold(c: char) -> char {
    match c {
        '\u{017F}' => 'S', // ſ
        '\u{212A}' => 'K', // Kelvin sign
        '\u{0131}' | '\u{0130}' => 'I',
        c => c.to_ascii_uppercase(),
    }
}

fn name_matches(key: &str, field: &str) -> bool {
    key.chars().map(fold).eq(field.chars().map(fold))
}

/// The first JSON value of the body, as Go's `json.Decoder.Decode` reads it: trailing bytes
/// after it are not looked at.
fn read_body(body: Result<Bytes, BytesRejection>) -> Result<J, Crow> {
    let bytes = body.map_err(|_| Crow::ReadBody)?;
    match serde_json::Deserializer::from_slice(&bytes)
        .into_iter::<J>()
        .next()
    {
        Some(Ok(j)) => Ok(j),
        _ => Err(Crow::ReadBody),
    }
}

/// Members of a value decoded into a Go struct: `null` is an empty struct, anything but an
/// object is a type error.
fn members(j: &J) -> Result<&[(String, J)], Crow> {
    match j {
        J::Null => Ok(&[]),
        J::Obj(m) => Ok(m),
        _ => Err(Crow::ReadBody),
    }
}

fn set_string(dst: &mut String, v: &J) -> Result<(), Crow> {
    match v {
        J::Null => Ok(()),
        J::Str(s) => {
            dst.clone_from(s);
            Ok(())
        }
        _ => Err(Crow::ReadBody),
    }
}

fn set_int(dst: &mut i64, v: &J) -> Result<(), Crow> {
    match v {
        J::Null => Ok(()),
        // Go parses an int64 from the literal itself, so `1.0` or `1e3` is a type error.
        J::Num(n) if !n.is_f64() => {
            *dst = n.as_i64().ok_or(Crow::ReadBody)?;
            Ok(())
        }
        _ => Err(Crow::ReadBody),
    }
}

/// gorooster's `Event`, in its JSON field order.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
struct Event {
    name: String,
    id: String,
    #[serde(rename = "type")]
    kind: String,
    job_data: Value,
}

fn decode_event_into(ev: &mut Event, j: &J) -> Result<(), Crow> {
    for (k, v) in members(j)? {
        if name_matches(k, "name") {
            set_string(&mut ev.name, v)?;
        } else if name_matches(k, "id") {
            set_string(&mut ev.id, v)?;
        } else if name_matches(k, "type") {
            set_string(&mut ev.kind, v)?;
        } else if name_matches(k, "job_data") {
            ev.job_data = v.clone().into_value();
        }
    }
    Ok(())
}

/// `{"event": Event, "release_in": string}` (the original's `BodyEventReleaseIn`).
fn decode_release_in_body(j: &J) -> Result<(Event, String), Crow> {
    let mut ev = Event::default();
    let mut release_in = String::new();
    for (k, v) in members(j)? {
        if name_matches(k, "event") {
            decode_event_into(&mut ev, v)?;
        } else if name_matches(k, "release_in") {
            set_string(&mut release_in, v)?;
        }
    }
    Ok((ev, release_in))
}

/// `{"event": Event, "release_at": int64}` (the original's `BodyEventReleaseAt`).
fn decode_release_at_body(j: &J) -> Result<(Event, i64), Crow> {
    let mut ev = Event::default();
    let mut release_at = 0;
    for (k, v) in members(j)? {
        if name_matches(k, "event") {
            decode_event_into(&mut ev, v)?;
        } else if name_matches(k, "release_at") {
            set_int(&mut release_at, v)?;
        }
    }
    Ok((ev, release_at))
}

/// What a `PUT /event/{key}` body asks for. The server expects the wrapper, but the README and
/// the client library send a bare event, and the client's `UpdateReleaseEventIn` sends only
/// `release_in` to this route: all three are honoured.
enum Update {
    Data {
        event: Event,
        field_prefix: &'static str,
    },
    Reschedule(String),
}

fn decode_update_body(j: &J) -> Result<Update, Crow> {
    let keys = members(j)?;
    let has = |names: &[&str]| {
        keys.iter()
            .any(|(k, _)| names.iter().any(|n| name_matches(k, n)))
    };
    if has(&["event"]) {
        // As the original: a `release_in` next to the event is decoded but not applied.
        let (event, _) = decode_release_in_body(j)?;
        Ok(Update::Data {
            event,
            field_prefix: "event.",
        })
    } else if !has(&["name", "id", "type", "job_data"]) && has(&["release_in"]) {
        let (_, release_in) = decode_release_in_body(j)?;
        Ok(Update::Reschedule(release_in))
    } else {
        // A body with none of the known names is an empty event, which fails validation
        // instead of overwriting the stored event with blanks as the original did.
        let mut event = Event::default();
        decode_event_into(&mut event, j)?;
        Ok(Update::Data {
            event,
            field_prefix: "",
        })
    }
}

// ---------- translation to the job service ----------

fn key_of(path: Result<Path<String>, PathRejection>) -> Result<String, Crow> {
    let Ok(Path(key)) = path else {
        return Err(Crow::field("event_key"));
    };
    if key.contains(':') || validate_key(&key, "event_key").is_err() {
        return Err(Crow::field("event_key"));
    }
    Ok(key)
}

/// The client name as sent, unchecked (`PUT /event/relin` never validated it).
fn raw_client_name(headers: &HeaderMap) -> String {
    headers
        .get(CLIENT_NAME)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default()
}

fn client_name(headers: &HeaderMap) -> Result<String, Crow> {
    let bad = || Crow::field(CLIENT_NAME);
    let name = match headers.get(CLIENT_NAME) {
        None => return Err(bad()),
        Some(v) => std::str::from_utf8(v.as_bytes()).map_err(|_| bad())?,
    };
    if name.contains(':') || validate_namespace(name, CLIENT_NAME).is_err() {
        return Err(bad());
    }
    Ok(name.to_string())
}

/// A `release_in` as a delay in milliseconds. Zero or negative is refused: the original then
/// stored an event that never fired and held its key forever.
fn delay_ms(release_in: &str) -> Option<i64> {
    let ns = parse_go_duration(release_in).ok()?;
    if ns <= 0 {
        return None;
    }
    // Rounded up so that a sub-millisecond delay still lies in the future.
    i64::try_from((ns + 999_999) / 1_000_000).ok()
}

impl Surface {
    fn release_in_to_due(&self, release_in: &str, field: &str) -> Result<Millis, Crow> {
        let ms = delay_ms(release_in).ok_or_else(|| Crow::field(field))?;
        let at = self
            .jobs
            .now()
            .checked_add(ms)
            .ok_or_else(|| Crow::field(field))?;
        self.jobs
            .check_deliver_at(at, field)
            .map_err(|_| Crow::field(field))
    }

    /// A `release_at` in unix seconds; like the original it must be more than a second ahead.
    fn release_at_to_due(&self, release_at: i64) -> Result<Millis, Crow> {
        let Some(at) = release_at.checked_mul(1000) else {
            return Err(if release_at < 0 {
                Crow::PastRelease
            } else {
                Crow::field("release_at")
            });
        };
        if at <= self.jobs.now() + 1000 {
            return Err(Crow::PastRelease);
        }
        self.jobs
            .check_deliver_at(at, "release_at")
            .map_err(|_| Crow::field("release_at"))
    }

    /// Retries only in retry mode, with growing waits between attempts (the original retried
    /// back-to-back, which hammers a failing receiver to no purpose).
    fn retry(&self) -> RetryPolicy {
        if !self.cfg.retry_mode {
            return RetryPolicy::Schedule { delays_ms: vec![] };
        }
        let attempts = self.cfg.retry_count.clamp(1, MAX_ATTEMPTS_LIMIT);
        match RetryPolicy::default() {
            RetryPolicy::Exponential {
                initial_ms,
                max_delay_ms,
                multiplier,
                jitter,
                ..
            } => RetryPolicy::Exponential {
                max_attempts: attempts,
                initial_ms,
                max_delay_ms,
                multiplier,
                jitter,
            },
            _ => RetryPolicy::Fixed {
                max_attempts: attempts,
                delay_ms: 1000,
            },
        }
    }

    /// Checks an event as the original only did at fire time, and builds the call it makes.
    fn target(&self, ev: &Event, prefix: &str) -> Result<Target, Crow> {
        if ev.kind != API_EVENT {
            return Err(Crow::field(format!("{prefix}type")));
        }
        let jd = format!("{prefix}job_data");
        let field = |name: &str| Crow::field(format!("{jd}.{name}"));
        let Value::Object(obj) = &ev.job_data else {
            return Err(Crow::field(jd));
        };
        // The original stored `job_data` as a Go map and decoded it again when firing, so its
        // members were applied in sorted name order.
        let mut entries: Vec<(&String, &Value)> = obj.iter().collect();
        entries.sort_by(|a, b| a.0.cmp(b.0));
        let mut endpoint = String::new();
        let mut method = String::new();
        let mut headers: Vec<(String, String)> = Vec::new();
        let mut data = Value::Null;
        for (k, v) in entries {
            if name_matches(k, "endpoint") {
                set_value_string(&mut endpoint, v).ok_or_else(|| field("endpoint"))?;
            } else if name_matches(k, "method") {
                set_value_string(&mut method, v).ok_or_else(|| field("method"))?;
            } else if name_matches(k, "headers") {
                headers = decode_headers(v).ok_or_else(|| field("headers"))?;
            } else if name_matches(k, "data") {
                data = v.clone();
            }
        }
        let method = method.to_uppercase();
        if !METHODS.contains(&method.as_str()) {
            return Err(field("method"));
        }
        // Go's `Header.Set`: one value per name, the last one given.
        let mut unique: Vec<(String, String)> = Vec::with_capacity(headers.len());
        for (name, value) in headers {
            if IGNORED_HEADERS.contains(&name.to_ascii_lowercase().as_str()) {
                continue;
            }
            unique.retain(|(n, _)| !n.eq_ignore_ascii_case(&name));
            unique.push((name, value));
        }
        // The body is always the JSON of `data` (`null` when absent), with no Content-Type
        // added: that is what the original sent.
        let body = serde_json::to_vec(&data).map_err(|_| field("data"))?;
        let limit = self.jobs.limits().max_body_bytes;
        Target::new("", &method, &endpoint, unique, Body::Binary(body), limit).map_err(
            |Invalid { field: f, .. }| {
                if f == "url" {
                    field("endpoint")
                } else if f == "body" {
                    field("data")
                } else if f.starts_with("headers") {
                    field("headers")
                } else {
                    field(&f)
                }
            },
        )
    }

    /// The live event under a key: a job of this surface that has not finished. The original
    /// deleted an event before firing it, so one being delivered or delivered is not found.
    async fn find(&self, namespace: &str, key: &str) -> Result<(Job, Event), Crow> {
        let job = match self.jobs.get_by_key(namespace, key).await {
            Ok(job) => job,
            Err(JobError::NotFound) => return Err(Crow::NotFound),
            Err(e) => {
                store_error(&e);
                return Err(Crow::Server);
            }
        };
        if job.state != JobState::Scheduled {
            return Err(Crow::NotFound);
        }
        let event = event_of(&job).ok_or(Crow::NotFound)?;
        Ok((job, event))
    }

    async fn change(&self, namespace: &str, job: &Job, change: JobChange) -> Result<Job, Crow> {
        match self.jobs.change(namespace, job.id, change).await {
            Ok(job) => Ok(job),
            // Gone, or claimed for delivery meanwhile: as the original, the event no longer is.
            Err(JobError::NotFound | JobError::Conflict { .. }) => Err(Crow::NotFound),
            Err(JobError::Invalid(i)) => Err(Crow::Field(i.field)),
            Err(e) => {
                store_error(&e);
                Err(Crow::Server)
            }
        }
    }

    async fn create(
        &self,
        namespace: String,
        key: String,
        event: &Event,
        target: Target,
        deliver_at: Millis,
    ) -> Result<(), Crow> {
        let fingerprint = {
            let canonical = serde_json::json!({
                "surface": "gorooster",
                "event": event,
                "deliver_at": deliver_at,
            });
            hex::encode(Sha256::digest(canonical.to_string().as_bytes()))
        };
        let new = NewJob {
            id: Uuid::now_v7(),
            namespace,
            key: Some(key),
            follow_redirects: follows_redirects(&target),
            target,
            retry: self.retry(),
            timeout_ms: self.jobs.limits().default_timeout_ms,
            success: SuccessCodes::default(),
            deliver_at,
            meta: Some(meta_of(event)),
            fingerprint,
        };
        // A finished job frees its key, as the original's keys expired once fired.
        match self.jobs.create(new, true).await {
            Ok(created) if !created.existed => Ok(()),
            Ok(_) | Err(JobError::KeyTaken { .. }) => Err(Crow::DuplicateKey),
            Err(JobError::Invalid(i)) => Err(Crow::Field(i.field)),
            Err(e) => {
                store_error(&e);
                // The original answered every other failure of a create this way.
                Err(Crow::ReadBody)
            }
        }
    }
}

fn set_value_string(dst: &mut String, v: &Value) -> Option<()> {
    match v {
        Value::Null => Some(()),
        Value::String(s) => {
            dst.clone_from(s);
            Some(())
        }
        _ => None,
    }
}

/// `[{"key", "value"}]`; `null` is no headers.
fn decode_headers(v: &Value) -> Option<Vec<(String, String)>> {
    let items = match v {
        Value::Null => return Some(vec![]),
        Value::Array(items) => items,
        _ => return None,
    };
    let mut out = Vec::with_capacity(items.len());
    for item in items {
        let (mut key, mut value) = (String::new(), String::new());
        match item {
            // An empty header, which the name check then refuses.
            Value::Null => {}
            Value::Object(m) => {
                let mut entries: Vec<(&String, &Value)> = m.iter().collect();
                entries.sort_by(|a, b| a.0.cmp(b.0));
                for (k, v) in entries {
                    if name_matches(k, "key") {
                        set_value_string(&mut key, v)?;
                    } else if name_matches(k, "value") {
                        set_value_string(&mut value, v)?;
                    }
                }
            }
            _ => return None,
        }
        out.push((key, value));
    }
    Some(out)
}

/// Go's client followed redirects; Herald follows them for GET only, where repeating the call
/// elsewhere cannot change its meaning.
fn follows_redirects(target: &Target) -> bool {
    target.method == "GET"
}

fn meta_of(event: &Event) -> Value {
    serde_json::json!({ "gorooster": { "event": event } })
}

fn event_of(job: &Job) -> Option<Event> {
    let ev = job.meta.as_ref()?.get("gorooster")?.get("event")?;
    serde_json::from_value(ev.clone()).ok()
}

// ---------- responses ----------

#[derive(Serialize)]
struct Success<'a> {
    event: &'a Event,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_release_in: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    event_release_at: Option<i64>,
}

enum Format {
    In,
    At,
    Both,
}

fn release_format(headers: &HeaderMap) -> Format {
    let raw = headers
        .get(RELEASE_FORMAT)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .unwrap_or_default();
    if raw.is_empty() {
        return Format::In;
    }
    match raw.to_uppercase().as_str() {
        "IN" => Format::In,
        "AT" => Format::At,
        _ => Format::Both,
    }
}

fn due_of(job: &Job) -> Millis {
    job.next_attempt_at.unwrap_or(job.deliver_at)
}

/// Time left as Redis reported it for the original's key TTL: whole seconds, rounded.
fn remaining(job: &Job, now: Millis) -> String {
    let ms = due_of(job).saturating_sub(now).max(0);
    let secs = (ms + 500) / 1000;
    format_go_duration(secs as i128 * 1_000_000_000)
}

impl Surface {
    fn respond(&self, status: StatusCode, event: &Event, job: &Job, format: Format) -> Response {
        let (release_in, release_at) = match format {
            Format::In => (true, false),
            Format::At => (false, true),
            Format::Both => (true, true),
        };
        json_response(
            status,
            &Success {
                event,
                event_release_in: release_in.then(|| remaining(job, self.jobs.now())),
                event_release_at: release_at.then(|| due_of(job).div_euclid(1000)),
            },
        )
    }
}

// ---------- handlers ----------

type Key = Result<Path<String>, PathRejection>;
type RawBody = Result<Bytes, BytesRejection>;

async fn create_release_in(
    State(s): State<Surface>,
    path: Key,
    headers: HeaderMap,
    body: RawBody,
) -> Result<Response, Crow> {
    let key = key_of(path)?;
    let namespace = client_name(&headers)?;
    let (event, release_in) = decode_release_in_body(&read_body(body)?)?;
    let due = s.release_in_to_due(&release_in, "release_in")?;
    let target = s.target(&event, "event.")?;
    s.create(namespace, key, &event, target, due).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &Success {
            event: &event,
            // Echoed as sent, not normalised: clients compare it with what they asked for.
            event_release_in: Some(release_in),
            event_release_at: None,
        },
    ))
}

async fn create_release_at(
    State(s): State<Surface>,
    path: Key,
    headers: HeaderMap,
    body: RawBody,
) -> Result<Response, Crow> {
    let key = key_of(path)?;
    let namespace = client_name(&headers)?;
    let (event, release_at) = decode_release_at_body(&read_body(body)?)?;
    let due = s.release_at_to_due(release_at)?;
    let target = s.target(&event, "event.")?;
    s.create(namespace, key, &event, target, due).await?;
    Ok(json_response(
        StatusCode::CREATED,
        &Success {
            event: &event,
            event_release_in: None,
            event_release_at: Some(release_at),
        },
    ))
}

async fn update_release_in(
    State(s): State<Surface>,
    path: Key,
    headers: HeaderMap,
    body: RawBody,
) -> Result<Response, Crow> {
    let key = key_of(path)?;
    // The original never checked the client name here; a bad one matches no event.
    let namespace = raw_client_name(&headers);
    let (_, release_in) = decode_release_in_body(&read_body(body)?)?;
    let due = s.release_in_to_due(&release_in, "event_release_in")?;
    let (job, event) = s.find(&namespace, &key).await?;
    let change = JobChange {
        deliver_at: Some(due),
        ..Default::default()
    };
    let job = s.change(&namespace, &job, change).await?;
    Ok(s.respond(StatusCode::ACCEPTED, &event, &job, Format::In))
}

async fn update_release_at(
    State(s): State<Surface>,
    path: Key,
    headers: HeaderMap,
    body: RawBody,
) -> Result<Response, Crow> {
    let key = key_of(path)?;
    let namespace = client_name(&headers)?;
    let (_, release_at) = decode_release_at_body(&read_body(body)?)?;
    let due = s.release_at_to_due(release_at)?;
    // The original answered every failure of this update, not found included, with CROW-001.
    let (job, event) = s.find(&namespace, &key).await.map_err(|_| Crow::ReadBody)?;
    let change = JobChange {
        deliver_at: Some(due),
        ..Default::default()
    };
    s.change(&namespace, &job, change)
        .await
        .map_err(|_| Crow::ReadBody)?;
    Ok(json_response(
        StatusCode::ACCEPTED,
        &Success {
            event: &event,
            event_release_in: None,
            event_release_at: Some(release_at),
        },
    ))
}

async fn get_event(
    State(s): State<Surface>,
    path: Key,
    headers: HeaderMap,
) -> Result<Response, Crow> {
    let key = key_of(path)?;
    let namespace = client_name(&headers)?;
    let (job, event) = s.find(&namespace, &key).await?;
    Ok(s.respond(StatusCode::OK, &event, &job, release_format(&headers)))
}

async fn update_event(
    State(s): State<Surface>,
    path: Key,
    headers: HeaderMap,
    body: RawBody,
) -> Result<Response, Crow> {
    let key = key_of(path)?;
    let namespace = client_name(&headers)?;
    let format = release_format(&headers);
    match decode_update_body(&read_body(body)?)? {
        Update::Data {
            event,
            field_prefix,
        } => {
            let target = s.target(&event, field_prefix)?;
            let (job, _) = s.find(&namespace, &key).await?;
            // The release time is kept, as the original's SET KEEPTTL did.
            let change = JobChange {
                follow_redirects: Some(follows_redirects(&target)),
                target: Some(target),
                meta: Some(Some(meta_of(&event))),
                ..Default::default()
            };
            let job = s.change(&namespace, &job, change).await?;
            Ok(s.respond(StatusCode::ACCEPTED, &event, &job, format))
        }
        Update::Reschedule(release_in) => {
            let due = s.release_in_to_due(&release_in, "release_in")?;
            let (job, event) = s.find(&namespace, &key).await?;
            let change = JobChange {
                deliver_at: Some(due),
                ..Default::default()
            };
            let job = s.change(&namespace, &job, change).await?;
            Ok(s.respond(StatusCode::ACCEPTED, &event, &job, format))
        }
    }
}

async fn delete_event(
    State(s): State<Surface>,
    path: Key,
    headers: HeaderMap,
) -> Result<Response, Crow> {
    let key = key_of(path)?;
    let namespace = client_name(&headers)?;
    let (job, _) = s.find(&namespace, &key).await?;
    match s.jobs.cancel(&namespace, job.id).await {
        Ok(_) => Ok((
            StatusCode::NO_CONTENT,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
        )
            .into_response()),
        Err(JobError::NotFound | JobError::Conflict { .. }) => Err(Crow::NotFound),
        Err(e) => {
            store_error(&e);
            Err(Crow::Server)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(s: &str) -> J {
        serde_json::from_str(s).expect("valid JSON")
    }

    #[test]
    fn names_fold_like_go() {
        assert!(name_matches("Name", "name"));
        assert!(name_matches("JOB_DATA", "job_data"));
        assert!(name_matches("\u{212A}ey", "key"));
        assert!(name_matches("\u{017F}", "s"));
        assert!(!name_matches("names", "name"));
        assert!(!name_matches("job-data", "job_data"));
    }

    #[test]
    fn last_member_wins_and_null_keeps() {
        let (ev, rel) = decode_release_in_body(&parse(
            r#"{"event":{"name":"a","NAME":"b","Name":null,"Job_Data":{"x":1}},"RELEASE_IN":"1s"}"#,
        ))
        .unwrap();
        assert_eq!(ev.name, "b");
        assert_eq!(ev.job_data, serde_json::json!({"x": 1}));
        assert_eq!(rel, "1s");
    }

    #[test]
    fn type_errors_are_unreadable_bodies() {
        for bad in [
            r#"[]"#,
            r#"{"event":{"name":1}}"#,
            r#"{"event":"x"}"#,
            r#"{"release_in":5}"#,
        ] {
            assert!(
                matches!(decode_release_in_body(&parse(bad)), Err(Crow::ReadBody)),
                "{bad}"
            );
        }
        for bad in [r#"{"release_at":1.5}"#, r#"{"release_at":"1"}"#] {
            assert!(
                matches!(decode_release_at_body(&parse(bad)), Err(Crow::ReadBody)),
                "{bad}"
            );
        }
        assert_eq!(
            decode_release_at_body(&parse(r#"{"release_at":17}"#))
                .unwrap()
                .1,
            17
        );
    }

    #[test]
    fn update_shapes() {
        let wrapped = decode_update_body(&parse(r#"{"event":{"name":"a"}}"#)).unwrap();
        assert!(
            matches!(wrapped, Update::Data { field_prefix: "event.", ref event } if event.name == "a")
        );
        let bare = decode_update_body(&parse(r#"{"Name":"a","type":"api_event"}"#)).unwrap();
        assert!(matches!(bare, Update::Data { field_prefix: "", ref event } if event.name == "a"));
        let re = decode_update_body(&parse(r#"{"release_in":"3m"}"#)).unwrap();
        assert!(matches!(re, Update::Reschedule(ref r) if r == "3m"));
        let empty = decode_update_body(&parse(r#"{}"#)).unwrap();
        assert!(matches!(empty, Update::Data { ref event, .. } if *event == Event::default()));
    }

    #[test]
    fn delays() {
        assert_eq!(delay_ms("1h30m20s"), Some(5_420_000));
        assert_eq!(delay_ms("1ns"), Some(1));
        assert_eq!(delay_ms("0s"), None);
        assert_eq!(delay_ms("-5s"), None);
        assert_eq!(delay_ms("soon"), None);
    }
}
