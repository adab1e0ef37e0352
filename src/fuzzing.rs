//! Entry points for `cargo fuzz` (the `fuzzing` feature; never in a release build). Each takes
//! arbitrary bytes, drives one parser or validator that faces untrusted input, and asserts the
//! properties that must hold whatever the input: no panic anywhere, and where there is an
//! oracle (the return-URL validator), the security property itself.

use crate::config::Config;
use crate::oidc::Provider;
use crate::session::SessionTicket;
use crate::session::seal::{KeyRing, MasterKey, Purpose};
use http::{HeaderMap, HeaderValue};
use std::sync::{Arc, OnceLock};

/// Session tickets and sealed records: parsing a cookie value, and opening arbitrary bytes as a
/// sealed record (what a tampered store would hand back). Nothing may open but what was sealed.
pub fn ticket(data: &[u8]) {
    let keys = KeyRing::new(vec![MasterKey::from_bytes([7; 32])]).expect("one key");
    if let Ok(text) = std::str::from_utf8(data)
        && let Some(ticket) = SessionTicket::parse(text)
    {
        assert_eq!(SessionTicket::parse(&ticket.encode()).map(|t| t.store_key()), Some(ticket.store_key()));
    }
    let fixed = SessionTicket::parse(&"A".repeat(86)).expect("a well-formed ticket");
    assert!(keys.open(Purpose::Session, fixed.secret(), fixed.store_key().as_bytes(), data).is_err());
}

/// The `Cookie` header, however many and however malformed, and the ticket in it.
pub fn cookie_header(data: &[u8]) {
    let Ok(value) = HeaderValue::from_bytes(data) else { return };
    let mut headers = HeaderMap::new();
    headers.append(http::header::COOKIE, value.clone());
    headers.append(http::header::COOKIE, value);
    if let Some(found) = crate::session::cookie::find(&headers, "__Host-cloakroom") {
        let _ = SessionTicket::parse(found);
    }
}

/// The callback's query string: each parameter once or refused.
pub fn callback_query(data: &str) {
    for name in ["state", "code", "iss", "error", "error_description"] {
        if let Ok(Some(value)) = crate::bff::query_param(Some(data), name) {
            assert!(data.contains(name) || data.contains('%'), "{name} found in a query without it");
            let _ = value;
        }
    }
}

/// The `returnUrl` validator: whatever it lets through must stay on the same origin.
pub fn return_url(data: &str) {
    let path = crate::bff::login::safe_return_path(Some(data));
    assert!(path.starts_with('/'), "{path:?}");
    let base = url::Url::parse("https://app.example/").expect("a URL");
    let landed = base.join(&path).expect("a relative path always joins");
    assert_eq!(landed.origin(), base.origin(), "{data:?} let the browser leave: {landed}");
}

/// The configuration file: every error reported with its key, never a panic.
pub fn config(data: &str) {
    if let Err(errors) = Config::from_toml(data, Vec::new()) {
        assert!(errors.0.iter().all(|e| !e.key.is_empty() || !e.message.is_empty()));
    }
}

/// Back-channel logout tokens, as the endpoint receives them, and claim sets as they would be
/// after a good signature.
pub fn logout_token(data: &[u8]) {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    let runtime =
        RUNTIME.get_or_init(|| tokio::runtime::Builder::new_current_thread().enable_all().build().expect("a runtime"));
    let provider = fuzz_provider();
    if let Ok(token) = std::str::from_utf8(data) {
        let _ = runtime.block_on(provider.verify_logout_token(token));
    }
    if let Ok(claims) = serde_json::from_slice::<serde_json::Value>(data) {
        let _ = provider.check_logout_claims(claims);
    }
}

fn fuzz_provider() -> Arc<Provider> {
    static PROVIDER: OnceLock<Arc<Provider>> = OnceLock::new();
    PROVIDER
        .get_or_init(|| {
            // A closed loopback port: a JWKS refetch on an unknown kid fails at once.
            let text = "[oidc]\nissuer = \"http://127.0.0.1:9\"\nclient_id = \"app\"\nclient_secret = \"s\"\n";
            let config = Config::from_toml(text, Vec::new()).expect("a valid config");
            let provider = Provider::new(config.oidc, Arc::new(crate::clock::SystemClock), Arc::default());
            provider.install_keys_for_fuzzing();
            Arc::new(provider)
        })
        .clone()
}
