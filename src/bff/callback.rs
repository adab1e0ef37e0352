//! `GET /bff/callback`: finish the login the provider sent the browser back from.
//!
//! Order matters: the pending login is taken (single use) before anything is checked, so a
//! replayed callback finds nothing; the code is exchanged and the ID token validated; only then
//! is a session created, under a new ticket, and any session the browser already had is ended.
//! The answer is a tiny same-origin page that navigates to the return path: arriving there from
//! our own page, the browser sends the new `SameSite=Strict` cookie, which it would not do at the
//! end of the provider's cross-site redirect chain.

use super::{add_cookie, login_params, query_param};
use crate::app::App;
use crate::crypto::dpop::DpopKey;
use crate::error::{ApiError, LoginError};
use crate::forwarded::ClientAddr;
use crate::oidc::authentication::{self, Shortfall};
use crate::respond::Body;
use crate::session::{Lookup, NewSession, PendingLogin, SessionTicket};
use crate::telemetry::step;
use http::{Method, Request, Response};
use hyper::body::Incoming;
use tracing::Instrument;

pub async fn handle(app: &App, request: Request<Incoming>, client: ClientAddr) -> Response<Body> {
    if request.method() != Method::GET {
        return ApiError::MethodNotAllowed.response();
    }
    let query = request.uri().query();
    let headers = request.headers();
    // The same-origin second look of a stale callback is never a sign-in's answer.
    if super::stale::is_resume(query) {
        let state = query_param(query, "state").ok().flatten().filter(|s| !s.is_empty());
        return super::stale::answer(app, headers, state.as_deref(), None, true).await;
    }
    let answer = match Answer::read(query) {
        Ok(answer) => answer,
        Err(LoginError::UnknownState) => {
            app.metrics.login(false);
            let error = query_param(query, "error").ok().flatten();
            return super::stale::answer(app, headers, None, error, false).await;
        }
        Err(error) => return failure(error, None, app, headers),
    };
    let state = answer.state.clone();
    let pending = match app.sessions.take_login(&state, headers).await {
        Ok(Some(pending)) => pending,
        Ok(None) => {
            app.metrics.login(false);
            let mut response = super::stale::answer(app, headers, Some(&state), answer.error, false).await;
            clear_login_cookie(&mut response, app, &state);
            return response;
        }
        Err(e) => {
            tracing::error!(error = %e, "cannot read pending logins");
            return failure(LoginError::StoreUnavailable, Some(&state), app, headers);
        }
    };
    let mut response = match sign_in(app, answer, &pending, request.headers(), client).await {
        Ok(cookie) => {
            app.metrics.login(true);
            // Arriving at the return path from our own page, the browser sends the new
            // `SameSite=Strict` cookie.
            let mut response = crate::respond::continue_page("Signed in", "Signed in.", &pending.return_to);
            add_cookie(&mut response, cookie);
            response
        }
        // A silent sign-in (prompt=none) that did not happen: back to the app, which reads the
        // marker and carries on signed out, instead of an error page.
        Err(SignInError::Silent { marker }) => {
            app.metrics.login(false);
            super::redirect(&login_params::with_marker(&pending.return_to, marker))
        }
        Err(SignInError::Failed(error)) => {
            tracing::info!(reason = ?error, "sign-in failed");
            app.metrics.login(false);
            error.answer(&crate::respond::sign_in_href(&pending.return_to, pending.provider.as_deref()), headers)
        }
    };
    clear_login_cookie(&mut response, app, &state);
    response
}

/// The provider's answer, as the callback's query carries it: each parameter at most once.
struct Answer {
    state: String,
    code: Option<String>,
    error: Option<String>,
    iss: Option<String>,
}

impl Answer {
    fn read(query: Option<&str>) -> Result<Answer, LoginError> {
        let param = |name| query_param(query, name);
        let (Ok(state), Ok(code), Ok(error), Ok(iss)) = (param("state"), param("code"), param("error"), param("iss"))
        else {
            return Err(LoginError::BadCallback("repeated parameter"));
        };
        // No state at all: a stale arrival (a bookmark). A state no sign-in of ours could have
        // made (ours are base64url tokens) is a malformed answer, not a stale one.
        let state = state.filter(|s| !s.is_empty()).ok_or(LoginError::UnknownState)?;
        if state.len() > 512 || !state.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') {
            return Err(LoginError::BadCallback("malformed state"));
        }
        Ok(Answer { state, code, error, iss })
    }
}

/// Why a sign-in did not end in a session.
#[derive(Debug)]
enum SignInError {
    /// A silent sign-in (`prompt=none`) the provider declined: the marker the app reads.
    Silent { marker: &'static str },
    /// Anything else, answered as a page with a way to try again.
    Failed(LoginError),
}

impl From<LoginError> for SignInError {
    fn from(error: LoginError) -> Self {
        SignInError::Failed(error)
    }
}

/// The sign-in, step by step: the provider the sign-in went to and no other (mix-up defence,
/// with `iss`), its answer, the code exchanged (and userinfo joined), what the sign-in asked
/// for met, the session it replaces ended, the new session created. Returns its cookie.
async fn sign_in(
    app: &App,
    answer: Answer,
    pending: &PendingLogin,
    headers: &http::HeaderMap,
    client: ClientAddr,
) -> Result<http::HeaderValue, SignInError> {
    let provider = app.providers.get(pending.provider.as_deref()).cloned().ok_or(LoginError::UnknownState)?;
    if let Some(error) = answer.error {
        tracing::info!(error = %error.chars().take(64).collect::<String>(), "the provider refused the sign-in");
        if pending.silent {
            return Err(SignInError::Silent { marker: login_params::silent_failure_code(&error) });
        }
        return Err(LoginError::ProviderDenied { error }.into());
    }
    if !provider.callback_issuer_ok(answer.iss.as_deref()) {
        tracing::warn!("callback iss does not match the configured issuer");
        return Err(LoginError::IssuerMismatch.into());
    }
    let code = answer.code.filter(|c| !c.is_empty()).ok_or(LoginError::BadCallback("no code"))?;
    // A provider that binds tokens (`oidc.dpop`): the session's own DPoP key, made now, proved
    // at the code exchange, kept only in the sealed session.
    let dpop = match provider.config().dpop {
        true => Some(DpopKey::generate().map_err(|e| {
            tracing::error!(error = %e, "no DPoP key could be made for the new session");
            LoginError::StoreUnavailable
        })?),
        false => None,
    };
    let exchanged = provider.sign_in_tokens(code, &pending.pkce_verifier, &pending.nonce, dpop.as_ref());
    let tokens = exchanged.instrument(step("code_exchange")).await.map_err(|e| {
        tracing::warn!(error = %e, "sign-in failed at the code exchange or the userinfo endpoint");
        LoginError::from(e)
    })?;
    // What the sign-in asked for (max_age, a step-up's acr_values) must be met, by the rule the
    // routes' step-up check uses; one that falls short does not succeed silently, and the
    // browser keeps the session it had.
    let acr_values = pending.acr_values.as_deref().filter(|_| provider.config().enforce_acr_values);
    let skew = provider.config().clock_skew.as_secs();
    authentication::meets_request(&tokens.claims, pending.max_age, acr_values, app.now(), skew).map_err(
        |shortfall| {
            tracing::warn!(?shortfall, "the ID token does not show the authentication the sign-in asked for");
            match shortfall {
                Shortfall::TooOld => LoginError::AuthenticationTooOld,
                Shortfall::TooWeak => LoginError::AuthenticationTooWeak,
            }
        },
    )?;
    end_replaced_sessions(app, pending, headers).instrument(step("end_replaced_sessions")).await;
    let mut new_session = NewSession::from(tokens);
    new_session.provider = pending.provider.clone();
    new_session.dpop_key = dpop.as_ref().map(|key| crate::secret::Secret::new(key.to_record()));
    let user_agent = headers.get(http::header::USER_AGENT).and_then(|v| v.to_str().ok());
    let created = app.sessions.create(
        new_session,
        provider.config().logout_id_token_hint,
        pending.remember,
        super::describe_device(user_agent),
        client.ip_text().to_string(),
    );
    let (_, cookie) = created.instrument(step("create_session")).await.map_err(|e| {
        tracing::error!(error = %e, "cannot store the new session");
        LoginError::StoreUnavailable
    })?;
    Ok(cookie)
}

/// Rotation at sign-in: whatever session this browser had ends: the one `/bff/login` saw (the
/// provider's redirect here is cross-site and, under `SameSite=Strict`, carries no session
/// cookie), and the one this request carries, if any. Its refresh token is not revoked:
/// providers tie it to the grant the new sign-in shares (oidc-provider revokes the whole grant),
/// and the new session would end with it.
async fn end_replaced_sessions(app: &App, pending: &PendingLogin, headers: &http::HeaderMap) {
    let seen_at_login = pending.replaces.as_ref().and_then(|t| SessionTicket::parse(t.expose()));
    let mut replaced: Vec<SessionTicket> = seen_at_login.into_iter().collect();
    if let Some(Some(here)) = app.sessions.ticket_of(headers)
        && replaced.iter().all(|t| t.store_key() != here.store_key())
    {
        replaced.push(here);
    }
    for ticket in replaced {
        if let Ok(Lookup::Found(old, session)) = app.sessions.open(ticket).await {
            match app.sessions.end_open(&old, &session).await {
                Ok(()) => {
                    tracing::info!(session = %old.store_key().log_id(), "the session this sign-in replaces ended")
                }
                Err(e) => tracing::warn!(error = %e, "could not end the session this sign-in replaces"),
            }
        }
    }
}

fn failure(error: LoginError, state: Option<&str>, app: &App, headers: &http::HeaderMap) -> Response<Body> {
    tracing::info!(reason = ?error, "callback refused");
    app.metrics.login(false);
    let mut response = error.answer("/bff/login", headers);
    if let Some(state) = state {
        clear_login_cookie(&mut response, app, state);
    }
    response
}

/// Deletes the login cookie `state` names (a `state` cloakroom did not make names none).
fn clear_login_cookie(response: &mut Response<Body>, app: &App, state: &str) {
    if let Some(cookie) = app.sessions.cookies().clear_login(state) {
        add_cookie(response, cookie);
    }
}
