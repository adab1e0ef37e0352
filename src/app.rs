//! [`App`]: the shared state, and [`App::handle`], where every request starts.

use crate::clock::SharedClock;
use crate::config::Config;
use crate::error::ApiError;
use crate::forwarded::ClientAddr;
use crate::metrics::Metrics;
use crate::oidc::Provider;
use crate::respond::Body;
use crate::router::{Route, Router};
use crate::session::Sessions;
use crate::spa::Spa;
use crate::tokens::{RefreshTiming, TokenService};
use crate::upstream::{HttpClient, Upstream};
use crate::{bff, csrf, forwarded, proxy, telemetry};
use http::header::SET_COOKIE;
use http::{HeaderMap, Request, Response};
use hyper::body::Incoming;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;
use tracing::Instrument;

pub struct App {
    pub config: Config,
    pub router: Router,
    pub sessions: Arc<Sessions>,
    pub provider: Arc<Provider>,
    pub tokens: Arc<TokenService>,
    /// One pooled client per route, same index as `config.routes`.
    pub upstreams: Vec<Upstream>,
    pub spa: Option<Spa>,
    pub metrics: Arc<Metrics>,
    /// `[spa] dev_server`: its client (pages pass through, hot-reload WebSockets included).
    dev_server: Option<Upstream>,
    shutting_down: AtomicBool,
    /// Wakes the shutdown delay early (a second signal).
    hurry: tokio::sync::Notify,
}

impl App {
    /// Fails only when the session store cannot be set up (an unusable Redis URL).
    pub fn new(config: Config, clock: SharedClock) -> Result<Self, String> {
        let router = Router::new(&config.routes);
        let sessions = Arc::new(Sessions::new(&config.session, clock.clone())?);
        let metrics = Arc::new(Metrics::new());
        let provider = Arc::new(Provider::new(config.oidc.clone(), clock, metrics.clone()));
        let timing = RefreshTiming {
            margin: config.oidc.refresh_margin,
            lock_wait: config.oidc.timeout * 2,
            refresh_timeout: config.oidc.refresh_timeout,
            retry_backoff: config.oidc.refresh_retry_backoff,
        };
        let tokens = Arc::new(TokenService::new(provider.clone(), timing, metrics.clone()));
        let upstreams = config
            .routes
            .iter()
            .map(|r| Upstream {
                client: HttpClient::with_tls(r.connect_timeout, r.tls.clone()),
                metrics: metrics.upstream(&r.prefix),
            })
            .collect();
        let spa = config.spa.as_ref().map(|s| Spa::new(s.dir.clone(), s.content_security_policy.clone()));
        let dev_server = config.spa_dev_server.as_ref().map(|_| Upstream {
            client: HttpClient::new(std::time::Duration::from_secs(5)),
            metrics: metrics.upstream("spa-dev-server"),
        });
        Ok(Self {
            config,
            router,
            sessions,
            provider,
            tokens,
            upstreams,
            spa,
            metrics,
            dev_server,
            shutting_down: AtomicBool::new(false),
            hurry: tokio::sync::Notify::new(),
        })
    }

    /// One request, start to finish. `proto` is how it reached cloakroom (`http` or `https`).
    pub async fn handle(
        &self,
        mut request: Request<Incoming>,
        peer: SocketAddr,
        proto: &'static str,
    ) -> Response<Body> {
        let started = Instant::now();
        let server = &self.config.server;
        let client = forwarded::client_addr(
            peer,
            proto,
            request.headers(),
            &server.trusted_proxies,
            server.trusted_proxy_header,
        );
        // Checked or made here, and set on the request: upstreams see the id the logs show. Only
        // a trusted proxy's id is adopted; a client's would let it choose what the logs correlate.
        let incoming_id = if client.via_trusted_proxy { request.headers().get(X_REQUEST_ID) } else { None };
        let request_id = telemetry::request_id_from(incoming_id);
        request.headers_mut().insert(X_REQUEST_ID, request_id.clone());
        let request_id_text = request_id.to_str().unwrap_or_default();
        let method = request.method().clone();
        let http1 = request.version() == http::Version::HTTP_11;
        let uri = request.uri().clone(); // shares its bytes: the access log's path, no copy
        let path = uri.path();
        let route = self.router.route(path);
        let refusal = refuse_malformed(&request);
        let span = tracing::info_span!("request", id = %request_id_text);
        let response = async {
            if let Some(error) = refusal {
                return error.response();
            }
            match route {
                Route::Bff(endpoint) => bff::handle(self, endpoint, request, client).await,
                Route::Api(index) => proxy::forward(self, index, request, client).await,
                Route::BadPath => ApiError::BadPath.response(),
                Route::NotFound => match (&self.spa, &self.dev_server) {
                    (Some(spa), _) => spa.serve(&request).await,
                    (None, Some(dev)) => self.pass_to_dev_server(dev, request, client).await,
                    (None, None) => ApiError::NotFound.response(),
                },
                Route::BffUnknown => ApiError::NotFound.response(),
            }
        }
        .instrument(span)
        .await;
        let mut response = response;
        response.headers_mut().insert(X_REQUEST_ID, request_id.clone());
        // Shutting down: each HTTP/1.1 keep-alive client learns it with its next answer and
        // leaves, instead of finding its pooled connection closed under a request later.
        // (HTTP/2 clients get a GOAWAY from the connection itself; an upgrade keeps its headers.)
        if http1 && self.is_shutting_down() && response.status() != http::StatusCode::SWITCHING_PROTOCOLS {
            response.headers_mut().insert(http::header::CONNECTION, http::HeaderValue::from_static("close"));
        }
        if client.proto == "https"
            && let Some(hsts) = &self.config.server.hsts
        {
            response.headers_mut().entry(http::header::STRICT_TRANSPORT_SECURITY).or_insert_with(|| hsts.clone());
        }
        let label = if route == Route::NotFound && self.spa.is_some() { "spa" } else { route_label(route) };
        let status = response.status().as_u16();
        let elapsed = started.elapsed();
        self.metrics.request(label, status, elapsed);
        tracing::info!(
            target: "cloakroom::access",
            id = %request_id_text,
            client = %client.ip_text(),
            method = %method,
            path = %path,
            route = label,
            status,
            latency_ms = elapsed.as_secs_f64() * 1000.0,
        );
        response
    }

    /// The frontend dev server gets the page requests as they are (no token, cloakroom's cookies
    /// stripped); its hot-reload WebSocket needs cloakroom's own Origin like any other.
    async fn pass_to_dev_server(
        &self,
        dev: &Upstream,
        request: Request<Incoming>,
        client: ClientAddr,
    ) -> Response<Body> {
        let Some((scheme, authority)) = &self.config.spa_dev_server else { return ApiError::NotFound.response() };
        if proxy::is_websocket_upgrade(request.headers())
            && let Err(e) = csrf::websocket_origin(request.headers(), &self.config.server.public_origin)
        {
            return e.response();
        }
        let path = request.uri().path_and_query().map_or("/", |p| p.as_str()).to_string();
        let relay = proxy::Relay {
            target: proxy::Target { scheme, authority, path },
            token: None,
            strip_authorization: false,
            upstream: dev,
            timeout: std::time::Duration::from_secs(60),
            max_body: None,
            from: client,
        };
        proxy::relay(self, request, relay).await
    }

    pub fn csrf_check(&self, headers: &HeaderMap) -> Result<(), ApiError> {
        csrf::check(headers, &self.config.csrf.header, &self.config.server.public_origin)
    }

    /// Adds the header that deletes a session cookie which opened nothing.
    pub fn clear_session_cookie(&self, mut response: Response<Body>) -> Response<Body> {
        response.headers_mut().append(SET_COOKIE, self.sessions.cookies().clear_session());
        response
    }

    pub fn is_ready(&self) -> bool {
        !self.shutting_down.load(Ordering::Relaxed) && self.provider.is_ready() && self.sessions.store().is_healthy()
    }

    pub(crate) fn begin_shutdown(&self) {
        self.shutting_down.store(true, Ordering::Relaxed);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.shutting_down.load(Ordering::Relaxed)
    }

    /// Cuts the shutdown delay short (a second SIGTERM or Ctrl-C).
    pub fn hurry_shutdown(&self) {
        self.hurry.notify_one();
    }

    pub(crate) async fn hurried(&self) {
        self.hurry.notified().await;
    }
}

const X_REQUEST_ID: http::HeaderName = http::HeaderName::from_static("x-request-id");

/// Requests no route may serve, refused before any: `CONNECT` and `TRACE` (never forwarded with a
/// token: one would open a tunnel, the other echo the credentials), and a `Host` that is missing
/// on HTTP/1.1 or repeated (RFC 9112 §3.2 asks for a 400; two hosts are two opinions of where
/// the request goes).
pub(crate) fn refuse_malformed<B>(request: &Request<B>) -> Option<ApiError> {
    if request.method() == http::Method::CONNECT || request.method() == http::Method::TRACE {
        return Some(ApiError::MethodNotAllowed);
    }
    let mut hosts = request.headers().get_all(http::header::HOST).iter();
    match (hosts.next(), hosts.next()) {
        (_, Some(_)) => Some(ApiError::BadHost),
        (None, None) if request.version() == http::Version::HTTP_11 => Some(ApiError::BadHost),
        _ => None,
    }
}

fn route_label(route: Route) -> &'static str {
    match route {
        Route::Bff(_) | Route::BffUnknown => "bff",
        Route::Api(_) => "api",
        Route::BadPath => "bad_path",
        Route::NotFound => "not_found",
    }
}
