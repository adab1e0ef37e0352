//! A new connection to a destination: TCP (no delay, keep-alive probes), TLS with the
//! destination's settings and ALPN (`h2`, then `http/1.1`), and hyper's handshake for the
//! protocol agreed. The connection's task is spawned; what is returned sends requests on it.

use super::{H2_STREAM_WINDOW, READ_BUFFER, SendError};
use crate::respond::Body;
use crate::telemetry::error_chain;
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Where connections go: the scheme (https or not) and the authority of a request's URI.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct Destination {
    pub https: bool,
    pub authority: http::uri::Authority,
}

impl Destination {
    pub fn of(uri: &http::Uri) -> Result<Destination, SendError> {
        let https = match uri.scheme_str() {
            Some("https") => true,
            Some("http") => false,
            _ => return Err(SendError::Connect(format!("{uri}: not an http or https URL"))),
        };
        let authority = uri.authority().cloned().ok_or_else(|| SendError::Connect(format!("{uri}: no host")))?;
        Ok(Destination { https, authority })
    }

    fn port(&self) -> u16 {
        self.authority.port_u16().unwrap_or(if self.https { 443 } else { 80 })
    }

    /// The host as a name or an address (an IPv6 literal without its brackets).
    fn host(&self) -> &str {
        self.authority.host().trim_start_matches('[').trim_end_matches(']')
    }
}

/// The sending half of a connection.
pub(super) enum Sender {
    Http1(http1::SendRequest<Body>),
    Http2(http2::SendRequest<Body>),
}

/// TLS towards one destination class: its settings with ALPN for both protocols.
#[derive(Clone)]
pub(super) struct Tls(tokio_rustls::TlsConnector);

impl std::fmt::Debug for Tls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Tls")
    }
}

impl Tls {
    pub fn new(config: Arc<rustls::ClientConfig>) -> Tls {
        let mut config = Arc::unwrap_or_clone(config);
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Tls(tokio_rustls::TlsConnector::from(Arc::new(config)))
    }
}

/// Connects to `to` within `timeout` (name resolution, TCP and the TLS handshake together: a
/// destination that accepts and then says nothing is a connect failure, not a hung call).
pub(super) async fn connect(to: &Destination, tls: &Tls, timeout: Duration) -> Result<Sender, SendError> {
    match tokio::time::timeout(timeout, handshake(to, tls)).await {
        Ok(result) => result,
        Err(_) => Err(SendError::Connect(format!("{}: no connection within {timeout:?}", to.authority))),
    }
}

async fn handshake(to: &Destination, tls: &Tls) -> Result<Sender, SendError> {
    let failed = |what: &str, e: &dyn std::fmt::Display| SendError::Connect(format!("{}: {what}: {e}", to.authority));
    let tcp = tcp(to).await?;
    if !to.https {
        return http1_over(tcp).await.map_err(|e| failed("HTTP/1.1 handshake", &e));
    }
    let name = rustls::pki_types::ServerName::try_from(to.host().to_string())
        .map_err(|e| failed("not a valid TLS server name", &e))?;
    let stream = tls.0.connect(name, tcp).await.map_err(|e| failed("TLS handshake", &error_chain(&e)))?;
    if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .timer(TokioTimer::new())
            .initial_stream_window_size(H2_STREAM_WINDOW)
            .handshake(TokioIo::new(stream))
            .await
            .map_err(|e| failed("HTTP/2 handshake", &e))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "an upstream HTTP/2 connection ended");
            }
        });
        return Ok(Sender::Http2(sender));
    }
    http1_over(stream).await.map_err(|e| failed("HTTP/1.1 handshake", &e))
}

async fn http1_over<S>(stream: S) -> Result<Sender, hyper::Error>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Send + Unpin + 'static,
{
    // What an answer may buffer here while the browser is not reading it (hyper's default
    // grows to 400 KB): with a small buffer, reading from the upstream pauses sooner, and a
    // slow reader holds little.
    let (sender, connection) = http1::Builder::new().max_buf_size(READ_BUFFER).handshake(TokioIo::new(stream)).await?;
    tokio::spawn(async move {
        // Upgrades (WebSocket): the connection is handed to the tunnel after a 101.
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(error = %e, "an upstream HTTP/1.1 connection ended");
        }
    });
    Ok(Sender::Http1(sender))
}

/// A TCP connection to the first of the destination's addresses that answers.
async fn tcp(to: &Destination) -> Result<tokio::net::TcpStream, SendError> {
    let port = to.port();
    let addresses: Vec<SocketAddr> = match to.host().parse::<std::net::IpAddr>() {
        Ok(ip) => vec![SocketAddr::new(ip, port)],
        Err(_) => tokio::net::lookup_host((to.host(), port))
            .await
            .map_err(|e| SendError::Connect(format!("{}: resolving: {e}", to.authority)))?
            .collect(),
    };
    let mut last = None;
    for address in addresses {
        match tokio::net::TcpStream::connect(address).await {
            Ok(stream) => {
                let _ = stream.set_nodelay(true);
                let keepalive = socket2::TcpKeepalive::new().with_time(Duration::from_secs(60));
                let _ = socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive);
                return Ok(stream);
            }
            Err(e) => last = Some(format!("{address}: {e}")),
        }
    }
    Err(SendError::Connect(format!(
        "{}: {}",
        to.authority,
        last.unwrap_or_else(|| "the name resolves to no address".into())
    )))
}
