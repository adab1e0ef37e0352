//! [`App`]: the state every request shares. Handlers receive it; they never call back up into
//! `dispatch`, which routes requests to them.

use crate::clock::SharedClock;
use crate::config::Config;
use crate::csrf::CsrfGuard;
use crate::metrics::Metrics;
use crate::oidc::{Provider, Providers};
use crate::router::Router;
use crate::session::Sessions;
use crate::session::redis::RedisSetupError;
use crate::spa::Spa;
use crate::tokens::{RefreshTiming, TokenService};
use crate::upstream::{HttpClient, Upstream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

pub struct App {
    pub config: Config,
    pub router: Router,
    pub sessions: Arc<Sessions>,
    /// The OpenID providers: `[oidc]` (the default) and `[[providers]]`.
    pub providers: Arc<Providers>,
    pub tokens: Arc<TokenService>,
    /// One pooled client per route, same index as `config.routes`.
    pub upstreams: Vec<Upstream>,
    pub spa: Option<Spa>,
    pub metrics: Arc<Metrics>,
    /// `[spa] dev_server`: its client (pages pass through, hot-reload WebSockets included).
    pub dev_server: Option<Upstream>,
    /// The anti-CSRF guard as configured.
    pub csrf: CsrfGuard,
    /// Signs the identity assertions of `[routes.identity]` and publishes their keys.
    pub assertions: crate::identity::assertion::Signer,
    /// The header names an identity travels in, on any route: removed from every request
    /// going upstream before the route's own are set.
    pub identity_headers: Vec<http::HeaderName>,
    /// DPoP routes' session keys, read once while in use.
    pub dpop_keys: Arc<crate::crypto::dpop::KeyCache>,
    /// The one clock every part reads (injected: tests move it without sleeping).
    clock: SharedClock,
    /// Shared by every configuration this process runs: a shutdown is the process's.
    lifecycle: Arc<Lifecycle>,
}

#[derive(Default)]
struct Lifecycle {
    shutting_down: AtomicBool,
    /// Wakes the shutdown delay early (a second signal).
    hurry: tokio::sync::Notify,
}

/// The parts of a running [`App`] a reloaded configuration keeps: the store (its sessions), the
/// metrics, the clock, the refresh locks, the shutdown state. `None` at start.
struct Kept<'a>(Option<&'a App>);

impl App {
    /// Fails only when the session store cannot be set up (an unusable Redis URL).
    pub fn new(config: Config, clock: SharedClock) -> Result<Self, RedisSetupError> {
        let metrics = Arc::new(Metrics::new());
        let sessions = Arc::new(Sessions::new(&config.session, clock.clone(), metrics.store())?);
        Ok(Self::build(config, clock, metrics, sessions, Kept(None)))
    }

    /// This app with a new configuration (a reload): new routes, providers (not yet
    /// discovered), SPA, limits and session keys, over the same store, metrics, clock, refresh
    /// locks and shutdown state. What the store was built with cannot change
    /// ([`crate::config::FixedAtStart`]). A configuration with ephemeral keys (none
    /// configured) keeps the running ones: new random keys would end every session. The
    /// serving certificate stays the one the listener holds.
    pub fn reloaded(&self, mut config: Config) -> Self {
        if config.session.ephemeral_keys {
            config.session.keys = self.config.session.keys.clone();
        }
        // The listener's certificate, which SIGHUP reloads in place (its files are fixed).
        config.server.tls = self.config.server.tls.clone();
        let sessions = Arc::new(self.sessions.with_keys(&config.session));
        Self::build(config, self.clock.clone(), self.metrics.clone(), sessions, Kept(Some(self)))
    }

    /// Another frontend of this instance (`[[frontends]]`): its own configuration over the same
    /// store, metrics, clock, refresh locks and shutdown state, its sessions sealed under keys
    /// of its own ([`crate::crypto::seal::KeyRing::for_frontend`]), so that a ticket from one
    /// frontend opens nothing at another.
    pub fn sibling(&self, mut config: Config) -> Self {
        config.session.keys = self.config.session.keys.for_frontend(&config.server.public_origin);
        config.session.ephemeral_keys = false;
        config.server.tls = self.config.server.tls.clone();
        let sessions = Arc::new(self.sessions.with_keys(&config.session));
        Self::build(config, self.clock.clone(), self.metrics.clone(), sessions, Kept(Some(self)))
    }

    fn build(config: Config, clock: SharedClock, metrics: Arc<Metrics>, sessions: Arc<Sessions>, kept: Kept) -> Self {
        let router = Router::new(&config.routes);
        let earlier = |oidc: &crate::config::OidcConfig| kept.0.and_then(|app| app.providers.get(Some(&oidc.id)));
        let provider = |oidc: &crate::config::OidcConfig| {
            let provider = Provider::new(oidc.clone(), clock.clone(), metrics.clone());
            Arc::new(match earlier(oidc) {
                Some(earlier) => provider.succeeding(earlier),
                None => provider,
            })
        };
        let providers =
            Arc::new(Providers::new(provider(&config.oidc), config.providers.iter().map(provider).collect()));
        let timing = RefreshTiming {
            margin: config.oidc.refresh_margin,
            lock_wait: config.oidc.timeout * 2,
            refresh_timeout: config.oidc.refresh_timeout,
            retry_backoff: config.oidc.refresh_retry_backoff,
        };
        let tokens = match kept.0 {
            Some(app) => Arc::new(app.tokens.succeeding(providers.clone(), timing)),
            None => Arc::new(TokenService::new(providers.clone(), timing, metrics.clone())),
        };
        let upstreams = config
            .routes
            .iter()
            .map(|r| {
                let client = HttpClient::with_tls(r.connect_timeout, r.tls.clone());
                Upstream::new(client, metrics.upstream(&r.prefix), &r.upstream_authority)
            })
            .collect();
        let spa = config.spa.as_ref().map(|s| Spa::new(s.dir.clone(), s.content_security_policy.clone()));
        let dev_server = config.spa_dev_server.as_ref().map(|(_, authority)| {
            Upstream::new(
                HttpClient::new(std::time::Duration::from_secs(5)),
                metrics.upstream("spa-dev-server"),
                authority,
            )
        });
        let csrf =
            CsrfGuard::new(config.csrf.header.clone(), config.server.public_origin.clone(), config.spa_origins.clone());
        let assertions = crate::identity::assertion::Signer::new(&config.session.keys);
        let identity_headers = crate::identity::spoofable(&config.routes);
        Self {
            config,
            router,
            sessions,
            providers,
            tokens,
            upstreams,
            spa,
            metrics,
            dev_server,
            csrf,
            assertions,
            identity_headers,
            dpop_keys: kept.0.map(|app| app.dpop_keys.clone()).unwrap_or_default(),
            clock,
            lifecycle: kept.0.map(|app| app.lifecycle.clone()).unwrap_or_default(),
        }
    }

    /// Now, in unix seconds, by the injected clock.
    pub fn now(&self) -> u64 {
        self.clock.now()
    }

    pub fn is_ready(&self) -> bool {
        !self.lifecycle.shutting_down.load(Ordering::Relaxed)
            && self.providers.default_provider().is_ready()
            && self.sessions.store().is_healthy()
    }

    pub(crate) fn begin_shutdown(&self) {
        self.lifecycle.shutting_down.store(true, Ordering::Relaxed);
    }

    pub fn is_shutting_down(&self) -> bool {
        self.lifecycle.shutting_down.load(Ordering::Relaxed)
    }

    /// Cuts the shutdown delay short (a second SIGTERM or Ctrl-C).
    pub fn hurry_shutdown(&self) {
        self.lifecycle.hurry.notify_one();
    }

    pub(crate) async fn hurried(&self) {
        self.lifecycle.hurry.notified().await;
    }
}
