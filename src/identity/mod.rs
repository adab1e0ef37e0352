//! Who the signed-in user is, for upstreams that take no OAuth token (`[routes.identity]`):
//! claims as headers (the `X-Auth-Request-*` set by default, as oauth2-proxy sends them), and a
//! signed assertion ([`assertion`]) an upstream verifies against the JWKS cloakroom publishes.
//!
//! Header values are the claims' values, made safe for a header: every byte outside visible
//! ASCII (controls, space, anything not ASCII), `%` and `,` is percent-encoded (UTF-8), so an
//! upstream percent-decodes every value, always. An array's elements are joined with `,`; an
//! object is sent as its JSON text (encoded the same way); a claim the session does not hold
//! sends the header empty. The same names arriving from the client are removed on every route
//! ([`spoofable`]), signed in or not.

pub mod assertion;

use crate::config::{ASSERTION_HEADER, DEFAULT_IDENTITY_HEADERS, IdentityConfig, RouteConfig};
use http::{HeaderName, HeaderValue};
use percent_encoding::{AsciiSet, CONTROLS, utf8_percent_encode};
use serde_json::{Map, Value};

/// Longest value an identity header carries; a longer claim sends the header empty (logged).
const MAX_VALUE: usize = 8 * 1024;

/// What is encoded in a value: controls, space, `%` (the escape itself) and `,` (the element
/// separator); non-ASCII is always encoded.
const ENCODED: &AsciiSet = &CONTROLS.add(b' ').add(b'%').add(b',');

/// The claims as a session holds them, decoded once for the headers and the assertion.
pub type Claims = Map<String, Value>;

/// The identity headers and the assertion of one call, ready to set.
#[derive(Debug, Default)]
pub struct Identity {
    pub headers: Vec<(HeaderName, HeaderValue)>,
}

impl Identity {
    /// The route's headers from `claims` (and its assertion, signed by `signer`).
    pub fn of(
        config: &IdentityConfig,
        claims: &Claims,
        signer: &assertion::Signer,
        issuer: &str,
        now: u64,
    ) -> Identity {
        let mut headers = Vec::with_capacity(config.headers.len() + 1);
        for (name, claim) in &config.headers {
            headers.push((name.clone(), header_value(claims.get(claim), claim)));
        }
        if let Some(audience) = &config.assertion {
            let picked = config.headers.iter().filter_map(|(_, c)| Some((c.as_str(), claims.get(c)?)));
            let signed = signer.sign(issuer, audience, claims.get("sub"), picked, now);
            // A JWT is base64url and dots: always a header value.
            if let Some(mut value) = signed.and_then(|jwt| HeaderValue::try_from(jwt).ok()) {
                value.set_sensitive(true);
                headers.push((HeaderName::from_static(ASSERTION_HEADER), value));
            }
        }
        Identity { headers }
    }

    /// Sets every header on `target`, replacing what was there.
    pub fn apply(&self, target: &mut http::HeaderMap) {
        for (name, value) in &self.headers {
            target.insert(name.clone(), value.clone());
        }
    }
}

/// A claim's value as a header value, per the rule of this module; empty when absent.
fn header_value(value: Option<&Value>, claim: &str) -> HeaderValue {
    let text = match value {
        None | Some(Value::Null) => String::new(),
        Some(Value::Array(items)) => items.iter().map(encode).collect::<Vec<_>>().join(","),
        Some(value) => encode(value),
    };
    if text.len() > MAX_VALUE {
        tracing::warn!(claim, "a claim is too long for an identity header; the header goes empty");
        return HeaderValue::from_static("");
    }
    // Visible ASCII only, by construction.
    HeaderValue::try_from(text).unwrap_or_else(|_| HeaderValue::from_static(""))
}

fn encode(value: &Value) -> String {
    match value {
        Value::String(text) => utf8_percent_encode(text, ENCODED).to_string(),
        other => utf8_percent_encode(&other.to_string(), ENCODED).to_string(),
    }
}

/// Every header name an identity may travel in, on any route: removed from every request on
/// its way upstream, so that no client can speak for a user.
pub fn spoofable(routes: &[RouteConfig]) -> Vec<HeaderName> {
    let mut names: Vec<HeaderName> = DEFAULT_IDENTITY_HEADERS
        .iter()
        .map(|(name, _)| HeaderName::from_static(name))
        .chain(std::iter::once(HeaderName::from_static(ASSERTION_HEADER)))
        .collect();
    for route in routes {
        for (name, _) in route.identity.iter().flat_map(|identity| identity.headers.iter()) {
            if !names.contains(name) {
                names.push(name.clone());
            }
        }
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn value(claim: Value) -> String {
        header_value(Some(&claim), "c").to_str().unwrap().to_string()
    }

    #[test]
    fn values_that_are_not_safe_in_a_header_are_encoded_never_sent_raw() {
        assert_eq!(value(json!("alice@example.com")), "alice@example.com");
        assert_eq!(value(json!("a\r\nX-Admin: yes")), "a%0D%0AX-Admin:%20yes");
        assert_eq!(value(json!("Zoë 100%")), "Zo%C3%AB%20100%25");
        assert_eq!(value(json!("\u{0}")), "%00");
        assert_eq!(value(json!(["admins", "a,b", "ü"])), "admins,a%2Cb,%C3%BC");
        assert_eq!(value(json!(42)), "42");
        assert_eq!(value(json!(true)), "true");
        assert_eq!(value(json!({"k": "v w"})), "{\"k\":\"v%20w\"}");
        assert_eq!(header_value(None, "c"), "");
        assert_eq!(header_value(Some(&Value::Null), "c"), "");
        assert_eq!(value(json!("x".repeat(MAX_VALUE + 1))), "", "too long: sent empty, never cut");
    }
}
