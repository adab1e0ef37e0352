//! Memory per session: N sessions (default 100 000) with realistic token sizes go into the
//! memory store through the same code a sign-in uses, and are each read once (as by a first
//! API call); the process's resident memory before and
//! after gives the cost per session, printed beside the token bytes themselves (the baseline:
//! what any store must hold) and the overhead beyond them. Target: at most 1 KiB of overhead.
//!
//!   cargo bench --bench memory            # SESSIONS=100000 by default

use cloakroom::clock::SystemClock;
use cloakroom::config::Config;
use cloakroom::session::NewSession;
use cloakroom::session::Sessions;
use openidconnect::{AccessToken, RefreshToken};
use std::sync::Arc;

fn now() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_secs())
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm.split_whitespace().nth(1).and_then(|p| p.parse().ok()).unwrap_or(0);
    pages * 4096
}

/// A JWT-sized access token (about 900 bytes, like a typical provider's), an opaque refresh
/// token, and the claims of an ordinary user.
fn tokens(i: usize) -> NewSession {
    let access = format!("eyJhbGciOiJSUzI1NiIsImtpZCI6InJzYTEifQ.{}.{}", "x".repeat(600), "s".repeat(342));
    let mut claims = serde_json::Map::new();
    claims.insert("sub".into(), format!("user-{i:08}").into());
    claims.insert("name".into(), "Alice Example".into());
    claims.insert("email".into(), format!("user{i}@example.com").into());
    claims.insert("email_verified".into(), true.into());
    NewSession {
        access_token: AccessToken::new(access),
        access_token_expires_at: Some(4_102_444_800), // 2100-01-01: ten digits, like a real one
        refresh_token: Some(RefreshToken::new(format!("{i:043}"))),
        refresh_token_expires_at: None,
        scope: "openid profile email offline_access".into(),
        id_token: cloakroom::secret::Secret::new(String::new()),
        sub: format!("user-{i:08}"),
        sid: Some(format!("sid-{i:012}")),
        claims,
        provider: None,
        dpop_key: None,
        userinfo_at: None,
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let n: usize = std::env::var("SESSIONS").ok().and_then(|v| v.parse().ok()).unwrap_or(100_000);
    let key = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
    let text = format!(
        "[oidc]\nissuer = \"https://id.example\"\nclient_id = \"a\"\nclient_secret = \"b\"\n[session]\nkeys = [\"{key}\"]\nmax_sessions = {}\n",
        n * 2
    );
    let config = Config::from_toml(&text, Vec::new()).expect("a valid config");
    let sessions = Sessions::new(&config.session, Arc::new(SystemClock), Default::default()).expect("a memory store");
    let sample = tokens(0);
    let token_bytes = sample.access_token.secret().len()
        + sample.refresh_token.as_ref().map_or(0, |t| t.secret().len())
        + serde_json::to_vec(&sample.claims).map_or(0, |c| c.len());
    let before = rss_bytes();
    let mut record_bytes = 0;
    for i in 0..n {
        let (ticket, _) =
            sessions.create(tokens(i), false, false, "Firefox on Linux".into(), "203.0.113.7".into()).await.unwrap();
        // Read once, as a session is by its first API call: what a read leaves behind counts.
        use cloakroom::session::SessionStore;
        let sealed = sessions.store().load(&ticket.store_key(), now()).await.unwrap().expect("just stored");
        record_bytes = sealed.len();
    }
    sessions.store().sync().await;
    let after = rss_bytes();
    let per_session = (after.saturating_sub(before)) as f64 / n as f64;
    let count = sessions.store().session_count().unwrap_or(0);
    println!("sessions stored            {count} (of {n})");
    println!("resident memory growth     {:.1} MiB", (after - before) as f64 / 1048576.0);
    println!("per session                {per_session:.0} bytes");
    println!("token + claim bytes        {token_bytes} bytes (baseline: what any store must hold)");
    println!(
        "sealed record              {record_bytes} bytes (of which {} beyond the tokens and claims)",
        record_bytes - token_bytes
    );
    println!("ratio to baseline          {:.2}x", per_session / token_bytes as f64);
    println!("overhead beyond the tokens {:.0} bytes (target: <= 1024)", per_session - token_bytes as f64);
}
