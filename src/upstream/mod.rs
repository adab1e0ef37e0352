//! The one HTTP client, cloakroom's own on hyper's connections (`hyper::client::conn`), over
//! rustls (aws-lc-rs), for the identity provider and every upstream API alike.
//!
//! One instance per destination class (each route, the provider), each with its own connect
//! timeout, TLS settings and pool of kept-alive connections ([`pool`]: HTTP/1.1, and HTTP/2
//! where TLS agrees on it); how a connection is made is [`connect`]. Redirects are never
//! followed, which also keeps provider calls free of SSRF hops.

mod connect;
mod pool;

use crate::respond::Body;
use crate::telemetry::error_chain;
use connect::{Destination, Tls};
use http::{Request, Response};
use hyper::body::Incoming;
use pool::Pool;
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
    pool: Arc<Pool>,
    tls: Tls,
    connect_timeout: Duration,
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
        Self { pool: Arc::default(), tls: Tls::new(tls), connect_timeout }
    }

    /// Sends `request` (its URI absolute); `timeout` bounds the wait for the response head,
    /// connecting included (bodies stream after). Called inside the runtime (its deadline
    /// starts now).
    pub fn send(
        &self,
        request: Request<Body>,
        timeout: Duration,
    ) -> impl Future<Output = Result<Response<Incoming>, SendError>> + Send + '_ {
        use futures_util::FutureExt;
        // Boxed once per call (a few hundred bytes): held inline, its state would be held by
        // every browser connection's task for as long as that connection is open.
        let sending = Box::pin(self.send_to(request));
        tokio::time::timeout(timeout, sending).map(|sent| sent.unwrap_or(Err(SendError::Timeout)))
    }

    /// On a ready pooled connection, else on a new one. A request a pooled connection gave
    /// back unsent (it was closing: the upstream's keep-alive ran out as it was handed over)
    /// goes on a new connection; one that was sent is never sent twice.
    async fn send_to(&self, request: Request<Body>) -> Result<Response<Incoming>, SendError> {
        let to = &Destination::of(request.uri())?;
        let request = match self.pool.send_on_ready(to, request) {
            Ok(answer) => match answer.await {
                Ok(response) => return Ok(response),
                Err(mut e) => match e.take_message() {
                    Some(unsent) => unsent,
                    None => return Err(failure(e.into_error())),
                },
            },
            Err(request) => request,
        };
        // Boxed apart: a handshake's state (TLS above all) is several KiB, which calls on a
        // pooled connection need not allocate.
        Box::pin(self.send_on_new(to, request)).await
    }

    async fn send_on_new(&self, to: &Destination, request: Request<Body>) -> Result<Response<Incoming>, SendError> {
        let mut sender = connect::connect(to, &self.tls, self.connect_timeout).await?;
        let answer = sender.send(request, to);
        self.pool.keep(to, sender);
        answer.await.map_err(|e| failure(e.into_error()))
    }
}

/// What a request that was sent and then failed counts as.
fn failure(e: hyper::Error) -> SendError {
    if caused_by::<http_body_util::LengthLimitError>(&e) {
        SendError::BodyTooLarge
    } else if caused_by::<ClientBodyError>(&e) {
        SendError::ClientBody
    } else {
        SendError::Failed(error_chain(&e))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What a call holds inline while it waits for its answer is held by the browser
    /// connection's task for as long as that connection is open: it stays small (measured:
    /// a stalled reader cost 7 KiB more when the making of a connection was inline).
    #[tokio::test]
    async fn a_call_in_flight_stays_small() {
        let client = HttpClient::new(Duration::from_secs(1));
        let request = Request::get("http://127.0.0.1:1/").body(crate::respond::empty()).unwrap();
        let size = std::mem::size_of_val(&client.send(request, Duration::from_secs(1)));
        // hyper-util's client, used before, took ~400 bytes here.
        assert!(size <= 256, "{size} bytes");
    }
}
