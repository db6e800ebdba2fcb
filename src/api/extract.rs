//! Request extractors for the native API that fail with problem+json naming the field:
//! a JSON body, the namespace header, and query strings.

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

use super::problem::Problem;
use crate::jobs::validate_namespace;

pub const NAMESPACE_HEADER: &str = "herald-namespace";
pub const DEFAULT_NAMESPACE: &str = "default";

/// A JSON body; errors name the JSON path that failed to parse.
pub struct ApiJson<T>(pub T);

impl<S, T> FromRequest<S> for ApiJson<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = Problem;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = Bytes::from_request(req, state)
            .await
            .map_err(|e| Problem::new(e.status(), "body-unreadable", e.body_text()))?;
        parse_json(&bytes).map(ApiJson)
    }
}

pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, Problem> {
    if bytes.is_empty() {
        return Err(Problem::invalid("body", "a JSON body is required"));
    }
    // Every request body of this API is an object; serde would otherwise accept an array
    // for a struct and report confusing positions.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(Problem::invalid("body", "must be a JSON object"));
    }
    let de = &mut serde_json::Deserializer::from_slice(bytes);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner().to_string();
        // serde reports a missing field at its parent; name the field itself.
        let missing = inner
            .strip_prefix("missing field `")
            .and_then(|rest| rest.split('`').next());
        let field = match (path.as_str(), missing) {
            ("." | "", Some(m)) => m.to_string(),
            ("." | "", None) => "body".to_string(),
            (p, Some(m)) => format!("{p}.{m}"),
            (p, None) => p.to_string(),
        };
        Problem::invalid(field, inner)
    })
}

/// The namespace a request acts in, from `Herald-Namespace` (or `default`).
pub struct Namespace(pub String);

impl<S: Send + Sync> FromRequestParts<S> for Namespace {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let Some(value) = parts.headers.get(NAMESPACE_HEADER) else {
            return Ok(Namespace(DEFAULT_NAMESPACE.into()));
        };
        let ns = value
            .to_str()
            .map_err(|_| Problem::invalid("Herald-Namespace", "must be visible ASCII"))?;
        validate_namespace(ns, "Herald-Namespace")?;
        Ok(Namespace(ns.to_string()))
    }
}

/// A query string; errors name the parameter.
pub struct ApiQuery<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequestParts<S> for ApiQuery<T> {
    type Rejection = Problem;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let q = parts.uri.query().unwrap_or("");
        let de = serde_urlencoded::Deserializer::new(form_urlencoded::parse(q.as_bytes()));
        serde_path_to_error::deserialize(de)
            .map(ApiQuery)
            .map_err(|e| {
                let path = e.path().to_string();
                Problem::invalid(
                    if path == "." { "query".into() } else { path },
                    e.into_inner().to_string(),
                )
            })
    }
}
