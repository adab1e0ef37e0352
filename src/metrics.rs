//! Prometheus metrics, served in the text format at `/metrics` on the admin listener.
//!
//! One registry per running cloakroom (not a process global), so several in one process (tests)
//! count apart. Labels are low-cardinality by construction: route classes, route prefixes from
//! the configuration, status codes and fixed outcome names; never a path, user or session.
//! The reference of every series is in the README ("Metrics").

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::time::Duration;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct StoreErrorLabels {
    kind: &'static str,
}

/// The shared store's own counters (`cloakroom_store_errors_total{kind}`,
/// `cloakroom_store_reconnects_total`), handed to the store; unregistered by default.
#[derive(Clone, Debug, Default)]
pub struct StoreMetrics {
    errors: Family<StoreErrorLabels, Counter>,
    reconnects: Counter,
    copy_hits: Counter,
    copy_misses: Counter,
}

impl StoreMetrics {
    /// A failed store command, by kind: `timeout`, `refused`, `connection`, `readonly` (a
    /// primary turned replica, e.g. mid-failover), `cluster` (slots not served), `other`.
    pub fn error(&self, kind: &'static str) {
        self.errors.get_or_create(&StoreErrorLabels { kind }).inc();
    }

    /// A new connection made after one failed (or was dropped to find a moved primary).
    pub fn reconnect(&self) {
        self.reconnects.inc();
    }

    /// A session read from the replica's copy (Redis store), or read from Redis while the
    /// copy serves (not there yet, changed, or its use due to be recorded).
    pub fn copy_read(&self, hit: bool) {
        if hit {
            self.copy_hits.inc()
        } else {
            self.copy_misses.inc()
        };
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RequestLabels {
    route: &'static str,
    status: u16,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteLabels {
    route: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RoutePrefixLabels {
    route: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct RouteOutcomeLabels {
    route: String,
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderLabels {
    provider: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: &'static str,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamLabels {
    upstream: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct UpstreamErrorLabels {
    upstream: String,
    kind: &'static str,
}

/// How an upstream call can fail (`cloakroom_upstream_errors_total{kind}`).
const UPSTREAM_ERROR_KINDS: [&str; 4] = ["connect", "timeout", "failed", "body_too_large"];

/// One upstream's series, looked up once at start-up: a proxied call then only touches atomics
/// (no label allocation or family lookup on the request path).
#[derive(Clone, Debug)]
pub struct UpstreamMetrics {
    seconds: Histogram,
    errors: [Counter; UPSTREAM_ERROR_KINDS.len()],
}

impl UpstreamMetrics {
    /// A call that got a response head (`error`: `None`), or failed with a kind of
    /// [`UPSTREAM_ERROR_KINDS`] (an unknown kind counts as `failed`).
    pub fn record(&self, elapsed: Duration, error: Option<&str>) {
        match error {
            None => self.seconds.observe(elapsed.as_secs_f64()),
            Some(kind) => {
                let index = UPSTREAM_ERROR_KINDS.iter().position(|k| *k == kind).unwrap_or(2);
                self.errors[index].inc();
            }
        }
    }
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ProviderErrorLabels {
    kind: &'static str,
}

/// How a refresh ended, for `cloakroom_token_refreshes_total{outcome}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RefreshOutcome {
    Ok,
    /// The provider said no (`invalid_grant` and the like): the session ends.
    InvalidGrant,
    /// Unreachable or 5xx: the session stays.
    ProviderError,
    /// `invalid_client` or `unauthorized_client`: cloakroom's own credential refused, which the
    /// operator must fix; the session stays.
    ClientRefused,
}

type Latency = Family<RouteLabels, Histogram, fn() -> Histogram>;
type UpstreamLatency = Family<UpstreamLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 0.5 ms to about 33 s.
    Histogram::new(exponential_buckets(0.0005, 2.0, 17))
}

/// The route classes `dispatch` labels requests with; their series are looked up once each.
const ROUTE_CLASSES: [&str; 5] = ["api", "bff", "spa", "not_found", "bad_path"];

/// Status codes an HTTP answer may carry (100 to 599): one counter slot each per route class.
const STATUSES: usize = 500;

/// The request series of one route class, taken from their families the first time each is
/// used (so that `/metrics` lists only what happened): afterwards a request touches atomics
/// only, instead of hashing its labels into two families under their locks.
struct RequestSeries {
    seconds: std::sync::OnceLock<Histogram>,
    by_status: Box<[std::sync::OnceLock<Counter>]>,
}

impl RequestSeries {
    fn new() -> Self {
        Self {
            seconds: std::sync::OnceLock::new(),
            by_status: (0..STATUSES).map(|_| std::sync::OnceLock::new()).collect(),
        }
    }
}

pub struct Metrics {
    registry: Registry,
    requests: Family<RequestLabels, Counter>,
    request_seconds: Latency,
    /// Per [`ROUTE_CLASSES`] entry.
    request_series: [RequestSeries; ROUTE_CLASSES.len()],
    active_sessions: Gauge,
    logins: Family<OutcomeLabels, Counter>,
    config_reloads: Family<OutcomeLabels, Counter>,
    logouts: Counter,
    refreshes: Family<OutcomeLabels, Counter>,
    provider_seconds: Histogram,
    provider_errors: Family<ProviderErrorLabels, Counter>,
    upstream_seconds: UpstreamLatency,
    upstream_errors: Family<UpstreamErrorLabels, Counter>,
    forbidden: Family<RoutePrefixLabels, Counter>,
    step_up_required: Family<RoutePrefixLabels, Counter>,
    provider_revocation: Family<ProviderLabels, Gauge>,
    token_rejected: Family<RouteOutcomeLabels, Counter>,
    store: StoreMetrics,
    connections_refused: Counter,
    streams_refused: Counter,
}

impl std::fmt::Debug for Metrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Metrics")
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("cloakroom");
        let requests = Family::default();
        registry.register("http_requests", "Requests answered, by route class and status", requests.clone());
        let request_seconds: Latency = Family::new_with_constructor(latency_histogram);
        registry.register(
            "http_request_duration_seconds",
            "Time to the response head, by route class",
            request_seconds.clone(),
        );
        let active_sessions = Gauge::default();
        registry.register("active_sessions", "Sessions in the store", active_sessions.clone());
        let logins = Family::default();
        registry.register("logins", "Completed sign-ins (ok) and failed callbacks (failed)", logins.clone());
        let config_reloads = Family::default();
        registry.register(
            "config_reloads",
            "Configuration reloads: ok, or refused (invalid, fixed_at_start, provider_unavailable, no_file)",
            config_reloads.clone(),
        );
        let logouts = Counter::default();
        registry.register("logouts", "Sessions ended by the user, the provider or an administrator", logouts.clone());
        let refreshes = Family::default();
        registry.register("token_refreshes", "Refresh-token grants, by outcome", refreshes.clone());
        let provider_seconds = latency_histogram();
        registry.register(
            "provider_request_duration_seconds",
            "Calls to the identity provider (discovery, keys, token, revocation)",
            provider_seconds.clone(),
        );
        let provider_errors = Family::default();
        registry.register(
            "provider_errors",
            "Provider calls that failed to connect, timed out or answered 5xx",
            provider_errors.clone(),
        );
        let upstream_seconds: UpstreamLatency = Family::new_with_constructor(latency_histogram);
        registry.register(
            "upstream_request_duration_seconds",
            "Time to the upstream's response head, by route prefix",
            upstream_seconds.clone(),
        );
        let upstream_errors = Family::default();
        registry.register(
            "upstream_errors",
            "Upstream calls that failed, by route prefix and kind",
            upstream_errors.clone(),
        );
        let forbidden = Family::default();
        registry.register(
            "forbidden",
            "Calls a route's authorization rules refused, by route prefix",
            forbidden.clone(),
        );
        let step_up_required = Family::default();
        registry.register(
            "step_up_required",
            "Calls refused for a stronger or more recent sign-in (the route's or its upstream's), by route prefix",
            step_up_required.clone(),
        );
        let provider_revocation = Family::default();
        registry.register(
            "provider_revocation",
            "1 when the provider offers token revocation (logout revokes the refresh token there), 0 when it does not (the refresh token stays valid at the provider after a logout), by provider id",
            provider_revocation.clone(),
        );
        let token_rejected = Family::default();
        registry.register(
            "upstream_token_rejected",
            "Upstream 401s with invalid_token on a call carrying the user's token, by route prefix and what followed: retried (a fresh token, the call once more), refreshed (a call with a body: the answer passed on, the next call has the fresh token), session_ended (the refresh was refused), refresh_failed (the provider could not be reached)",
            token_rejected.clone(),
        );
        let store = StoreMetrics::default();
        registry.register("store_errors", "Session store commands that failed, by kind", store.errors.clone());
        registry.register(
            "store_reconnects",
            "Connections to the session store made again after a failure",
            store.reconnects.clone(),
        );
        registry.register(
            "store_copy_hits",
            "Sessions read from this replica's copy, kept true by Redis's invalidation pushes (Redis store, standalone)",
            store.copy_hits.clone(),
        );
        registry.register(
            "store_copy_misses",
            "Sessions read from Redis while this replica's copy serves: not in it yet, changed, or a use to record",
            store.copy_misses.clone(),
        );
        let connections_refused = Counter::default();
        registry.register(
            "connections_refused",
            "Connections closed at once: their address held server.max_connections_per_client already",
            connections_refused.clone(),
        );
        let streams_refused = Counter::default();
        registry.register(
            "streams_refused",
            "HTTP/2 requests answered 429 at once: their address held server.max_connections_per_client already",
            streams_refused.clone(),
        );
        Self {
            registry,
            store,
            connections_refused,
            streams_refused,
            forbidden,
            step_up_required,
            provider_revocation,
            token_rejected,
            requests,
            request_seconds,
            request_series: std::array::from_fn(|_| RequestSeries::new()),
            active_sessions,
            logins,
            config_reloads,
            logouts,
            refreshes,
            provider_seconds,
            provider_errors,
            upstream_seconds,
            upstream_errors,
        }
    }

    pub fn request(&self, route: &'static str, status: u16, elapsed: Duration) {
        let series = ROUTE_CLASSES.iter().position(|class| *class == route).and_then(|i| self.request_series.get(i));
        let slot = series.and_then(|series| series.by_status.get(usize::from(status).wrapping_sub(100)));
        match (series, slot) {
            (Some(series), Some(slot)) => {
                slot.get_or_init(|| self.requests.get_or_create(&RequestLabels { route, status }).clone()).inc();
                let seconds =
                    series.seconds.get_or_init(|| self.request_seconds.get_or_create(&RouteLabels { route }).clone());
                seconds.observe(elapsed.as_secs_f64());
            }
            _ => {
                self.requests.get_or_create(&RequestLabels { route, status }).inc();
                self.request_seconds.get_or_create(&RouteLabels { route }).observe(elapsed.as_secs_f64());
            }
        }
    }

    /// A call the route's rules refused (`route`: its prefix; refusals are rare, so the label
    /// is made here).
    /// An upstream rejected the user's token (`invalid_token`), and what followed.
    pub fn token_rejected(&self, route: &str, outcome: &'static str) {
        self.token_rejected.get_or_create(&RouteOutcomeLabels { route: route.to_string(), outcome }).inc();
    }

    /// Whether a provider, as discovered, offers revocation.
    pub fn provider_revocation(&self, provider: &str, offered: bool) {
        self.provider_revocation
            .get_or_create(&ProviderLabels { provider: provider.to_string() })
            .set(i64::from(offered));
    }

    pub fn forbidden(&self, route: &str) {
        self.forbidden.get_or_create(&RoutePrefixLabels { route: route.to_string() }).inc();
    }

    /// A connection closed at once for its address's cap.
    pub fn connection_refused(&self) {
        self.connections_refused.inc();
    }

    /// An HTTP/2 request answered 429 for its address's cap.
    pub fn stream_refused(&self) {
        self.streams_refused.inc();
    }

    /// The store's counters, for the store to count into.
    pub fn store(&self) -> StoreMetrics {
        self.store.clone()
    }

    /// A call refused until the user signs in more strongly or more recently.
    pub fn step_up_required(&self, route: &str) {
        self.step_up_required.get_or_create(&RoutePrefixLabels { route: route.to_string() }).inc();
    }

    pub fn login(&self, ok: bool) {
        self.logins.get_or_create(&OutcomeLabels { outcome: if ok { "ok" } else { "failed" } }).inc();
    }

    /// One reload: `ok`, or why it was refused.
    pub fn config_reload(&self, outcome: &'static str) {
        self.config_reloads.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    pub fn logouts(&self, sessions: u64) {
        self.logouts.inc_by(sessions);
    }

    pub fn refresh(&self, outcome: RefreshOutcome) {
        let outcome = match outcome {
            RefreshOutcome::Ok => "ok",
            RefreshOutcome::InvalidGrant => "invalid_grant",
            RefreshOutcome::ProviderError => "provider_error",
            RefreshOutcome::ClientRefused => "client_refused",
        };
        self.refreshes.get_or_create(&OutcomeLabels { outcome }).inc();
    }

    /// A provider call that got an answer (`error`: what went wrong when it did not).
    pub fn provider_call(&self, elapsed: Duration, error: Option<&'static str>) {
        self.provider_seconds.observe(elapsed.as_secs_f64());
        if let Some(kind) = error {
            self.provider_errors.get_or_create(&ProviderErrorLabels { kind }).inc();
        }
    }

    /// The series of the upstream named `label` (a route prefix), created now.
    pub fn upstream(&self, label: &str) -> UpstreamMetrics {
        let seconds = self.upstream_seconds.get_or_create(&UpstreamLabels { upstream: label.to_string() }).clone();
        let errors = UPSTREAM_ERROR_KINDS.map(|kind| {
            self.upstream_errors.get_or_create(&UpstreamErrorLabels { upstream: label.to_string(), kind }).clone()
        });
        UpstreamMetrics { seconds, errors }
    }

    /// The text exposition, with the gauges read now (`active_sessions` when the store can
    /// count them; the Redis store cannot without scanning every key).
    pub fn render(&self, active_sessions: Option<u64>) -> String {
        if let Some(count) = active_sessions {
            self.active_sessions.set(i64::try_from(count).unwrap_or(i64::MAX));
        }
        let mut out = String::new();
        // Writing to a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request series are taken from their families once and then counted directly: what
    /// `/metrics` shows is what happened, series by series, whichever way a request was counted.
    #[test]
    fn requests_count_in_their_series_and_only_those_that_happened_are_listed() {
        let metrics = Metrics::new();
        assert!(!metrics.render(None).contains("cloakroom_http_requests_total{"), "nothing counted yet");
        for _ in 0..3 {
            metrics.request("api", 200, Duration::from_millis(1));
        }
        metrics.request("api", 401, Duration::from_millis(1));
        metrics.request("bff", 302, Duration::from_millis(1));
        // Outside the classes and statuses the slots cover: counted through the families.
        metrics.request("elsewhere", 200, Duration::from_millis(1));
        metrics.request("api", 600, Duration::from_millis(1));
        let text = metrics.render(None);
        for line in [
            r#"cloakroom_http_requests_total{route="api",status="200"} 3"#,
            r#"cloakroom_http_requests_total{route="api",status="401"} 1"#,
            r#"cloakroom_http_requests_total{route="bff",status="302"} 1"#,
            r#"cloakroom_http_requests_total{route="elsewhere",status="200"} 1"#,
            r#"cloakroom_http_requests_total{route="api",status="600"} 1"#,
            r#"cloakroom_http_request_duration_seconds_count{route="api"} 5"#,
            r#"cloakroom_http_request_duration_seconds_count{route="bff"} 1"#,
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing from:\n{text}");
        }
        assert!(!text.contains(r#"route="spa""#), "a class never used is not listed");
    }
}
