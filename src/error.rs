//! Errors that become HTTP responses, and the one table that maps them.
//!
//! Classified by who caused them: the client (4xx), the provider or an upstream (502/503/504),
//! ourselves (500). API calls and BFF JSON endpoints get JSON, never a redirect; the login
//! endpoints, which browsers navigate to, get a readable page with a way to try again.

use crate::oidc::OidcError;
use crate::respond::{Body, escape_html, html, json, page};
use crate::session::StoreError;
use crate::session::cookie::CookiePolicy;
use crate::tokens::TokenError;
use crate::upstream::SendError;
use http::{HeaderMap, Response, StatusCode};
use serde_json::json;

/// An error answered as JSON `{"error": code, "error_description": …}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ApiError {
    Unauthenticated,
    /// A session cookie that opened nothing (malformed, forged, ended): `401 unauthenticated`,
    /// and the answer deletes the cookie ([`ApiError::clears_session_cookie`]).
    StaleSession,
    /// The session ended because its tokens could not be renewed (refresh refused, or expired
    /// with nothing to refresh with).
    SessionExpired,
    CsrfHeaderMissing,
    CrossSiteRequest,
    /// The route's rules refuse the signed-in user.
    Forbidden,
    /// The route (or its upstream, RFC 9470) needs a stronger or more recent sign-in; answered
    /// with the details by `proxy::step_up::Challenge::response`.
    StepUpRequired,
    BadPath,
    /// No `Host` on HTTP/1.1, or more than one.
    BadHost,
    /// The request body broke off or was malformed (e.g. bad chunked framing) while forwarding.
    BadBody,
    PayloadTooLarge,
    NotFound,
    MethodNotAllowed,
    /// The client's address holds `server.max_connections_per_client` connections and HTTP/2
    /// requests in flight already.
    TooManyRequests,
    /// The provider refused the token exchange a route asks for (answered naming the route by
    /// `proxy::Refusal`).
    ExchangeRefused,
    /// `/bff/forward-auth` called by anyone but a trusted gateway with the forward-auth token.
    GatewayUntrusted,
    /// A gateway's subrequest without the original URI (or with two), or a method that is none.
    BadForwardedRequest,
    ProviderUnavailable,
    ProviderError,
    StoreUnavailable,
    UpstreamUnreachable,
    UpstreamTimeout,
    Internal,
}

impl ApiError {
    /// The table. Pinned by `tests::table_is_pinned`.
    pub fn parts(self) -> (StatusCode, &'static str, &'static str) {
        use ApiError::*;
        match self {
            Unauthenticated | StaleSession => (StatusCode::UNAUTHORIZED, "unauthenticated", "sign in first"),
            SessionExpired => (StatusCode::UNAUTHORIZED, "session_expired", "the session has expired; sign in again"),
            CsrfHeaderMissing => (StatusCode::FORBIDDEN, "csrf_header_missing", "the anti-CSRF header is required"),
            CrossSiteRequest => (StatusCode::FORBIDDEN, "cross_site_request", "cross-site requests are refused"),
            Forbidden => (StatusCode::FORBIDDEN, "forbidden", "this route does not allow the signed-in user"),
            StepUpRequired => {
                (StatusCode::UNAUTHORIZED, "step_up_required", "this call needs a stronger or more recent sign-in")
            }
            BadPath => (
                StatusCode::BAD_REQUEST,
                "bad_path",
                "the path has dot segments, encoded separators or backslashes, or could be read as another route's",
            ),
            BadHost => (StatusCode::BAD_REQUEST, "bad_host", "exactly one Host header is required"),
            BadBody => (StatusCode::BAD_REQUEST, "bad_body", "the request body is malformed or was cut off"),
            PayloadTooLarge => {
                (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "the request body exceeds this route's limit")
            }
            NotFound => (StatusCode::NOT_FOUND, "not_found", "no such endpoint"),
            MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "method not allowed here"),
            TooManyRequests => {
                (StatusCode::TOO_MANY_REQUESTS, "too_many_requests", "this client has too many requests in flight")
            }
            ExchangeRefused => (
                StatusCode::FORBIDDEN,
                "token_exchange_refused",
                "the identity provider refused a token for this route (token exchange)",
            ),
            GatewayUntrusted => (
                StatusCode::FORBIDDEN,
                "gateway_untrusted",
                "only a gateway in server.trusted_proxies with the forward-auth token may ask",
            ),
            BadForwardedRequest => (
                StatusCode::BAD_REQUEST,
                "bad_forwarded_request",
                "the original request is required: X-Forwarded-Uri or X-Original-URI once, a path; its method once",
            ),
            ProviderUnavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, "provider_unavailable", "the identity provider cannot be reached")
            }
            ProviderError => {
                (StatusCode::BAD_GATEWAY, "provider_error", "the identity provider gave an unusable answer")
            }
            StoreUnavailable => {
                (StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", "the session store cannot be reached")
            }
            UpstreamUnreachable => {
                (StatusCode::BAD_GATEWAY, "upstream_unreachable", "the upstream service cannot be reached")
            }
            UpstreamTimeout => {
                (StatusCode::GATEWAY_TIMEOUT, "upstream_timeout", "the upstream service did not answer in time")
            }
            Internal => (StatusCode::INTERNAL_SERVER_ERROR, "internal_error", "internal error"),
        }
    }

    pub fn response(self) -> Response<Body> {
        let (status, code, description) = self.parts();
        with_error_type(json(status, &json!({ "error": code, "error_description": description })), code)
    }

    /// The answer, deleting the session cookie when [`ApiError::clears_session_cookie`] says so.
    pub fn answer(self, cookies: &CookiePolicy) -> Response<Body> {
        let response = self.response();
        if self.clears_session_cookie() { cookies.cleared(response) } else { response }
    }

    /// Whether the answer must also delete the browser's session cookie: it opened nothing, or
    /// the session behind it has ended.
    pub fn clears_session_cookie(self) -> bool {
        matches!(self, ApiError::StaleSession | ApiError::SessionExpired)
    }
}

// Who caused it, once: each lower layer's error becomes its HTTP answer here.

impl From<StoreError> for ApiError {
    fn from(error: StoreError) -> Self {
        tracing::error!(error = %error, "the session store failed");
        ApiError::StoreUnavailable
    }
}

impl From<TokenError> for ApiError {
    fn from(error: TokenError) -> Self {
        match error {
            TokenError::SessionExpired => ApiError::SessionExpired,
            TokenError::ProviderUnavailable => ApiError::ProviderUnavailable,
            TokenError::ClientRejected => ApiError::ProviderError,
            TokenError::Store(e) => e.into(),
        }
    }
}

impl From<SendError> for ApiError {
    fn from(error: SendError) -> Self {
        match error {
            SendError::Timeout => ApiError::UpstreamTimeout,
            SendError::BodyTooLarge => ApiError::PayloadTooLarge,
            SendError::ClientBody => ApiError::BadBody,
            SendError::Connect(_) | SendError::Failed(_) => ApiError::UpstreamUnreachable,
        }
    }
}

/// How a failed code exchange reads to the user (the provider's fault, ours, or the request's).
impl From<OidcError> for LoginError {
    fn from(error: OidcError) -> Self {
        match error {
            OidcError::Rejected(_) => LoginError::CodeRejected,
            OidcError::ClientRejected(_) => {
                tracing::error!(
                    "the provider refused cloakroom's client authentication; check [oidc] client_id, client_auth and its credential"
                );
                LoginError::ClientRejected
            }
            OidcError::InvalidIdToken(_) => LoginError::InvalidIdToken,
            OidcError::NotReady | OidcError::Unreachable(_) | OidcError::InDoubt(_) | OidcError::BadResponse(_) => {
                LoginError::ProviderUnavailable
            }
        }
    }
}

/// Why a sign-in could not finish. Answered as a page: the browser navigated here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LoginError {
    /// The provider redirected back with `error=…` (e.g. the user cancelled).
    ProviderDenied {
        error: String,
    },
    /// No pending login matches: missing, unknown, expired or already used `state`, or the login
    /// started in another browser.
    UnknownState,
    /// The callback lacks `code` or carries something malformed.
    BadCallback(&'static str),
    /// `/bff/login` was asked for something it does not pass on (a sign-in parameter not
    /// allowed, or with a value the provider must not be sent).
    BadRequest(String),
    /// `max_age` was asked, and the provider's `auth_time` is missing or older.
    AuthenticationTooOld,
    /// `acr_values` was asked, and the provider's `acr` is missing or none of them.
    AuthenticationTooWeak,
    /// The callback's `iss` names another issuer (mix-up defence, RFC 9207).
    IssuerMismatch,
    /// The provider refused the code (replayed, expired, PKCE mismatch).
    CodeRejected,
    /// The ID token failed validation.
    InvalidIdToken,
    /// The provider cannot be reached or answered nonsense: not the browser's fault.
    ProviderUnavailable,
    /// The provider refused cloakroom's own client authentication: a server configuration fault.
    ClientRejected,
    /// The provider refused the pushed authorization request (RFC 9126): the request is
    /// cloakroom's, so a server configuration fault too.
    RequestRefused,
    StoreUnavailable,
}

impl LoginError {
    pub fn parts(&self) -> (StatusCode, &'static str) {
        use LoginError::*;
        match self {
            ProviderDenied { error } if error == "access_denied" => {
                (StatusCode::FORBIDDEN, "Sign-in was cancelled or refused.")
            }
            ProviderDenied { .. } => (StatusCode::BAD_REQUEST, "The identity provider could not sign you in."),
            UnknownState => (
                StatusCode::BAD_REQUEST,
                "This sign-in link has expired, was already used, or was started in another browser.",
            ),
            BadCallback(_) => (StatusCode::BAD_REQUEST, "The sign-in response was incomplete or malformed."),
            BadRequest(_) => {
                (StatusCode::BAD_REQUEST, "This sign-in link asks for something this site does not allow.")
            }
            AuthenticationTooOld => {
                (StatusCode::BAD_REQUEST, "The identity provider did not confirm a recent enough sign-in.")
            }
            AuthenticationTooWeak => (
                StatusCode::FORBIDDEN,
                "The identity provider did not confirm the stronger sign-in this site asked for.",
            ),
            IssuerMismatch => {
                (StatusCode::BAD_REQUEST, "The sign-in response came from an unexpected identity provider.")
            }
            CodeRejected => (StatusCode::BAD_REQUEST, "The identity provider refused to complete this sign-in."),
            InvalidIdToken => (StatusCode::BAD_REQUEST, "The identity provider's answer failed verification."),
            ProviderUnavailable => (StatusCode::BAD_GATEWAY, "The identity provider cannot be reached right now."),
            ClientRejected => (
                StatusCode::BAD_GATEWAY,
                "The identity provider did not accept this site's credentials. This is a server configuration problem; please try again later.",
            ),
            RequestRefused => (
                StatusCode::BAD_GATEWAY,
                "The identity provider did not accept this site's sign-in request. This is a server configuration problem; please try again later.",
            ),
            StoreUnavailable => (StatusCode::SERVICE_UNAVAILABLE, "Sign-in is unavailable right now."),
        }
    }

    pub fn response(&self, retry_href: &str) -> Response<Body> {
        let (status, message) = self.parts();
        let said = match self {
            LoginError::ProviderDenied { .. } => {
                format!("<p>The identity provider answered <code>{}</code>.</p>", escape_html(self.code()))
            }
            _ => String::new(),
        };
        let body = format!(
            "<h1>Sign-in did not complete</h1><p>{}</p>{said}<p><a href=\"{}\">Sign in again</a></p>",
            escape_html(message),
            escape_html(retry_href)
        );
        with_error_type(html(status, page("Sign-in did not complete", &body, "")), self.error_type())
    }

    /// The answer for who asked: a page for a navigation, JSON for a script's `fetch` (its
    /// `Sec-Fetch-Mode` is not `navigate`, or, from a browser without Fetch Metadata, it does
    /// not accept HTML), with the same code and the link to sign in again.
    pub fn answer(&self, retry_href: &str, headers: &HeaderMap) -> Response<Body> {
        if !wants_json(headers) {
            return self.response(retry_href);
        }
        let (status, message) = self.parts();
        let body = json!({ "error": self.code(), "error_description": message, "login_url": retry_href });
        with_error_type(json(status, &body), self.error_type())
    }

    /// [`LoginError::code`] for a trace span: the provider's own code is its words, not ours.
    fn error_type(&self) -> &'static str {
        match self {
            LoginError::ProviderDenied { .. } => "provider_denied",
            LoginError::UnknownState => "stale_sign_in",
            LoginError::BadCallback(_) => "bad_callback",
            LoginError::BadRequest(_) => "bad_request",
            LoginError::AuthenticationTooOld => "authentication_too_old",
            LoginError::AuthenticationTooWeak => "authentication_too_weak",
            LoginError::IssuerMismatch => "issuer_mismatch",
            LoginError::CodeRejected => "code_rejected",
            LoginError::InvalidIdToken => "invalid_id_token",
            LoginError::ProviderUnavailable => "provider_unavailable",
            LoginError::ClientRejected | LoginError::RequestRefused => "provider_refused_client",
            LoginError::StoreUnavailable => "store_unavailable",
        }
    }

    /// The error code an answer carries: the provider's own for [`LoginError::ProviderDenied`]
    /// when it is a plain code (`access_denied`, `login_required`; letters, digits, `_`, `-`,
    /// `.`, at most 64), `provider_error` otherwise; never the provider's description.
    pub fn code(&self) -> &str {
        use LoginError::*;
        match self {
            ProviderDenied { error } => {
                let plain = !error.is_empty()
                    && error.len() <= 64
                    && error.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.'));
                if plain { error } else { "provider_error" }
            }
            _ => self.error_type(),
        }
    }
}

/// The error code an answer carries, for the request's trace span (`error.type`): set on every
/// error answer made here, read in `dispatch`.
#[derive(Debug, Clone, Copy)]
pub struct ErrorType(pub &'static str);

fn with_error_type(mut response: Response<Body>, code: &'static str) -> Response<Body> {
    response.extensions_mut().insert(ErrorType(code));
    response
}

/// Whether a request wants JSON rather than a page: a script's request by Fetch Metadata, or,
/// without it, one that does not accept HTML.
pub fn wants_json(headers: &HeaderMap) -> bool {
    match headers.get("sec-fetch-mode") {
        Some(mode) => mode.as_bytes() != b"navigate",
        None => headers.contains_key(http::header::ACCEPT) && !crate::respond::accepts_html(headers),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_pinned() {
        use ApiError::*;
        let expected = [
            (Unauthenticated, 401, "unauthenticated"),
            (StaleSession, 401, "unauthenticated"),
            (SessionExpired, 401, "session_expired"),
            (CsrfHeaderMissing, 403, "csrf_header_missing"),
            (CrossSiteRequest, 403, "cross_site_request"),
            (Forbidden, 403, "forbidden"),
            (StepUpRequired, 401, "step_up_required"),
            (BadPath, 400, "bad_path"),
            (BadHost, 400, "bad_host"),
            (BadBody, 400, "bad_body"),
            (PayloadTooLarge, 413, "payload_too_large"),
            (NotFound, 404, "not_found"),
            (MethodNotAllowed, 405, "method_not_allowed"),
            (TooManyRequests, 429, "too_many_requests"),
            (ExchangeRefused, 403, "token_exchange_refused"),
            (GatewayUntrusted, 403, "gateway_untrusted"),
            (BadForwardedRequest, 400, "bad_forwarded_request"),
            (ProviderUnavailable, 503, "provider_unavailable"),
            (ProviderError, 502, "provider_error"),
            (StoreUnavailable, 503, "store_unavailable"),
            (UpstreamUnreachable, 502, "upstream_unreachable"),
            (UpstreamTimeout, 504, "upstream_timeout"),
            (Internal, 500, "internal_error"),
        ];
        for (error, status, code) in expected {
            let (s, c, _) = error.parts();
            assert_eq!((s.as_u16(), c), (status, code), "{error:?}");
            assert_eq!(error.clears_session_cookie(), matches!(error, StaleSession | SessionExpired), "{error:?}");
        }
    }

    #[test]
    fn lower_layers_map_by_who_caused_it() {
        use crate::upstream::SendError;
        let store = || StoreError::Unreachable("down".into());
        assert_eq!(ApiError::from(store()), ApiError::StoreUnavailable);
        for (error, expected) in [
            (TokenError::SessionExpired, ApiError::SessionExpired),
            (TokenError::ProviderUnavailable, ApiError::ProviderUnavailable),
            (TokenError::ClientRejected, ApiError::ProviderError),
            (TokenError::Store(store()), ApiError::StoreUnavailable),
        ] {
            assert_eq!(ApiError::from(error), expected);
        }
        for (error, expected) in [
            (SendError::Timeout, ApiError::UpstreamTimeout),
            (SendError::BodyTooLarge, ApiError::PayloadTooLarge),
            (SendError::ClientBody, ApiError::BadBody),
            (SendError::Connect("refused".into()), ApiError::UpstreamUnreachable),
            (SendError::Failed("reset".into()), ApiError::UpstreamUnreachable),
        ] {
            assert_eq!(ApiError::from(error), expected);
        }
        for (error, expected) in [
            (OidcError::Rejected("invalid_grant".into()), LoginError::CodeRejected),
            (OidcError::ClientRejected("invalid_client".into()), LoginError::ClientRejected),
            (OidcError::InvalidIdToken("nonce".into()), LoginError::InvalidIdToken),
            (OidcError::InDoubt("timeout".into()), LoginError::ProviderUnavailable),
            (OidcError::Unreachable("refused".into()), LoginError::ProviderUnavailable),
            (OidcError::NotReady, LoginError::ProviderUnavailable),
        ] {
            assert_eq!(LoginError::from(error), expected);
        }
    }

    #[test]
    fn login_errors_are_client_errors_unless_a_dependency_failed() {
        use LoginError::*;
        for error in [
            ProviderDenied { error: "access_denied".into() },
            ProviderDenied { error: "server_error".into() },
            UnknownState,
            BadCallback("x"),
            BadRequest("prompt".into()),
            AuthenticationTooOld,
            AuthenticationTooWeak,
            IssuerMismatch,
            CodeRejected,
            InvalidIdToken,
        ] {
            assert!(error.parts().0.is_client_error(), "{error:?}");
        }
        assert_eq!(ProviderUnavailable.parts().0, StatusCode::BAD_GATEWAY);
        assert_eq!(RequestRefused.parts().0, StatusCode::BAD_GATEWAY, "cloakroom's own request, not the browser's");
        assert_eq!(StoreUnavailable.parts().0, StatusCode::SERVICE_UNAVAILABLE);
    }

    #[test]
    fn login_error_page_escapes_and_offers_a_retry() {
        let response = LoginError::UnknownState.response("/bff/login?returnUrl=%2F\"<x>");
        assert_eq!(response.status(), 400);
        assert_eq!(response.headers()["content-type"], "text/html; charset=utf-8");
        assert_eq!(response.headers()["cache-control"], "no-store");
    }
}
