//! Embedded SQLite store: the default, for one node. Writes go through a single-connection
//! pool so they queue in-process instead of failing with `SQLITE_BUSY`; reads use their own
//! pool and run beside writes thanks to WAL. `synchronous=FULL`: an accepted job survives a
//! power cut, not only a process crash.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use super::StoreError;

pub struct SqliteStore {
    pub(super) write: SqlitePool,
    pub(super) read: SqlitePool,
}

pub const DB_FILE: &str = "herald.db";

impl SqliteStore {
    pub async fn open(data_dir: &Path) -> Result<Self, StoreError> {
        std::fs::create_dir_all(data_dir).map_err(|source| StoreError::DataDir {
            path: data_dir.display().to_string(),
            source,
        })?;
        let path = data_dir.join(DB_FILE);
        let opts = SqliteConnectOptions::from_str(&format!("sqlite://{}", path.display()))?
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect_with(opts.clone())
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&write).await?;
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts.read_only(true))
            .await?;
        Ok(SqliteStore { write, read })
    }
}

super::sql::sql_store!(
    SqliteStore,
    sqlx::Sqlite,
    backend = "sqlite",
    claim_lock = "",
    notify = "",
    durable_begin = "PRAGMA synchronous = FULL; BEGIN",
    relaxed_begin = "PRAGMA synchronous = NORMAL; BEGIN"
);

super::webhooks::webhook_store!(SqliteStore, sqlx::Sqlite, share_lock = "");

impl SqliteStore {
    /// One process owns a SQLite file, so there is nobody else to hear from.
    pub(super) async fn changes(
        &self,
    ) -> Result<Option<tokio::sync::mpsc::Receiver<()>>, StoreError> {
        Ok(None)
    }
}
