//! The token service: a fresh access token for a session, refreshing when it is due.
//!
//! Refresh is where BFFs break: N concurrent calls arriving as the token expires must cause one
//! refresh, not N (a rotating provider takes the second use of a refresh token as a replay and
//! revokes the whole grant). So refresh is single-flight per session: callers queue on the
//! session's lock (bounded wait), and whoever gets it *looks again* at the stored session before
//! calling the provider: usually the one before it has already refreshed.
//!
//! Outcomes: a provider "no" (e.g. `invalid_grant`) ends the session; a provider in trouble does
//! not: a token that is due but not yet expired is still used, an expired one gets a 503 and the
//! session is kept for a later try.

use crate::oidc::{OidcError, Provider};
use crate::session::{Session, SessionTicket, Sessions, StoreError, StoreKey};
use moka::sync::Cache;
use openidconnect::AccessToken;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenError {
    /// The provider refused the refresh, or there is nothing to refresh with: the session is over.
    SessionExpired,
    /// The access token has expired and the provider cannot be asked right now.
    ProviderUnavailable,
    Store(StoreError),
}

impl From<StoreError> for TokenError {
    fn from(e: StoreError) -> Self {
        TokenError::Store(e)
    }
}

pub struct TokenService {
    provider: Arc<Provider>,
    /// One lock per session being refreshed; entries disappear once idle.
    locks: Cache<StoreKey, Arc<Mutex<()>>>,
    margin: u64,
    lock_wait: Duration,
}

impl TokenService {
    /// `margin`: refresh this long before expiry. `lock_wait`: how long a caller queues behind a
    /// refresh in progress (longer than one provider call).
    pub fn new(provider: Arc<Provider>, margin: Duration, lock_wait: Duration) -> Self {
        let locks = Cache::builder().time_to_idle(Duration::from_secs(300)).build();
        Self { provider, locks, margin: margin.as_secs(), lock_wait }
    }

    /// The session's access token, refreshed first if it is due.
    pub async fn access_token(
        &self,
        sessions: &Sessions,
        ticket: &SessionTicket,
        session: Session,
    ) -> Result<AccessToken, TokenError> {
        let now = sessions.now();
        if !self.is_due(&session, now) {
            return Ok(session.access_token);
        }
        if session.refresh_token.is_none() {
            return self.without_refresh(sessions, ticket, session, now).await;
        }
        let lock = self.locks.get_with(ticket.store_key(), || Arc::new(Mutex::new(())));
        let Ok(_guard) = tokio::time::timeout(self.lock_wait, lock.lock()).await else {
            tracing::warn!(session = %ticket.store_key().log_id(), "gave up waiting for a refresh in progress");
            return still_valid(session, now).ok_or(TokenError::ProviderUnavailable);
        };
        // Look again: a request ahead of us may have refreshed (or ended) the session.
        let Some(mut current) = sessions.reload(ticket).await? else { return Err(TokenError::SessionExpired) };
        let now = sessions.now();
        if !self.is_due(&current, now) {
            return Ok(current.access_token);
        }
        let Some(refresh_token) = current.refresh_token.clone() else {
            return self.without_refresh(sessions, ticket, current, now).await;
        };
        let span = tracing::info_span!("refresh", session = %ticket.store_key().log_id());
        let _enter = span.enter();
        match self.provider.refresh(&refresh_token, &current.sub).await {
            Ok(refreshed) => {
                current.access_token = refreshed.access_token;
                current.access_token_expires_at = refreshed.access_token_expires_at;
                if let Some(rotated) = refreshed.refresh_token {
                    current.refresh_token = Some(rotated);
                }
                if let Some(claims) = refreshed.claims {
                    current.claims = claims;
                }
                if current.id_token.is_some() && refreshed.id_token.is_some() {
                    current.id_token = refreshed.id_token;
                }
                // Saved before the lock is released: the next in line reads the new tokens.
                sessions.update(ticket, &current).await?;
                tracing::info!("tokens refreshed");
                Ok(current.access_token)
            }
            Err(OidcError::Rejected(code)) => {
                tracing::info!(error = %code, "the provider refused the refresh; ending the session");
                sessions.end(ticket).await?;
                Err(TokenError::SessionExpired)
            }
            Err(e) => {
                tracing::warn!(error = %e, "refresh failed; the session is kept");
                still_valid(current, now).ok_or(TokenError::ProviderUnavailable)
            }
        }
    }

    fn is_due(&self, session: &Session, now: u64) -> bool {
        session.access_token_expires_at.is_some_and(|at| now.saturating_add(self.margin) >= at)
    }

    /// Due, and nothing to refresh with: usable until it expires, then the session is over.
    async fn without_refresh(
        &self,
        sessions: &Sessions,
        ticket: &SessionTicket,
        session: Session,
        now: u64,
    ) -> Result<AccessToken, TokenError> {
        if let Some(token) = still_valid(session, now) {
            return Ok(token);
        }
        sessions.end(ticket).await?;
        Err(TokenError::SessionExpired)
    }
}

fn still_valid(session: Session, now: u64) -> Option<AccessToken> {
    match session.access_token_expires_at {
        Some(at) if now >= at => None,
        _ => Some(session.access_token),
    }
}
