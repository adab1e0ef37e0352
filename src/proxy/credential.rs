//! Phase 2, credential: what the call carries upstream, per the route's token policy. For the
//! user's token: the session the cookie opens, the route's rules on its claims, its step-up
//! requirement, and the access token, refreshed when due ([`crate::tokens`]). Token exchange
//! per route, and a DPoP key, belong here too.

use super::refusal::Refusal;
use super::{rules, step_up};
use crate::app::App;
use crate::config::{RouteConfig, TokenPolicy};
use crate::error::ApiError;
use crate::session::claims::RawClaims;
use crate::session::{Lookup, SessionTicket, SessionTokens};
use openidconnect::AccessToken;

/// What a call carries on.
pub struct Credential {
    /// The token attached (`None`: the call goes without one).
    pub token: Option<AccessToken>,
    /// The user's session, when the token is the user's: its ticket.
    pub session: Option<SessionTicket>,
    /// The request's cookie opened nothing (its answer clears it).
    pub stale_cookie: bool,
}

impl Credential {
    fn none(stale_cookie: bool) -> Self {
        Credential { token: None, session: None, stale_cookie }
    }

    /// Whether the call carries the signed-in user's token.
    pub fn is_users(&self) -> bool {
        self.session.is_some()
    }
}

/// The token a route attaches, per its policy; a [`Refusal`] when the call may not go on.
pub async fn credential(app: &App, route: &RouteConfig, headers: &http::HeaderMap) -> Result<Credential, Refusal> {
    let (policy, audience) = (route.policy, route.audience.as_ref());
    let client_token = || async { app.tokens.client_token(app.now(), audience).await.map_err(ApiError::from) };
    match policy {
        TokenPolicy::None => return Ok(Credential::none(false)),
        TokenPolicy::Client => return Ok(Credential { token: Some(client_token().await?), ..Credential::none(false) }),
        _ => {}
    }
    // Routes with rules or a step-up decode the user's claims and scope too (undecoded: read in
    // place); the others pay nothing.
    let user = if route.rules.is_some() || route.step_up.is_some() {
        user(app, route, app.sessions.lookup_tokens_and_claims(headers).await.map_err(ApiError::from)?).await?
    } else {
        user(app, route, app.sessions.lookup_tokens(headers).await.map_err(ApiError::from)?).await?
    };
    let stale = match user {
        UserSession::Admitted(ticket, token) => {
            return Ok(Credential { token: Some(token), session: Some(ticket), stale_cookie: false });
        }
        UserSession::Stale => true,
        UserSession::None => false,
    };
    match policy {
        TokenPolicy::UserOrNone => Ok(Credential::none(stale)),
        TokenPolicy::UserOrClient => Ok(Credential { token: Some(client_token().await?), ..Credential::none(stale) }),
        _ if stale => Err(ApiError::StaleSession.into()),
        _ => Err(ApiError::Unauthenticated.into()),
    }
}

/// The signed-in user, as far as this route is concerned.
enum UserSession {
    /// Admitted by the route's rules and step-up: the session's ticket and token.
    Admitted(SessionTicket, AccessToken),
    /// No session cookie.
    None,
    /// A cookie that opened nothing.
    Stale,
}

/// The user's session and token, once the route's rules and step-up admit it.
async fn user<C, S>(app: &App, route: &RouteConfig, lookup: Lookup<SessionTokens<C, S>>) -> Result<UserSession, Refusal>
where
    SessionTokens<C, S>: RuleInputs,
{
    let (ticket, session) = match lookup {
        Lookup::Found(ticket, session) => (ticket, session),
        Lookup::Stale => return Ok(UserSession::Stale),
        Lookup::None => return Ok(UserSession::None),
    };
    let claims = session.claims();
    if let Some(rules) = &route.rules
        && !rules::permits(rules, claims, session.scope())
    {
        tracing::info!(route = %route.prefix, "the route's rules refuse the signed-in user");
        app.metrics.forbidden(&route.prefix);
        return Err(ApiError::Forbidden.into());
    }
    if let Some(required) = &route.step_up
        && !claims
            .is_some_and(|claims| step_up::satisfied(required, claims, app.now(), app.config.oidc.clock_skew.as_secs()))
    {
        tracing::info!(route = %route.prefix, "the route needs a stronger or more recent sign-in");
        app.metrics.step_up_required(&route.prefix);
        return Err(Refusal::StepUp(step_up::Challenge::of_route(required)));
    }
    let token = app
        .tokens
        .access_token(&app.sessions, &ticket, session, route.audience.as_ref())
        .await
        .map_err(ApiError::from)?;
    Ok(UserSession::Admitted(ticket, token))
}

/// What a session lookup decoded for a route's rules and step-up: nothing, for the routes that
/// have neither.
trait RuleInputs {
    fn claims(&self) -> Option<&RawClaims>;
    fn scope(&self) -> Option<&str>;
}

impl RuleInputs for SessionTokens {
    fn claims(&self) -> Option<&RawClaims> {
        None
    }

    fn scope(&self) -> Option<&str> {
        None
    }
}

impl RuleInputs for SessionTokens<RawClaims, String> {
    fn claims(&self) -> Option<&RawClaims> {
        self.claims.as_ref()
    }

    fn scope(&self) -> Option<&str> {
        self.scope.as_deref()
    }
}
