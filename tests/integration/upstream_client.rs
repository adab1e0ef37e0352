//! cloakroom's own upstream client (issue 33, item 1: `src/upstream/`, on hyper's connections):
//! connections kept and reused, HTTP/2 where TLS agrees on it with calls side by side on one
//! connection, and an upstream closing its connections after each answer costs no call.

use crate::support::*;
use http::Request;
use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

/// What a test upstream saw: connections accepted, and each request's HTTP version.
#[derive(Default)]
struct Seen {
    connections: AtomicUsize,
    versions: std::sync::Mutex<Vec<http::Version>>,
}

fn answer(seen: &Arc<Seen>, request: &Request<Incoming>) -> http::Response<cloakroom::respond::Body> {
    seen.versions.lock().unwrap().push(request.version());
    http::Response::new(cloakroom::respond::full("upstream ok"))
}

/// An https upstream speaking only HTTP/2 (ALPN `h2`), with a certificate of the test CA.
async fn h2_upstream() -> (std::net::SocketAddr, Arc<Seen>) {
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::{CertificateDer, PrivateKeyDer};
    let cert = pki().issue("h2-upstream", false);
    let chain = CertificateDer::pem_file_iter(&cert.cert_file).unwrap().map(Result::unwrap).collect();
    let key = PrivateKeyDer::from_pem_file(&cert.key_file).unwrap();
    let mut config = rustls::ServerConfig::builder().with_no_client_auth().with_single_cert(chain, key).unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let counting = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            counting.connections.fetch_add(1, Ordering::SeqCst);
            let (acceptor, seen) = (acceptor.clone(), counting.clone());
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else { return };
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let seen = seen.clone();
                    async move {
                        // Long enough that calls made together are in flight together.
                        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                        Ok::<_, std::convert::Infallible>(answer(&seen, &request))
                    }
                });
                let _ = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, seen)
}

/// A plain HTTP/1.1 upstream keeping its connections alive.
async fn h1_upstream() -> (std::net::SocketAddr, Arc<Seen>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let counting = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { continue };
            counting.connections.fetch_add(1, Ordering::SeqCst);
            let seen = counting.clone();
            tokio::spawn(async move {
                let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                    let seen = seen.clone();
                    async move { Ok::<_, std::convert::Infallible>(answer(&seen, &request)) }
                });
                let _ = hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(tcp), service).await;
            });
        }
    });
    (addr, seen)
}

/// An HTTP/1.1 upstream that closes each connection once it has answered, without saying
/// `Connection: close` (as a server whose keep-alive ran out does).
async fn closing_upstream() -> (std::net::SocketAddr, Arc<Seen>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let seen = Arc::new(Seen::default());
    let counting = seen.clone();
    tokio::spawn(async move {
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else { continue };
            counting.connections.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut byte = [0u8; 1];
                while !head.ends_with(b"\r\n\r\n") && tcp.read(&mut byte).await.is_ok_and(|n| n == 1) {
                    head.push(byte[0]);
                }
                let _ = tcp.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 11\r\n\r\nupstream ok").await;
                // and the connection closes here
            });
        }
    });
    (addr, seen)
}

fn route(prefix: &str, upstream: &str, extra: &str) -> String {
    format!("[[routes]]\nprefix = \"{prefix}\"\nupstream = \"{upstream}\"\ntoken = \"none\"\n{extra}\n")
}

#[tokio::test]
async fn an_http2_upstream_takes_calls_side_by_side_on_one_connection() {
    let (addr, seen) = h2_upstream().await;
    let ca = format!("ca_file = {:?}", pki().ca_file);
    let bff = Bff::start_with(BffOptions {
        extra_routes: route("/h2/", &format!("https://127.0.0.1:{}/", addr.port()), &ca),
        ..Default::default()
    })
    .await;
    let first = http_call(http::Method::GET, &bff.url("/h2/first"), None, &[CSRF]).await;
    assert_eq!((first.status, first.text().as_str()), (200, "upstream ok"));
    let calls = (0..10).map(|i| {
        let url = bff.url(&format!("/h2/together/{i}"));
        async move { http_call(http::Method::GET, &url, None, &[CSRF]).await.status }
    });
    let started = std::time::Instant::now();
    let statuses = futures_util::future::join_all(calls).await;
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert!(started.elapsed() < std::time::Duration::from_millis(900), "the calls went one after another");
    assert_eq!(seen.connections.load(Ordering::SeqCst), 1, "one HTTP/2 connection for all of them");
    assert!(seen.versions.lock().unwrap().iter().all(|v| *v == http::Version::HTTP_2));
}

#[tokio::test]
async fn kept_alive_connections_are_reused_and_one_closing_after_its_answer_costs_no_call() {
    let (kept, kept_seen) = h1_upstream().await;
    let (closing, closing_seen) = closing_upstream().await;
    let bff = Bff::start_with(BffOptions {
        extra_routes: format!(
            "{}{}",
            route("/kept/", &format!("http://{kept}/"), ""),
            route("/closing/", &format!("http://{closing}/"), "")
        ),
        ..Default::default()
    })
    .await;
    for i in 0..20 {
        let reply = http_call(http::Method::GET, &bff.url(&format!("/kept/{i}")), None, &[CSRF]).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }
    assert_eq!(kept_seen.connections.load(Ordering::SeqCst), 1, "one connection, kept alive");
    assert!(kept_seen.versions.lock().unwrap().iter().all(|v| *v == http::Version::HTTP_11));
    for i in 0..20 {
        let reply = http_call(http::Method::GET, &bff.url(&format!("/closing/{i}")), None, &[CSRF]).await;
        assert_eq!(reply.status, 200, "call {i}: {}", reply.text());
    }
    assert_eq!(closing_seen.connections.load(Ordering::SeqCst), 20, "a connection per call");
}
