//! Listeners: the main one (HTTP/1.1 and h2c via hyper-util's auto builder, one task per
//! connection) and the admin one (`/healthz`, `/readyz`), plus graceful shutdown.

use crate::app::App;
use crate::respond::{Body, full};
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;

pub struct Listeners {
    pub main: TcpListener,
    pub admin: TcpListener,
}

impl Listeners {
    pub async fn bind(main: SocketAddr, admin: SocketAddr) -> std::io::Result<Self> {
        Ok(Self { main: TcpListener::bind(main).await?, admin: TcpListener::bind(admin).await? })
    }

    /// From already-bound sockets (tests bind first to learn the port for `public_url`).
    pub fn from_std(main: std::net::TcpListener, admin: std::net::TcpListener) -> std::io::Result<Self> {
        main.set_nonblocking(true)?;
        admin.set_nonblocking(true)?;
        Ok(Self { main: TcpListener::from_std(main)?, admin: TcpListener::from_std(admin)? })
    }
}

/// Limits for the main listener; side listeners (admin, demo) use the defaults.
struct Limits {
    max_header_bytes: usize,
    header_read_timeout: Duration,
}

const SIDE_LISTENER: Limits = Limits { max_header_bytes: 64 * 1024, header_read_timeout: Duration::from_secs(30) };

fn builder(limits: &Limits) -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_buf_size(limits.max_header_bytes);
    builder.http2().timer(TokioTimer::new()).max_header_list_size(limits.max_header_bytes as u32);
    builder
}

/// Serves until `shutdown` resolves, then stops accepting, marks the app not ready, and gives
/// in-flight requests up to `server.shutdown_timeout` to finish.
pub async fn serve(app: Arc<App>, listeners: Listeners, shutdown: impl Future<Output = ()>) {
    let admin = tokio::spawn(serve_admin(app.clone(), listeners.admin));
    let graceful = GracefulShutdown::new();
    let server = &app.config.server;
    let builder =
        builder(&Limits { max_header_bytes: server.max_header_bytes, header_read_timeout: server.header_read_timeout });
    // At most max_connections served at once: past that, new ones wait in the listen backlog.
    let slots = Arc::new(tokio::sync::Semaphore::new(server.max_connections));
    tokio::pin!(shutdown);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot,
            () = &mut shutdown => break,
        };
        let Ok(slot) = slot else { break };
        let accepted = tokio::select! {
            accepted = listeners.main.accept() => accepted,
            () = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // Out of file descriptors and the like: back off instead of spinning.
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let app = app.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let app = app.clone();
            async move { Ok::<_, Infallible>(app.handle(request, peer).await) }
        });
        let connection = builder.serve_connection_with_upgrades(TokioIo::new(stream), service).into_owned();
        let connection = graceful.watch(connection);
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
            drop(slot);
        });
    }
    app.begin_shutdown();
    drop(listeners.main);
    let deadline = app.config.server.shutdown_timeout;
    if tokio::time::timeout(deadline, graceful.shutdown()).await.is_err() {
        tracing::warn!(?deadline, "shutdown deadline reached with requests still in flight");
    }
    admin.abort();
}

/// A plain HTTP/1.1 server for a side service (the demo's issuer and API).
pub async fn serve_fn<F, Fut>(listener: TcpListener, handler: F)
where
    F: Fn(Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<Body>> + Send + 'static,
{
    let builder = builder(&SIDE_LISTENER);
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let handler = handler.clone();
        let service = service_fn(move |request: Request<Incoming>| {
            let handler = handler.clone();
            async move { Ok::<_, Infallible>(handler(request).await) }
        });
        let connection = builder.serve_connection(TokioIo::new(stream), service).into_owned();
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}

async fn serve_admin(app: Arc<App>, listener: TcpListener) {
    serve_fn(listener, move |request: Request<Incoming>| {
        let app = app.clone();
        async move { admin_response(&app, request.uri().path()) }
    })
    .await
}

fn admin_response(app: &App, path: &str) -> Response<Body> {
    let (status, body) = match path {
        "/healthz" => (StatusCode::OK, "ok\n"),
        "/readyz" if app.is_ready() => (StatusCode::OK, "ready\n"),
        "/readyz" => (StatusCode::SERVICE_UNAVAILABLE, "not ready\n"),
        _ => (StatusCode::NOT_FOUND, "not found\n"),
    };
    let mut response = Response::new(full(body));
    *response.status_mut() = status;
    response
}
