//! Herald as a library inside someone else's process: [`Embedded::start`] opens the store and
//! runs the delivery engine in the background, and hands out the services a host application
//! calls directly — the webhook service and REST Hooks (a router to mount, and `notify`).
//! Deliveries made this way are the same durable jobs as on a `herald serve` node, and a
//! `herald serve` node on the same database sees them.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::clock::{Clock, SystemClock};
use crate::compat::resthooks::RestHooks;
use crate::engine::{Engine, Waker};
use crate::jobs::JobService;
use crate::webhooks::WebhookService;
use crate::{store, Config, RunError};

/// A running embedded Herald. Dropping it without [`shutdown`](Self::shutdown) stops the
/// engine abruptly; nothing is lost (leases expire and the work is made again), but calls in
/// flight are cut.
pub struct Embedded {
    jobs: JobService,
    webhooks: WebhookService,
    config: Config,
    token: CancellationToken,
    engine: Option<tokio::task::JoinHandle<()>>,
}

impl Embedded {
    /// Opens (and migrates) the configured database and, when `config.run_workers` is set,
    /// starts the engine.
    pub async fn start(config: Config) -> Result<Embedded, RunError> {
        let clock: Arc<dyn Clock> = Arc::new(SystemClock);
        let store = store::connect(&config.database).await?;
        tracing::info!(backend = store.backend(), "database ready");
        let waker = Waker::new(config.engine.claim_ahead_ms);
        let jobs = JobService::new(
            store.clone(),
            clock.clone(),
            waker.clone(),
            config.limits.clone(),
        );
        let webhooks = WebhookService::new(jobs.clone(), waker.clone());
        let token = CancellationToken::new();
        let engine = if config.run_workers {
            let engine = Engine::new(store, clock, waker, config.engine.clone())?;
            Some(tokio::spawn(engine.run(token.clone())))
        } else {
            None
        };
        Ok(Embedded {
            jobs,
            webhooks,
            config,
            token,
            engine,
        })
    }

    pub fn jobs(&self) -> &JobService {
        &self.jobs
    }

    pub fn webhooks(&self) -> &WebhookService {
        &self.webhooks
    }

    /// REST Hooks with the configured policy: `router()` to mount, `notify()` to publish.
    pub fn resthooks(&self) -> RestHooks {
        RestHooks::new(self.webhooks.clone(), self.config.resthooks.clone())
    }

    /// Stops the engine: calls in flight get the configured grace, unfinished leases are
    /// given back.
    pub async fn shutdown(mut self) {
        self.token.cancel();
        if let Some(h) = self.engine.take() {
            let _ = h.await;
        }
    }
}

impl Drop for Embedded {
    fn drop(&mut self) {
        self.token.cancel();
    }
}
