//! Entry points for `cargo fuzz` (the `fuzzing` feature; never in a release build). Each takes
//! arbitrary bytes, drives one parser or validator that faces untrusted input, and asserts the
//! properties that must hold whatever the input: no panic anywhere, and where there is an
//! oracle (the return-URL validator), the security property itself.

use crate::config::Config;
use crate::crypto::seal::{KeyRing, MasterKey, Purpose};
use crate::oidc::Provider;
use crate::session::SessionTicket;
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
        let _ = std::str::from_utf8(found).ok().and_then(SessionTicket::parse);
    }
}

/// One whole request as cloakroom's request path sees it, built from arbitrary bytes: the first
/// byte chooses the shape (bit 0: HTTP/2, whose `cookie` fields arrive as crumbs; bit 1: from a
/// trusted proxy; bit 2: proxies write `Forwarded` rather than `X-Forwarded-For`), then a line
/// with the method, a line with the request target, and `name: value` lines of raw header bytes.
/// It goes through what [`crate::dispatch::handle`] decides before routing, the router, client
/// address, CSRF guard, session-cookie lookup, and the header rewriting both ways, and the
/// invariants are checked by oracles written apart from the code they check:
/// - no panic anywhere;
/// - a path that some server could read as leaving its prefix, or as inside a route nested
///   in the one it matched, is never routed;
/// - no cookie pair of the upstream request could be read as one of cloakroom's, whatever the
///   reader's splitting rules;
/// - the forwarding headers upstream are exactly cloakroom's own (one of each, the client as
///   cloakroom believes it, `public_url`'s host), and an untrusted peer is the client;
/// - no `Set-Cookie` passed back could set or plant one of cloakroom's cookies.
pub fn request(data: &[u8]) {
    use crate::forwarded::{ForwardingHeader, client_addr};
    use crate::proxy::headers::{Forwarded, rewrite_request, rewrite_response};
    use http::{HeaderName, Method, Request, Uri, Version};
    let Some((&shape, rest)) = data.split_first() else { return };
    let mut lines = rest.split(|&b| b == b'\n');
    let (Some(method), Some(target)) = (lines.next(), lines.next()) else { return };
    let Ok(method) = Method::from_bytes(method) else { return };
    // What hyper would have parsed: a target that is no URI never reaches cloakroom.
    let Ok(uri) = Uri::from_maybe_shared(bytes::Bytes::copy_from_slice(target)) else { return };
    let h2 = shape & 1 != 0;
    let version = if h2 { Version::HTTP_2 } else { Version::HTTP_11 };
    let mut request = Request::builder().method(method).uri(uri).version(version).body(()).expect("parts are valid");
    for line in lines {
        let Some(colon) = line.iter().position(|&b| b == b':') else { continue };
        let (Ok(name), Ok(value)) =
            (HeaderName::from_bytes(&line[..colon]), HeaderValue::from_bytes(line[colon + 1..].trim_ascii()))
        else {
            continue;
        };
        if h2 && name == http::header::COOKIE {
            for crumb in value.as_bytes().split(|&b| b == b';') {
                if let Ok(crumb) = HeaderValue::from_bytes(crumb.trim_ascii()) {
                    request.headers_mut().append(http::header::COOKIE, crumb);
                }
            }
        } else {
            request.headers_mut().append(name, value);
        }
    }
    let fixture = request_fixture();
    let headers = request.headers();

    let _ = crate::dispatch::refuse_malformed(&request);
    let path = request.uri().path();
    let route = fixture.router.route(path);
    if route != crate::router::Route::BadPath {
        assert!(!oracle::path_escapes(path), "routed a path that escapes its prefix: {path:?}");
    }
    if route == crate::router::Route::Api(0) {
        assert!(!oracle::reads_as(path, "/api/admin"), "routed past the nested route: {path:?}");
    }
    if route == crate::router::Route::Api(1) {
        assert!(!oracle::reads_as(path, "/open/v1/admin"), "routed past the nested route: {path:?}");
    }
    let peer = std::net::SocketAddr::from(([192, 0, 2, if shape & 2 != 0 { 1 } else { 9 }], 40000));
    let mode = if shape & 4 != 0 { ForwardingHeader::Forwarded } else { ForwardingHeader::XForwardedFor };
    let client = client_addr(peer, "http", headers, &fixture.trusted, mode);
    if shape & 2 == 0 {
        assert_eq!(client.ip, Some(peer.ip()), "an untrusted peer chose its address");
        assert_eq!(client.proto, "http", "an untrusted peer chose its scheme");
    }
    let _ = crate::csrf::check(headers, &HeaderName::from_static("x-csrf"), "https://app.example");
    if let Some(value) = crate::session::cookie::find(headers, OWN_COOKIE) {
        let _ = std::str::from_utf8(value).ok().and_then(SessionTicket::parse);
    }

    // A method override in a header or the query string, on a route that forwards POST only.
    let query = request.uri().query();
    if oracle::overrides_post(query) {
        assert!(
            crate::proxy::method::refused(&Method::POST, headers, query, Some(&fixture.post_only)),
            "a method override in the query string passed: {query:?}"
        );
    }

    let mut upstream = headers.clone();
    // What `dispatch` sets before the proxy runs: the client's `Connection` list cannot remove it.
    upstream.insert("x-request-id", HeaderValue::from_static("cloakroom-made"));
    let forwarded = Forwarded { client_ip: client.ip, proto: client.proto, host: &fixture.public_host };
    let upstream_host = HeaderValue::from_str(fixture.upstream.as_str()).expect("an authority is a header value");
    let identity_names = crate::identity::spoofable(&[]);
    rewrite_request(&mut upstream, &fixture.cookies, forwarded, &upstream_host, true, &identity_names);
    for name in &identity_names {
        assert!(!upstream.contains_key(name), "a client's {name} went upstream");
    }
    for value in upstream.get_all(http::header::COOKIE) {
        assert!(!oracle::cookie_header_holds_own(value.as_bytes()), "our cookie went upstream: {value:?}");
    }
    let one = |name: &str| {
        let mut values = upstream.get_all(name).iter();
        match (values.next(), values.next()) {
            (Some(value), None) => value.as_bytes().to_vec(),
            _ => panic!("{name} is not exactly one header upstream"),
        }
    };
    assert_eq!(one("x-forwarded-for"), client.ip_text().to_string().into_bytes());
    assert_eq!(one("x-forwarded-host"), b"app.example");
    assert_eq!(one("x-forwarded-proto"), client.proto.as_bytes());
    assert_eq!(one("host"), fixture.upstream.as_str().as_bytes());
    assert_eq!(one("x-request-id"), b"cloakroom-made");
    assert!(!upstream.contains_key("forwarded") && !upstream.contains_key("x-real-ip"));
    assert!(!upstream.contains_key(http::header::AUTHORIZATION));

    // The same bytes as an upstream's response headers.
    let mut response = headers.clone();
    rewrite_response(&mut response, &fixture.cookies, true);
    for value in response.get_all(http::header::SET_COOKIE) {
        assert!(!oracle::set_cookie_plants_own(value.as_bytes()), "a Set-Cookie of ours passed: {value:?}");
    }
    // The same bytes as an answer cloakroom makes: one that sets a cookie of ours is never stored.
    let mut answer = headers.clone();
    crate::dispatch::no_store_when_setting_own(&mut answer, &fixture.cookies);
    if answer.get_all(http::header::SET_COOKIE).iter().any(|v| oracle::set_cookie_plants_own(v.as_bytes())) {
        let cache: Vec<_> = answer.get_all(http::header::CACHE_CONTROL).iter().collect();
        assert_eq!(cache, [&HeaderValue::from_static("no-store")], "a cookie of ours on a storable answer");
    }
}

const OWN_COOKIE: &str = "__Host-cloakroom";

struct RequestFixture {
    router: crate::router::Router,
    cookies: crate::session::cookie::CookiePolicy,
    trusted: Vec<crate::forwarded::Cidr>,
    public_host: HeaderValue,
    upstream: http::uri::Authority,
    post_only: crate::config::MethodAllowlist,
}

fn request_fixture() -> &'static RequestFixture {
    static FIXTURE: OnceLock<RequestFixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let text = "[oidc]\nissuer = \"http://127.0.0.1:9\"\nclient_id = \"app\"\nclient_secret = \"s\"\n\
                    [[routes]]\nprefix = \"/api/\"\nupstream = \"http://127.0.0.1:9/v1/\"\n\
                    [[routes]]\nprefix = \"/open/\"\nupstream = \"http://127.0.0.1:9/\"\ntoken = \"none\"\n\
                    [[routes]]\nprefix = \"/api/admin/\"\nupstream = \"http://127.0.0.1:9/v1/admin/\"\n\
                    [[routes]]\nprefix = \"/open/v1/admin/\"\nupstream = \"http://127.0.0.1:9/admin/\"\n";
        let config = Config::from_toml(text, Vec::new()).expect("a valid config");
        RequestFixture {
            router: crate::router::Router::new(&config.routes),
            cookies: crate::session::cookie::CookiePolicy::new(OWN_COOKIE, cookie::SameSite::Strict),
            trusted: vec!["192.0.2.1/32".parse().expect("a CIDR")],
            public_host: HeaderValue::from_static("app.example"),
            upstream: "127.0.0.1:9".parse().expect("an authority"),
            post_only: crate::config::MethodAllowlist {
                methods: vec![http::Method::POST],
                allow: HeaderValue::from_static("POST"),
            },
        }
    })
}

/// The invariants' oracles: deliberately simple, written apart from the code they check.
pub mod oracle {
    use super::OWN_COOKIE;

    /// Case set aside and anything but name characters dropped (readers that ignore case, or
    /// trim Unicode whitespace).
    fn is_own(name: &[u8]) -> bool {
        let folded: Vec<u8> = name
            .iter()
            .filter(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
            .map(u8::to_ascii_lowercase)
            .collect();
        let own = OWN_COOKIE.to_ascii_lowercase().into_bytes();
        folded == own || folded.strip_prefix(&own[..]).is_some_and(|rest| rest.starts_with(b"-login-"))
    }

    /// Some reader splits cookies on `;`, another on `,` too; each trims whitespace; a piece
    /// without `=` is a name to some. Any of them finding a name of ours is a leak.
    pub fn cookie_header_holds_own(value: &[u8]) -> bool {
        value.split(|&b| b == b';' || b == b',').any(|piece| {
            let name = piece.split(|&b| b == b'=').next().unwrap_or_default();
            is_own(name.trim_ascii())
        })
    }

    /// A browser reads a `Set-Cookie`'s name before the first `=` of its first `;` part; with no
    /// name, it sends the value back bare, which then reads as a name.
    pub fn set_cookie_plants_own(value: &[u8]) -> bool {
        let pair = value.split(|&b| b == b';').next().unwrap_or_default();
        let mut parts = pair.splitn(2, |&b| b == b'=');
        let (name, rest) = (parts.next().unwrap_or_default().trim_ascii(), parts.next());
        match rest {
            Some(rest) => is_own(name) || (name.is_empty() && is_own(rest.trim_ascii())),
            None => is_own(name),
        }
    }

    /// Whether a query string asks a framework for another method than `POST`: a pair whose
    /// key, decoded (any number of times) and with `+`, space, `.`, `-` and `[` read as `_`, is
    /// `_method` without case, and whose decoded value is not `POST`.
    pub fn overrides_post(query: Option<&str>) -> bool {
        let decode = |bytes: &[u8]| {
            let mut level = bytes.to_vec();
            for _ in 0..4 {
                level = percent_encoding::percent_decode(&level).collect();
            }
            String::from_utf8_lossy(&level).into_owned()
        };
        query.unwrap_or_default().split(['&', ';']).any(|pair| {
            let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
            let key: String =
                decode(key.as_bytes()).chars().map(|c| if " +.-[".contains(c) { '_' } else { c }).collect();
            let value = decode(value.replace('+', " ").as_bytes());
            key.eq_ignore_ascii_case("_method") && !value.trim().eq_ignore_ascii_case("post")
        })
    }

    /// Whether some server could read `path` as `prefix` (`/api/admin`, no trailing slash) or
    /// as inside it. The readers modelled, each at every level of percent-decoding (up to four,
    /// IIS's `%uXXXX` too): a character read as itself, under Unicode's full or simple lower- or
    /// upper-case mapping, one after the other (Python's `upper()`, Java's `equalsIgnoreCase`,
    /// Go's `EqualFold`, case folding), or under NFKC and then those mappings; whitespace,
    /// control and format characters dropped (lax decoders, `trim`); a segment cut at `;` (path
    /// parameters), `:` (NTFS streams, `::$DATA`), `?` or `#` once decoded, or at any `.` (format
    /// suffixes: Rails' `.:format`, Spring's suffix match; IIS's trailing dots); a segment read as
    /// nothing skipped (merged slashes).
    pub fn reads_as(path: &str, prefix: &str) -> bool {
        let target: Vec<Vec<char>> =
            prefix.split('/').filter(|s| !s.is_empty()).map(|s| s.to_lowercase().chars().collect()).collect();
        let mut level = path.as_bytes().to_vec();
        for _ in 0..5 {
            if segments_read_as(&String::from_utf8_lossy(&level), &target) {
                return true;
            }
            let decoded = decode_once(&level);
            if decoded == level {
                break;
            }
            level = decoded;
        }
        false
    }

    /// `%XX` and `%uXXXX`, once.
    fn decode_once(bytes: &[u8]) -> Vec<u8> {
        let text = String::from_utf8_lossy(bytes);
        let mut out = Vec::new();
        let mut rest = &text[..];
        while let Some(at) = rest.find(['%']) {
            out.extend_from_slice(&rest.as_bytes()[..at]);
            rest = &rest[at..];
            let wide = rest.get(1..2).is_some_and(|u| u.eq_ignore_ascii_case("u"));
            let (digits, len) = if wide { (rest.get(2..6), 6) } else { (rest.get(1..3), 3) };
            match digits
                .and_then(|d| u32::from_str_radix(d, 16).ok().filter(|_| d.bytes().all(|b| b.is_ascii_hexdigit())))
            {
                Some(code) if !wide => {
                    out.push(code as u8);
                    rest = &rest[len..];
                }
                Some(code) if char::from_u32(code).is_some() => {
                    let c = char::from_u32(code).unwrap_or_default();
                    out.extend_from_slice(c.to_string().as_bytes());
                    rest = &rest[len..];
                }
                _ => {
                    out.push(b'%');
                    rest = &rest[1..];
                }
            }
        }
        out.extend_from_slice(rest.as_bytes());
        out
    }

    /// The path's segments against the target's, a segment read as nothing being skipped.
    fn segments_read_as(text: &str, target: &[Vec<char>]) -> bool {
        let mut reached = vec![true];
        reached.resize(target.len() + 1, false);
        for segment in text.split('/') {
            let chars: Vec<char> = segment.chars().collect();
            let mut next = vec![false; target.len() + 1];
            for (j, name) in target.iter().enumerate() {
                if reached[j] {
                    next[j] |= segment_reads_as(&chars, &[]);
                    next[j + 1] |= segment_reads_as(&chars, name);
                }
            }
            if next[target.len()] {
                return true;
            }
            reached = next;
        }
        false
    }

    /// What each reader may make of one character, lower-cased for comparison.
    pub fn readings(c: char) -> Vec<String> {
        use unicode_normalization::UnicodeNormalization;
        let mut forms = vec![c.to_string(), c.to_string().nfkc().collect::<String>()];
        for form in forms.clone() {
            let upper = form.to_uppercase();
            let lower = form.to_lowercase();
            forms.extend([upper.to_lowercase(), lower.to_uppercase(), upper, lower]);
        }
        // Simple mappings: one character for one (`İ` → `i`, not `i̇`).
        let simple: Vec<String> = forms.iter().filter_map(|f| f.chars().next()).map(String::from).collect();
        forms.extend(simple);
        if c.is_whitespace()
            || c.is_control()
            || matches!(c, '\u{200B}'..='\u{200F}' | '\u{2060}'..='\u{2064}' | '\u{FEFF}' | '\u{00AD}' | '\u{FFFD}')
        {
            forms.push(String::new());
        }
        let mut forms: Vec<String> = forms.iter().map(|f| f.to_lowercase()).collect();
        forms.sort();
        forms.dedup();
        forms
    }

    /// One segment against one name (empty: the segment read as nothing).
    fn segment_reads_as(segment: &[char], name: &[char]) -> bool {
        // Positions in `name` some reading of the characters so far reaches.
        let mut reached = vec![false; name.len() + 1];
        reached[0] = true;
        for &c in segment {
            let forms = readings(c);
            let cuts = forms.iter().any(|f| f.starts_with(['.', ';', ':', '?', '#']));
            if cuts && reached[name.len()] {
                return true;
            }
            let mut next = vec![false; name.len() + 1];
            for j in (0..=name.len()).filter(|&j| reached[j]) {
                for form in &forms {
                    let form: Vec<char> = form.chars().collect();
                    if name[j..].starts_with(&form) {
                        next[j + form.len()] = true;
                    }
                }
            }
            reached = next;
        }
        reached[name.len()]
    }

    /// Percent-decodes up to four times; a segment that at any level is, cut at `;`, `?` or
    /// `#` and with everything but ASCII letters, digits and non-ASCII bytes set aside, one or
    /// more dots alone, or a level that holds a backslash or NUL, could take the request
    /// elsewhere.
    pub fn path_escapes(path: &str) -> bool {
        let mut level = path.as_bytes().to_vec();
        for _ in 0..5 {
            if level.iter().any(|&b| b == b'\\' || b == 0) {
                return true;
            }
            for segment in level.split(|&b| b == b'/') {
                let core = segment.split(|&b| matches!(b, b';' | b'?' | b'#')).next().unwrap_or_default();
                let kept: Vec<u8> =
                    core.iter().copied().filter(|b| b.is_ascii_alphanumeric() || *b == b'.' || !b.is_ascii()).collect();
                if !kept.is_empty() && kept.iter().all(|&b| b == b'.') {
                    return true;
                }
            }
            let decoded: Vec<u8> = percent_encoding::percent_decode(&level).collect();
            if decoded == level {
                break;
            }
            level = decoded;
        }
        false
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

/// A session record's claims as the rule and step-up checks read them in place: whatever JSON
/// object the text is (spacing, escapes, nesting, duplicate names), the reader hands over
/// exactly the scalars serde_json reads there, as their own JSON text; text that is no JSON
/// never gets this far (serde_json checks it as the record is read), and nothing panics.
pub fn claims(data: &[u8]) {
    use crate::session::claims::{Found, RawClaims};
    use serde_json::Value;
    use std::cell::RefCell;
    let Ok(text) = std::str::from_utf8(data) else { return };
    let Ok(raw) = serde_json::from_str::<RawClaims>(text) else { return };
    // JSON text need not be a value serde_json can hold (`1e999` is JSON, out of `f64`'s
    // range): the reader must not panic on it, and the oracle has nothing to compare. A record
    // never holds one (its claims were written from values).
    let Ok(parsed) = serde_json::from_str::<Value>(text) else {
        let _ = raw.scan(|_| Some(0), |_, _, _| {});
        return;
    };
    let names = RefCell::new(Vec::new());
    let mut seen: Vec<(usize, String, Found)> = Vec::new();
    let read = raw.scan(
        |name| {
            let mut names = names.borrow_mut();
            names.push(name.to_string());
            Some(names.len() - 1)
        },
        |index, json, found| seen.push((index, json.to_string(), found)),
    );
    let Value::Object(reference) = parsed else {
        assert!(!read, "not an object, yet read as one");
        return;
    };
    assert!(read, "an object refused: {text}");
    let names = names.into_inner();
    let unique = names.iter().collect::<std::collections::BTreeSet<_>>().len() == names.len();
    if !unique || names.iter().any(|n| n.contains('\\')) {
        return; // the oracle below needs one unescaped name per member
    }
    assert_eq!(names.len(), reference.len());
    let scalar = |v: &Value| !(v.is_null() || v.is_array() || v.is_object());
    for (index, name) in names.iter().enumerate() {
        let value = &reference[name.as_str()];
        let expected: Vec<(&Value, Found)> = match value {
            Value::Array(items) => items.iter().filter(|v| scalar(v)).map(|v| (v, Found::Element)).collect(),
            v if scalar(v) => vec![(v, Found::Value)],
            _ => Vec::new(),
        };
        let got: Vec<(Value, Found)> = seen
            .iter()
            .filter(|(i, _, _)| *i == index)
            .map(|(_, json, found)| (serde_json::from_str(json).expect("a scalar's text"), *found))
            .collect();
        assert_eq!(got.len(), expected.len(), "{name}: {text}");
        for ((got, found), (want, want_found)) in got.iter().zip(expected) {
            assert_eq!((got, *found), (want, want_found), "{name}: {text}");
        }
    }
}

/// A session record's JSON as the API proxy reads it in place ([`crate::session::record`])
/// against `serde_json`'s decoding of the whole: whenever both read a text, they read the same
/// fields; a record as cloakroom writes it (any session `serde_json` can decode, written again)
/// is read in place unless its token has an escape; and nothing panics.
pub fn record(data: &[u8]) {
    use crate::session::claims::RawClaims;
    use crate::session::{Session, SessionTokens, record};
    use serde::de::IgnoredAny;
    /// The fields the view reads (a part it does not want is not compared: it is never read).
    fn same<C, S>(fast: &SessionTokens<C, S>, whole: &SessionTokens<C, S>, text: &[u8])
    where
        C: record::Part + std::fmt::Debug,
        S: record::Part + std::fmt::Debug,
    {
        let view = |t: &SessionTokens<C, S>| {
            let resources: Vec<_> = t
                .resource_tokens
                .iter()
                .map(|(name, token)| (name.clone(), token.access_token.secret().clone(), token.expires_at))
                .collect();
            let claims = if C::WANTED { format!("{:?}", t.claims) } else { String::new() };
            let scope = if S::WANTED { format!("{:?}", t.scope) } else { String::new() };
            let token = t.access_token.secret().clone();
            let key = t.dpop_key.as_ref().map(|k| k.expose().to_string());
            (token, t.access_token_expires_at, t.can_refresh(), resources, t.expires_at, claims, scope, key)
        };
        assert_eq!(view(fast), view(whole), "{}", String::from_utf8_lossy(text));
    }
    /// The top-level names of a JSON object, in order (`None`: not an object).
    fn names(text: &[u8]) -> Option<Vec<String>> {
        struct Names(Vec<String>);
        impl<'de> serde::Deserialize<'de> for Names {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct Visit;
                impl<'de> serde::de::Visitor<'de> for Visit {
                    type Value = Names;
                    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                        f.write_str("an object")
                    }
                    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Names, A::Error> {
                        let mut names = Vec::new();
                        while let Some((name, IgnoredAny)) = map.next_entry::<String, IgnoredAny>()? {
                            names.push(name);
                        }
                        Ok(Names(names))
                    }
                }
                d.deserialize_map(Visit)
            }
        }
        serde_json::from_slice::<Names>(text).ok().map(|n| n.0)
    }
    fn both<C: record::Part + std::fmt::Debug, S: record::Part + std::fmt::Debug>(text: &[u8], written: bool) {
        let fast = record::tokens::<C, S>(text);
        let whole = serde_json::from_slice::<SessionTokens<C, S>>(text).ok();
        // The reading in place trusts an ordered record's order (it stops early); it agrees
        // with the whole decoding on every text whose known names come in that order, once each.
        let ranks: Vec<usize> = names(text)
            .unwrap_or_default()
            .iter()
            .filter_map(|name| record::ORDER.iter().position(|known| known == name))
            .collect();
        let in_order = ranks.windows(2).all(|pair| pair[0] < pair[1]);
        if let (Some(fast), Some(whole), true) = (&fast, &whole, in_order) {
            same(fast, whole, text);
        }
        if written {
            let whole = whole.expect("a written record decodes");
            let plain = |text: &str| !text.contains(['"', '\\']) && !text.chars().any(char::is_control);
            if plain(whole.access_token.secret()) && whole.dpop_key.as_ref().is_none_or(|k| plain(k.expose())) {
                same(&fast.expect("a written record is read in place"), &whole, text);
            }
        }
    }
    both::<IgnoredAny, IgnoredAny>(data, false);
    both::<RawClaims, String>(data, false);
    if let Ok(session) = serde_json::from_slice::<Session>(data) {
        let written = serde_json::to_vec(&session).expect("a session always serializes");
        both::<IgnoredAny, IgnoredAny>(&written, true);
        both::<RawClaims, String>(&written, true);
    }
}
