//! WebSockets: through API routes with the token attached (Origin must be ours, since the
//! handshake cannot carry the anti-CSRF header), and through the SPA dev-server pass-through.

use crate::support::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// RFC 6455's example key and the accept value it must produce.
const KEY: &str = "dGhlIHNhbXBsZSBub25jZQ==";
const ACCEPT: &str = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

/// Sends a raw WebSocket handshake; returns the response head and the open stream.
async fn handshake(bff: &Bff, path: &str, extra: &[(&str, &str)]) -> (String, tokio::net::TcpStream) {
    let mut stream = tokio::net::TcpStream::connect(bff.server.addr).await.unwrap();
    let mut head = format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Key: {KEY}\r\nSec-WebSocket-Version: 13\r\n",
        bff.server.addr
    );
    for (name, value) in extra {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    let mut byte = [0u8; 1];
    while !response.ends_with(b"\r\n\r\n") {
        if stream.read(&mut byte).await.unwrap() == 0 {
            break;
        }
        response.push(byte[0]);
    }
    (String::from_utf8_lossy(&response).into_owned(), stream)
}

async fn echo(stream: &mut tokio::net::TcpStream, payload: &[u8]) -> Vec<u8> {
    stream.write_all(payload).await.unwrap();
    let mut back = vec![0u8; payload.len()];
    tokio::time::timeout(std::time::Duration::from_secs(5), stream.read_exact(&mut back)).await.unwrap().unwrap();
    back
}

#[tokio::test]
async fn an_api_websocket_gets_the_token_and_tunnels_both_ways() {
    let bff = Bff::start().await;
    let mut browser = Browser::new();
    bff.login(&mut browser, "alice", "/").await;
    let cookie = format!("__Host-Http-cloakroom={}", session_cookie(&browser).unwrap());
    let origin = bff.origin.clone();
    let (head, mut stream) = handshake(&bff, "/api/ws", &[("Origin", &origin), ("Cookie", &cookie)]).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert!(
        head.to_ascii_lowercase().contains(&format!("sec-websocket-accept: {}", ACCEPT.to_ascii_lowercase())),
        "{head}"
    );
    assert_eq!(echo(&mut stream, b"frame bytes, tunnelled as they are").await, b"frame bytes, tunnelled as they are");

    let upstream = bff.upstream.requests().pop().unwrap();
    assert_eq!(upstream.uri, "/api/ws");
    assert!(upstream.headers["authorization"].to_str().unwrap().starts_with("Bearer ey"));
    assert!(!upstream.headers.get("cookie").is_some_and(|c| c.to_str().unwrap().contains("__Host-Http-cloakroom")));
}

#[tokio::test]
async fn websocket_handshakes_need_our_origin_and_a_session() {
    let bff = Bff::start().await;
    let mut browser = Browser::new();
    bff.login(&mut browser, "alice", "/").await;
    let cookie = format!("__Host-Http-cloakroom={}", session_cookie(&browser).unwrap());
    let origin = bff.origin.clone();
    for (extra, expected) in [
        (vec![("Cookie", cookie.as_str())], "403"),
        (vec![("Cookie", cookie.as_str()), ("Origin", "https://evil.example")], "403"),
        (vec![("Cookie", cookie.as_str()), ("Origin", origin.as_str()), ("Sec-Fetch-Site", "cross-site")], "403"),
        (vec![("Origin", origin.as_str())], "401"),
    ] {
        let (head, _) = handshake(&bff, "/api/ws", &extra).await;
        assert!(head.starts_with(&format!("HTTP/1.1 {expected}")), "{extra:?}: {head}");
    }
    assert_eq!(bff.upstream.count(), 0, "a refused handshake reached the upstream");
}

#[tokio::test]
async fn the_spa_dev_server_gets_pages_and_hot_reload_sockets_without_tokens() {
    let bff =
        Bff::start_with(BffOptions { extra_toml: "[spa]\ndev_server = \"{upstream}\"\n".into(), ..Default::default() })
            .await;
    let mut browser = Browser::new();
    bff.login(&mut browser, "alice", "/").await;
    let page = browser.get(&bff.url("/some/page?x=1"), &[("accept", "text/html")]).await;
    assert_eq!(page.status, 200);
    assert_eq!(page.json()["path"], "/some/page");
    let seen = bff.upstream.requests().pop().unwrap();
    assert_eq!(seen.uri, "/some/page?x=1");
    assert!(!seen.headers.contains_key("authorization"), "a token went to the dev server");
    assert!(!seen.headers.get("cookie").is_some_and(|c| c.to_str().unwrap().contains("__Host-Http-cloakroom")));

    let origin = bff.origin.clone();
    let (head, mut stream) = handshake(&bff, "/ws", &[("Origin", &origin)]).await;
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    assert_eq!(echo(&mut stream, b"hot reload").await, b"hot reload");
    let (head, _) = handshake(&bff, "/ws", &[("Origin", "https://evil.example")]).await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
}
