//! openidconnect's HTTP hook, driven through our own [`HttpClient`] (no second HTTP stack).

use crate::respond::full;
use crate::upstream::{HttpClient, SendError};
use http_body_util::{BodyExt, Limited};
use openidconnect::{AsyncHttpClient, HttpRequest, HttpResponse};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;
use tracing::Instrument;

/// Provider answers (metadata, JWKS, tokens) are small; a larger one is refused, not buffered.
const MAX_PROVIDER_RESPONSE: usize = 1024 * 1024;

#[derive(Clone, Debug)]
pub struct ProviderHttp {
    client: HttpClient,
    timeout: Duration,
    metrics: std::sync::Arc<crate::metrics::Metrics>,
}

#[derive(Debug)]
pub enum ProviderHttpError {
    Send(SendError),
    /// The provider answered 5xx: it is in trouble, which is not the same as saying no.
    ServerError(http::StatusCode),
    /// The provider answered 4xx (not 429) without an OAuth `error` code (some providers send
    /// an empty body): it answered, and the answer is no.
    Refused(http::StatusCode),
    Body(String),
}

impl std::fmt::Display for ProviderHttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProviderHttpError::Send(e) => write!(f, "{e}"),
            ProviderHttpError::ServerError(status) => write!(f, "the provider answered HTTP {status}"),
            ProviderHttpError::Refused(status) => {
                write!(f, "the provider refused with HTTP {status} and no error code")
            }
            ProviderHttpError::Body(e) => write!(f, "reading the response failed: {e}"),
        }
    }
}

impl std::error::Error for ProviderHttpError {}

impl ProviderHttpError {
    /// The request may have been acted on: sent, and then no (whole) answer.
    pub fn is_in_doubt(&self) -> bool {
        matches!(self, ProviderHttpError::Send(SendError::Timeout | SendError::Failed(_)) | ProviderHttpError::Body(_))
    }
}

impl ProviderHttp {
    /// `connect_timeout` bounds connecting; `timeout` the wait for the whole answer after it.
    pub fn new(
        connect_timeout: Duration,
        timeout: Duration,
        tls: std::sync::Arc<rustls::ClientConfig>,
        metrics: std::sync::Arc<crate::metrics::Metrics>,
    ) -> Self {
        Self { client: HttpClient::with_tls(connect_timeout, tls), timeout, metrics }
    }

    pub async fn send(&self, mut request: HttpRequest) -> Result<HttpResponse, ProviderHttpError> {
        // The endpoint's path only: a provider call's query and body are never a span's.
        let span = tracing::info_span!(
            target: crate::telemetry::TRACES,
            "provider",
            otel.name = %format_args!("{} {}", request.method(), request.uri().path()),
            otel.kind = "client",
            otel.status_code = tracing::field::Empty,
            http.request.method = %request.method(),
            server.address = request.uri().host().unwrap_or_default(),
            url.path = request.uri().path(),
            http.response.status_code = tracing::field::Empty,
            error.type = tracing::field::Empty,
        );
        crate::telemetry::trace_context::send_on(&span, request.headers_mut());
        let started = std::time::Instant::now();
        let result = self.send_timed(request).instrument(span.clone()).await;
        let error = match &result {
            Ok(_) => None,
            Err(ProviderHttpError::Send(e)) => Some(e.kind()),
            Err(ProviderHttpError::ServerError(_)) => Some("server_error"),
            Err(ProviderHttpError::Refused(_)) => Some("refused"),
            Err(ProviderHttpError::Body(_)) => Some("body"),
        };
        self.metrics.provider_call(started.elapsed(), error);
        match (&result, error) {
            (Ok(response), _) => span.record("http.response.status_code", response.status().as_u16()),
            (Err(_), Some(kind)) => span.record("error.type", kind).record("otel.status_code", "ERROR"),
            (Err(_), None) => &span,
        };
        result
    }

    async fn send_timed(&self, request: HttpRequest) -> Result<HttpResponse, ProviderHttpError> {
        let (parts, body) = request.into_parts();
        let request = http::Request::from_parts(parts, full(body));
        let deadline = tokio::time::Instant::now() + self.timeout;
        let response = self.client.send(request, self.timeout).await.map_err(ProviderHttpError::Send)?;
        if response.status().is_server_error() {
            // Surfaced as a transport failure so that no OAuth error code in a 5xx body can be
            // mistaken for a refusal (which would end sessions during an outage).
            return Err(ProviderHttpError::ServerError(response.status()));
        }
        let (parts, body) = response.into_parts();
        let collected = tokio::time::timeout_at(deadline, Limited::new(body, MAX_PROVIDER_RESPONSE).collect())
            .await
            .map_err(|_| ProviderHttpError::Send(SendError::Timeout))?
            .map_err(|e| ProviderHttpError::Body(e.to_string()))?
            .to_bytes();
        // A 4xx without an OAuth error code would otherwise read as "no usable answer" (an
        // outage), and a revoked grant would get 503s forever instead of ending the session.
        if is_bare_refusal(parts.status, &collected) {
            tracing::info!(status = parts.status.as_u16(), "the provider refused without an error code");
            return Err(ProviderHttpError::Refused(parts.status));
        }
        Ok(http::Response::from_parts(parts, collected.to_vec()))
    }
}

/// A client error (not 429, which asks to try later) whose body holds no OAuth `error` code.
fn is_bare_refusal(status: http::StatusCode, body: &[u8]) -> bool {
    if !status.is_client_error() || status == http::StatusCode::TOO_MANY_REQUESTS {
        return false;
    }
    let code = serde_json::from_slice::<serde_json::Value>(body).ok();
    !code.is_some_and(|v| v.get("error").is_some_and(serde_json::Value::is_string))
}

impl<'c> AsyncHttpClient<'c> for ProviderHttp {
    type Error = ProviderHttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, Self::Error>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::StatusCode;

    #[test]
    fn a_bare_client_error_is_a_refusal_and_the_rest_is_not() {
        assert!(is_bare_refusal(StatusCode::BAD_REQUEST, b""));
        assert!(is_bare_refusal(StatusCode::FORBIDDEN, b"<html>no</html>"));
        assert!(is_bare_refusal(StatusCode::UNAUTHORIZED, b"{}"));
        assert!(!is_bare_refusal(StatusCode::BAD_REQUEST, br#"{"error":"invalid_grant"}"#), "the library reads it");
        assert!(!is_bare_refusal(StatusCode::TOO_MANY_REQUESTS, b""), "429 asks to try later");
        assert!(!is_bare_refusal(StatusCode::OK, b""));
        assert!(!is_bare_refusal(StatusCode::BAD_GATEWAY, b""));
    }
}
