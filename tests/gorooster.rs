//! The gorooster compatibility surface against the original's contract (spec §1.2, §6.3,
//! §6.4) and the seed README's examples, on both stores.

mod common;

use std::time::{Duration, Instant};

use axum::http::StatusCode;
use common::*;
use reqwest::Method;
use serde_json::{json, Value};

const CLIENT: &str = "TEST-CLIENT";

/// The seed README's "Create event" body, verbatim.
const README_CREATE: &str = r#"{
  "event": {
    "name": "cancel order",
    "id": "901ec8dc-8de2-448c-b64c-6f0bc49cabff",
    "type": "api_event",
    "job_data": {
      "endpoint": "https://jsonplaceholder.typicode.com/posts/1",
      "data": null,
      "method": "GET",
      "headers": [
        {
          "key": "Token",
          "value": "b77d808805559c2fa028add373b661a3"
        },
        {
          "key": "App-Version",
          "value": "6.0.0"
        },
        {
          "key": "Device-Id",
          "value": "e60c90b865524f76"
        },
        {
          "key": "Content-Type",
          "value": "application/json"
        }
      ]
    }
  },
  "release_in": "10h0s"
}"#;

/// The seed README's "Update data event" body, verbatim (note `"Name"`).
const README_UPDATE_DATA: &str = r#"{
  "Name": "cancel_order_update",
  "id": "901ec8dc-8de2-448c-b64c-6f0bc49cabff",
  "type": "api_event",
  "job_data": {
    "endpoint": "https://foo.id/bar",
    "data": null,
    "method": "GET",
    "headers": [
      {
        "key": "Token",
        "value": "b77d808805559c2fa028add373b661a3"
      },
      {
        "key": "App-Version",
        "value": "6.0.0"
      },
      {
        "key": "Device-Id",
        "value": "e60c90b865524f76"
      },
      {
        "key": "Content-Type",
        "value": "application/json"
      }
    ]
  }
}"#;

/// The seed README's "Update release event" body, verbatim.
const README_UPDATE_RELEASE: &str = r#"{
  "release_in": "3m50s"
}"#;

/// A response: status, `Content-Type`, raw body and the body as JSON (`Null` when empty).
struct Resp {
    status: StatusCode,
    content_type: Option<String>,
    raw: String,
    json: Value,
}

async fn call(
    s: &TestServer,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Resp {
    let mut req = s.http.request(method, format!("{}{}", s.gorooster, path));
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    if let Some(b) = body {
        req = req.body(b.to_string());
    }
    let r = req.send().await.expect("request");
    let status = StatusCode::from_u16(r.status().as_u16()).unwrap();
    let content_type = r
        .headers()
        .get("content-type")
        .map(|v| v.to_str().unwrap().to_string());
    let raw = r.text().await.unwrap();
    let json = if raw.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&raw).unwrap_or(Value::String(raw.clone()))
    };
    Resp {
        status,
        content_type,
        raw,
        json,
    }
}

/// A request as the gorooster client sends it: `X-CLIENT-NAME` set.
async fn as_client(s: &TestServer, method: Method, path: &str, body: Option<Value>) -> Resp {
    let body = body.map(|b| b.to_string());
    call(
        s,
        method,
        path,
        &[("X-CLIENT-NAME", CLIENT)],
        body.as_deref(),
    )
    .await
}

async fn get_event(s: &TestServer, key: &str, format: Option<&str>) -> Resp {
    let mut h = vec![("X-CLIENT-NAME", CLIENT)];
    if let Some(f) = format {
        h.push(("X-RELEASE-FORMAT", f));
    }
    call(s, Method::GET, &format!("/event/{key}"), &h, None).await
}

fn api_event(endpoint: &str, method: &str, headers: Value, data: Option<Value>) -> Value {
    let mut job = json!({ "endpoint": endpoint, "method": method, "headers": headers });
    if let Some(d) = data {
        job["data"] = d;
    }
    json!({ "name": "test event", "id": "ev-1", "type": "api_event", "job_data": job })
}

fn far_event() -> Value {
    api_event("http://127.0.0.1:9/never", "POST", json!([]), None)
}

fn error(code: &str, en: &str, id: &str) -> Value {
    json!({ "error_code": code, "error_message": en, "localized_message": { "en": en, "id": id } })
}

fn bad_param(field: &str) -> Value {
    error(
        "CROW-400",
        &format!("there is an error in the {field} parameter"),
        &format!("ada kesalahan pada parameter {field}"),
    )
}

fn not_found() -> Value {
    error("CROW-404", "event not Found", "event tidak dapat ditemukan")
}

fn read_failed() -> Value {
    error("CROW-001", "failed to read data", "gagal membaca data")
}

fn past_release() -> Value {
    error(
        "CROW-401",
        "unable to release past events.",
        "tidak dapat merilis event masa lalu.",
    )
}

#[track_caller]
fn assert_error(r: &Resp, status: StatusCode, body: Value) {
    assert_eq!(r.status, status, "{}", r.raw);
    assert_eq!(r.json, body, "{}", r.raw);
    assert_eq!(r.content_type.as_deref(), Some("application/json"));
}

fn now_s() -> i64 {
    now_ms() / 1000
}

/// Remaining time as the original showed it: whole seconds, Go duration format.
fn secs_of(go_duration: &str) -> i64 {
    let ns = herald::duration::parse_go_duration(go_duration).expect("a Go duration");
    assert_eq!(ns % 1_000_000_000, 0, "{go_duration} is not whole seconds");
    (ns / 1_000_000_000) as i64
}

async fn create_in(s: &TestServer, key: &str, event: Value, release_in: &str) -> Resp {
    as_client(
        s,
        Method::POST,
        &format!("/event/relin/{key}"),
        Some(json!({ "event": event, "release_in": release_in })),
    )
    .await
}

/// Polls until the event is gone from the surface (fired and finished, or cancelled).
async fn wait_gone(s: &TestServer, key: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if get_event(s, key, None).await.status == StatusCode::NOT_FOUND {
            return;
        }
        assert!(Instant::now() < deadline, "event {key} never went away");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

both_stores! {
    async fn health_check(b: Backend) {
        let s = TestServer::start(b).await;
        let r = call(&s, Method::GET, "/", &[], None).await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.raw.is_empty());
    }

    async fn readme_examples_work_as_written(b: Backend) {
        let s = TestServer::start(b).await;
        let readme_headers = [
            ("X-CLIENT-NAME", "POSTMANT-CLIENT"),
            ("Accept-Encoding", "application/json"),
        ];
        let r = call(&s, Method::POST, "/event/relin/order-42", &readme_headers, Some(README_CREATE)).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);
        assert_eq!(r.content_type.as_deref(), Some("application/json"));
        // Byte for byte what the original sends: Go struct field order, job_data as a Go map
        // (sorted names), and release_in echoed unnormalised.
        assert_eq!(
            r.raw,
            concat!(
                r#"{"event":{"name":"cancel order","id":"901ec8dc-8de2-448c-b64c-6f0bc49cabff","type":"api_event","#,
                r#""job_data":{"data":null,"endpoint":"https://jsonplaceholder.typicode.com/posts/1","headers":["#,
                r#"{"key":"Token","value":"b77d808805559c2fa028add373b661a3"},{"key":"App-Version","value":"6.0.0"},"#,
                r#"{"key":"Device-Id","value":"e60c90b865524f76"},{"key":"Content-Type","value":"application/json"}],"#,
                r#""method":"GET"}},"event_release_in":"10h0s"}"#
            )
        );
        let sent: Value = serde_json::from_str(README_CREATE).unwrap();

        // Get event, with the README's headers (X-RELEASE-FORMAT: at).
        let get_headers = [
            ("Accept-Encoding", "application/json"),
            ("X-CLIENT-NAME", "POSTMANT-CLIENT"),
            ("X-RELEASE-FORMAT", "at"),
        ];
        let r = call(&s, Method::GET, "/event/order-42", &get_headers, None).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.raw);
        assert_eq!(r.json["event"], sent["event"]);
        assert!(r.json.get("event_release_in").is_none(), "{}", r.raw);
        let at = r.json["event_release_at"].as_i64().unwrap();
        assert!((at - (now_s() + 36_000)).abs() <= 2, "{at}");

        // Update release event.
        let r = call(&s, Method::PUT, "/event/relin/order-42", &readme_headers, Some(README_UPDATE_RELEASE)).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.raw);
        assert_eq!(r.json["event"], sent["event"]);
        let left = secs_of(r.json["event_release_in"].as_str().unwrap());
        assert!((229..=230).contains(&left), "{}", r.raw);
        assert!(r.json.get("event_release_at").is_none());

        // Update data event: a bare event, `"Name"` capitalised.
        let r = call(&s, Method::PUT, "/event/order-42", &get_headers, Some(README_UPDATE_DATA)).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.raw);
        assert_eq!(r.json["event"]["name"], "cancel_order_update");
        assert_eq!(r.json["event"]["job_data"]["endpoint"], "https://foo.id/bar");
        assert!(r.json.get("event_release_in").is_none());
        let at = r.json["event_release_at"].as_i64().unwrap();
        assert!((at - (now_s() + 230)).abs() <= 2, "the release time is kept: {}", r.raw);
        let r = call(&s, Method::GET, "/event/order-42", &get_headers, None).await;
        assert_eq!(r.json["event"]["name"], "cancel_order_update");

        // Delete event.
        let r = call(&s, Method::DELETE, "/event/order-42", &get_headers, None).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        assert!(r.raw.is_empty());
        let r = call(&s, Method::GET, "/event/order-42", &get_headers, None).await;
        assert_error(&r, StatusCode::NOT_FOUND, not_found());
    }

    async fn create_release_at_and_update_it(b: Backend) {
        let s = TestServer::start(b).await;
        let at = now_s() + 3600;
        let r = as_client(&s, Method::POST, "/event/relat/k1",
            Some(json!({ "event": far_event(), "release_at": at }))).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);
        assert_eq!(r.json, json!({ "event": far_event(), "event_release_at": at }));

        let r = get_event(&s, "k1", Some("AT")).await;
        assert_eq!(r.status, StatusCode::OK);
        assert_eq!(r.json, json!({ "event": far_event(), "event_release_at": at }));

        let at2 = now_s() + 7200;
        let r = as_client(&s, Method::PUT, "/event/relat/k1", Some(json!({ "release_at": at2 }))).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.raw);
        assert_eq!(r.json, json!({ "event": far_event(), "event_release_at": at2 }));
        let r = get_event(&s, "k1", Some("at")).await;
        assert_eq!(r.json["event_release_at"], at2);
        let left = secs_of(get_event(&s, "k1", None).await.json["event_release_in"].as_str().unwrap());
        assert!((at2 - now_s() - left).abs() <= 2);

        // Not in the future.
        let r = as_client(&s, Method::PUT, "/event/relat/k1", Some(json!({ "release_at": now_s() - 10 }))).await;
        assert_error(&r, StatusCode::BAD_REQUEST, past_release());
        // The original answers an unknown event on this route with CROW-001.
        let r = as_client(&s, Method::PUT, "/event/relat/nope", Some(json!({ "release_at": at2 }))).await;
        assert_error(&r, StatusCode::INTERNAL_SERVER_ERROR, read_failed());
        let r = as_client(&s, Method::PUT, "/event/relat/k1", Some(json!({ "release_at": "soon" }))).await;
        assert_error(&r, StatusCode::INTERNAL_SERVER_ERROR, read_failed());
        let r = call(&s, Method::PUT, "/event/relat/k1", &[], Some(r#"{"release_at":1}"#)).await;
        assert_error(&r, StatusCode::BAD_REQUEST, bad_param("X-CLIENT-NAME"));
    }

    async fn create_rejections(b: Backend) {
        let s = TestServer::start(b).await;
        let ok = json!({ "event": far_event(), "release_in": "1h" });
        let post = |path: &'static str, headers: Vec<(&'static str, &'static str)>, body: String| {
            let s = &s;
            async move { call(s, Method::POST, path, &headers, Some(&body)).await }
        };
        let client = vec![("X-CLIENT-NAME", CLIENT)];

        // Key and client name: non-empty and without ':'.
        let r = post("/event/relin/a:b", client.clone(), ok.to_string()).await;
        assert_error(&r, StatusCode::BAD_REQUEST, bad_param("event_key"));
        let r = post("/event/relat/a%3Ab", client.clone(), ok.to_string()).await;
        assert_error(&r, StatusCode::BAD_REQUEST, bad_param("event_key"));
        let r = post("/event/relin/k", vec![], ok.to_string()).await;
        assert_error(&r, StatusCode::BAD_REQUEST, bad_param("X-CLIENT-NAME"));
        let r = post("/event/relin/k", vec![("X-CLIENT-NAME", "")], ok.to_string()).await;
        assert_error(&r, StatusCode::BAD_REQUEST, bad_param("X-CLIENT-NAME"));
        let r = post("/event/relat/k", vec![("X-CLIENT-NAME", "a:b")], ok.to_string()).await;
        assert_error(&r, StatusCode::BAD_REQUEST, bad_param("X-CLIENT-NAME"));

        // Release times.
        for bad in ["soon", "10", "", "0s", "-5s"] {
            let r = create_in(&s, "k", far_event(), bad).await;
            assert_error(&r, StatusCode::BAD_REQUEST, bad_param("release_in"));
        }
        let r = post("/event/relin/k", client.clone(), json!({ "event": far_event() }).to_string()).await;
        assert_error(&r, StatusCode::BAD_REQUEST, bad_param("release_in"));
        for at in [now_s() - 60, now_s() + 1, 0] {
            let r = post("/event/relat/k", client.clone(),
                json!({ "event": far_event(), "release_at": at }).to_string()).await;
            assert_error(&r, StatusCode::BAD_REQUEST, past_release());
        }

        // Undecodable bodies.
        for body in ["{", "", "[]", r#"{"event":{"name":5},"release_in":"1h"}"#,
                     r#"{"event":"x","release_in":"1h"}"#, r#"{"event":{},"release_in":60}"#] {
            let r = post("/event/relin/k", client.clone(), body.to_string()).await;
            assert_error(&r, StatusCode::INTERNAL_SERVER_ERROR, read_failed());
        }
        let r = post("/event/relat/k", client.clone(),
            json!({ "event": far_event(), "release_at": 1.5e12 }).to_string()).await;
        assert_error(&r, StatusCode::INTERNAL_SERVER_ERROR, read_failed());

        // Events the original accepted and then silently dropped when firing.
        let mut e = far_event();
        e["type"] = json!("email_event");
        assert_error(&create_in(&s, "k", e, "1h").await, StatusCode::BAD_REQUEST, bad_param("event.type"));
        let mut e = far_event();
        e["job_data"]["method"] = json!("FETCH");
        assert_error(&create_in(&s, "k", e, "1h").await, StatusCode::BAD_REQUEST, bad_param("event.job_data.method"));
        let mut e = far_event();
        e["job_data"]["method"] = json!("HEAD");
        assert_error(&create_in(&s, "k", e, "1h").await, StatusCode::BAD_REQUEST, bad_param("event.job_data.method"));
        for endpoint in [json!("ftp://example.com/x"), json!(""), json!(null), json!("not a url")] {
            let mut e = far_event();
            e["job_data"]["endpoint"] = endpoint;
            assert_error(&create_in(&s, "k", e, "1h").await, StatusCode::BAD_REQUEST,
                bad_param("event.job_data.endpoint"));
        }
        for headers in [json!("x"), json!([{ "key": "bad name", "value": "v" }]), json!([null]),
                        json!([{ "key": "Herald-Attempt", "value": "9" }])] {
            let mut e = far_event();
            e["job_data"]["headers"] = headers;
            assert_error(&create_in(&s, "k", e, "1h").await, StatusCode::BAD_REQUEST,
                bad_param("event.job_data.headers"));
        }
        let mut e = far_event();
        e["job_data"] = json!(null);
        assert_error(&create_in(&s, "k", e, "1h").await, StatusCode::BAD_REQUEST, bad_param("event.job_data"));

        // None of that created anything.
        assert_error(&get_event(&s, "k", None).await, StatusCode::NOT_FOUND, not_found());
    }

    async fn duplicate_key_is_crow_402(b: Backend) {
        let s = TestServer::start(b).await;
        assert_eq!(create_in(&s, "dup", far_event(), "1h").await.status, StatusCode::CREATED);
        let r = create_in(&s, "dup", far_event(), "1h").await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(
            r.raw,
            r#"{"error_code":"CROW-402","error_message":"duplicat key.","localized_message":{"en":"duplicat key.","id":"key duplikat."}}"#
        );
        let mut other = far_event();
        other["name"] = json!("other");
        let r = as_client(&s, Method::POST, "/event/relat/dup",
            Some(json!({ "event": other, "release_at": now_s() + 60 }))).await;
        assert_eq!(r.json["error_code"], "CROW-402");
        // Another client name is another namespace.
        let r = call(&s, Method::POST, "/event/relin/dup", &[("X-CLIENT-NAME", "OTHER")],
            Some(&json!({ "event": far_event(), "release_in": "1h" }).to_string())).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);
    }

    async fn get_release_formats(b: Backend) {
        let s = TestServer::start(b).await;
        assert_eq!(create_in(&s, "f", far_event(), "2h").await.status, StatusCode::CREATED);
        let due = now_s() + 7200;
        for format in [None, Some(""), Some("IN"), Some("in")] {
            let r = get_event(&s, "f", format).await;
            assert_eq!(r.status, StatusCode::OK);
            assert_eq!(r.json["event"], far_event());
            assert!(r.json.get("event_release_at").is_none(), "{format:?}: {}", r.raw);
            let left = secs_of(r.json["event_release_in"].as_str().unwrap());
            assert!((7198..=7200).contains(&left), "{format:?}: {}", r.raw);
            let text = r.json["event_release_in"].as_str().unwrap();
            assert!(text == "2h0m0s" || text.starts_with("1h59m"), "{text}");
        }
        for format in ["AT", "at", "At"] {
            let r = get_event(&s, "f", Some(format)).await;
            assert!(r.json.get("event_release_in").is_none(), "{}", r.raw);
            assert!((r.json["event_release_at"].as_i64().unwrap() - due).abs() <= 2);
        }
        for format in ["both", "IN,AT", "x"] {
            let r = get_event(&s, "f", Some(format)).await;
            assert!(r.json["event_release_in"].is_string(), "{}", r.raw);
            assert!((r.json["event_release_at"].as_i64().unwrap() - due).abs() <= 2);
        }

        let r = call(&s, Method::GET, "/event/f", &[], None).await;
        assert_error(&r, StatusCode::BAD_REQUEST, bad_param("X-CLIENT-NAME"));
        let r = get_event(&s, "f:g", None).await;
        assert_error(&r, StatusCode::BAD_REQUEST, bad_param("event_key"));
        assert_error(&get_event(&s, "missing", None).await, StatusCode::NOT_FOUND, not_found());
        let r = call(&s, Method::GET, "/event/f", &[("X-CLIENT-NAME", "OTHER")], None).await;
        assert_error(&r, StatusCode::NOT_FOUND, not_found());
    }

    async fn put_release_in(b: Backend) {
        let s = TestServer::start(b).await;
        assert_eq!(create_in(&s, "r", far_event(), "1h").await.status, StatusCode::CREATED);
        let r = as_client(&s, Method::PUT, "/event/relin/r", Some(json!({ "release_in": "90m" }))).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.raw);
        assert_eq!(r.json["event"], far_event());
        let left = secs_of(r.json["event_release_in"].as_str().unwrap());
        assert!((5399..=5400).contains(&left), "{}", r.raw);
        let left = secs_of(get_event(&s, "r", None).await.json["event_release_in"].as_str().unwrap());
        assert!((5398..=5400).contains(&left));

        for bad in ["later", "0s", "-1m"] {
            let r = as_client(&s, Method::PUT, "/event/relin/r", Some(json!({ "release_in": bad }))).await;
            assert_error(&r, StatusCode::BAD_REQUEST, bad_param("event_release_in"));
        }
        let r = as_client(&s, Method::PUT, "/event/relin/nope", Some(json!({ "release_in": "1m" }))).await;
        assert_error(&r, StatusCode::NOT_FOUND, not_found());
        let r = as_client(&s, Method::PUT, "/event/relin/r:x", Some(json!({ "release_in": "1m" }))).await;
        assert_error(&r, StatusCode::BAD_REQUEST, bad_param("event_key"));
        // This route never validated the client name: a bad one just finds nothing.
        let r = call(&s, Method::PUT, "/event/relin/r", &[("X-CLIENT-NAME", "a:b")],
            Some(r#"{"release_in":"1m"}"#)).await;
        assert_error(&r, StatusCode::NOT_FOUND, not_found());
        let r = call(&s, Method::PUT, "/event/relin/r", &[], Some(r#"{"release_in":"1m"}"#)).await;
        assert_error(&r, StatusCode::NOT_FOUND, not_found());
        let r = call(&s, Method::PUT, "/event/relin/r", &[("X-CLIENT-NAME", CLIENT)], Some("{nope")).await;
        assert_error(&r, StatusCode::INTERNAL_SERVER_ERROR, read_failed());
    }

    async fn put_event_accepts_three_shapes(b: Backend) {
        let s = TestServer::start(b).await;
        assert_eq!(create_in(&s, "u", far_event(), "1h").await.status, StatusCode::CREATED);

        // 1. The server's own shape, {"event": …}.
        let mut e1 = far_event();
        e1["name"] = json!("wrapped");
        let r = as_client(&s, Method::PUT, "/event/u", Some(json!({ "event": e1 }))).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.raw);
        assert_eq!(r.json["event"], e1);
        let left = secs_of(r.json["event_release_in"].as_str().unwrap());
        assert!((3598..=3600).contains(&left), "the release time is kept: {}", r.raw);
        assert_eq!(get_event(&s, "u", None).await.json["event"], e1);

        // 2. A bare event, as the README and the client's UpdateDataEvent send it.
        let mut e2 = far_event();
        e2["name"] = json!("bare");
        e2["job_data"]["method"] = json!("patch");
        let r = call(&s, Method::PUT, "/event/u",
            &[("X-CLIENT-NAME", CLIENT), ("X-RELEASE-FORMAT", "at")], Some(&e2.to_string())).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.raw);
        assert_eq!(r.json["event"], e2);
        assert!((r.json["event_release_at"].as_i64().unwrap() - (now_s() + 3600)).abs() <= 2);
        assert!(r.json.get("event_release_in").is_none());

        // 3. Only a release_in, as the client's UpdateReleaseEventIn sends it: a reschedule
        // that leaves the event as it was.
        let r = call(&s, Method::PUT, "/event/u",
            &[("X-CLIENT-NAME", CLIENT), ("X-RELEASE-FORMAT", "both")], Some(r#"{"release_in":"2h30m"}"#)).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.raw);
        assert_eq!(r.json["event"], e2);
        let left = secs_of(r.json["event_release_in"].as_str().unwrap());
        assert!((8998..=9000).contains(&left), "{}", r.raw);
        assert!((r.json["event_release_at"].as_i64().unwrap() - (now_s() + 9000)).abs() <= 2);
        assert_eq!(get_event(&s, "u", None).await.json["event"], e2);

        // Nothing is overwritten with an empty or invalid event.
        let r = as_client(&s, Method::PUT, "/event/u", Some(json!({}))).await;
        assert_error(&r, StatusCode::BAD_REQUEST, bad_param("type"));
        let r = as_client(&s, Method::PUT, "/event/u", Some(json!({ "event": {} }))).await;
        assert_error(&r, StatusCode::BAD_REQUEST, bad_param("event.type"));
        let mut bad = far_event();
        bad["job_data"]["endpoint"] = json!("nowhere");
        let r = as_client(&s, Method::PUT, "/event/u", Some(bad)).await;
        assert_error(&r, StatusCode::BAD_REQUEST, bad_param("job_data.endpoint"));
        let r = as_client(&s, Method::PUT, "/event/u", Some(json!({ "release_in": "never" }))).await;
        assert_error(&r, StatusCode::BAD_REQUEST, bad_param("release_in"));
        assert_eq!(get_event(&s, "u", None).await.json["event"], e2);

        let r = call(&s, Method::PUT, "/event/u", &[("X-CLIENT-NAME", CLIENT)], Some("nope")).await;
        assert_error(&r, StatusCode::INTERNAL_SERVER_ERROR, read_failed());
        let r = as_client(&s, Method::PUT, "/event/missing", Some(far_event())).await;
        assert_error(&r, StatusCode::NOT_FOUND, not_found());
        let r = call(&s, Method::PUT, "/event/u", &[], Some(&far_event().to_string())).await;
        assert_error(&r, StatusCode::BAD_REQUEST, bad_param("X-CLIENT-NAME"));
        let r = as_client(&s, Method::PUT, "/event/u:v", Some(far_event())).await;
        assert_error(&r, StatusCode::BAD_REQUEST, bad_param("event_key"));
    }

    async fn field_names_are_case_insensitive(b: Backend) {
        let s = TestServer::start(b).await;
        let rx = Receiver::start().await;
        let body = json!({
            "EVENT": {
                "Name": "shouting",
                "ID": "e-9",
                "Type": "api_event",
                "JOB_DATA": {
                    "Endpoint": rx.url("/hook"),
                    "METHOD": "put",
                    "Headers": [{ "KEY": "X-Trace", "Value": "abc" }],
                    "Data": { "n": 1 }
                }
            },
            "Release_In": "300ms"
        });
        let r = as_client(&s, Method::POST, "/event/relin/ci", Some(body.clone())).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);
        assert_eq!(
            r.json,
            json!({
                "event": { "name": "shouting", "id": "e-9", "type": "api_event", "job_data": body["EVENT"]["JOB_DATA"] },
                "event_release_in": "300ms"
            })
        );
        let got = rx.wait_for(1, Duration::from_secs(10)).await;
        assert_eq!(got[0].method, "PUT");
        assert_eq!(got[0].path, "/hook");
        assert_eq!(got[0].header("x-trace"), Some("abc"));
        assert_eq!(got[0].json(), json!({ "n": 1 }));

        // And on the release-at create and the PUT routes.
        let r = as_client(&s, Method::POST, "/event/relat/ci2",
            Some(json!({ "Event": far_event(), "RELEASE_AT": now_s() + 600 }))).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);
        let r = as_client(&s, Method::PUT, "/event/relin/ci2", Some(json!({ "Release_IN": "20m" }))).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.raw);
        let r = as_client(&s, Method::PUT, "/event/ci2", Some(json!({ "RELEASE_IN": "30m" }))).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.raw);
        assert!((1798..=1800).contains(&secs_of(r.json["event_release_in"].as_str().unwrap())));
        let r = as_client(&s, Method::PUT, "/event/ci2", Some(json!({ "Event": { "NAME": "renamed",
            "type": "api_event", "job_data": far_event()["job_data"] } }))).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.raw);
        assert_eq!(r.json["event"]["name"], "renamed");
    }

    async fn fires_at_its_time_as_the_original_did(b: Backend) {
        let s = TestServer::start(b).await;
        let rx = Receiver::start().await;
        // A GET without data: the body is the 4 bytes `null`, with no Content-Type added.
        let get = api_event(&rx.url("/get?x=1"), "get", json!([
            { "key": "Token", "value": "first" },
            { "key": "App-Version", "value": "6.0.0" },
            { "key": "token", "value": "second" },
        ]), None);
        let created = now_ms();
        assert_eq!(create_in(&s, "fire-get", get, "300ms").await.status, StatusCode::CREATED);
        let got = rx.wait_for(1, Duration::from_secs(10)).await;
        let c = &got[0];
        assert!(c.at_ms - created >= 250, "fired too early: {} ms", c.at_ms - created);
        assert_eq!(c.method, "GET");
        assert_eq!(c.path, "/get?x=1");
        assert_eq!(&c.body[..], b"null");
        assert_eq!(c.header("content-type"), None);
        assert_eq!(c.header("app-version"), Some("6.0.0"));
        let tokens: Vec<_> = c.headers.get_all("token").iter().collect();
        assert_eq!(tokens, vec!["second"], "the last duplicate header wins");

        // A POST with data: the body is its JSON; the caller's Content-Type is used as given.
        let data = json!({ "order": 42, "items": ["a", "b"], "nested": { "ok": true } });
        let post = api_event(&rx.url("/post"), "POST",
            json!([{ "key": "Content-Type", "value": "application/json" }]), Some(data.clone()));
        assert_eq!(create_in(&s, "fire-post", post, "100ms").await.status, StatusCode::CREATED);
        let got = rx.wait_for(2, Duration::from_secs(10)).await;
        let c = &got[1];
        assert_eq!(c.method, "POST");
        assert_eq!(c.json(), data);
        assert_eq!(c.header("content-type"), Some("application/json"));

        // Fired events are gone, as the original deleted them.
        wait_gone(&s, "fire-get").await;
        wait_gone(&s, "fire-post").await;
        let r = as_client(&s, Method::PUT, "/event/relin/fire-get", Some(json!({ "release_in": "1m" }))).await;
        assert_error(&r, StatusCode::NOT_FOUND, not_found());
        let r = as_client(&s, Method::DELETE, "/event/fire-get", None).await;
        assert_error(&r, StatusCode::NOT_FOUND, not_found());
        rx.quiet_for(Duration::from_millis(500)).await;
    }

    async fn one_attempt_when_retry_mode_is_off(b: Backend) {
        let s = TestServer::start(b).await;
        let rx = Receiver::with(|_, _| Reply::status(500)).await;
        let e = api_event(&rx.url("/fail"), "POST", json!([]), None);
        assert_eq!(create_in(&s, "once", e, "100ms").await.status, StatusCode::CREATED);
        rx.wait_for(1, Duration::from_secs(10)).await;
        let seen = rx.quiet_for(Duration::from_millis(2500)).await;
        assert_eq!(seen.len(), 1);
        wait_gone(&s, "once").await;
    }

    async fn retries_with_waits_when_retry_mode_is_on(b: Backend) {
        let s = TestServer::start_with(b, |c| {
            c.gorooster.retry_mode = true;
            c.gorooster.retry_count = 3;
        }).await;
        let rx = Receiver::with(|_, _| Reply::status(503)).await;
        let e = api_event(&rx.url("/flaky"), "PATCH", json!([]), Some(json!({ "v": 1 })));
        assert_eq!(create_in(&s, "retry", e, "100ms").await.status, StatusCode::CREATED);
        let got = rx.wait_for(3, Duration::from_secs(15)).await;
        for pair in got.windows(2) {
            let gap = pair[1].at_ms - pair[0].at_ms;
            assert!(gap >= 400, "attempts back-to-back: {gap} ms apart");
        }
        assert!(got.iter().all(|c| c.method == "PATCH" && c.json() == json!({ "v": 1 })));
        let seen = rx.quiet_for(Duration::from_millis(3000)).await;
        assert_eq!(seen.len(), 3, "RETRY_COUNT is the total number of attempts");
        wait_gone(&s, "retry").await;
    }

    async fn retry_mode_stops_at_success(b: Backend) {
        let s = TestServer::start_with(b, |c| {
            c.gorooster.retry_mode = true;
            c.gorooster.retry_count = 5;
        }).await;
        let rx = Receiver::with(|n, _| Reply::status(if n == 0 { 500 } else { 204 })).await;
        let e = api_event(&rx.url("/once-more"), "DELETE", json!([]), None);
        assert_eq!(create_in(&s, "heal", e, "100ms").await.status, StatusCode::CREATED);
        rx.wait_for(2, Duration::from_secs(10)).await;
        assert_eq!(rx.quiet_for(Duration::from_millis(2500)).await.len(), 2);
    }

    async fn key_is_free_again_after_firing_or_delete(b: Backend) {
        let s = TestServer::start(b).await;
        let rx = Receiver::start().await;
        let e = api_event(&rx.url("/reuse"), "POST", json!([]), Some(json!(1)));
        assert_eq!(create_in(&s, "reuse", e.clone(), "100ms").await.status, StatusCode::CREATED);
        rx.wait_for(1, Duration::from_secs(10)).await;
        // Once delivery has finished the key can be taken again.
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let r = create_in(&s, "reuse", e.clone(), "100ms").await;
            if r.status == StatusCode::CREATED {
                break;
            }
            assert_eq!(r.json["error_code"], "CROW-402", "{}", r.raw);
            assert!(Instant::now() < deadline, "key never freed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        rx.wait_for(2, Duration::from_secs(10)).await;

        // After a delete too, at once.
        assert_eq!(create_in(&s, "gone", far_event(), "1h").await.status, StatusCode::CREATED);
        assert_eq!(as_client(&s, Method::DELETE, "/event/gone", None).await.status, StatusCode::NO_CONTENT);
        let r = create_in(&s, "gone", far_event(), "2h").await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.raw);
        let left = secs_of(get_event(&s, "gone", None).await.json["event_release_in"].as_str().unwrap());
        assert!(left > 3600);
    }

    async fn delete_event(b: Backend) {
        let s = TestServer::start(b).await;
        let rx = Receiver::start().await;
        let e = api_event(&rx.url("/cancelled"), "POST", json!([]), None);
        assert_eq!(create_in(&s, "del", e, "1s").await.status, StatusCode::CREATED);
        let r = call(&s, Method::DELETE, "/event/del", &[], None).await;
        assert_error(&r, StatusCode::BAD_REQUEST, bad_param("X-CLIENT-NAME"));
        let r = as_client(&s, Method::DELETE, "/event/d:el", None).await;
        assert_error(&r, StatusCode::BAD_REQUEST, bad_param("event_key"));
        let r = call(&s, Method::DELETE, "/event/del", &[("X-CLIENT-NAME", "OTHER")], None).await;
        assert_error(&r, StatusCode::NOT_FOUND, not_found());

        let r = as_client(&s, Method::DELETE, "/event/del", None).await;
        assert_eq!(r.status, StatusCode::NO_CONTENT);
        assert!(r.raw.is_empty());
        let r = as_client(&s, Method::DELETE, "/event/del", None).await;
        assert_error(&r, StatusCode::NOT_FOUND, not_found());
        assert_error(&get_event(&s, "del", None).await, StatusCode::NOT_FOUND, not_found());
        let r = as_client(&s, Method::PUT, "/event/del", Some(far_event())).await;
        assert_error(&r, StatusCode::NOT_FOUND, not_found());
        // A deleted event never fires.
        rx.quiet_for(Duration::from_millis(1500)).await;
    }

    async fn event_being_delivered_is_not_found(b: Backend) {
        let s = TestServer::start(b).await;
        let rx = Receiver::with(|_, _| Reply::status(200).delayed(Duration::from_millis(1500))).await;
        let e = api_event(&rx.url("/slow"), "POST", json!([]), None);
        assert_eq!(create_in(&s, "busy", e.clone(), "100ms").await.status, StatusCode::CREATED);
        rx.wait_for(1, Duration::from_secs(10)).await;
        // The original deleted an event before calling its endpoint.
        assert_error(&get_event(&s, "busy", None).await, StatusCode::NOT_FOUND, not_found());
        let r = as_client(&s, Method::PUT, "/event/busy", Some(far_event())).await;
        assert_error(&r, StatusCode::NOT_FOUND, not_found());
        let r = as_client(&s, Method::PUT, "/event/busy", Some(json!({ "release_in": "1h" }))).await;
        assert_error(&r, StatusCode::NOT_FOUND, not_found());
        let r = as_client(&s, Method::PUT, "/event/relin/busy", Some(json!({ "release_in": "1h" }))).await;
        assert_error(&r, StatusCode::NOT_FOUND, not_found());
        let r = as_client(&s, Method::PUT, "/event/relat/busy", Some(json!({ "release_at": now_s() + 60 }))).await;
        assert_error(&r, StatusCode::INTERNAL_SERVER_ERROR, read_failed());
        let r = as_client(&s, Method::DELETE, "/event/busy", None).await;
        assert_error(&r, StatusCode::NOT_FOUND, not_found());
        // Its key is still held until the call ends: a second event cannot take over the
        // delivery in progress.
        let r = create_in(&s, "busy", e.clone(), "1h").await;
        assert_eq!(r.json["error_code"], "CROW-402", "{}", r.raw);
        wait_gone(&s, "busy").await;
        let deadline = Instant::now() + Duration::from_secs(10);
        while create_in(&s, "busy", far_event(), "1h").await.status != StatusCode::CREATED {
            assert!(Instant::now() < deadline, "key never freed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(rx.count(), 1, "the delivery in flight was not disturbed");
    }

    async fn unknown_routes(b: Backend) {
        let s = TestServer::start(b).await;
        let r = as_client(&s, Method::GET, "/events", None).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND);
        let r = as_client(&s, Method::POST, "/event/k", Some(far_event())).await;
        assert_eq!(r.status, StatusCode::METHOD_NOT_ALLOWED);
    }
}
