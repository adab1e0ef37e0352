//! `POST /bff/logout`: revoke, forget, clear, and point the browser at the provider's logout.
//!
//! From `fetch` (with the anti-CSRF header) the answer is JSON `{"logout_url": …}` for the SPA to
//! navigate to. A plain HTML form cannot send that header, so a form post is accepted when the
//! browser itself vouches for it (`Origin` is ours, `Sec-Fetch-Site` is `same-origin` when sent),
//! and answered with a 303 to the same URL.

use super::add_cookie;
use crate::app::App;
use crate::error::ApiError;
use crate::respond::{Body, empty, json};
use crate::session::Lookup;
use http::header::{HeaderValue, LOCATION, ORIGIN};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;
use tracing::Instrument;

pub async fn handle(app: &App, request: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    if request.method() != Method::POST {
        return Err(ApiError::MethodNotAllowed);
    }
    let headers = request.headers();
    let from_fetch = app.csrf.has_header(headers);
    app.csrf.same_origin(headers)?;
    if !from_fetch && headers.get(ORIGIN).is_none() {
        return Err(ApiError::CsrfHeaderMissing);
    }

    let mut id_token_hint = None;
    // The provider the session signed in with (the default one without a session).
    let mut provider = app.providers.default_provider().clone();
    if let Lookup::Found(ticket, session) = app.sessions.lookup(headers).await? {
        if let Some(signed_in_with) = app.providers.get(session.provider.as_deref()) {
            provider = signed_in_with.clone();
        }
        // The revocation runs as a task of its own, and the session ends while it does: a
        // provider that hangs, or a browser that gives up on the answer (which drops this
        // handler), can neither keep the session alive nor cancel the revocation.
        let revocation = session.refresh_token.clone().filter(|_| provider.has_revocation()).map(|token| {
            let provider = provider.clone();
            tokio::spawn(async move { provider.revoke_refresh_token(&token).await }.in_current_span())
        });
        let ended = app.sessions.end_open(&ticket, &session).await;
        if let Some(revocation) = revocation {
            match revocation.await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "refresh token revocation failed; the session ends anyway"),
                Err(e) => tracing::error!(error = %e, "the refresh token revocation task failed"),
            }
        }
        ended?;
        app.metrics.logouts(1);
        id_token_hint = session.id_token.clone();
    }

    let logout_url = provider.end_session_url(id_token_hint.as_ref().map(|t| t.expose()));
    let mut response = if from_fetch {
        json(StatusCode::OK, &json!({ "logout_url": logout_url.as_ref().map(|u| u.as_str()) }))
    } else {
        let target = logout_url.as_ref().map(|u| u.as_str().to_string()).unwrap_or_else(|| "/".into());
        let mut response = Response::new(empty());
        *response.status_mut() = StatusCode::SEE_OTHER;
        let location = HeaderValue::try_from(target).map_err(|_| ApiError::Internal)?;
        response.headers_mut().insert(LOCATION, location);
        response
    };
    add_cookie(&mut response, app.sessions.cookies().clear_session());
    if app.config.session.clear_site_data {
        response.headers_mut().insert("clear-site-data", HeaderValue::from_static("\"cookies\""));
    }
    Ok(response)
}
