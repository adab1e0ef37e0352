//! cloakroom under test: started in-process on ephemeral ports against the provider and a
//! recording upstream, with helpers that walk a sign-in step by step.

use super::*;

// cloakroom under test.

pub struct Bff {
    pub server: cloakroom::Server,
    pub origin: String,
    pub admin: String,
    pub issuer: String,
    pub client: RegisteredClient,
    pub clock: Arc<ManualClock>,
    pub upstream: Upstream,
    /// The configuration it was started with, as text (a reload test edits it).
    pub toml: String,
    /// Where that text was written, when [`BffOptions::config_file`] asked for a file.
    pub config_file: Option<std::path::PathBuf>,
}

pub struct BffOptions {
    pub issuer: Option<String>,
    /// A client already known to the issuer (skips dynamic registration).
    pub client: Option<RegisteredClient>,
    pub auth_method: &'static str,
    /// Appended to the generated config (extra sections).
    pub extra_toml: String,
    /// Extra keys inside `[server]`, `[oidc]` and `[session]`.
    pub server_toml: String,
    pub oidc_toml: String,
    pub session_toml: String,
    /// Extra `[[routes]]` entries besides the default `/api/` (user) one.
    pub extra_routes: String,
    pub wait_ready: bool,
    /// Register the client with the refresh-token grant (the provider then issues refresh tokens).
    pub refresh_grant: bool,
    /// Where the default `/api/` route goes instead of the recording upstream.
    pub api_upstream: Option<String>,
    /// Extra keys inside the default `/api/` route (e.g. its client certificate).
    pub api_route_toml: String,
    /// Register a `private_key_jwt` client with this key and configure cloakroom with it.
    pub client_key: Option<TestClientKey>,
    /// The key cloakroom is configured with, when it should differ from the registered one.
    pub configured_key: Option<TestClientKey>,
    /// Serve https with this certificate (the origin becomes `https://127.0.0.1:<port>`).
    pub tls: Option<IssuedCert>,
    /// The browser-facing origin when it is not cloakroom's own address (replicas behind a
    /// balancer); the client is registered with it.
    pub public_url: Option<String>,
    /// `session.keys` instead of the one test key.
    pub session_keys: Option<Vec<String>>,
    /// Where the provider sends the browser after a logout, when not `public_url`'s root (the
    /// SPA on another origin): registered beside it and set as `oidc.post_logout_redirect_uri`.
    pub post_logout_redirect: Option<String>,
    /// Load the configuration from a file (as the binary does), so that it can be reloaded
    /// from there (`POST /reload`).
    pub config_file: bool,
    /// The main listener, bound by the test (to know the port before the configuration).
    pub main_listener: Option<std::net::TcpListener>,
    /// More client metadata for the registration (e.g. `dpop_bound_access_tokens`).
    pub client_metadata: Option<Value>,
}

impl Default for BffOptions {
    fn default() -> Self {
        Self {
            issuer: None,
            client: None,
            auth_method: "client_secret_basic",
            extra_toml: String::new(),
            server_toml: String::new(),
            oidc_toml: String::new(),
            session_toml: String::new(),
            extra_routes: String::new(),
            wait_ready: true,
            refresh_grant: true,
            api_upstream: None,
            api_route_toml: String::new(),
            client_key: None,
            configured_key: None,
            tls: None,
            public_url: None,
            session_keys: None,
            post_logout_redirect: None,
            config_file: false,
            main_listener: None,
            client_metadata: None,
        }
    }
}

pub const CSRF: (&str, &str) = ("x-csrf", "1");

impl Bff {
    /// Now, by the test's clock.
    pub fn clock_now(&self) -> u64 {
        use cloakroom::clock::Clock;
        self.clock.now()
    }

    pub async fn start() -> Bff {
        Self::start_with(BffOptions::default()).await
    }

    pub async fn start_with(mut options: BffOptions) -> Bff {
        cloakroom::install_crypto_provider();
        init_logging();
        let issuer = options.issuer.clone().unwrap_or_else(|| provider().issuer.clone());
        let main = options.main_listener.take().unwrap_or_else(|| std::net::TcpListener::bind("127.0.0.1:0").unwrap());
        let admin = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let scheme = if options.tls.is_some() { "https" } else { "http" };
        let origin = options.public_url.clone().unwrap_or_else(|| format!("{scheme}://{}", main.local_addr().unwrap()));
        let tls_toml = match &options.tls {
            Some(cert) => format!("tls_cert_file = {:?}\ntls_key_file = {:?}", cert.cert_file, cert.key_file),
            None => String::new(),
        };
        let admin_url = format!("http://{}", admin.local_addr().unwrap());
        let client = if let Some(client) = options.client.clone() {
            client
        } else if options.wait_ready {
            let method = if options.client_key.is_some() { "private_key_jwt" } else { options.auth_method };
            let key = options.client_key.as_ref();
            let post_logout = options.post_logout_redirect.as_deref();
            let metadata = options.client_metadata.as_ref();
            register_client_with_metadata(&issuer, &origin, method, options.refresh_grant, key, post_logout, metadata)
                .await
        } else {
            RegisteredClient { client_id: "unregistered".into(), client_secret: "unused".into(), key: None }
        };
        let client_auth = match options.configured_key.as_ref().or(options.client_key.as_ref()) {
            Some(key) => {
                let path = std::env::temp_dir()
                    .join(format!("cloakroom-test-client-key-{}.pem", main.local_addr().unwrap().port()));
                std::fs::write(&path, &key.pem).unwrap();
                format!(
                    "client_auth = \"private_key_jwt\"\nprivate_key_file = {:?}\nprivate_key_kid = {}\nprivate_key_alg = \"{}\"",
                    path.display().to_string(),
                    key.jwk["kid"],
                    key.alg
                )
            }
            // RFC 8705: the certificate is the credential (its files are the test's `oidc_toml`).
            None if options.auth_method.ends_with("tls_client_auth") => {
                format!("client_auth = \"{}\"", options.auth_method)
            }
            None => format!("client_secret = \"{}\"\nclient_auth = \"{}\"", client.client_secret, options.auth_method),
        };
        let upstream = Upstream::start().await;
        let upstream_url = format!("http://{}", upstream.addr);
        // Tests stop at once unless they test the delay (the default is 5 s).
        let shutdown_delay =
            if options.server_toml.contains("shutdown_delay") { "" } else { "shutdown_delay = \"0s\"" };
        let api_upstream = options.api_upstream.clone().unwrap_or_else(|| format!("{upstream_url}/api/"));
        let toml = format!(
            r#"
[server]
public_url = "{origin}"
shutdown_timeout = "5s"
{shutdown_delay}
{tls_toml}
{server_toml}
[oidc]
issuer = "{issuer}"
client_id = "{client_id}"
{client_auth}
{oidc_toml}
{post_logout}
[session]
keys = {keys}
{session_toml}
[log]
level = "trace"
[[routes]]
prefix = "/api/"
upstream = "{api_upstream}"
token = "user"
connect_timeout = "1s"
timeout = "2s"
{api_route_toml}
{extra_routes}
{extra_toml}
"#,
            client_id = client.client_id,
            keys = serde_json::to_string(&options.session_keys.clone().unwrap_or_else(|| vec![test_key()])).unwrap(),
            extra_routes = options.extra_routes.replace("{upstream}", &upstream_url),
            extra_toml = options.extra_toml.replace("{upstream}", &upstream_url),
            server_toml = options.server_toml,
            api_route_toml = options.api_route_toml,
            oidc_toml = options.oidc_toml,
            post_logout = options
                .post_logout_redirect
                .as_ref()
                .map(|target| format!("post_logout_redirect_uri = {target:?}"))
                .unwrap_or_default(),
            session_toml = options.session_toml,
        );
        let config_file = options.config_file.then(|| {
            let path = std::env::temp_dir().join(format!("cloakroom-test-{}.toml", main.local_addr().unwrap().port()));
            std::fs::write(&path, &toml).unwrap();
            path
        });
        let config = match &config_file {
            Some(path) => Config::load(path),
            None => Config::from_toml(&toml, Vec::new()),
        }
        .unwrap_or_else(|e| panic!("{e}\n{toml}"));
        let clock = Arc::new(ManualClock::new());
        let listeners = Listeners::from_std(main, admin).unwrap();
        let server = cloakroom::start(config, listeners, clock.clone()).unwrap();
        let bff = Bff { server, origin, admin: admin_url, issuer, client, clock, upstream, toml, config_file };
        if options.wait_ready {
            for _ in 0..200 {
                if bff.server.live.is_ready() {
                    return bff;
                }
                tokio::time::sleep(Duration::from_millis(25)).await;
            }
            panic!("cloakroom did not become ready (provider discovery)");
        }
        bff
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.origin)
    }

    /// This instance itself, bypassing any balancer in front (`url` goes through `public_url`).
    pub fn direct(&self, path: &str) -> String {
        format!("http://{}{path}", self.server.addr)
    }

    pub fn cookie_name(&self) -> &'static str {
        "__Host-Http-cloakroom"
    }

    pub async fn session_count(&self) -> u64 {
        self.server.app().sessions.store().sync().await;
        self.server.app().sessions.store().session_count().expect("the memory store counts its sessions")
    }

    /// Runs a whole sign-in as `user`, returning the page the callback answered with.
    pub async fn login(&self, browser: &mut Browser, user: &str, return_url: &str) -> Reply {
        let callback = self.authorize(browser, user, return_url).await;
        browser.get(&callback, &[]).await
    }

    /// Walks the login up to (not including) the callback; returns the callback URL.
    pub async fn authorize(&self, browser: &mut Browser, user: &str, return_url: &str) -> String {
        let encoded: String = url::form_urlencoded::byte_serialize(return_url.as_bytes()).collect();
        self.authorize_from(browser, user, &format!("/bff/login?returnUrl={encoded}")).await
    }

    /// Like [`Bff::authorize`], starting from any login URL (path and query, or a whole URL).
    pub async fn authorize_from(&self, browser: &mut Browser, user: &str, login_path: &str) -> String {
        authorize_at(browser, &self.origin, &self.issuer, user, login_path).await
    }

    pub async fn user(&self, browser: &mut Browser) -> Reply {
        browser.get(&self.url("/bff/user"), &[CSRF]).await
    }
}

/// Walks a sign-in at the cloakroom on `origin` with the test provider `issuer`, up to (not
/// including) the callback, from any login URL (path and query, or a whole URL); returns the
/// callback URL.
pub async fn authorize_at(browser: &mut Browser, origin: &str, issuer: &str, user: &str, login_path: &str) -> String {
    let start_url =
        if login_path.starts_with("http") { login_path.to_string() } else { format!("{origin}{login_path}") };
    let start = browser.get(&start_url, &[]).await;
    assert_eq!(start.status, 302, "{}", start.text());
    let authorize = start.location().unwrap().to_string();
    assert!(authorize.starts_with(issuer), "login redirected to {authorize}");
    let callback_prefix = format!("{origin}/bff/callback");
    let (page_url, page) = browser.follow(&authorize, |u| u.starts_with(&callback_prefix)).await;
    if page_url.starts_with(&callback_prefix) {
        return page_url; // the provider still had a session for this browser (SSO)
    }
    assert_eq!(page.status, 200, "expected the provider's sign-in page at {page_url}: {}", page.text());
    let uid = page_url.rsplit('/').next().unwrap().to_string();
    let submitted = browser
        .request(
            Method::POST,
            &format!("{issuer}/interaction/{uid}/login"),
            Some(("application/x-www-form-urlencoded", format!("login={user}"))),
            &[],
        )
        .await;
    assert!(submitted.status == 303 || submitted.status == 302, "{}", submitted.text());
    let next = url::Url::parse(issuer).unwrap().join(submitted.location().unwrap()).unwrap().to_string();
    let (callback, _) = browser.follow(&next, |u| u.starts_with(&callback_prefix)).await;
    assert!(callback.starts_with(&callback_prefix), "the provider did not redirect to the callback: {callback}");
    callback
}

/// What validation says of a minimal configuration whose one route (`/api/`) ends with
/// `route` (its own keys, then its tables); panics if it is accepted.
pub fn route_config_error(route: &str) -> String {
    let toml = format!(
        "[server]\npublic_url = \"https://app.example\"\n[oidc]\nissuer = \"https://idp.example\"\n\
         client_id = \"c\"\nclient_secret = \"s\"\n[[routes]]\nprefix = \"/api/\"\n\
         upstream = \"http://127.0.0.1:1/\"\n{route}"
    );
    Config::from_toml(&toml, Vec::new()).map(|_| ()).expect_err("the configuration was accepted").to_string()
}

/// The session ticket as the test browser holds it.
pub fn session_cookie(browser: &Browser) -> Option<String> {
    browser.cookie("__Host-Http-cloakroom")
}

pub fn status(reply: &Reply) -> StatusCode {
    StatusCode::from_u16(reply.status).unwrap()
}
