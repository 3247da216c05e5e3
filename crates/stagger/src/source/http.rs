//! HTTP GET with the limits every source request obeys: timeouts, a response size cap, and
//! retries with exponential backoff and jitter that honour `429 Retry-After`.

use std::time::Duration;

use futures_util::StreamExt;
use rand::Rng;
use reqwest::{header, StatusCode};
use tracing::warn;

use crate::config::RequestLimits;
use crate::registry::parse_retry_after;
use crate::source::SourceError;

/// Longest `Retry-After` the agent waits within one poll, in seconds. A registry asking for more
/// gets it through the next poll instead.
const MAX_RETRY_AFTER_SECS: u64 = 60;

/// Builds an HTTP client with the connect and total timeouts of `limits`.
pub fn client(limits: &RequestLimits) -> anyhow::Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .connect_timeout(limits.connect_timeout)
        .timeout(limits.timeout)
        .user_agent(concat!("stagger/", env!("CARGO_PKG_VERSION")))
        .build()?)
}

/// Fetches `url` and returns its body, retrying connection failures, timeouts, 5xx and 429.
pub async fn get_with_retries(
    client: &reqwest::Client,
    url: &str,
    limits: &RequestLimits,
) -> Result<Vec<u8>, SourceError> {
    let mut attempt = 0;
    loop {
        let (error, retry_after) = match get_once(client, url, limits).await {
            Ok(body) => return Ok(body),
            Err(failure) => failure,
        };
        if !error.retryable || attempt >= limits.retries {
            return Err(SourceError(error.message));
        }

        let delay = retry_after.unwrap_or_else(|| backoff(limits.retry_backoff, attempt));
        attempt += 1;
        warn!(
            url,
            attempt,
            max_retries = limits.retries,
            delay_ms = delay.as_millis() as u64,
            error = %error.message,
            "source request failed, retrying"
        );
        tokio::time::sleep(delay).await;
    }
}

/// Returns the delay before retry number `attempt` (0-based): `base * 2^attempt`, plus up to
/// 50 % random jitter so that a fleet does not retry in lockstep.
pub fn backoff(base: Duration, attempt: u32) -> Duration {
    let exponential = base.saturating_mul(1u32 << attempt.min(16));
    let jitter_millis = rand::thread_rng().gen_range(0..=exponential.as_millis() as u64 / 2);
    exponential + Duration::from_millis(jitter_millis)
}

struct Failure {
    message: String,
    retryable: bool,
}

async fn get_once(
    client: &reqwest::Client,
    url: &str,
    limits: &RequestLimits,
) -> Result<Vec<u8>, (Failure, Option<Duration>)> {
    let response = client.get(url).send().await.map_err(|error| {
        let message = if error.is_timeout() {
            format!("GET {url} timed out after {}s", limits.timeout.as_secs())
        } else if error.is_connect() {
            format!("GET {url} failed: cannot connect ({})", root_cause(&error))
        } else {
            format!("GET {url} failed: {}", root_cause(&error))
        };
        (
            Failure {
                message,
                retryable: true,
            },
            None,
        )
    })?;

    let status = response.status();
    if !status.is_success() {
        let retry_after = if status == StatusCode::TOO_MANY_REQUESTS {
            response
                .headers()
                .get(header::RETRY_AFTER)
                .and_then(|value| value.to_str().ok())
                .and_then(|value| parse_retry_after(value, std::time::SystemTime::now()))
                .map(|delay| delay.min(Duration::from_secs(MAX_RETRY_AFTER_SECS)))
        } else {
            None
        };
        let retryable = status.is_server_error() || status == StatusCode::TOO_MANY_REQUESTS;
        return Err((
            Failure {
                message: format!("GET {url} failed with status {status}"),
                retryable,
            },
            retry_after,
        ));
    }

    if let Some(length) = response.content_length() {
        if length > limits.max_response_bytes {
            return Err((too_large(url, limits), None));
        }
    }
    let mut body = Vec::new();
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        let chunk = chunk.map_err(|error| {
            (
                Failure {
                    message: format!(
                        "GET {url} failed while reading the body: {}",
                        root_cause(&error)
                    ),
                    retryable: true,
                },
                None,
            )
        })?;
        if body.len() as u64 + chunk.len() as u64 > limits.max_response_bytes {
            return Err((too_large(url, limits), None));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn too_large(url: &str, limits: &RequestLimits) -> Failure {
    Failure {
        message: format!(
            "GET {url}: response larger than {} bytes; raise source.max_response_bytes if it is legitimate",
            limits.max_response_bytes
        ),
        retryable: false,
    }
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    use axum::extract::State;
    use axum::http::HeaderMap;
    use axum::routing::get;
    use axum::Router;

    use super::*;

    /// Serves test routes on a loopback port; returns the base URL and the request counter.
    async fn serve() -> (String, Arc<AtomicU32>) {
        let hits = Arc::new(AtomicU32::new(0));
        let app = Router::new()
            .route(
                "/busy-once",
                get(|State(hits): State<Arc<AtomicU32>>| async move {
                    if hits.fetch_add(1, Ordering::SeqCst) == 0 {
                        let mut headers = HeaderMap::new();
                        headers.insert("retry-after", "1".parse().unwrap());
                        (StatusCode::TOO_MANY_REQUESTS, headers, "slow down")
                    } else {
                        (StatusCode::OK, HeaderMap::new(), "ok")
                    }
                }),
            )
            .route(
                "/large",
                get(|State(hits): State<Arc<AtomicU32>>| async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    "x".repeat(2_000)
                }),
            )
            .route(
                "/broken",
                get(|State(hits): State<Arc<AtomicU32>>| async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    StatusCode::INTERNAL_SERVER_ERROR
                }),
            )
            .route(
                "/missing",
                get(|State(hits): State<Arc<AtomicU32>>| async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    StatusCode::NOT_FOUND
                }),
            )
            .with_state(hits.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (format!("http://{address}"), hits)
    }

    fn limits() -> RequestLimits {
        RequestLimits {
            connect_timeout: Duration::from_secs(2),
            timeout: Duration::from_secs(5),
            max_response_bytes: 1_000,
            retries: 2,
            retry_backoff: Duration::from_millis(10),
        }
    }

    #[tokio::test]
    async fn retry_after_429_then_success() {
        let (base, hits) = serve().await;
        let limits = limits();
        let body = get_with_retries(
            &client(&limits).unwrap(),
            &format!("{base}/busy-once"),
            &limits,
        )
        .await
        .unwrap();
        assert_eq!(body, b"ok");
        assert_eq!(hits.load(Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn oversized_body_is_rejected_once() {
        let (base, hits) = serve().await;
        let limits = limits();
        let error = get_with_retries(&client(&limits).unwrap(), &format!("{base}/large"), &limits)
            .await
            .unwrap_err();
        assert!(
            error.0.contains("response larger than 1000 bytes"),
            "{}",
            error.0
        );
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn server_error_is_retried() {
        let (base, hits) = serve().await;
        let limits = limits();
        let error = get_with_retries(
            &client(&limits).unwrap(),
            &format!("{base}/broken"),
            &limits,
        )
        .await
        .unwrap_err();
        assert!(error.0.contains("500 Internal Server Error"), "{}", error.0);
        assert_eq!(hits.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn not_found_is_not_retried() {
        let (base, hits) = serve().await;
        let limits = limits();
        let error = get_with_retries(
            &client(&limits).unwrap(),
            &format!("{base}/missing"),
            &limits,
        )
        .await
        .unwrap_err();
        assert!(error.0.contains("404 Not Found"), "{}", error.0);
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn backoff_doubles_with_bounded_jitter() {
        let base = Duration::from_millis(100);
        for attempt in 0..5 {
            let delay = backoff(base, attempt);
            let floor = base * (1 << attempt);
            assert!(
                delay >= floor,
                "attempt {attempt}: {delay:?} below {floor:?}"
            );
            assert!(
                delay <= floor * 3 / 2,
                "attempt {attempt}: {delay:?} above 1.5 × {floor:?}"
            );
        }
    }
}
