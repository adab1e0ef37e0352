//! The test harness: a real OpenID provider, a recording upstream, cloakroom in-process on
//! ephemeral ports, and a cookie-jar browser with redirects off that walks logins step by step.

#![allow(dead_code)]

use bytes::Bytes;
use cloakroom::clock::ManualClock;
use cloakroom::config::Config;
use cloakroom::respond::{Body, empty, full};
use cloakroom::server::Listeners;
use cloakroom::upstream::HttpClient;
#[path = "redis_server.rs"]
mod redis_server;
#[allow(unused_imports)]
pub use redis_server::RedisServer;
#[path = "pki.rs"]
mod pki;
use http::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
#[allow(unused_imports)] // the streaming test uses only part of the harness
pub use pki::{IssuedCert, TestPki, pki};
use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

// ---------------------------------------------------------------------------------------------
// The real provider: npm `oidc-provider`, one process per test binary (or per special config).

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
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/provider");
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

/// A TCP gate in front of a server: open, it relays; closed, it refuses new connections and cuts
/// the ones it relays, so the server behind it is unreachable (nothing it is sent arrives late).
pub struct TcpGate {
    pub addr: SocketAddr,
    open: Arc<std::sync::atomic::AtomicBool>,
    closed: tokio::sync::watch::Sender<u64>,
}

impl TcpGate {
    /// Binds the gate; `target` is filled in later with [`TcpGate::relay_to`].
    pub fn bind() -> (std::net::TcpListener, SocketAddr) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        (listener, addr)
    }

    pub fn relay_to(listener: std::net::TcpListener, target: SocketAddr) -> TcpGate {
        listener.set_nonblocking(true).unwrap();
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        let addr = listener.local_addr().unwrap();
        let open = Arc::new(std::sync::atomic::AtomicBool::new(true));
        let (closed, _) = tokio::sync::watch::channel(0u64);
        let (gate_open, gate_closed) = (open.clone(), closed.clone());
        tokio::spawn(async move {
            loop {
                let Ok((mut inbound, _)) = listener.accept().await else { continue };
                if !gate_open.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(inbound);
                    continue;
                }
                let mut cut = gate_closed.subscribe();
                tokio::spawn(async move {
                    let Ok(mut outbound) = tokio::net::TcpStream::connect(target).await else { return };
                    tokio::select! {
                        _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound) => {}
                        _ = cut.changed() => {}
                    }
                });
            }
        });
        TcpGate { addr, open, closed }
    }

    pub fn close(&self) {
        self.open.store(false, std::sync::atomic::Ordering::SeqCst);
        self.closed.send_modify(|n| *n += 1);
    }

    pub fn open(&self) {
        self.open.store(true, std::sync::atomic::Ordering::SeqCst);
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
    let grant_types: &[&str] = if refresh {
        &["authorization_code", "refresh_token", "client_credentials"]
    } else {
        &["authorization_code", "client_credentials"]
    };
    let mut body = serde_json::json!({
        "redirect_uris": [format!("{origin}/bff/callback")],
        "post_logout_redirect_uris": [format!("{origin}/")],
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

/// How many refresh-token grants the provider granted to `client`.
pub async fn refreshes_granted(issuer: &str, client: &RegisteredClient) -> usize {
    grants(issuer, client, "refresh_token").await
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
    let body = format!("client_id={}&on={}&error={}", client.client_id, error.is_some(), error.unwrap_or_default());
    let reply = http_call(
        Method::POST,
        &format!("{issuer}/__test/outage"),
        Some(("application/x-www-form-urlencoded", body)),
        &[],
    )
    .await;
    assert_eq!(reply.status, 204);
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

// ---------------------------------------------------------------------------------------------
// Plain HTTP calls (no cookies).

#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Bytes,
}

impl Reply {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn json(&self) -> Value {
        serde_json::from_slice(&self.body).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text()))
    }
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
    pub fn set_cookies(&self) -> Vec<String> {
        self.headers.get_all(SET_COOKIE).iter().map(|v| v.to_str().unwrap().to_string()).collect()
    }
    pub fn location(&self) -> Option<&str> {
        self.header(LOCATION.as_str())
    }
}

/// A fresh client per call: pooled connections belong to the runtime that opened them, and each
/// `#[tokio::test]` has its own runtime. It trusts the test CA (https tests).
fn client() -> HttpClient {
    HttpClient::with_tls(Duration::from_secs(5), pki().client_config(None))
}

pub async fn http_call(method: Method, url: &str, body: Option<(&str, String)>, headers: &[(&str, &str)]) -> Reply {
    let mut builder = Request::builder().method(method).uri(url);
    for (name, value) in headers {
        builder = builder.header(*name, *value);
    }
    let body = match body {
        Some((content_type, text)) => {
            builder = builder.header(CONTENT_TYPE, content_type);
            full(text)
        }
        None => empty(),
    };
    send(builder.body(body).unwrap()).await
}

pub async fn send(request: Request<Body>) -> Reply {
    let response = client().send(request, Duration::from_secs(30)).await.expect("request sent");
    let (parts, body) = response.into_parts();
    let body = body.collect().await.expect("body read").to_bytes();
    Reply { status: parts.status.as_u16(), headers: parts.headers, body }
}

// ---------------------------------------------------------------------------------------------
// The browser: a cookie jar, redirects off, and a record of everything it received.

#[derive(Debug, Clone)]
struct JarCookie {
    name: String,
    value: String,
    path: String,
}

#[derive(Default)]
pub struct Browser {
    jar: Vec<JarCookie>,
    /// Sent as `User-Agent` on every request when set.
    pub user_agent: Option<String>,
    /// Every header and body this browser received, for token scans.
    pub received: Vec<u8>,
}

impl Browser {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.jar.iter().find(|c| c.name == name).map(|c| c.value.clone())
    }

    pub fn set_cookie(&mut self, name: &str, value: &str) {
        self.jar.retain(|c| c.name != name);
        self.jar.push(JarCookie { name: name.into(), value: value.into(), path: "/".into() });
    }

    pub fn cookie_names(&self) -> Vec<String> {
        self.jar.iter().map(|c| c.name.clone()).collect()
    }

    fn cookie_header(&self, path: &str) -> Option<String> {
        let pairs: Vec<String> = self
            .jar
            .iter()
            .filter(|c| {
                path == c.path || path.starts_with(&format!("{}/", c.path.trim_end_matches('/'))) || c.path == "/"
            })
            .map(|c| format!("{}={}", c.name, c.value))
            .collect();
        (!pairs.is_empty()).then(|| pairs.join("; "))
    }

    fn store(&mut self, reply: &Reply) {
        for header in reply.set_cookies() {
            let Ok(parsed) = cookie::Cookie::parse(header.clone()) else {
                continue;
            };
            let path = parsed.path().unwrap_or("/").to_string();
            let name = parsed.name().to_string();
            self.jar.retain(|c| !(c.name == name && c.path == path));
            let expired = parsed.max_age().is_some_and(|age| age.is_zero() || age.is_negative())
                || matches!(parsed.expires(), Some(cookie::Expiration::DateTime(t)) if t < cookie::time::OffsetDateTime::now_utc());
            if !expired {
                self.jar.push(JarCookie { name, value: parsed.value().to_string(), path });
            }
        }
        for (name, value) in &reply.headers {
            self.received.extend_from_slice(name.as_str().as_bytes());
            self.received.extend_from_slice(b": ");
            self.received.extend_from_slice(value.as_bytes());
            self.received.push(b'\n');
        }
        self.received.extend_from_slice(&reply.body);
    }

    pub async fn request(
        &mut self,
        method: Method,
        url: &str,
        body: Option<(&str, String)>,
        headers: &[(&str, &str)],
    ) -> Reply {
        let path = url::Url::parse(url).unwrap().path().to_string();
        let mut all: Vec<(&str, String)> = headers.iter().map(|(k, v)| (*k, v.to_string())).collect();
        if let Some(cookies) = self.cookie_header(&path) {
            all.push((COOKIE.as_str(), cookies));
        }
        if let Some(agent) = &self.user_agent {
            all.push(("user-agent", agent.clone()));
        }
        let refs: Vec<(&str, &str)> = all.iter().map(|(k, v)| (*k, v.as_str())).collect();
        let reply = http_call(method, url, body, &refs).await;
        self.store(&reply);
        reply
    }

    pub async fn get(&mut self, url: &str, headers: &[(&str, &str)]) -> Reply {
        self.request(Method::GET, url, None, headers).await
    }

    /// Follows redirects with GET until `stop(url)` says so (returning that URL unvisited) or a
    /// non-redirect answer arrives (returning its URL and reply).
    pub async fn follow(&mut self, start: &str, stop: impl Fn(&str) -> bool) -> (String, Reply) {
        let mut url = start.to_string();
        for _ in 0..20 {
            let reply = self.get(&url, &[]).await;
            match reply.location() {
                Some(location) if (300..400).contains(&reply.status) => {
                    url = url::Url::parse(&url).unwrap().join(location).unwrap().to_string();
                    if stop(&url) {
                        return (url, reply);
                    }
                }
                _ => return (url, reply),
            }
        }
        panic!("redirect loop from {start}");
    }
}

// ---------------------------------------------------------------------------------------------
// The recording upstream.

#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub uri: String,
    pub headers: HeaderMap,
}

#[derive(Clone)]
pub struct Upstream {
    pub addr: SocketAddr,
    pub seen: Arc<Mutex<Vec<Recorded>>>,
}

impl Upstream {
    pub async fn start() -> Upstream {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let seen: Arc<Mutex<Vec<Recorded>>> = Arc::default();
        let record = seen.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let record = record.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |request: Request<Incoming>| {
                        let record = record.clone();
                        async move { Ok::<_, std::convert::Infallible>(upstream_answer(request, record).await) }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection_with_upgrades(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        Upstream { addr, seen }
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.seen.lock().unwrap().clone()
    }

    pub fn count(&self) -> usize {
        self.seen.lock().unwrap().len()
    }
}

async fn upstream_answer(mut request: Request<Incoming>, record: Arc<Mutex<Vec<Recorded>>>) -> Response<Body> {
    if request.uri().path().ends_with("/ws") && request.headers().contains_key("sec-websocket-key") {
        return websocket_echo(&mut request, &record);
    }
    let (parts, body) = request.into_parts();
    record.lock().unwrap().push(Recorded {
        method: parts.method.to_string(),
        uri: parts.uri.to_string(),
        headers: parts.headers.clone(),
    });
    let path = parts.uri.path();
    let mut response = match path {
        p if p.ends_with("/slow") => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            Response::new(full("late"))
        }
        p if p.ends_with("/set-cookie") => {
            let mut r = Response::new(full("{}"));
            r.headers_mut().append(SET_COOKIE, "__Host-cloakroom=planted; Path=/; Secure; HttpOnly".parse().unwrap());
            r.headers_mut().append(SET_COOKIE, "app=1; Path=/".parse().unwrap());
            // Nameless: browsers send these back as bare `__Host-cloakroom=planted`.
            r.headers_mut().append(SET_COOKIE, "=__Host-cloakroom=planted; Path=/".parse().unwrap());
            r.headers_mut().append(SET_COOKIE, "__Host-cloakroom; Path=/".parse().unwrap());
            r
        }
        p if p.ends_with("/upload") => {
            let mut body = body;
            let mut bytes = 0u64;
            while let Some(frame) = body.frame().await {
                if let Ok(data) = frame.map(|f| f.into_data()) {
                    bytes += data.map(|d| d.len() as u64).unwrap_or(0);
                }
            }
            Response::new(full(serde_json::json!({ "bytes": bytes }).to_string()))
        }
        p if p.ends_with("/download") => {
            let size: u64 =
                parts.uri.query().and_then(|q| q.strip_prefix("bytes=")).and_then(|n| n.parse().ok()).unwrap_or(0);
            Response::new(GeneratedBody::new(size).boxed())
        }
        _ => Response::new(full(
            serde_json::json!({ "path": path, "authorization": parts.headers.contains_key("authorization") })
                .to_string(),
        )),
    };
    response.headers_mut().insert(CONTENT_TYPE, "application/json".parse().unwrap());
    response.headers_mut().insert("connection", "x-upstream-hop".parse().unwrap());
    response.headers_mut().insert("x-upstream-hop", "1".parse().unwrap());
    response
}

/// Accepts a WebSocket handshake (RFC 6455 accept key) and echoes every byte back.
fn websocket_echo(request: &mut Request<Incoming>, record: &Arc<Mutex<Vec<Recorded>>>) -> Response<Body> {
    use base64::Engine;
    record.lock().unwrap().push(Recorded {
        method: request.method().to_string(),
        uri: request.uri().to_string(),
        headers: request.headers().clone(),
    });
    let key = request.headers()["sec-websocket-key"].to_str().unwrap().to_string();
    let digest = aws_lc_rs::digest::digest(
        &aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY,
        format!("{key}258EAFA5-E914-47DA-95CA-C5AB0DC85B11").as_bytes(),
    );
    let accept = base64::engine::general_purpose::STANDARD.encode(digest.as_ref());
    let upgrade = hyper::upgrade::on(request);
    tokio::spawn(async move {
        if let Ok(upgraded) = upgrade.await {
            let (mut reader, mut writer) = tokio::io::split(TokioIo::new(upgraded));
            let _ = tokio::io::copy(&mut reader, &mut writer).await;
        }
    });
    let mut response = Response::new(empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    response.headers_mut().insert("connection", "upgrade".parse().unwrap());
    response.headers_mut().insert("upgrade", "websocket".parse().unwrap());
    response.headers_mut().insert("sec-websocket-accept", accept.parse().unwrap());
    response
}

/// A body of `remaining` bytes produced lazily in 256 KiB chunks: never held whole in memory.
pub struct GeneratedBody {
    remaining: u64,
    chunk: Bytes,
    /// Hide the length (the client then sends it chunked, with no Content-Length).
    undeclared: bool,
}

impl GeneratedBody {
    pub fn new(size: u64) -> Self {
        Self { remaining: size, chunk: Bytes::from(vec![b'x'; 256 * 1024]), undeclared: false }
    }

    pub fn chunked(size: u64) -> Self {
        Self { undeclared: true, ..Self::new(size) }
    }
}

impl hyper::body::Body for GeneratedBody {
    type Data = Bytes;
    type Error = cloakroom::respond::BoxError;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        if self.remaining == 0 {
            return std::task::Poll::Ready(None);
        }
        let n = self.remaining.min(self.chunk.len() as u64) as usize;
        self.remaining -= n as u64;
        std::task::Poll::Ready(Some(Ok(hyper::body::Frame::data(self.chunk.slice(..n)))))
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        if self.undeclared {
            hyper::body::SizeHint::default()
        } else {
            hyper::body::SizeHint::with_exact(self.remaining)
        }
    }
}

// ---------------------------------------------------------------------------------------------
// cloakroom under test.

pub struct Bff {
    pub server: cloakroom::Server,
    pub origin: String,
    pub admin: String,
    pub issuer: String,
    pub client: RegisteredClient,
    pub clock: Arc<ManualClock>,
    pub upstream: Upstream,
}

pub struct BffOptions {
    pub issuer: Option<String>,
    /// A client already known to the issuer (skips dynamic registration).
    pub client: Option<RegisteredClient>,
    pub auth_method: &'static str,
    /// Appended to the generated config (extra sections).
    pub extra_toml: String,
    /// Extra keys inside `[server]`, `[oidc]` and `[session]`.
    pub server_toml: String,
    pub oidc_toml: String,
    pub session_toml: String,
    /// Extra `[[routes]]` entries besides the default `/api/` (user) one.
    pub extra_routes: String,
    pub wait_ready: bool,
    /// Register the client with the refresh-token grant (the provider then issues refresh tokens).
    pub refresh_grant: bool,
    /// Where the default `/api/` route goes instead of the recording upstream.
    pub api_upstream: Option<String>,
    /// Register a `private_key_jwt` client with this key and configure cloakroom with it.
    pub client_key: Option<TestClientKey>,
    /// The key cloakroom is configured with, when it should differ from the registered one.
    pub configured_key: Option<TestClientKey>,
    /// Serve https with this certificate (the origin becomes `https://127.0.0.1:<port>`).
    pub tls: Option<IssuedCert>,
    /// The browser-facing origin when it is not cloakroom's own address (replicas behind a
    /// balancer); the client is registered with it.
    pub public_url: Option<String>,
    /// `session.keys` instead of the one test key.
    pub session_keys: Option<Vec<String>>,
}

impl Default for BffOptions {
    fn default() -> Self {
        Self {
            issuer: None,
            client: None,
            auth_method: "client_secret_basic",
            extra_toml: String::new(),
            server_toml: String::new(),
            oidc_toml: String::new(),
            session_toml: String::new(),
            extra_routes: String::new(),
            wait_ready: true,
            refresh_grant: true,
            api_upstream: None,
            client_key: None,
            configured_key: None,
            tls: None,
            public_url: None,
            session_keys: None,
        }
    }
}

pub const CSRF: (&str, &str) = ("x-csrf", "1");

impl Bff {
    pub async fn start() -> Bff {
        Self::start_with(BffOptions::default()).await
    }

    pub async fn start_with(options: BffOptions) -> Bff {
        cloakroom::install_crypto_provider();
        init_logging();
        let issuer = options.issuer.clone().unwrap_or_else(|| provider().issuer.clone());
        let main = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let admin = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let scheme = if options.tls.is_some() { "https" } else { "http" };
        let origin = options.public_url.clone().unwrap_or_else(|| format!("{scheme}://{}", main.local_addr().unwrap()));
        let tls_toml = match &options.tls {
            Some(cert) => format!("tls_cert_file = {:?}\ntls_key_file = {:?}", cert.cert_file, cert.key_file),
            None => String::new(),
        };
        let admin_url = format!("http://{}", admin.local_addr().unwrap());
        let client = if let Some(client) = options.client.clone() {
            client
        } else if options.wait_ready {
            let method = if options.client_key.is_some() { "private_key_jwt" } else { options.auth_method };
            register_client_with_key(&issuer, &origin, method, options.refresh_grant, options.client_key.as_ref()).await
        } else {
            RegisteredClient { client_id: "unregistered".into(), client_secret: "unused".into(), key: None }
        };
        let client_auth = match options.configured_key.as_ref().or(options.client_key.as_ref()) {
            Some(key) => {
                let path = std::env::temp_dir()
                    .join(format!("cloakroom-test-client-key-{}.pem", main.local_addr().unwrap().port()));
                std::fs::write(&path, &key.pem).unwrap();
                format!(
                    "client_auth = \"private_key_jwt\"\nprivate_key_file = {:?}\nprivate_key_kid = {}\nprivate_key_alg = \"{}\"",
                    path.display().to_string(),
                    key.jwk["kid"],
                    key.alg
                )
            }
            None => format!("client_secret = \"{}\"\nclient_auth = \"{}\"", client.client_secret, options.auth_method),
        };
        let upstream = Upstream::start().await;
        let upstream_url = format!("http://{}", upstream.addr);
        // Tests stop at once unless they test the delay (the default is 5 s).
        let shutdown_delay =
            if options.server_toml.contains("shutdown_delay") { "" } else { "shutdown_delay = \"0s\"" };
        let api_upstream = options.api_upstream.clone().unwrap_or_else(|| format!("{upstream_url}/api/"));
        let toml = format!(
            r#"
[server]
public_url = "{origin}"
shutdown_timeout = "5s"
{shutdown_delay}
{tls_toml}
{server_toml}
[oidc]
issuer = "{issuer}"
client_id = "{client_id}"
{client_auth}
{oidc_toml}
[session]
keys = {keys}
{session_toml}
[log]
level = "trace"
[[routes]]
prefix = "/api/"
upstream = "{api_upstream}"
token = "user"
connect_timeout = "1s"
timeout = "2s"
{extra_routes}
{extra_toml}
"#,
            client_id = client.client_id,
            keys = serde_json::to_string(&options.session_keys.clone().unwrap_or_else(|| vec![test_key()])).unwrap(),
            extra_routes = options.extra_routes.replace("{upstream}", &upstream_url),
            extra_toml = options.extra_toml.replace("{upstream}", &upstream_url),
            server_toml = options.server_toml,
            oidc_toml = options.oidc_toml,
            session_toml = options.session_toml,
        );
        let config = Config::from_toml(&toml, Vec::new()).unwrap_or_else(|e| panic!("{e}\n{toml}"));
        let clock = Arc::new(ManualClock::new());
        let listeners = Listeners::from_std(main, admin).unwrap();
        let server = cloakroom::start(config, listeners, clock.clone()).unwrap();
        let bff = Bff { server, origin, admin: admin_url, issuer, client, clock, upstream };
        if options.wait_ready {
            for _ in 0..200 {
                if bff.server.app.is_ready() {
                    return bff;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            panic!("cloakroom did not become ready (provider discovery)");
        }
        bff
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    /// This instance itself, bypassing any balancer in front (`url` goes through `public_url`).
    pub fn direct(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.addr)
    }

    pub fn cookie_name(&self) -> &'static str {
        "__Host-cloakroom"
    }

    pub async fn session_count(&self) -> u64 {
        self.server.app.sessions.store().sync().await;
        self.server.app.sessions.store().session_count().expect("the memory store counts its sessions")
    }

    /// Runs a whole sign-in as `user`, returning the page the callback answered with.
    pub async fn login(&self, browser: &mut Browser, user: &str, return_url: &str) -> Reply {
        let callback = self.authorize(browser, user, return_url).await;
        browser.get(&callback, &[]).await
    }

    /// Walks the login up to (not including) the callback; returns the callback URL.
    pub async fn authorize(&self, browser: &mut Browser, user: &str, return_url: &str) -> String {
        let encoded: String = url::form_urlencoded::byte_serialize(return_url.as_bytes()).collect();
        self.authorize_from(browser, user, &format!("/bff/login?returnUrl={encoded}")).await
    }

    /// Like [`Bff::authorize`], starting from any login URL (path and query, or a whole URL).
    pub async fn authorize_from(&self, browser: &mut Browser, user: &str, login_path: &str) -> String {
        let start_url = if login_path.starts_with("http") { login_path.to_string() } else { self.url(login_path) };
        let start = browser.get(&start_url, &[]).await;
        assert_eq!(start.status, 302, "{}", start.text());
        let authorize = start.location().unwrap().to_string();
        assert!(authorize.starts_with(&self.issuer), "login redirected to {authorize}");
        let callback_prefix = self.url("/bff/callback");
        let (page_url, page) = browser.follow(&authorize, |u| u.starts_with(&callback_prefix)).await;
        if page_url.starts_with(&callback_prefix) {
            return page_url; // the provider still had a session for this browser (SSO)
        }
        assert_eq!(page.status, 200, "expected the provider's sign-in page at {page_url}: {}", page.text());
        let uid = page_url.rsplit('/').next().unwrap().to_string();
        let submitted = browser
            .request(
                Method::POST,
                &format!("{}/interaction/{uid}/login", self.issuer),
                Some(("application/x-www-form-urlencoded", format!("login={user}"))),
                &[],
            )
            .await;
        assert!(submitted.status == 303 || submitted.status == 302, "{}", submitted.text());
        let next = url::Url::parse(&self.issuer).unwrap().join(submitted.location().unwrap()).unwrap().to_string();
        let (callback, _) = browser.follow(&next, |u| u.starts_with(&callback_prefix)).await;
        assert!(callback.starts_with(&callback_prefix), "the provider did not redirect to the callback: {callback}");
        callback
    }

    pub async fn user(&self, browser: &mut Browser) -> Reply {
        browser.get(&self.url("/bff/user"), &[CSRF]).await
    }
}

pub fn test_key() -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode([42u8; 32])
}

/// Captures every log line (at trace level) of this test process, for "no token in logs" checks.
pub fn logs() -> String {
    String::from_utf8_lossy(&LOG_BUFFER.get_or_init(Default::default).lock().unwrap()).into_owned()
}

static LOG_BUFFER: OnceLock<Arc<Mutex<Vec<u8>>>> = OnceLock::new();

struct BufferWriter(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for BufferWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(data);
        Ok(data.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn init_logging() {
    static INIT: OnceLock<()> = OnceLock::new();
    INIT.get_or_init(|| {
        let buffer = LOG_BUFFER.get_or_init(Default::default).clone();
        let _ = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_ansi(false)
            .fmt_fields(cloakroom::telemetry::EscapedFields::default())
            .with_writer(move || BufferWriter(buffer.clone()))
            .try_init();
    });
}

/// The session ticket as the test browser holds it.
pub fn session_cookie(browser: &Browser) -> Option<String> {
    browser.cookie("__Host-cloakroom")
}

pub fn status(reply: &Reply) -> StatusCode {
    StatusCode::from_u16(reply.status).unwrap()
}

// ---------------------------------------------------------------------------------------------
// A round-robin TCP balancer: each new connection goes to the next backend, no stickiness.

pub struct Balancer;

impl Balancer {
    /// Binds first (replicas need the balancer's origin as their `public_url`), serves later.
    pub fn bind() -> (std::net::TcpListener, SocketAddr) {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        (listener, addr)
    }

    pub fn serve(listener: std::net::TcpListener, backends: Vec<SocketAddr>) {
        listener.set_nonblocking(true).unwrap();
        let listener = tokio::net::TcpListener::from_std(listener).unwrap();
        tokio::spawn(async move {
            let mut next = 0usize;
            loop {
                let Ok((mut client, _)) = listener.accept().await else { continue };
                let backend = backends[next % backends.len()];
                next += 1;
                tokio::spawn(async move {
                    if let Ok(mut server) = tokio::net::TcpStream::connect(backend).await {
                        let _ = tokio::io::copy_bidirectional(&mut client, &mut server).await;
                    }
                });
            }
        });
    }
}
