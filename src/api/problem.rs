//! RFC 9457 problem details: the one error shape of the native API. Every error names what
//! went wrong and, for bad input, the field.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::domain::Invalid;
use crate::jobs::JobError;
use crate::store::StoreError;

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the kind of problem.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The request field at fault, as a dotted path (`target.url`), a header name, or a
    /// query parameter.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

impl Problem {
    pub fn new(status: StatusCode, slug: &str, detail: impl Into<String>) -> Self {
        Problem {
            kind: format!("urn:herald:problem:{slug}"),
            title: status.canonical_reason().unwrap_or("Error").to_string(),
            status: status.as_u16(),
            detail: detail.into(),
            field: None,
        }
    }

    pub fn invalid(field: impl Into<String>, detail: impl Into<String>) -> Self {
        let field = field.into();
        let detail = detail.into();
        Problem {
            detail: format!("{field}: {detail}"),
            field: Some(field),
            ..Problem::new(StatusCode::BAD_REQUEST, "invalid-field", "")
        }
    }

    pub fn not_found(what: &str) -> Self {
        Problem::new(
            StatusCode::NOT_FOUND,
            "not-found",
            format!("{what} not found"),
        )
    }
}

impl IntoResponse for Problem {
    fn into_response(self) -> Response {
        let status = StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&self).unwrap_or_default();
        (
            status,
            [(header::CONTENT_TYPE, "application/problem+json")],
            body,
        )
            .into_response()
    }
}

impl From<Invalid> for Problem {
    fn from(e: Invalid) -> Self {
        Problem::invalid(e.field, e.message)
    }
}

impl From<StoreError> for Problem {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Unavailable(_) => {
                tracing::warn!(error = %e, "database unavailable");
                Problem::new(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "database-unavailable",
                    "the database is unavailable; nothing was changed, retry later",
                )
            }
            other => {
                tracing::error!(error = %other, "storage error");
                Problem::new(
                    StatusCode::INTERNAL_SERVER_ERROR,
                    "internal",
                    "internal storage error",
                )
            }
        }
    }
}

impl From<JobError> for Problem {
    fn from(e: JobError) -> Self {
        match e {
            JobError::NotFound => Problem::not_found("job"),
            JobError::Invalid(i) => i.into(),
            JobError::Conflict { message, .. } => {
                Problem::new(StatusCode::CONFLICT, "state-conflict", message)
            }
            e @ JobError::KeyTaken { .. } => Problem {
                field: Some("key".into()),
                ..Problem::new(StatusCode::CONFLICT, "key-conflict", e.to_string())
            },
            JobError::Store(s) => s.into(),
        }
    }
}
