//! The HTTP channel: turns a job's target into one outbound request and captures what came
//! back. Every call is bounded by the job's timeout (connect, send and body read together);
//! redirects are followed only when the job asks; connections are pooled and kept alive.

use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue, CONTENT_TYPE, USER_AGENT};

use crate::domain::{Body, Job, Millis};

pub const DELIVERY_ID_HEADER: &str = "herald-delivery-id";
pub const ATTEMPT_HEADER: &str = "herald-attempt";

/// What one call produced. `status` is `None` when no response arrived.
#[derive(Debug, Default)]
pub struct CallResult {
    pub request_headers: Vec<(String, String)>,
    pub request_body_bytes: i64,
    pub status: Option<u16>,
    pub response_headers: Vec<(String, String)>,
    pub body: Option<Vec<u8>>,
    pub truncated: bool,
    pub error: Option<String>,
    /// The receiver's `Retry-After`, in milliseconds from now.
    pub retry_after_ms: Option<i64>,
}

#[derive(Clone)]
pub struct HttpChannel {
    plain: reqwest::Client,
    following: reqwest::Client,
    body_limit: usize,
}

impl HttpChannel {
    pub fn new(body_limit: usize) -> Result<Self, reqwest::Error> {
        let build = |redirects: reqwest::redirect::Policy| {
            reqwest::Client::builder()
                .redirect(redirects)
                .connect_timeout(Duration::from_secs(10))
                .pool_idle_timeout(Duration::from_secs(90))
                .pool_max_idle_per_host(64)
                .tcp_nodelay(true)
                .build()
        };
        Ok(HttpChannel {
            plain: build(reqwest::redirect::Policy::none())?,
            following: build(reqwest::redirect::Policy::limited(10))?,
            body_limit,
        })
    }

    pub async fn call(&self, job: &Job, now: Millis) -> CallResult {
        self.call_with(job, now, &[]).await
    }

    /// [`call`](Self::call) with headers that come last and override everything else (a
    /// delivery's signature headers, computed by the engine for this attempt).
    pub async fn call_with(
        &self,
        job: &Job,
        now: Millis,
        extra: &[(&'static str, String)],
    ) -> CallResult {
        let mut headers = HeaderMap::new();
        let body = job.target.body.to_bytes();
        match &job.target.body {
            Body::Json(_) => {
                headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            }
            Body::Text(_) => {
                headers.insert(
                    CONTENT_TYPE,
                    HeaderValue::from_static("text/plain; charset=utf-8"),
                );
            }
            Body::Binary(_) | Body::None => {}
        }
        headers.insert(
            USER_AGENT,
            HeaderValue::from_static(concat!("Herald/", env!("CARGO_PKG_VERSION"))),
        );
        // The job's own headers replace defaults; a repeated name keeps its last value.
        for (name, value) in &job.target.headers {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.insert(n, v);
            }
        }
        headers.insert(
            HeaderName::from_static(DELIVERY_ID_HEADER),
            HeaderValue::from_str(&job.id.to_string()).expect("uuid is a valid header"),
        );
        headers.insert(
            HeaderName::from_static(ATTEMPT_HEADER),
            HeaderValue::from(job.attempts),
        );
        for (name, value) in extra {
            if let (Ok(n), Ok(v)) = (
                HeaderName::from_bytes(name.as_bytes()),
                HeaderValue::from_str(value),
            ) {
                headers.insert(n, v);
            }
        }
        let mut result = CallResult {
            request_headers: header_pairs(&headers),
            request_body_bytes: body.as_ref().map_or(0, |b| b.len() as i64),
            ..Default::default()
        };
        let method = reqwest::Method::from_bytes(job.target.method.as_bytes())
            .unwrap_or(reqwest::Method::POST);
        let client = if job.follow_redirects {
            &self.following
        } else {
            &self.plain
        };
        let mut req = client.request(method, &job.target.url).headers(headers);
        if let Some(b) = body {
            req = req.body(b);
        }
        let timeout = Duration::from_millis(job.timeout_ms.max(1) as u64);
        let exchange = async {
            let mut resp = req.send().await?;
            let status = resp.status().as_u16();
            let headers = header_pairs(resp.headers());
            let retry_after = resp
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, now));
            let mut buf = Vec::new();
            let mut truncated = false;
            while let Some(chunk) = resp.chunk().await? {
                let room = self.body_limit.saturating_sub(buf.len());
                if chunk.len() > room {
                    buf.extend_from_slice(&chunk[..room]);
                    truncated = true;
                    break;
                }
                buf.extend_from_slice(&chunk);
            }
            Ok::<_, reqwest::Error>((status, headers, buf, truncated, retry_after))
        };
        match tokio::time::timeout(timeout, exchange).await {
            Ok(Ok((status, headers, body, truncated, retry_after))) => {
                result.status = Some(status);
                result.response_headers = headers;
                result.body = Some(body);
                result.truncated = truncated;
                result.retry_after_ms = retry_after;
            }
            Ok(Err(e)) => result.error = Some(error_chain(&e)),
            Err(_) => result.error = Some(format!("timed out after {} ms", job.timeout_ms)),
        }
        result
    }
}

fn header_pairs(h: &HeaderMap) -> Vec<(String, String)> {
    h.iter()
        .map(|(k, v)| {
            (
                k.as_str().to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect()
}

fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let text = s.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        src = s.source();
    }
    out
}

/// `Retry-After` as delay-seconds or an HTTP date, in milliseconds from `now`.
pub fn parse_retry_after(value: &str, now: Millis) -> Option<i64> {
    let v = value.trim();
    if let Ok(secs) = v.parse::<u64>() {
        return Some((secs.min(i64::MAX as u64 / 1000) as i64) * 1000);
    }
    let at = jiff::fmt::rfc2822::parse(v)
        .ok()?
        .timestamp()
        .as_millisecond();
    Some((at - now).max(0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_forms() {
        assert_eq!(parse_retry_after("120", 0), Some(120_000));
        let now = jiff::Timestamp::from_second(784_111_777)
            .unwrap()
            .as_millisecond();
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:37 GMT", now - 5_000),
            Some(5_000)
        );
        assert_eq!(parse_retry_after("soon", 0), None);
    }
}
