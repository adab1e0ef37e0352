//! cloakroom's own endpoints under `/bff/`: one file each.
//!
//! Every answer from here carries `Cache-Control: no-store` (set in [`handle`]).

mod backchannel;
mod callback;
mod forward_auth;
mod frontchannel;
pub(crate) mod login;
pub(crate) mod login_params;
mod logout;
mod providers;
pub mod sessions;
pub(crate) mod stale;
mod user;

use crate::app::App;
use crate::error::ApiError;
use crate::forwarded::ClientAddr;
use crate::respond::Body;
use crate::router::BffEndpoint;
use crate::session::{Lookup, Session, SessionTicket};
use http::header::{CACHE_CONTROL, HeaderValue, SET_COOKIE};
use http::{Request, Response};
use hyper::body::Incoming;

pub async fn handle(
    app: &App,
    endpoint: BffEndpoint,
    request: Request<Incoming>,
    client: ClientAddr,
) -> Response<Body> {
    // Sign-in answers pages (a browser navigated there); the others answer JSON, their
    // refusals mapped here, once.
    let answered = match endpoint {
        BffEndpoint::Login => Ok(login::handle(app, request).await),
        BffEndpoint::Callback => Ok(callback::handle(app, request, client).await),
        BffEndpoint::User => user::handle(app, request).await,
        BffEndpoint::Logout => logout::handle(app, request).await,
        BffEndpoint::BackchannelLogout => backchannel::handle(app, request).await,
        BffEndpoint::FrontchannelLogout => frontchannel::handle(app, request).await,
        BffEndpoint::Sessions => sessions::handle(app, request).await,
        BffEndpoint::Providers => providers::handle(app, request),
        BffEndpoint::ForwardAuth => forward_auth::answer(app, request, client).await,
        BffEndpoint::Jwks => Ok(jwks(app)),
    };
    let mut response = answered.unwrap_or_else(|error| error.answer(app.sessions.cookies()));
    response.headers_mut().insert(CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// The identity assertions' public keys (a JWKS), for upstreams to verify them.
fn jwks(app: &App) -> Response<Body> {
    let mut response = Response::new(crate::respond::full(app.assertions.jwks().to_string()));
    response.headers_mut().insert(http::header::CONTENT_TYPE, HeaderValue::from_static("application/jwk-set+json"));
    response
}

/// The request's session, or why there is none (a cookie that opened nothing is a
/// [`ApiError::StaleSession`], whose answer deletes it).
pub(crate) async fn signed_in(app: &App, headers: &http::HeaderMap) -> Result<(SessionTicket, Box<Session>), ApiError> {
    signed_in_sliding(app, headers, true).await
}

/// [`signed_in`], choosing whether the look counts as a use of the session (`slide`).
pub(crate) async fn signed_in_sliding(
    app: &App,
    headers: &http::HeaderMap,
    slide: bool,
) -> Result<(SessionTicket, Box<Session>), ApiError> {
    match app.sessions.lookup_whole(headers, slide).await? {
        Lookup::Found(ticket, session) => Ok((ticket, session)),
        Lookup::None => Err(ApiError::Unauthenticated),
        Lookup::Stale => Err(ApiError::StaleSession),
    }
}

/// A `302` to a same-origin path of ours (a validated return path); a target that cannot be a
/// header value goes to `/`.
pub(crate) fn redirect(target: &str) -> Response<Body> {
    let mut response = Response::new(crate::respond::empty());
    *response.status_mut() = http::StatusCode::FOUND;
    let location = HeaderValue::try_from(target).unwrap_or(HeaderValue::from_static("/"));
    response.headers_mut().insert(http::header::LOCATION, location);
    response
}

/// A short, human description of a browser from its User-Agent ("Firefox on Linux").
pub fn describe_device(user_agent: Option<&str>) -> String {
    let Some(ua) = user_agent else { return "Unknown device".into() };
    let browser = [
        ("Edg/", "Edge"),
        ("OPR/", "Opera"),
        ("Firefox/", "Firefox"),
        ("Chromium/", "Chromium"),
        ("Chrome/", "Chrome"),
        ("Safari/", "Safari"),
        ("curl/", "curl"),
    ]
    .iter()
    .find(|(marker, _)| ua.contains(marker))
    .map(|(_, name)| *name);
    let os = [
        ("Android", "Android"),
        ("iPhone", "iOS"),
        ("iPad", "iPadOS"),
        ("CrOS", "ChromeOS"),
        ("Windows", "Windows"),
        ("Mac OS X", "macOS"),
        ("Macintosh", "macOS"),
        ("Linux", "Linux"),
    ]
    .iter()
    .find(|(marker, _)| ua.contains(marker))
    .map(|(_, name)| *name);
    match (browser, os) {
        (Some(b), Some(o)) => format!("{b} on {o}"),
        (Some(b), None) => b.to_string(),
        (None, Some(o)) => format!("Browser on {o}"),
        (None, None) => "Unknown device".into(),
    }
}

/// Adds a `Set-Cookie` (responses may carry several).
pub(crate) fn add_cookie(response: &mut Response<Body>, cookie: HeaderValue) {
    response.headers_mut().append(SET_COOKIE, cookie);
}

/// A `application/x-www-form-urlencoded` body of at most `max` bytes, as text; the error says
/// what was wrong with it.
pub(crate) async fn read_form(request: Request<Incoming>, max: usize) -> Result<String, &'static str> {
    use http_body_util::BodyExt;
    let is_form = request
        .headers()
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.to_ascii_lowercase().starts_with("application/x-www-form-urlencoded"));
    if !is_form {
        return Err("the body must be application/x-www-form-urlencoded");
    }
    let body = http_body_util::Limited::new(request.into_body(), max)
        .collect()
        .await
        .map_err(|_| "the body is unreadable or too large")?
        .to_bytes();
    String::from_utf8(body.to_vec()).map_err(|_| "the body is not UTF-8")
}

/// The query parameter `name`, when it occurs exactly once.
pub(crate) fn query_param(query: Option<&str>, name: &str) -> Result<Option<String>, ()> {
    let mut found = None;
    for (key, value) in url::form_urlencoded::parse(query.unwrap_or("").as_bytes()) {
        if key == name {
            if found.is_some() {
                return Err(());
            }
            found = Some(value.into_owned());
        }
    }
    Ok(found)
}
