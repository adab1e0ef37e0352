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
pub fn init(level: &str) {
    let filter = parse_filter(level).unwrap_or_else(|_| Targets::new().with_default(tracing::Level::INFO));
    let _ =
        tracing_subscriber::registry().with(tracing_subscriber::fmt::layer().with_target(true)).with(filter).try_init();
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
