//! [`Sessions`]: the one place that turns a request's cookie into a session and back.

use super::claims::RawClaims;
use super::cookie::CookiePolicy;
use super::memory::MemoryStore;
use super::redis::{RedisSetupError, RedisStore};
use super::store::Store;
use super::*;
use crate::clock::SharedClock;
use crate::config::{SessionConfig, StoreSettings};
use crate::crypto::{random_bytes, sha256};
use crate::metrics::StoreMetrics;
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use http::HeaderMap;
use http::header::HeaderValue;

/// Browsers keep cookies of up to 4096 bytes, name included; the login cookie's name is about
/// 40 bytes.
const MAX_LOGIN_COOKIE_VALUE: usize = 3900;

/// A session's verified ID-token claims.
pub type Claims = serde_json::Map<String, serde_json::Value>;

/// The outcome of reading a request's session cookie.
/// `S`: the whole [`Session`], or only the part the API proxy needs ([`SessionTokens`]).
#[derive(Debug)]
pub enum Lookup<S = Box<Session>> {
    /// No session cookie at all.
    None,
    /// A cookie that opens nothing (malformed, forged, expired, from an old key): the response
    /// should clear it.
    Stale,
    Found(SessionTicket, S),
}

pub struct Sessions {
    store: Store,
    sealer: Sealer,
    cookies: CookiePolicy,
    clock: SharedClock,
    absolute_timeout: u64,
    login_timeout: Duration,
    allow_remember: bool,
    max_sessions_per_user: usize,
}

impl Sessions {
    /// Fails only on a Redis URL that redis-rs cannot use (validation checked it already).
    pub fn new(config: &SessionConfig, clock: SharedClock, metrics: StoreMetrics) -> Result<Self, RedisSetupError> {
        let limits = StoreLimits {
            idle_timeout: config.idle_timeout,
            absolute_timeout: config.absolute_timeout,
            max_sessions: config.max_sessions,
            max_pending_logins: config.max_pending_logins,
            login_timeout: config.login_timeout,
        };
        let store = match &config.store {
            StoreSettings::Memory => Store::Memory(MemoryStore::new(limits)),
            StoreSettings::Redis(settings) => {
                Store::Redis(RedisStore::new((**settings).clone(), limits)?.with_metrics(metrics))
            }
        };
        Ok(Self::over(store, config, clock))
    }

    fn over(store: Store, config: &SessionConfig, clock: SharedClock) -> Self {
        Self {
            store,
            sealer: Sealer::new(config.keys.clone()),
            cookies: CookiePolicy::new(&config.cookie_name, config.same_site)
                .with_legacy_names(&config.legacy_cookie_names),
            clock,
            absolute_timeout: config.absolute_timeout.as_secs(),
            login_timeout: config.login_timeout,
            allow_remember: config.allow_remember,
            max_sessions_per_user: config.max_sessions_per_user,
        }
    }

    /// These sessions under a reloaded `[session]`: the same store (a clone shares it), the
    /// new keys (the first seals, every one opens: a rotation logs nobody out), cookie policy
    /// and per-user limits. The store's own limits are fixed at start.
    pub fn with_keys(&self, config: &SessionConfig) -> Self {
        Self::over(self.store.clone(), config, self.clock.clone())
    }

    /// When a session created at `created_at` ends: its absolute timeout later, or when its
    /// refresh token stops working, if the provider said so and that comes sooner (RFC 10017
    /// §6.1.2.2: the session should not outlive the refresh token).
    pub fn session_end(&self, created_at: u64, refresh_token_expires_at: Option<u64>) -> u64 {
        let absolute = created_at.saturating_add(self.absolute_timeout);
        refresh_token_expires_at.map_or(absolute, |end| end.min(absolute))
    }

    pub fn cookies(&self) -> &CookiePolicy {
        &self.cookies
    }

    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    pub async fn lookup(&self, headers: &HeaderMap) -> Result<Lookup, StoreError> {
        self.lookup_whole(headers, true).await
    }

    /// Like [`Sessions::lookup`]; with `slide` false, the look does not count as a use (the
    /// idle deadline stays where it was).
    pub async fn lookup_whole(&self, headers: &HeaderMap, slide: bool) -> Result<Lookup, StoreError> {
        Ok(match self.lookup_as::<Session>(headers, slide).await? {
            Lookup::Found(ticket, session) => Lookup::Found(ticket, Box::new(session)),
            Lookup::Stale => Lookup::Stale,
            Lookup::None => Lookup::None,
        })
    }

    /// Like [`Sessions::lookup`], decoding only the tokens: what every proxied call needs.
    pub async fn lookup_tokens(&self, headers: &HeaderMap) -> Result<Lookup<SessionTokens>, StoreError> {
        self.lookup_as(headers, true).await
    }

    /// Like [`Sessions::lookup_tokens`], with the user's claims and the granted scope (for a
    /// route's rules and step-up), undecoded.
    pub async fn lookup_tokens_and_claims(
        &self,
        headers: &HeaderMap,
    ) -> Result<Lookup<SessionTokens<RawClaims, String>>, StoreError> {
        self.lookup_as(headers, true).await
    }

    /// The ticket in a request's session cookie: `None` without one, `Some(None)` for a value
    /// that is no ticket.
    pub fn ticket_of(&self, headers: &HeaderMap) -> Option<Option<SessionTicket>> {
        let value = self.cookies.find_session(headers)?;
        Some(std::str::from_utf8(value).ok().and_then(SessionTicket::parse))
    }

    /// The whole session a ticket opens, without counting the look as a use of it.
    pub async fn open(&self, ticket: SessionTicket) -> Result<Lookup, StoreError> {
        Ok(match self.open_as::<Session>(ticket, false).await? {
            Lookup::Found(ticket, session) => Lookup::Found(ticket, Box::new(session)),
            Lookup::Stale => Lookup::Stale,
            Lookup::None => Lookup::None,
        })
    }

    async fn lookup_as<S: SessionView>(&self, headers: &HeaderMap, slide: bool) -> Result<Lookup<S>, StoreError> {
        match self.ticket_of(headers) {
            None => Ok(Lookup::None),
            Some(None) => Ok(Lookup::Stale),
            Some(Some(ticket)) => self.open_as(ticket, slide).await,
        }
    }

    async fn open_as<S: SessionView>(&self, ticket: SessionTicket, slide: bool) -> Result<Lookup<S>, StoreError> {
        let now = self.clock.now();
        let key = ticket.store_key();
        let sealed = if slide { self.store.load(&key, now).await? } else { self.store.peek(&key, now).await? };
        let Some(sealed) = sealed else {
            return Ok(Lookup::Stale);
        };
        let Some(session) = self.sealer.open_session_as::<S>(&ticket, &sealed) else {
            tracing::debug!(session = %ticket.store_key().log_id(), "a session cookie did not open its record");
            return Ok(Lookup::Stale);
        };
        if now >= session.expires_at() {
            self.store.remove(&ticket.store_key()).await?;
            return Ok(Lookup::Stale);
        }
        Ok(Lookup::Found(ticket, session))
    }

    /// Creates a session under a brand-new ticket (never a reused id: no fixation). With
    /// `remember` (and `allow_remember`), the cookie persists for the absolute timeout; otherwise
    /// it ends with the browser session. `device` and `ip` are for the user's session list.
    pub async fn create(
        &self,
        tokens: NewSession,
        keep_id_token: bool,
        remember: bool,
        device: String,
        ip: String,
    ) -> Result<(SessionTicket, HeaderValue), StoreError> {
        let now = self.clock.now();
        let refresh_token_expires_at = tokens.refresh_token.as_ref().and(tokens.refresh_token_expires_at);
        let session = Session {
            sub: tokens.sub,
            sid: tokens.sid,
            claims: tokens.claims,
            access_token: tokens.access_token,
            access_token_expires_at: tokens.access_token_expires_at,
            refresh_token: tokens.refresh_token,
            scope: Some(tokens.scope),
            id_token: keep_id_token.then_some(tokens.id_token),
            resource_tokens: Default::default(),
            dpop_key: tokens.dpop_key,
            created_at: now,
            expires_at: self.session_end(now, refresh_token_expires_at),
            listing_id: random_listing_id(),
            userinfo_at: tokens.userinfo_at,
            provider: tokens.provider,
        };
        let ticket = SessionTicket::generate();
        self.store.save(ticket.store_key(), self.sealer.seal_session(&ticket, &session), now).await?;
        let member = ticket.store_key();
        let listing = SessionListing { listing_id: session.listing_id.clone(), created_at: now, device, ip };
        let payload = self.sealer.seal_listing(&session.sub, &member, &listing);
        let (user_index, sid_index) = self.index_keys(&session);
        // One user's sessions are capped: past the cap, that user's oldest ends (never
        // another user's, as evicting from the whole store would).
        for oldest in self.store.index_add(user_index, member, payload, self.max_sessions_per_user).await? {
            self.store.remove(&oldest).await?;
            tracing::info!(session = %oldest.log_id(), "session ended: the user signed in past session.max_sessions_per_user");
        }
        if let Some(sid_index) = sid_index {
            self.store.index_add(sid_index, member, Bytes::new(), self.max_sessions_per_user).await?;
        }
        tracing::info!(session = %ticket.store_key().log_id(), "session created");
        // The cookie lasts the absolute timeout even when the provider's refresh token ends
        // sooner: each refresh may move the session's end (never past that), and the server
        // side ends it whatever the cookie says.
        let lifetime = (remember && self.allow_remember).then(|| Duration::from_secs(self.absolute_timeout));
        let cookie = self.cookies.session(&ticket, lifetime);
        Ok((ticket, cookie))
    }

    /// The session as stored now (after waiting for a lock, say); `None` when it has ended. Read
    /// from the store itself, never a replica's copy: what another replica just wrote (a rotated
    /// refresh token) must be seen before a refresh is decided.
    pub async fn reload(&self, ticket: &SessionTicket) -> Result<Option<Session>, StoreError> {
        let now = self.clock.now();
        let Some(sealed) = self.store.peek(&ticket.store_key(), now).await? else { return Ok(None) };
        Ok(self.sealer.open_session(ticket, &sealed).filter(|s| now < s.expires_at))
    }

    /// Re-seals a changed session under the same ticket (new tokens after a refresh); `false`
    /// when the session ended meanwhile (it stays ended).
    pub async fn update(&self, ticket: &SessionTicket, session: &Session) -> Result<bool, StoreError> {
        let record = self.sealer.seal_session(ticket, session);
        self.store.replace(ticket.store_key(), record, self.clock.now()).await
    }

    pub async fn end(&self, ticket: &SessionTicket) -> Result<(), StoreError> {
        self.store.remove(&ticket.store_key()).await?;
        tracing::info!(session = %ticket.store_key().log_id(), "session ended");
        Ok(())
    }

    /// Ends a session the caller has open, and takes it out of its user's and provider
    /// session's indexes, so that a back-channel logout arriving for it afterwards (the
    /// provider's answer to the same sign-out) finds, and counts, nothing.
    pub async fn end_open(&self, ticket: &SessionTicket, session: &Session) -> Result<(), StoreError> {
        self.end(ticket).await?;
        let member = ticket.store_key();
        let provider = session.provider.as_deref();
        for index in self.indexes("sub", provider, &session.sub) {
            self.store.index_remove(&index, &member).await?;
        }
        if let Some(sid) = session.sid.as_deref() {
            for index in self.indexes("sid", provider, sid) {
                self.store.index_remove(&index, &member).await?;
            }
        }
        Ok(())
    }

    /// Ends every session of a provider session (`sid`) or, with only `sub`, of a user, of one
    /// provider (`None`: the default): what a back-channel logout asks. Returns how many
    /// sessions were ended.
    pub async fn end_matching(
        &self,
        provider: Option<&str>,
        sid: Option<&str>,
        sub: Option<&str>,
    ) -> Result<usize, StoreError> {
        let indexes = match (sid, sub) {
            (Some(sid), _) => self.indexes("sid", provider, sid),
            (None, Some(sub)) => self.indexes("sub", provider, sub),
            (None, None) => Vec::new(),
        };
        let mut ended = 0;
        for index in indexes {
            for member in self.store.index_take(&index).await? {
                self.store.remove(&member).await?;
                ended += 1;
            }
        }
        Ok(ended)
    }

    /// The index entries a new session goes under, written with the primary key (lookups try
    /// every key): its user, and its provider session when the ID token named one.
    fn index_keys(&self, session: &Session) -> (StoreKey, Option<StoreKey>) {
        let first = |keys: Vec<StoreKey>| keys.into_iter().next().expect("a key ring is never empty");
        let provider = session.provider.as_deref();
        let sid = session.sid.as_deref().map(|sid| first(self.indexes("sid", provider, sid)));
        (first(self.indexes("sub", provider, &session.sub)), sid)
    }

    /// The index keys of a user or provider session, per provider: the same `sub` or `sid` at
    /// two providers is two different things. The default provider's keep their names from
    /// before several providers existed.
    fn indexes(&self, kind: &str, provider: Option<&str>, value: &str) -> Vec<StoreKey> {
        match provider {
            None => self.sealer.index_keys(kind, value),
            Some(provider) => self.sealer.index_keys(&format!("{kind}@{provider}"), value),
        }
    }

    /// The signed-in user's sessions, newest use first; `current` marks the caller's own.
    pub async fn list(&self, session: &Session, current: &SessionTicket) -> Result<Vec<ListedSession>, StoreError> {
        let mut listed = self.list_user(session.provider.as_deref(), &session.sub).await?;
        for entry in &mut listed {
            entry.current = entry.member == current.store_key();
        }
        Ok(listed)
    }

    /// A user's sessions at one provider (`None`: the default), newest use first: for the
    /// user's own list and the operator's. Never a ticket or a token: the listing id, device,
    /// address and times.
    pub async fn list_user(&self, provider: Option<&str>, sub: &str) -> Result<Vec<ListedSession>, StoreError> {
        let mut listed = Vec::new();
        for index in self.indexes("sub", provider, sub) {
            for (member, payload) in self.store.index_list(&index).await? {
                let Some(listing) = self.sealer.open_listing(sub, &member, &payload) else { continue };
                let Some(last_seen) = self.store.last_seen(&member).await? else { continue };
                listed.push(ListedSession { listing, last_seen, current: false, member });
            }
        }
        listed.sort_by_key(|s| std::cmp::Reverse(s.last_seen));
        Ok(listed)
    }

    /// Ends one of the user's own sessions by its listing id. `Ok(None)`: the user has no such
    /// session (another user's id included); `Ok(Some(member))`: ended.
    pub async fn end_listed(&self, session: &Session, listing_id: &str) -> Result<Option<StoreKey>, StoreError> {
        self.end_user_session(session.provider.as_deref(), &session.sub, listing_id).await
    }

    /// Ends one session of a user at a provider by its listing id (the user's own list, or the
    /// operator's); `Ok(None)` when that user has no such session.
    pub async fn end_user_session(
        &self,
        provider: Option<&str>,
        sub: &str,
        listing_id: &str,
    ) -> Result<Option<StoreKey>, StoreError> {
        for index in self.indexes("sub", provider, sub) {
            for (member, payload) in self.store.index_list(&index).await? {
                let Some(listing) = self.sealer.open_listing(sub, &member, &payload) else { continue };
                if listing.listing_id == listing_id {
                    self.store.remove(&member).await?;
                    self.store.index_remove(&index, &member).await?;
                    tracing::info!(session = %member.log_id(), "session ended from a session list");
                    return Ok(Some(member));
                }
            }
        }
        Ok(None)
    }

    /// Ends every session, on every replica sharing the store: the operator's kill switch.
    pub async fn end_all(&self) -> Result<u64, StoreError> {
        let ended = self.store.end_all().await?;
        tracing::warn!(ended, "every session ended by the operator");
        Ok(ended)
    }

    /// Stores a pending login under `state`; returns the login cookie holding its secret.
    /// The login cookie for a new sign-in: the pending login sealed inside it, bound to
    /// `state`. Nothing is stored: no flood of sign-ins can evict another's, or fill memory.
    /// `None` when the cookie would be too large for browsers (a very long return path).
    pub fn begin_login(&self, state: &str, login: &mut PendingLogin) -> Option<HeaderValue> {
        login.expires_at = self.clock.now().saturating_add(self.login_timeout.as_secs());
        let sealed = self.sealer.seal_pending(&pending_key(state), login);
        let value = URL_SAFE_NO_PAD.encode(sealed);
        if value.len() > MAX_LOGIN_COOKIE_VALUE {
            return None;
        }
        self.cookies.login(state, &value, self.login_timeout)
    }

    /// Opens the pending login for `state` from this browser's login cookie. Single use: the
    /// first callback with it claims it in the store, and no later one gets it.
    pub async fn take_login(&self, state: &str, headers: &HeaderMap) -> Result<Option<PendingLogin>, StoreError> {
        let Some(value) = self.cookies.find_login(headers, state) else {
            return Ok(None);
        };
        let Ok(sealed) = URL_SAFE_NO_PAD.decode(value) else { return Ok(None) };
        let key = pending_key(state);
        let Some(login) = self.sealer.open_pending(&key, &sealed) else { return Ok(None) };
        if self.clock.now() >= login.expires_at || !self.store.claim_login(key, login.expires_at).await? {
            return Ok(None);
        }
        Ok(Some(login))
    }

    /// The pending login `state` names, from this browser's login cookie, opened without
    /// claiming it and whether or not it has expired: where a stale callback should return to.
    /// Never a sign-in: only [`Sessions::take_login`] gives a login that may finish.
    pub fn peek_login(&self, state: &str, headers: &HeaderMap) -> Option<PendingLogin> {
        let sealed = URL_SAFE_NO_PAD.decode(self.cookies.find_login(headers, state)?).ok()?;
        self.sealer.open_pending(&pending_key(state), &sealed)
    }

    pub fn store(&self) -> &Store {
        &self.store
    }
}

fn pending_key(state: &str) -> StoreKey {
    let mut input = b"cloakroom/pending/".to_vec();
    input.extend_from_slice(state.as_bytes());
    StoreKey(sha256(&input))
}

/// One entry of a user's session list.
#[derive(Debug, Clone)]
pub struct ListedSession {
    pub listing: SessionListing,
    pub last_seen: u64,
    pub current: bool,
    /// Its store key: compared, never shown.
    member: StoreKey,
}

fn random_listing_id() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<16>())
}
