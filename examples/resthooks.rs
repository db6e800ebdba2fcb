//! REST Hooks in your own axum app, backed by Herald's engine and an embedded SQLite store.
//!
//! ```text
//! cargo run --example resthooks
//! # subscribe user 1 to post_created
//! curl -s localhost:3000/hooks/subscribe -d '{"user_id":1,"event":"post_created","target_url":"https://example.com/hook"}'
//! # create a post: the app notifies the subscribers
//! curl -s localhost:3000/posts -d '{"user_id":1,"title":"hello"}'
//! ```
//!
//! Deliveries are durable (they survive a restart), signed with Standard Webhooks headers,
//! retried 5 s × 3ⁿ, and a `410 Gone` unsubscribes the target.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use herald::compat::resthooks::RestHooks;
use herald::embed::Embedded;
use herald::Config;
use serde::{Deserialize, Serialize};

#[derive(Serialize, Deserialize)]
struct Post {
    user_id: i64,
    title: String,
}

async fn create_post(
    State(hooks): State<RestHooks>,
    Json(post): Json<Post>,
) -> Result<StatusCode, (StatusCode, String)> {
    // ... store the post in your own database, then:
    hooks
        .notify(post.user_id, "post_created", &post)
        .await
        .map_err(|e| (StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(StatusCode::CREATED)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt().with_env_filter("info").init();
    let herald = Embedded::start(Config::sqlite("herald-example-data")).await?;
    let hooks = herald.resthooks();
    let app = Router::new()
        .route("/posts", post(create_post))
        .with_state(hooks.clone())
        .nest("/hooks", hooks.router());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:3000").await?;
    println!("listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app)
        .with_graceful_shutdown(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    herald.shutdown().await;
    Ok(())
}
