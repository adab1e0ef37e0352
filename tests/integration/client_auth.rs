//! `private_key_jwt` (RFC 7523) against the real `oidc-provider`: the client registers only a
//! public key, and cloakroom signs in, refreshes, uses the client-credentials grant and revokes
//! with signed assertions and no secret at all.

use crate::support::*;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{self, EcdsaKeyPair, Ed25519KeyPair, KeyPair, RsaKeyPair};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::Method;
use serde_json::json;

fn pem(der: &[u8]) -> String {
    format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", STANDARD.encode(der))
}

fn b64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// A fresh key of the kind `alg` needs, as PEM plus its public JWK.
pub fn generate_key(alg: &'static str, kid: &str) -> TestClientKey {
    let rng = SystemRandom::new();
    let (pem, jwk) = match alg {
        "EdDSA" => {
            let pkcs8 = Ed25519KeyPair::generate_pkcs8v1(&rng).unwrap();
            let public = Ed25519KeyPair::from_pkcs8(pkcs8.as_ref()).unwrap().public_key().as_ref().to_vec();
            (pem(pkcs8.as_ref()), json!({"kty": "OKP", "crv": "Ed25519", "x": b64(&public)}))
        }
        "ES256" => {
            let pkcs8 = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
            let pair = EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref()).unwrap();
            let point = pair.public_key().as_ref().to_vec(); // 0x04 || x || y
            (pem(pkcs8.as_ref()), json!({"kty": "EC", "crv": "P-256", "x": b64(&point[1..33]), "y": b64(&point[33..])}))
        }
        _ => {
            let pair = RsaKeyPair::generate(aws_lc_rs::rsa::KeySize::Rsa2048).unwrap();
            let der = aws_lc_rs::encoding::AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair).unwrap();
            let public = pair.public_key();
            let jwk = json!({
                "kty": "RSA",
                "n": b64(public.modulus().big_endian_without_leading_zero()),
                "e": b64(public.exponent().big_endian_without_leading_zero()),
            });
            (pem(der.as_ref()), jwk)
        }
    };
    let mut jwk = jwk;
    jwk["kid"] = kid.into();
    jwk["use"] = "sig".into();
    TestClientKey { pem, jwk, alg }
}

#[tokio::test]
async fn private_key_jwt_signs_in_refreshes_and_revokes_without_a_secret() {
    let key = generate_key("RS256", "rsa-1");
    let bff = Bff::start_with(BffOptions { client_key: Some(key), ..Default::default() }).await;
    assert!(bff.client.client_secret.is_empty(), "the provider issued no secret to this client");
    let mut browser = Browser::new();
    assert_eq!(bff.login(&mut browser, "alice", "/").await.status, 200);
    assert_eq!(bff.user(&mut browser).await.json()["sub"], "alice");
    assert_eq!(grants(&bff.issuer, &bff.client, "authorization_code").await, 1);

    // A refresh authenticates the same way.
    bff.clock.advance(310); // expired: this call waits for the refresh
    let call = browser.request(Method::GET, &bff.url("/api/data"), None, &[CSRF]).await;
    assert_eq!(call.status, 200, "{}", call.text());
    assert_eq!(refreshes_granted(&bff.issuer, &bff.client).await, 1);

    // Logout revokes the refresh token, authenticated with an assertion too.
    let refresh_token = refresh_tokens_issued(&bff.issuer, &bff.client).await.pop().expect("a refresh token");
    assert!(introspect(&bff.issuer, &bff.client, &refresh_token).await);
    let logout = browser.request(Method::POST, &bff.url("/bff/logout"), None, &[CSRF]).await;
    assert_eq!(logout.status, 200);
    assert!(!introspect(&bff.issuer, &bff.client, &refresh_token).await, "the revocation was accepted");
}

#[tokio::test]
async fn every_key_type_and_the_token_endpoint_audience_work() {
    for (alg, audience) in [("ES256", "issuer"), ("EdDSA", "token_endpoint"), ("PS256", "issuer")] {
        let key = generate_key(alg, &format!("{alg}-1"));
        let bff = Bff::start_with(BffOptions {
            client_key: Some(key),
            oidc_toml: format!("client_assertion_audience = \"{audience}\""),
            extra_routes: "[[routes]]\nprefix = \"/svc/\"\nupstream = \"{upstream}/svc/\"\ntoken = \"client\"\n".into(),
            ..Default::default()
        })
        .await;
        let mut browser = Browser::new();
        assert_eq!(bff.login(&mut browser, "bob", "/").await.status, 200, "{alg} sign-in");
        // The client-credentials grant authenticates with an assertion as well.
        let call = browser.request(Method::GET, &bff.url("/svc/x"), None, &[CSRF]).await;
        assert_eq!(call.status, 200, "{alg}: {}", call.text());
        assert_eq!(grants(&bff.issuer, &bff.client, "client_credentials").await, 1, "{alg}");
    }
}

#[tokio::test]
async fn a_key_the_provider_does_not_know_signs_nobody_in_and_says_whose_fault_it_is() {
    // Registered with one key; cloakroom holds another of the same kind under the same kid.
    let bff = Bff::start_with(BffOptions {
        client_key: Some(generate_key("ES256", "k1")),
        configured_key: Some(generate_key("ES256", "k1")),
        ..Default::default()
    })
    .await;
    let mut browser = Browser::new();
    // The first request that authenticates the client is the pushed authorization request.
    let page = browser.get(&bff.url("/bff/login?returnUrl=%2F"), &[]).await;
    assert!(page.location().is_none(), "the browser was sent on");
    assert_eq!(page.status, 502, "a server-side misconfiguration, not the browser's fault");
    assert!(page.header("content-type").unwrap().starts_with("text/html"));
    assert!(page.text().contains("configuration problem"), "{}", page.text());
    assert!(session_cookie(&browser).is_none());
    assert_eq!(bff.session_count().await, 0);
    assert_eq!(grants(&bff.issuer, &bff.client, "authorization_code").await, 0);
    assert!(logs().lines().any(|l| l.contains("ERROR") && l.contains("client authentication")));
}
