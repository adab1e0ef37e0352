//! A replica's copy of the sessions it read lately, kept true by Redis itself (server-assisted
//! client-side caching, `CLIENT TRACKING ... BCAST`): a connection of its own asks Redis to push
//! the name of every session key that changes or goes, and each push drops that key here.
//!
//! What the copy holds is what Redis holds (the sealed record, its deadlines); it is opened per
//! call as a record read from Redis is. When it may be used:
//! - only while the tracking connection is known to be up: it answers a `PING` every second,
//!   and each answer lets the copy serve for [`LEASE`] more. A lost connection (pushed by
//!   redis-rs as `Disconnection`) drops every entry at once; so does a missed answer, when its
//!   lease runs out. A push that was sent is either received before the next `PING`'s answer
//!   (one connection, in order) or the lease ends: a session ended on another replica stops here
//!   within the push's latency, and never later than [`LEASE`] after the last answer;
//! - an entry read from Redis is kept only if no push for its key (or a lost connection) came
//!   between the moment the read was sent and its keeping: each shard counts its pushes
//!   ([`Ticket`]), so a read overtaken by a delete never brings the session back;
//! - this replica's own writes drop its entry when Redis confirms them, before their push.

use super::super::StoreKey;
use bytes::Bytes;
use redis::{PushInfo, PushKind, Value};
use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a `PING` answered on the tracking connection lets the copy serve.
pub const LEASE: Duration = Duration::from_secs(2);
/// How often the tracking connection is asked whether it is up.
pub const PING_EVERY: Duration = Duration::from_secs(1);

const SHARDS: usize = 64;

/// A session as Redis holds it: the sealed record, its absolute expiry and last recorded use.
struct Entry {
    sealed: Bytes,
    expires_at: u64,
    last_used: u64,
}

#[derive(Default)]
struct Shard {
    /// Pushes (and losses of the connection) seen for this shard's keys.
    generation: u64,
    entries: HashMap<StoreKey, Entry>,
}

pub struct LocalCache {
    shards: Box<[Mutex<Shard>]>,
    per_shard: usize,
    /// The session keys' prefix in Redis (`{key_prefix}s:`), to read pushed names.
    key_prefix: String,
    started: Instant,
    /// Until when (milliseconds since `started`) the copy may serve.
    serves_until: AtomicU64,
}

/// The state of a shard when a read was sent: its answer may be kept only if nothing changed.
#[derive(Clone, Copy)]
pub struct Ticket {
    generation: u64,
}

/// What [`LocalCache::get`] found.
pub enum Found {
    /// The record, within its deadlines.
    Hit(Bytes),
    /// Not here; a read sent now may be kept with this ticket.
    Read(Ticket),
    /// Not usable here (the copy is off, or the session's use is due to be recorded in Redis):
    /// ask Redis as without a copy.
    Redis,
}

impl LocalCache {
    pub fn new(entries: usize, key_prefix: &str) -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(Shard::default())).collect(),
            per_shard: entries.div_ceil(SHARDS).max(1),
            key_prefix: format!("{key_prefix}s:"),
            started: Instant::now(),
            serves_until: AtomicU64::new(0),
        }
    }

    /// The prefix the tracking connection asks Redis to watch.
    pub fn watched_prefix(&self) -> &str {
        &self.key_prefix
    }

    fn shard(&self, key: &StoreKey) -> &Mutex<Shard> {
        &self.shards[usize::from(key.0[0]) % SHARDS]
    }

    fn lock<'a>(&self, shard: &'a Mutex<Shard>) -> std::sync::MutexGuard<'a, Shard> {
        shard.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn millis(&self) -> u64 {
        u64::try_from(self.started.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub fn serving(&self) -> bool {
        self.millis() < self.serves_until.load(Ordering::SeqCst)
    }

    /// The session `key` at `now` (seconds), with the store's idle timeout; a use older than
    /// `record_every` is due to be recorded in Redis (which a cached read would not do).
    pub fn get(&self, key: &StoreKey, now: u64, idle: u64, record_every: u64) -> Found {
        if !self.serving() {
            return Found::Redis;
        }
        let mut shard = self.lock(self.shard(key));
        let Some(entry) = shard.entries.get(key) else {
            return Found::Read(Ticket { generation: shard.generation });
        };
        let unused = now.saturating_sub(entry.last_used);
        if now >= entry.expires_at || unused >= idle || unused >= record_every {
            shard.entries.remove(key);
            return Found::Redis;
        }
        Found::Hit(entry.sealed.clone())
    }

    /// Keeps what a read sent with `ticket` found, unless a push or a lost connection came since.
    pub fn keep(&self, ticket: Ticket, key: StoreKey, sealed: Bytes, expires_at: u64, last_used: u64) {
        let mut shard = self.lock(self.shard(&key));
        if shard.generation != ticket.generation || !self.serving() {
            return;
        }
        if shard.entries.len() >= self.per_shard && !shard.entries.contains_key(&key) {
            // Full: one entry makes room (any one; what is dropped is only read again).
            if let Some(other) = shard.entries.keys().next().copied() {
                shard.entries.remove(&other);
            }
        }
        shard.entries.insert(key, Entry { sealed, expires_at, last_used });
    }

    /// Drops `key` (its record changed or went), and any read of it in flight.
    pub fn forget(&self, key: &StoreKey) {
        let mut shard = self.lock(self.shard(key));
        shard.generation += 1;
        shard.entries.remove(key);
    }

    /// Drops everything, and every read in flight: the copy can no longer be trusted.
    pub fn forget_all(&self) {
        for shard in self.shards.iter() {
            let mut shard = self.lock(shard);
            shard.generation += 1;
            shard.entries.clear();
        }
    }

    /// The tracking connection answered: the copy may serve for [`LEASE`] more.
    pub fn answered(&self) {
        let until = self.millis().saturating_add(u64::try_from(LEASE.as_millis()).unwrap_or(u64::MAX));
        self.serves_until.store(until, Ordering::SeqCst);
    }

    /// The tracking connection is gone (or was never up): nothing is served until it answers
    /// again, and nothing kept from before is.
    pub fn stop_serving(&self) {
        self.serves_until.store(0, Ordering::SeqCst);
        self.forget_all();
    }

    /// A message Redis pushed on the tracking connection.
    pub fn on_push(&self, push: &PushInfo) {
        match push.kind {
            PushKind::Invalidate => match push.data.first() {
                Some(Value::Array(keys)) => {
                    for name in keys {
                        match self.session_key(name) {
                            Some(key) => self.forget(&key),
                            // A name this copy cannot read: drop everything rather than guess.
                            None => self.forget_all(),
                        }
                    }
                }
                // FLUSHDB / FLUSHALL: Redis names no key.
                _ => self.forget_all(),
            },
            PushKind::Disconnection => self.stop_serving(),
            _ => {}
        }
    }

    /// The session key a pushed name stands for (`{prefix}s:` and 64 hex digits).
    fn session_key(&self, name: &Value) -> Option<StoreKey> {
        let name: &[u8] = match name {
            Value::BulkString(bytes) => bytes,
            Value::SimpleString(text) => text.as_bytes(),
            _ => return None,
        };
        let hex = name.strip_prefix(self.key_prefix.as_bytes())?;
        if hex.len() != 64 {
            return None;
        }
        let mut key = [0u8; 32];
        for (byte, pair) in key.iter_mut().zip(hex.chunks_exact(2)) {
            *byte = (nibble(pair[0])? << 4) | nibble(pair[1])?;
        }
        Some(StoreKey(key))
    }
}

fn nibble(c: u8) -> Option<u8> {
    match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const IDLE: u64 = 600;
    const EVERY: u64 = 30;

    fn serving_cache() -> LocalCache {
        let cache = LocalCache::new(1000, "p:");
        cache.answered();
        cache
    }

    fn ticket(cache: &LocalCache, key: &StoreKey, now: u64) -> Ticket {
        match cache.get(key, now, IDLE, EVERY) {
            Found::Read(ticket) => ticket,
            _ => panic!("expected a read"),
        }
    }

    fn hit(cache: &LocalCache, key: &StoreKey, now: u64) -> Option<Bytes> {
        match cache.get(key, now, IDLE, EVERY) {
            Found::Hit(sealed) => Some(sealed),
            _ => None,
        }
    }

    fn invalidate(name: &str) -> PushInfo {
        PushInfo { kind: PushKind::Invalidate, data: vec![Value::Array(vec![Value::BulkString(name.into())])] }
    }

    fn name(key: &StoreKey) -> String {
        format!("p:s:{}", key.0.iter().map(|b| format!("{b:02x}")).collect::<String>())
    }

    #[test]
    fn nothing_is_served_before_the_tracking_connection_answers_or_after_it_is_lost() {
        let cache = LocalCache::new(1000, "p:");
        let key = StoreKey([1; 32]);
        assert!(matches!(cache.get(&key, 100, IDLE, EVERY), Found::Redis));
        cache.answered();
        let t = ticket(&cache, &key, 100);
        cache.keep(t, key, Bytes::from_static(b"sealed"), 1000, 100);
        assert_eq!(hit(&cache, &key, 101).as_deref(), Some(&b"sealed"[..]));
        cache.on_push(&PushInfo { kind: PushKind::Disconnection, data: vec![] });
        assert!(matches!(cache.get(&key, 101, IDLE, EVERY), Found::Redis));
        cache.answered();
        assert!(hit(&cache, &key, 101).is_none(), "an entry from before the connection was lost came back");
    }

    #[test]
    fn a_push_drops_the_entry_and_a_read_it_overtook() {
        let cache = serving_cache();
        let key = StoreKey([7; 32]);
        let t = ticket(&cache, &key, 100);
        cache.keep(t, key, Bytes::from_static(b"v1"), 1000, 100);
        cache.on_push(&invalidate(&name(&key)));
        assert!(hit(&cache, &key, 100).is_none(), "a pushed key was still served");
        // A read sent before a push, answered after it: not kept.
        let t = ticket(&cache, &key, 100);
        cache.on_push(&invalidate(&name(&key)));
        cache.keep(t, key, Bytes::from_static(b"old"), 1000, 100);
        assert!(hit(&cache, &key, 100).is_none(), "a read overtaken by a delete was kept");
        // A name it cannot read, or a flush: everything goes.
        let t = ticket(&cache, &key, 100);
        cache.keep(t, key, Bytes::from_static(b"v2"), 1000, 100);
        cache.on_push(&invalidate("p:s:not-hex"));
        assert!(hit(&cache, &key, 100).is_none());
        let t = ticket(&cache, &key, 100);
        cache.keep(t, key, Bytes::from_static(b"v3"), 1000, 100);
        cache.on_push(&PushInfo { kind: PushKind::Invalidate, data: vec![Value::Nil] });
        assert!(hit(&cache, &key, 100).is_none());
    }

    #[test]
    fn deadlines_and_due_uses_send_the_read_to_redis() {
        let cache = serving_cache();
        let key = StoreKey([3; 32]);
        let t = ticket(&cache, &key, 100);
        cache.keep(t, key, Bytes::from_static(b"v"), 200, 100);
        assert!(hit(&cache, &key, 100 + EVERY - 1).is_some());
        // A use due to be recorded goes to Redis (and the entry with it).
        assert!(matches!(cache.get(&key, 100 + EVERY, IDLE, EVERY), Found::Redis));
        assert!(matches!(cache.get(&key, 100, IDLE, EVERY), Found::Read(_)));
        let t = ticket(&cache, &key, 100);
        cache.keep(t, key, Bytes::from_static(b"v"), 110, 100);
        assert!(matches!(cache.get(&key, 110, IDLE, EVERY), Found::Redis), "served past its absolute expiry");
    }

    #[test]
    fn a_full_shard_makes_room() {
        let cache = LocalCache::new(1, "p:");
        cache.answered();
        for n in 0..=255u8 {
            let key = StoreKey([n; 32]);
            let t = ticket(&cache, &key, 100);
            cache.keep(t, key, Bytes::from_static(b"v"), 1000, 100);
        }
        let held: usize = cache.shards.iter().map(|s| s.lock().unwrap().entries.len()).sum();
        assert_eq!(held, SHARDS);
    }
}
