//! The one HTTP client stack: hyper-util's pooled client over rustls (aws-lc-rs), used for the
//! identity provider and every upstream API alike.
//!
//! One instance per destination class (each route, the provider) so each has its own connect
//! timeout and keep-alive pool; all share the same code and TLS settings. Redirects are never
//! followed (the legacy client does not), which also keeps provider calls free of SSRF hops.

use crate::respond::Body;
use crate::telemetry::error_chain;
use http::{Request, Response};
use hyper::body::Incoming;
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioTimer};
use std::sync::Arc;
use std::time::Duration;

/// A destination cloakroom proxies to: its client and its metrics.
#[derive(Clone, Debug)]
pub struct Upstream {
    pub client: HttpClient,
    pub metrics: crate::metrics::UpstreamMetrics,
    /// The `Host` it is sent (its authority), made once rather than on every call.
    pub host: http::HeaderValue,
    /// Its last `DPoP-Nonce`, for the proofs of routes with `dpop`.
    pub dpop_nonce: std::sync::Arc<crate::crypto::dpop::DpopNonce>,
}

impl Upstream {
    pub fn new(client: HttpClient, metrics: crate::metrics::UpstreamMetrics, authority: &http::uri::Authority) -> Self {
        // An authority is always a valid header value (its characters are a subset).
        let host = http::HeaderValue::try_from(authority.as_str()).unwrap_or(http::HeaderValue::from_static(""));
        Self { client, metrics, host, dpop_nonce: Default::default() }
    }
}

/// Bytes of an answer buffered per HTTP/1.1 connection before reading from the upstream pauses
/// (nginx's default proxy buffer size): with the gate on the client's side, what a slow reader
/// holds of cloakroom's memory is mostly this and the gate's window.
const READ_BUFFER: usize = 8 * 1024;

/// An HTTP/2 upstream's window per stream: smaller windows would cost a round trip per window
/// on a reading client; a stalled one holds up to this much.
const H2_STREAM_WINDOW: u32 = 64 * 1024;

#[derive(Clone, Debug)]
pub struct HttpClient {
    inner: Client<HttpsConnector<HttpConnector>, Body>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SendError {
    /// No connection could be made (refused, DNS, TLS handshake, connect timeout).
    Connect(String),
    /// Connected, but no response head within the deadline.
    Timeout,
    /// The connection broke or the peer spoke invalid HTTP.
    Failed(String),
    /// The request body went past its limit while streaming.
    BodyTooLarge,
    /// The browser's request body broke off or was malformed (bad chunked framing): the
    /// client's fault, not the upstream's.
    ClientBody,
}

/// Wraps an error reading the browser's request body, so that a send failing because of it is
/// told apart from an upstream failing ([`SendError::ClientBody`]).
#[derive(Debug)]
pub struct ClientBodyError(pub hyper::Error);

impl std::fmt::Display for ClientBodyError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "reading the client's request body: {}", self.0)
    }
}

impl std::error::Error for ClientBodyError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.0)
    }
}

impl std::fmt::Display for SendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            SendError::Connect(e) => write!(f, "connect failed: {e}"),
            SendError::Timeout => write!(f, "timed out waiting for the response"),
            SendError::Failed(e) => write!(f, "request failed: {e}"),
            SendError::BodyTooLarge => write!(f, "the request body exceeded its limit"),
            SendError::ClientBody => write!(f, "the client's request body was malformed or cut off"),
        }
    }
}

impl std::error::Error for SendError {}

impl SendError {
    /// A fixed name for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            SendError::Connect(_) => "connect",
            SendError::Timeout => "timeout",
            SendError::Failed(_) => "failed",
            SendError::BodyTooLarge => "body_too_large",
            SendError::ClientBody => "client_body",
        }
    }
}

impl HttpClient {
    /// A client trusting the system's CA store.
    pub fn new(connect_timeout: Duration) -> Self {
        let tls = crate::tls::system_client_config();
        Self::with_tls(connect_timeout, tls)
    }

    /// A client with its own TLS settings (custom CAs, a client certificate).
    pub fn with_tls(connect_timeout: Duration, tls: Arc<rustls::ClientConfig>) -> Self {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(connect_timeout));
        http.set_keepalive(Some(Duration::from_secs(60)));
        let connector = HttpsConnectorBuilder::new()
            .with_tls_config(Arc::unwrap_or_clone(tls))
            .https_or_http()
            .enable_http1()
            .enable_http2()
            .wrap_connector(http);
        let inner = Client::builder(TokioExecutor::new())
            // What an answer may buffer here while the browser is not reading it (hyper's
            // default grows to 400 KB): with a small buffer, reading from the upstream pauses
            // sooner, and a slow reader holds little.
            .http1_max_buf_size(READ_BUFFER)
            .http2_initial_stream_window_size(H2_STREAM_WINDOW)
            .pool_idle_timeout(Duration::from_secs(90))
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        Self { inner }
    }

    /// Sends `request`; `timeout` bounds the wait for the response head (bodies stream after).
    pub async fn send(&self, request: Request<Body>, timeout: Duration) -> Result<Response<Incoming>, SendError> {
        match tokio::time::timeout(timeout, self.inner.request(request)).await {
            Err(_) => Err(SendError::Timeout),
            Ok(Ok(response)) => Ok(response),
            Ok(Err(e)) if e.is_connect() => Err(SendError::Connect(error_chain(&e))),
            Ok(Err(e)) if caused_by::<http_body_util::LengthLimitError>(&e) => Err(SendError::BodyTooLarge),
            Ok(Err(e)) if caused_by::<ClientBodyError>(&e) => Err(SendError::ClientBody),
            Ok(Err(e)) => Err(SendError::Failed(error_chain(&e))),
        }
    }
}

fn caused_by<E: std::error::Error + 'static>(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut source = Some(error);
    while let Some(cause) = source {
        if cause.downcast_ref::<E>().is_some() {
            return true;
        }
        source = cause.source();
    }
    false
}
