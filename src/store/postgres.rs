//! PostgreSQL store: several stateless Herald nodes share one database. Claims use
//! `FOR UPDATE SKIP LOCKED` so nodes never wait on each other's rows, and every change sends
//! a `NOTIFY` so that a job created through one node wakes the dispatchers of all.

use std::time::Duration;

use sqlx::postgres::{PgListener, PgPoolOptions};
use sqlx::PgPool;

use super::StoreError;

pub const WAKE_CHANNEL: &str = "herald_wake";

pub struct PgStore {
    pub(super) write: PgPool,
    pub(super) read: PgPool,
}

impl PgStore {
    pub async fn connect(url: &str, max_connections: u32) -> Result<Self, StoreError> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections.max(2))
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        sqlx::migrate!("./migrations/postgres").run(&pool).await?;
        Ok(PgStore {
            write: pool.clone(),
            read: pool,
        })
    }

    pub(super) async fn listen(&self) -> Result<tokio::sync::mpsc::Receiver<()>, StoreError> {
        let mut listener = PgListener::connect_with(&self.write).await?;
        listener.listen(WAKE_CHANNEL).await?;
        let (tx, rx) = tokio::sync::mpsc::channel(1);
        tokio::spawn(async move {
            loop {
                // `try_recv` reconnects by itself after a connection loss and yields `None`
                // once for it; a wake-up then is right, since notifications may have been missed.
                match listener.try_recv().await {
                    Ok(_) => {}
                    Err(e) => {
                        tracing::warn!(error = %e, "postgres listener failed; retrying");
                        tokio::time::sleep(Duration::from_millis(500)).await;
                    }
                }
                match tx.try_send(()) {
                    Ok(()) | Err(tokio::sync::mpsc::error::TrySendError::Full(_)) => {}
                    Err(tokio::sync::mpsc::error::TrySendError::Closed(_)) => return,
                }
            }
        });
        Ok(rx)
    }
}

super::sql::sql_store!(
    PgStore,
    sqlx::Postgres,
    backend = "postgres",
    claim_lock = " FOR UPDATE SKIP LOCKED",
    notify = "SELECT pg_notify('herald_wake', '')",
    durable_begin = "BEGIN",
    relaxed_begin = "BEGIN; SET LOCAL synchronous_commit = off"
);

super::webhooks::webhook_store!(PgStore, sqlx::Postgres, share_lock = " FOR SHARE");

impl PgStore {
    pub(super) async fn changes(
        &self,
    ) -> Result<Option<tokio::sync::mpsc::Receiver<()>>, StoreError> {
        self.listen().await.map(Some)
    }
}
