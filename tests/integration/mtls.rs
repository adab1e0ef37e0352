//! Mutual TLS (RFC 8705, issue 32 item 2) against oidc-provider served over https with the
//! test CA: cloakroom authenticates with its certificate (`tls_client_auth`,
//! `self_signed_tls_client_auth`) at the provider's `mtls_endpoint_aliases` (a listener of
//! their own that asks for certificates, while the issuer's own asks for none: a client that
//! ignored the aliases could not authenticate), its access tokens are bound to that certificate
//! (`cnf.x5t#S256`), and a route presents the same certificate to an API that checks the
//! binding (`tests/provider/mtls-api.mjs`). Sign-in, calls, refresh, userinfo, logout (the
//! revocation reaches the provider); a token used without the certificate or from another is
//! refused by the API; the browser holds no token; FAPI 2.0 runs with mTLS in place of DPoP.

use crate::audit::{Outcome, audit};
use crate::support::*;
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use http::Method;
use serde_json::{Value, json};
use std::time::Duration;

/// The provider over https, with mutual TLS on its alias listener (`MTLS=1`).
fn mtls_provider(more: &[(&str, &str)]) -> ProviderProcess {
    let cert = pki().issue("mtls-provider", false);
    let mut env = vec![
        ("TLS_CERT", cert.cert_file.to_str().unwrap().to_string()),
        ("TLS_KEY", cert.key_file.to_str().unwrap().to_string()),
        ("TLS_CA", pki().ca_file.to_str().unwrap().to_string()),
        ("MTLS", "1".to_string()),
    ];
    env.extend(more.iter().map(|(k, v)| (*k, v.to_string())));
    start_provider(&env.iter().map(|(k, v)| (*k, v.as_str())).collect::<Vec<_>>())
}

/// The TLS keys for the provider and a route: the test CA, and `identity` presented.
fn tls_toml(identity: &IssuedCert) -> String {
    format!(
        "ca_file = {:?}\nclient_cert_file = {:?}\nclient_key_file = {:?}\n",
        pki().ca_file,
        identity.cert_file,
        identity.key_file
    )
}

fn thumbprint(der: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(cloakroom::crypto::sha256(der))
}

/// The API called directly with `token`, presenting `identity` (or no certificate).
async fn call_api(api: &MtlsApi, token: &str, identity: Option<&IssuedCert>) -> (u16, Value) {
    let client = cloakroom::upstream::HttpClient::with_tls(Duration::from_secs(5), pki().client_config(identity));
    let request = http::Request::get(format!("{}/v1/direct", api.origin))
        .header("authorization", format!("Bearer {token}"))
        .body(cloakroom::respond::empty())
        .unwrap();
    let reply = client.send(request, Duration::from_secs(5)).await.expect("the API answers");
    let status = reply.status().as_u16();
    let body = http_body_util::BodyExt::collect(reply.into_body()).await.unwrap().to_bytes();
    (status, serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// The access tokens (JWTs with a confirmation) the provider issued to `client`.
async fn bound_access_tokens(issuer: &str, client: &RegisteredClient) -> Vec<String> {
    tokens_issued(issuer, client)
        .await
        .into_iter()
        .filter(|t| {
            let payload = t.split('.').nth(1).and_then(|p| URL_SAFE_NO_PAD.decode(p).ok());
            let claims: Option<Value> = payload.and_then(|p| serde_json::from_slice(&p).ok());
            claims.is_some_and(|c| c["cnf"]["x5t#S256"].is_string())
        })
        .collect()
}

/// Whether the provider revoked a grant of `client`'s (a logout's revocation reached it).
async fn grant_revoked(issuer: &str, client: &RegisteredClient) -> bool {
    let events = provider_events(issuer).await;
    let grants: Vec<&Value> = (events.iter())
        .filter(|e| e["type"] == "refresh_token.saved" && e["clientId"] == client.client_id.as_str())
        .map(|e| &e["grantId"])
        .collect();
    events.iter().any(|e| e["type"] == "grant.revoked" && grants.contains(&&e["grantId"]))
}

/// cloakroom as a `tls_client_auth` client (a certificate of the test CA, subject `CN=name`)
/// with tokens bound to it, and its `/api/` route going to `api` with the same certificate.
async fn tls_client_auth_bff(provider: &ProviderProcess, api: &MtlsApi, name: &str, oidc: &str) -> (Bff, IssuedCert) {
    let identity = pki().issue(name, true);
    let files = tls_toml(&identity);
    let bff = Bff::start_with(BffOptions {
        issuer: Some(provider.issuer.clone()),
        auth_method: "tls_client_auth",
        client_metadata: Some(json!({
            "tls_client_auth_subject_dn": format!("CN={name}"),
            "tls_client_certificate_bound_access_tokens": true,
        })),
        oidc_toml: format!("{files}certificate_bound_tokens = true\n{oidc}"),
        api_upstream: Some(format!("{}/v1/", api.origin)),
        api_route_toml: files,
        ..Default::default()
    })
    .await;
    (bff, identity)
}

fn config_errors(oidc: &str, routes: &str) -> String {
    let toml = format!(
        "[server]\npublic_url = \"https://app.example\"\n[oidc]\nissuer = \"https://idp.example\"\n\
         client_id = \"c\"\n{oidc}\n{routes}"
    );
    match cloakroom::config::Config::from_toml(&toml, Vec::new()) {
        Ok(_) => String::new(),
        Err(e) => e.to_string(),
    }
}

#[test]
fn mutual_tls_settings_are_refused_when_they_cannot_work_naming_the_key() {
    let identity = pki().issue("config-client", true);
    let other = pki().issue("config-other", true);
    let files = tls_toml(&identity);
    let route =
        |upstream: &str, extra: &str| format!("[[routes]]\nprefix = \"/api/\"\nupstream = \"{upstream}\"\n{extra}");
    let https_route = route("https://api.example/", &files);

    // The certificate is the credential: it must be there, and no secret beside it.
    let error = config_errors("client_auth = \"tls_client_auth\"\nclient_secret = \"s\"", &https_route);
    assert!(error.contains("oidc.client_cert_file") && error.contains("the certificate is the credential"), "{error}");
    assert!(error.contains("oidc.client_secret"), "{error}");
    let error = config_errors("client_auth = \"self_signed_tls_client_auth\"\ncertificate_bound_tokens = true", "");
    assert!(error.contains("oidc.client_cert_file"), "{error}");
    assert!(error.contains("oidc.certificate_bound_tokens") && error.contains("needs the certificate"), "{error}");
    // Two bindings for one token: refused.
    let error = config_errors(
        &format!("client_auth = \"tls_client_auth\"\n{files}certificate_bound_tokens = true\ndpop = true"),
        &https_route,
    );
    assert!(error.contains("oidc.certificate_bound_tokens") && error.contains("choose one"), "{error}");

    // A route carrying the bound tokens presents the same certificate, over https.
    let bound = format!("client_auth = \"tls_client_auth\"\n{files}certificate_bound_tokens = true");
    assert_eq!(config_errors(&bound, &https_route), "");
    let error = config_errors(&bound, &route("https://api.example/", ""));
    assert!(error.contains("routes[0].client_cert_file") && error.contains("present the same one"), "{error}");
    let error = config_errors(&bound, &route("https://api.example/", &tls_toml(&other)));
    assert!(error.contains("routes[0].client_cert_file"), "another certificate: {error}");
    let error = config_errors(&bound, &route("http://api.example/", &files));
    assert!(error.contains("routes[0].upstream") && error.contains("https"), "{error}");
    // A route that sends no token needs no certificate.
    assert_eq!(config_errors(&bound, &route("http://api.example/", "token = \"none\"")), "");
    // Without the binding, the certificate authenticates cloakroom and routes are free.
    assert_eq!(
        config_errors(&format!("client_auth = \"tls_client_auth\"\n{files}"), &route("http://a.example/", "")),
        ""
    );

    // FAPI 2.0 takes mutual TLS as client authentication and as the sender constraint.
    let fapi = format!("profile = \"fapi2\"\n{bound}");
    assert_eq!(config_errors(&fapi, &https_route), "");
    let error =
        config_errors(&format!("profile = \"fapi2\"\nclient_auth = \"tls_client_auth\"\n{files}"), &https_route);
    assert!(error.contains("oidc.dpop") && error.contains("certificate_bound_tokens = true"), "{error}");
}

#[tokio::test]
async fn certificate_bound_tokens_sign_in_call_refresh_and_log_out_over_mutual_tls() {
    let provider = mtls_provider(&[]);
    let api = MtlsApi::start(&provider.issuer);
    let (bff, identity) = tls_client_auth_bff(&provider, &api, "cloakroom-mtls-client", "").await;

    let mut browser = Browser::new();
    let signed_in = bff.login(&mut browser, "alice", "/").await;
    assert_eq!(signed_in.status, 200, "{}", signed_in.text());
    let called = browser.get(&bff.url("/api/items"), &[CSRF]).await;
    assert_eq!(called.status, 200, "{}", called.text());
    assert_eq!(
        (called.json()["sub"].clone(), called.json()["x5t"].clone()),
        (json!("alice"), json!(thumbprint(&identity.der)))
    );

    // A refresh (at the token endpoint's alias, with the certificate) keeps the binding.
    bff.clock.advance(290);
    assert_eq!(browser.get(&bff.url("/api/items"), &[CSRF]).await.status, 200);
    assert_eq!(grants_once(&provider.issuer, &bff.client, "refresh_token", 1).await, 1, "no refresh");
    let after = browser.get(&bff.url("/api/items"), &[CSRF]).await;
    assert_eq!((after.status, after.json()["x5t"].clone()), (200, json!(thumbprint(&identity.der))));

    // The tokens, taken away: without the certificate, or from another, the API refuses them.
    let tokens = bound_access_tokens(&provider.issuer, &bff.client).await;
    assert_eq!(tokens.len(), 2, "the sign-in's and the refresh's");
    let thief = pki().issue("thief", true);
    for token in &tokens {
        let (status, body) = call_api(&api, token, None).await;
        assert_eq!((status, body["reason"].as_str()), (401, Some("no client certificate on this connection")));
        let (status, body) = call_api(&api, token, Some(&thief)).await;
        assert_eq!((status, body["reason"].as_str()), (401, Some("the token is bound to another certificate")));
    }
    // …and takes the latest with cloakroom's own (the refusals above are the binding's).
    assert_eq!(call_api(&api, tokens.last().unwrap(), Some(&identity)).await.0, 200);
    let verdicts: Vec<Value> = api.seen().await.iter().map(|r| r["verdict"].clone()).collect();
    assert_eq!(verdicts.iter().filter(|v| **v == "ok").count(), 4, "{verdicts:?}");

    // Logout: the revocation goes to the alias too, and reaches the provider.
    let out = browser.request(Method::POST, &bff.url("/bff/logout"), None, &[CSRF]).await;
    assert_eq!(out.status, 200, "{}", out.text());
    assert_eq!(browser.get(&bff.url("/api/items"), &[CSRF]).await.status, 401);
    let mut revoked = false;
    for _ in 0..100 {
        revoked = grant_revoked(&provider.issuer, &bff.client).await;
        if revoked {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(revoked, "the logout's revocation did not reach the provider");
    assert_no_token_in(&browser.received, &provider.issuer, &bff.client).await;
}

#[tokio::test]
async fn userinfo_goes_to_its_mutual_tls_alias_with_the_bound_token() {
    let provider = mtls_provider(&[("USERINFO_CLAIMS", "1")]);
    let api = MtlsApi::start(&provider.issuer);
    let (bff, _) = tls_client_auth_bff(&provider, &api, "cloakroom-userinfo-client", "userinfo = true").await;
    let mut browser = Browser::new();
    let signed_in = bff.login(&mut browser, "alice", "/").await;
    assert_eq!(signed_in.status, 200, "{}", signed_in.text());
    let user = bff.user(&mut browser).await.json();
    assert_eq!(user["claims"]["name"], "Alice Example", "the name is only at userinfo here: {user}");
    assert_eq!(userinfo_answers(&provider.issuer, &bff.client).await, 1);
}

/// A self-signed certificate and its key (P-256), with the JWK registering it (RFC 8705 §2.2:
/// the provider matches the certificate against the client's keys).
fn self_signed(name: &str) -> (IssuedCert, Value) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    params.distinguished_name.push(rcgen::DnType::CommonName, name);
    let cert = params.self_signed(&key).unwrap();
    let point = key.public_key_raw();
    let jwk = json!({
        "kty": "EC", "crv": "P-256", "use": "sig", "kid": name,
        "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
        "y": URL_SAFE_NO_PAD.encode(&point[33..65]),
        "x5c": [STANDARD.encode(cert.der())],
    });
    let cert_file = pki().dir.join(format!("{name}.pem"));
    let key_file = pki().dir.join(format!("{name}.key"));
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();
    (IssuedCert { cert_file, key_file, der: cert.der().to_vec() }, jwk)
}

#[tokio::test]
async fn fapi2_with_a_self_signed_certificate_instead_of_dpop() {
    let provider = mtls_provider(&[("FAPI", "1")]);
    let api = MtlsApi::start(&provider.issuer);
    let (identity, jwk) = self_signed("cloakroom-self-signed");
    let files = tls_toml(&identity);
    let bff = Bff::start_with(BffOptions {
        issuer: Some(provider.issuer.clone()),
        auth_method: "self_signed_tls_client_auth",
        client_metadata: Some(json!({
            "jwks": { "keys": [jwk] },
            "tls_client_certificate_bound_access_tokens": true,
            "id_token_signed_response_alg": "ES256",
        })),
        oidc_toml: format!("{files}certificate_bound_tokens = true\nprofile = \"fapi2\""),
        api_upstream: Some(format!("{}/v1/", api.origin)),
        api_route_toml: files,
        ..Default::default()
    })
    .await;

    // The sign-in is pushed (at the PAR alias, authenticated by the certificate).
    let mut browser = Browser::new();
    let start = browser.get(&bff.url("/bff/login"), &[]).await;
    let authorize = url::Url::parse(start.location().unwrap()).unwrap();
    assert!(authorize.query_pairs().any(|(k, _)| k == "request_uri"), "{authorize}");
    let mut browser = Browser::new();
    let signed_in = bff.login(&mut browser, "alice", "/").await;
    assert_eq!(signed_in.status, 200, "{}", signed_in.text());
    let called = browser.get(&bff.url("/api/items"), &[CSRF]).await;
    assert_eq!((called.status, called.json()["x5t"].clone()), (200, json!(thumbprint(&identity.der))));
    bff.clock.advance(290);
    assert_eq!(browser.get(&bff.url("/api/items"), &[CSRF]).await.status, 200);
    assert_eq!(grants_once(&provider.issuer, &bff.client, "refresh_token", 1).await, 1, "no refresh");
    assert_eq!(browser.get(&bff.url("/api/items"), &[CSRF]).await.status, 200);
    let stolen = bound_access_tokens(&provider.issuer, &bff.client).await;
    let (status, _) = call_api(&api, stolen.last().unwrap(), Some(&pki().issue("fapi-thief", true))).await;
    assert_eq!(status, 401, "a token from another certificate");

    let report = audit(&bff.origin, None).await;
    assert_eq!(report.outcome("deployment.profile"), Some(Outcome::Pass), "{}", report.stdout);
    assert_eq!(report.outcome("fapi2.pushed"), Some(Outcome::Pass), "{}", report.stdout);
    let out = browser.request(Method::POST, &bff.url("/bff/logout"), None, &[CSRF]).await;
    assert_eq!(out.status, 200, "{}", out.text());
    assert_eq!(browser.get(&bff.url("/api/items"), &[CSRF]).await.status, 401);
    assert_no_token_in(&browser.received, &provider.issuer, &bff.client).await;
}
