//! openidconnect's HTTP hook, driven through our own [`HttpClient`] (no second HTTP stack).

use crate::respond::full;
use crate::upstream::{HttpClient, SendError};
use http_body_util::{BodyExt, Limited};
use openidconnect::{AsyncHttpClient, HttpRequest, HttpResponse};
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

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
    Body(String),
}

impl std::fmt::Display for ProviderHttpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ProviderHttpError::Send(e) => write!(f, "{e}"),
            ProviderHttpError::ServerError(status) => write!(f, "the provider answered HTTP {status}"),
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

    pub async fn send(&self, request: HttpRequest) -> Result<HttpResponse, ProviderHttpError> {
        let started = std::time::Instant::now();
        let result = self.send_timed(request).await;
        let error = match &result {
            Ok(_) => None,
            Err(ProviderHttpError::Send(e)) => Some(e.kind()),
            Err(ProviderHttpError::ServerError(_)) => Some("server_error"),
            Err(ProviderHttpError::Body(_)) => Some("body"),
        };
        self.metrics.provider_call(started.elapsed(), error);
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
            .map_err(|e| ProviderHttpError::Body(e.to_string()))?;
        Ok(http::Response::from_parts(parts, collected.to_bytes().to_vec()))
    }
}

impl<'c> AsyncHttpClient<'c> for ProviderHttp {
    type Error = ProviderHttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, Self::Error>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        Box::pin(self.send(request))
    }
}
