//! Micro-benchmarks of the per-request work: opening a sealed session, parsing a ticket,
//! rewriting request headers, routing. `cargo bench --bench hot_path`.

use cloakroom::config::Config;
use cloakroom::crypto::seal::KeyRing;
use cloakroom::proxy::headers;
use cloakroom::router::Router;
use cloakroom::session::cookie::CookiePolicy;
use cloakroom::session::{Sealer, Session, SessionTicket, SessionTokens};
use http::{HeaderMap, HeaderValue};
use openidconnect::{AccessToken, RefreshToken};

fn main() {
    divan::main();
}

fn config() -> Config {
    let text = "[oidc]\nissuer = \"https://id.example\"\nclient_id = \"a\"\nclient_secret = \"b\"\n[session]\nkeys = [\"AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=\"]\n[[routes]]\nprefix = \"/api/\"\nupstream = \"http://127.0.0.1:9101/\"\n[[routes]]\nprefix = \"/orders/\"\nupstream = \"http://127.0.0.1:9102/\"\n\
        [[routes.rules]]\nclaim = \"groups\"\ncontains_any = [\"admins\", \"ops\"]\n\
        [[routes.rules]]\nclaim = \"email_verified\"\nequals = true\n\
        [[routes.rules]]\nscope = \"orders:read\"\n";
    Config::from_toml(text, Vec::new()).expect("a valid config")
}

fn session() -> Session {
    let mut claims = serde_json::Map::new();
    claims.insert("sub".into(), "user-1".into());
    claims.insert("name".into(), "Alice Example".into());
    claims.insert("email".into(), "alice@example.com".into());
    claims.insert("email_verified".into(), true.into());
    claims.insert("groups".into(), serde_json::json!(["staff", "admins"]));
    Session {
        sub: "user-1".into(),
        sid: Some("sid-1".into()),
        claims,
        access_token: AccessToken::new(format!("eyJ.{}.{}", "x".repeat(600), "s".repeat(342))),
        access_token_expires_at: Some(2_000_000_000),
        refresh_token: Some(RefreshToken::new("r".repeat(43))),
        scope: Some("openid profile email offline_access orders:read".into()),
        id_token: None,
        resource_tokens: Default::default(),
        created_at: 1_700_000_000,
        expires_at: 2_000_000_000,
        listing_id: "l".repeat(22),
        userinfo_at: None,
        provider: None,
        dpop_key: None,
    }
}

#[divan::bench]
fn open_sealed_session(bencher: divan::Bencher) {
    let keys: KeyRing = config().session.keys;
    let sealer = Sealer::new(keys);
    let ticket = SessionTicket::generate();
    let sealed = sealer.seal_session(&ticket, &session()).sealed;
    bencher.bench(|| sealer.open_session(divan::black_box(&ticket), divan::black_box(&sealed)).expect("opens"));
}

/// The record's decryption alone (key derivation from the ticket's secret, AES-256-GCM), without
/// decoding: the part of opening a session that the security model fixes (no derived key is
/// kept between calls).
#[divan::bench]
fn decrypt_sealed_record(bencher: divan::Bencher) {
    use cloakroom::crypto::seal::Purpose;
    let keys: KeyRing = config().session.keys;
    let sealer = Sealer::new(keys.clone());
    let ticket = SessionTicket::generate();
    let sealed = sealer.seal_session(&ticket, &session()).sealed;
    let key = ticket.store_key();
    bencher.bench(|| {
        keys.open(Purpose::Session, ticket.secret(), key.as_bytes(), divan::black_box(&sealed)).expect("opens")
    });
}

/// What a proxied call does: the same record, decoding only the tokens.
#[divan::bench]
fn open_sealed_session_tokens(bencher: divan::Bencher) {
    let sealer = Sealer::new(config().session.keys);
    let ticket = SessionTicket::generate();
    let sealed = sealer.seal_session(&ticket, &session()).sealed;
    bencher.bench(|| {
        sealer.open_session_as::<SessionTokens>(divan::black_box(&ticket), divan::black_box(&sealed)).expect("opens")
    });
}

/// What a call to a route with authorization rules does: the tokens, the claims' text and the
/// scope, and the rules (three: two on claims, one on the scope) checked on them.
#[divan::bench]
fn open_sealed_session_and_check_rules(bencher: divan::Bencher) {
    use cloakroom::session::claims::RawClaims;
    let config = config();
    let rules = config.routes[1].rules.clone().expect("the orders route has rules");
    let sealer = Sealer::new(config.session.keys);
    let ticket = SessionTicket::generate();
    let sealed = sealer.seal_session(&ticket, &session()).sealed;
    bencher.bench(|| {
        let opened = sealer
            .open_session_as::<SessionTokens<RawClaims, String>>(divan::black_box(&ticket), divan::black_box(&sealed))
            .expect("opens");
        assert!(cloakroom::proxy::rules::permits(&rules, opened.claims.as_ref(), opened.scope.as_deref()));
        opened
    });
}

#[divan::bench]
fn seal_session(bencher: divan::Bencher) {
    let sealer = Sealer::new(config().session.keys);
    let ticket = SessionTicket::generate();
    let session = session();
    bencher.bench(|| sealer.seal_session(divan::black_box(&ticket), divan::black_box(&session)));
}

#[divan::bench]
fn parse_ticket(bencher: divan::Bencher) {
    let encoded = SessionTicket::generate().encode();
    bencher.bench(|| SessionTicket::parse(divan::black_box(&encoded)).expect("parses"));
}

#[divan::bench]
fn rewrite_request_headers(bencher: divan::Bencher) {
    let cookies = CookiePolicy::new("__Host-cloakroom", cookie::SameSite::Strict);
    let mut template = HeaderMap::new();
    template.insert("cookie", HeaderValue::from_static("theme=dark; __Host-cloakroom=abc; lang=en"));
    template.insert("connection", HeaderValue::from_static("keep-alive"));
    template.insert("x-forwarded-for", HeaderValue::from_static("6.6.6.6"));
    template.insert("accept", HeaderValue::from_static("application/json"));
    let public_host = HeaderValue::from_static("app.example");
    let upstream = HeaderValue::from_static("127.0.0.1:9000");
    let identity_names = cloakroom::identity::spoofable(&[]);
    bencher.with_inputs(|| template.clone()).bench_local_values(|mut headers| {
        headers::rewrite_request(
            &mut headers,
            &cookies,
            headers::Forwarded { client_ip: Some([203, 0, 113, 7].into()), proto: "https", host: &public_host },
            &upstream,
            true,
            &identity_names,
        );
        headers
    });
}

/// A path with a percent-escape takes the decoding path of the prefix check.
#[divan::bench]
fn route_escaped(bencher: divan::Bencher) {
    let router = Router::new(&config().routes);
    bencher.bench(|| router.route(divan::black_box("/orders/v1/items/caf%C3%A9")));
}

#[divan::bench]
fn route(bencher: divan::Bencher) {
    let router = Router::new(&config().routes);
    bencher.bench(|| router.route(divan::black_box("/orders/v1/items/42")));
}

/// A request's headers as a browser's API call brings them (the session ticket among other
/// cookies, the anti-CSRF header).
fn browser_headers(ticket: &SessionTicket) -> HeaderMap {
    let mut headers = HeaderMap::new();
    let cookie = format!("theme=dark; __Host-Http-cloakroom={}; lang=en", ticket.encode());
    headers.insert("cookie", HeaderValue::try_from(cookie).expect("a header value"));
    headers.insert("x-csrf", HeaderValue::from_static("1"));
    headers.insert("host", HeaderValue::from_static("app.example"));
    headers.insert("accept", HeaderValue::from_static("application/json"));
    headers.insert("user-agent", HeaderValue::from_static("Mozilla/5.0 (X11; Linux x86_64) Firefox/130.0"));
    headers
}

/// The cookie policy as configured by default: the session cookie's name and the one earlier
/// versions used.
fn default_cookies() -> CookiePolicy {
    let session = config().session;
    CookiePolicy::new(&session.cookie_name, session.same_site).with_legacy_names(&session.legacy_cookie_names)
}

/// Finding the session cookie's value among the request's cookies, and the ticket in it.
#[divan::bench]
fn find_session_cookie(bencher: divan::Bencher) {
    let cookies = default_cookies();
    let headers = browser_headers(&SessionTicket::generate());
    bencher.bench(|| {
        let value = cookies.find_session(divan::black_box(&headers)).expect("found");
        SessionTicket::parse(std::str::from_utf8(value).expect("text")).expect("a ticket")
    });
}

/// Whether a request carries the session cookie under an earlier name (every request asks).
#[divan::bench]
fn cookie_migration_check(bencher: divan::Bencher) {
    let cookies = default_cookies();
    let headers = browser_headers(&SessionTicket::generate());
    bencher.bench(|| assert!(cookies.migration(divan::black_box(&headers)).is_none()));
}

/// The anti-CSRF check of an API call.
#[divan::bench]
fn csrf_check(bencher: divan::Bencher) {
    let guard = cloakroom::csrf::CsrfGuard::new(
        http::HeaderName::from_static("x-csrf"),
        "https://app.example".into(),
        Vec::new(),
    );
    let headers = browser_headers(&SessionTicket::generate());
    bencher.bench(|| guard.check(divan::black_box(&headers)).expect("passes"));
}

/// Who the client is (a direct peer, not a trusted proxy).
#[divan::bench]
fn client_address(bencher: divan::Bencher) {
    let headers = browser_headers(&SessionTicket::generate());
    let peer: std::net::SocketAddr = "203.0.113.7:50000".parse().expect("an address");
    bencher.bench(|| {
        cloakroom::forwarded::client_addr(
            divan::black_box(peer),
            "https",
            divan::black_box(&headers),
            &[],
            cloakroom::forwarded::ForwardingHeader::XForwardedFor,
        )
    });
}

/// The memory store's read of a sealed record (the session's idle deadline slides).
#[divan::bench]
fn memory_store_load(bencher: divan::Bencher) {
    use cloakroom::session::SessionStore;
    use cloakroom::session::memory::MemoryStore;
    let limits = cloakroom::session::StoreLimits {
        idle_timeout: std::time::Duration::from_secs(1800),
        absolute_timeout: std::time::Duration::from_secs(43_200),
        max_sessions: 1_000_000,
        max_pending_logins: 1000,
        login_timeout: std::time::Duration::from_secs(600),
    };
    let store = MemoryStore::new(limits);
    let sealer = Sealer::new(config().session.keys);
    let ticket = SessionTicket::generate();
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("a runtime");
    let now = 1_800_000_000;
    runtime.block_on(store.save(ticket.store_key(), sealer.seal_session(&ticket, &session()), now)).expect("saved");
    let key = ticket.store_key();
    bencher.bench_local(|| runtime.block_on(store.load(divan::black_box(&key), now)).expect("loads").expect("found"));
}

/// The `Authorization: Bearer` header made from a JWT-sized access token.
#[divan::bench]
fn bearer_header(bencher: divan::Bencher) {
    let token = session().access_token;
    bencher.bench(|| {
        let secret = divan::black_box(&token).secret();
        let mut value = String::with_capacity(7 + secret.len());
        value.push_str("Bearer ");
        value.push_str(secret);
        HeaderValue::try_from(value).expect("a header value")
    });
}

/// What an upstream's answer goes through on the way back.
#[divan::bench]
fn rewrite_response_headers(bencher: divan::Bencher) {
    let cookies = CookiePolicy::new("__Host-Http-cloakroom", cookie::SameSite::Strict);
    let mut template = HeaderMap::new();
    template.insert("content-type", HeaderValue::from_static("application/json"));
    template.insert("content-length", HeaderValue::from_static("72"));
    template.insert("date", HeaderValue::from_static("Sun, 29 Nov 2026 01:00:00 GMT"));
    template.insert("set-cookie", HeaderValue::from_static("pref=1; Path=/; Secure"));
    bencher.with_inputs(|| template.clone()).bench_local_values(|mut headers| {
        headers::rewrite_response(&mut headers, &cookies, true);
        headers
    });
}

/// A request id for the logs and the upstream, and the request's metrics.
#[divan::bench]
fn request_id_and_metrics(bencher: divan::Bencher) {
    let metrics = cloakroom::metrics::Metrics::new();
    bencher.bench(|| {
        let id = cloakroom::telemetry::request_id_from(None);
        metrics.request("api", 200, std::time::Duration::from_micros(150));
        id
    });
}

/// The method check of an API call: the route's allowlist (none here) and the method overrides
/// some frameworks honour, in headers and in the query string (none, and a query naming no method).
#[divan::bench(args = [None, Some("page=2&sort=name")])]
fn method_check(bencher: divan::Bencher, query: Option<&str>) {
    let headers = browser_headers(&SessionTicket::generate());
    bencher.bench(|| {
        let refused = cloakroom::proxy::method::refused(&http::Method::GET, divan::black_box(&headers), query, None);
        assert!(!refused);
    });
}

/// What a bodiless call carrying the user's token keeps for its one retry with a fresh token,
/// should the upstream reject the token (issue 27, item 6): the method, the headers, the path.
#[divan::bench]
fn replay_copy(bencher: divan::Bencher) {
    let mut request =
        http::Request::get("/api/v1/items/42").body(http_body_util::Empty::<bytes::Bytes>::new()).unwrap();
    *request.headers_mut() = browser_headers(&SessionTicket::generate());
    bencher.bench(|| cloakroom::proxy::Replay::of(divan::black_box(&request), "/v1/items/42"));
}

/// Routing on a route with another nested in it (`/api/admin/` in `/api/`): a plain path is
/// compared as it is, one with capitals or escapes is folded first.
#[divan::bench(args = ["/api/v1/items/42", "/api/v1/Items/ABC42"])]
fn route_with_a_nested_route(bencher: divan::Bencher, path: &str) {
    let text = "[oidc]\nissuer = \"https://id.example\"\nclient_id = \"a\"\nclient_secret = \"b\"\n\
                [[routes]]\nprefix = \"/api/\"\nupstream = \"http://127.0.0.1:9101/\"\n\
                [[routes]]\nprefix = \"/api/admin/\"\nupstream = \"http://127.0.0.1:9101/admin/\"\n";
    let router = Router::new(&Config::from_toml(text, Vec::new()).expect("a valid config").routes);
    bencher.bench(|| router.route(divan::black_box(path)));
}

/// What a DPoP route adds per call: the session's key read from its record (base64url PKCS#8,
/// parsed and checked) and a proof signed (an ES256 JWT with a fresh `jti` and the token's hash).
#[divan::bench]
fn dpop_key_and_proof(bencher: divan::Bencher) {
    use cloakroom::crypto::dpop::DpopKey;
    let kept = DpopKey::generate().expect("a key").to_record();
    let token = format!("eyJ.{}.{}", "x".repeat(600), "s".repeat(342));
    bencher.bench(|| {
        let key = DpopKey::from_record(divan::black_box(&kept)).expect("reads");
        key.proof(&http::Method::GET, "http://127.0.0.1:9101/api/items", Some(&token), None, 1_700_000_000)
            .expect("signs")
    });
}

/// The proof alone, the key already read.
#[divan::bench]
fn dpop_proof_only(bencher: divan::Bencher) {
    use cloakroom::crypto::dpop::DpopKey;
    let key = DpopKey::generate().expect("a key");
    let token = format!("eyJ.{}.{}", "x".repeat(600), "s".repeat(342));
    bencher.bench(|| {
        key.proof(&http::Method::GET, "http://127.0.0.1:9101/api/items", Some(&token), None, 1_700_000_000)
            .expect("signs")
    });
}
