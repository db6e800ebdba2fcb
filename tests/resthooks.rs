//! REST Hooks, both as the embeddable library (router mounted in a host app + `notify`) and
//! as `/hooks/` on a Herald node, on both stores: subscribe → notify → delivery → 410 →
//! unsubscribed; the 5 s × 3ⁿ schedule (shortened here); 3xx as a permanent failure; the
//! original's status codes and plain-text errors.

mod common;

use std::time::Duration;

use common::*;
use herald::compat::resthooks::{namespace, RestHooks};
use herald::embed::Embedded;
use herald::webhooks::model::DeliveryFilter;
use reqwest::StatusCode;
use serde_json::{json, Value};

/// A host application with the REST Hooks router mounted under `/hooks`.
struct Host {
    herald: Option<Embedded>,
    hooks: RestHooks,
    base: String,
    http: reqwest::Client,
    _db: TestDb,
}

impl Host {
    async fn start(b: Backend) -> Host {
        let db = TestDb::new(b).await;
        let mut config = test_config(&db);
        config.resthooks.initial_retry_ms = 100;
        let herald = Embedded::start(config)
            .await
            .expect("start embedded herald");
        let hooks = herald.resthooks();
        let app = axum::Router::new()
            .route("/", axum::routing::get(|| async { "host app" }))
            .nest("/hooks", hooks.router());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Host {
            herald: Some(herald),
            hooks,
            base,
            http: reqwest::Client::new(),
            _db: db,
        }
    }

    async fn subscribe(&self, body: Value) -> (StatusCode, String, Value) {
        let r = self
            .http
            .post(format!("{}/hooks/subscribe", self.base))
            .json(&body)
            .send()
            .await
            .unwrap();
        let ct = r
            .headers()
            .get("content-type")
            .map(|v| v.to_str().unwrap().to_string())
            .unwrap_or_default();
        let (s, v) = into_json(r).await;
        (s, ct, v)
    }

    async fn deliveries(&self, user: i64) -> Vec<herald::domain::Job> {
        let mut f = DeliveryFilter {
            namespace: namespace(user),
            ..Default::default()
        };
        f.page.limit = 100;
        self.herald
            .as_ref()
            .unwrap()
            .webhooks()
            .list_deliveries(&f)
            .await
            .unwrap()
    }

    async fn wait_delivery(&self, user: i64, n: usize, state: &str) -> herald::domain::Job {
        let deadline = std::time::Instant::now() + Duration::from_secs(20);
        loop {
            let ds = self.deliveries(user).await;
            if ds.len() > n && ds[n].state.as_str() == state {
                return ds[n].clone();
            }
            assert!(
                std::time::Instant::now() < deadline,
                "delivery {n} never became {state}: {ds:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for Host {
    fn drop(&mut self) {
        drop(self.herald.take());
    }
}

both_stores! {
    async fn subscribe_notify_gone_unsubscribes(b: Backend) {
        let host = Host::start(b).await;
        let gone = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let g = gone.clone();
        let rx = Receiver::with(move |_, _| Reply::status(if g.load(std::sync::atomic::Ordering::SeqCst) { 410 } else { 200 })).await;
        let (s, ct, sub) = host
            .subscribe(json!({"user_id": 1, "event": "post_created", "target_url": rx.url("/hook")}))
            .await;
        assert_eq!(s, StatusCode::OK, "{sub}");
        assert_eq!(ct, "application/json");
        let id = sub["id"].as_i64().unwrap();
        assert!(id > 0);
        assert_eq!(sub, json!({"id": id, "user_id": 1, "event": "post_created", "target_url": rx.url("/hook")}));

        // Notify: the data arrives as JSON, signed.
        let n = host.hooks.notify(1, "post_created", &json!({"title": "hello"})).await.unwrap();
        assert_eq!(n.deliveries.len(), 1);
        let got = rx.wait_for(1, Duration::from_secs(10)).await;
        assert_eq!(got[0].json(), json!({"title": "hello"}));
        assert_eq!(got[0].header("content-type"), Some("application/json"));
        assert_eq!(got[0].header("webhook-id"), Some(n.message_id.to_string().as_str()));
        assert!(got[0].header("webhook-signature").unwrap().starts_with("v1,"));
        let d = host.wait_delivery(1, 0, "succeeded").await;
        assert_eq!(d.attempts, 1);
        // Another user's notify does not reach this subscription.
        let other = host.hooks.notify(2, "post_created", &json!({})).await.unwrap();
        assert!(other.deliveries.is_empty());

        // 410 Gone: the delivery fails at once and the subscription is removed.
        gone.store(true, std::sync::atomic::Ordering::SeqCst);
        host.hooks.notify(1, "post_created", &json!({"title": "second"})).await.unwrap();
        let d = host.wait_delivery(1, 1, "failed").await;
        assert_eq!((d.attempts, d.last_status), (1, Some(410)));
        let r = host.http.get(format!("{}/hooks/subscriptions/{id}", host.base)).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::NOT_FOUND);
        assert!(host.hooks.list(1, None).await.unwrap().is_empty());
        let after = host.hooks.notify(1, "post_created", &json!({"title": "third"})).await.unwrap();
        assert!(after.deliveries.is_empty());
        rx.quiet_for(Duration::from_millis(300)).await;
        assert_eq!(rx.count(), 2);
        // The outcomes stay readable.
        assert_eq!(host.deliveries(1).await.len(), 2);
    }

    async fn retries_follow_the_schedule_and_3xx_is_permanent(b: Backend) {
        let host = Host::start(b).await;
        // Always 400: 1 + 3 attempts, 100 ms × 3ⁿ apart (5 s × 3ⁿ by default).
        let bad = Receiver::with(|_, _| Reply::status(400)).await;
        host.subscribe(json!({"user_id": 7, "event": "a", "target_url": bad.url("/bad")})).await;
        host.hooks.notify(7, "a", &json!(1)).await.unwrap();
        let got = bad.wait_for(4, Duration::from_secs(10)).await;
        let gaps: Vec<i64> = got.windows(2).map(|w| w[1].at_ms - w[0].at_ms).collect();
        assert!((100..400).contains(&gaps[0]) && (300..700).contains(&gaps[1]) && (900..1500).contains(&gaps[2]), "gaps {gaps:?}");
        let d = host.wait_delivery(7, 0, "failed").await;
        assert_eq!(d.attempts, 4);
        bad.quiet_for(Duration::from_millis(300)).await;
        // 400, 400, 200: succeeds on the third attempt.
        let flaky = Receiver::with(|n, _| Reply::status(if n < 2 { 400 } else { 200 })).await;
        host.subscribe(json!({"user_id": 8, "event": "a", "target_url": flaky.url("/f")})).await;
        host.hooks.notify(8, "a", &json!(2)).await.unwrap();
        let d = host.wait_delivery(8, 0, "succeeded").await;
        assert_eq!(d.attempts, 3);
        // A redirect is a permanent failure: one attempt, never followed.
        let redirect = Receiver::with(|_, _| Reply::status(302).header("location", "http://127.0.0.1:9/")).await;
        host.subscribe(json!({"user_id": 9, "event": "a", "target_url": redirect.url("/r")})).await;
        host.hooks.notify(9, "a", &json!(3)).await.unwrap();
        let d = host.wait_delivery(9, 0, "failed").await;
        assert_eq!((d.attempts, d.last_status), (1, Some(302)));
        redirect.quiet_for(Duration::from_millis(300)).await;
        assert_eq!(redirect.count(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handler_routes_and_errors_follow_the_original() {
    let host = Host::start(Backend::Sqlite).await;
    let url = |p: &str| format!("{}{p}", host.base);
    let http = &host.http;
    // One subscription per (user, event): subscribing again updates it.
    let (_, _, a) = host
        .subscribe(json!({"user_id": 1, "event": "e", "target_url": "http://127.0.0.1:9/a"}))
        .await;
    let (s, _, a2) = host
        .subscribe(json!({"user_id": 1, "event": "e", "target_url": "http://127.0.0.1:9/b"}))
        .await;
    assert_eq!(s, StatusCode::OK);
    assert_eq!(a2["id"], a["id"]);
    assert_eq!(a2["target_url"], "http://127.0.0.1:9/b");
    let id = a["id"].as_i64().unwrap();
    // A body with an id updates that subscription.
    let (s, _, moved) = host
        .subscribe(
            json!({"id": id, "user_id": 1, "event": "f", "target_url": "http://127.0.0.1:9/c"}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{moved}");
    assert_eq!(
        (moved["id"].as_i64(), moved["event"].as_str()),
        (Some(id), Some("f"))
    );
    // list / get / update (the original's TODO).
    let v: Value = http
        .get(url("/hooks/subscriptions?user_id=1"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v, json!([moved]));
    let v: Value = http
        .get(url(&format!("/hooks/subscriptions/{id}")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v, moved);
    let r = http
        .put(url(&format!("/hooks/subscriptions/{id}")))
        .json(&json!({"target_url": "http://127.0.0.1:9/d"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert_eq!(
        r.json::<Value>().await.unwrap()["target_url"],
        "http://127.0.0.1:9/d"
    );
    // Errors.
    let r = http
        .post(url("/hooks/subscribe"))
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::BAD_REQUEST);
    assert_eq!(r.text().await.unwrap(), "Invalid subscribe data.\n");
    let r = http
        .put(url("/hooks/subscribe"))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = http.get(url("/hooks/unsubscribe/1")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    let r = http.delete(url("/hooks/unsubscribe")).send().await.unwrap();
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    let r = http
        .delete(url("/hooks/unsubscribe/12345"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::INTERNAL_SERVER_ERROR);
    assert_eq!(r.text().await.unwrap(), "Invalid subscription.\n");
    let (s, _, _) = host
        .subscribe(json!({"user_id": 1, "event": "e", "target_url": "not a url"}))
        .await;
    assert_eq!(s, StatusCode::BAD_REQUEST);
    // Unsubscribe: 200 with an empty body, then it is gone.
    let r = http
        .delete(url(&format!("/hooks/unsubscribe/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::OK);
    assert!(r.text().await.unwrap().is_empty());
    let r = http
        .get(url(&format!("/hooks/subscriptions/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::NOT_FOUND);
    // The host app's own routes are untouched.
    assert_eq!(
        http.get(url("/"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap(),
        "host app"
    );
}

/// A Herald node serves REST Hooks under `/hooks/` on its main listener; a notify there is a
/// native publish in namespace `user:{id}` to topic `{event}`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn node_serves_hooks_on_the_main_listener() {
    let server = TestServer::start(Backend::Sqlite).await;
    let rx = Receiver::start().await;
    let (s, sub) = server
        .post(
            "/hooks/subscribe",
            json!({"user_id": 5, "event": "order_paid", "target_url": rx.url("/x")}),
        )
        .await;
    assert_eq!(s, StatusCode::OK, "{sub}");
    let r = server
        .http
        .post(server.url("/v1/topics/order_paid/messages"))
        .header("Herald-Namespace", "user:5")
        .json(&json!({"event_type": "order_paid", "payload": {"n": 1}}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), StatusCode::CREATED);
    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    assert_eq!(got[0].json(), json!({"n": 1}));
    let (s, _) = server.get("/hooks/nothing").await;
    assert_eq!(s, StatusCode::NOT_FOUND);
}
