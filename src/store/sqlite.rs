//! Embedded SQLite store: the default, for one node. Writes go through a single-connection
//! pool so they queue in-process instead of failing with `SQLITE_BUSY`; reads use their own
//! pool and run beside writes thanks to WAL. `synchronous=FULL`: an accepted job survives a
//! power cut, not only a process crash.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::SqlitePool;

use tokio_util::sync::{CancellationToken, DropGuard};

use super::StoreError;

/// How often the WAL is copied back into the database file. Passive checkpoints never wait
/// for or block readers and writers; this only bounds how large the WAL grows.
const CHECKPOINT_EVERY: Duration = Duration::from_millis(500);

async fn checkpoint_loop(pool: SqlitePool, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(CHECKPOINT_EVERY) => {}
            _ = stop.cancelled() => break,
        }
        if let Err(e) = sqlx::query("PRAGMA wal_checkpoint(PASSIVE)")
            .execute(&pool)
            .await
        {
            tracing::warn!(error = %e, "WAL checkpoint failed");
        }
    }
    // A last full checkpoint leaves a compact database file behind a clean shutdown.
    let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)")
        .execute(&pool)
        .await;
    pool.close().await;
}

pub struct SqliteStore {
    pub(super) write: SqlitePool,
    pub(super) read: SqlitePool,
    /// Stops the checkpoint task when the store goes away.
    _checkpoints: DropGuard,
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
        // Checkpoints are taken off the write connection: an automatic checkpoint runs inside
        // the commit that crosses the threshold and fsyncs the database file there, stalling
        // every claim queued behind it for tens of milliseconds.
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .connect_with(opts.clone().pragma("wal_autocheckpoint", "0"))
            .await?;
        sqlx::migrate!("./migrations/sqlite").run(&write).await?;
        let checkpointer = SqlitePoolOptions::new()
            .max_connections(1)
            .connect_with(opts.clone())
            .await?;
        let stop = CancellationToken::new();
        tokio::spawn(checkpoint_loop(checkpointer, stop.clone()));
        let read = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts.read_only(true))
            .await?;
        Ok(SqliteStore {
            write,
            read,
            _checkpoints: stop.drop_guard(),
        })
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
