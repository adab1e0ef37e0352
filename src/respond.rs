//! Building responses: the body type shared by every handler, and JSON/HTML helpers.

use bytes::Bytes;
use http::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};
use http::{Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// One body type for every response (ours and streamed upstream ones) and for upstream requests.
pub type Body = BoxBody<Bytes, BoxError>;

pub fn full(bytes: impl Into<Bytes>) -> Body {
    Full::new(bytes.into()).map_err(|never| match never {}).boxed()
}

pub fn empty() -> Body {
    Empty::new().map_err(|never| match never {}).boxed()
}

pub fn json(status: StatusCode, value: &serde_json::Value) -> Response<Body> {
    let mut response = Response::new(full(value.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

pub fn html(status: StatusCode, page: String) -> Response<Body> {
    let mut response = Response::new(full(page));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, HeaderValue::from_static("text/html; charset=utf-8"));
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    // Our pages have no script and load nothing; say so.
    headers.insert(
        http::header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static("default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"),
    );
    headers.insert(http::header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    headers.insert(http::header::REFERRER_POLICY, HeaderValue::from_static("no-referrer"));
    response
}

/// Whether a request accepts HTML (any `Accept` header naming `text/html`, in any case), read
/// as bytes: a value that is not text is still read.
pub fn accepts_html(headers: &http::HeaderMap) -> bool {
    headers
        .get_all(http::header::ACCEPT)
        .iter()
        .any(|accept| accept.as_bytes().windows(9).any(|w| w.eq_ignore_ascii_case(b"text/html")))
}

/// A same-origin page that navigates to `target` at once (a link for a browser that does not):
/// arriving there from our own page, the browser sends its `SameSite=Strict` cookie, which a
/// cross-site redirect chain does not carry.
pub fn continue_page(title: &str, message: &str, target: &str) -> Response<Body> {
    let target = escape_html(target);
    let body = format!("<p>{} <a href=\"{target}\">Continue</a></p>", escape_html(message));
    html(StatusCode::OK, page(title, &body, &format!("<meta http-equiv=\"refresh\" content=\"0;url={target}\">")))
}

/// Escapes text for HTML element content and double-quoted attributes.
pub fn escape_html(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A small, self-contained page: cloakroom's only HTML (errors and the post-login hop).
pub fn page(title: &str, body_html: &str, head_extra: &str) -> String {
    format!(
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">{head_extra}\
         <title>{title}</title><style>body{{font:16px/1.5 system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}}\
         a{{color:#0b57d0}}</style></head><body>{body_html}</body></html>",
        title = escape_html(title)
    )
}

/// Where "try again" leads: a new login with the same return path (and provider, when it was
/// not the default one; ids are validated configuration, never request bytes).
pub fn sign_in_href(return_to: &str, provider: Option<&str>) -> String {
    let encoded: String = url::form_urlencoded::byte_serialize(return_to.as_bytes()).collect();
    match provider {
        Some(id) => format!("/bff/login?provider={id}&returnUrl={encoded}"),
        None => format!("/bff/login?returnUrl={encoded}"),
    }
}
