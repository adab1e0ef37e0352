//! Hot reload: the configuration a running cloakroom serves with, swapped whole.
//!
//! Every request takes the [`App`] current when it arrives and keeps it to the end: in-flight
//! calls finish on the configuration they started with, the next ones get the new one. A new
//! configuration is validated in full, then built over what the running one keeps (the store
//! and its sessions, the metrics, the refresh locks: [`App::reloaded`]), and each of its
//! providers is discovered; only then is it swapped in. Anything wrong (an invalid file, a
//! setting fixed at start, a provider that cannot be reached) refuses the whole reload with
//! every reason, and the running configuration stays: an ERROR log line and
//! `cloakroom_config_reloads_total{outcome}` say so.
//!
//! Triggered by SIGHUP (the binary) and by `POST /reload` on the admin listener.

use crate::app::App;
use crate::config::{Config, ConfigErrors};
use arc_swap::ArcSwap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The configuration being served, swappable.
pub struct Live {
    current: ArcSwap<Frontends>,
    /// One reload at a time.
    reloading: tokio::sync::Mutex<()>,
    generation: AtomicU64,
}

/// Why a reload was refused (the running configuration stays).
#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("cloakroom was started without a configuration file, so there is none to read again")]
    NoFile,
    #[error("{0}")]
    Invalid(ConfigErrors),
    #[error("these settings cannot change while cloakroom runs (restart it to change them): {}", .0.join(", "))]
    FixedAtStart(Vec<&'static str>),
    #[error("provider discovery failed, so the new providers could not serve: {}", describe(.0))]
    ProviderUnavailable(Vec<(String, String)>),
}

fn describe(failures: &[(String, String)]) -> String {
    failures.iter().map(|(provider, error)| format!("{provider}: {error}")).collect::<Vec<_>>().join("; ")
}

impl ReloadError {
    /// The `outcome` label of `cloakroom_config_reloads_total`.
    pub fn outcome(&self) -> &'static str {
        match self {
            ReloadError::NoFile => "no_file",
            ReloadError::Invalid(_) => "invalid",
            ReloadError::FixedAtStart(_) => "fixed_at_start",
            ReloadError::ProviderUnavailable(_) => "provider_unavailable",
        }
    }
}

/// The apps a configuration makes: the top level's, and one per `[[frontends]]` entry, each
/// chosen by the host a request names.
pub struct Frontends {
    default: Arc<App>,
    /// Each frontend's `public_url` host (with its port when not the scheme's default), that
    /// default port, and its app.
    by_host: Vec<(http::HeaderValue, &'static str, Arc<App>)>,
}

/// Whether a request's `host` names `public_host`: the same, but for ASCII case, or with the
/// scheme's default port spelled out (`app.example.com:443`), as some clients send it.
fn names_host(public_host: &[u8], default_port: &str, host: &[u8]) -> bool {
    if host.eq_ignore_ascii_case(public_host) {
        return true;
    }
    // A `public_url` with a port of its own is named only with it.
    let after_address = public_host.rsplit(|&b| b == b']').next().unwrap_or_default();
    if after_address.contains(&b':') {
        return false;
    }
    match host.split_at_checked(public_host.len()) {
        Some((name, port)) => {
            name.eq_ignore_ascii_case(public_host) && port.strip_prefix(b":") == Some(default_port.as_bytes())
        }
        None => false,
    }
}

impl Frontends {
    fn of(default: App) -> Self {
        let default = Arc::new(default);
        let by_host = (default.config.frontends.iter())
            .map(|frontend| {
                let default_port = if frontend.server.public_origin.starts_with("https:") { "443" } else { "80" };
                (frontend.server.public_host.clone(), default_port, Arc::new(default.sibling(frontend.clone())))
            })
            .collect();
        Self { default, by_host }
    }

    /// Every app: the top level's first.
    pub fn all(&self) -> impl Iterator<Item = &Arc<App>> {
        std::iter::once(&self.default).chain(self.by_host.iter().map(|(_, _, app)| app))
    }
}

impl Live {
    pub fn new(app: App) -> Self {
        Self {
            current: ArcSwap::from_pointee(Frontends::of(app)),
            reloading: tokio::sync::Mutex::new(()),
            generation: AtomicU64::new(0),
        }
    }

    /// The top-level configuration's app (the admin listener's, and any host no frontend names).
    pub fn app(&self) -> Arc<App> {
        self.current.load().default.clone()
    }

    /// The app to serve a request for `host` with (its `Host`, or its URI's authority); the
    /// caller keeps it for the whole request. A host no frontend names gets the top level's.
    pub fn app_for(&self, host: Option<&[u8]>) -> Arc<App> {
        let frontends = self.current.load();
        if let Some(host) = host {
            for (name, default_port, app) in &frontends.by_host {
                if names_host(name.as_bytes(), default_port, host) {
                    return app.clone();
                }
            }
        }
        frontends.default.clone()
    }

    /// Every app serving now (each frontend's).
    pub fn all(&self) -> Vec<Arc<App>> {
        self.current.load().all().cloned().collect()
    }

    /// Ready when every frontend is.
    pub fn is_ready(&self) -> bool {
        self.current.load().all().all(|app| app.is_ready())
    }

    /// How many reloads have taken effect.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Relaxed)
    }

    /// Reads the configuration file again (environment overrides included) and reloads it.
    pub async fn reload_file(&self) -> Result<u64, ReloadError> {
        let source = self.app().config.source.clone();
        let loaded = match source {
            None => Err(ReloadError::NoFile),
            Some(path) => Config::load(&path).map_err(ReloadError::Invalid),
        };
        match loaded {
            Ok(config) => self.reload(config).await,
            Err(refused) => Err(self.refused(refused)),
        }
    }

    /// Serves `config` from now on, when it can be: see the module's documentation.
    pub async fn reload(&self, config: Config) -> Result<u64, ReloadError> {
        let _one_at_a_time = self.reloading.lock().await;
        let current = self.app();
        let fixed = current.config.fixed_at_start.changed_in(&config.fixed_at_start);
        if !fixed.is_empty() {
            return Err(self.refused(ReloadError::FixedAtStart(fixed)));
        }
        let next = Frontends::of(current.reloaded(config));
        let providers = next.all().flat_map(|app| app.providers.all().iter());
        let discoveries = providers.map(|provider| async move {
            provider.discover().await.map_err(|e| (provider.id().to_string(), e.to_string()))
        });
        let failed: Vec<_> =
            futures_util::future::join_all(discoveries).await.into_iter().filter_map(Result::err).collect();
        if !failed.is_empty() {
            return Err(self.refused(ReloadError::ProviderUnavailable(failed)));
        }
        for warning in &next.default.config.warnings {
            tracing::warn!("INSECURE OR EPHEMERAL SETTING: {warning}");
        }
        self.current.store(Arc::new(next));
        let generation = self.generation.fetch_add(1, Ordering::Relaxed) + 1;
        current.metrics.config_reload("ok");
        tracing::info!(generation, "configuration reloaded");
        Ok(generation)
    }

    fn refused(&self, error: ReloadError) -> ReloadError {
        self.app().metrics.config_reload(error.outcome());
        tracing::error!(outcome = error.outcome(), "configuration reload refused, the running one stays: {error}");
        error
    }
}

#[cfg(test)]
mod tests {
    use super::names_host;

    #[test]
    fn a_frontend_is_named_by_its_host_in_any_case_and_with_or_without_its_default_port() {
        assert!(names_host(b"admin.example.com", "443", b"admin.example.com"));
        assert!(names_host(b"admin.example.com", "443", b"ADMIN.Example.com"));
        assert!(names_host(b"admin.example.com", "443", b"admin.example.com:443"));
        assert!(names_host(b"localhost:8080", "80", b"localhost:8080"));
        for other in [
            &b"admin.example.com:8443"[..],
            b"admin.example.com:80",
            b"admin.example.co",
            b"evil-admin.example.com",
            b"admin.example.com.evil",
            b"",
        ] {
            assert!(!names_host(b"admin.example.com", "443", other), "{}", String::from_utf8_lossy(other));
        }
        assert!(!names_host(b"localhost:8080", "80", b"localhost:8080:80"));
        assert!(names_host(b"[::1]", "443", b"[::1]:443"));
    }
}
