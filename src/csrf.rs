//! The anti-CSRF guard for API routes and state-changing BFF endpoints.
//!
//! First line: a custom header (`X-CSRF: 1` by default). A cross-origin page cannot add it
//! without a CORS preflight, and cloakroom answers no preflight, so its presence proves the call
//! came from our own origin. Second line: browsers' own statements of where a request came
//! from: `Sec-Fetch-Site` other than `same-origin`, or an `Origin` other than ours, is refused
//! even when the header is there.
//!
//! With `[spa] origins` (the SPA on a CDN, a sibling host of the same site), a call from one
//! of those origins is the SPA's too: it carries the header only after a CORS preflight that
//! cloakroom answers for those origins alone, its `Origin` is one of them, and its
//! `Sec-Fetch-Site` says `same-site` (never `cross-site`).

use crate::error::ApiError;
use http::header::ORIGIN;
use http::{HeaderMap, HeaderName};

const SEC_FETCH_SITE: &str = "sec-fetch-site";

/// The guard as configured: the anti-CSRF header's name and cloakroom's own origin.
#[derive(Debug, Clone)]
pub struct CsrfGuard {
    header: HeaderName,
    origin: String,
    /// `[spa] origins`: the SPA's other origins, of the same site.
    spa_origins: Vec<String>,
}

impl CsrfGuard {
    pub fn new(header: HeaderName, origin: String, spa_origins: Vec<String>) -> Self {
        Self { header, origin, spa_origins }
    }

    /// Both lines ([`check`]): API routes and state-changing endpoints.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        if self.is_spa_call(headers) {
            return if has_header(headers, &self.header) { Ok(()) } else { Err(ApiError::CsrfHeaderMissing) };
        }
        check(headers, &self.header, &self.origin)
    }

    /// [`websocket_origin`].
    pub fn websocket(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        if self.is_spa_call(headers) {
            return Ok(());
        }
        websocket_origin(headers, &self.origin)
    }

    /// [`same_origin`].
    pub fn same_origin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        if self.is_spa_call(headers) {
            return Ok(());
        }
        same_origin(headers, &self.origin)
    }

    /// The request's one `Origin`, when it is one of `[spa] origins` (for CORS answers).
    pub fn spa_origin<'h>(&self, headers: &'h HeaderMap) -> Option<&'h http::HeaderValue> {
        if self.spa_origins.is_empty() {
            return None;
        }
        let mut origins = headers.get_all(ORIGIN).iter();
        match (origins.next(), origins.next()) {
            (Some(origin), None) if self.spa_origins.iter().any(|o| o.as_bytes() == origin.as_bytes()) => Some(origin),
            _ => None,
        }
    }

    /// A call from one of `[spa] origins`: its one `Origin` is listed, and every
    /// `Sec-Fetch-Site` it carries says `same-site` (a page of another site cannot claim it).
    fn is_spa_call(&self, headers: &HeaderMap) -> bool {
        self.spa_origin(headers).is_some()
            && headers.get_all(SEC_FETCH_SITE).iter().all(|site| site.as_bytes() == b"same-site")
    }

    /// [`has_header`].
    pub fn has_header(&self, headers: &HeaderMap) -> bool {
        has_header(headers, &self.header)
    }
}

/// The cross-site check alone (shared by the header check and the logout form post). Each
/// header is compared as bytes, and every instance of it counts: a repeated `Origin` or
/// `Sec-Fetch-Site` passes only when each one does.
pub fn same_origin(headers: &HeaderMap, public_origin: &str) -> Result<(), ApiError> {
    if headers.get_all(SEC_FETCH_SITE).iter().any(|site| site.as_bytes() != b"same-origin") {
        return Err(ApiError::CrossSiteRequest);
    }
    if headers.get_all(ORIGIN).iter().any(|origin| origin.as_bytes() != public_origin.as_bytes()) {
        return Err(ApiError::CrossSiteRequest);
    }
    Ok(())
}

/// For WebSocket handshakes, which cannot carry the anti-CSRF header: the browser's `Origin`
/// must be present and be cloakroom's own (cross-site WebSocket hijacking otherwise).
pub fn websocket_origin(headers: &HeaderMap, public_origin: &str) -> Result<(), ApiError> {
    if headers.get(ORIGIN).is_none() {
        return Err(ApiError::CrossSiteRequest);
    }
    same_origin(headers, public_origin)
}

/// The anti-CSRF header, exactly once, with the value `1` (a repeated one is not "present").
pub fn has_header(headers: &HeaderMap, header: &HeaderName) -> bool {
    let mut values = headers.get_all(header).iter();
    matches!((values.next(), values.next()), (Some(value), None) if value.as_bytes() == b"1")
}

/// Both lines: not cross-site, and the anti-CSRF header present with value `1`.
pub fn check(headers: &HeaderMap, header: &HeaderName, public_origin: &str) -> Result<(), ApiError> {
    same_origin(headers, public_origin)?;
    if !has_header(headers, header) {
        return Err(ApiError::CsrfHeaderMissing);
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const ORIGIN_OK: &str = "https://app.example.com";

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, value.parse().unwrap());
        }
        map
    }

    fn verdict(pairs: &[(&'static str, &'static str)]) -> Result<(), ApiError> {
        check(&headers(pairs), &HeaderName::from_static("x-csrf"), ORIGIN_OK)
    }

    #[test]
    fn header_is_required_with_value_1() {
        assert_eq!(verdict(&[("x-csrf", "1")]), Ok(()));
        assert_eq!(verdict(&[]), Err(ApiError::CsrfHeaderMissing));
        assert_eq!(verdict(&[("x-csrf", "0")]), Err(ApiError::CsrfHeaderMissing));
        assert_eq!(verdict(&[("x-csrf", "")]), Err(ApiError::CsrfHeaderMissing));
        assert_eq!(verdict(&[("x-csrf", "1"), ("x-csrf", "1")]), Err(ApiError::CsrfHeaderMissing));
        assert_eq!(verdict(&[("x-csrf", "1"), ("x-csrf", "0")]), Err(ApiError::CsrfHeaderMissing));
    }

    #[test]
    fn same_origin_browser_calls_pass() {
        assert_eq!(
            verdict(&[("x-csrf", "1"), ("sec-fetch-site", "same-origin"), ("origin", "https://app.example.com")]),
            Ok(())
        );
    }

    #[test]
    fn websocket_handshakes_need_our_origin() {
        let ours = headers(&[("origin", "https://app.example.com")]);
        assert_eq!(websocket_origin(&ours, ORIGIN_OK), Ok(()));
        assert_eq!(websocket_origin(&headers(&[]), ORIGIN_OK), Err(ApiError::CrossSiteRequest));
        let foreign = headers(&[("origin", "https://evil.example")]);
        assert_eq!(websocket_origin(&foreign, ORIGIN_OK), Err(ApiError::CrossSiteRequest));
    }

    #[test]
    fn the_spas_other_origins_pass_same_site_and_nothing_else_does() {
        let guard =
            CsrfGuard::new(HeaderName::from_static("x-csrf"), ORIGIN_OK.into(), vec!["https://spa.example.com".into()]);
        let from = |pairs: &[(&'static str, &'static str)]| guard.check(&headers(pairs));
        assert_eq!(
            from(&[("x-csrf", "1"), ("origin", "https://spa.example.com"), ("sec-fetch-site", "same-site")]),
            Ok(())
        );
        assert_eq!(from(&[("x-csrf", "1"), ("origin", "https://spa.example.com")]), Ok(()));
        assert_eq!(
            from(&[("origin", "https://spa.example.com"), ("sec-fetch-site", "same-site")]),
            Err(ApiError::CsrfHeaderMissing),
            "the header is still required"
        );
        for pairs in [
            &[("x-csrf", "1"), ("origin", "https://spa.example.com"), ("sec-fetch-site", "cross-site")][..],
            &[("x-csrf", "1"), ("origin", "https://evil.example"), ("sec-fetch-site", "same-site")][..],
            &[("x-csrf", "1"), ("origin", "https://spa.example.com"), ("origin", "https://evil.example")][..],
            &[("x-csrf", "1"), ("origin", "https://spa.example.com."), ("sec-fetch-site", "same-site")][..],
            &[("x-csrf", "1"), ("origin", "http://spa.example.com"), ("sec-fetch-site", "same-site")][..],
            &[("x-csrf", "1"), ("sec-fetch-site", "same-site")][..],
        ] {
            assert_eq!(from(pairs), Err(ApiError::CrossSiteRequest), "{pairs:?}");
        }
        // Without listed origins, same-site is refused as before.
        let plain = CsrfGuard::new(HeaderName::from_static("x-csrf"), ORIGIN_OK.into(), Vec::new());
        let same_site =
            headers(&[("x-csrf", "1"), ("origin", "https://spa.example.com"), ("sec-fetch-site", "same-site")]);
        assert_eq!(plain.check(&same_site), Err(ApiError::CrossSiteRequest));
    }

    #[test]
    fn cross_site_signals_are_refused_even_with_the_header() {
        for pairs in [
            &[("x-csrf", "1"), ("sec-fetch-site", "cross-site")][..],
            &[("x-csrf", "1"), ("sec-fetch-site", "same-site")][..],
            &[("x-csrf", "1"), ("origin", "https://evil.example")][..],
            &[("x-csrf", "1"), ("origin", "null")][..],
            &[("x-csrf", "1"), ("origin", "https://app.example.com.evil.example")][..],
            &[("x-csrf", "1"), ("origin", "http://app.example.com")][..],
            &[("x-csrf", "1"), ("origin", "https://app.example.com"), ("origin", "https://evil.example")][..],
            &[("x-csrf", "1"), ("sec-fetch-site", "same-origin"), ("sec-fetch-site", "cross-site")][..],
        ] {
            assert_eq!(verdict(pairs), Err(ApiError::CrossSiteRequest), "{pairs:?}");
        }
    }
}
