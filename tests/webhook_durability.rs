//! A SIGKILL in the middle of fan-out loses no delivery: messages are published to a topic
//! with many subscriptions while the process is killed (some publishes in their transaction,
//! some deliveries in flight, most not yet due). After a restart every message that exists
//! has exactly one delivery per subscription (the publish transaction is all or nothing),
//! every acknowledged message exists, and every delivery reaches its receiver — more than
//! once only if it was in flight at the kill.

mod common;

#[path = "common/process.rs"]
mod process;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;
use process::{free_port, Process};
use reqwest::StatusCode;
use serde_json::{json, Value};

const SUBSCRIPTIONS: usize = 40;

async fn all(http: &reqwest::Client, url: String) -> Vec<Value> {
    let mut out = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let u = match &cursor {
            Some(c) => format!("{url}&cursor={c}"),
            None => url.clone(),
        };
        let v: Value = http.get(u).send().await.unwrap().json().await.unwrap();
        out.extend(v["data"].as_array().unwrap().iter().cloned());
        match v["next_cursor"].as_str() {
            Some(c) => cursor = Some(c.to_string()),
            None => return out,
        }
    }
}

both_stores! {
    async fn sigkill_during_fan_out_loses_no_delivery(b: Backend) {
        let killed = Arc::new(AtomicBool::new(false));
        let k = killed.clone();
        // Before the kill calls hang for a while, so some are in flight when it lands.
        let rx = Receiver::with(move |_, _| {
            if k.load(Ordering::SeqCst) {
                Reply::status(200)
            } else {
                Reply::status(200).delayed(Duration::from_millis(1500))
            }
        })
        .await;
        let db = TestDb::new(b).await;
        let port = free_port();
        let proc1 = Process::start(&db, port, &["--workers", "16"]).await;
        let http = reqwest::Client::new();
        let base = proc1.base.clone();
        let r = http.post(format!("{base}/v1/topics")).json(&json!({"name": "fan"})).send().await.unwrap();
        assert_eq!(r.status(), StatusCode::CREATED);
        for i in 0..SUBSCRIPTIONS {
            let r = http
                .post(format!("{base}/v1/topics/fan/subscriptions"))
                .json(&json!({"url": rx.url(&format!("/s{i}")), "timeout": "3s", "retry": {"strategy": "fixed", "delay": "100ms", "max_attempts": 10}}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::CREATED);
        }
        // Publish until the process dies; remember what was acknowledged.
        let acked: Arc<Mutex<HashMap<String, Vec<String>>>> = Arc::default();
        let publisher = {
            let acked = acked.clone();
            let http = http.clone();
            tokio::spawn(async move {
                for i in 0.. {
                    let r = http
                        .post(format!("{base}/v1/topics/fan/messages"))
                        .json(&json!({"event_type": "e", "payload": {"n": i}}))
                        .send()
                        .await;
                    let Ok(r) = r else { return };
                    let Ok(m) = r.json::<Value>().await else { return };
                    let ids = m["delivery_ids"].as_array().unwrap().iter().map(|v| v.as_str().unwrap().to_string()).collect();
                    acked.lock().unwrap().insert(m["id"].as_str().unwrap().to_string(), ids);
                }
            })
        };
        rx.wait_for(20, Duration::from_secs(20)).await;
        proc1.sigkill();
        killed.store(true, Ordering::SeqCst);
        let _ = publisher.await;
        let before_kill: HashSet<String> = rx.requests().iter().map(|r| r.header("herald-delivery-id").unwrap().to_string()).collect();
        let acked = acked.lock().unwrap().clone();
        assert!(acked.len() >= 2, "too few publishes before the kill: {}", acked.len());

        let proc2 = Process::start(&db, port, &[]).await;
        // Every acknowledged message exists; every message has one delivery per subscription.
        let messages = all(&http, format!("{}/v1/topics/fan/messages?limit=500", proc2.base)).await;
        let existing: HashSet<String> = messages.iter().map(|m| m["id"].as_str().unwrap().to_string()).collect();
        for id in acked.keys() {
            assert!(existing.contains(id), "acknowledged message {id} was lost");
        }
        let deliveries = all(&http, format!("{}/v1/deliveries?topic=fan&limit=500", proc2.base)).await;
        let mut per_message: HashMap<String, HashSet<String>> = HashMap::new();
        for d in &deliveries {
            per_message.entry(d["message_id"].as_str().unwrap().to_string()).or_default().insert(d["subscription_id"].as_str().unwrap().to_string());
        }
        for m in &messages {
            let id = m["id"].as_str().unwrap();
            assert_eq!(m["deliveries"], SUBSCRIPTIONS, "{m}");
            assert_eq!(per_message.get(id).map_or(0, HashSet::len), SUBSCRIPTIONS, "message {id} has a partial fan-out");
        }
        for (m, ids) in &acked {
            assert_eq!(ids.len(), SUBSCRIPTIONS, "message {m}");
        }
        let all_ids: HashSet<String> = deliveries.iter().map(|d| d["id"].as_str().unwrap().to_string()).collect();
        assert_eq!(all_ids.len(), messages.len() * SUBSCRIPTIONS);
        assert!(before_kill.len() < all_ids.len(), "everything was delivered before the kill; it tested nothing");
        // Every delivery reaches the receiver and ends succeeded.
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let seen: HashSet<String> = rx.requests().iter().map(|r| r.header("herald-delivery-id").unwrap().to_string()).collect();
            if seen.is_superset(&all_ids) {
                break;
            }
            assert!(Instant::now() < deadline, "{} of {} deliveries reached the receiver", seen.intersection(&all_ids).count(), all_ids.len());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut counts: HashMap<String, usize> = HashMap::new();
        for r in rx.requests() {
            *counts.entry(r.header("herald-delivery-id").unwrap().to_string()).or_default() += 1;
        }
        for (id, n) in &counts {
            assert!(all_ids.contains(id), "unknown delivery {id}");
            if *n > 1 {
                assert!(before_kill.contains(id), "delivery {id} was made {n} times but was not in flight at the kill");
            }
        }
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let left = all(&http, format!("{}/v1/deliveries?topic=fan&state=scheduled,in_flight,failed,cancelled&limit=500", proc2.base)).await;
            if left.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "{} deliveries not succeeded", left.len());
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}
