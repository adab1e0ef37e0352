//! `[server]`: listeners, limits, TLS, the public URL.

use super::*;

/// `[server]`, and the public URL the other sections derive their addresses from.
pub(in crate::config) fn server(check: &mut Check, raw: &RawServer) -> (ServerConfig, Option<Url>) {
    // [server]
    let listen = check.socket_addr("server.listen", &raw.listen);
    let admin_listen = check.socket_addr("server.admin_listen", &raw.admin_listen);
    let shutdown_timeout = check.duration("server.shutdown_timeout", &raw.shutdown_timeout);
    let shutdown_delay = check.duration_or_zero("server.shutdown_delay", &raw.shutdown_delay).unwrap_or(Duration::ZERO);
    let header_read_timeout = check.duration("server.header_read_timeout", &raw.header_read_timeout);
    let max_header_bytes = check.size("server.max_header_bytes", &raw.max_header_bytes);
    if max_header_bytes < 8192 {
        check.fail("server.max_header_bytes", "must be at least 8KiB (the HTTP/1 parser's minimum)");
    }
    let mut trusted_proxies = Vec::new();
    for (i, text) in raw.trusted_proxies.iter().enumerate() {
        match text.parse::<crate::forwarded::Cidr>() {
            Ok(cidr) => trusted_proxies.push(cidr),
            Err(e) => check.fail(format!("server.trusted_proxies[{i}]"), e.to_string()),
        }
    }
    let trusted_proxy_header = raw
        .trusted_proxy_header
        .parse::<crate::forwarded::ForwardingHeader>()
        .map_err(|e| check.fail("server.trusted_proxy_header", e.to_string()))
        .unwrap_or_default();
    let tls = match (raw.tls_cert_file.as_deref(), raw.tls_key_file.as_deref()) {
        (None, None) => None,
        (Some(_), None) => {
            check.fail("server.tls_key_file", "is required with server.tls_cert_file");
            None
        }
        (None, Some(_)) => {
            check.fail("server.tls_cert_file", "is required with server.tls_key_file");
            None
        }
        (Some(cert), Some(key)) => match crate::tls::ServerTls::load(Path::new(cert), Path::new(key)) {
            Ok(tls) => Some(Arc::new(tls)),
            Err(e) => {
                // A key that cannot be read is the key's setting; the rest (an unreadable
                // certificate, a pair that does not belong together) the certificate's.
                let key = match e {
                    crate::tls::TlsFileError::NoKey { .. } => "server.tls_key_file",
                    _ => "server.tls_cert_file",
                };
                check.fail(key, e.to_string());
                None
            }
        },
    };
    let hsts = match raw.hsts.trim() {
        "" => None,
        value if value.to_ascii_lowercase().starts_with("max-age=") => match HeaderValue::try_from(value) {
            Ok(value) => Some(value),
            Err(_) => {
                check.fail("server.hsts", "is not a valid header value");
                None
            }
        },
        _ => {
            check.fail(
                "server.hsts",
                "must start with \"max-age=\" (e.g. \"max-age=63072000\"), or be \"\" to send none",
            );
            None
        }
    };
    let connection_idle_timeout = check.duration("server.idle_timeout", &raw.idle_timeout);
    if raw.worker_threads > 1024 {
        check.fail("server.worker_threads", "must be at most 1024 (0: one per available CPU)");
    }
    if raw.max_connections == 0 {
        check.fail("server.max_connections", "must be greater than zero");
    }
    let public_url = check.url("server.public_url", &raw.public_url);
    if let Some(url) = &public_url {
        check.require_https_unless_loopback("server.public_url", url);
        if url.path() != "/" || url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
            check.fail(
                "server.public_url",
                "must be an origin only (scheme, host, port), without path, query or credentials",
            );
        }
    }
    let public_origin = public_url.as_ref().map(|u| u.origin().ascii_serialization()).unwrap_or_default();
    let public_host = public_url
        .as_ref()
        .and_then(|u| {
            let host = u.host_str()?;
            let authority = match u.port() {
                Some(port) => format!("{host}:{port}"),
                None => host.to_string(),
            };
            http::HeaderValue::try_from(authority).ok()
        })
        .unwrap_or_else(|| http::HeaderValue::from_static("localhost"));

    let admin_token = check.secret("server.admin_token", raw.admin_token.clone(), raw.admin_token_file.clone());
    if admin_token.as_ref().is_some_and(|token| token.trim().len() < 32) {
        check.fail("server.admin_token", "must be at least 32 characters (openssl rand -hex 32)");
    }
    if admin_token.is_none() && !admin_listen.ip().is_loopback() {
        check.warn(format!(
            "server.admin_listen ({admin_listen}) is not loopback and server.admin_token_file is not set: the admin session endpoints (/sessions) refuse every call; health and metrics answer as before"
        ));
    }
    let forward_auth =
        check.secret("server.forward_auth_token", raw.forward_auth_token.clone(), raw.forward_auth_token_file.clone());
    if forward_auth.as_ref().is_some_and(|token| token.trim().len() < 32) {
        check.fail("server.forward_auth_token", "must be at least 32 characters (openssl rand -hex 32)");
    }
    if forward_auth.is_some() && trusted_proxies.is_empty() {
        check.fail(
            "server.forward_auth_token",
            "needs server.trusted_proxies: the gateways' addresses, the only callers whose X-Forwarded-Uri is believed",
        );
    }
    let config = ServerConfig {
        listen,
        public_origin,
        public_host,
        admin_listen,
        admin_token: admin_token.map(|token| crate::secret::Secret::new(token.trim().to_string())),
        shutdown_timeout,
        shutdown_delay,
        max_header_bytes: usize::try_from(max_header_bytes).unwrap_or(usize::MAX),
        max_connections: usize::try_from(raw.max_connections).unwrap_or(usize::MAX),
        max_connections_per_client: usize::try_from(raw.max_connections_per_client).unwrap_or(usize::MAX),
        header_read_timeout,
        trusted_proxies,
        trusted_proxy_header,
        tls,
        hsts,
        idle_timeout: connection_idle_timeout,
        worker_threads: usize::try_from(raw.worker_threads).ok().and_then(std::num::NonZeroUsize::new),
        forward_auth: forward_auth.map(|token| crate::secret::Secret::new(token.trim().to_string())),
    };
    (config, public_url)
}
