//! The Redis store against a real redis-server: the shared store suite, what Redis holds, and
//! an outage that is an error, never an absent session.

use crate::support::RedisServer;
use bytes::Bytes;
use cloakroom::config::RedisSettings;
use cloakroom::session::redis::RedisStore;
use cloakroom::session::{SealedRecord, SessionStore, StoreKey, store_suite};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

fn store(server: &RedisServer, prefix: &str) -> RedisStore {
    let settings =
        RedisSettings { command_timeout: Duration::from_secs(2), ..RedisSettings::standalone(server.url(), prefix) };
    RedisStore::new(settings, store_suite::LIMITS).unwrap()
}

#[tokio::test]
async fn passes_the_store_suite() {
    let server = RedisServer::start();
    let n = AtomicU32::new(0);
    // A fresh key space per case, as the suite expects a fresh store.
    store_suite::run_all(|| store(&server, &format!("suite{}:", n.fetch_add(1, Ordering::SeqCst)))).await;
}

#[tokio::test]
async fn passes_the_store_suite_through_each_replicas_copy() {
    let server = RedisServer::start();
    let n = AtomicU32::new(0);
    // Each store with its invalidation connection up, so reads go through the copy.
    let stores: Vec<RedisStore> =
        (0..16).map(|_| store(&server, &format!("copy{}:", n.fetch_add(1, Ordering::SeqCst)))).collect();
    for store in &stores {
        tokio::spawn(store.clone().watch_invalidations());
    }
    for _ in 0..200 {
        if stores.iter().all(RedisStore::is_copying) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(stores.iter().all(RedisStore::is_copying), "the copies never served");
    let next = AtomicU32::new(0);
    store_suite::run_all(|| stores[usize::try_from(next.fetch_add(1, Ordering::SeqCst)).unwrap()].clone()).await;
}

#[tokio::test]
async fn redis_holds_ciphertext_under_hashed_keys_with_ttls() {
    let server = RedisServer::start();
    let redis = store(&server, "t:");
    let now = 1_000_000;
    let key = StoreKey([7; 32]);
    let record = SealedRecord { sealed: Bytes::from_static(b"sealed-bytes"), expires_at: now + 3600 };
    redis.save(key, record, now).await.unwrap();
    let keys = server.command(&["KEYS", "*"]);
    assert!(keys.contains(&format!("t:s:{}", "07".repeat(32))), "{keys}");
    let ttl: i64 = server.command(&["TTL", &format!("t:s:{}", "07".repeat(32))])[1..].trim().parse().unwrap();
    assert!(ttl > 0 && ttl <= 601, "the idle timeout is a Redis TTL too: {ttl}");
    assert!(redis.is_healthy());
}

#[tokio::test]
async fn an_unreachable_redis_is_an_error_not_an_absent_session() {
    let mut server = RedisServer::start();
    let redis = store(&server, "down:");
    let now = 1_000_000;
    redis
        .save(StoreKey([1; 32]), SealedRecord { sealed: Bytes::from_static(b"x"), expires_at: now + 60 }, now)
        .await
        .unwrap();
    server.stop();
    let error = redis.load(&StoreKey([1; 32]), now).await.unwrap_err();
    assert!(
        matches!(&error, cloakroom::session::StoreError::Unreachable(m) if m.starts_with("redis:")),
        "a stopped Redis is unreachable: {error:?}"
    );
    assert!(!redis.is_healthy());
    // Back, with its data: the session is there again, through the same store.
    server.resume();
    let started = std::time::Instant::now();
    loop {
        match redis.load(&StoreKey([1; 32]), now + 1).await {
            Ok(found) => {
                assert_eq!(found.as_deref(), Some(&b"x"[..]));
                break;
            }
            Err(_) => assert!(started.elapsed() < Duration::from_secs(10), "no reconnection"),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(redis.is_healthy());
}

/// The kill switch (`end_all`) removes exactly this store's session and index keys: another
/// application's keys, another prefix's, and a key of ours that is not a session survive; a
/// prefix with glob characters matches only itself.
#[tokio::test]
async fn end_all_touches_nothing_but_this_stores_sessions_and_indexes() {
    let server = RedisServer::start();
    let redis = store(&server, "a*[b]:");
    let neighbour = store(&server, "ab:");
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
    let record = || SealedRecord { sealed: Bytes::from_static(b"x"), expires_at: now + 3600 };
    redis.save(StoreKey([1; 32]), record(), now).await.unwrap();
    redis.save(StoreKey([2; 32]), record(), now).await.unwrap();
    neighbour.save(StoreKey([3; 32]), record(), now).await.unwrap();
    for key in ["s:foreign", "a*[b]:s:not-hex", "other-app:user:1"] {
        server.command(&["SET", key, "v"]);
    }
    assert_eq!(redis.end_all().await.unwrap(), 2);
    assert_eq!(redis.load(&StoreKey([1; 32]), now).await.unwrap(), None);
    assert!(neighbour.load(&StoreKey([3; 32]), now).await.unwrap().is_some(), "another prefix's session ended");
    for key in ["s:foreign", "a*[b]:s:not-hex", "other-app:user:1"] {
        assert!(server.command(&["EXISTS", key]).contains('1'), "{key} was removed");
    }
}
