//! TLS end to end with a CA generated at test time: cloakroom serving https (HTTP/2 by ALPN,
//! HSTS), the real provider over https trusted through `oidc.ca_file`, certificate reload that
//! keeps open connections, and upstreams with their own CA and a client certificate (mTLS).

use crate::support::*;
use cloakroom::config::Config;
use http::{Method, Request, Version};
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use std::sync::Arc;
use std::time::Duration;

/// A TLS connection to `addr` speaking HTTP/1.1, and the certificate the server presented.
async fn connect_h1(
    addr: std::net::SocketAddr,
) -> (hyper::client::conn::http1::SendRequest<cloakroom::respond::Body>, Vec<u8>) {
    let mut config = Arc::unwrap_or_clone(pki().client_config(None));
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("127.0.0.1").unwrap();
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, tcp).await.unwrap();
    let presented = stream.get_ref().1.peer_certificates().unwrap()[0].to_vec();
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await.unwrap();
    tokio::spawn(connection);
    (sender, presented)
}

async fn get_on(
    sender: &mut hyper::client::conn::http1::SendRequest<cloakroom::respond::Body>,
    path: &str,
) -> http::Response<Incoming> {
    let request = Request::get(path)
        .header("host", "127.0.0.1")
        .header(CSRF.0, CSRF.1)
        .body(cloakroom::respond::empty())
        .unwrap();
    sender.send_request(request).await.expect("answered on this connection")
}

#[tokio::test]
async fn https_with_http2_hsts_and_a_provider_behind_a_private_ca() {
    let provider_cert = pki().issue("provider", false);
    let cert_file = provider_cert.cert_file.to_str().unwrap();
    let key_file = provider_cert.key_file.to_str().unwrap();
    let provider = start_provider(&[("TLS_CERT", cert_file), ("TLS_KEY", key_file)]);
    assert!(provider.issuer.starts_with("https://"));
    let bff = Bff::start_with(BffOptions {
        issuer: Some(provider.issuer.clone()),
        tls: Some(pki().issue("cloakroom", false)),
        oidc_toml: format!("ca_file = {:?}", pki().ca_file),
        ..Default::default()
    })
    .await;
    assert!(bff.origin.starts_with("https://"));

    // A whole sign-in over https on both sides.
    let mut browser = Browser::new();
    assert_eq!(bff.login(&mut browser, "alice", "/").await.status, 200);
    let user = bff.user(&mut browser).await;
    assert_eq!(user.json()["sub"], "alice");
    assert_eq!(user.header("strict-transport-security"), Some("max-age=63072000"));
    let call = browser.get(&bff.url("/api/over-tls"), &[CSRF]).await;
    assert_eq!(call.status, 200);
    assert_eq!(call.header("strict-transport-security"), Some("max-age=63072000"));

    // ALPN: a client offering h2 gets HTTP/2.
    let client = cloakroom::upstream::HttpClient::with_tls(Duration::from_secs(5), pki().client_config(None));
    let request = Request::get(bff.url("/bff/user")).header(CSRF.0, CSRF.1).body(cloakroom::respond::empty()).unwrap();
    let response = client.send(request, Duration::from_secs(5)).await.unwrap();
    assert_eq!(response.version(), Version::HTTP_2);
    assert_eq!(response.status(), 401);
    // And one offering only HTTP/1.1 gets that.
    let (mut sender, _) = connect_h1(bff.server.addr).await;
    assert_eq!(get_on(&mut sender, "/bff/user").await.version(), Version::HTTP_11);

    // Plain http: no HSTS (browsers ignore it there, and it would be a lie).
    let plain = Bff::start().await;
    let reply = http_call(Method::GET, &plain.url("/bff/user"), None, &[]).await;
    assert!(reply.header("strict-transport-security").is_none());
}

#[tokio::test]
async fn a_provider_certificate_outside_the_trusted_cas_is_refused() {
    let provider_cert = pki().issue("provider", false);
    let provider = start_provider(&[
        ("TLS_CERT", provider_cert.cert_file.to_str().unwrap()),
        ("TLS_KEY", provider_cert.key_file.to_str().unwrap()),
    ]);
    // Another CA entirely: the provider's chain does not lead to it.
    let stranger = TestPki::new("some other CA");
    let bff = Bff::start_with(BffOptions {
        issuer: Some(provider.issuer.clone()),
        client: Some(RegisteredClient { client_id: "x".into(), client_secret: "y".into(), key: None }),
        oidc_toml: format!("ca_file = {:?}", stranger.ca_file),
        wait_ready: false,
        ..Default::default()
    })
    .await;
    let started = std::time::Instant::now();
    while !logs().lines().any(|l| l.contains("provider discovery failed") && l.contains(&provider.issuer)) {
        assert!(started.elapsed() < Duration::from_secs(10), "no discovery failure logged");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(!bff.server.app().is_ready());
    let line = logs()
        .lines()
        .find(|l| l.contains("provider discovery failed") && l.contains(&provider.issuer))
        .unwrap()
        .to_string();
    assert!(line.to_lowercase().contains("certificate"), "{line}");
}

#[tokio::test]
async fn a_certificate_reload_serves_the_new_one_and_keeps_open_connections() {
    let first = pki().issue("first", false);
    // cloakroom reads these two paths; the test swaps what is in them.
    let live = pki().issue("live", false);
    std::fs::copy(&first.cert_file, &live.cert_file).unwrap();
    std::fs::copy(&first.key_file, &live.key_file).unwrap();
    let bff = Bff::start_with(BffOptions { tls: Some(live.clone()), ..Default::default() }).await;

    let (mut open, presented) = connect_h1(bff.server.addr).await;
    assert_eq!(presented, first.der);
    assert_eq!(get_on(&mut open, "/bff/user").await.status(), 401);

    let second = pki().issue("second", false);
    std::fs::copy(&second.cert_file, &live.cert_file).unwrap();
    std::fs::copy(&second.key_file, &live.key_file).unwrap();
    bff.server.reload_tls().unwrap();
    // The connection opened before the reload goes on working.
    let again = get_on(&mut open, "/bff/user").await;
    assert_eq!(again.status(), 401);
    let _ = again.into_body().collect().await;
    // New handshakes get the new certificate.
    let (_, presented) = connect_h1(bff.server.addr).await;
    assert_eq!(presented, second.der);

    // A broken pair is refused and the current certificate stays.
    std::fs::write(&live.key_file, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap();
    assert!(bff.server.reload_tls().is_err());
    let (_, presented) = connect_h1(bff.server.addr).await;
    assert_eq!(presented, second.der);
    // A key that does not belong to the certificate, likewise.
    std::fs::copy(&first.key_file, &live.key_file).unwrap();
    let error = bff.server.reload_tls().unwrap_err();
    assert!(error.to_string().contains("live"), "{error}");
    let (_, presented) = connect_h1(bff.server.addr).await;
    assert_eq!(presented, second.der);
}

/// An https upstream that requires a client certificate from the test CA.
async fn mtls_upstream() -> std::net::SocketAddr {
    let cert = pki().issue("upstream", false);
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(&pki().ca_file).unwrap() {
        roots.add(ca.unwrap()).unwrap();
    }
    let verifier = rustls::server::WebPkiClientVerifier::builder(Arc::new(roots)).build().unwrap();
    let chain = CertificateDer::pem_file_iter(&cert.cert_file).unwrap().map(Result::unwrap).collect();
    let key = PrivateKeyDer::from_pem_file(&cert.key_file).unwrap();
    let config =
        rustls::ServerConfig::builder().with_client_cert_verifier(verifier).with_single_cert(chain, key).unwrap();
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            let acceptor = acceptor.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else { return };
                let service = hyper::service::service_fn(|_request: Request<Incoming>| async {
                    Ok::<_, std::convert::Infallible>(http::Response::new(cloakroom::respond::full("mutual TLS ok")))
                });
                let _ =
                    hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(stream), service).await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn upstreams_get_their_own_ca_bundle_and_client_certificate() {
    let upstream = mtls_upstream().await;
    let identity = pki().issue("cloakroom-client", true);
    let ca = format!("{:?}", pki().ca_file);
    let routes = format!(
        r#"
[[routes]]
prefix = "/mtls/"
upstream = "https://127.0.0.1:{port}/"
token = "none"
ca_file = {ca}
client_cert_file = {cert:?}
client_key_file = {key:?}
[[routes]]
prefix = "/no-client-cert/"
upstream = "https://127.0.0.1:{port}/"
token = "none"
ca_file = {ca}
[[routes]]
prefix = "/system-roots/"
upstream = "https://127.0.0.1:{port}/"
token = "none"
"#,
        port = upstream.port(),
        cert = identity.cert_file,
        key = identity.key_file,
    );
    let bff = Bff::start_with(BffOptions { extra_routes: routes, ..Default::default() }).await;
    let mut browser = Browser::new();
    let ok = browser.get(&bff.url("/mtls/hello"), &[CSRF]).await;
    assert_eq!((ok.status, ok.text().as_str()), (200, "mutual TLS ok"));
    // Without the client certificate the upstream refuses the handshake.
    let refused = browser.get(&bff.url("/no-client-cert/hello"), &[CSRF]).await;
    assert_eq!(refused.status, 502, "{}", refused.text());
    // With the system's roots the test CA is unknown.
    let unknown = browser.get(&bff.url("/system-roots/hello"), &[CSRF]).await;
    assert_eq!(unknown.status, 502, "{}", unknown.text());
}

#[test]
fn tls_settings_are_checked_at_start_up_naming_the_key() {
    let cert = pki().issue("config", false);
    let base = "[oidc]\nissuer = \"https://id.example.com\"\nclient_id = \"a\"\nclient_secret = \"b\"\n";
    let errors = |extra: &str| {
        let text = if extra.starts_with("[server]") { format!("{extra}\n{base}") } else { format!("{base}{extra}") };
        match Config::from_toml(&text, Vec::new()) {
            Ok(_) => Vec::new(),
            Err(e) => e.0.iter().map(|e| e.key.clone()).collect::<Vec<_>>(),
        }
    };
    let good = format!("[server]\ntls_cert_file = {:?}\ntls_key_file = {:?}", cert.cert_file, cert.key_file);
    assert!(errors(&good).is_empty());
    assert_eq!(errors(&format!("[server]\ntls_cert_file = {:?}", cert.cert_file)), ["server.tls_key_file"]);
    assert_eq!(
        errors(&format!("[server]\ntls_cert_file = \"/nonexistent.pem\"\ntls_key_file = {:?}", cert.key_file)),
        ["server.tls_cert_file"]
    );
    assert_eq!(
        errors(&format!("[server]\ntls_cert_file = {:?}\ntls_key_file = \"/nonexistent-key.pem\"", cert.cert_file)),
        ["server.tls_key_file"],
        "a key file that cannot be read is the key's setting"
    );
    let other = pki().issue("other", false);
    assert_eq!(
        errors(&format!("[server]\ntls_cert_file = {:?}\ntls_key_file = {:?}", cert.cert_file, other.key_file)),
        ["server.tls_cert_file"],
        "a key that is not the certificate's"
    );
    assert_eq!(errors("[server]\nhsts = \"includeSubDomains\""), ["server.hsts"]);
    assert_eq!(errors("ca_file = \"/nonexistent-ca.pem\""), ["oidc.ca_file"]);
    let route = "[[routes]]\nprefix = \"/a/\"\nupstream = \"https://127.0.0.1:1/\"\n";
    assert_eq!(errors(&format!("{route}client_cert_file = {:?}", cert.cert_file)), ["routes[0].client_key_file"]);
    assert_eq!(errors(&format!("{route}ca_file = {:?}", cert.key_file)), ["routes[0].ca_file"]);
    // A good CA beside an unusable client key: the client certificate is to blame, not the CA.
    let pair = format!("client_cert_file = {:?}\nclient_key_file = {:?}", cert.cert_file, cert.cert_file);
    assert_eq!(errors(&format!("{route}ca_file = {:?}\n{pair}", pki().ca_file)), ["routes[0].client_cert_file"]);
}
