//! Test harness shared by the integration tests: a real Herald node on port 0, a capturing
//! receiver for its outbound calls, and an isolated database per test on either store.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use herald::store::Database;
use herald::{Config, Listeners};
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, Notify};

pub const DEFAULT_PG_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

fn on_ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true" || v == "1")
}

pub fn pg_base_url() -> String {
    std::env::var("HERALD_TEST_DATABASE_URL").unwrap_or_else(|_| DEFAULT_PG_URL.into())
}

/// Whether PostgreSQL tests can run. On CI an unreachable server is a failure, never a skip.
pub async fn postgres_available() -> bool {
    let url = pg_base_url();
    let attempt = tokio::time::timeout(Duration::from_secs(5), sqlx::PgPool::connect(&url)).await;
    match attempt {
        Ok(Ok(pool)) => {
            pool.close().await;
            true
        }
        other => {
            let why = match other {
                Ok(Err(e)) => e.to_string(),
                _ => "timed out".into(),
            };
            if on_ci() {
                panic!("PostgreSQL at {url} is unreachable on CI: {why}");
            }
            eprintln!("skipping: PostgreSQL at {url} is unreachable ({why}); set HERALD_TEST_DATABASE_URL");
            false
        }
    }
}

/// An isolated database: a temporary directory for SQLite, a fresh schema for PostgreSQL.
#[derive(Clone)]
pub struct TestDb {
    pub database: Database,
    _dir: Option<Arc<tempfile::TempDir>>,
}

impl TestDb {
    pub async fn new(backend: Backend) -> TestDb {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().expect("tempdir");
                TestDb {
                    database: Database::Sqlite {
                        data_dir: dir.path().to_path_buf(),
                    },
                    _dir: Some(Arc::new(dir)),
                }
            }
            Backend::Postgres => {
                let base = pg_base_url();
                let schema = format!("herald_t_{}", uuid::Uuid::now_v7().simple());
                let pool = sqlx::PgPool::connect(&base)
                    .await
                    .expect("connect to postgres");
                sqlx::query(&format!("CREATE SCHEMA {schema}"))
                    .execute(&pool)
                    .await
                    .expect("create schema");
                pool.close().await;
                let sep = if base.contains('?') { '&' } else { '?' };
                TestDb {
                    database: Database::Postgres {
                        url: format!("{base}{sep}options=-c%20search_path%3D{schema}"),
                        max_connections: 8,
                    },
                    _dir: None,
                }
            }
        }
    }

    pub fn url_or_dir_args(&self) -> Vec<String> {
        match &self.database {
            Database::Sqlite { data_dir } => {
                vec!["--data-dir".into(), data_dir.display().to_string()]
            }
            Database::Postgres { url, .. } => vec!["--database-url".into(), url.clone()],
        }
    }
}

/// Runs one test body on both stores: `name::sqlite` and `name::postgres`.
#[macro_export]
macro_rules! both_stores {
    ($(async fn $name:ident($b:ident: Backend) $body:block)*) => {
        $(
            mod $name {
                #[allow(unused_imports)]
                use super::*;
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn sqlite() {
                    let $b = Backend::Sqlite;
                    $body
                }
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn postgres() {
                    if !postgres_available().await {
                        return;
                    }
                    let $b = Backend::Postgres;
                    $body
                }
            }
        )*
    };
}

/// Settings tests usually want: short leases and a short shutdown grace.
pub fn test_config(db: &TestDb) -> Config {
    let mut c = Config::sqlite(".");
    c.database = db.database.clone();
    c.engine.lease_grace_ms = 1_000;
    c.engine.shutdown_grace = Duration::from_secs(2);
    c
}

/// A Herald node running in this process.
pub struct TestServer {
    pub base: String,
    pub gorooster: String,
    pub hammer: String,
    pub db: TestDb,
    pub http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    handle: Option<tokio::task::JoinHandle<Result<(), herald::RunError>>>,
}

impl TestServer {
    pub async fn start(backend: Backend) -> TestServer {
        Self::start_on(TestDb::new(backend).await, |_| {}).await
    }

    pub async fn start_with(backend: Backend, f: impl FnOnce(&mut Config)) -> TestServer {
        Self::start_on(TestDb::new(backend).await, f).await
    }

    pub async fn start_on(db: TestDb, f: impl FnOnce(&mut Config)) -> TestServer {
        let mut config = test_config(&db);
        f(&mut config);
        let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gorooster = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hammer = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let hammer_base = format!("http://{}", hammer.local_addr().unwrap());
        let base = format!("http://{}", api.local_addr().unwrap());
        let gorooster_base = format!("http://{}", gorooster.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let handle = tokio::spawn(herald::run(
            config,
            Listeners {
                api: Some(api),
                gorooster: Some(gorooster),
                hammer: Some(hammer),
            },
            async move {
                let _ = rx.await;
            },
        ));
        let server = TestServer {
            base,
            gorooster: gorooster_base,
            hammer: hammer_base,
            db,
            http: reqwest::Client::new(),
            shutdown: Some(tx),
            handle: Some(handle),
        };
        server.wait_ready().await;
        server
    }

    async fn wait_ready(&self) {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if let Ok(r) = self.http.get(self.url("/readyz")).send().await {
                if r.status().is_success() {
                    return;
                }
            }
            if let Some(h) = &self.handle {
                assert!(!h.is_finished(), "server exited during start-up");
            }
            assert!(Instant::now() < deadline, "server did not become ready");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Graceful shutdown; returns the database so a test can start another node on it.
    pub async fn stop(mut self) -> TestDb {
        self.stop_inner().await;
        self.db.clone()
    }

    async fn stop_inner(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(h) = self.handle.take() {
            h.await.expect("server task").expect("server result");
        }
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .http
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        into_json(r).await
    }

    pub async fn patch(&self, path: &str, body: Value) -> (StatusCode, Value) {
        let r = self
            .http
            .patch(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        into_json(r).await
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        let r = self.http.get(self.url(path)).send().await.unwrap();
        into_json(r).await
    }

    pub async fn delete(&self, path: &str) -> (StatusCode, Value) {
        let r = self.http.delete(self.url(path)).send().await.unwrap();
        into_json(r).await
    }

    /// Creates a job and returns its id, asserting 201.
    pub async fn create_job(&self, body: Value) -> String {
        let (status, job) = self.post("/v1/jobs", body).await;
        assert_eq!(status, StatusCode::CREATED, "create failed: {job}");
        job["id"].as_str().unwrap().to_string()
    }

    /// Polls a job until `pred` holds.
    pub async fn wait_job(&self, id: &str, what: &str, pred: impl Fn(&Value) -> bool) -> Value {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let (_, job) = self.get(&format!("/v1/jobs/{id}")).await;
            if pred(&job) {
                return job;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}: {job}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    pub async fn wait_state(&self, id: &str, state: &str) -> Value {
        self.wait_job(id, state, |j| j["state"] == state).await
    }

    pub async fn attempts(&self, id: &str) -> Vec<Value> {
        let (s, v) = self.get(&format!("/v1/jobs/{id}/attempts?limit=500")).await;
        assert_eq!(s, StatusCode::OK, "{v}");
        v["data"].as_array().unwrap().clone()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

pub async fn into_json(r: reqwest::Response) -> (StatusCode, Value) {
    let status = StatusCode::from_u16(r.status().as_u16()).unwrap();
    let bytes = r.bytes().await.unwrap();
    let v = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
    };
    (status, v)
}

pub fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

pub fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).unwrap().to_string()
}

/// One request as the receiver saw it.
#[derive(Debug, Clone)]
pub struct Captured {
    pub method: String,
    pub path: String,
    pub headers: HeaderMap,
    pub body: Bytes,
    pub at_ms: i64,
}

impl Captured {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or(Value::Null)
    }
}

/// How the receiver answers a request.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: String,
    pub delay: Duration,
}

impl Reply {
    pub fn status(status: u16) -> Reply {
        Reply {
            status,
            headers: vec![],
            body: String::new(),
            delay: Duration::ZERO,
        }
    }
    pub fn delayed(mut self, d: Duration) -> Reply {
        self.delay = d;
        self
    }
    pub fn header(mut self, k: &str, v: &str) -> Reply {
        self.headers.push((k.into(), v.into()));
        self
    }
    pub fn body(mut self, b: &str) -> Reply {
        self.body = b.into();
        self
    }
}

type Responder = Arc<dyn Fn(usize, &Captured) -> Reply + Send + Sync>;

/// A capturing HTTP receiver on port 0. Every request is recorded before it is answered.
#[derive(Clone)]
pub struct Receiver {
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<Captured>>>,
    arrived: Arc<Notify>,
}

impl Receiver {
    /// Answers 200 to everything.
    pub async fn start() -> Receiver {
        Self::with(|_, _| Reply::status(200)).await
    }

    /// Answers with `f(n, request)`, where `n` counts requests from 0.
    pub async fn with(f: impl Fn(usize, &Captured) -> Reply + Send + Sync + 'static) -> Receiver {
        let responder: Responder = Arc::new(f);
        let seen = Arc::new(Mutex::new(Vec::new()));
        let arrived = Arc::new(Notify::new());
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state = (seen.clone(), arrived.clone(), responder);
        let app = axum::Router::new().fallback(
            move |method: axum::http::Method,
                  uri: axum::http::Uri,
                  headers: HeaderMap,
                  body: Bytes| {
                let (seen, arrived, responder) = state.clone();
                async move {
                    let captured = Captured {
                        method: method.to_string(),
                        path: uri
                            .path_and_query()
                            .map(|p| p.to_string())
                            .unwrap_or_default(),
                        headers,
                        body,
                        at_ms: now_ms(),
                    };
                    let n = {
                        let mut s = seen.lock().unwrap();
                        s.push(captured.clone());
                        s.len() - 1
                    };
                    arrived.notify_waiters();
                    let reply = responder(n, &captured);
                    if !reply.delay.is_zero() {
                        tokio::time::sleep(reply.delay).await;
                    }
                    let mut resp =
                        (StatusCode::from_u16(reply.status).unwrap(), reply.body).into_response();
                    for (k, v) in reply.headers {
                        resp.headers_mut().insert(
                            axum::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                            v.parse().unwrap(),
                        );
                    }
                    resp
                }
            },
        );
        tokio::spawn(async move {
            axum::serve(listener, app).await.unwrap();
        });
        Receiver {
            addr,
            seen,
            arrived,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.addr, path)
    }

    pub fn requests(&self) -> Vec<Captured> {
        self.seen.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }

    /// Waits until at least `n` requests have arrived.
    pub async fn wait_for(&self, n: usize, within: Duration) -> Vec<Captured> {
        let deadline = Instant::now() + within;
        loop {
            let notified = self.arrived.notified();
            if self.count() >= n {
                return self.requests();
            }
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(
                !left.is_zero(),
                "receiver got {} requests, expected {n}",
                self.count()
            );
            let _ = tokio::time::timeout(left.min(Duration::from_millis(100)), notified).await;
        }
    }

    /// Asserts that nothing more arrives for `d`, returning everything seen.
    pub async fn quiet_for(&self, d: Duration) -> Vec<Captured> {
        let before = self.count();
        tokio::time::sleep(d).await;
        let after = self.requests();
        assert_eq!(after.len(), before, "unexpected extra requests");
        after
    }
}
