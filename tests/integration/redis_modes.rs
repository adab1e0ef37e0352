//! Redis as production runs it (issue 17), against real servers: TLS with a private CA and a
//! required client certificate, a Sentinel-managed primary that fails over under two cloakroom
//! replicas, and a six-node Cluster that loses a primary. The shared store suite runs against
//! each mode.

use crate::replicas::replicas_with;
use crate::support::*;
use bytes::Bytes;
use cloakroom::config::{RedisAuth, RedisSettings, RedisTls, RedisTopology};
use cloakroom::session::redis::RedisStore;
use cloakroom::session::{SealedRecord, SessionStore, StoreKey, store_suite};
use http::Method;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

fn store(topology: RedisTopology, tls: Option<RedisTls>, prefix: &str) -> RedisStore {
    let settings = RedisSettings {
        topology,
        tls,
        command_timeout: Duration::from_secs(2),
        ..RedisSettings::standalone("", prefix)
    };
    RedisStore::new(settings, store_suite::LIMITS).unwrap()
}

/// The store suite, each case in a fresh key space.
async fn suite(topology: &RedisTopology, tls: Option<&RedisTls>, run: &str) {
    let n = AtomicU32::new(0);
    store_suite::run_all(|| {
        store(topology.clone(), tls.cloned(), &format!("{run}{}:", n.fetch_add(1, Ordering::SeqCst)))
    })
    .await;
}

fn record(bytes: &'static [u8]) -> SealedRecord {
    SealedRecord { sealed: Bytes::from_static(bytes), expires_at: u64::MAX / 2 }
}

#[tokio::test]
async fn tls_with_a_private_ca_and_a_required_client_certificate() {
    let pki = pki();
    let server = RedisServer::start_tls(&pki.issue("redis", false), &pki.ca_file, true);
    let url = format!("rediss://127.0.0.1:{}", server.port);
    let topology = RedisTopology::Standalone { url: url.clone() };
    let ca = std::fs::read(&pki.ca_file).unwrap();
    let client = pki.issue("cloakroom", true);
    let client_pair = (std::fs::read(&client.cert_file).unwrap(), std::fs::read(&client.key_file).unwrap());
    let now = 1_000_000;

    // No client certificate: the server refuses the connection; an error, never "no session".
    let without = store(topology.clone(), Some(RedisTls { ca: Some(ca.clone()), client: None }), "t:");
    assert!(without.save(StoreKey([1; 32]), record(b"x"), now).await.is_err(), "no client certificate, yet it stored");
    // A server certificate from another CA: refused by cloakroom.
    let other = TestPki::new("another CA");
    let stranger = RedisTls { ca: Some(std::fs::read(&other.ca_file).unwrap()), client: Some(client_pair.clone()) };
    assert!(store(topology.clone(), Some(stranger), "t:").load(&StoreKey([1; 32]), now).await.is_err());
    // The system trust store does not know the private CA either.
    let system = RedisTls { ca: None, client: Some(client_pair.clone()) };
    assert!(store(topology.clone(), Some(system), "t:").load(&StoreKey([1; 32]), now).await.is_err());

    let tls = RedisTls { ca: Some(ca), client: Some(client_pair) };
    suite(&topology, Some(&tls), "tls").await;

    // The same through cloakroom's configuration: a sign-in lands in Redis over mutual TLS.
    let bff = Bff::start_with(BffOptions {
        session_toml: format!(
            "store = \"redis\"\nredis_url = \"{url}\"\nredis_ca_file = {:?}\nredis_client_cert_file = {:?}\nredis_client_key_file = {:?}\nredis_key_prefix = \"crtls:\"",
            pki.ca_file, client.cert_file, client.key_file
        ),
        ..Default::default()
    })
    .await;
    let mut browser = Browser::new();
    assert_eq!(bff.login(&mut browser, "alice", "/").await.status, 200);
    assert_eq!(bff.user(&mut browser).await.status, 200);
    assert!(server.cli(&["--scan", "--pattern", "crtls:s:*"]).contains("crtls:s:"), "the session is not in Redis");
}

/// A primary, a replica and three sentinels; two cloakroom replicas. The primary is killed: calls
/// get 503 (never a 500, never a sign-out), then go on by themselves once a sentinel promoted
/// the replica; the session written before is still there, and a refresh storm across both
/// replicas right after makes one refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sentinel_follows_the_promoted_primary_and_the_session_survives() {
    let mut primary = RedisServer::start();
    let replica = RedisServer::start_with(&["--replicaof", "127.0.0.1", &primary.port.to_string()]);
    wait_for(|| replica.command(&["INFO", "replication"]).contains("master_link_status:up"), "the replica to sync");
    let sentinels: Vec<Sentinel> = (0..3).map(|_| Sentinel::start(primary.port, 2)).collect();
    wait_for(|| sentinels[0].command(&["SENTINEL", "ckquorum", "mymaster"]).starts_with("+OK"), "a sentinel quorum");
    let nodes: Vec<String> = sentinels.iter().map(Sentinel::url).collect();
    let topology = RedisTopology::Sentinel {
        sentinels: nodes.clone(),
        master_name: "mymaster".into(),
        auth: RedisAuth::default(),
    };
    suite(&topology, None, "sentinel").await;

    let toml = format!(
        "store = \"redis\"\nredis_mode = \"sentinel\"\nredis_nodes = {nodes:?}\nredis_master_name = \"mymaster\"\nredis_key_prefix = \"cr:\""
    );
    let (a, b) = replicas_with(&toml, [None, None]).await;
    let mut browser = Browser::new();
    assert_eq!(a.login(&mut browser, "alice", "/").await.status, 200);
    let cookie = format!("__Host-Http-cloakroom={}", session_cookie(&browser).unwrap());
    assert_eq!(browser.get(&b.direct("/bff/user"), &[CSRF]).await.status, 200);
    // Replication is asynchronous: the session is on the replica before the primary goes.
    assert!(primary.command(&["WAIT", "1", "2000"]).starts_with(":1"), "not replicated");

    let old_port = primary.port;
    primary.kill();
    let started = Instant::now();
    let (mut unavailable, mut back) = (0, false);
    while started.elapsed() < Duration::from_secs(40) {
        for bff in [&a, &b] {
            let reply = http_call(Method::GET, &bff.direct("/bff/user"), None, &[CSRF, ("cookie", &cookie)]).await;
            match reply.status {
                503 => {
                    assert_eq!(reply.json()["error"], "store_unavailable", "{}", reply.text());
                    unavailable += 1;
                }
                200 => back = true,
                other => panic!("during the failover a call got {other}: {}", reply.text()),
            }
        }
        if back
            && http_call(Method::GET, &a.direct("/bff/user"), None, &[CSRF, ("cookie", &cookie)]).await.status == 200
        {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(unavailable > 0, "the primary's loss went unnoticed");
    assert!(back, "no recovery after the failover ({unavailable} calls got 503)");
    let promoted = sentinels[0].master_port();
    assert!(promoted.is_some_and(|p| p != old_port), "no promotion: {promoted:?}");
    for bff in [&a, &b] {
        let reply = http_call(Method::GET, &bff.direct("/bff/user"), None, &[CSRF, ("cookie", &cookie)]).await;
        assert_eq!(reply.status, 200, "the session did not survive the failover: {}", reply.text());
    }

    // A refresh storm across both replicas right after the failover: one refresh.
    // Past the access token's expiry: every call of the storm needs the refresh.
    a.clock.advance(310);
    b.clock.advance(310);
    let cookie = Arc::new(cookie);
    let calls: Vec<_> = (0..60)
        .map(|_| {
            let (url, cookie) = (a.url("/api/storm"), cookie.clone());
            tokio::spawn(async move { http_call(Method::GET, &url, None, &[CSRF, ("cookie", &cookie)]).await.status })
        })
        .collect();
    for call in calls {
        assert_eq!(call.await.unwrap(), 200);
    }
    assert_eq!(refreshes_granted(&a.issuer, &a.client).await, 1, "one refresh for the whole storm");
    let metrics = http_call(Method::GET, &format!("{}/metrics", a.admin), None, &[]).await.text();
    assert!(metrics.contains("cloakroom_store_errors_total{kind="), "{metrics}");
    assert!(metrics.contains("cloakroom_store_reconnects_total "), "{metrics}");
    assert_eq!(http_call(Method::GET, &format!("{}/readyz", a.admin), None, &[]).await.status, 200);
}

/// Six nodes, three primaries: the store suite (indexes, claimed logins, leases) holds on a real
/// cluster, sign-in, the session list and logout work through it, and after a primary is killed
/// and its replica promoted, the suite holds again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_runs_the_store_and_survives_losing_a_primary() {
    let mut cluster = Cluster::start();
    let topology = RedisTopology::Cluster { nodes: cluster.urls(), auth: RedisAuth::default() };
    suite(&topology, None, "cluster").await;

    let bff = Bff::start_with(BffOptions {
        session_toml: format!(
            "store = \"redis\"\nredis_mode = \"cluster\"\nredis_nodes = {:?}\nredis_key_prefix = \"cr:\"",
            cluster.urls()
        ),
        ..Default::default()
    })
    .await;
    let (mut one, mut two) = (Browser::new(), Browser::new());
    assert_eq!(bff.login(&mut one, "alice", "/").await.status, 200);
    assert_eq!(bff.login(&mut two, "alice", "/").await.status, 200);
    let listed = one.get(&bff.url("/bff/sessions"), &[CSRF]).await;
    assert_eq!(listed.json()["sessions"].as_array().map(Vec::len), Some(2), "{}", listed.text());

    cluster.kill_a_primary();
    let started = Instant::now();
    loop {
        // Slots that moved are followed; until the promotion, calls fail cleanly.
        let reply = one.get(&bff.url("/bff/user"), &[CSRF]).await;
        assert!(reply.status == 200 || reply.status == 503 || reply.status == 401, "{}", reply.text());
        if reply.status != 503 {
            break;
        }
        assert!(started.elapsed() < Duration::from_secs(20), "the store did not come back");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    suite(&topology, None, "after").await;
    let mut three = Browser::new();
    assert_eq!(bff.login(&mut three, "bob", "/").await.status, 200, "no sign-in after the failover");
    assert_eq!(three.request(Method::POST, &bff.url("/bff/logout"), None, &[CSRF]).await.status, 200);
    assert_eq!(bff.user(&mut three).await.status, 401);
}

fn wait_for(mut ready: impl FnMut() -> bool, what: &str) {
    let started = Instant::now();
    while !ready() {
        assert!(started.elapsed() < Duration::from_secs(20), "waited too long for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}
