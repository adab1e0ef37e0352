//! The anti-CSRF guard for API routes and state-changing BFF endpoints.
//!
//! First line: a custom header (`X-CSRF: 1` by default). A cross-origin page cannot add it
//! without a CORS preflight, and cloakroom answers no preflight, so its presence proves the call
//! came from our own origin. Second line: browsers' own statements of where a request came
//! from: `Sec-Fetch-Site` other than `same-origin`, or an `Origin` other than ours, is refused
//! even when the header is there.

use crate::error::ApiError;
use http::header::ORIGIN;
use http::{HeaderMap, HeaderName};

const SEC_FETCH_SITE: &str = "sec-fetch-site";

/// The guard as configured: the anti-CSRF header's name and cloakroom's own origin.
#[derive(Debug, Clone)]
pub struct CsrfGuard {
    header: HeaderName,
    origin: String,
}

impl CsrfGuard {
    pub fn new(header: HeaderName, origin: String) -> Self {
        Self { header, origin }
    }

    /// Both lines ([`check`]): API routes and state-changing endpoints.
    pub fn check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        check(headers, &self.header, &self.origin)
    }

    /// [`websocket_origin`].
    pub fn websocket(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        websocket_origin(headers, &self.origin)
    }

    /// [`same_origin`].
    pub fn same_origin(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        same_origin(headers, &self.origin)
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
