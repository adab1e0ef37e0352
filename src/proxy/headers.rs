//! Header hygiene for forwarding, both directions.
//!
//! Requests: hop-by-hop headers and every name listed in `Connection` go; cloakroom's own
//! cookies go; on token routes the browser's `Authorization` goes (cloakroom attaches its own);
//! `X-Forwarded-*` and `Forwarded` are replaced with what cloakroom believes about the client
//! ([`crate::forwarded`]: the TCP peer, unless it is a trusted proxy).
//! Responses: hop-by-hop headers go, and so does any `Set-Cookie` for one of cloakroom's cookie
//! names, so an upstream cannot plant or clear the session ticket.

use crate::session::cookie::{self, CookiePolicy};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};

// Names as `HeaderName` constants: a `&str` name is parsed again on every lookup, and these
// run on every proxied request.
const KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
const PROXY_CONNECTION: HeaderName = HeaderName::from_static("proxy-connection");
const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// RFC 9110 §7.6.1 and the historical ones.
const COOKIE2: HeaderName = HeaderName::from_static("cookie2");

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

/// Whether a request header is one some server reads as the client's address, scheme, port,
/// host or path: the client's own would let it choose them, so each goes, whoever sent it
/// (cloakroom writes `X-Forwarded-For`, `-Proto` and `-Host` itself). `X-Forwarded-*` by
/// prefix (`-Port`, `-Prefix`, `-Ssl`, `-Scheme`, `-Server`, `-Uri` and whatever comes next);
/// the others by name: client-address headers of CDNs and load balancers, Microsoft's scheme
/// and IIS's path overrides.
fn is_forwarding_header(name: &HeaderName) -> bool {
    let name = name.as_str();
    name.starts_with("x-forwarded-")
        || matches!(
            name,
            "forwarded"
                | "x-real-ip"
                | "x-client-ip"
                | "client-ip"
                | "true-client-ip"
                | "cf-connecting-ip"
                | "fastly-client-ip"
                | "x-cluster-client-ip"
                | "x-original-forwarded-for"
                | "front-end-https"
                | "x-url-scheme"
                | "x-host"
                | "x-original-host"
                | "x-original-url"
                | "x-original-uri"
                | "x-rewrite-url"
        )
}

/// Removes every header [`is_forwarding_header`] names. One pass over the names; nothing is
/// allocated unless the request carries one.
fn remove_forwarding(headers: &mut HeaderMap) {
    let mut found: Vec<HeaderName> = Vec::new();
    for key in headers.keys() {
        if is_forwarding_header(key) {
            found.push(key.clone());
        }
    }
    for name in found {
        headers.remove(name);
    }
}

/// Everything done to a request's headers on the way upstream (pure, so that the fuzz target
/// drives exactly this): hop-by-hop headers out, cloakroom's cookies out, every header an
/// identity travels in (`identity_names`: no client speaks for a user, whatever the route)
/// out, the forwarding headers replaced with cloakroom's own, `Host` set to the upstream's, and
/// on token routes the browser's `Authorization` and `DPoP` out (cloakroom attaches its own
/// after, and the route's identity headers).
pub fn rewrite_request(
    headers: &mut HeaderMap,
    cookies: &CookiePolicy,
    forwarded: Forwarded<'_>,
    upstream_host: &HeaderValue,
    strip_authorization: bool,
    identity_names: &[HeaderName],
) {
    headers.reserve(4); // what is added below (and the token after), without regrowing twice
    // The client's `Connection` list names its own hop-by-hop headers, never one cloakroom is
    // responsible for: the request id `dispatch` set stays; the forwarding headers, `Host` and
    // the token are set after this.
    strip_listed(headers, Some(&X_REQUEST_ID));
    remove_present(headers, &HOP_BY_HOP);
    remove_present(headers, identity_names);
    strip_own_cookies(headers, cookies);
    // RFC 2965's `Cookie2` (obsolete; no browser sends it): a server that still reads it must
    // not get a ticket through it.
    headers.remove(COOKIE2);
    set_forwarded(headers, forwarded);
    headers.insert(header::HOST, upstream_host.clone());
    if strip_authorization {
        headers.remove(header::AUTHORIZATION);
        remove_present(headers, std::slice::from_ref(&DPOP));
    }
}

/// RFC 9449's proof header: cloakroom's own on DPoP routes, never the browser's.
pub const DPOP: HeaderName = HeaderName::from_static("dpop");

/// Everything done to a response's headers on the way back: hop-by-hop headers out, no
/// `Set-Cookie` for cloakroom's cookies, and, for an answer to a call that carried a token
/// (one user's data), `Cache-Control: private` when the upstream said nothing, so that no
/// shared cache keeps it for the next user.
pub fn rewrite_response(headers: &mut HeaderMap, cookies: &CookiePolicy, carried_token: bool) {
    strip_hop_by_hop(headers);
    strip_own_set_cookies(headers, cookies);
    if carried_token && !headers.contains_key(header::CACHE_CONTROL) {
        headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("private"));
    }
}

pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    strip_listed(headers, None);
    remove_present(headers, &HOP_BY_HOP);
}

/// The request id cloakroom sets on every request (`dispatch`), the one the logs show.
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// Removes the headers a `Connection` header lists, but `keep`.
fn strip_listed(headers: &mut HeaderMap, keep: Option<&HeaderName>) {
    if headers.contains_key(header::CONNECTION) {
        // As bytes: a name listed beside a non-ASCII byte is still a hop-by-hop name.
        let listed: Vec<HeaderName> = headers
            .get_all(header::CONNECTION)
            .iter()
            .flat_map(|v| v.as_bytes().split(|&b| b == b','))
            .filter_map(|name| HeaderName::from_bytes(name.trim_ascii()).ok())
            .filter(|name| Some(name) != keep)
            .collect();
        for name in listed {
            headers.remove(name);
        }
    }
}

/// Removes those of `names` that are present. One pass over the request's (few) names instead
/// of a hash lookup per listed name: most requests carry none of them. Nothing is allocated
/// (names past the 64th, which no configuration comes near, are removed whenever one is seen).
fn remove_present(headers: &mut HeaderMap, names: &[HeaderName]) {
    let (mut present, mut beyond) = (0u64, false);
    for key in headers.keys() {
        match names.iter().position(|name| name == key) {
            Some(i) if i < 64 => present |= 1 << i,
            Some(_) => beyond = true,
            None => {}
        }
    }
    for (i, name) in names.iter().enumerate() {
        if if i < 64 { present & (1 << i) != 0 } else { beyond } {
            headers.remove(name);
        }
    }
}

/// Rewrites the `Cookie` header without cloakroom's cookies (dropping it when nothing is left),
/// as one header: HTTP/2 clients may split cookies over several, which must be joined before
/// an HTTP/1.1 upstream (RFC 9113 §8.2.3). A single header holding none of ours is left as it is.
///
/// Read as bytes ([`crate::session::cookie`]): every byte a `Cookie` header can carry is read,
/// so no header passes untouched because part of it is not text. A pair goes when a loose reader
/// could take it for ours ([`CookiePolicy::may_hold_own`]). No allocation unless a header is
/// rewritten with cookies of the app's beside ours.
pub fn strip_own_cookies(headers: &mut HeaderMap, cookies: &CookiePolicy) {
    let mut values = headers.get_all(header::COOKIE).iter();
    let one_header = match (values.next(), values.next()) {
        (None, _) => return,
        (Some(_), None) => true,
        _ => false,
    };
    let (mut pairs, mut own) = (0usize, 0usize);
    for pair in cookie::pairs(headers) {
        pairs += 1;
        own += usize::from(cookies.may_hold_own(pair));
    }
    if own == 0 && one_header {
        return;
    }
    if own == pairs {
        // Only ours (the usual call from the SPA): nothing to keep, nothing to join.
        headers.remove(header::COOKIE);
        return;
    }
    let mut kept: Vec<u8> = Vec::new();
    for pair in cookie::pairs(headers).filter(|pair| !cookies.may_hold_own(pair)) {
        if !kept.is_empty() {
            kept.extend_from_slice(b"; ");
        }
        kept.extend_from_slice(pair);
    }
    headers.remove(header::COOKIE);
    // Pieces of valid header values joined by "; " are a valid header value; were it not, the
    // header stays removed (the safe side).
    if !kept.is_empty()
        && let Ok(value) = HeaderValue::from_maybe_shared(bytes::Bytes::from(kept))
    {
        headers.insert(header::COOKIE, value);
    }
}

pub struct Forwarded<'a> {
    /// `None`: unknown (behind a trusted proxy whose chain could not be read).
    pub client_ip: Option<std::net::IpAddr>,
    pub proto: &'static str,
    /// `public_url`'s host: never the request's own `Host`, which the client chooses.
    pub host: &'a HeaderValue,
}

/// Replaces whatever the client claimed with what cloakroom saw.
pub fn set_forwarded(headers: &mut HeaderMap, forwarded: Forwarded) {
    remove_forwarding(headers);
    let client = match forwarded.client_ip {
        Some(ip) => ip_value(ip),
        None => HeaderValue::from_static("unknown"),
    };
    headers.insert(X_FORWARDED_FOR, client);
    headers.insert(X_FORWARDED_PROTO, HeaderValue::from_static(forwarded.proto));
    headers.insert(X_FORWARDED_HOST, forwarded.host.clone());
}

/// An address as a header value, formatted on the stack (at most 45 bytes, IPv6 included;
/// IPv4, the common case, by hand: the formatting machinery costs more than the address).
fn ip_value(ip: std::net::IpAddr) -> HeaderValue {
    use std::io::Write;
    let mut buffer = [0u8; 64];
    let len = match ip {
        std::net::IpAddr::V4(v4) => {
            let mut len = 0;
            for (i, octet) in v4.octets().into_iter().enumerate() {
                if i > 0 {
                    buffer[len] = b'.';
                    len += 1;
                }
                let digits = [octet / 100, octet / 10 % 10, octet % 10];
                // Leading zeros left out: one digit under 100, two under 10.
                let skip = usize::from(octet < 100) + usize::from(octet < 10);
                for digit in &digits[skip..] {
                    buffer[len] = b'0' + digit;
                    len += 1;
                }
            }
            len
        }
        std::net::IpAddr::V6(_) => {
            let mut cursor = std::io::Cursor::new(&mut buffer[..]);
            let _ = write!(cursor, "{ip}");
            usize::try_from(cursor.position()).unwrap_or(0)
        }
    };
    HeaderValue::from_bytes(buffer.get(..len).unwrap_or_default()).unwrap_or(HeaderValue::from_static("unknown"))
}

/// Drops `Set-Cookie` headers that would set or clear one of cloakroom's cookies, or that a
/// browser may send back as one ([`CookiePolicy::set_cookie_may_plant_own`]).
pub fn strip_own_set_cookies(headers: &mut HeaderMap, cookies: &CookiePolicy) {
    if !headers.contains_key(header::SET_COOKIE) {
        return;
    }
    let refused = |value: &HeaderValue| cookies.set_cookie_may_plant_own(value.as_bytes());
    if !headers.get_all(header::SET_COOKIE).iter().any(refused) {
        return;
    }
    let kept: Vec<HeaderValue> = headers.get_all(header::SET_COOKIE).iter().filter(|v| !refused(v)).cloned().collect();
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
    use ::cookie::SameSite;

    use super::header_map as map;

    fn policy() -> CookiePolicy {
        CookiePolicy::new("__Host-cloakroom", SameSite::Strict)
    }

    #[test]
    fn addresses_are_written_as_the_standard_library_writes_them() {
        for ip in ["0.0.0.0", "127.0.0.1", "10.9.99.100", "255.255.255.255", "1.20.200.9", "::1", "2001:db8::7"] {
            let parsed: std::net::IpAddr = ip.parse().unwrap();
            assert_eq!(ip_value(parsed), parsed.to_string().as_str(), "{ip}");
            assert_eq!(ip_value(parsed), ip);
        }
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
    fn own_cookies_go_whatever_bytes_stand_beside_them() {
        // Finding 1 of the outside review: a UTF-8 cookie made the header unreadable as text,
        // and it went upstream whole, ticket included.
        type Case<'a> = (&'a [&'a [u8]], Option<&'a [u8]>);
        let cases: [Case; 6] = [
            (&[b"lang=fran\xc3\xa7ais; __Host-cloakroom=TICKET"], Some(b"lang=fran\xc3\xa7ais")),
            (&[b"__Host-cloakroom=TICKET;x=\xff"], Some(b"x=\xff")),
            (&[b"lang=fran\xc3\xa7ais", b"__Host-cloakroom=TICKET"], Some(b"lang=fran\xc3\xa7ais")),
            (&[b"a=1, __Host-cloakroom=TICKET; b=2"], Some(b"b=2")),
            (&[b"\t__Host-cloakroom\t=TICKET"], None),
            (&[b"__Host-cloakroom-login-abc=S; \x80=\x80"], Some(b"\x80=\x80")),
        ];
        for (values, expected) in cases {
            let mut headers = HeaderMap::new();
            for value in values {
                headers.append(header::COOKIE, HeaderValue::from_bytes(value).unwrap());
            }
            strip_own_cookies(&mut headers, &policy());
            let left: Vec<&[u8]> = headers.get_all(header::COOKIE).iter().map(HeaderValue::as_bytes).collect();
            assert_eq!(left, expected.into_iter().collect::<Vec<_>>(), "{values:?}");
            assert!(!left.iter().any(|v| v.windows(6).any(|w| w == b"TICKET")), "{values:?}");
        }
    }

    #[test]
    fn the_clients_connection_list_removes_none_of_cloakrooms_headers() {
        // Issue 26, item 4: `Connection: keep-alive, x-request-id` left the upstream without the
        // request id the logs show; a listed forwarding header or `Host` is set again after.
        let mut headers = map(&[
            ("connection", "keep-alive, x-request-id, x-forwarded-for, host, authorization, x-app"),
            ("x-request-id", "cloakroom-made"),
            ("x-app", "1"),
            ("x-kept", "1"),
        ]);
        let cookies = CookiePolicy::new("__Host-Http-cloakroom", ::cookie::SameSite::Strict);
        let forwarded =
            Forwarded { client_ip: Some([127, 0, 0, 1].into()), proto: "http", host: &HeaderValue::from_static("app") };
        rewrite_request(&mut headers, &cookies, forwarded, &HeaderValue::from_static("upstream:1"), true, &[]);
        assert_eq!(headers["x-request-id"], "cloakroom-made");
        assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
        assert_eq!(headers["host"], "upstream:1");
        assert!(!headers.contains_key("x-app") && !headers.contains_key("connection"), "the client's own go");
        assert_eq!(headers["x-kept"], "1");
    }

    #[test]
    fn no_identity_header_of_the_clients_goes_upstream() {
        let mut headers = map(&[("x-auth-request-user", "admin"), ("X-User-Id", "admin"), ("x-kept", "1")]);
        let cookies = CookiePolicy::new("__Host-Http-cloakroom", ::cookie::SameSite::Strict);
        let forwarded =
            Forwarded { client_ip: Some([127, 0, 0, 1].into()), proto: "http", host: &HeaderValue::from_static("app") };
        let names = [HeaderName::from_static("x-auth-request-user"), HeaderName::from_static("x-user-id")];
        rewrite_request(&mut headers, &cookies, forwarded, &HeaderValue::from_static("upstream:1"), true, &names);
        assert!(!headers.contains_key("x-auth-request-user") && !headers.contains_key("x-user-id"));
        assert_eq!(headers["x-kept"], "1");
    }

    #[test]
    fn cookie2_never_goes_upstream() {
        let mut headers = map(&[("cookie2", "__Host-Http-cloakroom=TICKET"), ("cookie", "theme=dark")]);
        let cookies = CookiePolicy::new("__Host-Http-cloakroom", ::cookie::SameSite::Strict);
        let forwarded =
            Forwarded { client_ip: Some([127, 0, 0, 1].into()), proto: "http", host: &HeaderValue::from_static("app") };
        rewrite_request(&mut headers, &cookies, forwarded, &HeaderValue::from_static("upstream:1"), true, &[]);
        assert!(!headers.contains_key("cookie2"));
        assert_eq!(headers["cookie"], "theme=dark");
    }

    #[test]
    fn forwarded_headers_are_replaced_not_appended() {
        let mut headers = map(&[
            ("x-forwarded-for", "6.6.6.6"),
            ("forwarded", "for=6.6.6.6"),
            ("x-real-ip", "6.6.6.6"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-port", "443"),
            ("x-forwarded-prefix", "/admin"),
            ("x-forwarded-ssl", "on"),
            ("x-forwarded-scheme", "https"),
            ("true-client-ip", "6.6.6.6"),
            ("cf-connecting-ip", "6.6.6.6"),
            ("x-original-url", "/admin"),
            ("x-rewrite-url", "/admin"),
            ("front-end-https", "on"),
            ("accept", "*/*"),
        ]);
        set_forwarded(
            &mut headers,
            Forwarded {
                client_ip: Some([127, 0, 0, 1].into()),
                proto: "http",
                host: &HeaderValue::from_static("app.example"),
            },
        );
        assert_eq!(headers["x-forwarded-for"], "127.0.0.1");
        let mut v6 = HeaderMap::new();
        let longest: std::net::IpAddr = "ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255".parse().unwrap();
        let host = HeaderValue::from_static("app.example:8443");
        set_forwarded(&mut v6, Forwarded { client_ip: Some(longest), proto: "https", host: &host });
        assert_eq!(v6["x-forwarded-host"], "app.example:8443");
        let mut unknown = HeaderMap::new();
        set_forwarded(&mut unknown, Forwarded { client_ip: None, proto: "https", host: &host });
        assert_eq!(unknown["x-forwarded-for"], "unknown");
        assert_eq!(v6["x-forwarded-for"], "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff");
        assert_eq!(headers["x-forwarded-proto"], "http");
        assert_eq!(headers["x-forwarded-host"], "app.example");
        let mut names: Vec<&str> = headers.keys().map(HeaderName::as_str).collect();
        names.sort_unstable();
        assert_eq!(names, ["accept", "x-forwarded-for", "x-forwarded-host", "x-forwarded-proto"]);
    }

    #[test]
    fn upstreams_cannot_set_our_cookies() {
        let mut headers = map(&[
            ("set-cookie", "__Host-cloakroom=planted; Path=/; Secure"),
            ("set-cookie", "__Host-cloakroom-login-x=planted"),
            ("set-cookie", "app=1; Path=/"),
            ("set-cookie", "=__Host-cloakroom=planted; Path=/"),
            ("set-cookie", " =__Host-cloakroom=planted"),
            ("set-cookie", "__Host-cloakroom; Path=/"),
            ("set-cookie", "\t__Host-cloakroom\t=planted"),
            ("set-cookie", "__HOST-CLOAKROOM=planted"),
            ("set-cookie", "__Host%2Dcloakroom=planted"),
            ("set-cookie", "a=1, __Host-cloakroom=planted; Path=/"),
            ("set-cookie", "b=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT"),
        ]);
        strip_own_set_cookies(&mut headers, &policy());
        let values: Vec<&str> = headers.get_all("set-cookie").iter().map(|v| v.to_str().unwrap()).collect();
        assert_eq!(values, ["app=1; Path=/", "b=2; Expires=Wed, 21 Oct 2037 07:28:00 GMT"]);
    }
}
