//! Herald: durable event delivery on one engine.
//!
//! The crate is both the server (`herald serve`) and an embeddable library: [`run`] starts a
//! node on listeners the caller bound, and stops it when the `shutdown` future completes.

pub mod api;
pub mod bench;
pub mod cli;
pub mod clock;
pub mod compat;
pub mod config;
pub mod domain;
pub mod duration;
pub mod embed;
pub mod engine;
pub mod jobs;
pub mod store;
pub mod webhooks;

use std::future::Future;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

pub use config::Config;

/// The sockets a node serves on. Each compatibility surface has its own, so existing
/// clients only change a base URL.
#[derive(Debug, Default)]
pub struct Listeners {
    pub api: Option<TcpListener>,
    pub gorooster: Option<TcpListener>,
    /// allisson/hammer's REST API.
    pub hammer: Option<TcpListener>,
}

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Store(#[from] store::StoreError),
    #[error("cannot build the HTTP client: {0}")]
    HttpClient(#[from] reqwest::Error),
    #[error("server error: {0}")]
    Serve(#[from] std::io::Error),
}

/// Serves `app` on `listener` until `token` is cancelled, as one of the node's tasks.
fn serve_on(
    tasks: &mut tokio::task::JoinSet<std::io::Result<()>>,
    listener: TcpListener,
    app: axum::Router,
    token: &CancellationToken,
    what: &str,
) -> std::io::Result<()> {
    tracing::info!(addr = %listener.local_addr()?, "{what} listening");
    let token = token.clone();
    tasks.spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(token.cancelled_owned())
            .await
    });
    Ok(())
}

/// Runs a node until `shutdown` completes: migrates the database, serves the APIs on the
/// given listeners (when the API role is on), and runs the delivery engine (when the worker
/// role is on). On shutdown the listeners stop accepting, calls in flight get the configured
/// grace period, and unfinished leases are given back.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), RunError> {
    // The same store, services and engine a library host gets; this adds the listeners.
    let node = embed::Embedded::start(config.clone()).await?;
    let (jobs, webhooks) = (node.jobs().clone(), node.webhooks().clone());
    let token = CancellationToken::new();
    {
        let token = token.clone();
        tokio::spawn(async move {
            shutdown.await;
            token.cancel();
        });
    }

    let mut tasks = tokio::task::JoinSet::new();
    if config.run_api {
        let limit = axum::extract::DefaultBodyLimit::max(config.max_request_bytes());
        let layers = tower::ServiceBuilder::new()
            .layer(CatchPanicLayer::new())
            .layer(TraceLayer::new_for_http())
            .layer(limit);
        if let Some(listener) = listeners.api {
            let hooks = node.resthooks();
            let app = api::router(api::AppState {
                jobs: jobs.clone(),
                webhooks: webhooks.clone(),
            })
            .nest("/hooks", hooks.router())
            .layer(layers.clone());
            serve_on(&mut tasks, listener, app, &token, "native API")?;
        }
        if let Some(listener) = listeners.hammer {
            let app = compat::hammer::router(webhooks.clone(), config.hammer.clone())
                .layer(layers.clone());
            serve_on(&mut tasks, listener, app, &token, "hammer surface")?;
        }
        if let Some(listener) = listeners.gorooster {
            let app =
                compat::gorooster::router(jobs.clone(), config.gorooster.clone()).layer(layers);
            serve_on(&mut tasks, listener, app, &token, "gorooster surface")?;
        }
    }
    let servers = async {
        let mut result = Ok(());
        while let Some(done) = tasks.join_next().await {
            let failed = match done {
                Ok(Ok(())) => continue,
                Ok(Err(e)) => e,
                Err(e) => std::io::Error::other(e),
            };
            token.cancel();
            result = Err(RunError::Serve(failed));
        }
        result
    };
    // The engine drains beside the listeners: calls in flight get their grace while the
    // APIs stop accepting.
    let engine = async {
        token.cancelled().await;
        node.shutdown().await;
    };
    let (result, ()) = tokio::join!(servers, engine);
    result
}
