//! A PostgreSQL outage loses nothing: while the database is unreachable, requests are
//! refused with 503 (nothing is half-accepted), and work accepted before the outage is
//! delivered once it returns.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use herald::store::Database;
use reqwest::StatusCode;
use serde_json::json;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

/// A TCP proxy to PostgreSQL that can be cut (open connections dropped, new ones refused)
/// and restored.
struct Proxy {
    port: u16,
    up: Arc<AtomicBool>,
    conns: Arc<Mutex<Vec<AbortHandle>>>,
}

impl Proxy {
    async fn start(upstream: String) -> Proxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let up = Arc::new(AtomicBool::new(true));
        let conns: Arc<Mutex<Vec<AbortHandle>>> = Arc::default();
        let (u, c) = (up.clone(), conns.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if !u.load(Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let upstream = upstream.clone();
                let task = tokio::spawn(async move {
                    if let Ok(mut server) = TcpStream::connect(&upstream).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
                c.lock().unwrap().push(task.abort_handle());
            }
        });
        Proxy { port, up, conns }
    }

    fn cut(&self) {
        self.up.store(false, Ordering::SeqCst);
        for c in self.conns.lock().unwrap().drain(..) {
            c.abort();
        }
    }

    fn restore(&self) {
        self.up.store(true, Ordering::SeqCst);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_outage_refuses_new_work_and_keeps_accepted_work() {
    if !postgres_available().await {
        return;
    }
    let mut db = TestDb::new(Backend::Postgres).await;
    let Database::Postgres { url, .. } = &db.database else {
        unreachable!()
    };
    let proxy = Proxy::start("127.0.0.1:5432".into()).await;
    let proxied = url.replacen("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port), 1);
    assert_ne!(&proxied, url, "test URL must point at 127.0.0.1:5432");
    db.database = Database::Postgres {
        url: proxied,
        max_connections: 4,
    };

    let rx = Receiver::start().await;
    let server = TestServer::start_on(db, |_| {}).await;
    let due = now_ms() + 1_500;
    let accepted = server
        .create_job(json!({"target": {"url": rx.url("/kept")}, "deliver_at": rfc3339(due)}))
        .await;

    proxy.cut();
    let (s, p) = server
        .post("/v1/jobs", json!({"target": {"url": rx.url("/refused")}}))
        .await;
    assert!(
        s == StatusCode::SERVICE_UNAVAILABLE || s == StatusCode::INTERNAL_SERVER_ERROR,
        "{s} {p}"
    );
    assert_eq!(
        s,
        StatusCode::SERVICE_UNAVAILABLE,
        "an outage should read as 503: {p}"
    );
    let (s, _) = server.get("/readyz").await;
    assert_eq!(s, StatusCode::SERVICE_UNAVAILABLE);
    let (s, _) = server.get("/healthz").await;
    assert_eq!(s, StatusCode::OK, "the process itself is fine");

    // The database stays away past the job's due time.
    tokio::time::sleep(Duration::from_millis(2_000)).await;
    assert_eq!(rx.count(), 0);
    proxy.restore();
    let got = rx.wait_for(1, Duration::from_secs(20)).await;
    assert_eq!(got[0].path, "/kept");
    assert_eq!(got[0].header("herald-delivery-id"), Some(accepted.as_str()));
    server.wait_state(&accepted, "succeeded").await;
    rx.quiet_for(Duration::from_millis(300)).await;
    let (_, list) = server.get("/v1/jobs").await;
    assert_eq!(
        list["data"].as_array().unwrap().len(),
        1,
        "the refused job must not exist"
    );
}
