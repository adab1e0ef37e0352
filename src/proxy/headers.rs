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

// Names as `HeaderName` constants: a `&str` name is parsed again on every lookup, and these
// run on every proxied request.
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
const X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");

/// RFC 9110 §7.6.1 and the historical ones.
const HOP_BY_HOP: [HeaderName; 9] = [
    header::CONNECTION,
    KEEP_ALIVE,
    header::PROXY_AUTHENTICATE,
    header::PROXY_AUTHORIZATION,
    PROXY_CONNECTION,
    header::TE,
    header::TRAILER,
    header::TRANSFER_ENCODING,
    header::UPGRADE,
];

const FORWARDED: [HeaderName; 5] = [header::FORWARDED, X_FORWARDED_FOR, X_FORWARDED_HOST, X_FORWARDED_PROTO, X_REAL_IP];

pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    if headers.contains_key(header::CONNECTION) {
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
    }
    for name in &HOP_BY_HOP {
        headers.remove(name);
    }
}

/// Rewrites the `Cookie` header without cloakroom's cookies (dropping it when nothing is left),
/// as one header: HTTP/2 clients may split cookies over several, which must be joined before
/// an HTTP/1.1 upstream (RFC 9113 §8.2.3). A single header holding none of ours is left as it is.
pub fn strip_own_cookies(headers: &mut HeaderMap, cookies: &CookiePolicy) {
    let pairs = || {
        headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(';'))
            .map(str::trim)
            .filter(|pair| !pair.is_empty())
    };
    let is_own = |pair: &&str| cookies.is_own(pair.split_once('=').map_or(*pair, |(name, _)| name));
    let mut values = headers.get_all(header::COOKIE).iter();
    match (values.next(), values.next()) {
        (None, _) => return,
        (Some(_), None) if !pairs().any(|pair| is_own(&pair)) => return,
        _ => {}
    }
    let mut kept = String::new();
    for pair in pairs().filter(|pair| !is_own(pair)) {
        if !kept.is_empty() {
            kept.push_str("; ");
        }
        kept.push_str(pair);
    }
    headers.remove(header::COOKIE);
    if !kept.is_empty()
        && let Ok(value) = HeaderValue::try_from(kept)
    {
        headers.insert(header::COOKIE, value);
    }
}

pub struct Forwarded {
    pub client_ip: std::net::IpAddr,
    pub proto: &'static str,
    /// The `Host` the browser asked for.
    pub host: Option<HeaderValue>,
}

/// Replaces whatever the client claimed with what cloakroom saw.
pub fn set_forwarded(headers: &mut HeaderMap, forwarded: Forwarded) {
    for name in &FORWARDED {
        headers.remove(name);
    }
    headers.insert(X_FORWARDED_FOR, ip_value(forwarded.client_ip));
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(forwarded.proto));
    if let Some(host) = forwarded.host {
        headers.insert(X_FORWARDED_HOST, host);
    }
}

/// An address as a header value, formatted on the stack (at most 45 bytes, IPv6 included).
fn ip_value(ip: std::net::IpAddr) -> HeaderValue {
    use std::io::Write;
    let mut buffer = [0u8; 64];
    let mut cursor = std::io::Cursor::new(&mut buffer[..]);
    let _ = write!(cursor, "{ip}");
    let len = usize::try_from(cursor.position()).unwrap_or(0);
    HeaderValue::from_bytes(&buffer[..len]).expect("an IP address is a valid header value")
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

        let mut none_ours = map(&[("cookie", "theme=dark;lang=en")]);
        strip_own_cookies(&mut none_ours, &policy());
        assert_eq!(none_ours["cookie"], "theme=dark;lang=en", "left as it was");

        // HTTP/2 crumbs are joined into one header even when none of them is ours.
        let mut crumbs = map(&[("cookie", "theme=dark"), ("cookie", "lang=en")]);
        strip_own_cookies(&mut crumbs, &policy());
        assert_eq!(crumbs.get_all("cookie").iter().count(), 1);
        assert_eq!(crumbs["cookie"], "theme=dark; lang=en");

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
            Forwarded {
                client_ip: [127, 0, 0, 1].into(),
                proto: "http",
                host: Some(HeaderValue::from_static("app.example")),
            },
        );
        assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
        let mut v6 = HeaderMap::new();
        let longest: std::net::IpAddr = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255".parse().unwrap();
        set_forwarded(&mut v6, Forwarded { client_ip: longest, proto: "https", host: None });
        assert_eq!(v6["x-forwarded-for"], "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
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
