//! The native HTTP API (`/v1`), health endpoints, and the OpenAPI document. Handlers
//! translate between request/response shapes and domain types and call the job service;
//! they hold no business rules of their own.

pub mod extract;
pub mod jobs;
pub mod problem;
pub mod webhooks;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use utoipa::OpenApi;

use crate::jobs::JobService;
use crate::webhooks::WebhookService;
use problem::Problem;

#[derive(Clone)]
pub struct AppState {
    pub jobs: JobService,
    pub webhooks: WebhookService,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Herald",
        description = "Durable event delivery: scheduled HTTP calls with retries and a full attempt history.",
        license(name = "Apache-2.0")
    ),
    paths(
        jobs::create_job,
        jobs::list_jobs,
        jobs::get_job,
        jobs::get_job_by_key,
        jobs::update_job,
        jobs::cancel_job,
        jobs::retry_job,
        jobs::list_attempts,
        webhooks::create_topic,
        webhooks::list_topics,
        webhooks::get_topic,
        webhooks::update_topic,
        webhooks::delete_topic,
        webhooks::create_subscription,
        webhooks::list_subscriptions,
        webhooks::get_subscription,
        webhooks::update_subscription,
        webhooks::delete_subscription,
        webhooks::rotate_secret,
        webhooks::replay,
        webhooks::publish,
        webhooks::list_messages,
        webhooks::get_message,
        webhooks::list_deliveries,
        webhooks::get_delivery,
        webhooks::delivery_attempts,
        webhooks::retry_delivery,
        healthz,
        readyz,
    ),
    tags((name = "jobs", description = "One outbound HTTP call each, at or after a time, under a retry policy"),
        (name = "webhooks", description = "Topics, push subscriptions and signed fan-out (Standard Webhooks v1); each delivery is a job"))
)]
pub struct ApiDoc;

/// The OpenAPI document as served at `/openapi.json` and committed at `docs/openapi.json`.
pub fn openapi_json() -> String {
    ApiDoc::openapi()
        .to_pretty_json()
        .expect("the OpenAPI document serialises")
}

pub fn router(state: AppState) -> Router {
    use axum::routing::post;
    Router::new()
        .route("/v1/jobs", post(jobs::create_job).get(jobs::list_jobs))
        .route(
            "/v1/jobs/{id}",
            get(jobs::get_job)
                .patch(jobs::update_job)
                .delete(jobs::cancel_job),
        )
        .route("/v1/jobs/by-key/{key}", get(jobs::get_job_by_key))
        .route("/v1/jobs/{id}/retry", post(jobs::retry_job))
        .route("/v1/jobs/{id}/attempts", get(jobs::list_attempts))
        .route(
            "/v1/topics",
            post(webhooks::create_topic).get(webhooks::list_topics),
        )
        .route(
            "/v1/topics/{topic}",
            get(webhooks::get_topic)
                .patch(webhooks::update_topic)
                .delete(webhooks::delete_topic),
        )
        .route(
            "/v1/topics/{topic}/subscriptions",
            post(webhooks::create_subscription).get(webhooks::list_subscriptions),
        )
        .route(
            "/v1/topics/{topic}/messages",
            post(webhooks::publish).get(webhooks::list_messages),
        )
        .route(
            "/v1/subscriptions/{id}",
            get(webhooks::get_subscription)
                .patch(webhooks::update_subscription)
                .delete(webhooks::delete_subscription),
        )
        .route(
            "/v1/subscriptions/{id}/rotate-secret",
            post(webhooks::rotate_secret),
        )
        .route("/v1/subscriptions/{id}/replay", post(webhooks::replay))
        .route("/v1/messages/{id}", get(webhooks::get_message))
        .route("/v1/deliveries", get(webhooks::list_deliveries))
        .route("/v1/deliveries/{id}", get(webhooks::get_delivery))
        .route(
            "/v1/deliveries/{id}/attempts",
            get(webhooks::delivery_attempts),
        )
        .route("/v1/deliveries/{id}/retry", post(webhooks::retry_delivery))
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route(
            "/openapi.json",
            get(|| async {
                (
                    [(axum::http::header::CONTENT_TYPE, "application/json")],
                    openapi_json(),
                )
            }),
        )
        .fallback(|| async { Problem::new(StatusCode::NOT_FOUND, "not-found", "no such route") })
        .method_not_allowed_fallback(|| async {
            Problem::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method-not-allowed",
                "method not allowed on this route",
            )
        })
        .with_state(state)
}

#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct Health {
    pub status: &'static str,
}

/// The process is up.
#[utoipa::path(get, path = "/healthz", tag = "health", responses((status = 200, body = Health)))]
pub async fn healthz() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// The database is reachable.
#[utoipa::path(get, path = "/readyz", tag = "health",
    responses((status = 200, body = Health), (status = 503, body = Problem, content_type = "application/problem+json")))]
pub async fn readyz(State(state): State<AppState>) -> axum::response::Response {
    match state.jobs.store().ping().await {
        Ok(()) => Json(Health { status: "ready" }).into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "readiness check failed");
            Problem::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "database-unavailable",
                "the database is unreachable",
            )
            .into_response()
        }
    }
}
