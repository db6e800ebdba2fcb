//! The native jobs API and the engine behind it, on both stores: firing on time, changes
//! while waiting, retries, success codes, timeouts, attempts, idempotency, pagination.

mod common;

use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

both_stores! {
    async fn job_fires_at_its_time(b: Backend) {
        let server = TestServer::start(b).await;
        let rx = Receiver::start().await;
        let due = now_ms() + 700;
        let id = server
            .create_job(json!({
                "target": {"method": "PUT", "url": rx.url("/hook?x=1"), "headers": {"X-Token": "abc"}, "body": {"hello": "world"}},
                "deliver_at": rfc3339(due),
            }))
            .await;
        let got = rx.wait_for(1, Duration::from_secs(10)).await;
        let req = &got[0];
        assert!(req.at_ms >= due, "arrived {} ms early", due - req.at_ms);
        assert!(req.at_ms - due < 1_500, "arrived {} ms late", req.at_ms - due);
        assert_eq!(req.method, "PUT");
        assert_eq!(req.path, "/hook?x=1");
        assert_eq!(req.header("x-token"), Some("abc"));
        assert_eq!(req.header("content-type"), Some("application/json"));
        assert_eq!(req.header("herald-delivery-id"), Some(id.as_str()));
        assert_eq!(req.header("herald-attempt"), Some("1"));
        assert_eq!(req.json(), json!({"hello": "world"}));
        let job = server.wait_state(&id, "succeeded").await;
        assert_eq!(job["attempts"], 1);
        assert_eq!(job["last_attempt"]["status"], 200);
        assert!(job["next_attempt_at"].is_null());
        rx.quiet_for(Duration::from_millis(300)).await;
    }

    async fn delay_and_default_now(b: Backend) {
        let server = TestServer::start(b).await;
        let rx = Receiver::start().await;
        let t0 = now_ms();
        server.create_job(json!({"target": {"url": rx.url("/now"), "body_text": "plain"}})).await;
        server.create_job(json!({"target": {"url": rx.url("/later")}, "delay": "600ms"})).await;
        let got = rx.wait_for(2, Duration::from_secs(10)).await;
        assert_eq!(got[0].path, "/now");
        assert_eq!(got[0].method, "POST");
        assert_eq!(got[0].header("content-type"), Some("text/plain; charset=utf-8"));
        assert_eq!(&got[0].body[..], b"plain");
        assert!(got[0].at_ms - t0 < 1_500);
        assert_eq!(got[1].path, "/later");
        assert!(got[1].at_ms - t0 >= 600);
    }

    async fn reschedule_replace_and_cancel_before_firing(b: Backend) {
        let server = TestServer::start(b).await;
        let rx = Receiver::start().await;
        let far = rfc3339(now_ms() + 3_600_000);
        let a = server.create_job(json!({"target": {"url": rx.url("/a")}, "deliver_at": far})).await;
        let c = server.create_job(json!({"target": {"url": rx.url("/c")}, "delay": "1s"})).await;
        let r = server.create_job(json!({"target": {"url": rx.url("/old"), "body": 1}, "delay": "1h"})).await;

        // Reschedule `a` from an hour away to now + 300 ms.
        let (s, job) = server.patch(&format!("/v1/jobs/{a}"), json!({"delay": "300ms"})).await;
        assert_eq!(s, StatusCode::OK, "{job}");
        assert_eq!(job["state"], "scheduled");
        // Replace `r`'s target and bring it forward.
        let (s, job) = server
            .patch(&format!("/v1/jobs/{r}"), json!({"target": {"method": "PATCH", "url": rx.url("/new"), "body": {"v": 2}}, "delay": "400ms"}))
            .await;
        assert_eq!(s, StatusCode::OK, "{job}");
        assert_eq!(job["target"]["url"], rx.url("/new"));
        // A partial target change keeps the rest of the target.
        let (s, job) = server.patch(&format!("/v1/jobs/{r}"), json!({"target": {"headers": {"X-New": "yes"}}})).await;
        assert_eq!(s, StatusCode::OK, "{job}");
        assert_eq!((job["target"]["method"].as_str(), job["target"]["body"].clone()), (Some("PATCH"), json!({"v": 2})));
        // Cancel `c`; cancelling again is a no-op.
        let (s, job) = server.delete(&format!("/v1/jobs/{c}")).await;
        assert_eq!((s, job["state"].as_str()), (StatusCode::OK, Some("cancelled")));
        let (s, _) = server.delete(&format!("/v1/jobs/{c}")).await;
        assert_eq!(s, StatusCode::OK);

        let got = rx.wait_for(2, Duration::from_secs(10)).await;
        let paths: Vec<_> = got.iter().map(|r| r.path.as_str()).collect();
        assert_eq!(paths, vec!["/a", "/new"]);
        assert_eq!(got[1].method, "PATCH");
        assert_eq!(got[1].json(), json!({"v": 2}));
        assert_eq!(got[1].header("x-new"), Some("yes"));
        // The cancelled job never fires.
        rx.quiet_for(Duration::from_millis(1_200)).await;
        let (_, job) = server.get(&format!("/v1/jobs/{c}")).await;
        assert_eq!(job["state"], "cancelled");
        assert_eq!(job["attempts"], 0);
        // A finished job cannot be changed or cancelled.
        server.wait_state(&a, "succeeded").await;
        let (s, p) = server.patch(&format!("/v1/jobs/{a}"), json!({"delay": "1s"})).await;
        assert_eq!(s, StatusCode::CONFLICT, "{p}");
        let (s, _) = server.delete(&format!("/v1/jobs/{a}")).await;
        assert_eq!(s, StatusCode::CONFLICT);
    }

    async fn changing_a_job_in_flight_is_a_conflict(b: Backend) {
        let server = TestServer::start(b).await;
        let rx = Receiver::with(|_, _| Reply::status(200).delayed(Duration::from_millis(800))).await;
        let id = server.create_job(json!({"target": {"url": rx.url("/slow")}})).await;
        rx.wait_for(1, Duration::from_secs(5)).await;
        let (_, job) = server.get(&format!("/v1/jobs/{id}")).await;
        assert_eq!(job["state"], "in_flight");
        let (s, p) = server.patch(&format!("/v1/jobs/{id}"), json!({"delay": "1h"})).await;
        assert_eq!(s, StatusCode::CONFLICT, "{p}");
        assert_eq!(p["type"], "urn:herald:problem:state-conflict");
        let (s, _) = server.delete(&format!("/v1/jobs/{id}")).await;
        assert_eq!(s, StatusCode::CONFLICT);
        server.wait_state(&id, "succeeded").await;
    }

    async fn retries_follow_a_schedule_and_stop_at_the_maximum(b: Backend) {
        let server = TestServer::start(b).await;
        let rx = Receiver::with(|_, _| Reply::status(503).body("down")).await;
        let id = server
            .create_job(json!({"target": {"url": rx.url("/flaky")}, "retry": {"strategy": "schedule", "delays": ["100ms", "300ms", "200ms"]}}))
            .await;
        let got = rx.wait_for(4, Duration::from_secs(10)).await;
        let gaps: Vec<i64> = got.windows(2).map(|w| w[1].at_ms - w[0].at_ms).collect();
        for (gap, want) in gaps.iter().zip([100, 300, 200]) {
            assert!(*gap >= want && *gap < want + 1_500, "gaps {gaps:?}");
        }
        let numbers: Vec<_> = got.iter().map(|r| r.header("herald-attempt").unwrap().to_string()).collect();
        assert_eq!(numbers, vec!["1", "2", "3", "4"]);
        assert!(got.iter().all(|r| r.header("herald-delivery-id") == Some(id.as_str())));
        let job = server.wait_state(&id, "failed").await;
        assert_eq!(job["attempts"], 4);
        assert_eq!(job["last_attempt"]["status"], 503);
        rx.quiet_for(Duration::from_millis(500)).await;
        let attempts = server.attempts(&id).await;
        let outcomes: Vec<_> = attempts.iter().map(|a| a["outcome"].as_str().unwrap()).collect();
        assert_eq!(outcomes, vec!["retrying", "retrying", "retrying", "failed"]);
        assert_eq!(attempts[0]["response"]["status"], 503);
        assert_eq!(attempts[0]["response"]["body"], "down");
    }

    async fn fixed_and_exponential_policies(b: Backend) {
        let server = TestServer::start(b).await;
        let rx = Receiver::with(|n, _| Reply::status(if n < 2 { 500 } else { 200 })).await;
        let id = server
            .create_job(json!({"target": {"url": rx.url("/x")}, "retry": {"strategy": "fixed", "delay": "150ms", "max_attempts": 5}}))
            .await;
        let got = rx.wait_for(3, Duration::from_secs(10)).await;
        for w in got.windows(2) {
            let gap = w[1].at_ms - w[0].at_ms;
            assert!((150..1_650).contains(&gap), "gap {gap}");
        }
        let job = server.wait_state(&id, "succeeded").await;
        assert_eq!(job["attempts"], 3);

        let rx2 = Receiver::with(|_, _| Reply::status(500)).await;
        let id2 = server
            .create_job(json!({"target": {"url": rx2.url("/e")}, "retry": {"max_attempts": 3, "initial_delay": "100ms", "multiplier": 3, "jitter": false}}))
            .await;
        let got = rx2.wait_for(3, Duration::from_secs(10)).await;
        let gaps: Vec<i64> = got.windows(2).map(|w| w[1].at_ms - w[0].at_ms).collect();
        assert!((100..1_600).contains(&gaps[0]) && (300..1_800).contains(&gaps[1]), "gaps {gaps:?}");
        server.wait_state(&id2, "failed").await;
    }

    async fn success_codes_decide_the_outcome(b: Backend) {
        let server = TestServer::start(b).await;
        let rx = Receiver::with(|_, r| {
            if r.path.starts_with("/gone") { Reply::status(410) } else { Reply::status(302).header("location", "/elsewhere") }
        })
        .await;
        let none = json!({"strategy": "none"});
        let ok410 = server.create_job(json!({"target": {"url": rx.url("/gone")}, "success_codes": [410], "retry": none})).await;
        let redirect = server.create_job(json!({"target": {"url": rx.url("/moved")}, "retry": none})).await;
        let redirect_ok = server.create_job(json!({"target": {"url": rx.url("/moved2")}, "success_codes": ["2xx", "300-399"], "retry": none})).await;
        assert_eq!(server.wait_state(&ok410, "succeeded").await["last_attempt"]["status"], 410);
        // Redirects are not followed by default: the 302 is the response, and it is not 2xx.
        assert_eq!(server.wait_state(&redirect, "failed").await["last_attempt"]["status"], 302);
        server.wait_state(&redirect_ok, "succeeded").await;
        assert!(rx.requests().iter().all(|r| r.path != "/elsewhere"));
    }

    async fn redirects_followed_when_asked(b: Backend) {
        let server = TestServer::start(b).await;
        let rx = Receiver::with(|_, r| {
            if r.path == "/start" { Reply::status(307).header("location", "/end") } else { Reply::status(204) }
        })
        .await;
        let id = server.create_job(json!({"target": {"url": rx.url("/start")}, "follow_redirects": true})).await;
        assert_eq!(server.wait_state(&id, "succeeded").await["last_attempt"]["status"], 204);
        let paths: Vec<_> = rx.requests().into_iter().map(|r| r.path).collect();
        assert_eq!(paths, vec!["/start", "/end"]);
    }

    async fn timeouts_fail_the_attempt(b: Backend) {
        let server = TestServer::start(b).await;
        let rx = Receiver::with(|n, _| {
            if n == 0 { Reply::status(200).delayed(Duration::from_secs(3)) } else { Reply::status(200) }
        })
        .await;
        let id = server
            .create_job(json!({"target": {"url": rx.url("/slow")}, "timeout": "300ms", "retry": {"strategy": "fixed", "delay": "100ms", "max_attempts": 2}}))
            .await;
        let job = server.wait_state(&id, "succeeded").await;
        assert_eq!(job["attempts"], 2);
        let attempts = server.attempts(&id).await;
        assert!(attempts[0]["error"].as_str().unwrap().contains("timed out"), "{}", attempts[0]);
        assert!(attempts[0]["response"].is_null());
        let d = attempts[0]["duration_ms"].as_i64().unwrap();
        assert!((300..2_500).contains(&d), "timed-out attempt took {d} ms");
    }

    async fn retry_after_is_honoured(b: Backend) {
        let server = TestServer::start(b).await;
        let rx = Receiver::with(|n, _| if n == 0 { Reply::status(429).header("retry-after", "1") } else { Reply::status(200) }).await;
        let id = server
            .create_job(json!({"target": {"url": rx.url("/rl")}, "retry": {"strategy": "fixed", "delay": "10ms", "max_attempts": 3}}))
            .await;
        let got = rx.wait_for(2, Duration::from_secs(10)).await;
        let gap = got[1].at_ms - got[0].at_ms;
        assert!(gap >= 1000, "Retry-After: 1 ignored, retried after {gap} ms");
        server.wait_state(&id, "succeeded").await;
    }

    async fn unreachable_target_records_the_error(b: Backend) {
        let server = TestServer::start(b).await;
        // Port 9 on loopback: nothing listens, so the connection is refused.
        let id = server.create_job(json!({"target": {"url": "http://127.0.0.1:9/"}, "retry": {"strategy": "none"}})).await;
        let job = server.wait_state(&id, "failed").await;
        assert!(job["last_attempt"]["status"].is_null());
        assert!(job["last_attempt"]["error"].as_str().unwrap().to_lowercase().contains("connect"), "{job}");
    }

    async fn attempts_record_request_and_truncated_response(b: Backend) {
        let server = TestServer::start_with(b, |c| c.engine.response_body_limit = 10).await;
        let rx = Receiver::with(|_, _| Reply::status(200).header("x-reply", "yes").body("0123456789abcdef")).await;
        let id = server.create_job(json!({"target": {"url": rx.url("/r"), "headers": {"X-A": "1"}, "body_base64": "AAEC"}})).await;
        server.wait_state(&id, "succeeded").await;
        let a = &server.attempts(&id).await[0];
        assert_eq!(a["number"], 1);
        assert_eq!(a["outcome"], "succeeded");
        assert_eq!(a["request"]["method"], "POST");
        assert_eq!(a["request"]["body_bytes"], 3);
        assert!(a["request"]["headers"].as_array().unwrap().iter().any(|h| h[0] == "x-a" && h[1] == "1"));
        assert_eq!(a["response"]["body"], "0123456789");
        assert_eq!(a["response"]["truncated"], true);
        assert!(a["response"]["headers"].as_array().unwrap().iter().any(|h| h[0] == "x-reply"));
        assert!(a["started_at"].as_str().unwrap().ends_with('Z'));
        let got = rx.requests();
        assert_eq!(&got[0].body[..], &[0u8, 1, 2]);
        assert!(got[0].header("content-type").is_none());
    }

    async fn retry_runs_a_finished_job_again(b: Backend) {
        let server = TestServer::start(b).await;
        let rx = Receiver::with(|n, _| Reply::status(if n == 0 { 500 } else { 200 })).await;
        let id = server.create_job(json!({"target": {"url": rx.url("/again")}, "retry": {"strategy": "none"}})).await;
        server.wait_state(&id, "failed").await;
        let (s, p) = server.post(&format!("/v1/jobs/{id}/retry"), json!(null)).await;
        assert_eq!(s, StatusCode::OK, "{p}");
        let job = server.wait_state(&id, "succeeded").await;
        assert_eq!(job["attempts"], 2);
        assert_eq!(rx.requests()[1].header("herald-attempt"), Some("2"));
        // Retrying a job that has not finished is a conflict.
        let waiting = server.create_job(json!({"target": {"url": rx.url("/w")}, "delay": "1h"})).await;
        let (s, _) = server.post(&format!("/v1/jobs/{waiting}/retry"), json!(null)).await;
        assert_eq!(s, StatusCode::CONFLICT);
    }

    async fn keys_make_creates_idempotent(b: Backend) {
        let server = TestServer::start(b).await;
        let rx = Receiver::start().await;
        let body = json!({"target": {"url": rx.url("/once")}, "delay": "200ms", "key": "order-42"});
        let (s1, j1) = server.post("/v1/jobs", body.clone()).await;
        let (s2, j2) = server.post("/v1/jobs", body.clone()).await;
        assert_eq!((s1, s2), (StatusCode::CREATED, StatusCode::OK));
        assert_eq!(j1["id"], j2["id"]);
        let (s3, p) = server
            .post("/v1/jobs", json!({"target": {"url": rx.url("/other")}, "key": "order-42"}))
            .await;
        assert_eq!(s3, StatusCode::CONFLICT, "{p}");
        assert_eq!(p["field"], "key");
        let (s, by_key) = server.get("/v1/jobs/by-key/order-42").await;
        assert_eq!((s, &by_key["id"]), (StatusCode::OK, &j1["id"]));
        rx.wait_for(1, Duration::from_secs(5)).await;
        rx.quiet_for(Duration::from_millis(400)).await;
        // Keys are per namespace.
        let r = server
            .http
            .post(server.url("/v1/jobs"))
            .header("Herald-Namespace", "tenant-b")
            .json(&body)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
    }

    async fn namespaces_keep_tenants_apart(b: Backend) {
        let server = TestServer::start(b).await;
        let r = server
            .http
            .post(server.url("/v1/jobs"))
            .header("Herald-Namespace", "acme")
            .json(&json!({"target": {"url": "http://127.0.0.1:9/"}, "delay": "1h"}))
            .send()
            .await
            .unwrap();
        let (s, job) = into_json(r).await;
        assert_eq!((s, job["namespace"].as_str()), (StatusCode::CREATED, Some("acme")));
        let id = job["id"].as_str().unwrap();
        let (s, _) = server.get(&format!("/v1/jobs/{id}")).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "visible outside its namespace");
        let (s, _) = server.delete(&format!("/v1/jobs/{id}")).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let r = server.http.get(server.url(&format!("/v1/jobs/{id}"))).header("Herald-Namespace", "acme").send().await.unwrap();
        assert_eq!(r.status(), StatusCode::OK);
        let (_, list) = server.get("/v1/jobs?namespace=acme").await;
        assert_eq!(list["data"].as_array().unwrap().len(), 1);
        let (_, list) = server.get("/v1/jobs").await;
        assert_eq!(list["data"].as_array().unwrap().len(), 0);
    }

    async fn list_filters_and_paginates(b: Backend) {
        let server = TestServer::start(b).await;
        let t0 = now_ms();
        let mut ids = Vec::new();
        for i in 0..7 {
            ids.push(server.create_job(json!({"target": {"url": "http://127.0.0.1:9/"}, "delay": format!("{}h", i + 1)})).await);
        }
        let (s, _) = server.delete(&format!("/v1/jobs/{}", ids[0])).await;
        assert_eq!(s, StatusCode::OK);
        let mut seen = Vec::new();
        let mut cursor: Option<String> = None;
        loop {
            let path = match &cursor {
                Some(c) => format!("/v1/jobs?state=scheduled&limit=2&cursor={c}"),
                None => "/v1/jobs?state=scheduled&limit=2".to_string(),
            };
            let (s, page) = server.get(&path).await;
            assert_eq!(s, StatusCode::OK, "{page}");
            let data = page["data"].as_array().unwrap();
            assert!(data.len() <= 2);
            seen.extend(data.iter().map(|j| j["id"].as_str().unwrap().to_string()));
            match page["next_cursor"].as_str() {
                Some(c) => cursor = Some(c.to_string()),
                None => break,
            }
        }
        assert_eq!(seen, ids[1..].to_vec());
        let (_, page) = server.get("/v1/jobs?state=cancelled,failed").await;
        assert_eq!(page["data"].as_array().unwrap().len(), 1);
        let due_before = rfc3339(t0 + 3 * 3_600_000 + 60_000);
        let (_, page) = server.get(&format!("/v1/jobs?due_before={due_before}&state=scheduled")).await;
        assert_eq!(page["data"].as_array().unwrap().len(), 2);
        let created_after = rfc3339(t0 + 3_600_000);
        let (_, page) = server.get(&format!("/v1/jobs?created_after={created_after}")).await;
        assert_eq!(page["data"].as_array().unwrap().len(), 0);
        let (s, p) = server.get("/v1/jobs?state=done").await;
        assert_eq!((s, p["field"].as_str()), (StatusCode::BAD_REQUEST, Some("state")));
        let (s, p) = server.get("/v1/jobs?limit=0").await;
        assert_eq!((s, p["field"].as_str()), (StatusCode::BAD_REQUEST, Some("limit")));
        let (s, p) = server.get("/v1/jobs?created_after=yesterday").await;
        assert_eq!((s, p["field"].as_str()), (StatusCode::BAD_REQUEST, Some("created_after")));
    }
}

/// Bad input is rejected when accepted, with problem+json naming the field.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_names_the_field() {
    let server = TestServer::start_with(Backend::Sqlite, |c| c.limits.max_body_bytes = 64).await;
    let url = "http://127.0.0.1:9/";
    let cases: Vec<(Value, &str)> = vec![
        (json!({}), "target"),
        (json!({"target": {"url": "not a url"}}), "target.url"),
        (json!({"target": {"url": "ftp://x/y"}}), "target.url"),
        (
            json!({"target": {"url": url, "method": "BREW"}}),
            "target.method",
        ),
        (
            json!({"target": {"url": url, "headers": {"Bad Header": "x"}}}),
            "target.headers.Bad Header",
        ),
        (
            json!({"target": {"url": url, "headers": {"X": "a\nb"}}}),
            "target.headers.X",
        ),
        (
            json!({"target": {"url": url, "headers": {"Herald-Delivery-Id": "mine"}}}),
            "target.headers.Herald-Delivery-Id",
        ),
        (
            json!({"target": {"url": url, "body": "x".repeat(100)}}),
            "target.body",
        ),
        (
            json!({"target": {"url": url, "body": 1, "body_text": "a"}}),
            "target.body",
        ),
        (
            json!({"target": {"url": url, "body_base64": "!!!"}}),
            "target.body_base64",
        ),
        (json!({"target": {"url": url}, "delay": "soon"}), "delay"),
        (json!({"target": {"url": url}, "delay": "-5s"}), "delay"),
        (
            json!({"target": {"url": url}, "deliver_at": "2001-01-01T00:00:00Z"}),
            "deliver_at",
        ),
        (
            json!({"target": {"url": url}, "deliver_at": "tomorrow"}),
            "deliver_at",
        ),
        (
            json!({"target": {"url": url}, "deliver_at": rfc3339(now_ms() + 1000), "delay": "1s"}),
            "delay",
        ),
        (json!({"target": {"url": url}, "timeout": "0s"}), "timeout"),
        (json!({"target": {"url": url}, "timeout": "2h"}), "timeout"),
        (
            json!({"target": {"url": url}, "retry": {"strategy": "sometimes"}}),
            "retry.strategy",
        ),
        (
            json!({"target": {"url": url}, "retry": {"max_attempts": 0}}),
            "retry.max_attempts",
        ),
        (
            json!({"target": {"url": url}, "retry": {"strategy": "fixed"}}),
            "retry.delay",
        ),
        (
            json!({"target": {"url": url}, "retry": {"strategy": "fixed", "delay": "1s", "delays": []}}),
            "retry.delays",
        ),
        (
            json!({"target": {"url": url}, "retry": {"strategy": "schedule", "delays": ["1s", "x"]}}),
            "retry.delays[1]",
        ),
        (
            json!({"target": {"url": url}, "success_codes": ["7xx"]}),
            "success_codes[0]",
        ),
        (
            json!({"target": {"url": url}, "success_codes": []}),
            "success_codes",
        ),
        (json!({"target": {"url": url}, "key": ""}), "key"),
        (
            json!({"target": {"url": url}, "surprise": true}),
            "surprise",
        ),
        (json!({"target": {"url": 5}}), "target.url"),
        (json!([1, 2]), "body"),
    ];
    for (body, field) in cases {
        let (s, p) = server.post("/v1/jobs", body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body} -> {p}");
        assert_eq!(p["field"], field, "{body} -> {p}");
        assert_eq!(p["status"], 400);
        assert!(
            p["detail"].as_str().unwrap().contains(
                field
                    .split('.')
                    .next_back()
                    .unwrap()
                    .trim_end_matches(|c: char| c == ']' || c.is_ascii_digit())
                    .trim_end_matches('[')
            ),
            "{p}"
        );
    }
    // Not JSON at all, and an empty body.
    let r = server
        .http
        .post(server.url("/v1/jobs"))
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.headers()["content-type"], "application/problem+json");
    let r = server
        .http
        .post(server.url("/v1/jobs"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    // A request body over the server's limit (2 × 64 B + 64 KiB here). The server answers
    // before reading it and closes the connection, so the body is small enough to be
    // written whole first, and it goes on a connection of its own that nothing reuses.
    let huge = "x".repeat(70_000);
    let once = reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .build()
        .unwrap();
    let r = once
        .post(server.url("/v1/jobs"))
        .body(huge)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::PAYLOAD_TOO_LARGE);
    // Unknown ids, bad namespace header, unknown routes.
    let (s, p) = server.get("/v1/jobs/not-a-uuid").await;
    assert_eq!(
        (s, p["status"].as_u64()),
        (StatusCode::NOT_FOUND, Some(404))
    );
    let (s, _) = server
        .get(&format!("/v1/jobs/{}", uuid::Uuid::now_v7()))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let r = server
        .http
        .get(server.url("/v1/jobs"))
        .header("Herald-Namespace", "")
        .send()
        .await
        .unwrap();
    let (s, p) = into_json(r).await;
    assert_eq!(
        (s, p["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("Herald-Namespace"))
    );
    let (s, _) = server.get("/v2/nothing").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // Nothing above was accepted, and the server is still healthy.
    let (_, list) = server.get("/v1/jobs").await;
    assert_eq!(list["data"].as_array().unwrap().len(), 0);
    let (s, _) = server.get("/healthz").await;
    assert_eq!(s, StatusCode::OK);
}

/// A change of target in a patch is validated too; the job keeps its old content.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_patch_changes_nothing() {
    let server = TestServer::start(Backend::Sqlite).await;
    let id = server
        .create_job(json!({"target": {"url": "http://127.0.0.1:9/a"}, "delay": "1h"}))
        .await;
    let (s, p) = server
        .patch(
            &format!("/v1/jobs/{id}"),
            json!({"target": {"url": "nope"}}),
        )
        .await;
    assert_eq!(
        (s, p["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("target.url"))
    );
    let (_, job) = server.get(&format!("/v1/jobs/{id}")).await;
    assert_eq!(job["target"]["url"], "http://127.0.0.1:9/a");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_endpoints() {
    let server = TestServer::start(Backend::Sqlite).await;
    let (s, v) = server.get("/healthz").await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("ok")));
    let (s, v) = server.get("/readyz").await;
    assert_eq!((s, v["status"].as_str()), (StatusCode::OK, Some("ready")));
}

/// The committed OpenAPI document matches what the server serves. Regenerate it with
/// `HERALD_UPDATE_OPENAPI=1 cargo nextest run openapi`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_document_is_committed_and_current() {
    let server = TestServer::start(Backend::Sqlite).await;
    let served = server
        .http
        .get(server.url("/openapi.json"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/openapi.json");
    if std::env::var("HERALD_UPDATE_OPENAPI").is_ok() {
        std::fs::write(path, &served).unwrap();
    }
    let committed = std::fs::read_to_string(path).expect("docs/openapi.json is committed");
    assert_eq!(
        committed.trim(),
        served.trim(),
        "docs/openapi.json is stale: regenerate it"
    );
    let doc: Value = serde_json::from_str(&served).unwrap();
    for p in [
        "/v1/jobs",
        "/v1/jobs/{id}",
        "/v1/jobs/{id}/attempts",
        "/v1/jobs/{id}/retry",
        "/v1/jobs/by-key/{key}",
    ] {
        assert!(doc["paths"][p].is_object(), "{p} missing from OpenAPI");
    }
}
