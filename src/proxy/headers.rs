//! Header hygiene for forwarding, both directions.
//!
//! Requests: hop-by-hop headers and every name listed in `Connection` go; cloakroom's own
//! cookies go; on token routes the browser's `Authorization` goes (cloakroom attaches its own);
//! `X-Forwarded-*` and `Forwarded` are replaced with what cloakroom believes about the client
//! ([`crate::forwarded`]: the TCP peer, unless it is a trusted proxy).
//! Responses: hop-by-hop headers go, and so does any `Set-Cookie` for one of cloakroom's cookie
//! names, so an upstream cannot plant or clear the session ticket.

use crate::session::cookie::CookiePolicy;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

/// RFC 9110 §7.6.1 and the historical ones.
const HOP_BY_HOP: &[&str] = &[
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "proxy-connection",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

const FORWARDED: &[&str] = &["forwarded", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto", "x-real-ip"];

pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let listed: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .collect();
    for name in listed {
        headers.remove(name);
    }
    for name in HOP_BY_HOP {
        headers.remove(*name);
    }
}

/// Rewrites the `Cookie` header without cloakroom's cookies (dropping it when nothing is left).
pub fn strip_own_cookies(headers: &mut HeaderMap, cookies: &CookiePolicy) {
    if !headers.contains_key(header::COOKIE) {
        return;
    }
    let kept: Vec<String> = headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .map(str::trim)
        .filter(|pair| !pair.is_empty())
        .filter(|pair| !cookies.is_own(pair.split_once('=').map_or(*pair, |(name, _)| name)))
        .map(String::from)
        .collect();
    headers.remove(header::COOKIE);
    if !kept.is_empty()
        && let Ok(value) = HeaderValue::try_from(kept.join("; "))
    {
        headers.insert(header::COOKIE, value);
    }
}

pub struct Forwarded<'a> {
    pub client_ip: String,
    pub proto: &'static str,
    pub host: Option<&'a str>,
}

/// Replaces whatever the client claimed with what cloakroom saw.
pub fn set_forwarded(headers: &mut HeaderMap, forwarded: &Forwarded<'_>) {
    for name in FORWARDED {
        headers.remove(*name);
    }
    if let Ok(v) = HeaderValue::try_from(forwarded.client_ip.as_str()) {
        headers.insert("x-forwarded-for", v);
    }
    headers.insert("x-forwarded-proto", HeaderValue::from_static(forwarded.proto));
    if let Some(host) = forwarded.host.and_then(|h| HeaderValue::try_from(h).ok()) {
        headers.insert("x-forwarded-host", host);
    }
}

/// Drops `Set-Cookie` headers that would set or clear one of cloakroom's cookies.
pub fn strip_own_set_cookies(headers: &mut HeaderMap, cookies: &CookiePolicy) {
    if !headers.contains_key(header::SET_COOKIE) {
        return;
    }
    let kept: Vec<HeaderValue> = headers
        .get_all(header::SET_COOKIE)
        .iter()
        .filter(|v| {
            let text = String::from_utf8_lossy(v.as_bytes());
            let name = text.split_once('=').map_or(text.as_ref(), |(name, _)| name).trim();
            !cookies.is_own(name)
        })
        .cloned()
        .collect();
    headers.remove(header::SET_COOKIE);
    for value in kept {
        headers.append(header::SET_COOKIE, value);
    }
}

/// A header map from literal pairs, repeats kept (for tests across modules).
#[cfg(test)]
pub(crate) fn header_map(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in pairs {
        headers.append(*name, HeaderValue::from_static(value));
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use cookie::SameSite;

    use super::header_map as map;

    fn policy() -> CookiePolicy {
        CookiePolicy::new("__Host-cloakroom", SameSite::Strict)
    }

    #[test]
    fn hop_by_hop_and_connection_listed_headers_go() {
        let mut headers = map(&[
            ("connection", "keep-alive, x-secret-hop"),
            ("keep-alive", "timeout=5"),
            ("x-secret-hop", "1"),
            ("te", "trailers"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "h2c"),
            ("proxy-authorization", "Basic x"),
            ("accept", "application/json"),
        ]);
        strip_hop_by_hop(&mut headers);
        let names: Vec<&str> = headers.keys().map(|k| k.as_str()).collect();
        assert_eq!(names, ["accept"]);
    }

    #[test]
    fn own_cookies_never_go_upstream() {
        let mut headers = map(&[
            ("cookie", "theme=dark; __Host-cloakroom=TICKET; __Host-cloakroom-login-abc=SECRET"),
            ("cookie", "lang=en"),
        ]);
        strip_own_cookies(&mut headers, &policy());
        assert_eq!(headers.get_all("cookie").iter().count(), 1);
        assert_eq!(headers["cookie"], "theme=dark; lang=en");

        let mut only_ours = map(&[("cookie", "__Host-cloakroom=TICKET")]);
        strip_own_cookies(&mut only_ours, &policy());
        assert!(!only_ours.contains_key("cookie"));
    }

    #[test]
    fn forwarded_headers_are_replaced_not_appended() {
        let mut headers = map(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("forwarded", "for=6.6.6.6"),
            ("x-real-ip", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
        ]);
        set_forwarded(
            &mut headers,
            &Forwarded { client_ip: "127.0.0.1".into(), proto: "http", host: Some("app.example") },
        );
        assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert_eq!(headers["x-forwarded-host"], "app.example");
        assert!(!headers.contains_key("forwarded") && !headers.contains_key("x-real-ip"));
    }

    #[test]
    fn upstreams_cannot_set_our_cookies() {
        let mut headers = map(&[
            ("set-cookie", "__Host-cloakroom=planted; Path=/; Secure"),
            ("set-cookie", "__Host-cloakroom-login-x=planted"),
            ("set-cookie", "app=1; Path=/"),
        ]);
        strip_own_set_cookies(&mut headers, &policy());
        let values: Vec<&str> = headers.get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect();
        assert_eq!(values, ["app=1; Path=/"]);
    }
}
