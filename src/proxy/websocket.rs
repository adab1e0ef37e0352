//! WebSocket upgrades through the proxy: the handshake goes upstream like any request (token
//! attached); when the upstream switches protocols, the two connections are joined byte for
//! byte until either side closes.

use http::Request;
use http::header::{CONNECTION, HeaderMap, HeaderValue, UPGRADE};
use hyper::body::Incoming;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::TokioIo;

/// `Connection: upgrade` with `Upgrade: websocket` (the only upgrade cloakroom relays).
pub fn is_upgrade(headers: &HeaderMap) -> bool {
    let connection_upgrade = headers
        .get_all(CONNECTION)
        .iter()
        .flat_map(|v| v.as_bytes().split(|&b| b == b','))
        .any(|token| token.trim_ascii().eq_ignore_ascii_case(b"upgrade"));
    connection_upgrade && headers.get(UPGRADE).is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"))
}

/// The browser side of the upgrade, to be completed once the upstream agrees.
pub fn take(request: &mut Request<Incoming>) -> OnUpgrade {
    hyper::upgrade::on(request)
}

/// Puts back the two hop-by-hop headers an upgrade needs (hygiene removed them).
pub fn mark_upgrade(headers: &mut HeaderMap) {
    headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(UPGRADE, HeaderValue::from_static("websocket"));
}

/// Joins the browser's and the upstream's upgraded connections in a task of their own.
pub fn tunnel(client: OnUpgrade, upstream: OnUpgrade) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let (client, upstream) = match tokio::try_join!(client, upstream) {
            Ok(pair) => pair,
            Err(e) => {
                tracing::debug!(error = %e, "websocket upgrade did not complete");
                return;
            }
        };
        let (mut client, mut upstream) = (TokioIo::new(client), TokioIo::new(upstream));
        match tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
            Ok((up, down)) => tracing::debug!(up, down, "websocket closed"),
            Err(e) => tracing::debug!(error = %e, "websocket ended with an error"),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    use crate::proxy::headers::header_map as headers;

    #[test]
    fn recognises_websocket_upgrades_only() {
        assert!(is_upgrade(&headers(&[("connection", "Upgrade"), ("upgrade", "websocket")])));
        assert!(is_upgrade(&headers(&[("connection", "keep-alive, Upgrade"), ("upgrade", "WebSocket")])));
        assert!(!is_upgrade(&headers(&[("connection", "upgrade"), ("upgrade", "h2c")])));
        assert!(!is_upgrade(&headers(&[("upgrade", "websocket")])));
        assert!(!is_upgrade(&headers(&[("connection", "keep-alive")])));
    }
}
