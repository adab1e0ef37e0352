//! # cloakroom
//!
//! A Backend-for-Frontend reverse proxy: the browser hands its tokens over at the door and keeps
//! only a ticket. cloakroom runs the OpenID Connect authorization-code flow as a confidential
//! client, keeps the tokens sealed in a server-side store, and gives the browser one opaque
//! `__Host-` cookie.
//!
//! ## The path of a request
//!
//! ```text
//! server        accept, HTTP/1.1 or h2c, one task per connection      (server/)
//!               the admin listener: health, metrics, the kill switch  (server/admin.rs)
//!   dispatch    client address, request id, refusals, access log      (dispatch.rs, forwarded.rs)
//!   router      path → Bff(endpoint) | Api(route) | BadPath | NotFound (router.rs)
//!   ├─ bff/     login → callback (stale.rs) → user → logout → sessions (bff/*.rs)
//!   │             back- and front-channel logout from the provider    (bff/*channel.rs)
//!   │             pending logins (in the login cookie) and sessions   (session/)
//!   │             the identity provider                               (oidc/)
//!   ├─ proxy/   in phases: admit (method, CSRF, size)                 (proxy/admit.rs, csrf.rs)
//!   │             → credential (session, rules, step-up, token)       (proxy/credential.rs)
//!   │             → upstream request (hygiene, forwarding, Bearer)    (proxy/upstream_request.rs)
//!   │             → upstream answer (step-up asked, token rejected)   (proxy/upstream_answer.rs)
//!   └─ spa      static files, index.html for client-side routes        (spa.rs)
//!                 session/: cookie.rs → ticket.rs → store (memory/, redis/); claims.rs
//!                 tokens.rs: refresh when due, one at a time per session (the store's lease)
//!                 upstream/: the one HTTP client, for upstreams and the provider alike
//!                   (connect.rs: TCP, TLS, handshakes; pool.rs: kept-alive connections)
//! crypto/       the leaf: sealing (AEAD), random, hashing, the client's signing key
//! ```
//!
//! Where the next concerns go: token exchange per route and a DPoP key in the proxy's
//! `credential` phase; DPoP proofs and identity headers in its `upstream_request` phase, beside
//! the token; a trace span around each phase in `proxy::forward` and around the sign-in in
//! `bff/callback.rs`.
//!
//! Handlers get the shared state ([`app::App`]) and never call back up into [`dispatch`].
//! Errors become HTTP in one table ([`error`]), with every lower layer's error converted there;
//! configuration is validated once, a section at a time ([`config`]). The binary
//! (`src/bin/cloakroom/`) parses the command line and holds `cloakroom audit`, a client that is
//! not part of the proxy.

// Checking that a request's future is `Send` walks through redis-rs's Sentinel and Cluster
// connection types, which are deeper than the default limit allows.
#![recursion_limit = "256"]
#![forbid(unsafe_code)]

pub mod app;
pub mod bff;
pub mod client_slots;
pub mod clock;
pub mod config;
pub mod cors;
pub mod crypto;
pub mod csrf;
#[cfg(feature = "demo")]
pub mod demo;
pub mod dispatch;
pub mod error;
pub mod forwarded;
#[cfg(any(test, feature = "fuzzing"))]
pub mod fuzzing;
pub mod identity;
pub mod metrics;
pub mod oidc;
pub mod proxy;
pub mod reload;
pub mod respond;
pub mod router;
pub mod secret;
pub mod server;
pub mod session;
pub mod spa;
pub mod telemetry;
pub mod tls;
pub mod tokens;
pub mod upstream;

use app::App;
use clock::SharedClock;
use config::Config;
use server::Listeners;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// Makes aws-lc-rs the process-wide rustls provider (idempotent). rustls panics at first use
/// when it cannot tell which provider to use; doing this at start-up settles it.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}

/// A running cloakroom (in this process).
pub struct Server {
    pub addr: SocketAddr,
    pub admin_addr: SocketAddr,
    /// The configuration being served (a reload swaps it).
    pub live: Arc<reload::Live>,
    /// DEVELOPMENT ONLY: the demo's issuer, when `[demo]` started one.
    #[cfg(feature = "demo")]
    pub dev_issuer: Option<demo::issuer::DevIssuer>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
}

impl Server {
    /// Graceful stop: stop accepting, drain in-flight requests, return.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        let _ = (&mut self.task).await;
    }

    /// Resolves when the server has stopped.
    pub async fn stopped(&mut self) {
        let _ = (&mut self.task).await;
    }

    /// Reloads the serving certificate from its files (what SIGHUP does). Handshakes from now on
    /// get the new one; open connections are left alone. On error the old one stays.
    pub fn reload_tls(&self) -> Result<(), tls::TlsFileError> {
        reload_tls(&self.app())
    }

    /// The configuration serving requests now.
    pub fn app(&self) -> Arc<App> {
        self.live.app()
    }

    /// Serves `config` from now on (in-flight requests finish on theirs), or refuses it and
    /// keeps the running one ([`reload::Live::reload`]).
    pub async fn reload(&self, config: Config) -> Result<u64, reload::ReloadError> {
        self.live.reload(config).await
    }

    /// A handle that triggers [`Server::stop`]'s first step from elsewhere (a signal handler).
    pub fn take_stop_trigger(&mut self) -> Option<oneshot::Sender<()>> {
        self.stop.take()
    }
}

/// Starts serving on the given listeners and loads the provider metadata in the background
/// (readiness turns true once it is loaded).
pub fn start(config: Config, listeners: Listeners, clock: SharedClock) -> std::io::Result<Server> {
    install_crypto_provider();
    for warning in &config.warnings {
        tracing::warn!("INSECURE OR EPHEMERAL SETTING: {warning}");
    }
    let addr = listeners.main.local_addr()?;
    let admin_addr = listeners.admin.local_addr()?;
    #[cfg(feature = "demo")]
    let dev_issuer = demo::start(&config, clock.clone())?;
    let live = Arc::new(reload::Live::new(
        App::new(config, clock).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidInput, e))?,
    ));
    for provider in live.all().iter().flat_map(|app| app.providers.all()) {
        tokio::spawn(oidc::discover_until_ready(provider.clone()));
    }
    let app = live.app();
    if let Some(redis) = app.sessions.store().redis() {
        tokio::spawn(redis.clone().watch_health());
        tokio::spawn(redis.clone().watch_invalidations());
    }
    let (stop, stopped) = oneshot::channel::<()>();
    tracing::info!(%addr, %admin_addr, origin = %app.config.server.public_origin, "cloakroom listening");
    let task = tokio::spawn(server::serve(live.clone(), listeners, async move {
        let _ = stopped.await;
    }));
    Ok(Server {
        addr,
        admin_addr,
        live,
        #[cfg(feature = "demo")]
        dev_issuer,
        stop: Some(stop),
        task,
    })
}

/// The runtime `cloakroom run` serves on, with `server.worker_threads` threads (0: one per CPU
/// available to the process, which honours its CPU affinity and cgroup quota).
///
/// One thread gets tokio's single-threaded scheduler rather than a one-worker multi-threaded
/// one: measured with `bench/run` on one CPU, the multi-threaded scheduler's cross-thread
/// wake-ups cost about 70% more CPU per proxied request. Nothing in cloakroom blocks its runtime
/// thread (no `block_in_place`), so both schedulers serve the same code.
pub fn runtime(worker_threads: Option<std::num::NonZeroUsize>) -> std::io::Result<(tokio::runtime::Runtime, usize)> {
    let threads =
        worker_threads.or_else(|| std::thread::available_parallelism().ok()).map_or(1, std::num::NonZeroUsize::get);
    let runtime = if threads == 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()?
    } else {
        tokio::runtime::Builder::new_multi_thread().worker_threads(threads).enable_all().build()?
    };
    Ok((runtime, threads))
}

/// Binds the configured addresses, serves, and stops gracefully on SIGTERM or SIGINT.
pub async fn run(config: Config) -> std::io::Result<()> {
    let listeners = Listeners::bind(config.server.listen, config.server.admin_listen).await?;
    let mut server = start(config, listeners, Arc::new(clock::SystemClock))?;
    // SIGHUP: the certificate from its files, and the configuration from its file.
    #[cfg(unix)]
    {
        let live = server.live.clone();
        let mut hangup = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup())?;
        tokio::spawn(async move {
            while hangup.recv().await.is_some() {
                let _ = reload_tls(&live.app());
                let _ = live.reload_file().await;
            }
        });
    }
    let trigger = server.take_stop_trigger();
    tokio::select! {
        () = shutdown_signal() => {
            tracing::info!("shutting down: draining in-flight requests");
            if let Some(trigger) = trigger {
                let _ = trigger.send(());
            }
            // A second signal skips what is left of the shutdown delay.
            let app = server.app();
            tokio::spawn(async move {
                shutdown_signal().await;
                app.hurry_shutdown();
            });
            server.stopped().await;
        }
        () = server.stopped() => {}
    }
    Ok(())
}

fn reload_tls(app: &App) -> Result<(), tls::TlsFileError> {
    let Some(tls) = &app.config.server.tls else { return Ok(()) };
    match tls.reload() {
        Ok(()) => {
            tracing::info!("TLS certificate reloaded");
            Ok(())
        }
        Err(e) => {
            tracing::error!(error = %e, "TLS certificate reload failed; still serving the previous one");
            Err(e)
        }
    }
}

/// Calls a running cloakroom's admin listener (`cloakroom sessions …`, `cloakroom
/// healthcheck`): `method` on `target` (a path and query), with the operator's bearer token
/// when one is given, waiting at most `wait` for the answer; its status and body. A wildcard
/// admin address is called on loopback.
pub async fn admin_call(
    admin: SocketAddr,
    token: Option<&secret::Secret>,
    method: http::Method,
    target: &str,
    wait: std::time::Duration,
) -> Result<(http::StatusCode, String), AdminCallError> {
    use http_body_util::BodyExt;
    install_crypto_provider();
    let url = format!("http://{}{target}", loopback_if_wildcard(admin));
    let mut request = http::Request::builder().method(method).uri(&url);
    if let Some(token) = token {
        request = request.header(http::header::AUTHORIZATION, format!("Bearer {}", token.expose()));
    }
    let unreachable = |reason: String| AdminCallError::Unreachable { url: url.clone(), reason };
    let request = request.body(respond::empty()).map_err(|e| unreachable(e.to_string()))?;
    let client = upstream::HttpClient::new(std::time::Duration::from_secs(3));
    let response = client.send(request, wait).await.map_err(|e| unreachable(e.to_string()))?;
    let status = response.status();
    let body = response.into_body().collect().await.map_err(|e| unreachable(e.to_string()))?.to_bytes();
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn loopback_if_wildcard(admin: SocketAddr) -> SocketAddr {
    match admin.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => SocketAddr::from(([127, 0, 0, 1], admin.port())),
        ip if ip.is_unspecified() => SocketAddr::from((std::net::Ipv6Addr::LOCALHOST, admin.port())),
        _ => admin,
    }
}

/// Probes a running cloakroom's `/healthz` on its admin listener (`cloakroom healthcheck`, for
/// containers without a shell). A wildcard admin address is probed on loopback.
pub async fn healthcheck(admin: SocketAddr) -> Result<(), AdminCallError> {
    let wait = std::time::Duration::from_secs(3);
    match admin_call(admin, None, http::Method::GET, "/healthz", wait).await? {
        (status, _) if status.is_success() => Ok(()),
        (status, _) => {
            Err(AdminCallError::Unhealthy { url: format!("http://{}/healthz", loopback_if_wildcard(admin)), status })
        }
    }
}

/// Why a call to the admin listener failed: nothing answered, or (`cloakroom healthcheck`) it
/// answered that it is not healthy.
#[derive(Debug, thiserror::Error)]
pub enum AdminCallError {
    #[error("{url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("{url} answered {status}")]
    Unhealthy { url: String, status: http::StatusCode },
}

async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = tokio::signal::ctrl_c() => {}
                }
            }
            Err(_) => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
