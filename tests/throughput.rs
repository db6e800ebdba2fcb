//! Fan-out throughput, measured on demand (ignored by default):
//!
//! ```text
//! cargo nextest run --release --test throughput --run-ignored only --no-capture
//! ```
//!
//! One message to 100 subscriptions, and 10,000 messages to one subscription, delivered to a
//! loopback receiver in the same process, on SQLite and on PostgreSQL. Prints deliveries per
//! second from the first publish to the last delivery received (and, for the second case,
//! the publish rate and the delivery rate once all messages are stored).

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use common::*;
use serde_json::json;

async fn one_to_many(b: Backend, subs: usize) {
    let server = TestServer::start(b).await;
    let rx = Receiver::start().await;
    server.post("/v1/topics", json!({"name": "bench"})).await;
    for i in 0..subs {
        server
            .post(
                "/v1/topics/bench/subscriptions",
                json!({"url": rx.url(&format!("/s{i}"))}),
            )
            .await;
    }
    let t0 = Instant::now();
    let (s, _) = server
        .post(
            "/v1/topics/bench/messages",
            json!({"event_type": "e", "payload": {"n": 1}}),
        )
        .await;
    assert!(s.is_success());
    rx.wait_for(subs, Duration::from_secs(120)).await;
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "[{b:?}] 1 message -> {subs} subscriptions: {:.0} ms, {:.0} deliveries/s",
        secs * 1000.0,
        subs as f64 / secs
    );
}

async fn many_to_one(b: Backend, messages: usize, publishers: usize) {
    let server = Arc::new(
        TestServer::start_with(b, |c| {
            if let herald::store::Database::Postgres {
                max_connections, ..
            } = &mut c.database
            {
                *max_connections = 32;
            }
        })
        .await,
    );
    let rx = Receiver::start().await;
    server.post("/v1/topics", json!({"name": "bench"})).await;
    server
        .post(
            "/v1/topics/bench/subscriptions",
            json!({"url": rx.url("/one")}),
        )
        .await;
    let t0 = Instant::now();
    let mut tasks = Vec::new();
    for p in 0..publishers {
        let server = server.clone();
        tasks.push(tokio::spawn(async move {
            for i in (p..messages).step_by(publishers) {
                let (s, _) = server
                    .post(
                        "/v1/topics/bench/messages",
                        json!({"event_type": "e", "payload": {"n": i}}),
                    )
                    .await;
                assert!(s.is_success());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let published = t0.elapsed().as_secs_f64();
    let seen_at_publish_end = rx.count();
    let t1 = Instant::now();
    rx.wait_for(messages, Duration::from_secs(600)).await;
    let total = t0.elapsed().as_secs_f64();
    let drain = t1.elapsed().as_secs_f64();
    println!(
        "[{b:?}] {messages} messages -> 1 subscription ({publishers} concurrent publishers): \
         published in {published:.1} s ({:.0}/s), all delivered in {total:.1} s ({:.0} deliveries/s end to end); \
         {seen_at_publish_end} delivered while publishing, the remaining {} in {drain:.1} s ({:.0}/s)",
        messages as f64 / published,
        messages as f64 / total,
        messages - seen_at_publish_end,
        (messages - seen_at_publish_end) as f64 / drain.max(0.001),
    );
}

/// Delivery capacity alone: the messages are stored by an API-only node, then a node with
/// workers starts on the same database and drains them.
async fn drain(b: Backend, messages: usize, publishers: usize) {
    let api = Arc::new(TestServer::start_with(b, |c| c.run_workers = false).await);
    let rx = Receiver::start().await;
    api.post("/v1/topics", json!({"name": "bench"})).await;
    api.post(
        "/v1/topics/bench/subscriptions",
        json!({"url": rx.url("/one")}),
    )
    .await;
    let mut tasks = Vec::new();
    for p in 0..publishers {
        let api = api.clone();
        tasks.push(tokio::spawn(async move {
            for i in (p..messages).step_by(publishers) {
                let (s, _) = api
                    .post(
                        "/v1/topics/bench/messages",
                        json!({"event_type": "e", "payload": {"n": i}}),
                    )
                    .await;
                assert!(s.is_success());
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let Ok(api) = Arc::try_unwrap(api) else {
        panic!("publishers still hold the server")
    };
    let db = api.stop().await;
    let t0 = Instant::now();
    let _worker = TestServer::start_on(db, |_| {}).await;
    rx.wait_for(messages, Duration::from_secs(600)).await;
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "[{b:?}] drain of {messages} stored deliveries to 1 subscription: {secs:.1} s, {:.0} deliveries/s",
        messages as f64 / secs
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run with --run-ignored only"]
async fn drain_ten_thousand_stored_deliveries() {
    drain(Backend::Sqlite, 10_000, 16).await;
    if postgres_available().await {
        drain(Backend::Postgres, 10_000, 16).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run with --run-ignored only"]
async fn fan_out_one_message_to_100_subscriptions() {
    one_to_many(Backend::Sqlite, 100).await;
    if postgres_available().await {
        one_to_many(Backend::Postgres, 100).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark; run with --run-ignored only"]
async fn ten_thousand_messages_to_one_subscription() {
    many_to_one(Backend::Sqlite, 10_000, 16).await;
    if postgres_available().await {
        many_to_one(Backend::Postgres, 10_000, 16).await;
    }
}
