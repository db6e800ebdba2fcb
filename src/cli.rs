//! The command line: `herald serve`, `herald migrate`, `herald bench`. Flags may also be given as
//! `HERALD_*` environment variables or in a `.env` file in the working directory; the
//! gorooster surface also honours the original's own `.env` names (`RUNING_PORT`,
//! `RETRY_MODE`, `RETRY_COUNT`), and the hammer surface hammer's (`HAMMER_HTTP_PORT`,
//! `HAMMER_REST_API_ENABLED`, `HAMMER_DEFAULT_PAGINATION_LIMIT`,
//! `HAMMER_MAX_PAGINATION_LIMIT`, `HAMMER_DEFAULT_SECRET_TOKEN_LENGTH`).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{Config, GoroosterConfig, HammerConfig};
use crate::engine::EngineConfig;
use crate::jobs::Limits;
use crate::store::Database;
use crate::Listeners;

#[derive(Parser, Debug)]
#[command(
    name = "herald",
    version,
    about = "Durable event delivery: scheduled HTTP calls, webhooks and streams"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Run a node: the API and/or the delivery workers.
    Serve(ServeArgs),
    /// Create or upgrade the database schema, then exit.
    Migrate(DbArgs),
    /// Measure a Herald: ingest, delivery, precision, backlog or failures.
    Bench(crate::bench::BenchArgs),
}

#[derive(Args, Debug, Clone)]
pub struct DbArgs {
    /// Directory for the embedded SQLite database (used when no --database-url is given).
    #[arg(long, env = "HERALD_DATA_DIR", default_value = "herald-data")]
    pub data_dir: PathBuf,
    /// PostgreSQL URL (postgres://…); switches from SQLite to PostgreSQL.
    #[arg(long, env = "HERALD_DATABASE_URL")]
    pub database_url: Option<String>,
    /// Most connections to PostgreSQL per node.
    #[arg(long, env = "HERALD_DATABASE_MAX_CONNECTIONS", default_value_t = 16)]
    pub database_max_connections: u32,
}

impl DbArgs {
    pub fn database(&self) -> anyhow::Result<Database> {
        Ok(match &self.database_url {
            Some(url) if url.starts_with("postgres://") || url.starts_with("postgresql://") => {
                Database::Postgres {
                    url: url.clone(),
                    max_connections: self.database_max_connections,
                }
            }
            Some(url) => anyhow::bail!(
                "--database-url must be a postgres:// URL (SQLite is the default: use --data-dir), got {url:?}"
            ),
            None => Database::Sqlite {
                data_dir: self.data_dir.clone(),
            },
        })
    }
}

#[derive(ValueEnum, Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// API and workers.
    All,
    /// Only the HTTP APIs.
    Api,
    /// Only the delivery workers.
    Worker,
}

#[derive(Args, Debug, Clone)]
pub struct ServeArgs {
    #[command(flatten)]
    pub db: DbArgs,
    /// Address of the native API.
    #[arg(long, env = "HERALD_LISTEN", default_value = "127.0.0.1:7700")]
    pub listen: String,
    /// What this node does.
    #[arg(long, env = "HERALD_ROLE", value_enum, default_value = "all")]
    pub role: Role,
    /// Calls in flight at once on this node.
    #[arg(long, env = "HERALD_WORKERS", default_value_t = 64)]
    pub workers: usize,
    /// Default per-attempt timeout of a call.
    #[arg(long, env = "HERALD_DEFAULT_TIMEOUT", default_value = "30s", value_parser = parse_duration)]
    pub default_timeout: i64,
    /// Added to a call's timeout to form its lease: how long a dead node's calls wait before
    /// another node makes them again.
    #[arg(long, env = "HERALD_LEASE_GRACE", default_value = "30s", value_parser = parse_duration)]
    pub lease_grace: i64,
    /// How long before its due time a job may be claimed: the claim's database round trip
    /// then happens before the due time, and the call is made at the due time from memory.
    /// Changes to a job this close to firing are refused as in flight.
    #[arg(long, env = "HERALD_CLAIM_AHEAD", default_value = "20ms", value_parser = parse_claim_ahead)]
    pub claim_ahead: i64,
    /// How long shutdown waits for calls in flight.
    #[arg(long, env = "HERALD_SHUTDOWN_GRACE", default_value = "30s", value_parser = parse_duration)]
    pub shutdown_grace: i64,
    /// Largest request body a job may send, in bytes.
    #[arg(long, env = "HERALD_MAX_BODY_BYTES", default_value_t = 1024 * 1024)]
    pub max_body_bytes: usize,
    /// Response bodies are recorded up to this many bytes.
    #[arg(long, env = "HERALD_RESPONSE_BODY_LIMIT", default_value_t = 64 * 1024)]
    pub response_body_limit: usize,
    /// Serve the gorooster-compatible API on this address (e.g. 127.0.0.1:1407). Also
    /// enabled by gorooster's own RUNING_PORT variable.
    #[arg(long, env = "HERALD_GOROOSTER_LISTEN")]
    pub gorooster_listen: Option<String>,
    /// Serve the hammer-compatible REST API on this address (e.g. 127.0.0.1:8000). Also
    /// enabled by hammer's own HAMMER_HTTP_PORT variable (all interfaces, as hammer did).
    #[arg(long, env = "HERALD_HAMMER_LISTEN")]
    pub hammer_listen: Option<String>,
    /// Log filter, e.g. `info` or `herald=debug`.
    #[arg(long, env = "HERALD_LOG", default_value = "info")]
    pub log: String,
}

fn parse_duration(s: &str) -> Result<i64, String> {
    let ms = crate::duration::parse_millis(s).map_err(|e| e.to_string())?;
    if ms <= 0 {
        return Err("must be positive".into());
    }
    Ok(ms)
}

/// `0s` turns claim-ahead off; more than a minute would hold workers and refuse changes for
/// no gain in precision.
fn parse_claim_ahead(s: &str) -> Result<i64, String> {
    let ms = crate::duration::parse_millis(s).map_err(|e| e.to_string())?;
    if !(0..=60_000).contains(&ms) {
        return Err("must be between 0s and 1m".into());
    }
    Ok(ms)
}

/// Reads a boolean the way Go's `strconv.ParseBool` does (gorooster's `RETRY_MODE`).
fn env_bool(name: &str) -> Option<bool> {
    let v = std::env::var(name).ok()?;
    match v.trim() {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// The hammer surface's settings from hammer's own variables, where set.
fn hammer_config() -> HammerConfig {
    let num = |name: &str| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.trim().parse::<u32>().ok())
            .filter(|n| *n > 0)
    };
    let d = HammerConfig::default();
    HammerConfig {
        default_page: num("HAMMER_DEFAULT_PAGINATION_LIMIT").unwrap_or(d.default_page),
        max_page: num("HAMMER_MAX_PAGINATION_LIMIT").unwrap_or(d.max_page),
        secret_token_length: num("HAMMER_DEFAULT_SECRET_TOKEN_LENGTH")
            .map_or(d.secret_token_length, |n| n.min(256) as usize),
        ..d
    }
}

/// Accepts Go-style listen addresses as gorooster's `RUNING_PORT` does (`:1407` means all
/// interfaces).
pub fn parse_listen(addr: &str) -> anyhow::Result<SocketAddr> {
    let a = addr.trim();
    let full = if a.starts_with(':') {
        format!("0.0.0.0{a}")
    } else {
        a.to_string()
    };
    full.parse()
        .or_else(|_| {
            std::net::ToSocketAddrs::to_socket_addrs(&full)
                .ok()
                .and_then(|mut it| it.next())
                .ok_or(())
        })
        .map_err(|_| anyhow::anyhow!("not a listen address: {addr:?} (use host:port)"))
}

impl ServeArgs {
    pub fn config(&self) -> anyhow::Result<Config> {
        let gorooster = GoroosterConfig {
            retry_mode: env_bool("RETRY_MODE").unwrap_or(false),
            retry_count: std::env::var("RETRY_COUNT")
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(3),
        };
        Ok(Config {
            database: self.db.database()?,
            run_api: self.role != Role::Worker,
            run_workers: self.role != Role::Api,
            engine: EngineConfig {
                workers: self.workers.max(1),
                lease_grace_ms: self.lease_grace,
                claim_ahead_ms: self.claim_ahead,
                response_body_limit: self.response_body_limit,
                shutdown_grace: Duration::from_millis(self.shutdown_grace as u64),
                ..EngineConfig::default()
            },
            limits: Limits {
                max_body_bytes: self.max_body_bytes,
                default_timeout_ms: self.default_timeout,
                ..Limits::default()
            },
            gorooster,
            resthooks: Default::default(),
            hammer: hammer_config(),
        })
    }

    fn hammer_addr(&self) -> Option<String> {
        if let Some(a) = self.hammer_listen.clone().filter(|s| !s.trim().is_empty()) {
            return Some(a);
        }
        if env_bool("HAMMER_REST_API_ENABLED") == Some(false) {
            return None;
        }
        std::env::var("HAMMER_HTTP_PORT")
            .ok()
            .map(|p| p.trim().to_string())
            .filter(|p| !p.is_empty())
            .map(|p| format!(":{p}"))
    }

    fn gorooster_addr(&self) -> Option<String> {
        self.gorooster_listen
            .clone()
            .or_else(|| std::env::var("RUNING_PORT").ok())
            .filter(|s| !s.trim().is_empty())
    }
}

pub fn main() -> anyhow::Result<()> {
    // A missing .env is normal; a malformed one is worth failing for.
    match dotenvy::dotenv() {
        Ok(_) => {}
        Err(e) if e.not_found() => {}
        Err(e) => return Err(e).context("reading .env"),
    }
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    match cli.command {
        Command::Serve(args) => runtime.block_on(serve(args)),
        Command::Migrate(db) => {
            init_tracing("info");
            runtime.block_on(async {
                crate::store::migrate(&db.database()?).await?;
                tracing::info!("migrations applied");
                Ok(())
            })
        }
        Command::Bench(args) => runtime.block_on(crate::bench::main(args)),
    }
}

fn init_tracing(filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt().with_env_filter(filter).try_init();
}

async fn serve(args: ServeArgs) -> anyhow::Result<()> {
    init_tracing(&args.log);
    let config = args.config()?;
    let mut listeners = Listeners::default();
    if config.run_api {
        let addr = parse_listen(&args.listen)?;
        listeners.api = Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("binding the API to {addr}"))?,
        );
        if let Some(h) = args.hammer_addr() {
            let addr = parse_listen(&h)?;
            listeners.hammer = Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding the hammer surface to {addr}"))?,
            );
        }
        if let Some(g) = args.gorooster_addr() {
            let addr = parse_listen(&g)?;
            listeners.gorooster = Some(
                tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("binding the gorooster surface to {addr}"))?,
            );
        }
    }
    crate::run(config, listeners, shutdown_signal()).await?;
    Ok(())
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
    tracing::info!("shutting down");
}
