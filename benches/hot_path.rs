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
    let upstream: http::uri::Authority = "127.0.0.1:9000".parse().expect("an authority");
    bencher.with_inputs(|| template.clone()).bench_local_values(|mut headers| {
        headers::rewrite_request(
            &mut headers,
            &cookies,
            headers::Forwarded { client_ip: Some([203, 0, 113, 7].into()), proto: "https", host: &public_host },
            &upstream,
            true,
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
