//! The configured store, memory or Redis, behind one type so the rest of the code (and its
//! tests) need not be generic over it.

use super::memory::MemoryStore;
use super::redis::RedisStore;
use super::{Lease, Sealed, SealedRecord, SessionStore, StoreError, StoreKey};
use bytes::Bytes;
use std::time::Duration;

// One per process: the size difference between the variants costs nothing.
#[allow(clippy::large_enum_variant)]
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

    pub fn redis(&self) -> Option<&RedisStore> {
        match self {
            Store::Redis(store) => Some(store),
            Store::Memory(_) => None,
        }
    }
}

macro_rules! dispatch {
    ($self:ident, $store:ident => $call:expr) => {
        match $self {
            Store::Memory($store) => $call.await,
            Store::Redis($store) => $call.await,
        }
    };
}

impl SessionStore for Store {
    async fn load(&self, key: &StoreKey, now: u64) -> Result<Option<Sealed>, StoreError> {
        dispatch!(self, s => s.load(key, now))
    }
    async fn peek(&self, key: &StoreKey, now: u64) -> Result<Option<Sealed>, StoreError> {
        dispatch!(self, s => s.peek(key, now))
    }
    async fn save(&self, key: StoreKey, record: SealedRecord, now: u64) -> Result<(), StoreError> {
        dispatch!(self, s => s.save(key, record, now))
    }
    async fn replace(&self, key: StoreKey, record: SealedRecord, now: u64) -> Result<bool, StoreError> {
        dispatch!(self, s => s.replace(key, record, now))
    }
    async fn remove(&self, key: &StoreKey) -> Result<(), StoreError> {
        dispatch!(self, s => s.remove(key))
    }
    async fn claim_login(&self, key: StoreKey, expires_at: u64) -> Result<bool, StoreError> {
        dispatch!(self, s => s.claim_login(key, expires_at))
    }
    async fn index_add(
        &self,
        index: StoreKey,
        member: StoreKey,
        payload: Bytes,
        max_members: usize,
    ) -> Result<Vec<StoreKey>, StoreError> {
        dispatch!(self, s => s.index_add(index, member, payload, max_members))
    }
    async fn index_take(&self, index: &StoreKey) -> Result<Vec<StoreKey>, StoreError> {
        dispatch!(self, s => s.index_take(index))
    }
    async fn index_list(&self, index: &StoreKey) -> Result<Vec<(StoreKey, Bytes)>, StoreError> {
        dispatch!(self, s => s.index_list(index))
    }
    async fn index_remove(&self, index: &StoreKey, member: &StoreKey) -> Result<(), StoreError> {
        dispatch!(self, s => s.index_remove(index, member))
    }
    async fn last_seen(&self, key: &StoreKey) -> Result<Option<u64>, StoreError> {
        dispatch!(self, s => s.last_seen(key))
    }
    async fn try_lease(&self, key: &StoreKey, ttl: Duration) -> Result<Option<Lease>, StoreError> {
        dispatch!(self, s => s.try_lease(key, ttl))
    }
    async fn release_lease(&self, key: &StoreKey, lease: Lease) -> Result<(), StoreError> {
        dispatch!(self, s => s.release_lease(key, lease))
    }
}
