//! Logging: `tracing` with a level filter, and the one access-log line per request.
//!
//! Nothing secret can reach a log line by accident: tokens, tickets and keys are types whose
//! `Debug`/`Display` redact ([`crate::secret::Secret`], `openidconnect` token types,
//! [`crate::session::SessionTicket`], [`crate::session::seal::MasterKey`]), the access log
//! records the path without its query (a callback's query holds the authorization code), and
//! no header is ever logged whole.

use std::str::FromStr;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::prelude::*;

/// `"info"`, or a filter like `"info,cloakroom=debug"`.
pub fn parse_filter(level: &str) -> Result<Targets, String> {
    Targets::from_str(level.trim()).map_err(|e| e.to_string())
}

/// Installs the global subscriber once; later calls (tests) keep the first.
/// `json`: one JSON object per line, for log shippers.
pub fn init(level: &str, json: bool) {
    let filter = parse_filter(level).unwrap_or_else(|_| Targets::new().with_default(tracing::Level::INFO));
    let registry = tracing_subscriber::registry().with(filter);
    let _ = if json {
        registry.with(tracing_subscriber::fmt::layer().json().with_target(true)).try_init()
    } else {
        registry.with(tracing_subscriber::fmt::layer().with_target(true)).try_init()
    };
}

/// The caller's `X-Request-Id` when it is a sane token (up to 128 of `A-Z a-z 0-9 . _ -`), so a
/// load balancer's id follows the request through; otherwise a fresh one. Anything else is
/// dropped rather than echoed into logs and headers.
pub fn request_id_from(incoming: Option<&http::HeaderValue>) -> http::HeaderValue {
    match incoming {
        Some(id)
            if !id.is_empty()
                && id.len() <= 128
                && id.as_bytes().iter().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(b)) =>
        {
            id.clone()
        }
        _ => http::HeaderValue::try_from(request_id()).expect("hex digits and a dash are a valid header value"),
    }
}

/// A per-request id: a random per-process prefix and a counter, cheap and unique enough to
/// correlate log lines.
pub fn request_id() -> String {
    use std::sync::OnceLock;
    use std::sync::atomic::{AtomicU64, Ordering};
    static PREFIX: OnceLock<u32> = OnceLock::new();
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let prefix = PREFIX.get_or_init(|| u32::from_ne_bytes(crate::session::seal::random_bytes()));
    format!("{prefix:08x}-{:x}", COUNTER.fetch_add(1, Ordering::Relaxed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn incoming_request_ids_are_kept_only_when_sane() {
        let keep = http::HeaderValue::from_static("lb-4f2a.9_x-1");
        assert_eq!(request_id_from(Some(&keep)), "lb-4f2a.9_x-1");
        for bad in ["", "has space", "semi;colon", "quote\"", &"a".repeat(129)] {
            let value = http::HeaderValue::try_from(bad).unwrap();
            assert_ne!(request_id_from(Some(&value)), bad, "{bad:?} kept");
        }
        assert_ne!(request_id_from(None), request_id_from(None));
    }
}
