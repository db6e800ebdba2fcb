//! The hammer surface against spec §2 and the seed README: every REST route, its shapes and
//! status codes, grpc-gateway errors, omitted zero values, pagination and `created_at_*`
//! filters, the seed's delivery body (signed with Standard Webhooks headers too), the success
//! set, a fixed retry delay, timeouts, and attempt dumps.

mod common;

use std::time::Duration;

use common::*;
use reqwest::StatusCode;
use serde_json::{json, Value};

async fn call(
    server: &TestServer,
    method: &str,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = server.http.request(
        reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
        format!("{}{path}", server.hammer),
    );
    if let Some(b) = body {
        req = req.json(&b);
    }
    let r = req.send().await.unwrap();
    if r.status() != StatusCode::NO_CONTENT {
        assert_eq!(
            r.headers()
                .get("content-type")
                .and_then(|v| v.to_str().ok()),
            Some("application/json"),
            "{method} {path}"
        );
    }
    into_json(r).await
}

async fn get(server: &TestServer, path: &str) -> (StatusCode, Value) {
    call(server, "GET", path, None).await
}

async fn post(server: &TestServer, path: &str, body: Value) -> (StatusCode, Value) {
    call(server, "POST", path, Some(body)).await
}

fn assert_gw_error(v: &Value, code: u64, message: &str) {
    assert_eq!(v["code"], code, "{v}");
    assert_eq!(v["message"], message, "{v}");
    assert_eq!(v["error"], message, "{v}");
    assert!(v["details"].is_array(), "{v}");
}

fn is_ulid(s: &str) -> bool {
    s.len() == 26 && s.parse::<ulid::Ulid>().is_ok()
}

async fn wait_status(server: &TestServer, id: &str, status: &str) -> Value {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (_, d) = get(server, &format!("/v1/deliveries/{id}")).await;
        if d["status"] == status {
            return d;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "delivery never {status}: {d}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

both_stores! {
    async fn seed_readme_flow(b: Backend) {
        let server = TestServer::start(b).await;
        let rx = Receiver::start().await;
        // Create a new topic.
        let (s, t) = post(&server, "/v1/topics", json!({"topic": {"id": "person", "name": "Person"}})).await;
        assert_eq!(s, StatusCode::OK, "{t}");
        assert_eq!((t["id"].as_str(), t["name"].as_str()), (Some("person"), Some("Person")));
        assert!(t["created_at"].is_string() && t["updated_at"].is_string());
        assert_eq!(t.as_object().unwrap().len(), 4);
        // Create a new subscription.
        let (s, sub) = post(&server, "/v1/subscriptions", json!({"subscription": {"id": "httpbin-post", "topic_id": "person", "name": "Httpbin Post", "url": rx.url("/post"), "secret_token": "my-super-secret-token", "max_delivery_attempts": 5, "delivery_attempt_delay": 60, "delivery_attempt_timeout": 5}})).await;
        assert_eq!(s, StatusCode::OK, "{sub}");
        for (k, v) in [("id", json!("httpbin-post")), ("topic_id", json!("person")), ("name", json!("Httpbin Post")), ("url", json!(rx.url("/post"))), ("secret_token", json!("my-super-secret-token")), ("max_delivery_attempts", json!(5)), ("delivery_attempt_delay", json!(60)), ("delivery_attempt_timeout", json!(5))] {
            assert_eq!(sub[k], v, "{k}: {sub}");
        }
        assert_eq!(sub.as_object().unwrap().len(), 10);
        // Create a new message.
        let (s, m) = post(&server, "/v1/messages", json!({"message": {"topic_id": "person", "data": "{\"name\": \"Allisson\"}"}})).await;
        assert_eq!(s, StatusCode::OK, "{m}");
        assert_eq!(m["data"], "eyJuYW1lIjogIkFsbGlzc29uIn0=");
        assert_eq!(m["topic_id"], "person");
        let mid = m["id"].as_str().unwrap().to_string();
        assert!(is_ulid(&mid), "{mid}");
        assert!(m.get("content_type").is_none(), "empty content_type is omitted: {m}");

        // The worker POSTs the seed's body.
        let got = rx.wait_for(1, Duration::from_secs(10)).await;
        let req = &got[0];
        assert_eq!(req.method, "POST");
        assert_eq!(req.header("content-type"), Some("application/json"));
        let body = req.json();
        let keys: Vec<&str> = body.as_object().unwrap().keys().map(String::as_str).collect();
        let mut sorted = keys.clone();
        sorted.sort();
        assert_eq!(sorted, ["created_at", "data", "message_id", "secret_token", "subscription_id", "topic_id"]);
        assert_eq!(body["topic_id"], "person");
        assert_eq!(body["subscription_id"], "httpbin-post");
        assert_eq!(body["message_id"], mid.as_str());
        assert_eq!(body["secret_token"], "my-super-secret-token");
        assert_eq!(body["data"], "eyJuYW1lIjogIkFsbGlzc29uIn0=");
        assert!(body["created_at"].as_str().unwrap().parse::<jiff::Timestamp>().is_ok());
        // … and signs it with Standard Webhooks headers, verifiable with the subscription's
        // signing secret (shown by the native API).
        let (_, native) = server.get("/v1/subscriptions/httpbin-post").await;
        let secret = native["secret"].as_str().unwrap();
        standardwebhooks::Webhook::new(secret).unwrap().verify(&req.body, &req.headers).expect("signed");

        // Get delivery data.
        let (s, ds) = get(&server, &format!("/v1/deliveries?message_id={mid}")).await;
        assert_eq!(s, StatusCode::OK);
        let did = ds["deliveries"][0]["id"].as_str().unwrap().to_string();
        assert!(is_ulid(&did));
        let d = wait_status(&server, &did, "completed").await;
        for (k, v) in [("topic_id", json!("person")), ("subscription_id", json!("httpbin-post")), ("message_id", json!(mid)), ("data", json!("eyJuYW1lIjogIkFsbGlzc29uIn0=")), ("url", json!(rx.url("/post"))), ("secret_token", json!("my-super-secret-token")), ("max_delivery_attempts", json!(5)), ("delivery_attempt_delay", json!(60)), ("delivery_attempt_timeout", json!(5)), ("delivery_attempts", json!(1)), ("status", json!("completed"))] {
            assert_eq!(d[k], v, "{k}: {d}");
        }
        for k in ["scheduled_at", "created_at", "updated_at"] {
            assert!(d[k].is_string(), "{k}: {d}");
        }
        // Get delivery attempt data.
        let (s, a) = get(&server, &format!("/v1/delivery-attempts?delivery_id={did}")).await;
        assert_eq!(s, StatusCode::OK);
        let att = &a["delivery_attempts"][0];
        assert_eq!(att["delivery_id"], did.as_str());
        assert!(is_ulid(att["id"].as_str().unwrap()));
        let request = att["request"].as_str().unwrap();
        assert!(request.starts_with(&format!("POST /post HTTP/1.1\r\nHost: {}\r\n", rx.addr)), "{request}");
        assert!(request.contains("Content-Type: application/json\r\n"), "{request}");
        assert!(request.contains("Webhook-Signature: v1,"), "{request}");
        assert!(request.ends_with(&String::from_utf8_lossy(&req.body).to_string()), "{request}");
        assert!(att["response"].as_str().unwrap().starts_with("HTTP/1.1 200 OK\r\n"), "{att}");
        assert_eq!(att["response_status_code"], 200);
        assert_eq!(att["success"], true);
        assert!(att.get("error").is_none(), "{att}");
        assert!(att["execution_duration"].is_null() || att["execution_duration"].as_i64().unwrap() >= 0);
        let (s, one) = get(&server, &format!("/v1/delivery-attempts/{}", att["id"].as_str().unwrap())).await;
        assert_eq!((s, &one), (StatusCode::OK, att));

        // Gets and lists.
        let (s, m2) = get(&server, &format!("/v1/messages/{mid}")).await;
        assert_eq!((s, &m2), (StatusCode::OK, &m));
        let (_, ms) = get(&server, "/v1/messages?topic_id=person").await;
        assert_eq!(ms["messages"].as_array().unwrap().len(), 1);
        let (_, ts) = get(&server, "/v1/topics").await;
        assert_eq!(ts["topics"][0]["id"], "person");
        let (_, ss) = get(&server, "/v1/subscriptions").await;
        assert_eq!(ss["subscriptions"][0]["id"], "httpbin-post");
        let (s, g) = get(&server, "/v1/subscriptions/httpbin-post").await;
        assert_eq!((s, &g["name"]), (StatusCode::OK, &json!("Httpbin Post")));
        let (s, g) = get(&server, "/v1/topics/person").await;
        assert_eq!((s, &g["name"]), (StatusCode::OK, &json!("Person")));
        let (s, g) = get(&server, &format!("/v1/deliveries/{did}")).await;
        assert_eq!((s, &g["id"]), (StatusCode::OK, &json!(did)));

        // Updates: full replace.
        let (s, t2) = call(&server, "PATCH", "/v1/topics/person", Some(json!({"topic": {"name": "People"}}))).await;
        assert_eq!((s, t2["name"].as_str(), t2["id"].as_str()), (StatusCode::OK, Some("People"), Some("person")));
        let (s, s2) = call(&server, "PATCH", "/v1/subscriptions/httpbin-post", Some(json!({"subscription": {"topicId": "person", "name": "Renamed", "url": rx.url("/v2"), "maxDeliveryAttempts": "3", "deliveryAttemptDelay": 1, "deliveryAttemptTimeout": 2}}))).await;
        assert_eq!(s, StatusCode::OK, "{s2}");
        assert_eq!((s2["name"].as_str(), s2["url"].as_str(), s2["max_delivery_attempts"].as_u64()), (Some("Renamed"), Some(rx.url("/v2").as_str()), Some(3)));
        // An empty token on update is stored empty, hence omitted.
        assert!(s2.get("secret_token").is_none(), "{s2}");
        // The delivery kept its snapshot.
        let (_, d) = get(&server, &format!("/v1/deliveries/{did}")).await;
        assert_eq!(d["url"], rx.url("/post"));

        // Deletes return {}.
        let (s, e) = call(&server, "DELETE", &format!("/v1/messages/{mid}"), None).await;
        assert_eq!((s, e), (StatusCode::OK, json!({})));
        let (s, _) = get(&server, &format!("/v1/deliveries/{did}")).await;
        assert_eq!(s, StatusCode::NOT_FOUND);
        let (s, e) = call(&server, "DELETE", "/v1/subscriptions/httpbin-post", None).await;
        assert_eq!((s, e), (StatusCode::OK, json!({})));
        let (s, e) = call(&server, "DELETE", "/v1/topics/person", None).await;
        assert_eq!((s, e), (StatusCode::OK, json!({})));
        let (s, e) = get(&server, "/v1/topics").await;
        assert_eq!((s, e), (StatusCode::OK, json!({})));
    }

    async fn success_set_fixed_delay_timeout_and_errors(b: Backend) {
        let server = TestServer::start(b).await;
        // 203 is a 2xx but not in hammer's success set.
        let rx = Receiver::with(|_, _| Reply::status(203).body("nope")).await;
        let slow = Receiver::with(|_, _| Reply::status(200).delayed(Duration::from_secs(3))).await;
        let ok204 = Receiver::with(|_, _| Reply::status(204)).await;
        post(&server, "/v1/topics", json!({"topic": {"id": "t", "name": "T"}})).await;
        let sub = |id: &str, url: String, attempts: u32, timeout: u32| json!({"subscription": {"id": id, "topic_id": "t", "name": id, "url": url, "max_delivery_attempts": attempts, "delivery_attempt_delay": 1, "delivery_attempt_timeout": timeout}});
        for body in [sub("s203", rx.url("/x"), 2, 5), sub("slow", slow.url("/s"), 1, 1), sub("closed", "http://127.0.0.1:9/c".into(), 1, 1), sub("s204", ok204.url("/ok"), 1, 5)] {
            let (s, v) = post(&server, "/v1/subscriptions", body).await;
            assert_eq!(s, StatusCode::OK, "{v}");
        }
        let (_, m) = post(&server, "/v1/messages", json!({"message": {"topic_id": "t", "content_type": "text/plain", "data": "hi"}})).await;
        assert_eq!(m["content_type"], "text/plain");
        let mid = m["id"].as_str().unwrap();
        let (_, ds) = get(&server, &format!("/v1/deliveries?message_id={mid}")).await;
        let by_sub = |id: &str| ds["deliveries"].as_array().unwrap().iter().find(|d| d["subscription_id"] == id).unwrap()["id"].as_str().unwrap().to_string();
        // Fixed delay: two attempts, one second apart, then failed.
        let d = wait_status(&server, &by_sub("s203"), "failed").await;
        assert_eq!(d["delivery_attempts"], 2);
        assert_eq!(d["content_type"], "text/plain");
        let got = rx.requests();
        assert_eq!(got.len(), 2);
        let gap = got[1].at_ms - got[0].at_ms;
        assert!((1_000..1_800).contains(&gap), "gap {gap}");
        let (_, a) = get(&server, &format!("/v1/delivery-attempts?delivery_id={}", by_sub("s203"))).await;
        let a0 = &a["delivery_attempts"][0];
        assert_eq!(a0["response_status_code"], 203);
        assert!(a0.get("success").is_none(), "false is omitted: {a0}");
        assert!(a0["response"].as_str().unwrap().ends_with("\r\n\r\nnope"));
        // 204 is a success.
        wait_status(&server, &by_sub("s204"), "completed").await;
        // A timeout and a refused connection are attempts with an error and no status.
        for id in ["slow", "closed"] {
            let did = by_sub(id);
            wait_status(&server, &did, "failed").await;
            let (_, a) = get(&server, &format!("/v1/delivery-attempts?delivery_id={did}")).await;
            let a0 = &a["delivery_attempts"][0];
            assert!(a0["error"].as_str().is_some_and(|e| !e.is_empty()), "{a0}");
            assert!(a0.get("response_status_code").is_none(), "{a0}");
            assert!(a0.get("response").is_none(), "{a0}");
        }
        // Status filters.
        let (_, f) = get(&server, "/v1/deliveries?status=failed").await;
        assert_eq!(f["deliveries"].as_array().unwrap().len(), 3);
        let (_, c) = get(&server, "/v1/deliveries?status=completed&subscription_id=s204").await;
        assert_eq!(c["deliveries"].as_array().unwrap().len(), 1);
        let (_, p) = get(&server, "/v1/deliveries?status=pending").await;
        assert_eq!(p, json!({}));
        let (_, t) = get(&server, "/v1/deliveries?topic_id=t").await;
        assert_eq!(t["deliveries"].as_array().unwrap().len(), 4);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_follow_grpc_gateway() {
    let server = TestServer::start(Backend::Sqlite).await;
    // Validation on create: 400, InvalidArgument, with field violations.
    let (s, e) = post(&server, "/v1/topics", json!({"topic": {"name": "x"}})).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_gw_error(&e, 3, "invalid_topic");
    assert_eq!(
        e["details"][0]["@type"],
        "type.googleapis.com/google.rpc.BadRequest"
    );
    assert_eq!(e["details"][0]["field_violations"][0]["field"], "id");
    let (s, e) = post(
        &server,
        "/v1/topics",
        json!({"topic": {"id": "bad id", "name": "x"}}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(e["details"][0]["field_violations"][0]["field"], "id");
    let (s, _) = post(
        &server,
        "/v1/topics",
        json!({"topic": {"id": "t", "name": "T"}}),
    )
    .await;
    assert_eq!(s, StatusCode::OK);
    // Everything else is 500 Internal.
    let (s, e) = post(
        &server,
        "/v1/topics",
        json!({"topic": {"id": "t", "name": "T"}}),
    )
    .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_gw_error(&e, 13, "topic_already_exists");
    let (s, e) = get(&server, "/v1/topics/nope").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_gw_error(&e, 5, "topic_does_not_exists");
    let (s, e) = call(&server, "PATCH", "/v1/topics/t", Some(json!({"topic": {}}))).await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(e["code"], 3);
    assert_eq!(e["details"], json!([]));
    let (s, e) = call(
        &server,
        "PATCH",
        "/v1/topics/nope",
        Some(json!({"topic": {"name": "n"}})),
    )
    .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_gw_error(&e, 13, "topic_does_not_exists");
    let (s, e) = call(&server, "DELETE", "/v1/topics/nope", None).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_gw_error(&e, 13, "sql: no rows in result set");

    let good = json!({"id": "s", "topic_id": "t", "name": "S", "url": "http://127.0.0.1:9/x", "max_delivery_attempts": 1, "delivery_attempt_delay": 1, "delivery_attempt_timeout": 1});
    for (field, value) in [
        ("max_delivery_attempts", json!(0)),
        ("url", json!("")),
        ("name", json!("")),
        ("topic_id", json!("")),
        ("id", json!("a/b")),
    ] {
        let mut b = good.clone();
        b[field] = value;
        let (s, e) = post(&server, "/v1/subscriptions", json!({"subscription": b})).await;
        assert_eq!(s, StatusCode::BAD_REQUEST, "{field}: {e}");
        assert_gw_error(&e, 3, "invalid_subscription");
        assert_eq!(
            e["details"][0]["field_violations"][0]["field"], field,
            "{e}"
        );
    }
    let mut missing_topic = good.clone();
    missing_topic["topic_id"] = json!("nope");
    let (s, e) = post(
        &server,
        "/v1/subscriptions",
        json!({"subscription": missing_topic}),
    )
    .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_gw_error(&e, 13, "topic_does_not_exists");
    // Numbers as strings and camelCase names are accepted; a missing token is generated.
    let (s, sub) = post(&server, "/v1/subscriptions", json!({"subscription": {"id": "s", "topicId": "t", "name": "S", "url": "http://127.0.0.1:9/x", "maxDeliveryAttempts": "2", "deliveryAttemptDelay": "1", "deliveryAttemptTimeout": "1"}})).await;
    assert_eq!(s, StatusCode::OK, "{sub}");
    let token = sub["secret_token"].as_str().unwrap();
    assert_eq!(token.len(), 40);
    assert!(token.bytes().all(|b| b.is_ascii_alphanumeric()));
    let (s, e) = post(&server, "/v1/subscriptions", json!({"subscription": good})).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_gw_error(&e, 13, "subscription_already_exists");
    let (s, e) = call(
        &server,
        "PATCH",
        "/v1/subscriptions/nope",
        Some(json!({"subscription": good})),
    )
    .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_gw_error(&e, 13, "subscription_does_not_exists");
    let (s, e) = call(
        &server,
        "PATCH",
        "/v1/subscriptions/s",
        Some(json!({"subscription": {"topic_id": "t"}})),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(e["details"], json!([]));
    let (s, e) = get(&server, "/v1/subscriptions/nope").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_gw_error(&e, 5, "subscription_does_not_exists");
    let (s, e) = call(&server, "DELETE", "/v1/subscriptions/nope", None).await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_gw_error(&e, 13, "sql: no rows in result set");

    let (s, e) = post(
        &server,
        "/v1/messages",
        json!({"message": {"topic_id": "t"}}),
    )
    .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_gw_error(&e, 3, "invalid_message");
    assert_eq!(e["details"][0]["field_violations"][0]["field"], "data");
    let (s, e) = post(
        &server,
        "/v1/messages",
        json!({"message": {"topicId": "nope", "data": "x"}}),
    )
    .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_gw_error(&e, 13, "topic_does_not_exists");
    for (path, what) in [
        ("/v1/messages/nope", "message"),
        ("/v1/messages/01E853WTKZVYWJFAQZ0EC4G125", "message"),
        ("/v1/deliveries/nope", "delivery"),
        (
            "/v1/delivery-attempts/01E853WTKZVYWJFAQZ0EC4G125",
            "delivery_attempt",
        ),
    ] {
        let (s, e) = get(&server, path).await;
        assert_eq!(s, StatusCode::NOT_FOUND, "{path}");
        assert_gw_error(&e, 5, &format!("{what}_does_not_exists"));
    }
    let (s, e) = call(
        &server,
        "DELETE",
        "/v1/messages/01E853WTKZVYWJFAQZ0EC4G125",
        None,
    )
    .await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_gw_error(&e, 13, "sql: no rows in result set");
    // Malformed JSON is InvalidArgument.
    let r = server
        .http
        .post(format!("{}/v1/topics", server.hammer))
        .body("{nope")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.json::<Value>().await.unwrap()["code"], 3);
    // Unknown routes.
    let (s, e) = get(&server, "/v2/whatever").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
    assert_eq!(e["code"], 5);
    // Empty lists are {}.
    for path in ["/v1/messages", "/v1/deliveries", "/v1/delivery-attempts"] {
        let (s, v) = get(&server, path).await;
        assert_eq!((s, v), (StatusCode::OK, json!({})), "{path}");
    }
    // Health.
    for path in ["/liveness", "/readiness"] {
        let r = server
            .http
            .get(format!("{}{path}", server.hammer))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), StatusCode::NO_CONTENT, "{path}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pagination_and_created_at_filters() {
    let server = TestServer::start(Backend::Sqlite).await;
    for i in 0..30 {
        let (s, _) = post(
            &server,
            "/v1/topics",
            json!({"topic": {"id": format!("a{i:02}"), "name": "x"}}),
        )
        .await;
        assert_eq!(s, StatusCode::OK);
    }
    tokio::time::sleep(Duration::from_millis(30)).await;
    let cut = now_ms();
    tokio::time::sleep(Duration::from_millis(30)).await;
    for i in 0..30 {
        post(
            &server,
            "/v1/topics",
            json!({"topic": {"id": format!("b{i:02}"), "name": "x"}}),
        )
        .await;
    }
    let count = |v: &Value| v["topics"].as_array().map_or(0, Vec::len);
    let (_, v) = get(&server, "/v1/topics").await;
    assert_eq!(count(&v), 25, "default page");
    let (_, v) = get(&server, "/v1/topics?limit=0").await;
    assert_eq!(count(&v), 25);
    let (_, v) = get(&server, "/v1/topics?limit=100").await;
    assert_eq!(count(&v), 50, "capped");
    let (_, v) = get(&server, "/v1/topics?limit=50&offset=50").await;
    assert_eq!(count(&v), 10);
    let (_, v) = get(&server, "/v1/topics?limit=5&offset=3").await;
    assert_eq!(v["topics"][0]["id"], "a03");
    let at = rfc3339(cut);
    let enc = |s: &str| s.replace(':', "%3A");
    let (_, v) = get(
        &server,
        &format!("/v1/topics?limit=50&created_at_gt={}", enc(&at)),
    )
    .await;
    assert_eq!(count(&v), 30);
    assert!(v["topics"]
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["id"].as_str().unwrap().starts_with('b')));
    let (_, v) = get(
        &server,
        &format!("/v1/topics?limit=50&created_at_lte={}", enc(&at)),
    )
    .await;
    assert_eq!(count(&v), 30);
    let (_, v) = get(
        &server,
        &format!(
            "/v1/topics?created_at_gte={}&created_at_lt={}",
            enc(&at),
            enc(&rfc3339(cut - 1))
        ),
    )
    .await;
    assert_eq!(v, json!({}));
    // A value the database cannot read is a 500, as in the original.
    let (s, e) = get(&server, "/v1/topics?created_at_gt=yesterday").await;
    assert_eq!(s, StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(e["code"], 13);
    let (s, e) = get(&server, "/v1/topics?limit=x").await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    assert_eq!(e["code"], 3);
}
