//! One behaviour suite for every [`SessionStore`]: the memory store runs it in its unit tests,
//! every Redis mode in `tests/integration/redis_store.rs` against real servers.

use super::*;

pub const LIMITS: StoreLimits = StoreLimits {
    idle_timeout: Duration::from_secs(600),
    absolute_timeout: Duration::from_secs(3600),
    max_sessions: 1000,
    max_pending_logins: 1000,
    login_timeout: Duration::from_secs(600),
};

/// Now, in unix seconds: stores also expire entries on their own real-time clock (Redis's TTLs,
/// the memory store's sweeps and index checks), so the suite's timeline starts at the real
/// present and moves forward from there.
fn t0() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs()).unwrap_or(0)
}

fn key(n: u8) -> StoreKey {
    StoreKey([n; 32])
}

fn record(body: &'static [u8], expires_at: u64) -> SealedRecord {
    SealedRecord { sealed: Bytes::from_static(body), expires_at }
}

pub async fn run_all<S: SessionStore, F: Fn() -> S>(fresh: F) {
    save_then_load(&fresh()).await;
    absent_is_none(&fresh()).await;
    idle_timeout_slides_on_use(&fresh()).await;
    idle_timeout_ends_unused_sessions(&fresh()).await;
    absolute_timeout_never_slides(&fresh()).await;
    remove_ends_a_session(&fresh()).await;
    replace_never_brings_an_ended_session_back(&fresh()).await;
    save_replaces(&fresh()).await;
    a_login_is_claimed_once(&fresh()).await;
    sessions_and_claimed_logins_do_not_mix(&fresh()).await;
    index_lists_members_once_and_take_empties_it(&fresh()).await;
    index_keeps_live_members_up_to_the_cap_oldest_out_first(&fresh()).await;
    a_lease_is_held_by_one_until_released_or_expired(&fresh()).await;
    a_peek_is_not_a_use(&fresh()).await;
    last_seen_reports_use_without_being_use(&fresh()).await;
    end_all_ends_every_session_and_index_and_keeps_claimed_logins(&fresh()).await;
}

async fn end_all_ends_every_session_and_index_and_keeps_claimed_logins<S: SessionStore>(s: &S) {
    #[allow(non_snake_case)]
    let T0 = t0();
    for n in 1..=3 {
        s.save(key(n), record(b"v", T0 + 3600), T0).await.unwrap();
    }
    s.index_add(key(40), key(1), Bytes::from_static(b"listing"), 10).await.unwrap();
    assert!(s.claim_login(key(50), T0 + 600).await.unwrap());
    let ended = s.end_all().await.unwrap();
    assert!(ended >= 3, "{ended}");
    for n in 1..=3 {
        assert_eq!(s.load(&key(n), T0 + 1).await.unwrap(), None, "session {n} survived");
    }
    assert!(s.index_list(&key(40)).await.unwrap().is_empty());
    assert!(!s.claim_login(key(50), T0 + 600).await.unwrap(), "a finished sign-in could finish again");
    // The store works on after it.
    s.save(key(4), record(b"after", T0 + 3600), T0 + 1).await.unwrap();
    assert_eq!(s.load(&key(4), T0 + 2).await.unwrap().as_deref(), Some(&b"after"[..]));
}

async fn replace_never_brings_an_ended_session_back<S: SessionStore>(s: &S) {
    #[allow(non_snake_case)]
    let T0 = t0();
    s.save(key(1), record(b"v1", T0 + 3600), T0).await.unwrap();
    assert!(s.replace(key(1), record(b"v2", T0 + 3600), T0 + 1).await.unwrap());
    assert_eq!(s.load(&key(1), T0 + 2).await.unwrap().as_deref(), Some(&b"v2"[..]));
    s.remove(&key(1)).await.unwrap();
    assert!(!s.replace(key(1), record(b"v3", T0 + 3600), T0 + 3).await.unwrap());
    assert_eq!(s.load(&key(1), T0 + 4).await.unwrap(), None, "an ended session came back");
    assert!(!s.replace(key(2), record(b"new", T0 + 3600), T0).await.unwrap(), "replace creates nothing");
    assert_eq!(s.load(&key(2), T0 + 1).await.unwrap(), None);
}

async fn index_lists_members_once_and_take_empties_it<S: SessionStore>(s: &S) {
    #[allow(non_snake_case)]
    let T0 = t0();
    s.save(key(1), record(b"one", T0 + 3600), T0).await.unwrap();
    s.save(key(2), record(b"two", T0 + 3600), T0).await.unwrap();
    let p = |text: &'static str| Bytes::from_static(text.as_bytes());
    s.index_add(key(100), key(1), p("a"), 10).await.unwrap();
    s.index_add(key(100), key(2), p("b"), 10).await.unwrap();
    s.index_add(key(100), key(2), p("b2"), 10).await.unwrap();
    s.index_add(key(101), key(2), p("c"), 10).await.unwrap();
    let mut listed = s.index_list(&key(100)).await.unwrap();
    listed.sort_by_key(|(k, _)| k.0);
    assert_eq!(listed, vec![(key(1), p("a")), (key(2), p("b2"))], "re-adding a member replaces its payload");
    s.remove(&key(1)).await.unwrap();
    assert_eq!(s.index_list(&key(100)).await.unwrap(), vec![(key(2), p("b2"))], "ended sessions are not listed");
    s.save(key(1), record(b"one", T0 + 3600), T0).await.unwrap();
    s.index_add(key(100), key(1), p("a"), 10).await.unwrap();
    s.index_remove(&key(100), &key(1)).await.unwrap();
    assert_eq!(s.index_list(&key(100)).await.unwrap(), vec![(key(2), p("b2"))]);
    s.index_add(key(100), key(1), p("a"), 10).await.unwrap();
    let mut members = s.index_take(&key(100)).await.unwrap();
    members.sort_by_key(|k| k.0);
    assert_eq!(members, vec![key(1), key(2)]);
    assert!(s.index_take(&key(100)).await.unwrap().is_empty(), "take left the index behind");
    assert_eq!(s.index_take(&key(101)).await.unwrap(), vec![key(2)], "indexes are independent");
    assert!(s.index_take(&key(102)).await.unwrap().is_empty());
}

async fn save_then_load<S: SessionStore>(s: &S) {
    #[allow(non_snake_case)]
    let T0 = t0();
    s.save(key(1), record(b"one", T0 + 3600), T0).await.unwrap();
    assert_eq!(s.load(&key(1), T0 + 1).await.unwrap().as_deref(), Some(&b"one"[..]));
}

async fn absent_is_none<S: SessionStore>(s: &S) {
    #[allow(non_snake_case)]
    let T0 = t0();
    assert_eq!(s.load(&key(9), T0).await.unwrap(), None);
}

async fn idle_timeout_slides_on_use<S: SessionStore>(s: &S) {
    #[allow(non_snake_case)]
    let T0 = t0();
    s.save(key(1), record(b"one", T0 + 3600), T0).await.unwrap();
    // Used every 500 s (idle timeout 600 s): alive well past the first idle deadline.
    for step in 1..=5 {
        assert!(s.load(&key(1), T0 + step * 500).await.unwrap().is_some(), "step {step}");
    }
}

async fn idle_timeout_ends_unused_sessions<S: SessionStore>(s: &S) {
    #[allow(non_snake_case)]
    let T0 = t0();
    s.save(key(1), record(b"one", T0 + 3600), T0).await.unwrap();
    assert_eq!(s.load(&key(1), T0 + 600).await.unwrap(), None);
    assert_eq!(s.load(&key(1), T0 + 1).await.unwrap(), None, "an idle-expired session came back");
}

async fn absolute_timeout_never_slides<S: SessionStore>(s: &S) {
    #[allow(non_snake_case)]
    let T0 = t0();
    s.save(key(1), record(b"one", T0 + 1000), T0).await.unwrap();
    assert!(s.load(&key(1), T0 + 500).await.unwrap().is_some());
    assert!(s.load(&key(1), T0 + 999).await.unwrap().is_some());
    assert_eq!(s.load(&key(1), T0 + 1000).await.unwrap(), None);
}

async fn remove_ends_a_session<S: SessionStore>(s: &S) {
    #[allow(non_snake_case)]
    let T0 = t0();
    s.save(key(1), record(b"one", T0 + 3600), T0).await.unwrap();
    s.save(key(2), record(b"two", T0 + 3600), T0).await.unwrap();
    s.remove(&key(1)).await.unwrap();
    assert_eq!(s.load(&key(1), T0).await.unwrap(), None);
    assert!(s.load(&key(2), T0).await.unwrap().is_some(), "remove took another session");
    s.remove(&key(1)).await.unwrap();
}

async fn save_replaces<S: SessionStore>(s: &S) {
    #[allow(non_snake_case)]
    let T0 = t0();
    s.save(key(1), record(b"one", T0 + 3600), T0).await.unwrap();
    s.save(key(1), record(b"uno", T0 + 3600), T0).await.unwrap();
    assert_eq!(s.load(&key(1), T0).await.unwrap().as_deref(), Some(&b"uno"[..]));
}

async fn a_login_is_claimed_once<S: SessionStore>(s: &S) {
    #[allow(non_snake_case)]
    let T0 = t0();
    assert!(s.claim_login(key(3), T0 + 600).await.unwrap());
    assert!(!s.claim_login(key(3), T0 + 600).await.unwrap(), "a sign-in finished twice");
    assert!(s.claim_login(key(4), T0 + 600).await.unwrap());
}

async fn last_seen_reports_use_without_being_use<S: SessionStore>(s: &S) {
    #[allow(non_snake_case)]
    let T0 = t0();
    s.save(key(1), record(b"one", T0 + 3600), T0).await.unwrap();
    assert_eq!(s.last_seen(&key(1)).await.unwrap(), Some(T0));
    s.load(&key(1), T0 + 100).await.unwrap();
    assert_eq!(s.last_seen(&key(1)).await.unwrap(), Some(T0 + 100));
    // Asking does not slide the idle timeout (600 s): idle since T0 + 100.
    assert_eq!(s.load(&key(1), T0 + 700).await.unwrap(), None);
    assert_eq!(s.last_seen(&key(1)).await.unwrap(), None);
}

async fn sessions_and_claimed_logins_do_not_mix<S: SessionStore>(s: &S) {
    #[allow(non_snake_case)]
    let T0 = t0();
    assert!(s.claim_login(key(4), T0 + 600).await.unwrap());
    assert_eq!(s.load(&key(4), T0).await.unwrap(), None);
    s.save(key(5), record(b"one", T0 + 3600), T0).await.unwrap();
    assert!(s.claim_login(key(5), T0 + 600).await.unwrap());
    assert_eq!(s.load(&key(5), T0).await.unwrap().as_deref(), Some(&b"one"[..]));
}

async fn index_keeps_live_members_up_to_the_cap_oldest_out_first<S: SessionStore>(s: &S) {
    #[allow(non_snake_case)]
    let T0 = t0();
    let p = |text: &'static str| Bytes::from_static(text.as_bytes());
    for n in 1..=5 {
        s.save(key(n), record(b"live", T0 + 3600), T0).await.unwrap();
    }
    assert_eq!(s.index_add(key(200), key(1), p("1"), 3).await.unwrap(), vec![]);
    assert_eq!(s.index_add(key(200), key(2), p("2"), 3).await.unwrap(), vec![]);
    assert_eq!(s.index_add(key(200), key(3), p("3"), 3).await.unwrap(), vec![]);
    assert_eq!(s.index_add(key(200), key(4), p("4"), 3).await.unwrap(), vec![key(1)], "the oldest goes first");
    let listed: Vec<StoreKey> = s.index_list(&key(200)).await.unwrap().into_iter().map(|(m, _)| m).collect();
    assert_eq!(listed.len(), 3);
    assert!(!listed.contains(&key(1)), "{listed:?}");
    // An ended session leaves the entry at the next add, making room without evicting anyone.
    s.remove(&key(2)).await.unwrap();
    assert_eq!(s.index_add(key(200), key(5), p("5"), 3).await.unwrap(), vec![]);
    let mut listed: Vec<StoreKey> = s.index_list(&key(200)).await.unwrap().into_iter().map(|(m, _)| m).collect();
    listed.sort_by_key(|k| k.0[0]);
    assert_eq!(listed, vec![key(3), key(4), key(5)]);
}

async fn a_lease_is_held_by_one_until_released_or_expired<S: SessionStore>(s: &S) {
    let ttl = Duration::from_secs(30);
    let first = s.try_lease(&key(7), ttl).await.unwrap().expect("a free lease is granted");
    assert_eq!(s.try_lease(&key(7), ttl).await.unwrap(), None, "a held lease was granted twice");
    let other = s.try_lease(&key(8), ttl).await.unwrap().expect("leases are per key");
    // Releasing with someone else's token releases nothing.
    s.release_lease(&key(7), other.clone()).await.unwrap();
    assert_eq!(s.try_lease(&key(7), ttl).await.unwrap(), None);
    s.release_lease(&key(7), first).await.unwrap();
    let again = s.try_lease(&key(7), Duration::from_millis(100)).await.unwrap().expect("released");
    tokio::time::sleep(Duration::from_millis(250)).await;
    let after = s.try_lease(&key(7), ttl).await.unwrap().expect("an expired lease is free");
    assert_ne!(after, again);
    s.release_lease(&key(8), other).await.unwrap();
}

async fn a_peek_is_not_a_use<S: SessionStore>(s: &S) {
    #[allow(non_snake_case)]
    let T0 = t0();
    s.save(key(1), record(b"one", T0 + 3600), T0).await.unwrap();
    // Idle timeout 600 s: peeks at 300 and 500 do not move it...
    assert_eq!(s.peek(&key(1), T0 + 300).await.unwrap().as_deref(), Some(&b"one"[..]));
    assert!(s.peek(&key(1), T0 + 500).await.unwrap().is_some());
    assert_eq!(s.peek(&key(1), T0 + 600).await.unwrap(), None, "a peek slid the idle deadline");
    assert_eq!(s.load(&key(1), T0 + 600).await.unwrap(), None);
    // ...while a load does.
    s.save(key(2), record(b"two", T0 + 3600), T0).await.unwrap();
    assert!(s.load(&key(2), T0 + 500).await.unwrap().is_some());
    assert!(s.peek(&key(2), T0 + 1000).await.unwrap().is_some());
    assert_eq!(s.peek(&key(9), T0).await.unwrap(), None);
}
