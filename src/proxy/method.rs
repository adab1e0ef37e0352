//! Which methods a route forwards: its allowlist, and any method an upstream framework would take
//! instead of the request's own, asked for in a header or in the query string.

use crate::config::MethodAllowlist;
use http::{HeaderMap, HeaderName, Method};

/// Headers some frameworks take for the request's real method (Express's method-override,
/// Spring, ASP.NET, Google's APIs): a `POST` carrying `X-HTTP-Method-Override: DELETE` is a
/// `DELETE` there.
const OVERRIDE_HEADERS: [HeaderName; 3] = [
    HeaderName::from_static("x-http-method-override"),
    HeaderName::from_static("x-http-method"),
    HeaderName::from_static("x-method-override"),
];

/// Query keys frameworks read as the method, as [`query_key`] folds them: `_method` (Laravel
/// and Symfony with parameter override, Express's `method-override('_method')`, Spring's
/// `HiddenHttpMethodFilter`, CakePHP) and the override headers' names used as keys.
const OVERRIDE_KEYS: [&[u8]; 4] = [b"_method", b"x_http_method_override", b"x_http_method", b"x_method_override"];

/// `CONNECT`, `TRACE` and IIS's `TRACK`, in any case: methods no route forwards (one would
/// open a tunnel, the others echo the credentials; some servers read methods without case).
pub fn never_forwarded(name: &str) -> bool {
    ["CONNECT", "TRACE", "TRACK"].iter().any(|refused| name.eq_ignore_ascii_case(refused))
}

/// Whether a call's method, or any method a header or query key asks an upstream to use
/// instead, is one the route does not forward: outside its allowlist, or one no route forwards
/// (`CONNECT`, `TRACE`, `TRACK`, which `dispatch` refuses as request methods). Overrides are
/// read without case, as the frameworks do; one that is not a method name at all is refused.
pub fn refused(method: &Method, headers: &HeaderMap, query: Option<&str>, allowed: Option<&MethodAllowlist>) -> bool {
    if allowed.is_some_and(|allowed| !allowed.permits(method)) {
        return true;
    }
    // One pass over the call's (few) headers, every value of each, instead of a hash lookup
    // per override name.
    headers.iter().any(|(name, value)| OVERRIDE_HEADERS.contains(name) && override_refused(value.as_bytes(), allowed))
        || query.is_some_and(|query| query_override_refused(query.as_bytes(), allowed))
}

fn override_refused(value: &[u8], allowed: Option<&MethodAllowlist>) -> bool {
    let mut upper = [0u8; 32];
    let name = value.trim_ascii();
    let Some(upper) = upper.get_mut(..name.len()) else { return true };
    for (to, from) in upper.iter_mut().zip(name) {
        *to = from.to_ascii_uppercase();
    }
    match Method::from_bytes(upper) {
        Ok(method) if never_forwarded(method.as_str()) => true,
        Ok(method) => allowed.is_some_and(|allowed| !allowed.permits(&method)),
        Err(_) => true,
    }
}

/// A method override in the query string (`?_method=DELETE`), read as the loosest framework
/// reads a query: pairs split on `&` or `;`, `+` as a space, escapes decoded, the key folded as
/// PHP does (spaces, dots and `[` become `_`; `-` and `+` too) and without case. Most queries name no method at
/// all and are passed over with one scan.
fn query_override_refused(query: &[u8], allowed: Option<&MethodAllowlist>) -> bool {
    if !query.contains(&b'%') && !query.windows(6).any(|w| w.eq_ignore_ascii_case(b"method")) {
        return false;
    }
    query.split(|&b| b == b'&' || b == b';').any(|pair| {
        let (key, value) = match pair.iter().position(|&b| b == b'=') {
            Some(at) => (&pair[..at], &pair[at + 1..]),
            None => (pair, &b""[..]),
        };
        let key = query_key(key);
        OVERRIDE_KEYS.iter().any(|known| key == *known) && override_refused(&form_decode(value), allowed)
    })
}

/// A query key as the loosest framework reads it (see [`query_override_refused`]).
fn query_key(key: &[u8]) -> Vec<u8> {
    form_decode(key)
        .iter()
        .map(|&b| match b {
            b' ' | b'.' | b'[' | b'-' | b'+' => b'_',
            b => b.to_ascii_lowercase(),
        })
        .collect()
}

/// `application/x-www-form-urlencoded` decoding: `+` is a space, `%XX` a byte, decoded again
/// while anything is left to decode (a few times at most: the safe side of a framework that
/// decodes once more than expected).
fn form_decode(bytes: &[u8]) -> Vec<u8> {
    let mut level: Vec<u8> = bytes.iter().map(|&b| if b == b'+' { b' ' } else { b }).collect();
    for _ in 0..4 {
        let decoded: Vec<u8> = percent_encoding::percent_decode(&level).collect();
        if decoded == level {
            break;
        }
        level = decoded;
    }
    level
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allow(methods: &[&str]) -> MethodAllowlist {
        let allow = methods.join(", ").parse().unwrap();
        MethodAllowlist { methods: methods.iter().map(|m| m.parse().unwrap()).collect(), allow }
    }

    #[test]
    fn a_query_string_override_outside_the_allowlist_is_refused() {
        // Issue 26, item 2: `POST /api/payments/x?_method=DELETE` on a POST-only route.
        let post = allow(&["POST"]);
        let headers = HeaderMap::new();
        for query in [
            "_method=DELETE",
            "a=1&_method=delete",
            "_METHOD=PUT",
            "%5Fmethod=DELETE",
            "_method=%44ELETE",
            "x=1;_method=DELETE",
            ".method=DELETE",
            "+method=DELETE",
            "_method=+DELETE+",
            "x-http-method-override=PATCH",
            "X_HTTP_METHOD=PUT",
            "_method=",
            "_method=NOT A METHOD",
            "%255Fmethod=%2544ELETE",
            "%2Bmethod=PUT",
        ] {
            assert!(refused(&Method::POST, &headers, Some(query), Some(&post)), "{query}");
        }
        for query in ["_method=TRACE", "_method=track", "_method=CONNECT"] {
            assert!(refused(&Method::GET, &headers, Some(query), None), "{query}: refused on every route");
        }
        for query in ["_method=POST", "method=card", "payment_method=DELETE", "a=_method", "q=method%20x", ""] {
            assert!(!refused(&Method::POST, &headers, Some(query), Some(&post)), "{query}");
        }
        assert!(
            !refused(&Method::POST, &headers, Some("_method=DELETE"), None),
            "no allowlist: any method but the three"
        );
    }

    #[test]
    fn a_header_override_outside_the_allowlist_is_refused() {
        let post = allow(&["POST"]);
        let mut headers = HeaderMap::new();
        headers.insert("x-http-method-override", "delete".parse().unwrap());
        assert!(refused(&Method::POST, &headers, None, Some(&post)));
        assert!(!refused(&Method::POST, &headers, None, None));
        headers.insert("x-http-method-override", "trace".parse().unwrap());
        assert!(refused(&Method::POST, &headers, None, None));
        // Each name, and a refused value after an allowed one of the same name.
        for name in ["x-http-method-override", "x-http-method", "x-method-override"] {
            let mut headers = HeaderMap::new();
            headers.insert("accept", "*/*".parse().unwrap());
            headers.append(name, "POST".parse().unwrap());
            assert!(!refused(&Method::POST, &headers, None, Some(&post)), "{name}: POST");
            headers.append(name, "PUT".parse().unwrap());
            assert!(refused(&Method::POST, &headers, None, Some(&post)), "{name}: a second value");
        }
    }
}
