//! DEVELOPMENT ONLY: the demo's own identity provider and API, so `cargo run --features demo`
//! shows the whole flow without any external service. Compiled only with the `demo` cargo
//! feature, which production builds (and the container image) leave out; each refuses to listen
//! anywhere but loopback and says "development only" wherever it speaks.

pub mod api;
pub mod issuer;

pub const BANNER: &str = "DEVELOPMENT ONLY: never use in production";

/// The audience of the development issuer's access tokens, unless `oidc.resource` names one.
pub const DEFAULT_API_AUDIENCE: &str = "urn:cloakroom:demo-api";

/// Starts whatever `[demo]` asks for, on its (loopback) listeners; returns the issuer, if any.
pub fn start(
    config: &crate::config::Config,
    clock: crate::clock::SharedClock,
) -> std::io::Result<Option<issuer::DevIssuer>> {
    let mut started = None;
    let audience = config.oidc.resource.clone().unwrap_or_else(|| DEFAULT_API_AUDIENCE.to_string());
    if let Some(addr) = config.demo.issuer_listen {
        let issuer = issuer::DevIssuer::new(
            issuer::DevIssuerConfig {
                issuer: config.oidc.issuer.clone(),
                client_id: config.oidc.client_id.clone(),
                client_secret: config.oidc.client_auth.secret().map(|s| s.secret().clone()).unwrap_or_default(),
                redirect_uri: config.oidc.redirect_uri.to_string(),
                post_logout_redirect_uri: config.oidc.post_logout_redirect_uri.to_string(),
                api_audience: audience.clone(),
            },
            clock.clone(),
        );
        let listener = bind(addr)?;
        tracing::warn!("development issuer on http://{addr}: {BANNER}");
        started = Some(issuer.clone());
        tokio::spawn(crate::server::serve_fn(listener, move |request| {
            let issuer = issuer.clone();
            async move { issuer.handle(request).await }
        }));
    }
    if let Some(addr) = config.demo.api_listen {
        let api = api::DemoApi::new(config.oidc.issuer.clone(), audience, clock);
        let listener = bind(addr)?;
        tracing::warn!("demo API on http://{addr}: {BANNER}");
        tokio::spawn(crate::server::serve_fn(listener, move |request| {
            let api = api.clone();
            async move { api.handle(request).await }
        }));
    }
    Ok(started)
}

/// Binds a loopback address; anything else is refused here too, whatever the config said.
fn bind(addr: std::net::SocketAddr) -> std::io::Result<tokio::net::TcpListener> {
    if !addr.ip().is_loopback() {
        return Err(std::io::Error::new(
            std::io::ErrorKind::PermissionDenied,
            format!("{addr}: {BANNER}; loopback only"),
        ));
    }
    let listener = std::net::TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    tokio::net::TcpListener::from_std(listener)
}
