//! Every cookie cloakroom sets is built here, with the secure attributes fixed in one place,
//! and every `Cookie` header it reads is read here, as bytes.
//!
//! - The session cookie: `__Host-` name, `HttpOnly`, `Secure`, `Path=/`, no `Domain`, `SameSite`
//!   as configured (Strict by default). A browser-session cookie unless a lifetime is given.
//! - One login cookie per login in progress (`<name>-login-<tag>`), holding the secret that opens
//!   that pending login. It must be `SameSite=Lax`: it has to come back on the provider's
//!   cross-site redirect to `/bff/callback`. One cookie per login lets several tabs sign in at once.
//!   The tag is the start of a `state` cloakroom generated; a `state` that is not of that form
//!   names no cookie at all, so a cookie name is never made of request bytes.
//!
//! A `Cookie` header is bytes, not text: browsers send back whatever bytes a cookie was set with
//! (`lang=français` from the SPA or a sibling subdomain). Reading it as text would skip the whole
//! header at the first byte past ASCII, and with it the ticket: the session would look absent
//! and the header would pass upstream untouched. So it is split on `;` as bytes, and a name is
//! compared byte for byte.

use super::SessionTicket;
use cookie::{Cookie, SameSite};
use http::header::{COOKIE, HeaderMap, HeaderValue};
use std::time::Duration;

/// Characters of `state` used to name a login cookie: unique enough among a browser's concurrent logins.
const LOGIN_TAG_LEN: usize = 16;

#[derive(Debug, Clone)]
pub struct CookiePolicy {
    name: String,
    login_prefix: String,
    same_site: SameSite,
    /// Names the session cookie had before (`session.legacy_cookie_names`): still read, still
    /// never forwarded, and renamed to `name` on the next answer ([`CookiePolicy::migration`]).
    legacy: Vec<(String, String)>,
    /// Finds any earlier name's bytes in a header (built once: every request asks).
    legacy_finders: Vec<memchr::memmem::Finder<'static>>,
    /// Every name above as a loose reader folds it ([`loose_name`]): what a cookie name must
    /// not contain to go upstream.
    loose: Vec<memchr::memmem::Finder<'static>>,
}

impl CookiePolicy {
    pub fn new(name: &str, same_site: SameSite) -> Self {
        let (legacy, legacy_finders) = (Vec::new(), Vec::new());
        let loose = vec![fold(name.as_bytes())];
        Self {
            name: name.to_string(),
            login_prefix: format!("{name}-login-"),
            same_site,
            legacy,
            legacy_finders,
            loose,
        }
    }

    /// With earlier names of the session cookie (the current name among them is ignored).
    pub fn with_legacy_names(mut self, names: &[String]) -> Self {
        for name in names.iter().filter(|n| **n != self.name) {
            self.legacy.push((name.clone(), format!("{name}-login-")));
            self.legacy_finders.push(memchr::memmem::Finder::new(name.as_bytes()).into_owned());
            self.loose.push(fold(name.as_bytes()));
        }
        self
    }

    /// The session cookie's value: under its name, or else under an earlier one.
    pub fn find_session<'a>(&self, headers: &'a HeaderMap) -> Option<&'a [u8]> {
        find(headers, &self.name).or_else(|| self.legacy.iter().find_map(|(name, _)| find(headers, name)))
    }

    /// A login cookie's value for `state`, under the current name's prefix or an earlier one's
    /// (a sign-in started before an upgrade still finishes).
    pub fn find_login<'a>(&self, headers: &'a HeaderMap, state: &str) -> Option<&'a [u8]> {
        let tag = self.login_cookie_name(state)?.split_off(self.login_prefix.len());
        find(headers, &format!("{}{tag}", self.login_prefix))
            .or_else(|| self.legacy.iter().find_map(|(_, prefix)| find(headers, &format!("{prefix}{tag}"))))
    }

    /// The `Set-Cookie` values that move a session cookie sent under an earlier name to the
    /// current one: the current cookie with the same ticket (a browser-session cookie) when the
    /// value is one cloakroom could have made and the current name is absent, and the deletion
    /// of the earlier one. `None` when the request carries no earlier name.
    pub fn migration(&self, headers: &HeaderMap) -> Option<Migration> {
        if self.legacy.is_empty() {
            return None;
        }
        // Every request asks; almost none carries an earlier name. A pair named so has the
        // name's bytes in its header, so a header without them needs no parsing.
        let mentioned = headers
            .get_all(COOKIE)
            .iter()
            .any(|value| self.legacy_finders.iter().any(|finder| finder.find(value.as_bytes()).is_some()));
        if !mentioned {
            return None;
        }
        let (name, value) = self.legacy.iter().find_map(|(name, _)| Some((name, find(headers, name)?)))?;
        let current = find(headers, &self.name).is_some();
        let ticket = std::str::from_utf8(value).ok().filter(|_| !current).and_then(SessionTicket::parse);
        Some(Migration {
            renamed: ticket.map(|ticket| self.session(&ticket, None)),
            cleared: header(&self.expired(name.clone(), self.same_site)),
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// `max_age: None` makes a browser-session cookie.
    pub fn session(&self, ticket: &SessionTicket, max_age: Option<Duration>) -> HeaderValue {
        let mut cookie = self.base(self.name.clone(), ticket.encode(), self.same_site);
        if let Some(age) = max_age {
            cookie.set_max_age(cookie::time::Duration::seconds(age.as_secs() as i64));
        }
        header(&cookie)
    }

    pub fn clear_session(&self) -> HeaderValue {
        header(&self.expired(self.name.clone(), self.same_site))
    }

    /// `response` with a `Set-Cookie` that deletes the session cookie (one that opened nothing).
    pub fn cleared<B>(&self, mut response: http::Response<B>) -> http::Response<B> {
        response.headers_mut().append(http::header::SET_COOKIE, self.clear_session());
        response
    }

    /// The login cookie's name for `state`, or `None` when `state` is not a token cloakroom
    /// could have made (base64url, at least the tag's length): such a callback names no cookie.
    pub fn login_cookie_name(&self, state: &str) -> Option<String> {
        let tag = state.get(..LOGIN_TAG_LEN)?;
        let token = state.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        token.then(|| format!("{}{tag}", self.login_prefix))
    }

    /// `None` when `state` names no login cookie (see [`CookiePolicy::login_cookie_name`]).
    pub fn login(&self, state: &str, secret: &str, max_age: Duration) -> Option<HeaderValue> {
        let mut cookie = self.base(self.login_cookie_name(state)?, secret.to_string(), SameSite::Lax);
        cookie.set_max_age(cookie::time::Duration::seconds(max_age.as_secs() as i64));
        Some(header(&cookie))
    }

    pub fn clear_login(&self, state: &str) -> Option<HeaderValue> {
        Some(header(&self.expired(self.login_cookie_name(state)?, SameSite::Lax)))
    }

    /// Whether a cookie name is one of cloakroom's own (never forwarded upstream), earlier
    /// names included.
    pub fn is_own(&self, cookie_name: &[u8]) -> bool {
        let own =
            |name: &str, prefix: &str| cookie_name == name.as_bytes() || cookie_name.starts_with(prefix.as_bytes());
        own(&self.name, &self.login_prefix) || self.legacy.iter().any(|(name, prefix)| own(name, prefix))
    }

    /// Whether an answer sets or clears one of cloakroom's cookies, or one a loose reader could
    /// take for one ([`CookiePolicy::set_cookie_may_plant_own`]): such an answer must be
    /// `Cache-Control: no-store` (RFC 9111 lets a shared cache keep answers with `Set-Cookie`).
    pub fn sets_own(&self, headers: &HeaderMap) -> bool {
        headers.get_all(http::header::SET_COOKIE).iter().any(|value| self.set_cookie_may_plant_own(value.as_bytes()))
    }

    /// Whether a `Set-Cookie` value may set or clear one of cloakroom's cookies, read as bytes
    /// the way browsers read it (RFC 6265bis §5.6): the name is what precedes the first `=` of
    /// the part before the first `;`, trimmed, and compared loosely ([`CookiePolicy::may_hold_own`],
    /// comma-separated pieces included, for whatever folds or splits `Set-Cookie` on commas).
    /// A cookie without a name (`==__Host-x=1`, or no `=` at all) is sent back by browsers as
    /// its bare value, where a loose reader may find a name of ours however many `=` precede
    /// it: such a cookie counts as ours.
    pub fn set_cookie_may_plant_own(&self, value: &[u8]) -> bool {
        let pair = value.split(|&b| b == b';').next().unwrap_or_default();
        match pair.iter().position(|&b| b == b'=') {
            Some(at) => pair[..at].trim_ascii().is_empty() || self.may_hold_own(pair),
            None => true,
        }
    }

    /// Whether a cookie name may be taken for one of cloakroom's by a server that reads names
    /// loosely: folded as [`loose_name`] does (case, percent-escapes, and any byte that is not
    /// a name character, such as a no-break space that a Unicode `trim()` removes), it contains
    /// one of the names. Wider than [`CookiePolicy::is_own`] on purpose: an app cookie whose
    /// name contains cloakroom's is not forwarded either, which is the safe side.
    pub fn may_be_own_name(&self, cookie_name: &[u8]) -> bool {
        if self.is_own(cookie_name) {
            return true;
        }
        let mut buffer = [0u8; LOOSE_NAME_MAX];
        match loose_name(cookie_name, &mut buffer) {
            Some(folded) => self.loose.iter().any(|name| name.find(folded).is_some()),
            // Longer than any name a browser app sets: not worth the risk.
            None => true,
        }
    }

    /// Whether a `Cookie` pair may carry one of cloakroom's cookies to a server that reads it
    /// loosely: its name ([`CookiePolicy::may_be_own_name`]), or the name of any
    /// comma-separated piece of it (RFC 2965 servers split on `,` too), or the whole pair when
    /// it has no `=`.
    pub fn may_hold_own(&self, pair: &[u8]) -> bool {
        // The whole name first (a reader that drops the commas in it, with the other bytes
        // it does not read), then each comma-separated piece's.
        self.may_be_own_name(split_pair(pair).0)
            || pair.split(|&b| b == b',').any(|piece| self.may_be_own_name(split_pair(piece).0))
    }

    fn base(&self, name: String, value: String, same_site: SameSite) -> Cookie<'static> {
        Cookie::build((name, value)).http_only(true).secure(true).path("/").same_site(same_site).build()
    }

    fn expired(&self, name: String, same_site: SameSite) -> Cookie<'static> {
        let mut cookie = self.base(name, String::new(), same_site);
        cookie.set_max_age(cookie::time::Duration::ZERO);
        cookie
    }
}

/// A session cookie moving from an earlier name to the current one.
pub struct Migration {
    /// The same ticket under the current name (`None`: the value was no ticket; only cleared).
    pub renamed: Option<HeaderValue>,
    /// The earlier name, deleted.
    pub cleared: HeaderValue,
}

impl Migration {
    /// Adds the migration to an answer; an answer that sets or clears the session cookie
    /// itself (sign-in, sign-out, a stale cookie) keeps its own, and only the earlier name is
    /// deleted.
    pub fn apply<B>(self, response: &mut http::Response<B>, policy: &CookiePolicy) {
        let sets_own = response.headers().get_all(http::header::SET_COOKIE).iter().any(|value| {
            value.as_bytes().strip_prefix(policy.name.as_bytes()).is_some_and(|rest| rest.first() == Some(&b'='))
        });
        let headers = response.headers_mut();
        if let Some(renamed) = self.renamed.filter(|_| !sets_own) {
            headers.append(http::header::SET_COOKIE, renamed);
        }
        headers.append(http::header::SET_COOKIE, self.cleared);
    }
}

/// Names and values are cloakroom's own (a validated configured name, base64url values and
/// tags), so this cannot fail; were it to, the answer sets no cookie rather than crash.
fn header(cookie: &Cookie<'_>) -> HeaderValue {
    HeaderValue::try_from(cookie.to_string()).unwrap_or_else(|_| {
        tracing::error!("a cookie of cloakroom's own did not make a header value; not set");
        HeaderValue::from_static("")
    })
}

/// The longest folded cookie name [`loose_name`] works on (on the stack).
const LOOSE_NAME_MAX: usize = 256;

/// A name as the loosest reader could see it: one level of `%XX` decoded (PHP decodes names),
/// ASCII letters lower-cased (ASP.NET Core reads names without case), and every byte that is
/// not a letter, digit, `-` or `_` left out (trimmed as Unicode whitespace, or dropped as
/// undecodable, by some reader). `None` when the result does not fit in `buffer`.
fn loose_name<'b>(name: &[u8], buffer: &'b mut [u8; LOOSE_NAME_MAX]) -> Option<&'b [u8]> {
    let hex = |b: u8| char::from(b).to_digit(16).map(|d| d as u8);
    let (mut len, mut i) = (0, 0);
    while let Some(&b) = name.get(i) {
        let byte = match (b, name.get(i + 1).copied().and_then(hex), name.get(i + 2).copied().and_then(hex)) {
            (b'%', Some(high), Some(low)) => {
                i += 3;
                high * 16 + low
            }
            _ => {
                i += 1;
                b
            }
        };
        if byte.is_ascii_alphanumeric() || byte == b'-' || byte == b'_' {
            *buffer.get_mut(len)? = byte.to_ascii_lowercase();
            len += 1;
        }
    }
    buffer.get(..len)
}

/// A finder of a configured name, folded as [`loose_name`] folds what requests carry.
fn fold(name: &[u8]) -> memchr::memmem::Finder<'static> {
    let folded: Vec<u8> = name
        .iter()
        .filter(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_'))
        .map(u8::to_ascii_lowercase)
        .collect();
    memchr::memmem::Finder::new(&folded).into_owned()
}

/// Every `name=value` pair of the request's `Cookie` header(s), as bytes, trimmed, empty ones
/// left out.
pub fn pairs(headers: &HeaderMap) -> impl Iterator<Item = &[u8]> {
    headers
        .get_all(COOKIE)
        .iter()
        .flat_map(|value| value.as_bytes().split(|&b| b == b';'))
        .map(<[u8]>::trim_ascii)
        .filter(|pair| !pair.is_empty())
}

/// A pair's name and value, trimmed; a pair without `=` is all name (how lenient servers read it).
pub fn split_pair(pair: &[u8]) -> (&[u8], &[u8]) {
    match pair.iter().position(|&b| b == b'=') {
        Some(at) => (pair[..at].trim_ascii(), pair[at + 1..].trim_ascii()),
        None => (pair.trim_ascii(), b""),
    }
}

/// The first value of the cookie `name` in the request's `Cookie` header(s), quotes removed.
pub fn find<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a [u8]> {
    pairs(headers).filter(|pair| pair.contains(&b'=')).map(split_pair).find(|(n, _)| *n == name.as_bytes()).map(
        |(_, value)| match value {
            [b'"', inner @ .., b'"'] => inner,
            _ => value,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> CookiePolicy {
        CookiePolicy::new("__Host-cloakroom", SameSite::Strict)
    }

    fn attributes(value: &HeaderValue) -> Vec<String> {
        value.to_str().unwrap().split(';').skip(1).map(|a| a.trim().to_ascii_lowercase()).collect()
    }

    /// Found by the `request` fuzz target: a nameless cookie behind two `=` was not counted, so
    /// an answer setting it could be stored by a cache.
    #[test]
    fn an_answer_setting_a_nameless_cookie_counts_as_setting_one_of_ours() {
        let sets = |value: &[u8]| {
            let mut headers = HeaderMap::new();
            headers.append(http::header::SET_COOKIE, HeaderValue::from_bytes(b"app=1").unwrap());
            headers.append(http::header::SET_COOKIE, HeaderValue::from_bytes(value).unwrap());
            policy().sets_own(&headers)
        };
        for value in [
            &b"==__Host-cloakroom=\xf8"[..],
            b"=__Host-cloakroom=x",
            b" = =__Host-cloakroom",
            b"=anything",
            b"__Host-cloakroom=x; Path=/",
            b"__host-CLOAKROOM=x",
            b"__Host-cloakroom",
        ] {
            assert!(sets(value), "{:?}", String::from_utf8_lossy(value));
        }
        for value in [&b"app=2"[..], b"theme=dark; Path=/", b"x==__Host-cloakroom"] {
            assert!(!sets(value), "{:?}", String::from_utf8_lossy(value));
        }
    }

    #[test]
    fn session_cookie_has_the_secure_attributes_and_no_domain() {
        let ticket = SessionTicket::generate();
        let value = policy().session(&ticket, None);
        let text = value.to_str().unwrap();
        assert!(text.starts_with(&format!("__Host-cloakroom={}", ticket.encode())));
        let attrs = attributes(&value);
        for required in ["httponly", "secure", "path=/", "samesite=strict"] {
            assert!(attrs.iter().any(|a| a == required), "{required} missing in {text}");
        }
        assert!(!attrs.iter().any(|a| a.starts_with("domain")), "{text}");
        assert!(!attrs.iter().any(|a| a.starts_with("max-age") || a.starts_with("expires")), "{text}");
    }

    #[test]
    fn remembered_session_cookie_is_persistent_and_lax_is_configurable() {
        let lax = CookiePolicy::new("__Host-x", SameSite::Lax);
        let attrs = attributes(&lax.session(&SessionTicket::generate(), Some(Duration::from_secs(3600))));
        assert!(attrs.contains(&"max-age=3600".to_string()), "{attrs:?}");
        assert!(attrs.contains(&"samesite=lax".to_string()), "{attrs:?}");
    }

    #[test]
    fn clearing_keeps_the_attributes_and_expires_now() {
        let attrs = attributes(&policy().clear_session());
        for required in ["httponly", "secure", "path=/", "max-age=0"] {
            assert!(attrs.iter().any(|a| a == required), "{required} missing in {attrs:?}");
        }
    }

    #[test]
    fn login_cookie_is_lax_short_lived_and_named_by_state() {
        let p = policy();
        let value = p.login("abcdefghijklmnopqrstuvwxyz", "s3cret", Duration::from_secs(600)).unwrap();
        let text = value.to_str().unwrap();
        assert!(text.starts_with("__Host-cloakroom-login-abcdefghijklmnop=s3cret"), "{text}");
        let attrs = attributes(&value);
        for required in ["httponly", "secure", "path=/", "samesite=lax", "max-age=600"] {
            assert!(attrs.iter().any(|a| a == required), "{required} missing in {text}");
        }
        assert!(p.is_own(b"__Host-cloakroom") && p.is_own(b"__Host-cloakroom-login-abc"));
        assert!(!p.is_own(b"__Host-cloakroomx") && !p.is_own(b"other"));
    }

    #[test]
    fn a_state_cloakroom_did_not_make_names_no_cookie() {
        let p = policy();
        for state in
            ["\nabcdefghijklmnopq", "a; Domain=evil.example", "short", "abcdefghijklmnop\u{e9}", "abcdefghijklmnop;x"]
        {
            assert_eq!(p.login_cookie_name(state), None, "{state:?}");
            assert!(p.clear_login(state).is_none() && p.login(state, "s", Duration::from_secs(1)).is_none());
        }
        assert!(p.login_cookie_name("abcdefghijklmnop-_XYZ0123").is_some());
    }

    #[test]
    fn finds_cookies_across_headers() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("a=1; __Host-cloakroom=first"));
        headers.append(COOKIE, HeaderValue::from_static("b=2;__Host-cloakroom=second"));
        assert_eq!(find(&headers, "__Host-cloakroom"), Some(&b"first"[..]));
        assert_eq!(find(&headers, "b"), Some(&b"2"[..]));
        assert_eq!(find(&headers, "missing"), None);
        headers.insert(COOKIE, HeaderValue::from_static(";;=;garbage;x==y"));
        assert_eq!(find(&headers, "x"), Some(&b"=y"[..]));
        assert_eq!(find(&headers, "garbage"), None, "a pair without `=` has no value to find");
    }

    #[test]
    fn bytes_past_ascii_hide_nothing() {
        // One UTF-8 cookie beside the ticket (and raw Latin-1, and a control byte): the header is
        // still read, over one header (HTTP/1.1) or crumbs (HTTP/2).
        for raw in [
            &b"lang=fran\xc3\xa7ais; __Host-cloakroom=T1"[..],
            b"x=\xff\xfe;__Host-cloakroom=T1",
            b"a=\x80\t; __Host-cloakroom=\"T1\"",
        ] {
            let mut headers = HeaderMap::new();
            headers.append(COOKIE, HeaderValue::from_bytes(raw).unwrap());
            assert_eq!(find(&headers, "__Host-cloakroom"), Some(&b"T1"[..]), "{raw:?}");
        }
        let mut crumbs = HeaderMap::new();
        crumbs.append(COOKIE, HeaderValue::from_bytes(b"lang=fran\xc3\xa7ais").unwrap());
        crumbs.append(COOKIE, HeaderValue::from_static("__Host-cloakroom=T2"));
        assert_eq!(find(&crumbs, "__Host-cloakroom"), Some(&b"T2"[..]));
    }

    #[test]
    fn pairs_that_a_loose_reader_could_take_for_ours() {
        let p = policy();
        for pair in [
            &b"__Host-cloakroom=T"[..],
            b"__Host-cloakroom",
            b"a=1, __Host-cloakroom=T",
            b"__Host-cloakroom-login-x=S",
            b"__Host-cloakroom =T",
        ] {
            assert!(p.may_hold_own(pair), "{pair:?}");
        }
        for pair in [&b"theme=__Host-cloakroom"[..], b"x=1,y=2", b"__Host-cloak=1", b"lang=fr"] {
            assert!(!p.may_hold_own(pair), "{pair:?}");
        }
    }

    #[test]
    fn names_a_loose_reader_could_fold_into_ours_are_ours_to_strip() {
        // Servers that read names without case (ASP.NET Core), decode them (PHP), or trim
        // Unicode whitespace (JavaScript's trim() on a Latin-1 decoded header) would hand the
        // ticket to the app under these names: they never go upstream.
        let p = policy().with_legacy_names(&["__Host-old".to_string()]);
        for name in [
            &b"__host-cloakroom"[..],
            b"__HOST-CLOAKROOM",
            b"__Host%2Dcloakroom",
            b"%5f_Host-cloakroom",
            b"\xa0__Host-cloakroom",
            b"__Host-cloakroom\xc2\xa0",
            b"\xef\xbb\xbf__Host-cloakroom",
            b"__Host-cloakroom-LOGIN-abc",
            b"__HOST-OLD",
            b"x__Host-cloakroomx",
            b", __host-cloa\xa4\xa4,\xa4kroom",
        ] {
            assert!(p.may_be_own_name(name), "{name:?}");
            assert!(p.may_hold_own(&[name, &b"=T"[..]].concat()), "{name:?}");
        }
        assert!(p.may_be_own_name(&[b'a'; LOOSE_NAME_MAX + 1]), "too long to read: not forwarded");
        for name in [&b"__Host-cloak"[..], b"session", b"cloakroom", b"__Host-", b""] {
            assert!(!p.may_be_own_name(name), "{name:?}");
        }
        // Finding the session stays exact: only the name cloakroom set opens it.
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("__HOST-CLOAKROOM=T"));
        assert_eq!(p.find_session(&headers), None);
    }
}
