//! The default store: in process memory.
//!
//! Sessions live in sharded maps of their own ([`table`]: the cap's LRU eviction, the idle
//! sweep); expiry is enforced against the caller's clock on every read (exact, testable), and
//! ended sessions are swept without anyone reading them.
//!
//! The user and provider-session indexes live in sharded maps too, swept as they are written
//! (see [`Index`]). Only the finished sign-ins held against replay stay in a moka cache (one
//! entry per sign-in, for `login_timeout`).

mod members;
mod table;

use super::{Lease, Sealed, SealedRecord, SessionStore, StoreError, StoreKey, StoreLimits};
use bytes::Bytes;
use members::Members;
use moka::future::Cache;
use moka::policy::EvictionPolicy;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A session as the memory store holds it: the sealed record (a boxed slice: no spare capacity,
/// and handed out by sharing the entry, see [`Sealed`]) and when it expires.
///
/// Times are unix seconds in 32 bits (until 2106), which makes an entry 16 bytes smaller per
/// session: an absolute expiry past 2106 is held as 2106 (earlier, never later).
#[derive(Debug)]
pub struct Entry {
    sealed: Box<[u8]>,
    expires_at: u32,
    last_seen: AtomicU32,
}

impl Entry {
    pub fn sealed(&self) -> &[u8] {
        &self.sealed
    }

    fn expires_at(&self) -> u64 {
        u64::from(self.expires_at)
    }

    fn last_seen(&self) -> u64 {
        u64::from(self.last_seen.load(Ordering::Relaxed))
    }

    /// Neither past its absolute timeout nor idle for `idle_secs` at `now`.
    fn is_live(&self, now: u64, idle_secs: u64) -> bool {
        now < self.expires_at() && now.saturating_sub(self.last_seen()) < idle_secs
    }
}

/// Unix seconds in the 32 bits an [`Entry`] keeps.
fn seconds32(unix: u64) -> u32 {
    u32::try_from(unix).unwrap_or(u32::MAX)
}

#[derive(Clone)]
pub struct MemoryStore {
    sessions: Arc<table::Table>,
    /// Finished sign-ins (their `state`'s key), so that a callback works once.
    claimed_logins: Cache<StoreKey, ()>,
    index: Arc<Index>,
    /// Refresh leases: token and deadline. Within one process the token service's own lock
    /// already serialises refreshes; this keeps the store's contract the same as Redis's.
    leases: Arc<Mutex<HashMap<StoreKey, (String, Instant)>>>,
}

/// Index entries (a user's sessions, a provider session's sessions), each living `ttl_secs`
/// after its last add, as long as the newest session it lists can.
///
/// A shard is swept (expired entries, members whose session is gone, entries left empty) when
/// it has grown to twice what the last sweep left (at least 64 entries): constant work per
/// add, amortised, and a shard never holds much more than twice its live entries. Only
/// sign-in, sign-out and the session list touch the index, never a proxied call.
struct Index {
    shards: [Mutex<IndexShard>; INDEX_SHARDS],
    ttl_secs: u64,
}

const INDEX_SHARDS: usize = 16;

#[derive(Default)]
struct IndexShard {
    entries: HashMap<StoreKey, IndexEntry>,
    /// Sweep when `entries` reaches this many.
    sweep_at: usize,
}

struct IndexEntry {
    /// Unix seconds.
    expires_at: u64,
    /// Sessions, each with its sealed payload (a listing, or nothing), oldest first.
    members: Members,
}

impl Index {
    /// Index keys are HMAC outputs: their first byte spreads them evenly.
    fn shard(&self, key: &StoreKey) -> MutexGuard<'_, IndexShard> {
        self.shards[usize::from(key.0[0]) % INDEX_SHARDS].lock().unwrap_or_else(|e| e.into_inner())
    }
}

fn unix_now() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

impl MemoryStore {
    pub fn new(limits: StoreLimits) -> Self {
        let idle_secs = limits.idle_timeout.as_secs().max(1);
        let sessions = Arc::new(table::Table::new(limits.max_sessions, idle_secs));
        // Only finished sign-ins are held (pending ones live in the browser's login cookie), for
        // as long as their login cookie could be replayed; capped all the same.
        let claimed_logins = Cache::builder()
            .name("claimed-logins")
            .max_capacity(limits.max_pending_logins)
            .eviction_policy(EvictionPolicy::lru())
            .time_to_live(limits.login_timeout)
            .build();
        let index = Index { shards: Default::default(), ttl_secs: limits.absolute_timeout.as_secs() };
        Self { sessions, claimed_logins, index: Arc::new(index), leases: Arc::default() }
    }

    /// Finished sign-ins held against replay (approximate, like [`MemoryStore::session_count`]).
    pub fn claimed_login_count(&self) -> u64 {
        self.claimed_logins.entry_count()
    }

    /// Sessions held (ended ones count until swept: [`MemoryStore::sync`]). For metrics and tests.
    pub fn session_count(&self) -> u64 {
        self.sessions.len()
    }

    /// Sweeps ended sessions (each shard whose sweep is due, yielding between shards so that
    /// calls go on meanwhile) and finished sign-ins past their time.
    pub async fn sync(&self) {
        let now = unix_now();
        for index in 0..self.sessions.shard_count() {
            self.sessions.sweep_if_due(index, now);
            tokio::task::yield_now().await;
        }
        self.claimed_logins.run_pending_tasks().await;
    }
}

impl SessionStore for MemoryStore {
    async fn load(&self, key: &StoreKey, now: u64) -> Result<Option<Sealed>, StoreError> {
        let Some(entry) = self.sessions.get_live(key, now) else {
            return Ok(None);
        };
        entry.last_seen.fetch_max(seconds32(now), Ordering::Relaxed);
        Ok(Some(Sealed::Held(entry)))
    }

    async fn peek(&self, key: &StoreKey, now: u64) -> Result<Option<Sealed>, StoreError> {
        // The idle deadline is `last_seen`'s, which a peek leaves alone.
        Ok(self.sessions.get_live(key, now).map(Sealed::Held))
    }

    async fn save(&self, key: StoreKey, record: SealedRecord, now: u64) -> Result<(), StoreError> {
        let sealed = Vec::from(record.sealed).into_boxed_slice(); // the sealer's own buffer, exact
        let (expires_at, last_seen) = (seconds32(record.expires_at), AtomicU32::new(seconds32(now)));
        let entry = Entry { sealed, expires_at, last_seen };
        self.sessions.insert(key, Arc::new(entry), now);
        Ok(())
    }

    async fn replace(&self, key: StoreKey, record: SealedRecord, now: u64) -> Result<bool, StoreError> {
        // Callers hold the session's refresh lock; only a concurrent end can race this, and an
        // end that lands between the check and the insert is the same as one just after it.
        if !self.sessions.contains_live(&key, now) {
            return Ok(false);
        }
        self.save(key, record, now).await?;
        Ok(true)
    }

    async fn remove(&self, key: &StoreKey) -> Result<(), StoreError> {
        self.sessions.remove(key);
        Ok(())
    }

    async fn claim_login(&self, key: StoreKey, _expires_at: u64) -> Result<bool, StoreError> {
        // Held for login_timeout (the cache's time to live), as long as a login cookie lives.
        Ok(self.claimed_logins.entry(key).or_insert(()).await.is_fresh())
    }

    async fn index_add(
        &self,
        index: StoreKey,
        member: StoreKey,
        payload: Bytes,
        max_members: usize,
    ) -> Result<Vec<StoreKey>, StoreError> {
        let now = unix_now();
        let live = |m: &StoreKey| self.sessions.contains_live(m, now);
        let mut guard = self.index.shard(&index);
        let shard = &mut *guard;
        if shard.entries.len() >= shard.sweep_at.max(64) {
            shard.entries.retain(|_, entry| {
                entry.members.retain(live);
                now < entry.expires_at && !entry.members.is_empty()
            });
            shard.entries.shrink_to_fit();
            shard.sweep_at = 2 * shard.entries.len();
        }
        let entry =
            shard.entries.entry(index).or_insert_with(|| IndexEntry { expires_at: 0, members: Members::default() });
        if now >= entry.expires_at {
            entry.members = Members::default(); // expired: starts afresh
        }
        // Drop members whose session is gone, so a frequent user's entry does not grow; members
        // stay in the order they were added, oldest first.
        let mut kept: Vec<(StoreKey, &[u8])> = entry.members.iter().filter(|(m, _)| *m != member && live(m)).collect();
        kept.push((member, &payload));
        let excess = kept.len().saturating_sub(max_members.max(1));
        let evicted = kept.drain(..excess).map(|(m, _)| m).collect();
        entry.members = Members::of(kept.iter().map(|(key, payload)| (key, *payload)));
        entry.expires_at = now.saturating_add(self.index.ttl_secs);
        Ok(evicted)
    }

    async fn index_take(&self, index: &StoreKey) -> Result<Vec<StoreKey>, StoreError> {
        let now = unix_now();
        Ok(match self.index.shard(index).entries.remove(index) {
            Some(entry) if now < entry.expires_at => entry.members.keys().collect(),
            _ => Vec::new(),
        })
    }

    async fn index_list(&self, index: &StoreKey) -> Result<Vec<(StoreKey, Bytes)>, StoreError> {
        let now = unix_now();
        let mut shard = self.index.shard(index);
        let Some(entry) = shard.entries.get_mut(index) else { return Ok(Vec::new()) };
        if now >= entry.expires_at {
            shard.entries.remove(index);
            return Ok(Vec::new());
        }
        entry.members.retain(|m| self.sessions.contains_live(m, now));
        Ok(entry.members.to_vec())
    }

    async fn index_remove(&self, index: &StoreKey, member: &StoreKey) -> Result<(), StoreError> {
        if let Some(entry) = self.index.shard(index).entries.get_mut(index) {
            entry.members.retain(|m| m != member);
        }
        Ok(())
    }

    async fn last_seen(&self, key: &StoreKey) -> Result<Option<u64>, StoreError> {
        Ok(self.sessions.get(key).map(|entry| entry.last_seen()))
    }

    async fn end_all(&self) -> Result<u64, StoreError> {
        let ended = self.sessions.clear();
        for shard in &self.index.shards {
            shard.lock().unwrap_or_else(|e| e.into_inner()).entries.clear();
        }
        Ok(ended)
    }

    async fn try_lease(&self, key: &StoreKey, ttl: Duration) -> Result<Option<Lease>, StoreError> {
        let now = Instant::now();
        let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        leases.retain(|_, (_, until)| *until > now);
        if leases.contains_key(key) {
            return Ok(None);
        }
        let token = super::random_token();
        leases.insert(*key, (token.clone(), now + ttl));
        Ok(Some(Lease(token)))
    }

    async fn release_lease(&self, key: &StoreKey, lease: Lease) -> Result<(), StoreError> {
        let mut leases = self.leases.lock().unwrap_or_else(|e| e.into_inner());
        if leases.get(key).is_some_and(|(token, _)| *token == lease.0) {
            leases.remove(key);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::session::store_suite;

    fn store() -> MemoryStore {
        MemoryStore::new(store_suite::LIMITS)
    }

    #[tokio::test]
    async fn passes_the_store_suite() {
        store_suite::run_all(store).await;
    }

    #[tokio::test]
    async fn index_entries_of_ended_sessions_are_swept_and_live_ones_kept() {
        let store = store();
        let key = |label: &str, i: u32| StoreKey(crate::crypto::sha256(format!("{label}{i}").as_bytes()));
        let record = || SealedRecord { sealed: Bytes::from_static(b"sealed"), expires_at: u64::MAX / 2 };
        let now = unix_now();
        for i in 0..100 {
            store.save(key("live", i), record(), now).await.unwrap();
            store.index_add(key("live-user", i), key("live", i), Bytes::from_static(b"listing"), 50).await.unwrap();
        }
        // Ten thousand users sign in and out: their entries must not pile up.
        for i in 0..10_000 {
            store.save(key("gone", i), record(), now).await.unwrap();
            store.index_add(key("gone-user", i), key("gone", i), Bytes::from_static(b"listing"), 50).await.unwrap();
            store.remove(&key("gone", i)).await.unwrap();
        }
        let held: usize = store.index.shards.iter().map(|s| s.lock().unwrap().entries.len()).sum();
        assert!(held < 2_500, "{held} index entries held for 100 live sessions");
        for i in 0..100 {
            let listed = store.index_list(&key("live-user", i)).await.unwrap();
            assert_eq!(listed, vec![(key("live", i), Bytes::from_static(b"listing"))], "live user {i}");
        }
    }

    #[tokio::test]
    async fn finished_logins_are_capped() {
        let limits = StoreLimits { max_pending_logins: 10, ..store_suite::LIMITS };
        let store = MemoryStore::new(limits);
        for i in 0..1000u32 {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&i.to_be_bytes());
            assert!(store.claim_login(StoreKey(key), u64::MAX).await.unwrap());
        }
        store.sync().await;
        assert!(
            store.claimed_logins.entry_count() <= 10,
            "{} finished logins kept",
            store.claimed_logins.entry_count()
        );
    }
}
