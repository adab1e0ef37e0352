//! A route's own token by token exchange (RFC 8693): the session's access token traded for one
//! with the route's `audience`/`resource`/`scope`, kept in the session until due, and obtained
//! single-flight: this replica's lock on the session, then the store's lease across replicas,
//! then a look at the stored session (another caller, or another replica, may have exchanged
//! already). A refusal by the provider is the route's answer (`403`), never the session's end;
//! it is remembered for [`REFUSAL_REMEMBERED`] so that a storm of calls asks once.

use super::{Held, TokenError, TokenService, still_valid};
use crate::config::Exchange;
use crate::oidc::OidcError;
use crate::session::{ResourceToken, SessionStore, SessionTicket, Sessions};
use openidconnect::AccessToken;
use std::sync::Arc;
use std::time::Duration;
use tracing::Instrument;

/// How long a refused exchange is answered without asking the provider again.
pub(super) const REFUSAL_REMEMBERED: Duration = Duration::from_secs(30);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ExchangeError {
    /// The provider refused the exchange (its policy, the audience, the scope).
    Refused,
    Token(TokenError),
}

impl From<TokenError> for ExchangeError {
    fn from(e: TokenError) -> Self {
        ExchangeError::Token(e)
    }
}

impl From<crate::session::StoreError> for ExchangeError {
    fn from(e: crate::session::StoreError) -> Self {
        ExchangeError::Token(e.into())
    }
}

impl TokenService {
    /// The route's exchanged token: `held` (what the session holds for it) while not due, else
    /// `subject` (the session's fresh access token) exchanged once.
    pub async fn exchanged(
        self: &Arc<Self>,
        sessions: &Arc<Sessions>,
        ticket: &SessionTicket,
        held: Option<ResourceToken>,
        subject: &AccessToken,
        exchange: &Exchange,
    ) -> Result<AccessToken, ExchangeError> {
        if let Some(held) = held
            && !self.is_due(held.expires_at, sessions.now())
        {
            return Ok(held.access_token);
        }
        let key = ticket.store_key();
        let refused = (key, exchange.key.clone());
        if self.exchange_refused.contains_key(&refused) {
            return Err(ExchangeError::Refused);
        }
        let lock = self.session_lock(key);
        let deadline = tokio::time::Instant::now() + self.lock_wait;
        let Ok(_guard) = tokio::time::timeout_at(deadline, lock.lock_owned()).await else {
            return Err(TokenError::ProviderUnavailable.into());
        };
        let Some(lease) = self.lease(sessions.store(), &key).await? else {
            tracing::warn!(session = %key.log_id(), "gave up waiting for another replica's token exchange");
            return Err(TokenError::ProviderUnavailable.into());
        };
        let result = self.exchange_leased(sessions, ticket, subject, exchange).await;
        if let Err(e) = sessions.store().release_lease(&key, lease).await {
            tracing::warn!(error = %e, "could not release the exchange lease; it expires by itself");
        }
        if matches!(result, Err(ExchangeError::Refused)) {
            self.exchange_refused.insert(refused, ());
        }
        result
    }

    /// An upstream rejected the route's exchanged token (`invalid_token`): the session forgets
    /// it, so that the next call exchanges again (never this one: its token was the only one
    /// meant for that API).
    pub async fn forget_exchanged(
        &self,
        sessions: &Sessions,
        ticket: &SessionTicket,
        rejected: &AccessToken,
        exchange: &Exchange,
    ) -> Result<(), TokenError> {
        let key = ticket.store_key();
        let lock = self.session_lock(key);
        let Ok(_guard) = tokio::time::timeout(self.lock_wait, lock.lock_owned()).await else {
            return Err(TokenError::ProviderUnavailable);
        };
        let Some(mut current) = sessions.reload(ticket).await? else { return Ok(()) };
        let same =
            current.resource_tokens.get(&exchange.key).is_some_and(|t| t.access_token.secret() == rejected.secret());
        if same {
            current.resource_tokens.remove(&exchange.key);
            sessions.update(ticket, &current).await?;
        }
        Ok(())
    }

    async fn exchange_leased(
        &self,
        sessions: &Sessions,
        ticket: &SessionTicket,
        subject: &AccessToken,
        exchange: &Exchange,
    ) -> Result<AccessToken, ExchangeError> {
        // Look again: a caller before us, on this replica or another, may have exchanged.
        let Some(mut current) = sessions.reload(ticket).await? else { return Err(TokenError::SessionExpired.into()) };
        let held = current.resource_tokens.get(&exchange.key).cloned();
        if let Some(held) = &held
            && !self.is_due(held.expires_at, sessions.now())
        {
            return Ok(held.access_token.clone());
        }
        let Some(provider) = self.providers.get(current.provider.as_deref()).cloned() else {
            return Err(TokenError::SessionExpired.into());
        };
        let span = tracing::info_span!(
            "token_exchange",
            audience = exchange.audience.as_deref(),
            resource = exchange.resource.as_deref()
        );
        let trace = tracing::info_span!(target: crate::telemetry::TRACES, "token_exchange");
        match provider.exchange_token(subject, exchange).instrument(span).instrument(trace).await {
            Ok((token, expires_at)) => {
                let entry = ResourceToken { access_token: token.clone(), expires_at };
                current.resource_tokens.insert(exchange.key.clone(), entry);
                if !sessions.update(ticket, &current).await? {
                    return Err(TokenError::SessionExpired.into());
                }
                tracing::info!("token exchanged");
                Ok(token)
            }
            Err(OidcError::Rejected(code)) => {
                tracing::warn!(error = %code, "the provider refused the route's token exchange; the session is kept");
                Err(ExchangeError::Refused)
            }
            Err(OidcError::ClientRejected(code)) => {
                tracing::error!(error = %code, "the provider refused cloakroom's client authentication at a token exchange");
                Err(TokenError::ClientRejected.into())
            }
            Err(e) => {
                tracing::warn!(error = %e, "token exchange failed; the session is kept");
                let held = held.map(|t| Held { token: t.access_token, expires_at: t.expires_at });
                still_valid(held, sessions.now()).ok_or(TokenError::ProviderUnavailable.into())
            }
        }
    }
}
