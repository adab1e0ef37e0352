//! The memory store's sessions: sharded hash maps holding each key inline beside a pointer to
//! its [`Entry`], with the cap's least-recently-used eviction and the idle sweep done here.
//!
//! Why not a general cache (moka, which this replaced): a proxied call on another session than
//! the last one walked moka's bucket array, the bucket, the shared key and the value entry, each
//! a cache miss (about 0.65 µs per call at 10 000 sessions, BENCHMARKS.md), and its bookkeeping
//! took about 340 bytes per session. Here a lookup is the map's control bytes and slot (the key
//! is in the slot) and then the entry.
//!
//! - **Hash**: a store key is a SHA-256 or HMAC output, so its own first eight bytes are the
//!   hash (no hashing on the request path). Only cloakroom chooses the keys that go in (fresh
//!   random tickets at sign-in), so no client can crowd a bucket; a client's lookups of keys
//!   that are not there end at the first empty group like any other.
//! - **Cap**: each shard holds at most its share of `session.max_sessions` (the shares add up
//!   to the cap rounded up to a multiple of the shard count). A sign-in into a full shard first
//!   drops the shard's ended sessions, then, if it is still full, the ones used least recently
//!   (by `last_seen`, to the second; 1/64 of the share at once, so a full shard is scanned
//!   once per batch of sign-ins): predictable, and a fresh sign-in is never the one refused.
//! - **Idle and absolute expiry**: exact on every read (the caller's clock); ended entries are
//!   reclaimed by a sweep of a shard when a sign-in lands in it and its last sweep is a quarter
//!   of the idle timeout old, and of every such shard, one at a time, at each metrics scrape
//!   ([`Table::sweep_if_due`]).

use super::Entry;
use crate::session::StoreKey;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::sync::{Arc, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

/// At most this many shards (a power of two), each behind its own lock.
const MAX_SHARDS: usize = 64;
/// A shard is worth its lock from about this many sessions up; fewer sessions, fewer shards
/// (so that a small cap stays close to exact).
const SESSIONS_PER_SHARD: u64 = 256;
/// A full shard drops this fraction of its share at once (see [`Table::evict_least_recent`]).
const EVICTION_BATCH: usize = 64;

/// A store key's first eight bytes, as they are (see the module documentation).
#[derive(Default, Clone, Copy)]
pub struct KeyHasher(u64);

impl Hasher for KeyHasher {
    fn write(&mut self, bytes: &[u8]) {
        // A key is hashed as one 32-byte write (after its length, written as a `usize`).
        let mut first = [0u8; 8];
        let n = bytes.len().min(8);
        first[..n].copy_from_slice(&bytes[..n]);
        self.0 ^= u64::from_le_bytes(first);
    }

    fn write_usize(&mut self, _length: usize) {}

    fn finish(&self) -> u64 {
        self.0
    }
}

type Map = HashMap<StoreKey, Arc<Entry>, BuildHasherDefault<KeyHasher>>;

struct Shard {
    map: Map,
    /// Unix seconds: when a sign-in here next sweeps the shard.
    next_sweep: u64,
}

pub struct Table {
    shards: Box<[RwLock<Shard>]>,
    per_shard: usize,
    idle_secs: u64,
}

impl Table {
    pub fn new(max_sessions: u64, idle_secs: u64) -> Self {
        let wanted = usize::try_from(max_sessions / SESSIONS_PER_SHARD).unwrap_or(MAX_SHARDS).clamp(1, MAX_SHARDS);
        let count = if wanted.is_power_of_two() { wanted } else { wanted.next_power_of_two() / 2 };
        let per_shard = usize::try_from(max_sessions.div_ceil(count as u64)).unwrap_or(usize::MAX).max(1);
        let shards = (0..count).map(|_| RwLock::new(Shard { map: Map::default(), next_sweep: 0 })).collect();
        Self { shards, per_shard, idle_secs }
    }

    /// The shard of `key`, chosen by its last byte (independent of the first eight, the hash).
    fn shard(&self, key: &StoreKey) -> &RwLock<Shard> {
        &self.shards[usize::from(key.0[31]) & (self.shards.len() - 1)]
    }

    fn read(&self, key: &StoreKey) -> RwLockReadGuard<'_, Shard> {
        self.shard(key).read().unwrap_or_else(PoisonError::into_inner)
    }

    fn write(&self, key: &StoreKey) -> RwLockWriteGuard<'_, Shard> {
        self.shard(key).write().unwrap_or_else(PoisonError::into_inner)
    }

    /// The entry under `key`, ended or not.
    pub fn get(&self, key: &StoreKey) -> Option<Arc<Entry>> {
        self.read(key).map.get(key).cloned()
    }

    /// The entry under `key` if its session has not ended by `now`; an ended one is dropped
    /// (unless a new entry took its place meanwhile).
    pub fn get_live(&self, key: &StoreKey, now: u64) -> Option<Arc<Entry>> {
        let entry = self.get(key)?;
        if entry.is_live(now, self.idle_secs) {
            return Some(entry);
        }
        let mut shard = self.write(key);
        if shard.map.get(key).is_some_and(|held| Arc::ptr_eq(held, &entry)) {
            shard.map.remove(key);
        }
        None
    }

    /// Whether `key` holds a session that has not ended by `now`.
    pub fn contains_live(&self, key: &StoreKey, now: u64) -> bool {
        self.read(key).map.get(key).is_some_and(|entry| entry.is_live(now, self.idle_secs))
    }

    /// Inserts or replaces; a new key in a full shard makes room first (see the module docs).
    pub fn insert(&self, key: StoreKey, entry: Arc<Entry>, now: u64) {
        let mut shard = self.write(&key);
        let is_new = !shard.map.contains_key(&key);
        if is_new && (shard.map.len() >= self.per_shard || now >= shard.next_sweep) {
            self.sweep_shard(&mut shard, now);
            if shard.map.len() >= self.per_shard {
                self.evict_least_recent(&mut shard);
            }
        }
        shard.map.insert(key, entry);
    }

    /// Drops the shard's least recently used sessions: one in [`EVICTION_BATCH`] of its share
    /// at once (at least one), so that a full shard is scanned once per batch of sign-ins, not
    /// on every one.
    fn evict_least_recent(&self, shard: &mut Shard) {
        let batch = (self.per_shard / EVICTION_BATCH).max(1);
        let mut seen: Vec<u64> = shard.map.values().map(|entry| entry.last_seen()).collect();
        if seen.is_empty() {
            return;
        }
        let nth = batch.min(seen.len()) - 1;
        let (_, threshold, _) = seen.select_nth_unstable(nth);
        let threshold = *threshold;
        let below = seen.iter().filter(|&&last| last < threshold).count();
        let mut ties = batch.saturating_sub(below);
        shard.map.retain(|_, entry| match entry.last_seen() {
            last if last < threshold => false,
            last if last == threshold && ties > 0 => {
                ties -= 1;
                false
            }
            _ => true,
        });
    }

    pub fn remove(&self, key: &StoreKey) {
        self.write(key).map.remove(key);
    }

    /// Drops every session; how many there were (ended ones not yet swept included).
    pub fn clear(&self) -> u64 {
        let mut dropped = 0;
        for shard in self.shards.iter() {
            let mut shard = shard.write().unwrap_or_else(PoisonError::into_inner);
            dropped += shard.map.len() as u64;
            shard.map.clear();
        }
        dropped
    }

    /// Sessions held, ended ones not yet swept included.
    pub fn len(&self) -> u64 {
        self.shards.iter().map(|shard| shard.read().unwrap_or_else(PoisonError::into_inner).map.len() as u64).sum()
    }

    /// Drops the ended sessions of shard `index` if its last sweep is a quarter idle period
    /// old. One shard at a time, so that a caller sweeping them all can let other work run in
    /// between ([`super::MemoryStore::sync`]): a shard is at most 1/64 of the sessions.
    pub fn sweep_if_due(&self, index: usize, now: u64) {
        let Some(shard) = self.shards.get(index) else { return };
        let mut shard = shard.write().unwrap_or_else(PoisonError::into_inner);
        if now >= shard.next_sweep {
            self.sweep_shard(&mut shard, now);
        }
    }

    pub fn shard_count(&self) -> usize {
        self.shards.len()
    }

    #[cfg(test)]
    fn sweep(&self, now: u64) {
        (0..self.shard_count()).for_each(|index| self.sweep_if_due(index, now));
    }

    fn sweep_shard(&self, shard: &mut Shard, now: u64) {
        shard.map.retain(|_, entry| entry.is_live(now, self.idle_secs));
        if shard.map.capacity() > 4 * shard.map.len().max(16) {
            shard.map.shrink_to_fit();
        }
        shard.next_sweep = now.saturating_add((self.idle_secs / 4).max(1));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU32;

    fn entry(expires_at: u32, last_seen: u32) -> Arc<Entry> {
        Arc::new(Entry { sealed: Box::new([1]), expires_at, last_seen: AtomicU32::new(last_seen) })
    }

    fn key(n: u32) -> StoreKey {
        StoreKey(crate::crypto::sha256(&n.to_be_bytes()))
    }

    #[test]
    fn shards_follow_the_cap_and_add_up_to_it() {
        for (max, shards) in [(6, 1), (1_000, 2), (100_000, 64), (1_000_000, 64), (3_000, 8)] {
            let table = Table::new(max, 600);
            assert_eq!(table.shard_count(), shards, "{max}");
            assert!(table.per_shard * shards >= max as usize && table.per_shard * shards < max as usize + shards);
        }
    }

    #[test]
    fn at_the_cap_the_least_recently_used_goes_never_the_new_one() {
        let table = Table::new(6, 600);
        for n in 0..6 {
            table.insert(key(n), entry(10_000, 100 + n), 100);
        }
        table.get(&key(0)).unwrap().last_seen.store(200, std::sync::atomic::Ordering::Relaxed); // used again
        table.insert(key(6), entry(10_000, 201), 201);
        assert_eq!(table.len(), 6);
        assert!(table.get(&key(1)).is_none(), "the least recently used stays");
        for n in [0, 2, 3, 4, 5, 6] {
            assert!(table.get(&key(n)).is_some(), "{n} went");
        }
        // Replacing a held key evicts nobody.
        table.insert(key(6), entry(10_000, 202), 202);
        assert_eq!(table.len(), 6);
    }

    #[test]
    fn a_full_large_shard_drops_a_batch_of_its_least_recently_used() {
        let table = Table::new(SESSIONS_PER_SHARD, 600); // one shard of 256: batches of 4
        for n in 0..256 {
            table.insert(key(n), entry(10_000, 1_000 - n), 100); // key 255 is the least recent
        }
        table.insert(key(1_000), entry(10_000, 2_000), 100);
        assert_eq!(table.len(), 253);
        for n in 252..256 {
            assert!(table.get(&key(n)).is_none(), "{n} stayed");
        }
        assert!(table.get(&key(251)).is_some() && table.get(&key(1_000)).is_some());
    }

    #[test]
    fn ended_sessions_make_room_before_anyone_live_goes() {
        let table = Table::new(4, 600);
        table.insert(key(0), entry(10_000, 100), 100);
        table.insert(key(1), entry(150, 100), 100); // absolute timeout at 150
        table.insert(key(2), entry(10_000, 100), 100);
        table.insert(key(3), entry(10_000, 100), 100);
        table.insert(key(4), entry(10_000, 160), 160);
        assert!(table.get(&key(1)).is_none());
        for n in [0, 2, 3, 4] {
            assert!(table.get(&key(n)).is_some(), "{n} went though an ended session was there");
        }
        // Idle ones go in a sweep; used ones stay.
        table.get(&key(4)).unwrap().last_seen.store(900, std::sync::atomic::Ordering::Relaxed);
        table.sweep(1_000);
        assert_eq!(table.len(), 1);
        assert!(table.contains_live(&key(4), 1_000) && !table.contains_live(&key(4), 1_500));
    }

    #[test]
    fn a_key_hashes_to_its_own_first_bytes() {
        use std::hash::BuildHasher;
        let k = key(7);
        let hash = BuildHasherDefault::<KeyHasher>::default().hash_one(k);
        assert_eq!(hash, u64::from_le_bytes(k.0[..8].try_into().unwrap()));
    }
}
