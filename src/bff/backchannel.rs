//! `POST /bff/backchannel-logout`: the provider says a user or a provider session logged out.
//!
//! Server-to-server: no cookie, no anti-CSRF header; the signed logout token is the credential
//! (checked in [`crate::oidc::Provider::verify_logout_token`]). Every matching session ends.
//! Answers per the spec: 200 on success, 400 with an OAuth-style error body otherwise.

use super::query_param;
use crate::app::App;
use crate::error::ApiError;
use crate::oidc::LogoutTokenError;
use crate::respond::{Body, empty, json};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use serde_json::json;

/// A logout token is a few KiB at most.
const MAX_BODY: usize = 64 * 1024;

/// Refusals of the token itself are answered in the spec's OAuth error shape (400
/// `invalid_request`); failures of ours are the usual JSON errors.
pub async fn handle(app: &App, request: Request<Incoming>) -> Result<Response<Body>, ApiError> {
    if request.method() != Method::POST {
        return Err(ApiError::MethodNotAllowed);
    }
    let form = match super::read_form(request, MAX_BODY).await {
        Ok(form) => form,
        Err(reason) => return Ok(bad_request(reason)),
    };
    let token = match query_param(Some(&form), "logout_token") {
        Ok(Some(token)) if !token.is_empty() => token,
        Ok(_) => return Ok(bad_request("logout_token is missing")),
        Err(()) => return Ok(bad_request("logout_token is repeated")),
    };
    // Which provider speaks: the token's `iss`, read before anything is trusted, picks the one
    // whose keys and checks then decide; a token naming none is the default provider's to
    // refuse, with its precise reason.
    let provider = crate::oidc::jws::unverified_issuer(&token)
        .and_then(|iss| app.providers.by_issuer(&iss))
        .unwrap_or(app.providers.default_provider());
    let subject = match provider.verify_logout_token(&token).await {
        Ok(subject) => subject,
        Err(LogoutTokenError::Invalid(reason)) => {
            tracing::warn!(%reason, "back-channel logout refused");
            return Ok(bad_request(&reason));
        }
        Err(LogoutTokenError::Unavailable(e)) => {
            tracing::warn!(error = %e, "back-channel logout: provider keys unavailable");
            return Err(ApiError::ProviderUnavailable);
        }
    };
    let recorded = app.providers.recorded_id(provider);
    let ended = app.sessions.end_matching(recorded.as_deref(), subject.sid.as_deref(), subject.sub.as_deref()).await?;
    tracing::info!(ended, by_sid = subject.sid.is_some(), "back-channel logout");
    app.metrics.logouts(u64::try_from(ended).unwrap_or(u64::MAX));
    let mut response = Response::new(empty());
    *response.status_mut() = StatusCode::OK;
    Ok(response)
}

fn bad_request(description: &str) -> Response<Body> {
    json(StatusCode::BAD_REQUEST, &json!({ "error": "invalid_request", "error_description": description }))
}
