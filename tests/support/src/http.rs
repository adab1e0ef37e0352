//! Plain HTTP calls (no cookies).

use super::*;

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

/// An HTTP/2 connection with prior knowledge (h2c) to `addr`, its driver running in a task.
pub async fn h2c_connect(
    addr: SocketAddr,
) -> (hyper::client::conn::http2::SendRequest<Body>, tokio::task::JoinHandle<Result<(), hyper::Error>>) {
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (sender, connection) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    (sender, tokio::spawn(connection))
}
