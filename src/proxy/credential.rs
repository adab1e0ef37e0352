//! Phase 2, credential: what the call carries upstream, per the route's token policy. For the
//! user's token: the session the cookie opens, the route's rules on its claims, its step-up
//! requirement, and the access token, refreshed when due ([`crate::tokens`]); the user's
//! identity for the upstream when the route asks for it ([`crate::identity`]), and the route's
//! own token by token exchange when it has one. A DPoP key belongs here too.

use super::refusal::Refusal;
use super::{rules, step_up};
use crate::app::App;
use crate::config::{RouteConfig, TokenPolicy};
use crate::crypto::dpop::DpopKey;
use crate::error::ApiError;
use crate::identity::Identity;
use crate::oidc::Providers;
use crate::session::claims::{Found, RawClaims};
use crate::session::{Lookup, SessionTicket, SessionTokens};
use crate::tokens::ExchangeError;
use openidconnect::AccessToken;
use std::sync::Arc;

/// What a call carries on.
pub struct Credential {
    /// The token attached (`None`: the call goes without one).
    pub token: Option<AccessToken>,
    /// The user's session, when the token is the user's: its ticket.
    pub session: Option<SessionTicket>,
    /// The request's cookie opened nothing (its answer clears it).
    pub stale_cookie: bool,
    /// The user's identity headers (and assertion), for a route with `[routes.identity]`.
    pub identity: Identity,
    /// The session's DPoP key, on a route with `dpop`: the token goes with a proof of it.
    pub dpop: Option<Arc<DpopKey>>,
}

impl Credential {
    fn none(stale_cookie: bool) -> Self {
        Credential { token: None, session: None, stale_cookie, identity: Identity::default(), dpop: None }
    }

    /// Whether the call is the signed-in user's (its token, or its identity instead).
    pub fn is_users(&self) -> bool {
        self.session.is_some()
    }
}

/// The token a route attaches, per its policy; a [`Refusal`] when the call may not go on.
pub async fn credential(app: &App, route: &RouteConfig, headers: &http::HeaderMap) -> Result<Credential, Refusal> {
    let (policy, audience) = (route.policy, route.audience.as_ref());
    // Boxed, as the exchange below: inline, a provider call's state would be every call's to hold.
    let client_token =
        || async { Box::pin(app.tokens.client_token(app.now(), audience)).await.map_err(ApiError::from) };
    match policy {
        TokenPolicy::None => return Ok(Credential::none(false)),
        TokenPolicy::Client => return Ok(Credential { token: Some(client_token().await?), ..Credential::none(false) }),
        _ => {}
    }
    // Routes with rules or a step-up decode the user's claims and scope too (undecoded: read in
    // place); the others pay nothing.
    let user = if route.rules.is_some() || route.step_up.is_some() || route.identity.is_some() {
        user(app, route, app.sessions.lookup_tokens_and_claims(headers).await.map_err(ApiError::from)?).await?
    } else {
        user(app, route, app.sessions.lookup_tokens(headers).await.map_err(ApiError::from)?).await?
    };
    let stale = match user {
        UserSession::Admitted(ticket, token, identity, dpop) => {
            return Ok(Credential { token, session: Some(ticket), stale_cookie: false, identity, dpop });
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
    /// Admitted by the route's rules and step-up: the session's ticket, its token (unless the
    /// route sends the identity instead), the identity the route sends, and the session's DPoP
    /// key on a route with `dpop`.
    Admitted(SessionTicket, Option<AccessToken>, Identity, Option<Arc<DpopKey>>),
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
            .is_some_and(|claims| step_up::satisfied(required, claims, app.now(), clock_skew(&app.providers, claims)))
    {
        tracing::info!(route = %route.prefix, "the route needs a stronger or more recent sign-in");
        app.metrics.step_up_required(&route.prefix);
        return Err(Refusal::StepUp(step_up::Challenge::of_route(required)));
    }
    let identity = match &route.identity {
        Some(config) => {
            // Written by serde_json from verified claims: an object, or no claims at all.
            let claims = claims.and_then(|c| serde_json::from_str(c.json()).ok()).unwrap_or_default();
            let issuer = &app.config.server.public_origin;
            Identity::of(config, &claims, &app.assertions, issuer, app.now())
        }
        None => Identity::default(),
    };
    if route.identity.as_ref().is_some_and(|identity| !identity.bearer) {
        return Ok(UserSession::Admitted(ticket, None, identity, None));
    }
    let dpop = if route.dpop { Some(dpop_key(app, route, session.dpop_key.as_ref())?) } else { None };
    let mut session = session;
    let exchanged = route.exchange.as_ref().and_then(|exchange| session.resource_tokens.remove(&exchange.key));
    let token = app
        .tokens
        .access_token(&app.sessions, &ticket, session, route.audience.as_ref())
        .await
        .map_err(ApiError::from)?;
    let token = match &route.exchange {
        None => token,
        Some(exchange) => Box::pin(app.tokens.exchanged(&app.sessions, &ticket, exchanged, &token, exchange))
            .await
            .map_err(|e| match e {
                ExchangeError::Refused => Refusal::ExchangeRefused { route: route.prefix.clone() },
                ExchangeError::Token(e) => ApiError::from(e).into(),
            })?,
    };
    Ok(UserSession::Admitted(ticket, Some(token), identity, dpop))
}

/// The key a DPoP route proves: the session's. A session without one (its provider binds no
/// tokens, or it signed in before `oidc.dpop` was on) cannot call the route: its token is not
/// what the upstream accepts, and it is never sent as a Bearer token there instead.
fn dpop_key(app: &App, route: &RouteConfig, kept: Option<&crate::secret::Secret>) -> Result<Arc<DpopKey>, Refusal> {
    let key = kept.map(|kept| app.dpop_keys.get(kept.expose()));
    match key {
        Some(Ok(key)) => Ok(key),
        Some(Err(_)) => {
            tracing::error!(route = %route.prefix, "the session's DPoP key cannot be read");
            Err(ApiError::Internal.into())
        }
        None => {
            tracing::info!(route = %route.prefix, "the route sends DPoP-bound tokens, and this session has no DPoP key (its provider does not bind tokens: oidc.dpop)");
            Err(ApiError::Forbidden.into())
        }
    }
}

/// The clock skew a step-up allows for `auth_time`: that of the provider the session signed in
/// with (found by its ID token's `iss`, as the callback allowed it), the default provider's
/// when there is only one or none matches.
fn clock_skew(providers: &Providers, claims: &RawClaims) -> u64 {
    let mut skew = providers.default_provider().config().clock_skew;
    if providers.all().len() > 1 {
        claims.scan(
            |name| (name == "iss").then_some(0),
            |_, json, found| {
                // An issuer is written by serde_json with nothing to escape but quotes and
                // backslashes, which no configured issuer holds.
                let issuer = json.strip_prefix('"').and_then(|j| j.strip_suffix('"'));
                if found == Found::Value
                    && let Some(provider) = issuer.and_then(|iss| providers.by_issuer(iss))
                {
                    skew = provider.config().clock_skew;
                }
            },
        );
    }
    skew.as_secs()
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::oidc::Provider;
    use serde_json::json;
    use std::sync::Arc;

    #[test]
    fn a_step_up_allows_the_clock_skew_of_the_provider_the_session_signed_in_with() {
        let text = "[oidc]\nissuer = \"https://a.example\"\nclient_id = \"app\"\nclient_secret = \"s\"\nclock_skew = \"10s\"\n\
                    [[providers]]\nid = \"b\"\nissuer = \"https://b.example\"\nclient_id = \"app\"\nclient_secret = \"s\"\n\
                    clock_skew = \"300s\"\n";
        let config = crate::config::Config::from_toml(text, Vec::new()).expect("a valid config");
        let clock: crate::clock::SharedClock = Arc::new(crate::clock::SystemClock);
        let provider = |oidc: crate::config::OidcConfig| Arc::new(Provider::new(oidc, clock.clone(), Arc::default()));
        let providers =
            Providers::new(provider(config.oidc.clone()), config.providers.into_iter().map(provider).collect());
        let skew = |claims: serde_json::Value| clock_skew(&providers, &RawClaims::of(&claims));
        assert_eq!(skew(json!({"iss": "https://b.example", "acr": "mfa"})), 300);
        assert_eq!(skew(json!({"iss": "https://a.example"})), 10);
        for other in [json!({"iss": "https://c.example"}), json!({}), json!({"iss": ["https://b.example"]})] {
            assert_eq!(skew(other.clone()), 10, "{other}");
        }
        let alone = Providers::new(provider(config.oidc), Vec::new());
        assert_eq!(clock_skew(&alone, &RawClaims::of(&json!({"iss": "https://b.example"}))), 10);
    }
}
