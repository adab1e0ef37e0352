//! Identity for upstreams that take no OAuth token (issue 30, item 2): the user's claims as
//! headers (`X-Auth-Request-*` by default), a signed assertion verified with a standard JOSE
//! library against the JWKS cloakroom publishes, and no header of those names from a client
//! reaching any upstream, signed in or not.

use crate::support::*;
use http::Method;
use serde_json::Value;

const SPOOFED: [(&str, &str); 4] = [
    ("x-auth-request-user", "admin"),
    ("x-auth-request-email", "root@evil.example"),
    ("x-cloakroom-assertion", "eyJhbGciOiJub25lIn0.eyJzdWIiOiJhZG1pbiJ9."),
    ("x-user-id", "admin"),
];

async fn identity_bff() -> Bff {
    Bff::start_with(BffOptions {
        extra_routes: "[[routes]]\nprefix = \"/id/\"\nupstream = \"{upstream}/id/\"\n[routes.identity]\nassertion = true\n\
                       [[routes]]\nprefix = \"/only-id/\"\nupstream = \"{upstream}/only-id/\"\ntoken = \"user-or-none\"\n\
                       [routes.identity]\nheaders = { \"X-User-Id\" = \"sub\", \"X-Name\" = \"name\" }\nbearer = false\n\
                       [[routes]]\nprefix = \"/plain/\"\nupstream = \"{upstream}/plain/\"\ntoken = \"none\"\n"
            .into(),
        ..Default::default()
    })
    .await
}

async fn verify(bff: &Bff, audience: &str, jwt: &str) -> (bool, Value) {
    let output = tokio::process::Command::new("node")
        .arg("verify-assertion.mjs")
        .args([&bff.url("/bff/jwks.json"), &bff.origin, audience, jwt])
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/provider"))
        .output()
        .await
        .expect("node runs");
    (output.status.success(), serde_json::from_slice(&output.stdout).unwrap_or(Value::Null))
}

fn header<'a>(recorded: &'a Recorded, name: &str) -> Option<&'a str> {
    recorded.headers.get(name).map(|v| v.to_str().unwrap())
}

#[tokio::test]
async fn an_upstream_learns_who_the_user_is_from_headers_and_an_assertion_it_can_verify_and_never_from_the_client() {
    let bff = identity_bff().await;
    let mut browser = Browser::new();
    assert_eq!(bff.login(&mut browser, "alice", "/").await.status, 200);
    let spoofing: Vec<(&str, &str)> = SPOOFED.iter().copied().chain([CSRF]).collect();

    let reply = browser.get(&bff.url("/id/me"), &spoofing).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = bff.upstream.requests().pop().unwrap();
    assert_eq!(header(&seen, "x-auth-request-user"), Some("alice"));
    assert_eq!(header(&seen, "x-auth-request-email"), Some("alice@example.com"));
    assert_eq!(header(&seen, "x-auth-request-preferred-username"), Some(""), "a claim alice has not: empty");
    assert_eq!(header(&seen, "x-auth-request-groups"), Some("staff,admins"));
    assert_eq!(header(&seen, "x-user-id"), None, "another route's name, spoofed: removed");
    assert!(header(&seen, "authorization").unwrap().starts_with("Bearer "), "the token goes beside the identity");
    let assertion = header(&seen, "x-cloakroom-assertion").unwrap().to_string();
    assert_ne!(assertion, SPOOFED[2].1);

    // A standard JOSE library verifies it against the published keys, for this route's upstream.
    let audience = format!("http://{}/id/", bff.upstream.addr);
    let (ok, verified) = verify(&bff, &audience, &assertion).await;
    assert!(ok, "{verified}");
    let payload = &verified["payload"];
    assert_eq!((payload["sub"].as_str(), payload["email"].as_str()), (Some("alice"), Some("alice@example.com")));
    assert_eq!(payload["exp"].as_u64().unwrap() - payload["iat"].as_u64().unwrap(), 60);
    assert_eq!(verified["header"]["alg"], "EdDSA");
    // Another audience, a forged token, a changed payload: refused.
    assert!(!verify(&bff, "http://other.internal/", &assertion).await.0);
    assert!(!verify(&bff, &audience, SPOOFED[2].1).await.0);
    let parts: Vec<&str> = assertion.split('.').collect();
    let forged_payload = {
        use base64::Engine;
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(payload.to_string().replace("alice", "admin1"))
    };
    assert!(!verify(&bff, &audience, &format!("{}.{forged_payload}.{}", parts[0], parts[2])).await.0);
    // The JWKS is public, and holds no private part.
    let jwks = http_call(Method::GET, &bff.url("/bff/jwks.json"), None, &[]).await;
    assert_eq!(jwks.header("content-type"), Some("application/jwk-set+json"));
    assert!(jwks.json()["keys"].as_array().unwrap().iter().all(|k| k.get("d").is_none()));

    // Identity instead of the token: no Authorization at all, the route's own names.
    let reply = browser.get(&bff.url("/only-id/me"), &spoofing).await;
    assert_eq!(reply.status, 200, "{}", reply.text());
    let seen = bff.upstream.requests().pop().unwrap();
    assert_eq!(header(&seen, "authorization"), None);
    assert_eq!((header(&seen, "x-user-id"), header(&seen, "x-name")), (Some("alice"), Some("Alice%20Example")));
    for (name, _) in &SPOOFED[..3] {
        assert_eq!(header(&seen, name), None, "{name} reached the upstream");
    }

    // Not signed in, on that same route (it lets anonymous calls through), and on a route
    // with no identity at all: no spoofed name gets through.
    let mut stranger = Browser::new();
    for path in ["/only-id/me", "/plain/me"] {
        let reply = stranger.get(&bff.url(path), &spoofing).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        let seen = bff.upstream.requests().pop().unwrap();
        for (name, _) in SPOOFED {
            assert!(header(&seen, name).is_none_or(str::is_empty), "{path}: {name} reached the upstream");
        }
    }
    // Nothing of it reaches the browser.
    let tokens = tokens_issued(&bff.issuer, &bff.client).await;
    let received = String::from_utf8_lossy(&browser.received).to_string();
    assert!(!received.contains(&assertion));
    assert!(tokens.iter().all(|t| !received.contains(t.as_str())));
}

#[test]
fn a_route_whose_identity_cannot_be_sent_safely_is_refused_by_name() {
    for (route, key, why) in [
        ("token = \"none\"\n[routes.identity]\n", "routes[0].identity", "signed-in user"),
        (
            "[routes.identity]\nheaders = { \"Authorization\" = \"sub\" }\n",
            "routes[0].identity.headers",
            "choose another name",
        ),
        (
            "[routes.identity]\nheaders = { \"X-Forwarded-User\" = \"sub\" }\n",
            "routes[0].identity.headers",
            "choose another name",
        ),
        (
            "[routes.identity]\nheaders = { \"Bad Name\" = \"sub\" }\n",
            "routes[0].identity.headers",
            "not an HTTP header name",
        ),
        ("[routes.identity]\nheaders = { \"X-A\" = \"\" }\n", "routes[0].identity.headers", "must name a claim"),
        (
            "[routes.identity]\nheaders = { \"X-A\" = \"a\", \"x-a\" = \"b\" }\n",
            "routes[0].identity.headers",
            "named twice",
        ),
        ("[routes.identity]\naudience = \"x\"\n", "routes[0].identity.audience", "set assertion = true"),
        ("[routes.identity]\nheaders = {}\nbearer = false\n", "routes[0].identity", "sends no identity"),
        ("[routes.identity]\nheaders = {}\n", "routes[0].identity", "sends no identity"),
    ] {
        let error = route_config_error(route);
        assert!(error.contains(key) && error.contains(why), "{route}: {error}");
    }
}
