//! The benchmark's upstream: the API every proxy under test forwards to (`bench/run`).
//!
//! It answers every request with a small JSON body and counts what arrived, so the benchmark can
//! prove that each request a load generator counted really reached the API, and authenticated:
//! a proxy that answered 401 or 302 itself, or forwarded without a token, does not score.
//! `GET /__count` returns `{"total": N, "bearer": M, "identity": I, "assertion": A,
//! "exchanged": X}`, where `bearer` counts requests carrying `Authorization: Bearer` with a
//! JWT-shaped token (three dot-separated parts), `identity` those with a non-empty
//! `X-Auth-Request-User` beside it, `assertion` those with a JWT-shaped `X-Cloakroom-Assertion`
//! beside it, and `exchanged` those whose Bearer token is one the test provider issued by token
//! exchange (`xchg_…`), `traced` those with a Bearer JWT and a `traceparent` (OpenTelemetry's
//! trace context, which cloakroom sends on with `[traces]`), and `exports` the OTLP/HTTP trace
//! exports it took as the collector of the traced runs (`POST /v1/traces`, answered with an
//! empty export response; not counted in `total`), and `dpop` those carrying
//! `Authorization: DPoP` with a JWT-shaped token and a JWT-shaped `DPoP` proof beside it.
//!
//! It is deliberately as cheap as hyper allows, so that it is not what the benchmark measures.
//! Usage: `bench-upstream 127.0.0.1:PORT`.

use std::convert::Infallible;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;

static TOTAL: AtomicU64 = AtomicU64::new(0);
static BEARER: AtomicU64 = AtomicU64::new(0);
static IDENTITY: AtomicU64 = AtomicU64::new(0);
static ASSERTION: AtomicU64 = AtomicU64::new(0);
static EXCHANGED: AtomicU64 = AtomicU64::new(0);
static TRACED: AtomicU64 = AtomicU64::new(0);
static EXPORTS: AtomicU64 = AtomicU64::new(0);
static DPOP: AtomicU64 = AtomicU64::new(0);

const BODY: &[u8] = br#"{"items":[{"id":1,"name":"first"},{"id":2,"name":"second"}],"next":null}"#;

fn is_jwt(token: &[u8]) -> bool {
    token.len() > 20 && token.iter().filter(|&&b| b == b'.').count() == 2
}

fn bearer(value: Option<&HeaderValue>) -> Option<&[u8]> {
    value.and_then(|v| v.as_bytes().strip_prefix(b"Bearer "))
}

async fn serve(request: Request<Incoming>) -> Result<Response<Full<Bytes>>, Infallible> {
    if request.uri().path() == "/__count" {
        let count = |counter: &AtomicU64| counter.load(Ordering::Relaxed);
        let body = format!(
            r#"{{"total":{},"bearer":{},"identity":{},"assertion":{},"exchanged":{},"traced":{},"exports":{},"dpop":{}}}"#,
            count(&TOTAL),
            count(&BEARER),
            count(&IDENTITY),
            count(&ASSERTION),
            count(&EXCHANGED),
            count(&TRACED),
            count(&EXPORTS),
            count(&DPOP)
        );
        return Ok(Response::new(Full::new(Bytes::from(body))));
    }
    if request.uri().path() == "/v1/traces" {
        let whole = http_body_util::BodyExt::collect(request.into_body()).await;
        if whole.is_ok_and(|body| !body.to_bytes().is_empty()) {
            EXPORTS.fetch_add(1, Ordering::Relaxed);
        }
        let mut response = Response::new(Full::new(Bytes::new()));
        response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/x-protobuf"));
        return Ok(response);
    }
    TOTAL.fetch_add(1, Ordering::Relaxed);
    let headers = request.headers();
    let bound = headers.get(AUTHORIZATION).and_then(|v| v.as_bytes().strip_prefix(b"DPoP "));
    if bound.is_some_and(is_jwt) && headers.get("dpop").is_some_and(|v| is_jwt(v.as_bytes())) {
        DPOP.fetch_add(1, Ordering::Relaxed);
    }
    match bearer(headers.get(AUTHORIZATION)) {
        Some(token) if is_jwt(token) => {
            BEARER.fetch_add(1, Ordering::Relaxed);
            if headers.get("x-auth-request-user").is_some_and(|v| !v.is_empty()) {
                IDENTITY.fetch_add(1, Ordering::Relaxed);
            }
            if headers.get("x-cloakroom-assertion").is_some_and(|v| is_jwt(v.as_bytes())) {
                ASSERTION.fetch_add(1, Ordering::Relaxed);
            }
            if headers.get("traceparent").is_some_and(|v| v.len() == 55) {
                TRACED.fetch_add(1, Ordering::Relaxed);
            }
        }
        Some(token) if token.starts_with(b"xchg_") && token.len() > 20 => {
            EXCHANGED.fetch_add(1, Ordering::Relaxed);
        }
        _ => {}
    }
    let mut response = Response::new(Full::new(Bytes::from_static(BODY)));
    response.headers_mut().insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    Ok(response)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let addr = std::env::args().nth(1).unwrap_or_else(|| "127.0.0.1:9700".into());
    let listener = tokio::net::TcpListener::bind(&addr).await?;
    println!("listening on {}", listener.local_addr()?);
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(async move {
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), service_fn(serve)).await;
        });
    }
}
