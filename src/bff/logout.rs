//! `POST /bff/logout`: revoke, forget, clear, and point the browser at the provider's logout.
//!
//! From `fetch` (with the anti-CSRF header) the answer is JSON `{"logout_url": …}` for the SPA to
//! navigate to. A plain HTML form cannot send that header, so a form post is accepted when the
//! browser itself vouches for it (`Origin` is ours, `Sec-Fetch-Site` is `same-origin` when sent),
//! and answered with a 303 to the same URL.

use super::add_cookie;
use crate::app::App;
use crate::csrf;
use crate::error::ApiError;
use crate::respond::{Body, empty, json};
use crate::session::Lookup;
use http::header::{HeaderValue, LOCATION, ORIGIN};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

pub async fn handle(app: &App, request: Request<Incoming>) -> Response<Body> {
    if request.method() != Method::POST {
        return ApiError::MethodNotAllowed.response();
    }
    let headers = request.headers();
    let from_fetch = csrf::has_header(headers, &app.config.csrf.header);
    if let Err(e) = csrf::same_origin(headers, &app.config.server.public_origin) {
        return e.response();
    }
    if !from_fetch && headers.get(ORIGIN).is_none() {
        return ApiError::CsrfHeaderMissing.response();
    }

    let mut id_token_hint = None;
    match app.sessions.lookup(headers).await {
        Ok(Lookup::Found(ticket, session)) => {
            if let Some(refresh_token) = &session.refresh_token
                && app.provider.has_revocation()
                && let Err(e) = app.provider.revoke_refresh_token(refresh_token).await
            {
                tracing::warn!(error = %e, "refresh token revocation failed; the session ends anyway");
            }
            if let Err(e) = app.sessions.end(&ticket).await {
                tracing::error!(error = %e, "cannot delete the session");
                return ApiError::StoreUnavailable.response();
            }
            app.metrics.logouts(1);
            id_token_hint = session.id_token.clone();
        }
        Ok(Lookup::None | Lookup::Stale) => {}
        Err(e) => {
            tracing::error!(error = %e, "session lookup failed");
            return ApiError::StoreUnavailable.response();
        }
    }

    let logout_url = app.provider.end_session_url(id_token_hint.as_ref().map(|t| t.expose()));
    let mut response = if from_fetch {
        json(StatusCode::OK, &json!({ "logout_url": logout_url.as_ref().map(|u| u.as_str()) }))
    } else {
        let target = logout_url.as_ref().map(|u| u.as_str().to_string()).unwrap_or_else(|| "/".into());
        let mut response = Response::new(empty());
        *response.status_mut() = StatusCode::SEE_OTHER;
        match HeaderValue::try_from(target) {
            Ok(location) => response.headers_mut().insert(LOCATION, location),
            Err(_) => return ApiError::Internal.response(),
        };
        response
    };
    add_cookie(&mut response, app.sessions.cookies().clear_session());
    if app.config.session.clear_site_data {
        response.headers_mut().insert("clear-site-data", HeaderValue::from_static("\"cookies\""));
    }
    response
}
