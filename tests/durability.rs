//! Nothing accepted is lost: restarts with work due, a SIGKILL in the middle of calls,
//! graceful shutdown, and several nodes sharing one PostgreSQL database.

mod common;
#[path = "common/process.rs"]
mod process;

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use common::*;
use process::{free_port, Process};
use reqwest::StatusCode;
use serde_json::json;

both_stores! {
    async fn restart_with_jobs_due_fires_them_promptly(b: Backend) {
        let rx = Receiver::start().await;
        let server = TestServer::start(b).await;
        let mut ids = HashSet::new();
        for i in 0..20 {
            ids.insert(server.create_job(json!({"target": {"url": rx.url(&format!("/r{i}"))}, "delay": "300ms"})).await);
        }
        let db = server.stop().await;
        // The node is down while the jobs become due.
        tokio::time::sleep(Duration::from_millis(800)).await;
        assert_eq!(rx.count(), 0);
        let started = now_ms();
        let server = TestServer::start_on(db, |_| {}).await;
        let got = rx.wait_for(20, Duration::from_secs(10)).await;
        let last = got.iter().map(|r| r.at_ms).max().unwrap();
        assert!(last - started < 5_000, "due jobs took {} ms after restart", last - started);
        let seen: HashSet<String> = got.iter().map(|r| r.header("herald-delivery-id").unwrap().to_string()).collect();
        assert_eq!(seen, ids);
        for id in &ids {
            server.wait_state(id, "succeeded").await;
        }
    }

    async fn sigkill_mid_flight_loses_nothing(b: Backend) {
        // Calls that arrive before the kill hang for a while, so some are in flight when the
        // process dies; after the restart every call is answered at once.
        let killed = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let k = killed.clone();
        let rx = Receiver::with(move |_, _| {
            if k.load(std::sync::atomic::Ordering::SeqCst) {
                Reply::status(200)
            } else {
                Reply::status(200).delayed(Duration::from_secs(2))
            }
        })
        .await;
        let db = TestDb::new(b).await;
        let port = free_port();
        let proc1 = Process::start(&db, port, &[]).await;
        let http = reqwest::Client::new();
        let mut ids = HashSet::new();
        for i in 0..60 {
            // Spread over 1.5 s so some are done, some in flight and some not yet due.
            let r = http
                .post(format!("{}/v1/jobs", proc1.base))
                .json(&json!({"target": {"url": rx.url(&format!("/k{i}"))}, "delay": format!("{}ms", i * 25), "timeout": "3s"}))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), StatusCode::CREATED);
            ids.insert(r.json::<serde_json::Value>().await.unwrap()["id"].as_str().unwrap().to_string());
        }
        rx.wait_for(10, Duration::from_secs(10)).await;
        proc1.sigkill();
        killed.store(true, std::sync::atomic::Ordering::SeqCst);
        let before_kill: HashSet<String> = rx
            .requests()
            .iter()
            .map(|r| r.header("herald-delivery-id").unwrap().to_string())
            .collect();
        assert!(before_kill.len() < ids.len(), "every job was already sent; the kill tested nothing");

        let proc2 = Process::start(&db, port, &[]).await;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let seen: HashSet<String> = rx.requests().iter().map(|r| r.header("herald-delivery-id").unwrap().to_string()).collect();
            if seen.is_superset(&ids) {
                break;
            }
            assert!(Instant::now() < deadline, "{} of {} jobs reached the receiver", seen.len(), ids.len());
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let mut counts: HashMap<String, usize> = HashMap::new();
        for r in rx.requests() {
            *counts.entry(r.header("herald-delivery-id").unwrap().to_string()).or_default() += 1;
        }
        for (id, n) in &counts {
            assert!(ids.contains(id), "unknown delivery id {id}");
            if *n > 1 {
                assert!(before_kill.contains(id), "job {id} was called {n} times but was not in flight at the kill");
            }
        }
        // Every job ends succeeded.
        let deadline = Instant::now() + Duration::from_secs(30);
        for id in &ids {
            loop {
                let job: serde_json::Value = http.get(format!("{}/v1/jobs/{id}", proc2.base)).send().await.unwrap().json().await.unwrap();
                if job["state"] == "succeeded" {
                    break;
                }
                assert!(Instant::now() < deadline, "job {id} stuck: {job}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }

    async fn graceful_shutdown_gives_leases_back(b: Backend) {
        let rx = Receiver::with(|n, _| {
            if n == 0 { Reply::status(200).delayed(Duration::from_secs(5)) } else { Reply::status(200) }
        })
        .await;
        let server = TestServer::start_with(b, |c| {
            c.engine.shutdown_grace = Duration::from_millis(200);
            c.engine.lease_grace_ms = 60_000;
        })
        .await;
        let id = server.create_job(json!({"target": {"url": rx.url("/slow")}, "timeout": "10s"})).await;
        rx.wait_for(1, Duration::from_secs(5)).await;
        let db = server.stop().await;
        // Without the release, the lease (10 s + 60 s) would hold the job for over a minute.
        let t = now_ms();
        let server = TestServer::start_on(db, |_| {}).await;
        let got = rx.wait_for(2, Duration::from_secs(5)).await;
        assert!(got[1].at_ms - t < 6_000);
        assert_eq!(got[1].header("herald-delivery-id"), Some(id.as_str()));
        // The interrupted attempt's number is used again.
        assert_eq!(got[1].header("herald-attempt"), Some("1"));
        let job = server.wait_state(&id, "succeeded").await;
        assert_eq!(job["attempts"], 1);
    }

    async fn graceful_shutdown_lets_calls_finish(b: Backend) {
        let rx = Receiver::with(|_, _| Reply::status(200).delayed(Duration::from_millis(500))).await;
        let server = TestServer::start(b).await;
        let id = server.create_job(json!({"target": {"url": rx.url("/x")}})).await;
        rx.wait_for(1, Duration::from_secs(5)).await;
        let db = server.stop().await;
        let server = TestServer::start_on(db, |c| c.run_workers = false).await;
        let (_, job) = server.get(&format!("/v1/jobs/{id}")).await;
        assert_eq!(job["state"], "succeeded", "{job}");
    }
}

/// Two nodes on one PostgreSQL database share the work: every job is called exactly once
/// while leases hold, whichever node accepted it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_nodes_on_one_postgres_share_the_work() {
    if !postgres_available().await {
        return;
    }
    let rx = Receiver::start().await;
    let db = TestDb::new(Backend::Postgres).await;
    let a = TestServer::start_on(db.clone(), |c| c.engine.claim_batch = 8).await;
    let b = TestServer::start_on(db, |c| c.engine.claim_batch = 8).await;
    let mut ids = HashSet::new();
    for i in 0..200 {
        let node = if i % 2 == 0 { &a } else { &b };
        ids.insert(
            node.create_job(
                json!({"target": {"url": rx.url("/n")}, "delay": format!("{}ms", (i % 20) * 50)}),
            )
            .await,
        );
    }
    rx.wait_for(200, Duration::from_secs(20)).await;
    rx.quiet_for(Duration::from_millis(500)).await;
    let mut counts: HashMap<String, usize> = HashMap::new();
    for r in rx.requests() {
        *counts
            .entry(r.header("herald-delivery-id").unwrap().to_string())
            .or_default() += 1;
    }
    assert_eq!(counts.len(), 200);
    assert!(
        counts.values().all(|n| *n == 1),
        "some job was called twice"
    );
    assert_eq!(counts.keys().cloned().collect::<HashSet<_>>(), ids);
}

/// A job accepted by an API-only node is fired on time by a worker-only node: the insert
/// wakes the other node through PostgreSQL notifications, not by polling.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_node_wakes_worker_node_through_postgres() {
    if !postgres_available().await {
        return;
    }
    let rx = Receiver::start().await;
    let db = TestDb::new(Backend::Postgres).await;
    let api = TestServer::start_on(db.clone(), |c| c.run_workers = false).await;
    let _worker = TestServer::start_on(db, |_| {}).await;
    // Let the worker go idle (its safety re-check is 30 s away).
    tokio::time::sleep(Duration::from_millis(300)).await;
    let due = now_ms() + 400;
    api.create_job(json!({"target": {"url": rx.url("/w")}, "deliver_at": rfc3339(due)}))
        .await;
    let got = rx.wait_for(1, Duration::from_secs(10)).await;
    let late = got[0].at_ms - due;
    assert!((0..1_000).contains(&late), "lateness {late} ms");
}
