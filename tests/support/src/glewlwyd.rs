//! The second real provider: glewlwyd (Debian's package), a C single-sign-on server with an
//! OpenID Connect plugin, on SQLite, started once per test binary on loopback (as `localhost`).
//!
//! Everything about it is here, so a third provider is one more file like this: its process, its
//! configuration through its own admin REST API (the OIDC plugin with an RSA key, scopes, users,
//! one client per test), and how a user signs in at it without a browser (its login API, then
//! the grant, then the authorization URL again with `g_continue`, which is what its login page
//! does when the user clicks "continue").
//!
//! Packaging notes, learned here: the package's post-install defaults to PostgreSQL and fails
//! (`./scripts/test` preseeds "No configuration" and keeps it from starting a service); the
//! webapp's `config.json` is a symlink to a directory, so the tests serve a copy of the webapp
//! with the real file; changes to the plugin apply when it is created anew.

use super::*;
use tokio::sync::OnceCell;

pub struct Glewlwyd {
    /// The OIDC plugin's issuer: `http://127.0.0.1:<port>/api/oidc`.
    pub issuer: String,
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    admin_cookie: String,
    log_file: std::path::PathBuf,
    /// glewlwyd keeps its state in SQLite, which refuses concurrent writers: tests take turns.
    turn: tokio::sync::Mutex<()>,
    _child: Mutex<Child>,
}

/// Users and their passwords.
pub const GLEWLWYD_USERS: [(&str, &str); 2] = [("alice", "alice-password-1"), ("bob", "bob-password-1")];

static GLEWLWYD: OnceCell<Glewlwyd> = OnceCell::const_new();

/// The shared glewlwyd, configured on first use.
pub async fn glewlwyd() -> &'static Glewlwyd {
    GLEWLWYD.get_or_init(Glewlwyd::start).await
}

impl Glewlwyd {
    async fn start() -> Glewlwyd {
        assert!(
            std::path::Path::new("/usr/bin/glewlwyd").exists(),
            "the glewlwyd tests need Debian's glewlwyd and sqlite3 (./scripts/test installs both)"
        );
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("cloakroom-glewlwyd-{}-{port}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let db = dir.join("glewlwyd.db");
        let shell = |script: String| {
            let status = Command::new("sh").arg("-c").arg(&script).status().unwrap();
            assert!(status.success(), "{script}");
        };
        shell(format!(
            "zcat /usr/share/doc/glewlwyd/database/init.sqlite3.sql.gz | sqlite3 {0} && \
             cp -rL /usr/share/glewlwyd/webapp {1}/webapp && rm -rf {1}/webapp/config.json && \
             cp /etc/glewlwyd/config-2.7.json/config.json {1}/webapp/config.json && \
             zcat /usr/share/doc/glewlwyd/glewlwyd.conf.sample.gz > {1}/sample.conf",
            db.display(),
            dir.display()
        ));
        // `localhost`, not 127.0.0.1: a browser keeps glewlwyd's cookies apart from cloakroom's
        // (cookies are per host, not per port), as with a provider on its own domain; so
        // cloakroom's Clear-Site-Data on sign-out does not sign the user out of glewlwyd too.
        let base = format!("http://localhost:{port}");
        let sample = std::fs::read_to_string(dir.join("sample.conf")).unwrap();
        let config: String = sample
            .lines()
            .map(|line| match line.split('=').next().unwrap_or("").trim() {
                "port" => format!("port={port}"),
                "#bind_address" | "bind_address" => "bind_address=\"127.0.0.1\"".into(),
                "external_url" => format!("external_url=\"{base}\""),
                "static_files_path" => format!("static_files_path=\"{}/webapp/\"", dir.display()),
                "log_mode" => "log_mode=\"file\"".into(),
                "log_file" => format!("log_file=\"{}/glewlwyd.log\"", dir.display()),
                "cookie_domain" => "cookie_domain=\"\"".into(),
                "cookie_secure" => "cookie_secure=0".into(),
                _ if line.contains("/var/cache/glewlwyd/glewlwyd.db") => format!("  path = \"{}\"", db.display()),
                _ => line.to_string(),
            })
            .collect::<Vec<_>>()
            .join("\n");
        let conf = dir.join("glewlwyd.conf");
        std::fs::write(&conf, config).unwrap();
        // glewlwyd does not end with the test process: a watchdog shell kills it when the test
        // process's end closes its stdin.
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(format!("glewlwyd --config-file={} & pid=$!; cat >/dev/null; kill $pid", conf.display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("glewlwyd runs");
        std::mem::forget(child.stdin.take());
        let started = std::time::Instant::now();
        while http_try(&format!("http://127.0.0.1:{port}/api/")).await.is_none() {
            assert!(started.elapsed() < Duration::from_secs(15), "glewlwyd did not start");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let login = json_call(
            Method::POST,
            &format!("{base}/api/auth/"),
            "",
            json!({"username": "admin", "password": "password"}),
        )
        .await;
        assert_eq!(login.status, 200, "admin sign-in: {}", login.text());
        let admin_cookie = cookie_of(&login, "GLEWLWYD2_SESSION_ID");
        let mut glewlwyd = Glewlwyd {
            issuer: format!("{base}/api/oidc"),
            base,
            admin_cookie,
            log_file: dir.join("glewlwyd.log"),
            turn: tokio::sync::Mutex::new(()),
            _child: Mutex::new(child),
        };
        glewlwyd.configure().await;
        glewlwyd
    }

    /// The OIDC plugin, its scopes and users, through the admin API.
    async fn configure(&mut self) {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_RSA_SHA256).unwrap();
        let mut parameters = json!({
            "iss": self.issuer, "jwt-type": "rsa", "jwt-key-size": "256",
            "key": key.serialize_pem(), "cert": key.public_key_pem(),
            "access-token-duration": 300, "refresh-token-duration": 86400, "code-duration": 600,
            "refresh-token-rolling": true, "refresh-token-one-use": "always",
            "allow-non-oidc": false, "auth-type-code-enabled": true, "auth-type-token-enabled": false,
            "auth-type-id-token-enabled": false, "auth-type-none-enabled": false,
            "auth-type-password-enabled": false, "auth-type-client-enabled": true,
            "auth-type-refresh-enabled": true, "auth-type-device-enabled": false,
            "scope": [], "additional-parameters": [], "claims": [],
            "allowed-scope": ["openid", "profile"], "name-claim": "on-demand", "email-claim": "on-demand",
            "scope-claim": "no", "pkce-allowed": true, "pkce-method-plain-allowed": false
        });
        let more = json!({
            "introspection-revocation-allowed": true, "introspection-revocation-auth-scope": [],
            "introspection-revocation-allow-target-client": true,
            "session-management-allowed": true, "session-cookie-name": "GLEWLWYD2_OIDC_SID",
            "session-cookie-expiration": 2419200, "front-channel-logout-allowed": true,
            "back-channel-logout-allowed": true, "secret-type": "pairwise", "jwks-show": true,
            "request-parameter-allow": false, "subject-type": "public",
            "oauth-par-allowed": true, "oauth-par-duration": 90, "oauth-par-required": false,
            "oauth-par-request_uri-prefix": "urn:ietf:params:oauth:request_uri:"
        });
        if let (Some(all), Value::Object(more)) = (parameters.as_object_mut(), more) {
            all.extend(more);
        }
        let plugin = json!({"module": "oidc", "name": "oidc", "display_name": "OIDC", "enabled": true, "parameters": parameters});
        self.admin(Method::POST, "/api/mod/plugin/", plugin).await;
        let scope = |name: &str, description: &str| {
            json!({"name": name, "display_name": name, "description": description,
                   "password_required": true, "password_max_age": 0, "scheme": {}})
        };
        self.admin(Method::PUT, "/api/scope/openid", scope("openid", "OpenID Connect")).await;
        self.admin(Method::POST, "/api/scope/", scope("profile", "The user's name and email")).await;
        for (user, password) in GLEWLWYD_USERS {
            let name = format!("{}{} Example", user[..1].to_uppercase(), &user[1..]);
            let body = json!({"username": user, "name": name, "email": format!("{user}@example.com"),
                              "password": password, "scope": ["openid", "profile"], "enabled": true});
            self.admin(Method::POST, "/api/user/", body).await;
        }
        let discovery =
            http_call(Method::GET, &format!("{}/.well-known/openid-configuration", self.issuer), None, &[]).await;
        assert_eq!(discovery.status, 200, "the OIDC plugin did not start: {}", discovery.text());
    }

    /// What glewlwyd logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_file).unwrap_or_default()
    }

    /// Held for a whole test: one test at a time talks to glewlwyd.
    pub async fn turn(&self) -> tokio::sync::MutexGuard<'_, ()> {
        self.turn.lock().await
    }

    async fn admin(&self, method: Method, path: &str, body: Value) -> Reply {
        let reply = json_call(method, &format!("{}{path}", self.base), &self.admin_cookie, body).await;
        assert_eq!(reply.status, 200, "{path}: {}", reply.text());
        reply
    }

    /// A new client's id and a secret (register it with [`Glewlwyd::register`] once its
    /// cloakroom's origin is known).
    pub fn new_client(name: &str, secret_prefix: &str) -> RegisteredClient {
        // Unique for this glewlwyd (one per test process): a counter, not a free port, which
        // the system may hand out twice (two tests then registered the same client id).
        static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
        let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let client_id = format!("{name}-{}-{n}", std::process::id());
        RegisteredClient { client_id, client_secret: format!("{secret_prefix}{n}"), key: None }
    }

    /// Registers `client` for a cloakroom at `origin` (redirect, post-logout redirect and
    /// back-channel logout URIs).
    pub async fn register(&self, client: &RegisteredClient, origin: &str) {
        let body = json!({
            "client_id": client.client_id, "name": client.client_id, "confidential": true,
            "client_secret": client.client_secret, "enabled": true,
            "redirect_uri": [format!("{origin}/bff/callback")],
            "authorization_type": ["code", "refresh_token", "client_credentials"],
            "token_endpoint_auth_method": ["client_secret_basic", "client_secret_post"],
            "scope": ["openid", "profile"], "post_logout_redirect_uri": format!("{origin}/"),
            "backchannel_logout_uri": format!("{origin}/bff/backchannel-logout"),
            "backchannel_logout_session_required": "true"
        });
        self.admin(Method::POST, "/api/client/", body).await;
    }

    /// The refresh tokens for `client` of the user `browser` is signed in to glewlwyd as (its
    /// own listing): (token hash, enabled).
    pub async fn refresh_tokens(&self, browser: &mut Browser, client: &RegisteredClient) -> Vec<(String, bool)> {
        let reply = browser.get(&format!("{}/token", self.issuer), &[]).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
        let listed = reply.json();
        listed
            .as_array()
            .unwrap()
            .iter()
            .filter(|t| t["client_id"] == client.client_id.as_str())
            .map(|t| (t["token_hash"].as_str().unwrap().to_string(), t["enabled"] == true))
            .collect()
    }

    /// Disables one of the signed-in user's refresh tokens at glewlwyd, as they can on their
    /// profile page.
    pub async fn revoke_refresh_token(&self, browser: &mut Browser, hash: &str) {
        let url = format!(
            "{}/token/{}",
            self.issuer,
            url::form_urlencoded::byte_serialize(hash.as_bytes()).collect::<String>()
        );
        let reply = browser.request(Method::DELETE, &url, None, &[]).await;
        assert_eq!(reply.status, 200, "{}", reply.text());
    }

    /// Signs `user` in at glewlwyd for the authorization request `authorize` (a URL at the
    /// plugin) as its login page would, granting the client's scopes; returns where glewlwyd
    /// sends the browser next (cloakroom's callback).
    pub async fn sign_in(&self, browser: &mut Browser, user: &str, authorize: &str) -> String {
        let password = GLEWLWYD_USERS.iter().find(|(u, _)| *u == user).expect("a glewlwyd user").1;
        let login = browser
            .request(
                Method::POST,
                &format!("{}/api/auth/", self.base),
                Some(("application/json", json!({"username": user, "password": password}).to_string())),
                &[],
            )
            .await;
        assert_eq!(login.status, 200, "glewlwyd sign-in: {}", login.text());
        let client_id = url::Url::parse(authorize)
            .unwrap()
            .query_pairs()
            .find(|(k, _)| k == "client_id")
            .map(|(_, v)| v.into_owned())
            .expect("client_id in the authorization URL");
        let grant = browser
            .request(
                Method::PUT,
                &format!("{}/api/auth/grant/{client_id}", self.base),
                Some(("application/json", json!({"scope": "openid profile"}).to_string())),
                &[],
            )
            .await;
        assert_eq!(grant.status, 200, "glewlwyd grant: {}", grant.text());
        let next = browser.get(&format!("{authorize}&g_continue"), &[]).await;
        assert_eq!(next.status, 302, "glewlwyd did not send the browser back: {}", next.text());
        next.location().unwrap().to_string()
    }

    /// Signs `user` in through cloakroom: `login_path` on `bff`, glewlwyd's sign-in, and the
    /// callback; the callback's answer.
    pub async fn sign_in_via(&self, bff: &Bff, browser: &mut Browser, user: &str, login_path: &str) -> Reply {
        let start = browser.get(&bff.url(login_path), &[]).await;
        assert_eq!(start.status, 302, "{}", start.text());
        let authorize = start.location().unwrap().to_string();
        assert!(authorize.starts_with(&self.issuer), "{authorize}");
        let callback = self.sign_in(browser, user, &authorize).await;
        assert!(callback.starts_with(&bff.url("/bff/callback")), "{callback}");
        browser.get(&callback, &[]).await
    }
}

/// A JSON call, with an admin session cookie when one is given (`Value::Null`: no body).
async fn json_call(method: Method, url: &str, session: &str, body: Value) -> Reply {
    let cookie = format!("GLEWLWYD2_SESSION_ID={session}");
    let headers: Vec<(&str, &str)> = if session.is_empty() { vec![] } else { vec![("cookie", &cookie)] };
    let body = (!body.is_null()).then(|| ("application/json", body.to_string()));
    http_call(method, url, body, &headers).await
}

async fn http_try(url: &str) -> Option<u16> {
    let client = cloakroom::upstream::HttpClient::new(Duration::from_secs(1));
    let request = Request::get(url).body(empty()).ok()?;
    client.send(request, Duration::from_secs(1)).await.ok().map(|r| r.status().as_u16())
}

fn cookie_of(reply: &Reply, name: &str) -> String {
    reply
        .set_cookies()
        .iter()
        .find_map(|c| c.strip_prefix(&format!("{name}=")).map(|rest| rest.split(';').next().unwrap_or("").to_string()))
        .unwrap_or_else(|| panic!("no {name} cookie"))
}
