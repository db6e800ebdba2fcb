//! The go-resthooks surface, as a service endpoint (`/hooks/` on the main listener) and as a
//! library: [`RestHooks::router`] mounts in any axum app, [`RestHooks::notify`] is go-resthooks'
//! `Notify(user, event, data)`. Both are thin adapters over the webhook service: a REST Hooks
//! subscription is a push subscription in namespace `user:{user_id}` on topic `{event}`, and a
//! notify is a publish there, so deliveries are durable jobs with signatures and a full
//! history (readable from `/v1/deliveries`) instead of in-memory retries and a lossy channel.
//!
//! Kept from the original: `POST {prefix}/subscribe` → 200 with the subscription JSON
//! (`id`, `user_id`, `event`, `target_url`), `DELETE {prefix}/unsubscribe/{id}` → 200 empty,
//! plain-text errors, 404 for any other method or path, one subscription per (user, event),
//! retries 5 s × 3ⁿ (1 + 3 attempts), 3xx a permanent failure, 410 Gone removes the
//! subscription. Added (the original's TODO): `GET {prefix}/subscriptions?user_id=`,
//! `GET {prefix}/subscriptions/{id}` and `PUT {prefix}/subscriptions/{id}`.

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use rand::Rng;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::config::RestHooksConfig;
use crate::domain::{Invalid, RetryPolicy, SuccessCodes};
use crate::webhooks::model::{Subscription, SubscriptionFilter};
use crate::webhooks::{
    PublishSpec, SubscriptionChange, SubscriptionSpec, WebhookError, WebhookService,
};

/// A REST Hooks subscription as the original's JSON has it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestHookSubscription {
    #[serde(default)]
    pub id: i64,
    pub user_id: i64,
    pub event: String,
    pub target_url: String,
}

/// What a notify did: the message stored and the deliveries it created.
#[derive(Debug, Clone)]
pub struct Notified {
    pub message_id: Uuid,
    pub deliveries: Vec<Uuid>,
}

#[derive(Debug, thiserror::Error)]
pub enum RestHooksError {
    #[error("invalid subscription")]
    NotFound,
    #[error(transparent)]
    Invalid(#[from] Invalid),
    #[error("cannot encode the notification data: {0}")]
    Encode(#[from] serde_json::Error),
    #[error(transparent)]
    Webhook(#[from] WebhookError),
}

/// REST Hooks on Herald's engine and stores.
#[derive(Clone)]
pub struct RestHooks {
    service: WebhookService,
    config: RestHooksConfig,
}

const META_KEY: &str = "resthooks_user_id";

/// The namespace of a REST Hooks user.
pub fn namespace(user_id: i64) -> String {
    format!("user:{user_id}")
}

fn to_view(s: &Subscription) -> Option<RestHookSubscription> {
    let user_id = s.meta.as_ref()?.get(META_KEY)?.as_i64()?;
    Some(RestHookSubscription {
        id: s.id.parse().ok()?,
        user_id,
        event: s.topic.clone(),
        target_url: s.url.clone(),
    })
}

impl RestHooks {
    pub fn new(service: WebhookService, config: RestHooksConfig) -> Self {
        RestHooks { service, config }
    }

    fn policy(&self) -> RetryPolicy {
        RetryPolicy::Exponential {
            max_attempts: self.config.max_retries + 1,
            initial_ms: self.config.initial_retry_ms,
            max_delay_ms: crate::domain::MAX_DELAY_MS,
            multiplier: self.config.retry_multiplier,
            jitter: false,
        }
    }

    /// Creates a subscription, or updates the user's subscription to that event when one
    /// exists (one per user and event) or when `sub.id` names one.
    pub async fn subscribe(
        &self,
        sub: RestHookSubscription,
    ) -> Result<RestHookSubscription, RestHooksError> {
        let ns = namespace(sub.user_id);
        crate::webhooks::model::validate_topic_name(&sub.event, "event")?;
        if sub.id != 0 {
            let existing = self.find(sub.id).await?;
            if existing.user_id == sub.user_id && existing.event == sub.event {
                return self.update(sub.id, None, Some(sub.target_url)).await;
            }
            // Moving a subscription to another user or event: same id, new place.
            self.unsubscribe(sub.id).await?;
            return self.create(&ns, sub.id, &sub).await;
        }
        if let Some(existing) = self.list(sub.user_id, Some(&sub.event)).await?.pop() {
            return self.update(existing.id, None, Some(sub.target_url)).await;
        }
        // Ids are integers in the original's JSON; a random one avoids a shared counter.
        // Below 2^53 so JavaScript clients read them exactly.
        let id = rand::rng().random_range(1..(1i64 << 53));
        self.create(&ns, id, &sub).await
    }

    async fn create(
        &self,
        ns: &str,
        id: i64,
        sub: &RestHookSubscription,
    ) -> Result<RestHookSubscription, RestHooksError> {
        self.service.ensure_topic(ns, &sub.event).await?;
        let created = self
            .service
            .create_subscription(
                ns,
                &sub.event,
                SubscriptionSpec {
                    id: Some(id.to_string()),
                    name: format!("resthooks user {} {}", sub.user_id, sub.event),
                    url: sub.target_url.clone(),
                    retry: Some(self.policy()),
                    timeout_ms: Some(self.config.timeout_ms),
                    success: Some(SuccessCodes(vec![(200, 299)])),
                    fail_codes: Some(SuccessCodes(vec![(300, 399)])),
                    unsubscribe_on_gone: true,
                    meta: Some(serde_json::json!({ META_KEY: sub.user_id })),
                    ..SubscriptionSpec::default()
                },
            )
            .await?;
        to_view(&created).ok_or(RestHooksError::NotFound)
    }

    async fn find_subscription(&self, id: i64) -> Result<Subscription, RestHooksError> {
        match self.service.get_subscription(None, &id.to_string()).await {
            Ok(s) if to_view(&s).is_some() => Ok(s),
            Ok(_) | Err(WebhookError::NotFound(_)) => Err(RestHooksError::NotFound),
            Err(e) => Err(e.into()),
        }
    }

    pub async fn find(&self, id: i64) -> Result<RestHookSubscription, RestHooksError> {
        let s = self.find_subscription(id).await?;
        to_view(&s).ok_or(RestHooksError::NotFound)
    }

    /// A user's subscriptions, optionally to one event.
    pub async fn list(
        &self,
        user_id: i64,
        event: Option<&str>,
    ) -> Result<Vec<RestHookSubscription>, RestHooksError> {
        let mut out = Vec::new();
        let mut filter = SubscriptionFilter {
            namespace: namespace(user_id),
            topic: event.map(str::to_string),
            ..Default::default()
        };
        filter.page.limit = 500;
        loop {
            let page = self.service.list_subscriptions(&filter).await?;
            let full = page.len() == filter.page.limit as usize;
            filter.page.after = page.last().map(|s| s.id.clone());
            out.extend(page.iter().filter_map(to_view));
            if !full {
                return Ok(out);
            }
        }
    }

    /// Changes a subscription's target (and, moving it, its event).
    pub async fn update(
        &self,
        id: i64,
        event: Option<String>,
        target_url: Option<String>,
    ) -> Result<RestHookSubscription, RestHooksError> {
        let current = self.find(id).await?;
        if let Some(e) = event.filter(|e| *e != current.event) {
            self.unsubscribe(id).await?;
            let moved = RestHookSubscription {
                event: e,
                target_url: target_url.unwrap_or(current.target_url),
                ..current
            };
            return self.create(&namespace(moved.user_id), id, &moved).await;
        }
        let s = self
            .service
            .update_subscription(
                &namespace(current.user_id),
                &id.to_string(),
                SubscriptionChange {
                    url: target_url,
                    ..SubscriptionChange::default()
                },
            )
            .await?;
        to_view(&s).ok_or(RestHooksError::NotFound)
    }

    pub async fn unsubscribe(&self, id: i64) -> Result<(), RestHooksError> {
        let s = self.find_subscription(id).await?;
        match self.service.delete_subscription(&s.namespace, &s.id).await {
            Ok(()) => Ok(()),
            Err(WebhookError::NotFound(_)) => Err(RestHooksError::NotFound),
            Err(e) => Err(e.into()),
        }
    }

    /// go-resthooks' `Notify(userId, event, data)`: publishes `data` as JSON to the user's
    /// subscriptions to `event`. Returns once the message and its deliveries are stored; the
    /// calls happen on Herald's engine, outcomes in the deliveries API.
    pub async fn notify<T: Serialize + ?Sized>(
        &self,
        user_id: i64,
        event: &str,
        data: &T,
    ) -> Result<Notified, RestHooksError> {
        let ns = namespace(user_id);
        crate::webhooks::model::validate_topic_name(event, "event")?;
        self.service.ensure_topic(&ns, event).await?;
        let out = self
            .service
            .publish(PublishSpec {
                namespace: ns,
                topic: event.to_string(),
                event_type: event.to_string(),
                content_type: "application/json".into(),
                payload: serde_json::to_vec(data)?,
                idempotency_key: None,
                deliver_at: None,
            })
            .await?;
        Ok(Notified {
            message_id: out.message.id,
            deliveries: out.deliveries,
        })
    }

    /// The HTTP endpoints, relative to wherever they are mounted (`Router::nest("/hooks", …)`).
    pub fn router(&self) -> Router {
        let not_found = || async { (StatusCode::NOT_FOUND, "404 page not found\n") };
        Router::new()
            .route("/subscribe", post(subscribe))
            .route("/subscribe/", post(subscribe))
            .route("/unsubscribe", delete(unsubscribe_without_id))
            .route("/unsubscribe/", delete(unsubscribe_without_id))
            .route("/unsubscribe/{id}", delete(unsubscribe))
            .route("/subscriptions", get(list))
            .route("/subscriptions/{id}", get(get_one).put(update))
            .fallback(not_found)
            .method_not_allowed_fallback(not_found)
            .with_state(self.clone())
    }
}

fn text(status: StatusCode, body: &str) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{body}\n"),
    )
        .into_response()
}

fn json<T: Serialize>(v: &T) -> Response {
    match serde_json::to_vec(v) {
        Ok(b) => (
            StatusCode::OK,
            [(header::CONTENT_TYPE, "application/json")],
            b,
        )
            .into_response(),
        Err(_) => text(
            StatusCode::INTERNAL_SERVER_ERROR,
            "Error encoding response.",
        ),
    }
}

async fn subscribe(State(hooks): State<RestHooks>, body: Bytes) -> Response {
    let Ok(sub) = serde_json::from_slice::<RestHookSubscription>(&body) else {
        return text(StatusCode::BAD_REQUEST, "Invalid subscribe data.");
    };
    match hooks.subscribe(sub).await {
        Ok(s) => json(&s),
        // The original accepted anything; Herald validates at accept time, so a target it
        // could never call is refused here rather than failing later.
        Err(RestHooksError::Invalid(e))
        | Err(RestHooksError::Webhook(WebhookError::Invalid(e))) => text(
            StatusCode::BAD_REQUEST,
            &format!("Invalid subscribe data. {e}"),
        ),
        Err(RestHooksError::NotFound) => text(StatusCode::BAD_REQUEST, "Invalid subscription."),
        Err(e) => {
            tracing::error!(error = %e, "resthooks subscribe failed");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Error creating subscription.",
            )
        }
    }
}

async fn unsubscribe_without_id() -> Response {
    // What the original answers to the README's id-less DELETE.
    text(
        StatusCode::INTERNAL_SERVER_ERROR,
        "strconv.ParseInt: parsing \"\": invalid syntax",
    )
}

async fn unsubscribe(State(hooks): State<RestHooks>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.trim_end_matches('/').parse::<i64>() else {
        return text(
            StatusCode::INTERNAL_SERVER_ERROR,
            &format!("strconv.ParseInt: parsing {id:?}: invalid syntax"),
        );
    };
    match hooks.unsubscribe(id).await {
        Ok(()) => StatusCode::OK.into_response(),
        // The original answers 500 for an unknown id too.
        Err(RestHooksError::NotFound) => {
            text(StatusCode::INTERNAL_SERVER_ERROR, "Invalid subscription.")
        }
        Err(e) => {
            tracing::error!(error = %e, "resthooks unsubscribe failed");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Error deleting subscription.",
            )
        }
    }
}

#[derive(Deserialize)]
struct ListQuery {
    user_id: Option<String>,
    event: Option<String>,
}

async fn list(State(hooks): State<RestHooks>, Query(q): Query<ListQuery>) -> Response {
    let Some(Ok(user)) = q.user_id.as_deref().map(str::parse::<i64>) else {
        return text(StatusCode::BAD_REQUEST, "user_id is required.");
    };
    match hooks.list(user, q.event.as_deref()).await {
        Ok(subs) => json(&subs),
        Err(e) => {
            tracing::error!(error = %e, "resthooks list failed");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Error listing subscriptions.",
            )
        }
    }
}

async fn get_one(State(hooks): State<RestHooks>, Path(id): Path<String>) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return text(StatusCode::NOT_FOUND, "Invalid subscription.");
    };
    match hooks.find(id).await {
        Ok(s) => json(&s),
        Err(RestHooksError::NotFound) => text(StatusCode::NOT_FOUND, "Invalid subscription."),
        Err(e) => {
            tracing::error!(error = %e, "resthooks get failed");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Error reading subscription.",
            )
        }
    }
}

#[derive(Deserialize)]
struct UpdateBody {
    #[serde(default)]
    event: Option<String>,
    #[serde(default)]
    target_url: Option<String>,
}

async fn update(State(hooks): State<RestHooks>, Path(id): Path<String>, body: Bytes) -> Response {
    let Ok(id) = id.parse::<i64>() else {
        return text(StatusCode::NOT_FOUND, "Invalid subscription.");
    };
    let Ok(b) = serde_json::from_slice::<UpdateBody>(&body) else {
        return text(StatusCode::BAD_REQUEST, "Invalid subscribe data.");
    };
    match hooks.update(id, b.event, b.target_url).await {
        Ok(s) => json(&s),
        Err(RestHooksError::NotFound) => text(StatusCode::NOT_FOUND, "Invalid subscription."),
        Err(RestHooksError::Invalid(e))
        | Err(RestHooksError::Webhook(WebhookError::Invalid(e))) => text(
            StatusCode::BAD_REQUEST,
            &format!("Invalid subscribe data. {e}"),
        ),
        Err(e) => {
            tracing::error!(error = %e, "resthooks update failed");
            text(
                StatusCode::INTERNAL_SERVER_ERROR,
                "Error updating subscription.",
            )
        }
    }
}
