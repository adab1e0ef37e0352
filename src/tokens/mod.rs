//! The token service: a fresh access token for a session, refreshing when it is due.
//!
//! Refresh is where BFFs break: N concurrent calls arriving as the token expires must cause one
//! refresh, not N (a rotating provider takes the second use of a refresh token as a replay and
//! revokes the whole grant). So refresh is single-flight per session: callers queue on the
//! session's lock (bounded wait), and whoever gets it *looks again* at the stored session before
//! calling the provider: usually the one before it has already refreshed.
//!
//! A session holds its sign-in token and, for routes naming an RFC 8707 `resource`, one token
//! per resource, obtained and renewed with the same refresh token under the same lock (each
//! such refresh may rotate the refresh token, which is why they share it).
//!
//! Outcomes: a provider "no" (e.g. `invalid_grant`) ends the session; a provider in trouble does
//! not: a token that is due but not yet expired is still used, an expired one gets a 503 and the
//! session is kept for a later try. A refresh that went unanswered (sent, then a timeout or a
//! broken connection) may have been acted on: the provider may have rotated the refresh token
//! and sent the new one into the void. Sending the old one again would look like a replay to a
//! rotating provider, which revokes the grant; so it is not sent again for
//! `oidc.refresh_retry_backoff`, and the still-valid access token keeps being used meanwhile.
//!
//! cloakroom's own client-credentials tokens (for `client` routes) follow the same rules: cached
//! until due, renewed by one caller while the others wait, shared by every user. A route's
//! exchanged token ([`exchange`], RFC 8693) is kept in the session beside the resource tokens,
//! obtained under the same lock and lease.

mod exchange;

pub use exchange::ExchangeError;

use crate::config::Audience;
use crate::crypto::dpop::DpopKey;
use crate::metrics::{Metrics, RefreshOutcome};
use crate::oidc::{OidcError, Provider, Providers, Refreshed};
use crate::session::store::Store;
use crate::session::{
    Lease, ResourceToken, Session, SessionStore, SessionTicket, SessionTokens, Sessions, StoreError, StoreKey,
};
use moka::sync::Cache;
use openidconnect::AccessToken;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;
use tracing::Instrument;

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

/// A token and when it expires (unix seconds), if known.
#[derive(Clone)]
struct Held {
    token: AccessToken,
    expires_at: Option<u64>,
}

pub struct TokenService {
    /// A session's refreshes go to the provider it signed in with; client tokens to the default.
    providers: Arc<Providers>,
    /// One lock per session being refreshed; entries disappear once idle.
    locks: Cache<StoreKey, Arc<Mutex<()>>>,
    /// Sessions whose last refresh went unanswered, with when their refresh token may be sent
    /// again (unix seconds): it may already be spent at the provider.
    in_doubt: Cache<StoreKey, u64>,
    margin: u64,
    lock_wait: Duration,
    /// The cross-replica lease on a session's refresh outlives one refresh.
    lease: Duration,
    retry_backoff: Duration,
    /// Client tokens by audience (`None`: the default). Read on every `client` call; renewed
    /// under `client_renewal`.
    client_tokens: std::sync::RwLock<HashMap<Option<Audience>, Held>>,
    client_renewal: Mutex<()>,
    /// Exchanges the provider refused, per session and exchange: not asked again for a while
    /// (a storm of calls gets one refusal from the provider, not one each).
    exchange_refused: Cache<(StoreKey, String), ()>,
    metrics: Arc<Metrics>,
}

/// A client token whose lifetime the provider did not state is renewed this often.
const CLIENT_TOKEN_DEFAULT_LIFETIME: u64 = 300;

/// How [`TokenService`] times its refreshes.
#[derive(Debug, Clone, Copy)]
pub struct RefreshTiming {
    /// Refresh this long before expiry.
    pub margin: Duration,
    /// How long a call without a usable token queues behind a refresh in progress.
    pub lock_wait: Duration,
    /// How long a refresh waits for the provider's answer (`oidc.refresh_timeout`).
    pub refresh_timeout: Duration,
    /// After an unanswered refresh, how long its refresh token is not sent again.
    pub retry_backoff: Duration,
}

impl TokenService {
    pub fn new(providers: Arc<Providers>, timing: RefreshTiming, metrics: Arc<Metrics>) -> Self {
        let locks = Cache::builder().time_to_idle(Duration::from_secs(300)).build();
        let in_doubt = Cache::builder().time_to_live(timing.retry_backoff).max_capacity(1_000_000).build();
        Self {
            providers,
            locks,
            in_doubt,
            margin: timing.margin.as_secs(),
            lock_wait: timing.lock_wait,
            lease: timing.refresh_timeout + Duration::from_secs(5),
            retry_backoff: timing.retry_backoff,
            client_tokens: Default::default(),
            client_renewal: Mutex::new(()),
            exchange_refused: Cache::builder().time_to_live(exchange::REFUSAL_REMEMBERED).max_capacity(100_000).build(),
            metrics,
        }
    }

    /// The token service of a reloaded configuration: its providers and timing, this one's
    /// per-session locks, unanswered refreshes and refused exchanges (a refresh in flight on
    /// the old configuration still excludes one on the new). Client tokens are fetched anew.
    pub fn succeeding(&self, providers: Arc<Providers>, timing: RefreshTiming) -> Self {
        let mut next = Self::new(providers, timing, self.metrics.clone());
        next.locks = self.locks.clone();
        next.in_doubt = self.in_doubt.clone();
        next.exchange_refused = self.exchange_refused.clone();
        next
    }

    /// The session's access token for `audience` (the sign-in's own when `None`), refreshed when
    /// it is missing or due.
    ///
    /// The refresh runs in a task of its own, holding the session's lock: a caller that stops
    /// waiting (its bound passed, its client left) does not abandon it halfway, with the
    /// provider's answer (and the rotated refresh token in it) lost. A caller whose token is
    /// still valid never waits for the provider: it starts the refresh (unless one is under way)
    /// and goes on at once with the token it has; the next calls get the refreshed one. Only a
    /// caller without a valid token waits, up to `lock_wait`, and the clock is read again after.
    pub async fn access_token<C, S>(
        self: &Arc<Self>,
        sessions: &Arc<Sessions>,
        ticket: &SessionTicket,
        session: SessionTokens<C, S>,
        audience: Option<&Audience>,
    ) -> Result<AccessToken, TokenError> {
        let now = sessions.now();
        let can_refresh = session.can_refresh();
        let held = match held(session, audience) {
            Some(held) if !self.is_due(held.expires_at, now) => return Ok(held.token),
            held => held,
        };
        // The paths past a valid token are boxed: a future's size is its largest path's, and
        // this one is held (and moved) by every proxied call, which almost always ends above.
        if !can_refresh {
            return Box::pin(self.without_refresh(sessions, ticket, held, now)).await;
        }
        let key = ticket.store_key();
        if self.backing_off(&key, now) {
            return still_valid(held, now).ok_or(TokenError::ProviderUnavailable);
        }
        let lock = self.session_lock(key);
        if let Some(valid) = still_valid(held.clone(), now) {
            match lock.try_lock_owned() {
                Ok(guard) => drop(self.spawn_refresh(sessions, ticket, audience, None, guard)),
                Err(_) => tracing::debug!(session = %key.log_id(), "a refresh is in progress; going on without it"),
            }
            return Ok(valid);
        }
        // No valid token (none held, or expired, and time only moves on): wait for the refresh.
        Box::pin(self.refreshed(sessions, ticket, audience, None, &lock)).await
    }

    /// A fresh token for a session whose token `rejected` an upstream refused (RFC 6750
    /// `invalid_token`: revoked at the provider, a signing key rolled over): refreshed once,
    /// single-flight, waiting up to `lock_wait`; a call that finds the token already replaced
    /// (by the refresh another rejected call started) takes the replacement. The rejected token
    /// is never handed back; a refused refresh ends the session, as any refusal does.
    pub async fn replace_rejected(
        self: &Arc<Self>,
        sessions: &Arc<Sessions>,
        ticket: &SessionTicket,
        rejected: &AccessToken,
        audience: Option<&Audience>,
    ) -> Result<AccessToken, TokenError> {
        let key = ticket.store_key();
        if self.backing_off(&key, sessions.now()) {
            return Err(TokenError::ProviderUnavailable);
        }
        let lock = self.session_lock(key);
        self.refreshed(sessions, ticket, audience, Some(rejected.clone()), &lock).await
    }

    /// Takes the session's lock and waits for a refresh, both within `lock_wait`: the token it
    /// brings, or `ProviderUnavailable` when the lock or the answer did not come in time (the
    /// refresh goes on in its own task, holding the lock, whoever stopped waiting).
    async fn refreshed(
        self: &Arc<Self>,
        sessions: &Arc<Sessions>,
        ticket: &SessionTicket,
        audience: Option<&Audience>,
        rejected: Option<AccessToken>,
        lock: &Arc<Mutex<()>>,
    ) -> Result<AccessToken, TokenError> {
        let key = ticket.store_key();
        let deadline = tokio::time::Instant::now() + self.lock_wait;
        let Ok(guard) = tokio::time::timeout_at(deadline, lock.clone().lock_owned()).await else {
            tracing::debug!(session = %key.log_id(), "a refresh is in progress and did not end in time");
            return Err(TokenError::ProviderUnavailable);
        };
        match tokio::time::timeout_at(deadline, self.spawn_refresh(sessions, ticket, audience, rejected, guard)).await {
            Ok(Ok(result)) => result,
            Ok(Err(e)) => {
                tracing::error!(error = %e, "the refresh task failed");
                Err(TokenError::ProviderUnavailable)
            }
            Err(_) => {
                tracing::debug!(session = %key.log_id(), "the refresh goes on; this call did not wait for it");
                Err(TokenError::ProviderUnavailable)
            }
        }
    }

    /// Starts a refresh in a task of its own, which holds the session's lock (`guard`) until done.
    fn spawn_refresh(
        self: &Arc<Self>,
        sessions: &Arc<Sessions>,
        ticket: &SessionTicket,
        audience: Option<&Audience>,
        rejected: Option<AccessToken>,
        guard: tokio::sync::OwnedMutexGuard<()>,
    ) -> tokio::task::JoinHandle<Result<AccessToken, TokenError>> {
        let key = ticket.store_key();
        let span = tracing::info_span!("refresh", session = %key.log_id(), resource = audience.and_then(|a| a.resource.as_deref()));
        let (service, sessions, ticket, audience) = (self.clone(), sessions.clone(), ticket.clone(), audience.cloned());
        tokio::spawn(
            async move {
                let result = service.refresh_leased(&sessions, &ticket, audience.as_ref(), rejected.as_ref()).await;
                drop(guard);
                result
            }
            .instrument(span)
            .instrument(tracing::info_span!(target: crate::telemetry::TRACES, "refresh")),
        )
    }

    /// This replica's lock on a session's tokens (refresh, exchange), made on first use.
    fn session_lock(&self, key: StoreKey) -> Arc<Mutex<()>> {
        self.locks.get_with(key, || Arc::new(Mutex::new(())))
    }

    /// Whether an unanswered refresh keeps this session's refresh token from being sent now.
    fn backing_off(&self, key: &StoreKey, now: u64) -> bool {
        self.in_doubt.get(key).is_some_and(|until| now < until)
    }

    /// Runs a refresh holding this replica's lock and the store's lease on the session, held
    /// across the refresh so that every process sharing the store takes turns.
    async fn refresh_leased(
        &self,
        sessions: &Sessions,
        ticket: &SessionTicket,
        audience: Option<&Audience>,
        rejected: Option<&AccessToken>,
    ) -> Result<AccessToken, TokenError> {
        let key = ticket.store_key();
        let Some(lease) = self.lease(sessions.store(), &key).await? else {
            tracing::warn!(session = %key.log_id(), "gave up waiting for another replica's refresh");
            let current = sessions.reload(ticket).await?.ok_or(TokenError::SessionExpired)?;
            return still_valid(held_in(&current, audience), sessions.now()).ok_or(TokenError::ProviderUnavailable);
        };
        let result = self.refresh_locked(sessions, ticket, audience, rejected).await;
        // An unanswered refresh keeps a shared store's lease until it expires: other replicas,
        // too, wait before sending a refresh token that may be spent (this one has `in_doubt`).
        let keep = self.in_doubt.contains_key(&key) && sessions.store().is_shared();
        if !keep && let Err(e) = sessions.store().release_lease(&key, lease).await {
            tracing::warn!(error = %e, "could not release the refresh lease; it expires by itself");
        }
        result
    }

    /// Waits (up to `lock_wait`) for the store's lease on a session's refresh. Another process
    /// holding it is only seen by asking again (every 20 ms: refreshes are rare, and a wait
    /// that held across replicas without polling would need a store-side notification).
    async fn lease(&self, store: &Store, key: &StoreKey) -> Result<Option<Lease>, StoreError> {
        let deadline = tokio::time::Instant::now() + self.lock_wait;
        loop {
            if let Some(lease) = store.try_lease(key, self.lease).await? {
                return Ok(Some(lease));
            }
            if tokio::time::Instant::now() >= deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The part of [`TokenService::access_token`] that runs holding the session's locks.
    async fn refresh_locked(
        &self,
        sessions: &Sessions,
        ticket: &SessionTicket,
        audience: Option<&Audience>,
        rejected: Option<&AccessToken>,
    ) -> Result<AccessToken, TokenError> {
        // Look again: a request ahead of us may have refreshed (or ended) the session. A token an
        // upstream rejected counts as none, whatever its expiry says.
        let Some(mut current) = sessions.reload(ticket).await? else { return Err(TokenError::SessionExpired) };
        let now = sessions.now();
        let held = held_in(&current, audience).filter(|h| rejected.is_none_or(|r| r.secret() != h.token.secret()));
        if let Some(held) = &held
            && !self.is_due(held.expires_at, now)
        {
            return Ok(held.token.clone());
        }
        let Some(refresh_token) = current.refresh_token.clone() else {
            return self.without_refresh(sessions, ticket, held, now).await;
        };
        let key = ticket.store_key();
        if self.backing_off(&key, now) {
            return still_valid(held, now).ok_or(TokenError::ProviderUnavailable);
        }
        let Some(provider) = self.providers.get(current.provider.as_deref()).cloned() else {
            tracing::warn!("the session's provider is no longer configured; ending the session");
            sessions.end(ticket).await?;
            return Err(TokenError::SessionExpired);
        };
        // The session's DPoP key: a refresh proves it, so the new tokens stay bound to it.
        let dpop = match current.dpop_key.as_ref().map(|kept| DpopKey::from_record(kept.expose())).transpose() {
            Ok(dpop) => dpop,
            Err(_) => {
                tracing::error!("the session's DPoP key cannot be read; ending the session");
                sessions.end(ticket).await?;
                return Err(TokenError::SessionExpired);
            }
        };
        let outcome = provider.refresh(&refresh_token, &current.sub, audience, dpop.as_ref()).await;
        // The provider may have taken long: what is still valid is judged at the answer's time.
        let now = sessions.now();
        match outcome {
            Ok(refreshed) => {
                if let Some(end) = refreshed.refresh_token_expires_at {
                    // The refresh token's new end moves the session's, within its absolute timeout.
                    current.expires_at = sessions.session_end(current.created_at, Some(end));
                }
                let token = apply(&mut current, audience, refreshed);
                refresh_userinfo(&provider, &mut current, audience, &token, now, dpop.as_ref()).await;
                // Saved before the lock is released: the next in line reads the new tokens.
                let kept = sessions.update(ticket, &current).await?;
                self.metrics.refresh(RefreshOutcome::Ok);
                if !kept {
                    tracing::info!("the session ended while its tokens were refreshed; it stays ended");
                    return Err(TokenError::SessionExpired);
                }
                tracing::info!("tokens refreshed");
                Ok(token)
            }
            Err(OidcError::Rejected(code)) => {
                tracing::info!(error = %code, "the provider refused the refresh; ending the session");
                self.metrics.refresh(RefreshOutcome::InvalidGrant);
                sessions.end(ticket).await?;
                Err(TokenError::SessionExpired)
            }
            Err(OidcError::ClientRejected(code)) => {
                // `invalid_client`: cloakroom's own credential, which the operator fixes; every
                // session resumes then. Meanwhile each serves while its access token is valid.
                self.metrics.refresh(RefreshOutcome::ClientRefused);
                tracing::error!(provider = %provider.config().id, error = %code, "the provider refused cloakroom's client authentication at a refresh; check the provider's client_auth and its credential; the session is kept");
                still_valid(held, now).ok_or(TokenError::ClientRejected)
            }
            Err(OidcError::InDoubt(e)) => {
                self.metrics.refresh(RefreshOutcome::ProviderError);
                let until = now.saturating_add(self.retry_backoff.as_secs());
                self.in_doubt.insert(key, until);
                tracing::warn!(error = %e, backoff = ?self.retry_backoff, "a refresh went unanswered: its refresh token may be spent, so it is not sent again before the back-off; the session is kept");
                still_valid(held, now).ok_or(TokenError::ProviderUnavailable)
            }
            Err(e) => {
                self.metrics.refresh(RefreshOutcome::ProviderError);
                tracing::warn!(error = %e, "refresh failed; the session is kept");
                still_valid(held, now).ok_or(TokenError::ProviderUnavailable)
            }
        }
    }

    /// cloakroom's own token (client-credentials grant) for `audience`, cached until due.
    pub async fn client_token(&self, now: u64, audience: Option<&Audience>) -> Result<AccessToken, TokenError> {
        let key = audience.cloned();
        if let Some(token) = self.cached_client_token(&key, now, true) {
            return Ok(token);
        }
        let Ok(_renewing) = tokio::time::timeout(self.lock_wait, self.client_renewal.lock()).await else {
            return self.cached_client_token(&key, now, false).ok_or(TokenError::ProviderUnavailable);
        };
        // Look again: the caller before us may just have renewed it.
        if let Some(token) = self.cached_client_token(&key, now, true) {
            return Ok(token);
        }
        match self.providers.default_provider().client_credentials(audience).await {
            Ok((token, expires_at)) => {
                let expires_at = Some(expires_at.unwrap_or(now + CLIENT_TOKEN_DEFAULT_LIFETIME));
                let held = Held { token: token.clone(), expires_at };
                self.client_tokens.write().unwrap_or_else(|e| e.into_inner()).insert(key, held);
                tracing::info!(resource = audience.and_then(|a| a.resource.as_deref()), "client token renewed");
                Ok(token)
            }
            Err(OidcError::Rejected(code) | OidcError::ClientRejected(code)) => {
                tracing::error!(error = %code, "the provider refused cloakroom's client credentials");
                self.cached_client_token(&key, now, false).ok_or(TokenError::ClientRejected)
            }
            Err(e) => {
                tracing::warn!(error = %e, "client token renewal failed");
                self.cached_client_token(&key, now, false).ok_or(TokenError::ProviderUnavailable)
            }
        }
    }

    /// The cached client token if it is not due (`fresh`), or merely not expired.
    fn cached_client_token(&self, key: &Option<Audience>, now: u64, fresh: bool) -> Option<AccessToken> {
        let tokens = self.client_tokens.read().unwrap_or_else(|e| e.into_inner());
        let held = tokens.get(key)?;
        let limit = if fresh { now.saturating_add(self.margin) } else { now };
        held.expires_at.is_none_or(|at| limit < at).then(|| held.token.clone())
    }

    fn is_due(&self, expires_at: Option<u64>, now: u64) -> bool {
        expires_at.is_some_and(|at| now.saturating_add(self.margin) >= at)
    }

    /// Due or missing, and nothing to refresh with: usable until it expires, then the session is
    /// over (a missing resource token can never be had).
    async fn without_refresh(
        &self,
        sessions: &Sessions,
        ticket: &SessionTicket,
        held: Option<Held>,
        now: u64,
    ) -> Result<AccessToken, TokenError> {
        if let Some(token) = still_valid(held, now) {
            return Ok(token);
        }
        sessions.end(ticket).await?;
        Err(TokenError::SessionExpired)
    }
}

/// Where a session keeps a route's token: by its resource (routes carrying a user's token always
/// name one when they have an audience; validation sees to it).
fn resource_key(audience: &Audience) -> &str {
    audience.resource.as_deref().unwrap_or_default()
}

/// The token the session holds for `audience`, if any.
fn held_in(session: &Session, audience: Option<&Audience>) -> Option<Held> {
    match audience {
        None => Some(Held { token: session.access_token.clone(), expires_at: session.access_token_expires_at }),
        Some(audience) => session
            .resource_tokens
            .get(resource_key(audience))
            .map(|t| Held { token: t.access_token.clone(), expires_at: t.expires_at }),
    }
}

/// [`held_in`] on the proxy's decoding of a session, taking the token without a copy.
fn held<C, S>(session: SessionTokens<C, S>, audience: Option<&Audience>) -> Option<Held> {
    match audience {
        None => Some(Held { token: session.access_token, expires_at: session.access_token_expires_at }),
        Some(audience) => {
            let mut tokens = session.resource_tokens;
            tokens.remove(resource_key(audience)).map(|t| Held { token: t.access_token, expires_at: t.expires_at })
        }
    }
}

/// Stores a refresh's results in the session; returns the new token for `audience`.
fn apply(session: &mut Session, audience: Option<&Audience>, refreshed: Refreshed) -> AccessToken {
    let token = refreshed.access_token.clone();
    match audience {
        None => {
            session.access_token = refreshed.access_token;
            session.access_token_expires_at = refreshed.access_token_expires_at;
            if refreshed.scope.is_some() {
                session.scope = refreshed.scope;
            }
        }
        Some(audience) => {
            let entry =
                ResourceToken { access_token: refreshed.access_token, expires_at: refreshed.access_token_expires_at };
            session.resource_tokens.insert(resource_key(audience).to_string(), entry);
        }
    }
    if let Some(rotated) = refreshed.refresh_token {
        session.refresh_token = Some(rotated);
    }
    if let Some(mut claims) = refreshed.claims {
        // A refresh is no new authentication: what the provider leaves out of a refreshed ID
        // token about the sign-in itself (OpenID Connect Core §12.2) stays as it was; so do
        // the userinfo endpoint's claims, which an ID token need not repeat.
        let from_userinfo = session.userinfo_at.is_some();
        for (name, value) in std::mem::take(&mut session.claims) {
            let kept = from_userinfo || matches!(name.as_str(), "acr" | "amr" | "auth_time");
            if kept && !claims.contains_key(&name) {
                claims.insert(name, value);
            }
        }
        session.claims = claims;
    }
    if session.id_token.is_some() && refreshed.id_token.is_some() {
        session.id_token = refreshed.id_token;
    }
    token
}

/// The userinfo claims again, with the new token, when the provider's configuration asks and
/// they are due; only for the sign-in's own token (a resource's is for its API). A failure keeps
/// the claims as they were: the refresh itself succeeded.
async fn refresh_userinfo(
    provider: &Provider,
    session: &mut Session,
    audience: Option<&Audience>,
    token: &AccessToken,
    now: u64,
    dpop: Option<&DpopKey>,
) {
    let Some(interval) = provider.userinfo_interval() else { return };
    if audience.is_some() || session.userinfo_at.is_none_or(|at| now < at.saturating_add(interval.as_secs())) {
        return;
    }
    match provider.userinfo(token, &session.sub, dpop).await {
        Ok(claims) => {
            crate::oidc::merge_userinfo(&mut session.claims, claims);
            session.userinfo_at = Some(now);
        }
        Err(e) => tracing::warn!(error = %e, "userinfo not fetched again; the claims stay as they were"),
    }
}

fn still_valid(held: Option<Held>, now: u64) -> Option<AccessToken> {
    let held = held?;
    match held.expires_at {
        Some(at) if now >= at => None,
        _ => Some(held.token),
    }
}
