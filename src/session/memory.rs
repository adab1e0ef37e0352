//! The default store: in process memory, on moka.
//!
//! Expiry is enforced twice: against the caller's clock on every read (exact, testable), and by
//! moka's own timers so abandoned sessions are reclaimed without anyone reading them.

use super::{SealedRecord, SessionStore, StoreError, StoreKey, StoreLimits};
use bytes::Bytes;
use moka::Expiry;
use moka::future::Cache;
use moka::policy::EvictionPolicy;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

struct Entry {
    sealed: Bytes,
    expires_at: u64,
    last_seen: AtomicU64,
}

/// An index entry's sessions, each with its sealed payload.
type IndexMembers = Vec<(StoreKey, Bytes)>;

#[derive(Clone)]
pub struct MemoryStore {
    sessions: Cache<StoreKey, Arc<Entry>>,
    pending: Cache<StoreKey, Arc<Entry>>,
    index: Cache<StoreKey, Arc<std::sync::Mutex<IndexMembers>>>,
    idle_secs: u64,
}

/// moka-side expiry: idle timeout, capped by the record's absolute expiry.
struct SlidingExpiry {
    idle: Duration,
}

impl SlidingExpiry {
    fn remaining(&self, entry: &Entry) -> Duration {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0);
        let absolute = Duration::from_secs(entry.expires_at.saturating_sub(now));
        absolute.min(self.idle)
    }
}

impl Expiry<StoreKey, Arc<Entry>> for SlidingExpiry {
    fn expire_after_create(&self, _: &StoreKey, value: &Arc<Entry>, _: Instant) -> Option<Duration> {
        Some(self.remaining(value))
    }
    fn expire_after_read(
        &self,
        _: &StoreKey,
        value: &Arc<Entry>,
        _: Instant,
        _: Option<Duration>,
        _: Instant,
    ) -> Option<Duration> {
        Some(self.remaining(value))
    }
    fn expire_after_update(
        &self,
        _: &StoreKey,
        value: &Arc<Entry>,
        _: Instant,
        _: Option<Duration>,
    ) -> Option<Duration> {
        Some(self.remaining(value))
    }
}

impl MemoryStore {
    pub fn new(limits: StoreLimits) -> Self {
        let sessions = Cache::builder()
            .name("sessions")
            .max_capacity(limits.max_sessions)
            // At the cap the least recently used session goes, predictably; moka's default
            // (TinyLFU) may instead refuse to admit a new one, and a fresh sign-in would vanish.
            .eviction_policy(EvictionPolicy::lru())
            .expire_after(SlidingExpiry { idle: limits.idle_timeout })
            .build();
        // Pending logins are capped: a flood of /bff/login evicts the oldest instead of growing.
        let pending = Cache::builder()
            .name("pending-logins")
            .max_capacity(limits.max_pending_logins)
            .eviction_policy(EvictionPolicy::lru())
            .time_to_live(limits.login_timeout)
            .build();
        // Re-inserted on every add, so an entry lives as long as its newest session can.
        let index = Cache::builder().name("session-index").time_to_live(limits.absolute_timeout).build();
        Self { sessions, pending, index, idle_secs: limits.idle_timeout.as_secs().max(1) }
    }

    /// Live sessions (approximate: moka counts lazily). For metrics and tests.
    pub fn session_count(&self) -> u64 {
        self.sessions.entry_count()
    }

    pub async fn sync(&self) {
        self.sessions.run_pending_tasks().await;
        self.pending.run_pending_tasks().await;
    }
}

impl SessionStore for MemoryStore {
    async fn load(&self, key: &StoreKey, now: u64) -> Result<Option<Bytes>, StoreError> {
        let Some(entry) = self.sessions.get(key).await else {
            return Ok(None);
        };
        let last_seen = entry.last_seen.load(Ordering::Relaxed);
        if now >= entry.expires_at || now.saturating_sub(last_seen) >= self.idle_secs {
            self.sessions.invalidate(key).await;
            return Ok(None);
        }
        entry.last_seen.fetch_max(now, Ordering::Relaxed);
        Ok(Some(entry.sealed.clone()))
    }

    async fn save(&self, key: StoreKey, record: SealedRecord, now: u64) -> Result<(), StoreError> {
        let entry = Entry { sealed: record.sealed, expires_at: record.expires_at, last_seen: AtomicU64::new(now) };
        self.sessions.insert(key, Arc::new(entry)).await;
        Ok(())
    }

    async fn replace(&self, key: StoreKey, record: SealedRecord, now: u64) -> Result<bool, StoreError> {
        // Callers hold the session's refresh lock; only a concurrent end can race this, and an
        // end that lands between the check and the insert is the same as one just after it.
        if !self.sessions.contains_key(&key) {
            return Ok(false);
        }
        self.save(key, record, now).await?;
        Ok(true)
    }

    async fn remove(&self, key: &StoreKey) -> Result<(), StoreError> {
        self.sessions.invalidate(key).await;
        Ok(())
    }

    async fn put_pending(&self, key: StoreKey, record: SealedRecord) -> Result<(), StoreError> {
        let entry = Entry { sealed: record.sealed, expires_at: record.expires_at, last_seen: AtomicU64::new(0) };
        self.pending.insert(key, Arc::new(entry)).await;
        Ok(())
    }

    async fn take_pending(&self, key: &StoreKey, now: u64) -> Result<Option<Bytes>, StoreError> {
        Ok(self.pending.remove(key).await.filter(|e| now < e.expires_at).map(|e| e.sealed.clone()))
    }

    async fn index_add(&self, index: StoreKey, member: StoreKey, payload: Bytes) -> Result<(), StoreError> {
        let entry = self.index.get_with(index, async { Arc::default() }).await;
        {
            let mut members = entry.lock().unwrap_or_else(|e| e.into_inner());
            // Drop members whose session is gone, so a frequent user's entry does not grow.
            members.retain(|(m, _)| *m != member && self.sessions.contains_key(m));
            members.push((member, payload));
        }
        self.index.insert(index, entry).await;
        Ok(())
    }

    async fn index_take(&self, index: &StoreKey) -> Result<Vec<StoreKey>, StoreError> {
        Ok(match self.index.remove(index).await {
            Some(entry) => entry.lock().unwrap_or_else(|e| e.into_inner()).iter().map(|(m, _)| *m).collect(),
            None => Vec::new(),
        })
    }

    async fn index_list(&self, index: &StoreKey) -> Result<Vec<(StoreKey, Bytes)>, StoreError> {
        let Some(entry) = self.index.get(index).await else { return Ok(Vec::new()) };
        let mut members = entry.lock().unwrap_or_else(|e| e.into_inner());
        members.retain(|(m, _)| self.sessions.contains_key(m));
        Ok(members.clone())
    }

    async fn index_remove(&self, index: &StoreKey, member: &StoreKey) -> Result<(), StoreError> {
        if let Some(entry) = self.index.get(index).await {
            entry.lock().unwrap_or_else(|e| e.into_inner()).retain(|(m, _)| m != member);
        }
        Ok(())
    }

    async fn last_seen(&self, key: &StoreKey) -> Result<Option<u64>, StoreError> {
        Ok(self.sessions.get(key).await.map(|entry| entry.last_seen.load(Ordering::Relaxed)))
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
    async fn pending_logins_are_capped() {
        let limits = StoreLimits { max_pending_logins: 10, ..store_suite::LIMITS };
        let store = MemoryStore::new(limits);
        for i in 0..1000u32 {
            let mut key = [0u8; 32];
            key[..4].copy_from_slice(&i.to_be_bytes());
            store
                .put_pending(StoreKey(key), SealedRecord { sealed: Bytes::from_static(b"x"), expires_at: u64::MAX })
                .await
                .unwrap();
        }
        store.sync().await;
        assert!(store.pending.entry_count() <= 10, "{} pending logins kept", store.pending.entry_count());
    }
}
