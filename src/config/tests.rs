use super::*;

fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
}

const MINIMAL: &str = r#"
[oidc]
issuer = "https://id.example.com"
client_id = "spa"
client_secret = "s3cret"
"#;

fn keys(errors: &ConfigErrors) -> Vec<&str> {
    errors.0.iter().map(|e| e.key.as_str()).collect()
}

#[test]
fn minimal_config_takes_the_defaults() {
    let config = Config::from_toml(MINIMAL, env(&[])).unwrap();
    assert_eq!(config.server.listen.to_string(), "127.0.0.1:8080");
    assert_eq!(config.server.public_origin, "http://localhost:8080");
    assert_eq!(config.oidc.redirect_uri.as_str(), "http://localhost:8080/bff/callback");
    assert_eq!(config.oidc.post_logout_redirect_uri.as_str(), "http://localhost:8080/");
    assert!(matches!(&config.oidc.client_auth, ClientAuth::SecretBasic(s) if s.secret() == "s3cret"));
    assert_eq!(config.session.cookie_name, "__Host-Http-cloakroom");
    assert_eq!(config.session.legacy_cookie_names, ["__Host-cloakroom"]);
    assert_eq!(config.session.same_site, SameSite::Strict);
    assert_eq!(config.session.idle_timeout, Duration::from_secs(1800));
    assert_eq!(config.session.absolute_timeout, Duration::from_secs(12 * 3600));
    assert_eq!(config.csrf.header.as_str(), "x-csrf");
    assert!(config.session.ephemeral_keys);
    assert!(config.warnings.iter().any(|w| w.contains("session.keys is empty")));
}

/// The repository's config.toml runs the demo: valid in a demo build, and refused (naming the
/// demo keys and how to get them) by a production build.
#[test]
fn the_repository_config_toml_runs_the_demo_only_in_a_demo_build() {
    let text = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/config.toml")).unwrap();
    let config = Config::from_toml(&text, env(&[]));
    if cfg!(feature = "demo") {
        let config = config.unwrap_or_else(|e| panic!("{e}"));
        assert!(config.demo.issuer_listen.is_some() && config.demo.api_listen.is_some());
        assert!(config.warnings.iter().any(|w| w.contains("DEVELOPMENT ISSUER")));
    } else {
        let errors = config.unwrap_err();
        assert_eq!(keys(&errors), ["demo.issuer_listen", "demo.api_listen"], "{errors}");
        assert!(errors.to_string().contains("--features demo"));
    }
}

#[test]
fn the_demo_listens_on_loopback_only_and_needs_its_issuer_url() {
    let text = format!("{MINIMAL}\n[demo]\nissuer_listen = \"0.0.0.0:9400\"\napi_listen = \"192.168.1.5:9101\"\n");
    let errors = Config::from_toml(&text, env(&[])).unwrap_err();
    assert_eq!(keys(&errors), ["demo.issuer_listen", "demo.api_listen"], "{errors}");
    if cfg!(feature = "demo") {
        assert!(errors.to_string().contains("loopback"), "{errors}");
        let text = format!("{MINIMAL}\n[demo]\nissuer_listen = \"127.0.0.1:9400\"\n");
        assert_eq!(keys(&Config::from_toml(&text, env(&[])).unwrap_err()), ["oidc.issuer"]);
    }
}

#[test]
fn every_error_is_reported_at_once_each_naming_its_key() {
    let text = r#"
[server]
listen = "nowhere"
public_url = "http://app.example.com"
worker_threads = 5000
colour = "blue"
[oidc]
issuer = "ftp://id.example.com"
client_auth = "magic"
scopes = ["profile"]
timeout = 5
[session]
cookie_name = "session"
same_site = "none"
idle_timeout = "2 fortnights"
keys = ["c2hvcnQ="]
[csrf]
header = "bad header"
[[routes]]
prefix = "api"
upstream = "not a url"
token = "admin"
[[routes]]
upstream = "http://127.0.0.1:1/"
[unknown_section]
x = 1
"#;
    let errors = Config::from_toml(text, env(&[])).unwrap_err();
    let found = keys(&errors);
    for expected in [
        "server.colour",
        "unknown_section",
        "oidc.timeout",
        "server.listen",
        "server.public_url",
        "server.worker_threads",
        "oidc.issuer",
        "oidc.client_id",
        "oidc.client_secret",
        "oidc.client_auth",
        "oidc.scopes",
        "session.cookie_name",
        "session.same_site",
        "session.idle_timeout",
        "session.keys[0]",
        "csrf.header",
        "routes[0].prefix",
        "routes[0].upstream",
        "routes[0].token",
        "routes[1].prefix",
    ] {
        assert!(found.contains(&expected), "no error for {expected}; got {found:?}");
    }
    let printed = errors.to_string();
    assert!(printed.contains("server.colour"), "{printed}");
}

#[test]
fn plain_http_is_only_for_loopback() {
    for origin in ["http://localhost:8080", "http://127.0.0.1:8080", "http://[::1]:8080", "https://app.example.com"] {
        let text = format!("{MINIMAL}\n[server]\npublic_url = \"{origin}\"\n");
        assert!(Config::from_toml(&text, env(&[])).is_ok(), "{origin} refused");
    }
    let text = format!("{MINIMAL}\n[server]\npublic_url = \"http://app.example.com\"\n");
    assert_eq!(keys(&Config::from_toml(&text, env(&[])).unwrap_err()), ["server.public_url"]);
    let text = MINIMAL.replace("https://id.example.com", "http://id.example.com");
    assert_eq!(keys(&Config::from_toml(&text, env(&[])).unwrap_err()), ["oidc.issuer"]);
}

#[test]
fn public_url_must_be_an_origin() {
    let text = format!("{MINIMAL}\n[server]\npublic_url = \"https://app.example.com/app\"\n");
    assert_eq!(keys(&Config::from_toml(&text, env(&[])).unwrap_err()), ["server.public_url"]);
}

#[test]
fn environment_overrides_every_key() {
    let config = Config::from_toml(
        MINIMAL,
        env(&[
            ("CLOAKROOM_OIDC__CLIENT_SECRET", "from-env"),
            ("CLOAKROOM_OIDC__CLIENT_AUTH", "client_secret_post"),
            ("CLOAKROOM_OIDC__LOGOUT_ID_TOKEN_HINT", "true"),
            ("CLOAKROOM_SESSION__SAME_SITE", "lax"),
            ("CLOAKROOM_SESSION__MAX_SESSIONS", "5000"),
            ("CLOAKROOM_SERVER__LISTEN", "0.0.0.0:9000"),
            ("CLOAKROOM_ROUTES__0__PREFIX", "/api/"),
            ("CLOAKROOM_ROUTES__0__UPSTREAM", "http://127.0.0.1:9101/v1"),
        ]),
    )
    .unwrap();
    assert!(matches!(&config.oidc.client_auth, ClientAuth::SecretPost(s) if s.secret() == "from-env"));
    assert!(config.oidc.logout_id_token_hint);
    assert_eq!(config.session.same_site, SameSite::Lax);
    assert_eq!(config.session.max_sessions, 5000);
    assert_eq!(config.server.listen.to_string(), "0.0.0.0:9000");
    assert_eq!(config.routes[0].upstream_path, "/v1/");
    assert_eq!(config.routes[0].policy, TokenPolicy::User);
}

/// Issue 26, item 6: `oidc.scopes` and `server.trusted_proxies` refused the comma- or
/// space-separated form every other list key takes from the environment. One rule for every
/// list key; an error shows both accepted forms.
#[test]
fn every_list_key_takes_the_separated_form_from_the_environment() {
    let config = Config::from_toml(
        MINIMAL,
        env(&[
            ("CLOAKROOM_OIDC__SCOPES", "openid, profile email"),
            ("CLOAKROOM_SERVER__TRUSTED_PROXIES", "10.0.0.0/8,192.168.1.1/32"),
            ("CLOAKROOM_OIDC__USER_CLAIMS", "name email"),
        ]),
    )
    .unwrap();
    assert_eq!(config.oidc.scopes, ["openid", "profile", "email"]);
    assert_eq!(config.server.trusted_proxies.len(), 2);
    let errors = Config::from_toml(&format!("{MINIMAL}scopes = 3\n"), env(&[])).unwrap_err();
    let message = &errors.0.iter().find(|e| e.key == "oidc.scopes").expect("the key is named").message;
    assert!(message.contains(r#"["a", "b"]"#) && message.contains(r#""a, b""#), "{message}");
}

#[test]
fn secrets_and_keys_come_from_files() {
    let dir = std::env::temp_dir().join(format!("cloakroom-config-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let secret = dir.join("secret");
    let keys_file = dir.join("keys");
    std::fs::write(&secret, "file-secret\n").unwrap();
    let key_a = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [1u8; 32]);
    let key_b = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [2u8; 32]);
    std::fs::write(&keys_file, format!("{key_a}\n{key_b}\n")).unwrap();
    let text = format!(
        "[oidc]\nissuer = \"https://id.example.com\"\nclient_id = \"spa\"\nclient_secret_file = {:?}\n[session]\nkeys_file = {:?}\n",
        secret.display().to_string(),
        keys_file.display().to_string()
    );
    let config = Config::from_toml(&text, env(&[])).unwrap();
    assert_eq!(config.oidc.client_auth.secret().unwrap().secret(), "file-secret");
    assert!(!config.session.ephemeral_keys);
    assert!(!config.warnings.iter().any(|w| w.contains("session.keys")));

    let both = format!("{text}\n").replace("[session]", "[session]\nkeys = [\"x\"]");
    assert!(keys(&Config::from_toml(&both, env(&[])).unwrap_err()).contains(&"session.keys"));
    let missing = text.replace("client_secret_file = ", "client_secret_file = \"/nonexistent\" #");
    assert!(keys(&Config::from_toml(&missing, env(&[])).unwrap_err()).contains(&"oidc.client_secret_file"));
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn routes_must_not_shadow_bff_or_repeat() {
    let text = format!(
        "{MINIMAL}\n[[routes]]\nprefix = \"/bff/api/\"\nupstream = \"http://127.0.0.1:1/\"\n[[routes]]\nprefix = \"/a/\"\nupstream = \"http://127.0.0.1:1/\"\n[[routes]]\nprefix = \"/a/\"\nupstream = \"http://127.0.0.1:2/\"\n"
    );
    assert_eq!(keys(&Config::from_toml(&text, env(&[])).unwrap_err()), ["routes[0].prefix", "routes[2].prefix"]);
}

#[test]
fn reserved_authorization_parameters_cannot_be_overridden() {
    let text = format!("{MINIMAL}\n[oidc.extra_auth_params]\nstate = \"fixed\"\naudience = \"https://api\"\n");
    assert_eq!(keys(&Config::from_toml(&text, env(&[])).unwrap_err()), ["oidc.extra_auth_params.state"]);
}

#[test]
fn invalid_toml_is_one_clear_error() {
    let errors = Config::from_toml("[server\nlisten = ", env(&[])).unwrap_err();
    assert_eq!(keys(&errors), ["(file)"]);
    assert!(errors.to_string().contains("not valid TOML"));
}

#[test]
fn log_format_is_text_or_json() {
    let json = Config::from_toml(&format!("{MINIMAL}\n[log]\nformat = \"json\"\n"), env(&[])).unwrap();
    assert!(json.log.json);
    assert!(!Config::from_toml(MINIMAL, env(&[])).unwrap().log.json);
    let errors = Config::from_toml(&format!("{MINIMAL}\n[log]\nformat = \"xml\"\n"), env(&[])).unwrap_err();
    assert_eq!(keys(&errors), ["log.format"]);
}

/// A fresh Ed25519 private key, as PKCS#8 PEM in `dir/client.pem`.
fn ed25519_key_file(dir: &std::path::Path) -> std::path::PathBuf {
    let key_file = dir.join("client.pem");
    let pkcs8 = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8v1(&aws_lc_rs::rand::SystemRandom::new()).unwrap();
    let pem = format!(
        "-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n",
        base64::Engine::encode(&base64::engine::general_purpose::STANDARD, pkcs8.as_ref())
    );
    std::fs::write(&key_file, pem).unwrap();
    key_file
}

#[test]
fn private_key_jwt_needs_a_usable_key_and_no_secret() {
    let dir = std::env::temp_dir().join(format!("cloakroom-config-pkjwt-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = ed25519_key_file(&dir);
    let base = "[oidc]\nissuer = \"https://id.example.com\"\nclient_id = \"spa\"\nclient_auth = \"private_key_jwt\"\n";
    let good = format!("{base}private_key_file = {:?}\nprivate_key_kid = \"k1\"\n", key_file.display().to_string());
    let config = Config::from_toml(&good, env(&[])).unwrap();
    let ClientAuth::PrivateKeyJwt { key, audience } = &config.oidc.client_auth else { panic!("not private_key_jwt") };
    assert_eq!(key.alg(), "EdDSA");
    assert_eq!(*audience, AssertionAudience::Issuer);
    assert!(config.oidc.client_auth.secret().is_none());
    let token_endpoint = format!("{good}client_assertion_audience = \"token_endpoint\"\n");
    let config = Config::from_toml(&token_endpoint, env(&[])).unwrap();
    assert!(matches!(
        config.oidc.client_auth,
        ClientAuth::PrivateKeyJwt { audience: AssertionAudience::TokenEndpoint, .. }
    ));

    let refused = |text: &str| {
        keys(&Config::from_toml(text, env(&[])).unwrap_err()).iter().map(|k| k.to_string()).collect::<Vec<_>>()
    };
    assert_eq!(refused(base), ["oidc.private_key_file"]);
    assert_eq!(refused(&format!("{base}private_key_file = \"/nonexistent.pem\"\n")), ["oidc.private_key_file"]);
    assert_eq!(refused(&format!("{good}client_secret = \"left-over\"\n")), ["oidc.client_secret"]);
    assert_eq!(refused(&format!("{good}private_key_alg = \"RS256\"\n")), ["oidc.private_key_alg"]);
    assert_eq!(
        refused(&format!("{good}client_assertion_audience = \"everyone\"\n")),
        ["oidc.client_assertion_audience"]
    );
    std::fs::write(&key_file, "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n").unwrap();
    assert_eq!(refused(&good), ["oidc.private_key_file"]);
    // A key for another method is a mistake worth naming, not ignoring.
    let stray =
        MINIMAL.replace("[oidc]\n", &format!("[oidc]\nprivate_key_file = {:?}\n", key_file.display().to_string()));
    assert_eq!(refused(&stray), ["oidc.private_key_file"]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_redis_store_needs_a_redis_url_and_shared_keys() {
    let key = base64::Engine::encode(&base64::engine::general_purpose::STANDARD, [3u8; 32]);
    let with = |session: &str| format!("{MINIMAL}[session]\n{session}\n");
    let good = with(&format!("store = \"redis\"\nredis_url = \"redis://127.0.0.1:6379/0\"\nkeys = [\"{key}\"]"));
    let config = Config::from_toml(&good, env(&[])).unwrap();
    assert!(matches!(config.session.store, StoreSettings::Redis(ref r) if r.key_prefix == "cloakroom:"));
    let shown = format!("{config:?}");
    assert!(!shown.contains("redis://"), "Debug must not show the URL (it may hold a password): {shown}");

    let refused = |text: &str| {
        let errors = Config::from_toml(text, env(&[])).unwrap_err();
        (keys(&errors).iter().map(|k| k.to_string()).collect::<Vec<_>>(), errors.to_string())
    };
    assert_eq!(refused(&with(&format!("store = \"redis\"\nkeys = [\"{key}\"]"))).0, ["session.redis_url"]);
    assert_eq!(
        refused(&with("store = \"redis\"\nredis_url = \"redis://127.0.0.1:6379\"")).0,
        ["session.keys"],
        "ephemeral keys cannot be shared by replicas"
    );
    let (bad, text) =
        refused(&with(&format!("store = \"redis\"\nredis_url = \"http://:hunter2@host\"\nkeys = [\"{key}\"]")));
    assert_eq!(bad, ["session.redis_url"]);
    assert!(!text.contains("hunter2"), "an error echoed the password: {text}");
    assert_eq!(refused(&with("store = \"memcached\"")).0, ["session.store"]);
    assert_eq!(refused(&with("redis_url = \"redis://127.0.0.1\"")).0, ["session.redis_url"]);
    let plain = with(&format!("store = \"redis\"\nredis_url = \"redis://redis.internal:6379\"\nkeys = [\"{key}\"]"));
    assert!(Config::from_toml(&plain, env(&[])).unwrap().warnings.iter().any(|w| w.contains("rediss://")));
}

#[test]
fn a_private_key_certificate_must_be_readable() {
    let dir = std::env::temp_dir().join(format!("cloakroom-config-x5t-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let key_file = ed25519_key_file(&dir);
    let text = format!(
        "[oidc]\nissuer = \"https://id.example.com\"\nclient_id = \"spa\"\nclient_auth = \"private_key_jwt\"\nprivate_key_file = {:?}\nprivate_key_cert_file = \"/nonexistent.pem\"\n",
        key_file.display().to_string()
    );
    assert_eq!(keys(&Config::from_toml(&text, env(&[])).unwrap_err()), ["oidc.private_key_cert_file"]);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn the_forwarding_header_and_public_host_are_typed_and_named_in_errors() {
    let config = Config::from_toml(MINIMAL, env(&[])).unwrap();
    assert_eq!(config.server.trusted_proxy_header, crate::forwarded::ForwardingHeader::XForwardedFor);
    assert_eq!(config.server.public_host, "localhost:8080");
    let overridden = env(&[
        ("CLOAKROOM_SERVER__TRUSTED_PROXY_HEADER", "Forwarded"),
        ("CLOAKROOM_SERVER__PUBLIC_URL", "https://app.example.com"),
    ]);
    let config = Config::from_toml(MINIMAL, overridden).unwrap();
    assert_eq!(config.server.trusted_proxy_header, crate::forwarded::ForwardingHeader::Forwarded);
    assert_eq!(config.server.public_host, "app.example.com");
    let errors =
        Config::from_toml(MINIMAL, env(&[("CLOAKROOM_SERVER__TRUSTED_PROXY_HEADER", "x-real-ip")])).unwrap_err();
    assert_eq!(keys(&errors), ["server.trusted_proxy_header"], "{errors}");
}

#[test]
fn route_scopes_and_resources_keep_each_api_its_own_audience() {
    let route = |extra: &str| format!("[[routes]]\nprefix = \"/{extra}/\"\nupstream = \"http://127.0.0.1:1/\"\n");
    // Scopes alone: for cloakroom's own token only.
    let client = format!("{MINIMAL}{}token = \"client\"\nscopes = [\"svc\"]\n", route("svc"));
    let config = Config::from_toml(&client, env(&[])).unwrap();
    let audience = config.routes[0].audience.as_ref().expect("an audience");
    assert_eq!((audience.resource.as_deref(), audience.scopes.as_slice()), (None, &["svc".to_string()][..]));
    assert!(!config.oidc.scopes.contains(&String::new()));
    let user = format!("{MINIMAL}{}scopes = [\"svc\"]\n", route("user"));
    assert_eq!(keys(&Config::from_toml(&user, env(&[])).unwrap_err()), ["routes[0].scopes"]);
    // A route naming a resource beside one carrying the sign-in's own token: that token's
    // audience must be named, or a provider may give it the other API's.
    let mixed = format!("{MINIMAL}{}resource = \"https://orders.example\"\n{}", route("orders"), route("api"));
    assert_eq!(keys(&Config::from_toml(&mixed, env(&[])).unwrap_err()), ["oidc.resource"]);
    let named =
        mixed.replace("client_secret = \"s3cret\"", "client_secret = \"s3cret\"\nresource = \"https://api.example\"");
    let config = Config::from_toml(&named, env(&[])).unwrap();
    assert_eq!(config.oidc.authorization_resources, ["https://api.example", "https://orders.example"]);
    // Only routes with resources, or the default routes carrying no user token: nothing to name.
    let only = format!(
        "{MINIMAL}{}resource = \"https://orders.example\"\n{}token = \"none\"\n",
        route("orders"),
        route("open")
    );
    assert!(Config::from_toml(&only, env(&[])).is_ok());
}

#[test]
fn route_methods_are_http_methods_and_never_connect_or_trace() {
    let route = |methods: &str| {
        format!("{MINIMAL}[[routes]]\nprefix = \"/a/\"\nupstream = \"http://127.0.0.1:1/\"\nmethods = {methods}\n")
    };
    let config = Config::from_toml(&route("[\"get\", \"POST\", \"GET\"]"), env(&[])).unwrap();
    let allowed = config.routes[0].methods.as_ref().unwrap();
    assert_eq!(allowed.allow, "GET, POST");
    assert!(allowed.permits(&http::Method::POST) && !allowed.permits(&http::Method::DELETE));
    assert!(Config::from_toml(&route("[]"), env(&[])).unwrap().routes[0].methods.is_none());
    for bad in ["[\"TRACE\"]", "[\"CONNECT\"]", "[\"G E T\"]"] {
        assert_eq!(keys(&Config::from_toml(&route(bad), env(&[])).unwrap_err()), ["routes[0].methods"], "{bad}");
    }
}

#[test]
fn route_rules_are_typed_and_named_in_errors() {
    let route = |token: &str, rules: &str| {
        format!(
            "{MINIMAL}[[routes]]\nprefix = \"/a/\"\nupstream = \"http://127.0.0.1:1/\"\ntoken = \"{token}\"\nrules_match = \"any\"\n{rules}"
        )
    };
    let good = route(
        "user",
        "[[routes.rules]]\nclaim = \"groups\"\ncontains_all = [\"a\", \"b\"]\n[[routes.rules]]\nclaim = \"level\"\nequals = 3\n",
    );
    let config = Config::from_toml(&good, env(&[])).unwrap();
    let rules = config.routes[0].rules.as_ref().unwrap();
    assert_eq!((rules.rules.len(), rules.matching), (2, RulesMatch::Any));
    assert_eq!(rules.rules[1].test, ClaimTest::Equals(serde_json::json!(3)));
    for (token, rules, key) in [
        ("user", "[[routes.rules]]\nequals = 1\n", "routes[0].rules[0].claim"),
        ("user", "[[routes.rules]]\nclaim = \"x\"\n", "routes[0].rules[0]"),
        ("user", "[[routes.rules]]\nclaim = \"x\"\nequals = 1\ncontains_any = [1]\n", "routes[0].rules[0]"),
        ("user", "[[routes.rules]]\nclaim = \"x\"\ncontains_any = []\n", "routes[0].rules[0]"),
        ("none", "[[routes.rules]]\nclaim = \"x\"\nequals = 1\n", "routes[0].rules"),
        ("user", "[[routes.rules]]\nclaim = \"x\"\nequals = [1, 2]\n", "routes[0].rules[0]"),
        ("user", "[[routes.rules]]\nclaim = \"x\"\ncontains_any = [{a = 1}]\n", "routes[0].rules[0]"),
        ("user", "[[routes.rules]]\nscope = \"api:read\"\nclaim = \"x\"\n", "routes[0].rules[0]"),
        ("user", "[[routes.rules]]\nscope = \"a\"\nequals = 1\n", "routes[0].rules[0]"),
        ("user", "[[routes.rules]]\nscope = [\"a\\\\b\"]\n", "routes[0].rules[0].scope"),
        ("user", "[[routes.rules]]\nscope = [\"caf\u{e9}\"]\n", "routes[0].rules[0].scope"),
        ("user", "[[routes.rules]]\nclaim = \"a\\\\b\"\nequals = 1\n", "routes[0].rules[0].claim"),
    ] {
        assert_eq!(keys(&Config::from_toml(&route(token, rules), env(&[])).unwrap_err()), [key], "{rules}");
    }
    // Limits that keep a check allocation-free: 32 rules, 64 values each.
    let values = (0..65).map(|i| i.to_string()).collect::<Vec<_>>().join(", ");
    let many_values = route("user", &format!("[[routes.rules]]\nclaim = \"x\"\ncontains_any = [{values}]\n"));
    assert_eq!(keys(&Config::from_toml(&many_values, env(&[])).unwrap_err()), ["routes[0].rules[0]"]);
    let many_rules = route("user", &"[[routes.rules]]\nclaim = \"x\"\nequals = 1\n".repeat(33));
    assert_eq!(keys(&Config::from_toml(&many_rules, env(&[])).unwrap_err()), ["routes[0].rules"]);
    let enough = route("user", &"[[routes.rules]]\nclaim = \"x\"\nequals = 1\n".repeat(32));
    assert_eq!(Config::from_toml(&enough, env(&[])).unwrap().routes[0].rules.as_ref().unwrap().claims, ["x"]);
    // Scope rules: all of the named scopes, on the sign-in's own token.
    let scoped = route(
        "user",
        "[[routes.rules]]\nscope = \"api:read api:write\"\n[[routes.rules]]\nclaim = \"b\"\nequals = true\n[[routes.rules]]\nclaim = \"a\"\nequals = \"x\"\n",
    );
    let config = Config::from_toml(&scoped, env(&[])).unwrap();
    let rules = config.routes[0].rules.as_ref().unwrap();
    assert_eq!(rules.claims, ["a", "b"], "sorted, for the one pass over the claims");
    assert_eq!(rules.rules[0].on, RuleSubject::Scope);
    assert_eq!(
        rules.rules[0].test,
        ClaimTest::ContainsAll(vec![serde_json::json!("api:read"), serde_json::json!("api:write")])
    );
    assert_eq!((rules.rules[1].on, rules.rules[2].on), (RuleSubject::Claim(1), RuleSubject::Claim(0)));
    let on_resource = format!(
        "{}resource = \"urn:orders\"\n[[routes.rules]]\nscope = \"api:read\"\n",
        route("user", "").replace("[oidc]\n", "[oidc]\nresource = \"urn:default\"\n")
    );
    assert_eq!(keys(&Config::from_toml(&on_resource, env(&[])).unwrap_err()), ["routes[0].rules[0].scope"]);
}

#[test]
fn step_up_is_typed_needs_a_user_route_and_the_login_params_it_passes_on() {
    let config = |login_params: &str, token: &str, step_up: &str| {
        format!(
            "{MINIMAL}login_params = {login_params}\n[[routes]]\nprefix = \"/a/\"\nupstream = \"http://127.0.0.1:1/\"\ntoken = \"{token}\"\nstep_up = {step_up}\n"
        )
    };
    let all = "[\"acr_values\", \"max_age\"]";
    let good =
        Config::from_toml(&config(all, "user", "{ acr_values = [\"mfa\", \"hwk\"], max_age = \"5m\" }"), env(&[]));
    let good = good.unwrap();
    assert_eq!(
        good.routes[0].step_up,
        Some(StepUp { acr_values: vec!["mfa".into(), "hwk".into()], max_age: Some(300) })
    );
    assert!(good.oidc.enforce_acr_values, "acr enforcement is on by default");
    for (login_params, token, step_up, key) in [
        (all, "user", "{}", "routes[0].step_up"),
        (all, "none", "{ max_age = \"5m\" }", "routes[0].step_up"),
        (all, "user", "{ max_age = \"soon\" }", "routes[0].step_up.max_age"),
        (all, "user", "{ acr_values = [\"a b\"] }", "routes[0].step_up.acr_values[0]"),
        (all, "user", "{ acr_values = [\"mfa\"], colour = 1 }", "routes[0].step_up"),
        ("[\"max_age\"]", "user", "{ acr_values = [\"mfa\"] }", "routes[0].step_up"),
        ("[\"acr_values\"]", "user", "{ max_age = \"1m\" }", "routes[0].step_up"),
    ] {
        let errors = Config::from_toml(&config(login_params, token, step_up), env(&[])).unwrap_err();
        assert!(keys(&errors).iter().all(|k| k.starts_with(key)) && !errors.0.is_empty(), "{step_up}: {errors}");
    }
}

#[test]
fn redis_modes_need_their_addresses_and_read_tls_files_at_start() {
    let redis =
        |keys: &str| format!("{MINIMAL}[session]\nkeys = [\"{}\"]\nstore = \"redis\"\n{keys}\n", "A".repeat(43) + "=");
    let sentinel = Config::from_toml(
        &redis(
            "redis_mode = \"sentinel\"\nredis_nodes = \"redis://127.0.0.1:26379, redis://127.0.0.1:26380\"\nredis_master_name = \"mymaster\"\nredis_password = \"p\"",
        ),
        env(&[]),
    );
    let sentinel = sentinel.unwrap();
    let StoreSettings::Redis(settings) = &sentinel.session.store else { panic!("not redis") };
    let RedisTopology::Sentinel { sentinels, master_name, auth } = &settings.topology else { panic!("not sentinel") };
    assert_eq!((sentinels.len(), master_name.as_str(), auth.password.as_deref()), (2, "mymaster", Some("p")));
    let cluster = Config::from_toml(&redis("redis_mode = \"cluster\"\nredis_nodes = [\"rediss://a:6379\"]"), env(&[]));
    assert!(
        matches!(&cluster.unwrap().session.store, StoreSettings::Redis(s) if matches!(s.topology, RedisTopology::Cluster { .. }))
    );
    for (settings, key) in [
        ("redis_mode = \"sentinel\"\nredis_master_name = \"m\"", "session.redis_nodes"),
        ("redis_mode = \"sentinel\"\nredis_nodes = [\"redis://127.0.0.1:26379\"]", "session.redis_master_name"),
        ("redis_mode = \"cluster\"\nredis_nodes = [\"http://a:1\"]", "session.redis_nodes[0]"),
        ("redis_mode = \"cluster\"\nredis_nodes = [\"redis://127.0.0.1:1\", \"rediss://b:2\"]", "session.redis_nodes"),
        (
            "redis_mode = \"cluster\"\nredis_nodes = [\"rediss://a:1\"]\nredis_url = \"redis://127.0.0.1\"",
            "session.redis_url",
        ),
        ("redis_url = \"redis://127.0.0.1\"\nredis_password = \"p\"", "session.redis_password"),
        ("redis_url = \"redis://127.0.0.1\"\nredis_ca_file = \"/nonexistent/ca.pem\"", "session.redis_ca_file"),
        (
            "redis_url = \"redis://127.0.0.1\"\nredis_client_cert_file = \"/etc/hostname\"",
            "session.redis_client_key_file",
        ),
        ("redis_url = \"redis://127.0.0.1\"\nredis_ca_file = \"/etc/hostname\"", "session.redis_ca_file"),
        ("redis_mode = \"primary\"\nredis_url = \"redis://127.0.0.1\"", "session.redis_mode"),
    ] {
        let errors = Config::from_toml(&redis(settings), env(&[])).unwrap_err();
        assert_eq!(keys(&errors), [key], "{settings}: {errors}");
    }
}

#[test]
fn more_providers_have_unique_ids_and_their_errors_name_them() {
    let more = |entries: &str| format!("{MINIMAL}{entries}");
    let entry = |id: &str, issuer: &str| {
        format!("[[providers]]\n{id}issuer = \"{issuer}\"\nclient_id = \"b\"\nclient_secret = \"s\"\n")
    };
    let good = Config::from_toml(
        &more(&entry("id = \"corp\"\ndisplay_name = \"Corporate\"\n", "https://corp.example.com")),
        env(&[]),
    );
    let good = good.unwrap();
    assert_eq!((good.oidc.id.as_str(), good.providers.len()), ("default", 1));
    assert_eq!((good.providers[0].id.as_str(), good.providers[0].display_name.as_str()), ("corp", "Corporate"));
    for (entries, key) in [
        (entry("", "https://corp.example.com"), "providers[0].id"),
        (entry("id = \"default\"\n", "https://corp.example.com"), "providers[0].id"),
        (entry("id = \"a b\"\n", "https://corp.example.com"), "providers[0].id"),
        (entry("id = \"corp\"\n", "not a url"), "providers[0].issuer"),
        (
            entry("id = \"corp\"\n", "https://a.example.com") + &entry("id = \"corp\"\n", "https://b.example.com"),
            "providers[1].id",
        ),
    ] {
        let errors = Config::from_toml(&more(&entries), env(&[])).unwrap_err();
        assert_eq!(keys(&errors), [key], "{entries}: {errors}");
    }
}

#[test]
fn traces_are_off_by_default_and_every_bad_setting_names_its_key() {
    assert!(Config::from_toml(MINIMAL, env(&[])).unwrap().traces.is_none());
    let on = format!("{MINIMAL}\n[traces]\nendpoint = \"http://127.0.0.1:4318/v1/traces\"\n");
    let traces = Config::from_toml(&on, env(&[])).unwrap().traces.unwrap();
    assert_eq!((traces.sample_ratio, traces.queue_size, traces.service_name.as_str()), (1.0, 2048, "cloakroom"));
    assert_eq!(traces.export_timeout, Duration::from_secs(10));
    let from_env = env(&[
        ("CLOAKROOM_TRACES__ENDPOINT", "https://collector.example.com/v1/traces"),
        ("CLOAKROOM_TRACES__SAMPLE_RATIO", "0.25"),
    ]);
    let traces = Config::from_toml(MINIMAL, from_env).unwrap().traces.unwrap();
    assert_eq!((traces.endpoint.host_str(), traces.sample_ratio), (Some("collector.example.com"), 0.25));

    let bad = format!(
        "{MINIMAL}\n[traces]\nendpoint = \"ftp://collector\"\nsample_ratio = 1.5\nservice_name = \" \"\nqueue_size = 0\nexport_timeout = \"0s\"\nexport_interval = \"soon\"\n"
    );
    let errors = Config::from_toml(&bad, env(&[])).unwrap_err();
    assert_eq!(
        keys(&errors),
        [
            "traces.endpoint",
            "traces.sample_ratio",
            "traces.service_name",
            "traces.queue_size",
            "traces.export_timeout",
            "traces.export_interval"
        ],
        "{errors}"
    );
    let secret = format!("{MINIMAL}\n[traces]\nendpoint = \"https://user:pw@collector.example.com/v1/traces\"\n");
    assert_eq!(keys(&Config::from_toml(&secret, env(&[])).unwrap_err()), ["traces.endpoint"]);
    let remote_plain = format!("{MINIMAL}\n[traces]\nendpoint = \"http://collector.internal:4318/v1/traces\"\n");
    let warnings = Config::from_toml(&remote_plain, env(&[])).unwrap().warnings;
    assert!(warnings.iter().any(|w| w.contains("traces.endpoint")), "{warnings:?}");
}

#[test]
fn frontends_inherit_what_is_shared_own_the_rest_and_name_their_problems() {
    let text = format!(
        "[server]\npublic_url = \"https://app.example.com\"\n{MINIMAL}\n[session]\nkeys = [\"{key}\"]\n\
         [[routes]]\nprefix = \"/api/\"\nupstream = \"https://api.example.com/\"\n\
         [[frontends]]\npublic_url = \"https://admin.example.com\"\n[frontends.oidc]\nclient_id = \"admin\"\n\
         [frontends.session]\ncookie_name = \"__Host-admin\"\n\
         [[frontends.routes]]\nprefix = \"/admin-api/\"\nupstream = \"https://admin-api.example.com/\"\n",
        key = "KioqKioqKioqKioqKioqKioqKioqKioqKioqKioqKio="
    );
    let config = Config::from_toml(&text, env(&[])).unwrap_or_else(|e| panic!("{e}"));
    let admin = &config.frontends[0];
    assert_eq!(admin.server.public_origin, "https://admin.example.com");
    assert_eq!(admin.oidc.client_id.as_str(), "admin");
    assert_eq!(admin.oidc.issuer, config.oidc.issuer, "the provider is inherited");
    assert!(matches!(&admin.oidc.client_auth, ClientAuth::SecretBasic(s) if s.secret() == "s3cret"));
    assert_eq!(admin.oidc.redirect_uri.as_str(), "https://admin.example.com/bff/callback");
    assert_eq!(admin.session.cookie_name, "__Host-admin");
    assert_eq!(admin.routes.iter().map(|r| r.prefix.as_str()).collect::<Vec<_>>(), ["/admin-api/"]);
    assert!(admin.spa.is_none() && admin.frontends.is_empty());

    let bad = format!(
        "[server]\npublic_url = \"https://app.example.com\"\n{MINIMAL}\n\
         [[frontends]]\npublic_url = \"https://admin.example.com\"\n[frontends.session]\nstore = \"redis\"\n\
         [[frontends]]\npublic_url = \"https://other.example.com\"\nlisten = \"0.0.0.0:1\"\n[frontends.oidc]\nclient_id = \"o\"\n\
         [[frontends]]\npublic_url = \"https://APP.example.com\"\n[frontends.oidc]\nclient_id = \"same-host\"\n\
         [[frontends]]\npublic_url = \"https://four.example.com\"\n[frontends.oidc]\nclient_id = \"four\"\n\
         [[frontends.routes]]\nprefix = \"/x/\"\nupstream = \"ftp://nowhere\"\n"
    );
    let errors = Config::from_toml(&bad, env(&[])).unwrap_err();
    assert_eq!(
        keys(&errors),
        [
            "frontends[0].session.store",
            "frontends[0].oidc.client_id",
            "frontends[1].listen",
            "frontends[2].public_url",
            "frontends[3].routes[0].upstream"
        ],
        "{errors}"
    );
}
