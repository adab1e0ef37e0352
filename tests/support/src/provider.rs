//! The real OpenID provider (npm `oidc-provider`), one process per test binary or per special
//! configuration, and the test-only endpoints it offers (client registration, events, outages).

use super::*;

pub struct ProviderProcess {
    pub issuer: String,
    port: u16,
    _child: Mutex<Child>,
}

impl ProviderProcess {
    /// The port the provider listens on (differs from the issuer's when behind a gate).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Sends a signal to the provider process (`STOP` freezes it mid-session, `CONT` resumes).
    pub fn signal(&self, signal: &str) {
        let pid = self._child.lock().unwrap().id().to_string();
        let status = Command::new("kill").args([&format!("-{signal}"), &pid]).status().unwrap();
        assert!(status.success(), "kill -{signal} {pid}");
    }
}

static PROVIDER: OnceLock<ProviderProcess> = OnceLock::new();

/// The shared provider (default settings), started on first use.
pub fn provider() -> &'static ProviderProcess {
    PROVIDER.get_or_init(|| start_provider(&[]))
}

/// A provider of its own, for tests that need special settings (e.g. short token lifetimes).
pub fn start_provider(env: &[(&str, &str)]) -> ProviderProcess {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../provider");
    assert!(
        std::path::Path::new(dir).join("node_modules/oidc-provider").exists(),
        "the test provider is not installed: run `npm ci` in tests/provider (./scripts/test does it)"
    );
    let mut command = Command::new("node");
    command.arg("server.mjs").current_dir(dir).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::null());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command.spawn().expect("node runs");
    // The provider exits when its stdin closes, i.e. when this test process ends.
    let stdin = child.stdin.take().expect("piped stdin");
    std::mem::forget(stdin);
    let stdout = child.stdout.take().expect("piped stdout");
    let mut reader = BufReader::new(stdout);
    let mut line = String::new();
    reader.read_line(&mut line).expect("the provider prints its issuer");
    // Keep the pipe open: a closed stdout would kill the provider at its next write (EPIPE).
    std::mem::forget(reader);
    let parsed: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("provider said {line:?}: {e}"));
    ProviderProcess {
        issuer: parsed["issuer"].as_str().unwrap().to_string(),
        port: parsed["port"].as_u64().unwrap() as u16,
        _child: Mutex::new(child),
    }
}

#[derive(Debug, Clone, Default)]
pub struct RegisteredClient {
    pub client_id: String,
    /// Empty for a `private_key_jwt` client.
    pub client_secret: String,
    /// A `private_key_jwt` client's key (the provider holds its public half).
    pub key: Option<Arc<cloakroom::oidc::ClientKey>>,
}

/// A private key for `private_key_jwt`, generated at test time: PEM for cloakroom's config, JWK
/// (with `kid`) for the provider's registration.
#[derive(Clone)]
pub struct TestClientKey {
    pub pem: String,
    pub jwk: Value,
    pub alg: &'static str,
}

/// Dynamic client registration (RFC 7591): every test owns its client and redirect URI.
pub async fn register_client(issuer: &str, origin: &str, auth_method: &str, refresh: bool) -> RegisteredClient {
    register_client_with_key(issuer, origin, auth_method, refresh, None).await
}

pub async fn register_client_with_key(
    issuer: &str,
    origin: &str,
    auth_method: &str,
    refresh: bool,
    key: Option<&TestClientKey>,
) -> RegisteredClient {
    register_client_returning_to(issuer, origin, auth_method, refresh, key, None).await
}

/// [`register_client_with_key`], with `post_logout` allowed as a post-logout redirect beside
/// the origin's root (the SPA on another origin).
pub async fn register_client_returning_to(
    issuer: &str,
    origin: &str,
    auth_method: &str,
    refresh: bool,
    key: Option<&TestClientKey>,
    post_logout: Option<&str>,
) -> RegisteredClient {
    register_client_with_metadata(issuer, origin, auth_method, refresh, key, post_logout, None).await
}

/// [`register_client_returning_to`], with more client metadata (RFC 7591) in the registration.
pub async fn register_client_with_metadata(
    issuer: &str,
    origin: &str,
    auth_method: &str,
    refresh: bool,
    key: Option<&TestClientKey>,
    post_logout: Option<&str>,
    metadata: Option<&Value>,
) -> RegisteredClient {
    let grant_types: &[&str] = if refresh {
        &[
            "authorization_code",
            "refresh_token",
            "client_credentials",
            "urn:ietf:params:oauth:grant-type:token-exchange",
        ]
    } else {
        &["authorization_code", "client_credentials"]
    };
    let mut body = serde_json::json!({
        "redirect_uris": [format!("{origin}/bff/callback")],
        "post_logout_redirect_uris": std::iter::once(format!("{origin}/")).chain(post_logout.map(String::from)).collect::<Vec<_>>(),
        "backchannel_logout_uri": format!("{origin}/bff/backchannel-logout"),
        "backchannel_logout_session_required": true,
        "grant_types": grant_types,
        "response_types": ["code"],
        "token_endpoint_auth_method": auth_method,
    });
    if let Some(key) = key {
        body["jwks"] = serde_json::json!({ "keys": [key.jwk] });
        body["token_endpoint_auth_signing_alg"] = key.alg.into();
    }
    for (name, value) in metadata.and_then(Value::as_object).into_iter().flatten() {
        body[name] = value.clone();
    }
    let response =
        http_call(Method::POST, &format!("{issuer}/reg"), Some(("application/json", body.to_string())), &[]).await;
    assert_eq!(response.status, 201, "registration failed: {}", response.text());
    let json = response.json();
    RegisteredClient {
        client_id: json["client_id"].as_str().unwrap().into(),
        client_secret: json["client_secret"].as_str().unwrap_or_default().into(),
        key: key.map(|k| {
            let kid = k.jwk["kid"].as_str().map(String::from);
            Arc::new(cloakroom::oidc::ClientKey::from_pem(k.pem.as_bytes(), Some(k.alg), kid).unwrap())
        }),
    }
}

/// How a test authenticates as `client` at the provider's own endpoints: a Basic header, or a
/// client assertion in the form.
fn test_client_auth(issuer: &str, client: &RegisteredClient) -> (Vec<(&'static str, String)>, String) {
    use base64::Engine;
    match &client.key {
        Some(key) => {
            let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs();
            let assertion = key.assertion(&client.client_id, issuer, now).unwrap();
            let form = format!(
                "&client_id={}&client_assertion_type=urn%3Aietf%3Aparams%3Aoauth%3Aclient-assertion-type%3Ajwt-bearer&client_assertion={assertion}",
                client.client_id
            );
            (Vec::new(), form)
        }
        None => {
            let basic = base64::engine::general_purpose::STANDARD
                .encode(format!("{}:{}", client.client_id, client.client_secret));
            (vec![("authorization", format!("Basic {basic}"))], String::new())
        }
    }
}

pub async fn provider_events(issuer: &str) -> Vec<Value> {
    http_call(Method::GET, &format!("{issuer}/__test/events"), None, &[])
        .await
        .json()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// The refresh tokens the provider issued to `client`, oldest first.
pub async fn refresh_tokens_issued(issuer: &str, client: &RegisteredClient) -> Vec<String> {
    provider_events(issuer)
        .await
        .iter()
        .filter(|e| e["type"] == "refresh_token.saved" && e["clientId"] == client.client_id.as_str())
        .filter_map(|e| e["token"].as_str().map(String::from))
        .collect()
}

/// Every token value (access, refresh, ID) the provider issued to `client`.
pub async fn tokens_issued(issuer: &str, client: &RegisteredClient) -> Vec<String> {
    provider_events(issuer)
        .await
        .iter()
        .filter(|e| e["type"] == "grant.success" && e["clientId"] == client.client_id.as_str())
        .flat_map(|e| e["tokens"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t.as_str().map(String::from))
        .collect()
}

/// How many times the provider's userinfo endpoint answered `client`.
pub async fn userinfo_answers(issuer: &str, client: &RegisteredClient) -> usize {
    provider_events(issuer)
        .await
        .iter()
        .filter(|e| e["type"] == "userinfo" && e["clientId"] == client.client_id.as_str())
        .count()
}

/// How many refresh-token grants the provider granted to `client`.
pub async fn refreshes_granted(issuer: &str, client: &RegisteredClient) -> usize {
    grants(issuer, client, "refresh_token").await
}

/// How many grants of `grant_type` the provider granted to `client`, once it has granted
/// `expected` (a background refresh lands a little after the call that started it) or after
/// five seconds of waiting for that.
pub async fn grants_once(issuer: &str, client: &RegisteredClient, grant_type: &str, expected: usize) -> usize {
    for _ in 0..100 {
        if grants(issuer, client, grant_type).await == expected {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    grants(issuer, client, grant_type).await
}

/// Fails when any token the provider issued to `client` is in what a browser `received`.
pub async fn assert_no_token_in(received: &[u8], issuer: &str, client: &RegisteredClient) {
    let received = String::from_utf8_lossy(received);
    for token in tokens_issued(issuer, client).await {
        assert!(!received.contains(&token), "a token reached the browser");
    }
}

/// How many grants of `grant_type` the provider granted to `client`.
pub async fn grants(issuer: &str, client: &RegisteredClient, grant_type: &str) -> usize {
    provider_events(issuer)
        .await
        .iter()
        .filter(|e| e["type"] == "grant.success" && e["grant_type"] == grant_type)
        .filter(|e| e["clientId"] == client.client_id.as_str())
        .count()
}

/// Test-only: the provider's token endpoint answers 503 to `client` while `on`.
pub async fn set_outage(issuer: &str, client: &RegisteredClient, on: bool) {
    set_token_failure(issuer, client, on.then_some("server_error")).await;
}

/// Test-only: the provider's token endpoint answers `error` (`server_error`: 503,
/// `invalid_client`: 401) to `client`, until called with `None`.
pub async fn set_token_failure(issuer: &str, client: &RegisteredClient, error: Option<&str>) {
    let form = format!("client_id={}&on={}&error={}", client.client_id, error.is_some(), error.unwrap_or_default());
    set_test_switch(issuer, "outage", form).await;
}

/// Makes the test provider say, in its token answers to `client`, that the refresh token lives
/// `seconds` (`refresh_expires_in`, as Keycloak does); `None`: it says nothing again.
pub async fn set_refresh_lifetime(issuer: &str, client: &RegisteredClient, seconds: Option<u64>) {
    let seconds = seconds.map(|s| s.to_string()).unwrap_or_default();
    set_test_switch(issuer, "refresh-lifetime", format!("client_id={}&seconds={seconds}", client.client_id)).await;
}

/// Posts `form` to one of the test provider's `/__test/` switches.
async fn set_test_switch(issuer: &str, switch: &str, form: String) {
    let body = Some(("application/x-www-form-urlencoded", form));
    let reply = http_call(Method::POST, &format!("{issuer}/__test/{switch}"), body, &[]).await;
    assert_eq!(reply.status, 204, "{switch}: {}", reply.text());
}

/// Revokes a token at the provider directly (as an administrator ending a grant would).
pub async fn revoke_at_provider(issuer: &str, client: &RegisteredClient, token: &str) {
    let (headers, form) = test_client_auth(issuer, client);
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let reply = http_call(
        Method::POST,
        &format!("{issuer}/token/revocation"),
        Some(("application/x-www-form-urlencoded", format!("token={token}&token_type_hint=refresh_token{form}"))),
        &headers,
    )
    .await;
    assert_eq!(reply.status, 200, "{}", reply.text());
}

/// RFC 7662 introspection at the provider: is this token still active?
pub async fn introspect(issuer: &str, client: &RegisteredClient, token: &str) -> bool {
    let (headers, form) = test_client_auth(issuer, client);
    let headers: Vec<(&str, &str)> = headers.iter().map(|(n, v)| (*n, v.as_str())).collect();
    let body = format!("token={token}{form}");
    let response = http_call(
        Method::POST,
        &format!("{issuer}/token/introspection"),
        Some(("application/x-www-form-urlencoded", body)),
        &headers,
    )
    .await;
    assert_eq!(response.status, 200, "{}", response.text());
    response.json()["active"].as_bool().unwrap_or(false)
}
