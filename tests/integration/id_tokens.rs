//! ID-token and logout-token validation, against a deliberately misbehaving in-process issuer.
//!
//! The real provider never issues a bad token, so this fast issuer serves discovery, a JWKS and
//! a token endpoint whose ID token each test crafts, and the tests craft logout tokens signed
//! with its key: every check cloakroom must make is shown refusing (a 400, no session created,
//! none ended), next to a control that passes.

use crate::support::*;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::{KeyPair as _, RSA_PKCS1_SHA256};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD as B64;
use cloakroom::respond::{Body, full};
use http::Method;
use http::{Request, Response};
use hyper::body::Incoming;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

const CLIENT_ID: &str = "cloakroom-test";
const CLIENT_SECRET: &str = "a-client-secret-of-reasonable-length";
const ACCESS_TOKEN: &str = "opaque-access-token-from-the-fake-issuer";

struct SigningKey {
    kid: String,
    pair: KeyPair,
}

impl SigningKey {
    fn generate(kid: &str) -> Self {
        Self { kid: kid.into(), pair: KeyPair::generate(KeySize::Rsa2048).unwrap() }
    }

    fn jwk(&self) -> Value {
        let public = self.pair.public_key();
        json!({
            "kty": "RSA", "use": "sig", "alg": "RS256", "kid": self.kid,
            "n": B64.encode(public.modulus().big_endian_without_leading_zero()),
            "e": B64.encode(public.exponent().big_endian_without_leading_zero()),
        })
    }

    fn sign(&self, header: &Value, claims: &Value) -> String {
        let input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(claims.to_string()));
        let mut signature = vec![0; self.pair.public_modulus_len()];
        self.pair.sign(&RSA_PKCS1_SHA256, &SystemRandom::new(), input.as_bytes(), &mut signature).unwrap();
        format!("{input}.{}", B64.encode(signature))
    }
}

#[derive(Default)]
struct IssuerState {
    published: Vec<Value>,
    next_id_token: Option<String>,
    /// What the userinfo endpoint answers (404 when `None`).
    userinfo: Option<Value>,
}

struct FakeIssuer {
    url: String,
    state: Arc<Mutex<IssuerState>>,
    jwks_fetches: Arc<AtomicUsize>,
}

impl FakeIssuer {
    async fn start(published: Vec<Value>) -> FakeIssuer {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(IssuerState { published, ..Default::default() }));
        let jwks_fetches = Arc::new(AtomicUsize::new(0));
        let (s, f, u) = (state.clone(), jwks_fetches.clone(), url.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else { continue };
                let (s, f, u) = (s.clone(), f.clone(), u.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                        let (s, f, u) = (s.clone(), f.clone(), u.clone());
                        async move { Ok::<_, std::convert::Infallible>(answer(&u, &s, &f, request.uri().path())) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(hyper_util::rt::TokioExecutor::new())
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeIssuer { url, state, jwks_fetches }
    }

    fn publish(&self, keys: Vec<Value>) {
        self.state.lock().unwrap().published = keys;
    }

    fn issue(&self, id_token: String) {
        self.state.lock().unwrap().next_id_token = Some(id_token);
    }

    fn answer_userinfo(&self, claims: Value) {
        self.state.lock().unwrap().userinfo = Some(claims);
    }
}

fn answer(issuer: &str, state: &Mutex<IssuerState>, fetches: &AtomicUsize, path: &str) -> Response<Body> {
    let body = match path {
        "/.well-known/openid-configuration" => json!({
            "issuer": issuer,
            "authorization_endpoint": format!("{issuer}/authorize"),
            "token_endpoint": format!("{issuer}/token"),
            "jwks_uri": format!("{issuer}/jwks"),
            "userinfo_endpoint": format!("{issuer}/userinfo"),
            "response_types_supported": ["code"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256", "HS256", "none"],
        }),
        "/jwks" => {
            fetches.fetch_add(1, Ordering::SeqCst);
            json!({ "keys": state.lock().unwrap().published })
        }
        "/userinfo" => match state.lock().unwrap().userinfo.clone() {
            Some(claims) => claims,
            None => return Response::builder().status(404).body(full("")).unwrap(),
        },
        "/token" => json!({
            "access_token": ACCESS_TOKEN,
            "token_type": "Bearer",
            "expires_in": 300,
            "refresh_token": "fake-refresh-token",
            "id_token": state.lock().unwrap().next_id_token.take().unwrap_or_default(),
        }),
        _ => return Response::builder().status(404).body(full("")).unwrap(),
    };
    Response::builder().header("content-type", "application/json").body(full(body.to_string())).unwrap()
}

struct Harness {
    issuer: FakeIssuer,
    key: SigningKey,
    bff: Bff,
}

impl Harness {
    async fn start() -> Harness {
        Harness::start_with_oidc("").await
    }

    /// With extra `[oidc]` keys.
    async fn start_with_oidc(oidc_toml: &str) -> Harness {
        let key = SigningKey::generate("key-1");
        let issuer = FakeIssuer::start(vec![key.jwk()]).await;
        let bff = Bff::start_with(BffOptions {
            oidc_toml: oidc_toml.into(),
            issuer: Some(issuer.url.clone()),
            client: Some(RegisteredClient {
                client_id: CLIENT_ID.into(),
                client_secret: CLIENT_SECRET.into(),
                key: None,
            }),
            ..Default::default()
        })
        .await;
        Harness { issuer, key, bff }
    }

    /// Starts a login and returns (state, nonce) as sent to the issuer.
    async fn begin(&self, browser: &mut Browser) -> (String, String) {
        let reply = browser.get(&self.bff.url("/bff/login"), &[]).await;
        let params: HashMap<String, String> =
            url::Url::parse(reply.location().unwrap()).unwrap().query_pairs().into_owned().collect();
        (params["state"].clone(), params["nonce"].clone())
    }

    fn claims(&self, nonce: &str) -> Value {
        let now = self.bff.clock_now();
        json!({
            "iss": self.issuer.url, "sub": "alice", "aud": CLIENT_ID, "exp": now + 300, "iat": now,
            "nonce": nonce, "email": "alice@example.com",
        })
    }

    fn header(&self) -> Value {
        json!({ "alg": "RS256", "typ": "JWT", "kid": self.key.kid })
    }

    /// Runs the callback with `id_token` as the provider's answer; returns the callback reply.
    async fn finish(&self, browser: &mut Browser, state: &str, id_token: String) -> Reply {
        self.issuer.issue(id_token);
        browser.get(&self.bff.url(&format!("/bff/callback?code=the-code&state={state}")), &[]).await
    }

    /// One complete login with claims and header shaped by `shape`; returns the callback reply.
    async fn login_with(&self, shape: impl FnOnce(&mut Value, &mut Value, &str)) -> (Reply, Browser) {
        let mut browser = Browser::new();
        let (state, nonce) = self.begin(&mut browser).await;
        let mut header = self.header();
        let mut claims = self.claims(&nonce);
        shape(&mut header, &mut claims, &nonce);
        let token = self.key.sign(&header, &claims);
        let reply = self.finish(&mut browser, &state, token).await;
        (reply, browser)
    }
}

async fn assert_refused(h: &Harness, reply: &Reply, browser: &Browser, case: &str) {
    assert_eq!(reply.status, 400, "{case}: {}", reply.text());
    assert!(reply.text().contains("failed verification"), "{case}: {}", reply.text());
    assert!(session_cookie(browser).is_none(), "{case}: a session cookie was set");
    assert_eq!(h.bff.session_count().await, 0, "{case}: a session was stored");
}

#[tokio::test]
async fn a_well_formed_id_token_signs_in() {
    let h = Harness::start().await;
    let (reply, mut browser) = h.login_with(|_, _, _| {}).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(h.bff.user(&mut browser).await.json()["claims"]["email"], "alice@example.com");
}

/// Issue 26, item 6: a provider without a revocation endpoint (this one) made logout skip the
/// revocation silently. Operators now see it: a WARN at start-up naming the provider, and
/// `cloakroom_provider_revocation{provider="default"} 0`; the real provider of the other tests
/// shows 1. Logout still ends the session here.
#[tokio::test]
async fn a_provider_without_revocation_is_named_at_start_up_and_in_the_metrics() {
    let h = Harness::start().await;
    let (_, mut browser) = h.login_with(|_, _, _| {}).await;
    let metrics = http_call(Method::GET, &format!("{}/metrics", h.bff.admin), None, &[]).await.text();
    assert!(metrics.contains("cloakroom_provider_revocation{provider=\"default\"} 0"), "{metrics}");
    let issuer = &h.issuer.url;
    assert!(
        logs()
            .lines()
            .any(|l| l.contains("WARN") && l.contains("no revocation endpoint") && l.contains(issuer.as_str())),
        "no WARN naming the provider"
    );
    let logout = browser.request(Method::POST, &h.bff.url("/bff/logout"), None, &[CSRF]).await;
    assert_eq!(logout.status, 200);
    assert_eq!(h.bff.user(&mut browser).await.status, 401, "the session outlived the logout");

    let revoking = Bff::start().await;
    let metrics = http_call(Method::GET, &format!("{}/metrics", revoking.admin), None, &[]).await.text();
    assert!(metrics.contains("cloakroom_provider_revocation{provider=\"default\"} 1"), "{metrics}");
}

/// A userinfo answer naming another user than the ID token (issue 15): the sign-in is refused
/// like a bad ID token, nothing of that answer is kept and no session is made. The control: the
/// same user's answer signs in with its claims joined.
#[tokio::test]
async fn a_userinfo_answer_for_another_user_refuses_the_sign_in() {
    let h = Harness::start_with_oidc("userinfo = true\n").await;
    h.issuer.answer_userinfo(json!({"sub": "mallory", "groups": ["admins"]}));
    let (reply, browser) = h.login_with(|_, _, _| {}).await;
    assert_refused(&h, &reply, &browser, "userinfo for another user").await;
    h.issuer.answer_userinfo(json!({"sub": "alice", "groups": ["staff"]}));
    let (reply, mut browser) = h.login_with(|_, _, _| {}).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let user = h.bff.user(&mut browser).await.json();
    assert_eq!((user["claims"]["sub"].as_str(), user["claims"]["groups"].clone()), (Some("alice"), json!(["staff"])));
}

#[tokio::test]
async fn id_tokens_failing_a_claim_check_are_refused() {
    let h = Harness::start().await;
    let now = h.bff.clock_now() as i64;
    type Shape = Box<dyn FnOnce(&mut Value, &mut Value, &str)>;
    let cases: Vec<(&str, Shape)> = vec![
        ("wrong nonce", Box::new(|_, c, _| c["nonce"] = json!("another-nonce"))),
        ("no nonce", Box::new(|_, c, _| _ = c.as_object_mut().unwrap().remove("nonce"))),
        ("wrong issuer", Box::new(|_, c, _| c["iss"] = json!("https://evil.example"))),
        ("wrong audience", Box::new(|_, c, _| c["aud"] = json!("someone-else"))),
        ("extra untrusted audience, no azp", Box::new(|_, c, _| c["aud"] = json!([CLIENT_ID, "someone-else"]))),
        ("azp names another client", Box::new(|_, c, _| c["azp"] = json!("someone-else"))),
        ("expired", Box::new(move |_, c, _| c["exp"] = json!(now - 10))),
        ("issued in the future", Box::new(move |_, c, _| c["iat"] = json!(now + 3600))),
        ("at_hash of another token", Box::new(|_, c, _| c["at_hash"] = json!("AAAAAAAAAAAAAAAAAAAAAA"))),
    ];
    for (case, shape) in cases {
        let (reply, browser) = h.login_with(shape).await;
        assert_refused(&h, &reply, &browser, case).await;
    }
}

#[tokio::test]
async fn id_tokens_with_a_bad_signature_or_algorithm_are_refused() {
    let h = Harness::start().await;
    let unsigned = |h: &Harness, nonce: &str| {
        let header = json!({ "alg": "none", "typ": "JWT" });
        format!("{}.{}.", B64.encode(header.to_string()), B64.encode(h.claims(nonce).to_string()))
    };
    let hmac = |h: &Harness, nonce: &str, secret: &[u8]| {
        let header = json!({ "alg": "HS256", "typ": "JWT", "kid": h.key.kid });
        let input = format!("{}.{}", B64.encode(header.to_string()), B64.encode(h.claims(nonce).to_string()));
        let key = aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, secret);
        format!("{input}.{}", B64.encode(aws_lc_rs::hmac::sign(&key, input.as_bytes())))
    };
    let tampered = |h: &Harness, nonce: &str| {
        let token = h.key.sign(&h.header(), &h.claims(nonce));
        let mut parts: Vec<String> = token.split('.').map(String::from).collect();
        let mut claims = h.claims(nonce);
        claims["sub"] = json!("mallory");
        parts[1] = B64.encode(claims.to_string());
        parts.join(".")
    };
    let public_key_der = h.key.pair.public_key().as_ref().to_vec();
    type MakeToken = Box<dyn Fn(&Harness, &str) -> String>;
    let cases: Vec<(&str, MakeToken)> = vec![
        ("alg none", Box::new(unsigned)),
        ("HMAC with the client secret", Box::new(move |h, n| hmac(h, n, CLIENT_SECRET.as_bytes()))),
        ("HMAC with the provider's public key", Box::new(move |h, n| hmac(h, n, &public_key_der))),
        ("payload changed after signing", Box::new(tampered)),
        (
            "signed by an unpublished key",
            Box::new(|h, n| SigningKey::generate("key-1").sign(&h.header(), &h.claims(n))),
        ),
    ];
    for (case, make) in cases {
        let mut browser = Browser::new();
        let (state, nonce) = h.begin(&mut browser).await;
        let reply = h.finish(&mut browser, &state, make(&h, &nonce)).await;
        assert_refused(&h, &reply, &browser, case).await;
    }
}

#[tokio::test]
async fn an_unknown_key_id_triggers_one_jwks_refetch() {
    let h = Harness::start().await;
    let fetches_at_start = h.issuer.jwks_fetches.load(Ordering::SeqCst);

    // The provider rotates to a new key and publishes it: one refetch, and the login succeeds.
    let rotated = SigningKey::generate("key-2");
    h.issuer.publish(vec![h.key.jwk(), rotated.jwk()]);
    let mut browser = Browser::new();
    let (state, nonce) = h.begin(&mut browser).await;
    let header = json!({ "alg": "RS256", "typ": "JWT", "kid": "key-2" });
    let reply = h.finish(&mut browser, &state, rotated.sign(&header, &h.claims(&nonce))).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(h.issuer.jwks_fetches.load(Ordering::SeqCst), fetches_at_start + 1);

    // A key id nobody publishes: refused, without a refetch storm (rate-limited).
    let stranger = SigningKey::generate("key-3");
    for _ in 0..3 {
        let mut browser = Browser::new();
        let (state, nonce) = h.begin(&mut browser).await;
        let header = json!({ "alg": "RS256", "typ": "JWT", "kid": "key-3" });
        let reply = h.finish(&mut browser, &state, stranger.sign(&header, &h.claims(&nonce))).await;
        assert_eq!(reply.status, 400, "{}", reply.text());
        assert!(session_cookie(&browser).is_none());
    }
    assert_eq!(h.issuer.jwks_fetches.load(Ordering::SeqCst), fetches_at_start + 1, "refetched on every unknown kid");
}

fn logout_claims(h: &Harness, jti: &str) -> Value {
    let now = h.bff.clock_now();
    json!({
        "iss": h.issuer.url, "aud": CLIENT_ID, "iat": now, "exp": now + 120, "jti": jti, "sub": "alice",
        "events": { "http://schemas.openid.net/event/backchannel-logout": {} },
    })
}

async fn post_logout_token(h: &Harness, token: &str) -> Reply {
    http_call(
        http::Method::POST,
        &h.bff.url("/bff/backchannel-logout"),
        Some(("application/x-www-form-urlencoded", format!("logout_token={token}"))),
        &[],
    )
    .await
}

#[tokio::test]
async fn logout_tokens_failing_any_check_are_refused_and_end_nothing() {
    let h = Harness::start().await;
    let (reply, mut browser) = h.login_with(|_, _, _| {}).await;
    assert_eq!(reply.status, 200);
    let now = h.bff.clock_now() as i64;
    let header = json!({ "alg": "RS256", "typ": "logout+jwt", "kid": h.key.kid });
    type Shape = Box<dyn Fn(&mut Value, &mut Value)>;
    let cases: Vec<(&str, Shape)> = vec![
        ("wrong iss", Box::new(|_, c| c["iss"] = json!("https://evil.example"))),
        ("wrong aud", Box::new(|_, c| c["aud"] = json!("someone-else"))),
        ("no events", Box::new(|_, c| _ = c.as_object_mut().unwrap().remove("events"))),
        ("another event", Box::new(|_, c| c["events"] = json!({ "https://example.com/other": {} }))),
        (
            "event not an object",
            Box::new(|_, c| c["events"] = json!({ "http://schemas.openid.net/event/backchannel-logout": "x" })),
        ),
        ("a nonce", Box::new(|_, c| c["nonce"] = json!("n"))),
        ("neither sid nor sub", Box::new(|_, c| _ = c.as_object_mut().unwrap().remove("sub"))),
        ("no jti", Box::new(|_, c| _ = c.as_object_mut().unwrap().remove("jti"))),
        ("iat in the future", Box::new(move |_, c| c["iat"] = json!(now + 3600))),
        ("iat too old", Box::new(move |_, c| c["iat"] = json!(now - 3600))),
        ("expired", Box::new(move |_, c| c["exp"] = json!(now - 3600))),
        ("typ of another kind", Box::new(|h, _| h["typ"] = json!("at+jwt"))),
        ("unpublished kid", Box::new(|h, _| h["kid"] = json!("key-9"))),
    ];
    for (i, (case, shape)) in cases.into_iter().enumerate() {
        let mut header = header.clone();
        let mut claims = logout_claims(&h, &format!("jti-{i}"));
        shape(&mut header, &mut claims);
        let reply = post_logout_token(&h, &h.key.sign(&header, &claims)).await;
        assert_eq!(reply.status, 400, "{case}: {}", reply.text());
        assert_eq!(reply.json()["error"], "invalid_request", "{case}");
        assert_eq!(h.bff.user(&mut browser).await.status, 200, "{case}: a refused token ended the session");
    }

    // Signed by a key the provider does not publish; and a payload changed after signing.
    let stranger = SigningKey::generate("key-1");
    let reply = post_logout_token(&h, &stranger.sign(&header, &logout_claims(&h, "jti-stranger"))).await;
    assert_eq!(reply.status, 400, "{}", reply.text());
    let signed = h.key.sign(&header, &logout_claims(&h, "jti-tampered"));
    let mut parts: Vec<String> = signed.split('.').map(String::from).collect();
    let mut other = logout_claims(&h, "jti-tampered");
    other["sub"] = json!("bob");
    parts[1] = B64.encode(other.to_string());
    assert_eq!(post_logout_token(&h, &parts.join(".")).await.status, 400);
    assert_eq!(h.bff.user(&mut browser).await.status, 200);
}

#[tokio::test]
async fn a_valid_logout_token_ends_the_users_sessions_once() {
    let h = Harness::start().await;
    let (_, mut first) = h.login_with(|_, _, _| {}).await;
    let (_, mut second) = h.login_with(|_, _, _| {}).await;
    let (_, mut bob) = h.login_with(|_, c, _| c["sub"] = json!("bob")).await;
    let header = json!({ "alg": "RS256", "typ": "logout+jwt", "kid": h.key.kid });
    let token = h.key.sign(&header, &logout_claims(&h, "jti-once"));
    let reply = post_logout_token(&h, &token).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    assert_eq!(reply.header("cache-control"), Some("no-store"));
    assert_eq!(h.bff.user(&mut first).await.status, 401);
    assert_eq!(h.bff.user(&mut second).await.status, 401, "sub-only logout must end all of the user's sessions");
    assert_eq!(h.bff.user(&mut bob).await.status, 200);
    // The same token again is a replay.
    let replay = post_logout_token(&h, &token).await;
    assert_eq!(replay.status, 400);
    assert!(replay.text().contains("jti"), "{}", replay.text());
}

#[tokio::test]
async fn a_refreshed_id_token_updates_the_claims_and_must_name_the_same_user() {
    let h = Harness::start().await;
    let (reply, mut browser) = h.login_with(|_, _, _| {}).await;
    assert_eq!(reply.status, 200);
    assert_eq!(h.bff.user(&mut browser).await.json()["claims"]["email"], "alice@example.com");

    // The provider's next answer (a refresh) carries an ID token with a changed email. Expired:
    // the call waits for that refresh.
    h.bff.clock.advance(310);
    let mut claims = h.claims("unused");
    claims.as_object_mut().unwrap().remove("nonce");
    claims["email"] = json!("alice@new.example");
    h.issuer.issue(h.key.sign(&h.header(), &claims));
    assert_eq!(browser.get(&h.bff.url("/api/x"), &[CSRF]).await.status, 200);
    assert_eq!(h.bff.user(&mut browser).await.json()["claims"]["email"], "alice@new.example");

    // A refreshed ID token about someone else is refused: the old claims stay, and the token
    // is not replaced (the session keeps working on its still-valid token).
    h.bff.clock.advance(280);
    let mut claims = h.claims("unused");
    claims.as_object_mut().unwrap().remove("nonce");
    claims["sub"] = json!("mallory");
    claims["email"] = json!("mallory@example.com");
    h.issuer.issue(h.key.sign(&h.header(), &claims));
    let _ = browser.get(&h.bff.url("/api/x"), &[CSRF]).await;
    // Due but valid: the refresh runs beside the call; wait until it has been refused.
    let started = std::time::Instant::now();
    loop {
        let metrics = http_call(Method::GET, &format!("{}/metrics", h.bff.admin), None, &[]).await.text();
        if metrics.contains("cloakroom_token_refreshes_total{outcome=\"provider_error\"} 1") {
            break;
        }
        assert!(started.elapsed() < std::time::Duration::from_secs(10), "the refresh never came back: {metrics}");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let user = h.bff.user(&mut browser).await.json();
    assert_eq!(user["sub"], "alice");
    assert_eq!(user["claims"]["email"], "alice@new.example");
}
