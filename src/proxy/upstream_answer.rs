//! Phase 4, the upstream's answer: its header hygiene is done as it is received
//! ([`super::headers::rewrite_response`]); here, what the upstream says about the credential
//! itself. It asks for a stronger sign-in (RFC 9470): the SPA gets the step-up answer; it
//! rejects the user's token (RFC 6750 `invalid_token`): one fresh token, and the call once more;
//! a cookie that opened nothing is cleared with the answer.

use super::credential::Credential;
use super::refusal::Refusal;
use super::step_up;
use super::upstream_request::{Relay, Replay, send};
use crate::app::App;
use crate::error::ApiError;
use crate::forwarded::ClientAddr;
use crate::respond::Body;
use http::{Request, Response};

/// The answer the browser gets for the upstream's `response` to a call carrying `credential`.
pub async fn answer(
    app: &App,
    route_index: usize,
    client: ClientAddr,
    credential: Credential,
    replay: Option<Replay>,
    response: Response<Body>,
) -> Response<Body> {
    let refused = response.status() == http::StatusCode::UNAUTHORIZED && credential.is_users();
    if refused && let Some(challenge) = step_up::Challenge::from_upstream(response.headers()) {
        let route = app.config.routes.get(route_index).map_or("", |r| r.prefix.as_str());
        tracing::info!(route, "the upstream asks for a stronger or more recent sign-in");
        app.metrics.step_up_required(route);
        return Refusal::StepUp(challenge).response(app);
    }
    // Boxed, as they are rare: inline, their size (a refresh, a second call) would be every
    // call's to hold and move.
    if refused && credential.dpop.is_some() && step_up::asks_for_dpop_nonce(response.headers()) {
        return Box::pin(with_dpop_nonce(app, route_index, client, credential, replay, response)).await;
    }
    if refused && step_up::rejects_token(response.headers()) {
        return Box::pin(after_rejected_token(app, route_index, client, credential, replay, response)).await;
    }
    if credential.stale_cookie { app.sessions.cookies().cleared(response) } else { response }
}

/// A DPoP upstream wants its nonce in the proof (RFC 9449 §9); phase 3 kept the one it sent.
/// A call without a body goes once more, with a proof carrying it; a call with one gets the
/// upstream's answer (nothing is buffered to be sent again), and the next call carries the
/// nonce from the start.
async fn with_dpop_nonce(
    app: &App,
    route_index: usize,
    client: ClientAddr,
    credential: Credential,
    replay: Option<Replay>,
    asking: Response<Body>,
) -> Response<Body> {
    let (Some(replay), Some(token)) = (replay, credential.token.as_ref()) else { return asking };
    drop(asking);
    send_again(app, route_index, client, &credential, replay, token).await
}

/// An upstream rejected the user's token (`invalid_token`: revoked at the provider, a signing
/// key rolled over, expired early). The session gets one fresh token (single-flight with every
/// other call rejected meanwhile); a call without a body goes once more with it, and whatever
/// the upstream answers then is the answer (never a loop). A refused refresh ends the session
/// (`401 session_expired`); a provider that cannot be reached is a `503`, the session kept.
async fn after_rejected_token(
    app: &App,
    route_index: usize,
    client: ClientAddr,
    credential: Credential,
    replay: Option<Replay>,
    rejected_answer: Response<Body>,
) -> Response<Body> {
    let Some(route) = app.config.routes.get(route_index) else { return rejected_answer };
    if let Some(exchange) = &route.exchange {
        // The rejected token is an exchanged one; the sign-in's own is not this API's to have.
        // The answer stands, and the next call exchanges again.
        if let (Some(ticket), Some(rejected)) = (credential.session.as_ref(), credential.token.as_ref())
            && let Err(e) = app.tokens.forget_exchanged(&app.sessions, ticket, rejected, exchange).await
        {
            tracing::warn!(error = ?e, "the rejected exchanged token could not be forgotten; it is renewed when due");
        }
        app.metrics.token_rejected(&route.prefix, "exchange_forgotten");
        return rejected_answer;
    }
    let (Some(ticket), Some(rejected)) = (credential.session.as_ref(), credential.token.as_ref()) else {
        return rejected_answer;
    };
    tracing::info!(route = %route.prefix, "the upstream rejected the session's token; getting a fresh one");
    let fresh = app.tokens.replace_rejected(&app.sessions, ticket, rejected, route.audience.as_ref()).await;
    let (fresh, replay) = match (fresh, replay) {
        (Ok(fresh), Some(replay)) => (fresh, replay),
        (Ok(_), None) => {
            app.metrics.token_rejected(&route.prefix, "refreshed");
            return rejected_answer;
        }
        (Err(e), _) => {
            let ended = matches!(e, crate::tokens::TokenError::SessionExpired);
            app.metrics.token_rejected(&route.prefix, if ended { "session_ended" } else { "refresh_failed" });
            return ApiError::from(e).answer(app.sessions.cookies());
        }
    };
    drop(rejected_answer);
    app.metrics.token_rejected(&route.prefix, "retried");
    send_again(app, route_index, client, &credential, replay, &fresh).await
}

/// The bodiless call once more, with `token` (whatever the upstream answers then is the answer).
async fn send_again(
    app: &App,
    route_index: usize,
    client: ClientAddr,
    credential: &Credential,
    replay: Replay,
    token: &openidconnect::AccessToken,
) -> Response<Body> {
    let mut request = Request::new(crate::respond::empty());
    *request.method_mut() = replay.method;
    *request.headers_mut() = replay.headers;
    let (parts, body) = request.into_parts();
    let Some(relayed) = Relay::for_route(app, route_index, replay.path, Some(token), credential, client) else {
        return ApiError::NotFound.response();
    };
    send(app, parts, body, relayed, None).await
}
