//! The native webhook API on both stores: topics and subscriptions, fan-out with
//! per-subscription retry state, event-type filters, disabled subscriptions, idempotent and
//! delayed publishing, snapshots, replay and retry, and Standard Webhooks signatures checked
//! by an independent verifier (the `standardwebhooks` crate), including during a rotation.

mod common;

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn topic(server: &TestServer, name: &str) {
    let (s, t) = server.post("/v1/topics", json!({"name": name})).await;
    assert_eq!(s, StatusCode::CREATED, "{t}");
}

async fn subscribe(server: &TestServer, topic: &str, body: Value) -> Value {
    let (s, sub) = server
        .post(&format!("/v1/topics/{topic}/subscriptions"), body)
        .await;
    assert_eq!(s, StatusCode::CREATED, "{sub}");
    sub
}

async fn publish(server: &TestServer, topic: &str, body: Value) -> Value {
    let (s, m) = server
        .post(&format!("/v1/topics/{topic}/messages"), body)
        .await;
    assert_eq!(s, StatusCode::CREATED, "{m}");
    m
}

async fn deliveries(server: &TestServer, query: &str) -> Vec<Value> {
    let (s, v) = server
        .get(&format!("/v1/deliveries?limit=500&{query}"))
        .await;
    assert_eq!(s, StatusCode::OK, "{v}");
    v["data"].as_array().unwrap().clone()
}

async fn wait_delivery(server: &TestServer, id: &str, state: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, d) = server.get(&format!("/v1/deliveries/{id}")).await;
        if d["state"] == state {
            return d;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "delivery never became {state}: {d}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

fn verify(secret: &str, req: &Captured) -> Result<(), standardwebhooks::WebhookError> {
    standardwebhooks::Webhook::new(secret)?.verify(&req.body, &req.headers)
}

both_stores! {
    async fn fan_out_keeps_retry_state_per_subscription(b: Backend) {
        let server = TestServer::start(b).await;
        let ok = Receiver::start().await;
        let flaky = Receiver::with(|n, _| Reply::status(if n < 2 { 503 } else { 200 })).await;
        let down = Receiver::with(|_, _| Reply::status(500)).await;
        topic(&server, "orders").await;
        let fast = json!({"strategy": "schedule", "delays": ["50ms", "50ms"]});
        let s_ok = subscribe(&server, "orders", json!({"url": ok.url("/ok"), "retry": fast})).await;
        let s_flaky = subscribe(&server, "orders", json!({"url": flaky.url("/flaky"), "retry": fast})).await;
        let s_down = subscribe(&server, "orders", json!({"url": down.url("/down"), "retry": fast})).await;
        let m = publish(&server, "orders", json!({"event_type": "order.created", "payload": {"id": 42}})).await;
        assert_eq!(m["deliveries"], 3);
        assert_eq!(m["delivery_ids"].as_array().unwrap().len(), 3);

        let by_sub = |list: &[Value]| -> HashMap<String, Value> {
            list.iter().map(|d| (d["subscription_id"].as_str().unwrap().to_string(), d.clone())).collect()
        };
        let mid = m["id"].as_str().unwrap();
        let ds = by_sub(&deliveries(&server, &format!("message={mid}")).await);
        let id_of = |s: &Value| ds[s["id"].as_str().unwrap()]["id"].as_str().unwrap().to_string();
        let d_ok = wait_delivery(&server, &id_of(&s_ok), "succeeded").await;
        let d_flaky = wait_delivery(&server, &id_of(&s_flaky), "succeeded").await;
        let d_down = wait_delivery(&server, &id_of(&s_down), "failed").await;
        assert_eq!((d_ok["attempts"].as_u64(), d_flaky["attempts"].as_u64(), d_down["attempts"].as_u64()), (Some(1), Some(3), Some(3)));
        assert_eq!(d_down["last_attempt"]["status"], 500);
        assert_eq!(d_ok["event_type"], "order.created");
        assert_eq!(d_ok["topic"], "orders");
        assert_eq!(d_ok["message_id"], m["id"]);
        // Every attempt is on record, with its outcome.
        let (_, a) = server.get(&format!("/v1/deliveries/{}/attempts", id_of(&s_flaky))).await;
        let outcomes: Vec<_> = a["data"].as_array().unwrap().iter().map(|a| a["outcome"].as_str().unwrap().to_string()).collect();
        assert_eq!(outcomes, ["retrying", "retrying", "succeeded"]);
        // The payload arrives byte for byte with its content type.
        let got = ok.requests();
        assert_eq!(got.len(), 1);
        assert_eq!(got[0].header("content-type"), Some("application/json"));
        assert_eq!(got[0].json(), json!({"id": 42}));
        assert_eq!(got[0].header("webhook-id"), m["id"].as_str());
        // A delivery is a job too.
        let (s, job) = server.get(&format!("/v1/jobs/{}", id_of(&s_ok))).await;
        assert_eq!((s, job["state"].as_str()), (StatusCode::OK, Some("succeeded")));
    }

    async fn event_type_filters_and_disabled_subscriptions(b: Backend) {
        let server = TestServer::start(b).await;
        let rx = Receiver::start().await;
        topic(&server, "shop").await;
        subscribe(&server, "shop", json!({"url": rx.url("/orders"), "event_types": ["order.*"]})).await;
        subscribe(&server, "shop", json!({"url": rx.url("/exact"), "event_types": ["order.created", "user.deleted"]})).await;
        subscribe(&server, "shop", json!({"url": rx.url("/all")})).await;
        subscribe(&server, "shop", json!({"url": rx.url("/off"), "enabled": false})).await;
        let users = subscribe(&server, "shop", json!({"url": rx.url("/users"), "event_types": ["user.*"]})).await;
        let m1 = publish(&server, "shop", json!({"event_type": "order.created", "payload_text": "o1"})).await;
        let m2 = publish(&server, "shop", json!({"event_type": "order.paid", "payload_text": "o2"})).await;
        assert_eq!((m1["deliveries"].as_u64(), m2["deliveries"].as_u64()), (Some(3), Some(2)));
        rx.wait_for(5, Duration::from_secs(10)).await;
        let got = rx.quiet_for(Duration::from_millis(400)).await;
        let mut paths: Vec<String> = got.iter().map(|r| format!("{} {}", r.path, String::from_utf8_lossy(&r.body))).collect();
        paths.sort();
        assert_eq!(paths, ["/all o1", "/all o2", "/exact o1", "/orders o1", "/orders o2"]);
        assert_eq!(got[0].header("content-type"), Some("text/plain; charset=utf-8"));
        // Disabling and enabling takes effect for later messages only.
        let uid = users["id"].as_str().unwrap();
        let (s, u) = server.patch(&format!("/v1/subscriptions/{uid}"), json!({"enabled": false})).await;
        assert_eq!((s, u["enabled"].as_bool()), (StatusCode::OK, Some(false)));
        let m3 = publish(&server, "shop", json!({"event_type": "user.created", "payload": {}})).await;
        assert_eq!(m3["deliveries"], 1);
        let (_, u) = server.patch(&format!("/v1/subscriptions/{uid}"), json!({"enabled": true})).await;
        assert_eq!(u["enabled"], true);
        let m4 = publish(&server, "shop", json!({"event_type": "user.created", "payload": {}})).await;
        assert_eq!(m4["deliveries"], 2);
        // Deliveries filter by subscription and state.
        server.wait_job(m4["delivery_ids"][0].as_str().unwrap(), "done", |j| j["state"] == "succeeded").await;
        assert_eq!(deliveries(&server, &format!("subscription={uid}")).await.len(), 1);
        assert_eq!(deliveries(&server, "topic=shop").await.len(), 8);
        assert_eq!(deliveries(&server, "topic=other").await.len(), 0);
    }

    async fn idempotent_publish(b: Backend) {
        let server = TestServer::start(b).await;
        let rx = Receiver::start().await;
        topic(&server, "t").await;
        subscribe(&server, "t", json!({"url": rx.url("/i")})).await;
        let body = json!({"event_type": "e", "payload": {"n": 1}, "idempotency_key": "k-1"});
        let first = publish(&server, "t", body.clone()).await;
        let (s, again) = server.post("/v1/topics/t/messages", body.clone()).await;
        assert_eq!(s, StatusCode::OK, "{again}");
        assert_eq!(again["id"], first["id"]);
        assert!(again.get("delivery_ids").is_none());
        let (s, p) = server
            .post("/v1/topics/t/messages", json!({"event_type": "e", "payload": {"n": 2}, "idempotency_key": "k-1"}))
            .await;
        assert_eq!(s, StatusCode::CONFLICT, "{p}");
        assert_eq!(p["field"], "idempotency_key");
        rx.wait_for(1, Duration::from_secs(5)).await;
        rx.quiet_for(Duration::from_millis(400)).await;
        assert_eq!(deliveries(&server, "topic=t").await.len(), 1);
        let (s, m) = server.get(&format!("/v1/messages/{}", first["id"].as_str().unwrap())).await;
        assert_eq!((s, &m["payload"]), (StatusCode::OK, &json!({"n": 1})));
    }

    async fn concurrent_publishes_share_commits_and_keep_idempotency(b: Backend) {
        // Publishes go through group commit: many land in one transaction. Each must still
        // get its own answer, and one idempotency key must still make one message.
        let server = Arc::new(TestServer::start(b).await);
        let rx = Receiver::start().await;
        topic(&server, "g").await;
        subscribe(&server, "g", json!({"url": rx.url("/g")})).await;
        let mut tasks = Vec::new();
        for i in 0..48 {
            let server = server.clone();
            tasks.push(tokio::spawn(async move {
                let body = match i % 3 {
                    0 => json!({"event_type": "e", "payload": {"i": i}}),
                    1 => json!({"event_type": "e", "payload": {"same": true}, "idempotency_key": "one"}),
                    _ => json!({"event_type": "e", "payload": {"other": i}, "idempotency_key": "one"}),
                };
                server.post("/v1/topics/g/messages", body).await
            }));
        }
        let mut statuses: HashMap<u16, usize> = HashMap::new();
        for t in tasks {
            let (s, _) = t.await.unwrap();
            *statuses.entry(s.as_u16()).or_default() += 1;
        }
        // 16 plain publishes, plus exactly one winner of the key: 17 messages, 17 deliveries.
        assert_eq!(statuses.get(&201).copied().unwrap_or(0) + statuses.get(&200).copied().unwrap_or(0) + statuses.get(&409).copied().unwrap_or(0), 48, "{statuses:?}");
        assert_eq!(statuses[&201], 17, "{statuses:?}");
        rx.wait_for(17, Duration::from_secs(10)).await;
        rx.quiet_for(Duration::from_millis(400)).await;
        assert_eq!(deliveries(&server, "topic=g").await.len(), 17);
    }

    async fn delayed_messages_wait_for_their_time(b: Backend) {
        let server = TestServer::start(b).await;
        let rx = Receiver::start().await;
        topic(&server, "later").await;
        subscribe(&server, "later", json!({"url": rx.url("/a")})).await;
        subscribe(&server, "later", json!({"url": rx.url("/b")})).await;
        let due = now_ms() + 800;
        let m = publish(&server, "later", json!({"event_type": "tick", "payload": 1, "deliver_at": rfc3339(due)})).await;
        assert_eq!(m["deliver_at"].as_str().map(|s| s.parse::<jiff::Timestamp>().unwrap().as_millisecond()), Some(due));
        let ds = deliveries(&server, "topic=later").await;
        assert!(ds.iter().all(|d| d["state"] == "scheduled"), "{ds:?}");
        let got = rx.wait_for(2, Duration::from_secs(10)).await;
        for r in &got {
            assert!(r.at_ms >= due, "arrived {} ms early", due - r.at_ms);
        }
        let t0 = now_ms();
        publish(&server, "later", json!({"event_type": "tick", "payload": 2, "delay": "500ms"})).await;
        let got = rx.wait_for(4, Duration::from_secs(10)).await;
        assert!(got[2].at_ms - t0 >= 500);
    }

    async fn snapshots_later_subscriptions_and_deletes(b: Backend) {
        let server = TestServer::start(b).await;
        let rx = Receiver::start().await;
        topic(&server, "snap").await;
        let sub = subscribe(&server, "snap", json!({"url": rx.url("/old"), "headers": {"X-Tag": "v1"}})).await;
        let sid = sub["id"].as_str().unwrap();
        let m = publish(&server, "snap", json!({"event_type": "e", "payload": 1, "delay": "600ms"})).await;
        // Changing the subscription does not touch the delivery already made.
        let (s, _) = server.patch(&format!("/v1/subscriptions/{sid}"), json!({"url": rx.url("/new"), "headers": {"X-Tag": "v2"}})).await;
        assert_eq!(s, StatusCode::OK);
        // A subscription created after the publish does not receive the older message.
        subscribe(&server, "snap", json!({"url": rx.url("/late")})).await;
        let got = rx.wait_for(1, Duration::from_secs(10)).await;
        assert_eq!(got[0].path, "/old");
        assert_eq!(got[0].header("x-tag"), Some("v1"));
        rx.quiet_for(Duration::from_millis(400)).await;
        assert_eq!(m["deliveries"], 1);
        // Deleting a subscription cancels its waiting deliveries and keeps their history.
        let m2 = publish(&server, "snap", json!({"event_type": "e", "payload": 2, "delay": "1h"})).await;
        let waiting: Vec<_> = m2["delivery_ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
        assert_eq!(waiting.len(), 2);
        let (s, _) = server.delete(&format!("/v1/subscriptions/{sid}")).await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        let (s, _) = server.get(&format!("/v1/subscriptions/{sid}")).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let ds = deliveries(&server, &format!("subscription={sid}")).await;
        let states: Vec<_> = ds.iter().map(|d| d["state"].as_str().unwrap()).collect();
        assert_eq!(states, ["succeeded", "cancelled"]);
        // Deleting the topic deletes everything under it.
        let (s, _) = server.delete("/v1/topics/snap").await;
        assert_eq!(s, StatusCode::NO_CONTENT);
        assert!(deliveries(&server, "topic=snap").await.is_empty());
        let (s, _) = server.get(&format!("/v1/messages/{}", m["id"].as_str().unwrap())).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, _) = server.get("/v1/topics/snap").await;
        assert_eq!(s, StatusCode::NOT_FOUND);
    }

    async fn replay_and_retry_failed_deliveries(b: Backend) {
        let server = TestServer::start(b).await;
        let healthy = Arc::new(AtomicBool::new(false));
        let h = healthy.clone();
        let rx = Receiver::with(move |_, _| Reply::status(if h.load(Ordering::SeqCst) { 200 } else { 500 })).await;
        let other = Receiver::with(|_, _| Reply::status(500)).await;
        topic(&server, "r").await;
        let sub = subscribe(&server, "r", json!({"url": rx.url("/r"), "retry": {"strategy": "none"}})).await;
        subscribe(&server, "r", json!({"url": other.url("/o"), "retry": {"strategy": "none"}})).await;
        let sid = sub["id"].as_str().unwrap();
        let t_before = now_ms();
        let mut ids = vec![];
        for i in 0..3 {
            let m = publish(&server, "r", json!({"event_type": "e", "payload": i})).await;
            ids.push(m["id"].as_str().unwrap().to_string());
        }
        rx.wait_for(3, Duration::from_secs(10)).await;
        let failed = loop {
            let f = deliveries(&server, &format!("subscription={sid}&state=failed")).await;
            if f.len() == 3 { break f; }
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        healthy.store(true, Ordering::SeqCst);
        // Retry one delivery.
        let one = failed[0]["id"].as_str().unwrap();
        let (s, d) = server.post(&format!("/v1/deliveries/{one}/retry"), json!(null)).await;
        assert_eq!((s, d["state"].as_str()), (StatusCode::OK, Some("scheduled")), "{d}");
        wait_delivery(&server, one, "succeeded").await;
        // A time range that holds none replays none.
        let (s, r) = server.post(&format!("/v1/subscriptions/{sid}/replay"), json!({"created_before": rfc3339(t_before)})).await;
        assert_eq!((s, r["replayed"].as_u64()), (StatusCode::OK, Some(0)), "{r}");
        // Replay the rest in one call.
        let (s, r) = server.post(&format!("/v1/subscriptions/{sid}/replay"), json!({"created_after": rfc3339(t_before), "created_before": rfc3339(now_ms() + 1000)})).await;
        assert_eq!((s, r["replayed"].as_u64()), (StatusCode::OK, Some(2)), "{r}");
        for d in &failed[1..] {
            let d = wait_delivery(&server, d["id"].as_str().unwrap(), "succeeded").await;
            assert_eq!(d["attempts"], 2);
        }
        // The other subscription's failures were not replayed.
        let other_failed = deliveries(&server, "state=failed").await;
        assert_eq!(other_failed.len(), 3);
        assert!(other_failed.iter().all(|d| d["subscription_id"] != sid));
        // Retrying a delivery that has not finished is a conflict.
        let m = publish(&server, "r", json!({"event_type": "e", "payload": 9, "delay": "1h"})).await;
        let (s, _) = server.post(&format!("/v1/deliveries/{}/retry", m["delivery_ids"][0].as_str().unwrap()), json!(null)).await;
        assert_eq!(s, StatusCode::CONFLICT);
    }

    async fn signatures_verify_with_an_independent_verifier(b: Backend) {
        let server = TestServer::start(b).await;
        let rx = Receiver::with(|n, _| Reply::status(if n == 0 { 500 } else { 200 })).await;
        topic(&server, "signed").await;
        let given = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw";
        let s1 = subscribe(&server, "signed", json!({"url": rx.url("/given"), "secret": given, "retry": {"strategy": "fixed", "delay": "1100ms", "max_attempts": 2}})).await;
        assert_eq!(s1["secret"], given);
        let s2 = subscribe(&server, "signed", json!({"url": rx.url("/generated"), "event_types": ["never"]})).await;
        let generated = s2["secret"].as_str().unwrap();
        assert!(generated.starts_with("whsec_"));
        assert_ne!(generated, given);
        let m = publish(&server, "signed", json!({"event_type": "x", "payload": {"test": 2432232314u64}})).await;
        let got = rx.wait_for(2, Duration::from_secs(10)).await;
        // Both attempts verify; the id is the message id on both, the timestamp is each
        // attempt's own.
        for r in &got {
            verify(given, r).expect("signature verifies");
            assert_eq!(r.header("webhook-id"), m["id"].as_str());
            assert!(verify(generated, r).is_err(), "a different secret must not verify");
        }
        let ts0: i64 = got[0].header("webhook-timestamp").unwrap().parse().unwrap();
        let ts1: i64 = got[1].header("webhook-timestamp").unwrap().parse().unwrap();
        assert!(ts1 > ts0, "timestamps {ts0} {ts1}");
        assert!((ts0 - got[0].at_ms / 1000).abs() <= 1);
        // A tampered body does not verify.
        let mut tampered = got[1].clone();
        tampered.body = axum::body::Bytes::from_static(b"{\"test\":1}");
        assert!(verify(given, &tampered).is_err());
    }

    async fn rotation_signs_with_both_secrets_during_grace(b: Backend) {
        let server = TestServer::start(b).await;
        let rx = Receiver::start().await;
        topic(&server, "rot").await;
        let sub = subscribe(&server, "rot", json!({"url": rx.url("/r")})).await;
        let sid = sub["id"].as_str().unwrap();
        let old = sub["secret"].as_str().unwrap().to_string();
        let (s, rotated) = server.post(&format!("/v1/subscriptions/{sid}/rotate-secret"), json!({"grace": "1h"})).await;
        assert_eq!(s, StatusCode::OK, "{rotated}");
        let new = rotated["secret"].as_str().unwrap().to_string();
        assert_ne!(new, old);
        assert!(rotated["previous_secret_expires_at"].is_string());
        publish(&server, "rot", json!({"event_type": "e", "payload": 1})).await;
        let got = rx.wait_for(1, Duration::from_secs(10)).await;
        assert_eq!(got[0].header("webhook-signature").unwrap().split(' ').count(), 2);
        verify(&old, &got[0]).expect("old secret verifies during grace");
        verify(&new, &got[0]).expect("new secret verifies");
        // Rotating with no grace ends the old secret at once; a given secret is used as is.
        let given = "whsec_C2FVsBQIhrscChlQIMV+b5sSYspob7oD";
        let (s, r2) = server.post(&format!("/v1/subscriptions/{sid}/rotate-secret"), json!({"secret": given, "grace": "0s"})).await;
        assert_eq!((s, r2["secret"].as_str()), (StatusCode::OK, Some(given)), "{r2}");
        assert!(r2["previous_secret_expires_at"].is_null());
        publish(&server, "rot", json!({"event_type": "e", "payload": 2})).await;
        let got = rx.wait_for(2, Duration::from_secs(10)).await;
        assert_eq!(got[1].header("webhook-signature").unwrap().split(' ').count(), 1);
        verify(given, &got[1]).expect("given secret verifies");
        assert!(verify(&new, &got[1]).is_err());
        let (s, p) = server.post(&format!("/v1/subscriptions/{sid}/rotate-secret"), json!({"secret": "nope"})).await;
        assert_eq!((s, p["field"].as_str()), (StatusCode::BAD_REQUEST, Some("secret")));
    }

    async fn rotation_applies_to_retries(b: Backend) {
        // A delivery made before a rotation is retried after it: the retry is signed with the
        // secrets valid when it is sent.
        let server = TestServer::start(b).await;
        let rx = Receiver::with(|n, _| Reply::status(if n == 0 { 503 } else { 200 })).await;
        topic(&server, "rr").await;
        let sub = subscribe(&server, "rr", json!({"url": rx.url("/r"), "retry": {"strategy": "fixed", "delay": "700ms", "max_attempts": 2}})).await;
        let sid = sub["id"].as_str().unwrap();
        let old = sub["secret"].as_str().unwrap().to_string();
        publish(&server, "rr", json!({"event_type": "e", "payload": 1})).await;
        rx.wait_for(1, Duration::from_secs(10)).await;
        let (_, rotated) = server.post(&format!("/v1/subscriptions/{sid}/rotate-secret"), json!({"grace": "0s"})).await;
        let new = rotated["secret"].as_str().unwrap().to_string();
        let got = rx.wait_for(2, Duration::from_secs(10)).await;
        verify(&old, &got[0]).expect("first attempt: old secret");
        verify(&new, &got[1]).expect("retry: new secret");
        assert!(verify(&old, &got[1]).is_err());
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn standard_webhooks_test_vector_matches_the_independent_verifier() {
    let key = herald::webhooks::signing::secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "s")
        .unwrap();
    let ours = herald::webhooks::signing::sign(
        &key,
        "msg_p5jXN8AQM9LWM0D4loKWxJek",
        1614265330,
        br#"{"test": 2432232314}"#,
    );
    assert_eq!(ours, "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    let theirs = standardwebhooks::Webhook::new("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")
        .unwrap()
        .sign(
            "msg_p5jXN8AQM9LWM0D4loKWxJek",
            1614265330,
            br#"{"test": 2432232314}"#,
        )
        .unwrap();
    assert_eq!(ours, theirs);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_input_names_the_field() {
    let server = TestServer::start(Backend::Sqlite).await;
    let (s, p) = server
        .post("/v1/topics", json!({"name": "has space"}))
        .await;
    assert_eq!(
        (s, p["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("name"))
    );
    topic(&server, "t").await;
    let (s, p) = server.post("/v1/topics", json!({"name": "t"})).await;
    assert_eq!(
        (s, p["field"].as_str()),
        (StatusCode::CONFLICT, Some("name"))
    );
    let cases = [
        (json!({"url": "ftp://x"}), "url"),
        (json!({"url": "http://x", "secret": "abc"}), "secret"),
        (
            json!({"url": "http://x", "event_types": ["a b"]}),
            "event_types[0]",
        ),
        (
            json!({"url": "http://x", "headers": {"Webhook-Id": "x"}}),
            "headers.Webhook-Id",
        ),
        (json!({"url": "http://x", "timeout": "0s"}), "timeout"),
        (
            json!({"url": "http://x", "retry": {"strategy": "fixed"}}),
            "retry.delay",
        ),
        (
            json!({"url": "http://x", "permanent_failure_codes": ["9xx"]}),
            "permanent_failure_codes[0]",
        ),
        (json!({"url": "http://x", "wat": 1}), "wat"),
        (json!({}), "url"),
    ];
    for (body, field) in cases {
        let (s, p) = server
            .post("/v1/topics/t/subscriptions", body.clone())
            .await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body} -> {p}");
        assert_eq!(p["field"], field, "{body} -> {p}");
    }
    let (s, _) = server
        .post(
            "/v1/topics/missing/subscriptions",
            json!({"url": "http://x"}),
        )
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let msgs = [
        (json!({"payload": 1}), "event_type"),
        (
            json!({"event_type": "e", "payload": 1, "payload_text": "x"}),
            "payload",
        ),
        (
            json!({"event_type": "e", "payload_base64": "!!"}),
            "payload_base64",
        ),
        (json!({"event_type": "e", "delay": "soon"}), "delay"),
        (
            json!({"event_type": "e", "deliver_at": "2001-01-01T00:00:00Z"}),
            "deliver_at",
        ),
        (
            json!({"event_type": "e", "idempotency_key": ""}),
            "idempotency_key",
        ),
    ];
    for (body, field) in msgs {
        let (s, p) = server.post("/v1/topics/t/messages", body.clone()).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{body} -> {p}");
        assert_eq!(p["field"], field, "{body} -> {p}");
    }
    let (s, _) = server
        .post("/v1/topics/missing/messages", json!({"event_type": "e"}))
        .await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, p) = server.get("/v1/deliveries?state=bogus").await;
    assert_eq!(
        (s, p["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("state"))
    );
    let (s, _) = server.get("/v1/deliveries/not-an-id").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    // A plain job is not a delivery.
    let job = server
        .create_job(json!({"target": {"url": "http://127.0.0.1:9/x"}, "delay": "1h"}))
        .await;
    let (s, _) = server.get(&format!("/v1/deliveries/{job}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topics_and_subscriptions_crud_and_pagination() {
    let server = TestServer::start(Backend::Sqlite).await;
    for name in ["c", "a", "b"] {
        let (s, _) = server
            .post(
                "/v1/topics",
                json!({"name": name, "description": format!("topic {name}")}),
            )
            .await;
        assert_eq!(s, StatusCode::CREATED);
    }
    let (_, page) = server.get("/v1/topics?limit=2").await;
    let names: Vec<_> = page["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["a", "b"]);
    let (_, page2) = server
        .get(&format!(
            "/v1/topics?limit=2&cursor={}",
            page["next_cursor"].as_str().unwrap()
        ))
        .await;
    assert_eq!(page2["data"][0]["name"], "c");
    assert!(page2["next_cursor"].is_null());
    let (s, t) = server
        .patch("/v1/topics/a", json!({"description": "changed"}))
        .await;
    assert_eq!(
        (s, t["description"].as_str()),
        (StatusCode::OK, Some("changed"))
    );
    // Topics are per namespace.
    let r = server
        .http
        .get(server.url("/v1/topics/a"))
        .header("Herald-Namespace", "other")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    for i in 0..3 {
        subscribe(&server, "a", json!({"url": format!("http://127.0.0.1:9/{i}"), "name": format!("s{i}"),
            "retry": {"strategy": "fixed", "delay": "5s", "max_attempts": 3}, "timeout": "2s",
            "success_codes": [200, "202-204"], "permanent_failure_codes": ["3xx"], "unsubscribe_on_gone": true})).await;
    }
    let (_, subs) = server.get("/v1/topics/a/subscriptions?limit=2").await;
    assert_eq!(subs["data"].as_array().unwrap().len(), 2);
    let s0 = &subs["data"][0];
    assert_eq!(s0["retry"]["strategy"], "fixed");
    assert_eq!(s0["timeout"], "2s");
    assert_eq!(s0["success_codes"], json!(["200", "202-204"]));
    assert_eq!(s0["permanent_failure_codes"], json!(["3xx"]));
    assert_eq!(s0["unsubscribe_on_gone"], true);
    let (_, rest) = server
        .get(&format!(
            "/v1/topics/a/subscriptions?cursor={}",
            subs["next_cursor"].as_str().unwrap()
        ))
        .await;
    assert_eq!(rest["data"].as_array().unwrap().len(), 1);
    let id = s0["id"].as_str().unwrap();
    let (s, u) = server
        .patch(
            &format!("/v1/subscriptions/{id}"),
            json!({"permanent_failure_codes": [], "name": "renamed"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{u}");
    assert_eq!(u["permanent_failure_codes"], json!([]));
    assert_eq!(u["name"], "renamed");
    let (s, p) = server
        .patch(&format!("/v1/subscriptions/{id}"), json!({"url": "nope"}))
        .await;
    assert_eq!(
        (s, p["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("url"))
    );
    let (s, _) = server.get("/v1/subscriptions/unknown").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = server.delete("/v1/topics/a").await;
    assert_eq!(s, StatusCode::NO_CONTENT);
    let (s, _) = server.get(&format!("/v1/subscriptions/{id}")).await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    let (s, _) = server.delete("/v1/topics/a").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}
