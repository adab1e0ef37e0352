//! Every cookie cloakroom sets is built here, with the secure attributes fixed in one place.
//!
//! - The session cookie: `__Host-` name, `HttpOnly`, `Secure`, `Path=/`, no `Domain`, `SameSite`
//!   as configured (Strict by default). A browser-session cookie unless a lifetime is given.
//! - One login cookie per login in progress (`<name>-login-<tag>`), holding the secret that opens
//!   that pending login. It must be `SameSite=Lax`: it has to come back on the provider's
//!   cross-site redirect to `/bff/callback`. One cookie per login lets several tabs sign in at once.

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
}

impl CookiePolicy {
    pub fn new(name: &str, same_site: SameSite) -> Self {
        Self { name: name.to_string(), login_prefix: format!("{name}-login-"), same_site }
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

    pub fn login_cookie_name(&self, state: &str) -> String {
        let tag: String = state.chars().take(LOGIN_TAG_LEN).collect();
        format!("{}{tag}", self.login_prefix)
    }

    pub fn login(&self, state: &str, secret: &str, max_age: Duration) -> HeaderValue {
        let mut cookie = self.base(self.login_cookie_name(state), secret.to_string(), SameSite::Lax);
        cookie.set_max_age(cookie::time::Duration::seconds(max_age.as_secs() as i64));
        header(&cookie)
    }

    pub fn clear_login(&self, state: &str) -> HeaderValue {
        header(&self.expired(self.login_cookie_name(state), SameSite::Lax))
    }

    /// Whether a cookie is one of cloakroom's own (never forwarded upstream).
    pub fn is_own(&self, cookie_name: &str) -> bool {
        cookie_name == self.name || cookie_name.starts_with(&self.login_prefix)
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

fn header(cookie: &Cookie<'_>) -> HeaderValue {
    HeaderValue::try_from(cookie.to_string()).expect("cookie names and values are ASCII tokens")
}

/// The first value of the cookie `name` in the request's `Cookie` header(s).
pub fn find<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim_matches('"'))
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
        let value = p.login("abcdefghijklmnopqrstuvwxyz", "s3cret", Duration::from_secs(600));
        let text = value.to_str().unwrap();
        assert!(text.starts_with("__Host-cloakroom-login-abcdefghijklmnop=s3cret"), "{text}");
        let attrs = attributes(&value);
        for required in ["httponly", "secure", "path=/", "samesite=lax", "max-age=600"] {
            assert!(attrs.iter().any(|a| a == required), "{required} missing in {text}");
        }
        assert!(p.is_own("__Host-cloakroom") && p.is_own("__Host-cloakroom-login-abc"));
        assert!(!p.is_own("__Host-cloakroomx") && !p.is_own("other"));
    }

    #[test]
    fn finds_cookies_across_headers() {
        let mut headers = HeaderMap::new();
        headers.append(COOKIE, HeaderValue::from_static("a=1; __Host-cloakroom=first"));
        headers.append(COOKIE, HeaderValue::from_static("b=2;__Host-cloakroom=second"));
        assert_eq!(find(&headers, "__Host-cloakroom"), Some("first"));
        assert_eq!(find(&headers, "b"), Some("2"));
        assert_eq!(find(&headers, "missing"), None);
        headers.insert(COOKIE, HeaderValue::from_static(";;=;garbage;x==y"));
        assert_eq!(find(&headers, "x"), Some("=y"));
    }
}
