//! Runtime configuration of a Herald node, independent of where it came from (flags,
//! `HERALD_*` variables, `.env`, or a test).

use crate::engine::EngineConfig;
use crate::jobs::Limits;
use crate::store::Database;

#[derive(Debug, Clone)]
pub struct Config {
    pub database: Database,
    /// Serve the HTTP APIs on this node.
    pub run_api: bool,
    /// Run the delivery engine on this node.
    pub run_workers: bool,
    pub engine: EngineConfig,
    pub limits: Limits,
    pub gorooster: GoroosterConfig,
    pub resthooks: RestHooksConfig,
    pub hammer: HammerConfig,
}

/// Delivery policy of REST Hooks subscriptions, named after go-resthooks' `Config`:
/// `InitialRetry` × `RetryMultiplier`ⁿ, `MaxRetry` retries after the first attempt.
#[derive(Debug, Clone)]
pub struct RestHooksConfig {
    pub initial_retry_ms: i64,
    pub retry_multiplier: f64,
    pub max_retries: u32,
    /// go-resthooks had no timeout at all; Herald always has one.
    pub timeout_ms: i64,
}

impl Default for RestHooksConfig {
    fn default() -> Self {
        RestHooksConfig {
            initial_retry_ms: 5_000,
            retry_multiplier: 3.0,
            max_retries: 3,
            timeout_ms: 30_000,
        }
    }
}

/// Settings of the hammer surface, named after its `HAMMER_*` variables.
#[derive(Debug, Clone)]
pub struct HammerConfig {
    /// The Herald namespace hammer's topics live in (hammer has no tenants).
    pub namespace: String,
    /// `HAMMER_DEFAULT_PAGINATION_LIMIT`.
    pub default_page: u32,
    /// `HAMMER_MAX_PAGINATION_LIMIT`.
    pub max_page: u32,
    /// `HAMMER_DEFAULT_SECRET_TOKEN_LENGTH`.
    pub secret_token_length: usize,
}

impl Default for HammerConfig {
    fn default() -> Self {
        HammerConfig {
            namespace: "default".into(),
            default_page: 25,
            max_page: 50,
            secret_token_length: 40,
        }
    }
}

/// Settings of the gorooster surface, named after its `.env` variables.
#[derive(Debug, Clone)]
pub struct GoroosterConfig {
    /// `RETRY_MODE`: retry failed calls.
    pub retry_mode: bool,
    /// `RETRY_COUNT`: total attempts in retry mode.
    pub retry_count: u32,
}

impl Default for GoroosterConfig {
    fn default() -> Self {
        GoroosterConfig {
            retry_mode: false,
            retry_count: 3,
        }
    }
}

impl Config {
    /// A node with every role, on SQLite in `data_dir`, with default limits.
    pub fn sqlite(data_dir: impl Into<std::path::PathBuf>) -> Self {
        Config {
            database: Database::Sqlite {
                data_dir: data_dir.into(),
            },
            run_api: true,
            run_workers: true,
            engine: EngineConfig::default(),
            limits: Limits::default(),
            gorooster: GoroosterConfig::default(),
            resthooks: RestHooksConfig::default(),
            hammer: HammerConfig::default(),
        }
    }

    /// Largest request body the HTTP surfaces read: room for a maximal target body after
    /// JSON or base64 encoding.
    pub fn max_request_bytes(&self) -> usize {
        self.limits.max_body_bytes * 2 + 64 * 1024
    }
}
