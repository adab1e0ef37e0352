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
use crate::error::{ApiError, LoginError};
use crate::forwarded::ClientAddr;
use crate::oidc::authentication;
use crate::respond::{Body, escape_html, html, page};
use crate::session::{Lookup, NewSession, SessionTicket};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;

pub async fn handle(app: &App, request: Request<Incoming>, client: ClientAddr) -> Response<Body> {
    if request.method() != Method::GET {
        return ApiError::MethodNotAllowed.response();
    }
    let query = request.uri().query();
    let param = |name| query_param(query, name);
    let (Ok(state), Ok(code), Ok(error), Ok(iss)) = (param("state"), param("code"), param("error"), param("iss"))
    else {
        return failure(LoginError::BadCallback("repeated parameter"), None, app);
    };
    let Some(state) = state.filter(|s| !s.is_empty() && s.len() <= 512) else {
        return failure(LoginError::UnknownState, None, app);
    };
    let pending = match app.sessions.take_login(&state, request.headers()).await {
        Ok(Some(pending)) => pending,
        Ok(None) => return failure(LoginError::UnknownState, Some(&state), app),
        Err(e) => {
            tracing::error!(error = %e, "cannot read pending logins");
            return failure(LoginError::StoreUnavailable, Some(&state), app);
        }
    };
    // Only the provider the sign-in went to may finish it (mix-up defence, with `iss` below).
    let Some(provider) = app.providers.get(pending.provider.as_deref()).cloned() else {
        return failure(LoginError::UnknownState, Some(&state), app);
    };
    let retry = super::login::retry_href(&pending.return_to, pending.provider.as_deref());
    let fail = |error: LoginError| {
        app.metrics.login(false);
        let mut response = error.response(&retry);
        clear_login_cookie(&mut response, app, &state);
        response
    };
    if let Some(error) = error {
        tracing::info!(error = %error.chars().take(64).collect::<String>(), "the provider refused the login");
        if pending.silent {
            // A silent sign-in (prompt=none) that did not happen: back to the app, which reads
            // the marker and carries on signed out, instead of an error page.
            app.metrics.login(false);
            let target = login_params::with_marker(&pending.return_to, login_params::silent_failure_code(&error));
            let mut response = super::redirect(&target);
            clear_login_cookie(&mut response, app, &state);
            return response;
        }
        return fail(LoginError::ProviderDenied { error });
    }
    if !provider.callback_issuer_ok(iss.as_deref()) {
        tracing::warn!("callback iss does not match the configured issuer");
        return fail(LoginError::IssuerMismatch);
    }
    let Some(code) = code.filter(|c| !c.is_empty()) else {
        return fail(LoginError::BadCallback("no code"));
    };
    let tokens = match provider.exchange_code(code, &pending.pkce_verifier, &pending.nonce).await {
        Ok(tokens) => tokens,
        Err(e) => {
            tracing::warn!(error = %e, "login failed at the code exchange");
            return fail(LoginError::from(e));
        }
    };
    // max_age asked: the provider must show an authentication at least that recent.
    if let Some(max_age) = pending.max_age {
        let skew = provider.config().clock_skew.as_secs();
        let auth_time = tokens.claims.get("auth_time").and_then(serde_json::Value::as_u64);
        if !authentication::recent_enough(auth_time, max_age, app.now(), skew) {
            tracing::warn!(max_age, "the ID token's auth_time is missing, older than max_age or in the future");
            return fail(LoginError::AuthenticationTooOld);
        }
    }
    // acr_values asked (a step-up): a sign-in that did not reach one of them does not succeed
    // silently, and the browser keeps the session it had.
    if let Some(asked) = pending.acr_values.as_deref().filter(|_| provider.config().enforce_acr_values) {
        let acr = tokens.claims.get("acr").and_then(serde_json::Value::as_str);
        if !authentication::acr_is_one_of(acr, asked.split(' ')) {
            tracing::warn!(asked, returned = acr.unwrap_or("none"), "the ID token's acr is not one that was asked for");
            return fail(LoginError::AuthenticationTooWeak);
        }
    }
    // oidc.userinfo: the claims the provider keeps at its userinfo endpoint join the ID token's.
    let mut tokens = tokens;
    let mut userinfo_at = None;
    if provider.config().userinfo {
        match provider.userinfo(&tokens.access_token, &tokens.sub).await {
            Ok(claims) => {
                crate::oidc::merge_userinfo(&mut tokens.claims, claims);
                userinfo_at = Some(app.now());
            }
            Err(e) => {
                tracing::warn!(error = %e, "the userinfo endpoint did not answer for this sign-in");
                return fail(LoginError::from(e));
            }
        }
    }
    // Rotation at login: whatever session this browser had ends here: the one `/bff/login` saw
    // (the provider's redirect here is cross-site and, under `SameSite=Strict`, carries no
    // session cookie), and the one this request carries, if any. Its refresh token is not
    // revoked: providers tie it to the grant the new sign-in shares (oidc-provider revokes the
    // whole grant), and the new session would end with it.
    let seen_at_login = pending.replaces.as_ref().and_then(|t| SessionTicket::parse(t.expose()));
    let mut replaced: Vec<SessionTicket> = seen_at_login.into_iter().collect();
    if let Some(Some(here)) = app.sessions.ticket_of(request.headers())
        && replaced.iter().all(|t| t.store_key() != here.store_key())
    {
        replaced.push(here);
    }
    for ticket in replaced {
        if let Ok(Lookup::Found(old, session)) = app.sessions.open(ticket).await {
            if let Err(e) = app.sessions.end_open(&old, &session).await {
                tracing::warn!(error = %e, "could not end the session this sign-in replaces");
            } else {
                tracing::info!(session = %old.store_key().log_id(), "the session this sign-in replaces ended");
            }
        }
    }
    let user_agent = request.headers().get(http::header::USER_AGENT).and_then(|v| v.to_str().ok());
    let device = super::sessions::describe_device(user_agent);
    let new_session = NewSession {
        sub: tokens.sub,
        sid: tokens.sid,
        claims: tokens.claims,
        access_token: tokens.access_token,
        access_token_expires_at: tokens.access_token_expires_at,
        refresh_token: tokens.refresh_token,
        scope: tokens.scope,
        id_token: tokens.id_token,
        userinfo_at,
        provider: pending.provider.clone(),
    };
    let created = app.sessions.create(
        new_session,
        provider.config().logout_id_token_hint,
        pending.remember,
        device,
        client.ip_text().to_string(),
    );
    let (_, cookie) = match created.await {
        Ok(created) => created,
        Err(e) => {
            tracing::error!(error = %e, "cannot store the new session");
            return fail(LoginError::StoreUnavailable);
        }
    };
    app.metrics.login(true);
    let target = escape_html(&pending.return_to);
    let body = format!("<p>Signed in. <a href=\"{target}\">Continue</a></p>");
    let mut response = html(
        StatusCode::OK,
        page("Signed in", &body, &format!("<meta http-equiv=\"refresh\" content=\"0;url={target}\">")),
    );
    add_cookie(&mut response, cookie);
    clear_login_cookie(&mut response, app, &state);
    response
}

fn failure(error: LoginError, state: Option<&str>, app: &App) -> Response<Body> {
    tracing::info!(reason = ?error, "callback refused");
    app.metrics.login(false);
    let mut response = error.response("/bff/login");
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
