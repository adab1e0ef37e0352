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
//!
//! cloakroom's own client-credentials token (for `client` routes) follows the same rules: cached
//! until due, renewed by one caller while the others wait, shared by every user.

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
    /// The provider refused cloakroom's own client credentials: a deployment problem.
    ClientRejected,
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
    /// The client token: read lock-free-ish on every `client` call, renewed under `client_renewal`.
    client_token: std::sync::RwLock<Option<CachedToken>>,
    client_renewal: Mutex<()>,
}

#[derive(Clone)]
struct CachedToken {
    token: AccessToken,
    expires_at: u64,
}

/// A client token whose lifetime the provider did not state is renewed this often.
const CLIENT_TOKEN_DEFAULT_LIFETIME: u64 = 300;

impl TokenService {
    /// `margin`: refresh this long before expiry. `lock_wait`: how long a caller queues behind a
    /// refresh in progress (longer than one provider call).
    pub fn new(provider: Arc<Provider>, margin: Duration, lock_wait: Duration) -> Self {
        let locks = Cache::builder().time_to_idle(Duration::from_secs(300)).build();
        Self {
            provider,
            locks,
            margin: margin.as_secs(),
            lock_wait,
            client_token: std::sync::RwLock::new(None),
            client_renewal: Mutex::new(()),
        }
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

    /// cloakroom's own token (client-credentials grant), cached until due.
    pub async fn client_token(&self, now: u64) -> Result<AccessToken, TokenError> {
        if let Some(token) = self.cached_client_token(now, true) {
            return Ok(token);
        }
        let Ok(_renewing) = tokio::time::timeout(self.lock_wait, self.client_renewal.lock()).await else {
            return self.cached_client_token(now, false).ok_or(TokenError::ProviderUnavailable);
        };
        // Look again: the caller before us may just have renewed it.
        if let Some(token) = self.cached_client_token(now, true) {
            return Ok(token);
        }
        match self.provider.client_credentials().await {
            Ok((token, expires_at)) => {
                let expires_at = expires_at.unwrap_or(now + CLIENT_TOKEN_DEFAULT_LIFETIME);
                let cached = CachedToken { token: token.clone(), expires_at };
                *self.client_token.write().unwrap_or_else(|e| e.into_inner()) = Some(cached);
                tracing::info!("client token renewed");
                Ok(token)
            }
            Err(OidcError::Rejected(code)) => {
                tracing::error!(error = %code, "the provider refused cloakroom's client credentials");
                self.cached_client_token(now, false).ok_or(TokenError::ClientRejected)
            }
            Err(e) => {
                tracing::warn!(error = %e, "client token renewal failed");
                self.cached_client_token(now, false).ok_or(TokenError::ProviderUnavailable)
            }
        }
    }

    /// The cached client token if it is not due (`fresh`), or merely not expired.
    fn cached_client_token(&self, now: u64, fresh: bool) -> Option<AccessToken> {
        let guard = self.client_token.read().unwrap_or_else(|e| e.into_inner());
        let cached = guard.as_ref()?;
        let limit = if fresh { now.saturating_add(self.margin) } else { now };
        (limit < cached.expires_at).then(|| cached.token.clone())
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
