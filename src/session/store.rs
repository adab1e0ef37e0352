//! The store's contract and the configured store: [`SessionStore`], the trait every store
//! implements (and one shared suite checks), what it trades in ([`SealedRecord`], [`Lease`],
//! [`StoreError`], [`StoreLimits`]), and [`Store`], memory or Redis behind one type so the rest
//! of the code (and its tests) need not be generic over it.

use super::memory::MemoryStore;
use super::redis::RedisStore;
use super::{Sealed, StoreKey};
use bytes::Bytes;
use std::future::Future;
use std::time::Duration;

/// A sealed record and the metadata the store needs to expire it without opening it.
#[derive(Debug, Clone)]
pub struct SealedRecord {
    pub sealed: Bytes,
    /// Unix seconds: the record is gone at this time whatever happens.
    pub expires_at: u64,
}

/// Why the store could not serve a call: a server-side fault, never "no session". Every kind is
/// answered `503 store_unavailable` ([`crate::error`]); they are told apart for logs and metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum StoreError {
    /// No connection could be made (refused, DNS, TLS, the connect timeout).
    #[error("session store unreachable: {0}")]
    Unreachable(String),
    /// Connected, but no answer within the command timeout.
    #[error("session store did not answer in time")]
    TimedOut,
    /// The store answered with an error (a failover under way, out of memory, a broken connection).
    #[error("session store refused the command: {0}")]
    Refused(String),
}

/// Where sealed records live. Small on purpose: every store (memory, Redis) passes the same suite.
///
/// Stores see only [`StoreKey`]s and ciphertext. They enforce expiry with the caller's `now`
/// (unix seconds) so tests drive time with an injected clock instead of sleeping.
pub trait SessionStore: Send + Sync + 'static {
    /// The session's sealed record, sliding its idle deadline; `None` when absent, idle for too
    /// long, or past its absolute expiry.
    fn load(&self, key: &StoreKey, now: u64) -> impl Future<Output = Result<Option<Sealed>, StoreError>> + Send;
    /// Like `load`, without counting it as a use: the idle deadline does not slide (an SPA
    /// polling "am I still signed in?" must still idle out).
    fn peek(&self, key: &StoreKey, now: u64) -> impl Future<Output = Result<Option<Sealed>, StoreError>> + Send;
    fn save(
        &self,
        key: StoreKey,
        record: SealedRecord,
        now: u64,
    ) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Like `save`, but only while the session exists: a refresh finishing after a logout (on
    /// this replica or another) must not bring the session back. `false` when it had ended.
    fn replace(
        &self,
        key: StoreKey,
        record: SealedRecord,
        now: u64,
    ) -> impl Future<Output = Result<bool, StoreError>> + Send;
    fn remove(&self, key: &StoreKey) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// Marks the pending login `key` (a hash of its `state`) as finished, until `expires_at`:
    /// `true` the first time, `false` if it was claimed before. The pending login itself lives
    /// sealed in the browser's login cookie; only finishing it writes here, so no flood of
    /// `/bff/login` can touch the store.
    fn claim_login(&self, key: StoreKey, expires_at: u64) -> impl Future<Output = Result<bool, StoreError>> + Send;
    /// Records that session `member` belongs under `index` (a keyed hash of a `sub` or `sid`),
    /// with an opaque (sealed) `payload`, for back-channel logout and session lists. Entries
    /// outlive no session: they expire with the absolute timeout, and members whose session has
    /// ended are dropped here, so an entry holds only live sessions. At most `max_members` stay:
    /// the oldest beyond that are dropped and returned, for the caller to end. The work is
    /// bounded by `max_members`, not by how often the user signed in.
    fn index_add(
        &self,
        index: StoreKey,
        member: StoreKey,
        payload: Bytes,
        max_members: usize,
    ) -> impl Future<Output = Result<Vec<StoreKey>, StoreError>> + Send;
    /// Removes `index` and returns the sessions it listed.
    fn index_take(&self, index: &StoreKey) -> impl Future<Output = Result<Vec<StoreKey>, StoreError>> + Send;
    /// The sessions `index` lists, with their payloads (pruned of sessions that have ended).
    fn index_list(&self, index: &StoreKey) -> impl Future<Output = Result<Vec<(StoreKey, Bytes)>, StoreError>> + Send;
    fn index_remove(&self, index: &StoreKey, member: &StoreKey) -> impl Future<Output = Result<(), StoreError>> + Send;
    /// When the session was last used (unix seconds), without counting this as a use; `None`
    /// when it has ended.
    fn last_seen(&self, key: &StoreKey) -> impl Future<Output = Result<Option<u64>, StoreError>> + Send;
    /// Ends every session at once (the operator's kill switch): every session record and index
    /// entry goes; pending sign-ins and leases stay. Returns how many sessions there were (a
    /// store that cannot count cheaply counts the records it removed).
    fn end_all(&self) -> impl Future<Output = Result<u64, StoreError>> + Send;
    /// Takes the lease on `key` (a session's refresh) for `ttl` if nobody holds it: what makes a
    /// refresh single-flight across every process sharing the store. The lease outlives the work
    /// it guards, so a process that dies holding it only delays the next.
    fn try_lease(
        &self,
        key: &StoreKey,
        ttl: Duration,
    ) -> impl Future<Output = Result<Option<Lease>, StoreError>> + Send;
    /// Releases a lease, unless it expired and someone else holds the key now.
    fn release_lease(&self, key: &StoreKey, lease: Lease) -> impl Future<Output = Result<(), StoreError>> + Send;
}

/// A held lease ([`SessionStore::try_lease`]): a random token only its holder knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease(pub(crate) String);

/// Store settings every implementation needs.
#[derive(Debug, Clone, Copy)]
pub struct StoreLimits {
    pub idle_timeout: Duration,
    pub absolute_timeout: Duration,
    pub max_sessions: u64,
    pub max_pending_logins: u64,
    pub login_timeout: Duration,
}

// One per process: the size difference between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
#[derive(Clone)]
pub enum Store {
    Memory(MemoryStore),
    Redis(RedisStore),
}

impl Store {
    /// Live sessions, where the store can count them cheaply (Redis cannot without a scan).
    pub fn session_count(&self) -> Option<u64> {
        match self {
            Store::Memory(store) => Some(store.session_count()),
            Store::Redis(_) => None,
        }
    }

    /// Finished sign-ins held against replay (memory store; tests).
    pub fn claimed_login_count(&self) -> Option<u64> {
        match self {
            Store::Memory(store) => Some(store.claimed_login_count()),
            Store::Redis(_) => None,
        }
    }

    /// Settles pending evictions (memory store; tests and metrics).
    pub async fn sync(&self) {
        if let Store::Memory(store) = self {
            store.sync().await;
        }
    }

    /// Whether other processes share this store (their leases and records are seen here).
    pub fn is_shared(&self) -> bool {
        matches!(self, Store::Redis(_))
    }

    /// Whether the store can be used right now (for readiness).
    pub fn is_healthy(&self) -> bool {
        match self {
            Store::Memory(_) => true,
            Store::Redis(store) => store.is_healthy(),
        }
    }

    /// What a trace span names the store (`db.system.name`).
    pub fn kind(&self) -> &'static str {
        match self {
            Store::Memory(_) => "memory",
            Store::Redis(_) => "redis",
        }
    }

    pub fn redis(&self) -> Option<&RedisStore> {
        match self {
            Store::Redis(store) => Some(store),
            Store::Memory(_) => None,
        }
    }
}

/// One store call, in its trace span (`[traces]`; free without it): the operation and the
/// kind of store, never a key.
macro_rules! dispatch {
    ($self:ident, $operation:literal, $store:ident => $call:expr) => {{
        let span = tracing::info_span!(
            target: crate::telemetry::TRACES,
            "store",
            otel.name = concat!("store ", $operation),
            otel.kind = "client",
            db.system.name = $self.kind(),
            db.operation.name = $operation,
        );
        // Redis's calls boxed: a round trip's state is large, and inline it would be every
        // call's to hold and move, the memory store's too (next to a round trip, a box is free).
        match $self {
            Store::Memory($store) => tracing::Instrument::instrument($call, span).await,
            Store::Redis($store) => Box::pin(tracing::Instrument::instrument($call, span)).await,
        }
    }};
}

impl SessionStore for Store {
    async fn load(&self, key: &StoreKey, now: u64) -> Result<Option<Sealed>, StoreError> {
        dispatch!(self, "load", s => s.load(key, now))
    }
    async fn peek(&self, key: &StoreKey, now: u64) -> Result<Option<Sealed>, StoreError> {
        dispatch!(self, "peek", s => s.peek(key, now))
    }
    async fn save(&self, key: StoreKey, record: SealedRecord, now: u64) -> Result<(), StoreError> {
        dispatch!(self, "save", s => s.save(key, record, now))
    }
    async fn replace(&self, key: StoreKey, record: SealedRecord, now: u64) -> Result<bool, StoreError> {
        dispatch!(self, "replace", s => s.replace(key, record, now))
    }
    async fn remove(&self, key: &StoreKey) -> Result<(), StoreError> {
        dispatch!(self, "remove", s => s.remove(key))
    }
    async fn claim_login(&self, key: StoreKey, expires_at: u64) -> Result<bool, StoreError> {
        dispatch!(self, "claim_login", s => s.claim_login(key, expires_at))
    }
    async fn index_add(
        &self,
        index: StoreKey,
        member: StoreKey,
        payload: Bytes,
        max_members: usize,
    ) -> Result<Vec<StoreKey>, StoreError> {
        dispatch!(self, "index_add", s => s.index_add(index, member, payload, max_members))
    }
    async fn index_take(&self, index: &StoreKey) -> Result<Vec<StoreKey>, StoreError> {
        dispatch!(self, "index_take", s => s.index_take(index))
    }
    async fn index_list(&self, index: &StoreKey) -> Result<Vec<(StoreKey, Bytes)>, StoreError> {
        dispatch!(self, "index_list", s => s.index_list(index))
    }
    async fn index_remove(&self, index: &StoreKey, member: &StoreKey) -> Result<(), StoreError> {
        dispatch!(self, "index_remove", s => s.index_remove(index, member))
    }
    async fn last_seen(&self, key: &StoreKey) -> Result<Option<u64>, StoreError> {
        dispatch!(self, "last_seen", s => s.last_seen(key))
    }
    async fn end_all(&self) -> Result<u64, StoreError> {
        dispatch!(self, "end_all", s => s.end_all())
    }
    async fn try_lease(&self, key: &StoreKey, ttl: Duration) -> Result<Option<Lease>, StoreError> {
        dispatch!(self, "try_lease", s => s.try_lease(key, ttl))
    }
    async fn release_lease(&self, key: &StoreKey, lease: Lease) -> Result<(), StoreError> {
        dispatch!(self, "release_lease", s => s.release_lease(key, lease))
    }
}
