//! The shared store: Redis (or Valkey), for several cloakroom replicas behind one load balancer.
//!
//! Redis holds what the memory store holds and no more: ciphertext under hashed keys. A session
//! is a hash `{prefix}s:{hex(SHA-256(session id))}` with the sealed record (`r`), its absolute
//! expiry (`e`) and its last use (`l`); a finished sign-in is `{prefix}p:{hex(SHA-256 of its
//! state)}`, kept until its login cookie expires so the callback works once (pending logins
//! themselves live sealed in the browser's login cookie);
//! an index is a hash `{prefix}i:{hex(keyed hash)}` of member → sealed listing. Every key has a
//! Redis TTL, so nothing outlives its deadline even if no replica comes back to delete it; the
//! deadlines themselves are checked against the caller's clock, as in the memory store.
//!
//! One multiplexed connection, shared by every request, in the configured mode (see
//! [`connect`]); in standalone mode a second one of its own carries Redis's invalidation
//! pushes for each replica's copy of the sessions it read lately (see [`cache`]). If Redis is
//! down at start-up the first command connects; until then, and while it is unreachable, every
//! command fails with a [`StoreError`] (a 503 for the browser, readiness false), and nothing is
//! lost that was in Redis.
//!
//! Redis Cluster: every key is its own hash slot's business and no operation spans two keys in
//! one command, script or transaction: a session, a claimed login, an index and a refresh lease
//! are each one key, and each script and `MULTI` touches only the key it is given. So no hash
//! tags are needed, and none are used (a `{…}` in `redis_key_prefix` would put every key in one
//! slot). The one read of many keys, whether an index's sessions still exist, asks each key on
//! its own, concurrently (see [`RedisStore::alive`]).

mod cache;
mod connect;

use super::{Lease, Sealed, SealedRecord, SessionStore, StoreError, StoreKey, StoreLimits};
pub use crate::config::RedisSettings;
use crate::metrics::StoreMetrics;
use bytes::Bytes;
use cache::{Found, LocalCache};
pub use connect::RedisSetupError;
use connect::{Conn, Connector};
use redis::{AsyncCommands, Script};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

#[derive(Clone)]
pub struct RedisStore {
    inner: Arc<Inner>,
}

struct Inner {
    connector: Connector,
    settings: RedisSettings,
    limits: StoreLimits,
    connection: RwLock<Option<Conn>>,
    connecting: tokio::sync::Mutex<()>,
    healthy: AtomicBool,
    metrics: StoreMetrics,
    /// Whether a connection was made before (the next one is a reconnection).
    connected_once: AtomicBool,
    /// Sessions read lately, while Redis pushes their changes ([`cache`]); `None` when
    /// `cache_entries` is 0.
    cache: Option<Arc<LocalCache>>,
    load: Script,
    peek: Script,
    take_index: Script,
    unlock: Script,
    replace: Script,
    save: Script,
    index_add: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The URL may carry a password.
        f.debug_struct("RedisStore").field("key_prefix", &self.inner.settings.key_prefix).finish_non_exhaustive()
    }
}

/// Reads a session and slides its idle deadline in one step; ends it when a deadline passed.
/// KEYS[1] the session; ARGV: now, idle seconds.
const LOAD: &str = r"
local v = redis.call('HMGET', KEYS[1], 'r', 'e', 'l')
if not v[1] then return false end
local now, e, l, idle = tonumber(ARGV[1]), tonumber(v[2]), tonumber(v[3]), tonumber(ARGV[2])
if now >= e or now - l >= idle then
  redis.call('DEL', KEYS[1])
  return false
end
if now > l then redis.call('HSET', KEYS[1], 'l', ARGV[1]) end
redis.call('EXPIRE', KEYS[1], math.min(idle, e - now) + 1)
return v[1]
";

/// Reads a session without sliding its idle deadline. KEYS[1] the session; ARGV: now, idle.
const PEEK: &str = r"
local v = redis.call('HMGET', KEYS[1], 'r', 'e', 'l')
if not v[1] then return false end
local now, e, l, idle = tonumber(ARGV[1]), tonumber(v[2]), tonumber(v[3]), tonumber(ARGV[2])
if now >= e or now - l >= idle then return false end
return v[1]
";

/// Writes a session whole. KEYS[1] the session; ARGV: record, expiry, now, ttl.
const SAVE: &str = r"
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'r', ARGV[1], 'e', ARGV[2], 'l', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
";

/// Adds an index member and returns the whole index. KEYS[1] the index; ARGV: member, value, ttl.
const INDEX_ADD: &str = r"
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('EXPIRE', KEYS[1], ARGV[3])
return redis.call('HGETALL', KEYS[1])
";

/// Rewrites a session only if it still exists. KEYS[1] the session; ARGV: record, expiry, now, ttl.
const REPLACE: &str = r"
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('DEL', KEYS[1])
redis.call('HSET', KEYS[1], 'r', ARGV[1], 'e', ARGV[2], 'l', ARGV[3])
redis.call('EXPIRE', KEYS[1], ARGV[4])
return 1
";

/// Releases a lock only if we still hold it. KEYS[1] the lock; ARGV[1] our token.
const UNLOCK: &str = r"
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
";

/// Removes an index and returns its members. KEYS[1] the index.
const TAKE_INDEX: &str = r"
local members = redis.call('HKEYS', KEYS[1])
redis.call('DEL', KEYS[1])
return members
";

/// A failed command's kind, for `cloakroom_store_errors_total{kind}`.
fn error_kind(error: &redis::RedisError) -> &'static str {
    if error.is_timeout() {
        "timeout"
    } else if error.is_connection_refusal() {
        "refused"
    } else if error.is_connection_dropped() || error.is_io_error() {
        "connection"
    } else if error.kind() == redis::ErrorKind::Server(redis::ServerErrorKind::ReadOnly) {
        "readonly"
    } else if error.is_cluster_error() {
        "cluster"
    } else {
        "other"
    }
}

/// A command Redis did not carry out: the connection broke (unreachable), or it answered an error.
fn refused(e: &redis::RedisError) -> StoreError {
    if e.is_io_error() || e.is_connection_dropped() || e.is_connection_refusal() {
        StoreError::Unreachable(format!("redis: {e}"))
    } else {
        StoreError::Refused(format!("redis: {e}"))
    }
}

impl RedisStore {
    /// Checks the URL; connects at the first command.
    pub fn new(settings: RedisSettings, limits: StoreLimits) -> Result<Self, RedisSetupError> {
        let connector = Connector::new(&settings)?;
        let cache = (settings.cache_entries > 0)
            .then(|| Arc::new(LocalCache::new(settings.cache_entries, &settings.key_prefix)));
        Ok(Self {
            inner: Arc::new(Inner {
                connector,
                settings,
                limits,
                connection: RwLock::new(None),
                connecting: tokio::sync::Mutex::new(()),
                healthy: AtomicBool::new(false),
                metrics: StoreMetrics::default(),
                connected_once: AtomicBool::new(false),
                cache,
                load: Script::new(LOAD),
                peek: Script::new(PEEK),
                take_index: Script::new(TAKE_INDEX),
                unlock: Script::new(UNLOCK),
                replace: Script::new(REPLACE),
                save: Script::new(SAVE),
                index_add: Script::new(INDEX_ADD),
            }),
        })
    }

    /// Counts errors and reconnections into `metrics` (the App's registry).
    pub fn with_metrics(mut self, metrics: StoreMetrics) -> Self {
        if let Some(inner) = Arc::get_mut(&mut self.inner) {
            inner.metrics = metrics;
        }
        self
    }

    /// Whether each session still exists, in order.
    async fn alive<'a>(&self, members: impl Iterator<Item = &'a StoreKey>) -> Result<Vec<bool>, StoreError> {
        let session_keys: Vec<String> = members.map(|m| self.key("s", m)).collect();
        if session_keys.is_empty() {
            return Ok(Vec::new());
        }
        // One command per key, all in flight at once: in a Cluster the keys live in different
        // slots, which one pipeline cannot span.
        self.run(|conn| async move {
            let asks = session_keys.iter().map(|key| {
                let mut conn = conn.clone();
                async move { conn.exists::<_, bool>(key).await }
            });
            futures_util::future::join_all(asks).await.into_iter().collect()
        })
        .await
    }

    /// Whether this replica's copy of sessions serves now (its invalidation connection answers).
    pub fn is_copying(&self) -> bool {
        self.inner.cache.as_ref().is_some_and(|cache| cache.serving())
    }

    /// Whether the last command (or health probe) reached Redis.
    pub fn is_healthy(&self) -> bool {
        self.inner.healthy.load(Ordering::Relaxed)
    }

    /// Probes Redis every second for readiness, until the process ends.
    pub async fn watch_health(self) {
        loop {
            let ok = match self.connection().await {
                Ok(mut conn) => redis::cmd("PING").query_async::<String>(&mut conn).await.is_ok(),
                Err(_) => false,
            };
            if ok != self.inner.healthy.swap(ok, Ordering::Relaxed) {
                if ok {
                    tracing::info!("session store (redis) reachable");
                } else {
                    tracing::error!("session store (redis) unreachable: requests that need a session get 503");
                }
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    }

    /// Keeps the tracking connection for the replica's copy of sessions ([`cache`]) up, until
    /// the process ends: on each (re)connection it asks Redis to push every change of a session
    /// key, then pings it every second; each answer lets the copy serve a while longer. Returns
    /// at once when there is no copy (`redis_cache_entries = 0`, or a mode other than
    /// standalone), or when Redis refuses tracking (a server without it).
    pub async fn watch_invalidations(self) {
        let Some(cache) = self.inner.cache.clone() else { return };
        let mut was_up = false;
        loop {
            let pushed = cache.clone();
            let Some(connected) =
                self.inner.connector.tracking(&self.inner.settings, move |push| pushed.on_push(&push)).await
            else {
                return;
            };
            let tracked = match connected {
                Ok(mut conn) => {
                    // Named, for operators reading CLIENT LIST.
                    let named = redis::cmd("CLIENT")
                        .arg("SETNAME")
                        .arg("cloakroom-invalidations")
                        .query_async::<()>(&mut conn)
                        .await;
                    if let Err(e) = named {
                        tracing::debug!(error = %e, "session store (redis): CLIENT SETNAME refused");
                    }
                    let mut tracking = redis::cmd("CLIENT");
                    tracking.arg("TRACKING").arg("ON").arg("BCAST").arg("PREFIX").arg(cache.watched_prefix());
                    match tracking.query_async::<()>(&mut conn).await {
                        Ok(()) => Ok(conn),
                        Err(e) if e.is_io_error() || e.is_timeout() || e.is_connection_dropped() => Err(e),
                        Err(e) => {
                            tracing::warn!(error = %e, "session store (redis) refused CLIENT TRACKING: no copy of sessions is kept, every call reads Redis");
                            return;
                        }
                    }
                }
                Err(e) => Err(e),
            };
            match tracked {
                Ok(mut conn) => {
                    if !was_up {
                        tracing::info!(
                            "session store (redis): sessions are copied on each replica while Redis pushes their changes"
                        );
                    }
                    was_up = true;
                    while redis::cmd("PING").query_async::<String>(&mut conn).await.is_ok() {
                        cache.answered();
                        tokio::time::sleep(cache::PING_EVERY).await;
                    }
                    tracing::warn!(
                        "session store (redis): the invalidation connection was lost; every call reads Redis until it is back"
                    );
                }
                Err(e) => tracing::debug!(error = %e, "session store (redis): no invalidation connection"),
            }
            cache.stop_serving();
            tokio::time::sleep(cache::PING_EVERY).await;
        }
    }

    async fn connection(&self) -> Result<Conn, StoreError> {
        if let Some(conn) = self.inner.connection.read().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(conn);
        }
        let _connecting = self.inner.connecting.lock().await;
        if let Some(conn) = self.inner.connection.read().unwrap_or_else(|e| e.into_inner()).clone() {
            return Ok(conn);
        }
        let settings = &self.inner.settings;
        // Boxed: connecting is rare, and its future (a Sentinel lookup, a cluster's slot map) is
        // deep; every request's future would otherwise carry its layout.
        let connect = Box::pin(self.inner.connector.connect(settings));
        let conn = tokio::time::timeout(settings.connect_timeout * 2, connect)
            .await
            .map_err(|_| {
                self.inner.metrics.error("timeout");
                StoreError::Unreachable("redis: connect timed out".into())
            })?
            .map_err(|e| {
                self.inner.metrics.error(error_kind(&e));
                StoreError::Unreachable(format!("redis: {e}"))
            })?;
        if self.inner.connected_once.swap(true, Ordering::Relaxed) {
            self.inner.metrics.reconnect();
            tracing::info!(mode = self.inner.connector.mode(), "session store (redis) connected again");
        }
        *self.inner.connection.write().unwrap_or_else(|e| e.into_inner()) = Some(conn.clone());
        Ok(conn)
    }

    /// Runs one store operation, recording whether Redis answered.
    async fn run<T, F, Fut>(&self, operation: F) -> Result<T, StoreError>
    where
        F: FnOnce(Conn) -> Fut,
        Fut: Future<Output = redis::RedisResult<T>>,
    {
        let conn = self.connection().await;
        let result = match conn {
            Ok(conn) => match tokio::time::timeout(self.inner.settings.command_timeout * 2, operation(conn)).await {
                Ok(result) => result.map_err(|e| {
                    self.inner.metrics.error(error_kind(&e));
                    refused(&e)
                }),
                Err(_) => {
                    self.inner.metrics.error("timeout");
                    Err(StoreError::TimedOut)
                }
            },
            Err(e) => Err(e),
        };
        self.inner.healthy.store(result.is_ok(), Ordering::Relaxed);
        if result.is_err() && self.inner.connector.reconnects_on_failure() {
            // Sentinel: the primary may have moved; the next command asks again.
            *self.inner.connection.write().unwrap_or_else(|e| e.into_inner()) = None;
        }
        result
    }

    fn key(&self, kind: &str, key: &StoreKey) -> String {
        let mut out = String::with_capacity(self.inner.settings.key_prefix.len() + 2 + 64);
        out.push_str(&self.inner.settings.key_prefix);
        out.push_str(kind);
        out.push(':');
        // Every request that reads a session builds one of these: no allocation per byte.
        const HEX: &[u8; 16] = b"0123456789abcdef";
        for byte in key.as_bytes() {
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0x0f)]));
        }
        out
    }

    /// The Redis TTL of a session: its idle timeout or what is left of its absolute lifetime.
    fn session_ttl(&self, expires_at: u64, now: u64) -> i64 {
        let ttl = self.idle_secs().min(expires_at.saturating_sub(now)).max(1) + 1;
        i64::try_from(ttl).unwrap_or(i64::MAX)
    }

    fn idle_secs(&self) -> u64 {
        self.inner.limits.idle_timeout.as_secs().max(1)
    }

    /// How stale a session's recorded last use may get while its copy serves: a twentieth of the
    /// idle timeout (so a session may end that much before its idle deadline, never after).
    fn record_use_every(&self) -> u64 {
        (self.idle_secs() / 20).max(1)
    }

    /// Drops this replica's copy of `key` once Redis confirmed a write to it (its push may come
    /// later than the next request).
    fn forget(&self, key: &StoreKey) {
        if let Some(cache) = &self.inner.cache {
            cache.forget(key);
        }
    }

    /// Writes a session whole with `script` (SAVE or REPLACE: KEYS[1] the session; ARGV: record,
    /// expiry, now, ttl); what the script answered. One script, not a MULTI: a single command is
    /// routed by its key and follows a Cluster's redirects, which a transaction does not.
    /// Whatever the outcome (a write that timed out may have happened), this replica's copy goes:
    /// it never holds what Redis may no longer hold.
    async fn write_session(
        &self,
        script: &Script,
        key: StoreKey,
        record: SealedRecord,
        now: u64,
    ) -> Result<i64, StoreError> {
        let redis_key = self.key("s", &key);
        let ttl = self.session_ttl(record.expires_at, now);
        let written = self
            .run(|mut conn| async move {
                script
                    .key(redis_key)
                    .arg(record.sealed.to_vec())
                    .arg(record.expires_at)
                    .arg(now)
                    .arg(ttl)
                    .invoke_async::<i64>(&mut conn)
                    .await
            })
            .await;
        self.forget(&key);
        written
    }

    /// The session through the replica's copy, or read plainly to be copied; `None` when Redis
    /// must be asked by script instead (no copy, a use due to be recorded, a deadline passed).
    async fn load_copied(&self, key: &StoreKey, now: u64) -> Result<Option<Option<Sealed>>, StoreError> {
        let Some(cache) = &self.inner.cache else { return Ok(None) };
        let (idle, every) = (self.idle_secs(), self.record_use_every());
        let ticket = match cache.get(key, now, idle, every) {
            Found::Hit(sealed) => {
                self.inner.metrics.copy_read(true);
                return Ok(Some(Some(Sealed::Sent(sealed))));
            }
            Found::Redis => return Ok(None),
            Found::Read(ticket) => ticket,
        };
        self.inner.metrics.copy_read(false);
        let redis_key = self.key("s", key);
        let (record, expires_at, last_used): (Option<Vec<u8>>, Option<u64>, Option<u64>) = self
            .run(|mut conn| async move {
                redis::cmd("HMGET").arg(redis_key).arg("r").arg("e").arg("l").query_async(&mut conn).await
            })
            .await?;
        let (Some(record), Some(expires_at), Some(last_used)) = (record, expires_at, last_used) else {
            return Ok(Some(None));
        };
        let unused = now.saturating_sub(last_used);
        if now >= expires_at || unused >= idle || unused >= every {
            return Ok(None);
        }
        let sealed = Bytes::from(record);
        cache.keep(ticket, *key, sealed.clone(), expires_at, last_used);
        Ok(Some(Some(Sealed::Sent(sealed))))
    }
}

impl SessionStore for RedisStore {
    async fn load(&self, key: &StoreKey, now: u64) -> Result<Option<Sealed>, StoreError> {
        if let Some(found) = self.load_copied(key, now).await? {
            return Ok(found);
        }
        let redis_key = self.key("s", key);
        let idle = self.idle_secs();
        let record: Option<Vec<u8>> =
            self.run(|mut conn| async move {
                self.inner.load.key(redis_key).arg(now).arg(idle).invoke_async(&mut conn).await
            })
            .await?;
        Ok(record.map(|record| Sealed::Sent(Bytes::from(record))))
    }

    async fn peek(&self, key: &StoreKey, now: u64) -> Result<Option<Sealed>, StoreError> {
        let redis_key = self.key("s", key);
        let idle = self.idle_secs();
        let record: Option<Vec<u8>> =
            self.run(|mut conn| async move {
                self.inner.peek.key(redis_key).arg(now).arg(idle).invoke_async(&mut conn).await
            })
            .await?;
        Ok(record.map(|record| Sealed::Sent(Bytes::from(record))))
    }

    async fn save(&self, key: StoreKey, record: SealedRecord, now: u64) -> Result<(), StoreError> {
        self.write_session(&self.inner.save, key, record, now).await.map(drop)
    }

    async fn replace(&self, key: StoreKey, record: SealedRecord, now: u64) -> Result<bool, StoreError> {
        Ok(self.write_session(&self.inner.replace, key, record, now).await? == 1)
    }

    async fn remove(&self, key: &StoreKey) -> Result<(), StoreError> {
        let redis_key = self.key("s", key);
        let removed = self.run(|mut conn| async move { conn.del::<_, ()>(redis_key).await }).await;
        self.forget(key);
        removed
    }

    async fn claim_login(&self, key: StoreKey, expires_at: u64) -> Result<bool, StoreError> {
        let redis_key = self.key("p", &key);
        let at = i64::try_from(expires_at).unwrap_or(i64::MAX);
        let set: Option<String> = self
            .run(|mut conn| async move {
                redis::cmd("SET").arg(redis_key).arg(1).arg("NX").arg("EXAT").arg(at).query_async(&mut conn).await
            })
            .await?;
        Ok(set.is_some())
    }

    async fn index_add(
        &self,
        index: StoreKey,
        member: StoreKey,
        payload: Bytes,
        max_members: usize,
    ) -> Result<Vec<StoreKey>, StoreError> {
        let redis_key = self.key("i", &index);
        let ttl = i64::try_from(self.inner.limits.absolute_timeout.as_secs().max(1)).unwrap_or(i64::MAX);
        // Each value is the member's time of adding (8 bytes, microseconds) and its payload, so
        // the oldest can be told apart in a hash.
        let mut value = Vec::with_capacity(8 + payload.len());
        value.extend_from_slice(&unix_micros().to_be_bytes());
        value.extend_from_slice(&payload);
        let key = &redis_key;
        let entries: Vec<(Vec<u8>, Vec<u8>)> = self
            .run(|mut conn| async move {
                let flat: Vec<Vec<u8>> = self
                    .inner
                    .index_add
                    .key(key)
                    .arg(member.as_bytes())
                    .arg(value)
                    .arg(ttl)
                    .invoke_async(&mut conn)
                    .await?;
                Ok(flat.chunks_exact(2).map(|pair| (pair[0].clone(), pair[1].clone())).collect())
            })
            .await?;
        // Members whose session has ended go (a user's entry holds only live sessions); then
        // the oldest beyond `max_members`. The work is bounded by the cap, which bounds the hash.
        let mut members: Vec<(StoreKey, u64)> = entries
            .into_iter()
            .filter_map(|(m, v)| Some((StoreKey(<[u8; 32]>::try_from(m.as_slice()).ok()?), index_value(&v).0)))
            .collect();
        let alive = self.alive(members.iter().map(|(m, _)| m)).await?;
        let mut dropped: Vec<StoreKey> = Vec::new();
        let mut live: Vec<(StoreKey, u64)> = Vec::with_capacity(members.len());
        for ((m, at), alive) in members.drain(..).zip(alive) {
            if alive || m == member {
                live.push((m, at));
            } else {
                dropped.push(m);
            }
        }
        live.sort_by_key(|(_, at)| *at);
        let excess = live.len().saturating_sub(max_members.max(1));
        let evicted: Vec<StoreKey> = live.drain(..excess).map(|(m, _)| m).filter(|m| *m != member).collect();
        dropped.extend(evicted.iter().copied());
        if !dropped.is_empty() {
            let fields: Vec<Vec<u8>> = dropped.iter().map(|m| m.as_bytes().to_vec()).collect();
            self.run(|mut conn| async move { conn.hdel::<_, _, ()>(key, fields).await }).await?;
        }
        Ok(evicted)
    }

    async fn index_take(&self, index: &StoreKey) -> Result<Vec<StoreKey>, StoreError> {
        let redis_key = self.key("i", index);
        let members: Vec<Vec<u8>> = self
            .run(|mut conn| async move { self.inner.take_index.key(redis_key).invoke_async(&mut conn).await })
            .await?;
        Ok(members.into_iter().filter_map(|m| <[u8; 32]>::try_from(m.as_slice()).ok().map(StoreKey)).collect())
    }

    async fn index_list(&self, index: &StoreKey) -> Result<Vec<(StoreKey, Bytes)>, StoreError> {
        let redis_key = self.key("i", index);
        let index_key = &redis_key;
        let entries: Vec<(Vec<u8>, Vec<u8>)> =
            self.run(|mut conn| async move { conn.hgetall(index_key).await }).await?;
        let mut entries: Vec<(StoreKey, u64, Bytes)> = entries
            .into_iter()
            .filter_map(|(m, value)| {
                let (at, payload) = index_value(&value);
                Some((StoreKey(<[u8; 32]>::try_from(m.as_slice()).ok()?), at, Bytes::copy_from_slice(payload)))
            })
            .collect();
        if entries.is_empty() {
            return Ok(Vec::new());
        }
        entries.sort_by_key(|(_, at, _)| *at);
        // Prune members whose session has ended.
        let alive = self.alive(entries.iter().map(|(m, _, _)| m)).await?;
        let (live, ended): (Vec<_>, Vec<_>) = entries.into_iter().zip(alive).partition(|(_, alive)| *alive);
        if !ended.is_empty() {
            let fields: Vec<Vec<u8>> = ended.iter().map(|((m, _, _), _)| m.as_bytes().to_vec()).collect();
            self.run(|mut conn| async move { conn.hdel::<_, _, ()>(redis_key, fields).await }).await?;
        }
        Ok(live.into_iter().map(|((m, _, payload), _)| (m, payload)).collect())
    }

    async fn index_remove(&self, index: &StoreKey, member: &StoreKey) -> Result<(), StoreError> {
        let redis_key = self.key("i", index);
        let field = member.as_bytes().to_vec();
        self.run(|mut conn| async move { conn.hdel::<_, _, ()>(redis_key, field).await }).await
    }

    async fn end_all(&self) -> Result<u64, StoreError> {
        // Exactly cloakroom's keys of these kinds (the prefix, the kind, 64 hex digits), the
        // prefix's glob characters escaped: nothing else a shared Redis holds matches.
        let mut prefix = String::new();
        for c in self.inner.settings.key_prefix.chars() {
            if matches!(c, '*' | '?' | '[' | ']' | '\\') {
                prefix.push('\\');
            }
            prefix.push(c);
        }
        let hex = "[0-9a-f]".repeat(64);
        let (sessions, indexes) = (format!("{prefix}s:{hex}"), format!("{prefix}i:{hex}"));
        let ended = self
            .run(|conn| async move {
                let [ended, _] = conn.unlink_matching([&sessions, &indexes]).await?;
                Ok(ended)
            })
            .await;
        if let Some(cache) = &self.inner.cache {
            cache.forget_all();
        }
        ended
    }

    async fn try_lease(&self, key: &StoreKey, ttl: Duration) -> Result<Option<Lease>, StoreError> {
        let redis_key = self.key("lock", key);
        let token = super::random_token();
        let ttl_ms = u64::try_from(ttl.as_millis()).unwrap_or(u64::MAX).max(1);
        let value = token.clone();
        let acquired: Option<String> = self
            .run(|mut conn| async move {
                redis::cmd("SET").arg(redis_key).arg(value).arg("NX").arg("PX").arg(ttl_ms).query_async(&mut conn).await
            })
            .await?;
        Ok(acquired.map(|_| Lease(token)))
    }

    async fn release_lease(&self, key: &StoreKey, lease: Lease) -> Result<(), StoreError> {
        let redis_key = self.key("lock", key);
        self.run(|mut conn| async move {
            self.inner.unlock.key(redis_key).arg(&lease.0).invoke_async::<i64>(&mut conn).await.map(drop)
        })
        .await
    }

    async fn last_seen(&self, key: &StoreKey) -> Result<Option<u64>, StoreError> {
        let redis_key = self.key("s", key);
        let seen: Option<String> = self.run(|mut conn| async move { conn.hget(redis_key, "l").await }).await?;
        Ok(seen.and_then(|s| s.parse().ok()))
    }
}

/// An index value: when the member was added and its payload. Values written before the time
/// was recorded are the bare payload (empty, or a sealed listing, whose first byte is a
/// non-zero format version); a recorded time starts with a zero byte (microseconds since 1970
/// stay below 2^56 until the year 4253).
fn index_value(value: &[u8]) -> (u64, &[u8]) {
    match value.split_first_chunk::<8>() {
        Some((at, payload)) if at[0] == 0 => (u64::from_be_bytes(*at), payload),
        _ => (0, value),
    }
}

fn unix_micros() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}
