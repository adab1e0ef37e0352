//! From [`RawConfig`] to [`Config`]: every check, every error collected, each naming its key.

pub(super) use super::raw::split_list;
use super::raw::{ClientAuthMethod, RawConfig};
use super::sections;
use super::*;
use crate::crypto::client_key::KeyError;
use toml::{Table, Value};

/// Deserializes the whole tree; on a bad key, records it, drops it (so its default applies)
/// and tries again, so one run reports every type error and unknown key, not just the first.
pub(super) fn deserialize_sections(mut table: Table, errors: &mut Vec<ConfigError>) -> RawConfig {
    for _ in 0..256 {
        let attempt: Result<RawConfig, _> = serde_path_to_error::deserialize(Value::Table(table.clone()));
        match attempt {
            Ok(raw) => return raw,
            Err(e) => {
                let key = e.path().to_string();
                // The message alone: the key is given, and the parser's own "in `…`" repeats it.
                let message = e.inner().to_string();
                let message = message.split("\nin `").next().unwrap_or_default().trim_end().to_string();
                errors.push(ConfigError { key: key.clone(), message });
                if !remove_path(&mut table, e.path()) {
                    break;
                }
            }
        }
    }
    RawConfig::default()
}

fn remove_path(table: &mut Table, path: &serde_path_to_error::Path) -> bool {
    use serde_path_to_error::Segment;
    let segments: Vec<&Segment> = path.iter().collect();
    let Some((last, parents)) = segments.split_last() else {
        return false;
    };
    let mut node: &mut Value = match parents.first() {
        Some(Segment::Map { key }) => match table.get_mut(key) {
            Some(v) => v,
            None => return false,
        },
        Some(_) => return false,
        None => {
            return match last {
                Segment::Map { key } => table.remove(key).is_some(),
                _ => false,
            };
        }
    };
    for segment in &parents[1..] {
        node = match (segment, node) {
            (Segment::Map { key }, Value::Table(t)) => match t.get_mut(key) {
                Some(v) => v,
                None => return false,
            },
            (Segment::Seq { index }, Value::Array(a)) => match a.get_mut(*index) {
                Some(v) => v,
                None => return false,
            },
            _ => return false,
        };
    }
    match (last, node) {
        (Segment::Map { key }, Value::Table(t)) => t.remove(key).is_some(),
        (Segment::Seq { index }, Value::Array(a)) if *index < a.len() => {
            a[*index] = Value::Table(Table::new());
            true
        }
        _ => false,
    }
}

pub(super) struct Check<'a> {
    errors: &'a mut Vec<ConfigError>,
    /// Insecure or ephemeral settings, printed loudly at start-up.
    warnings: Vec<String>,
}

impl Check<'_> {
    /// How many problems were reported so far.
    pub(super) fn error_count(&self) -> usize {
        self.errors.len()
    }

    /// Runs `section` and renames the keys of what it reported from `from.` to `to.` (one
    /// section's checks serving for several tables, like each `[[providers]]`).
    pub(super) fn renamed<T>(&mut self, from: &str, to: &str, section: impl FnOnce(&mut Self) -> T) -> T {
        let (errors, warnings) = (self.errors.len(), self.warnings.len());
        let result = section(self);
        for error in &mut self.errors[errors..] {
            if let Some(rest) = error.key.strip_prefix(from) {
                error.key = format!("{to}{rest}");
            }
        }
        for warning in &mut self.warnings[warnings..] {
            *warning = warning.replacen(from, to, 1);
        }
        result
    }

    pub(super) fn warn(&mut self, warning: impl Into<String>) {
        self.warnings.push(warning.into());
    }

    pub(super) fn fail(&mut self, key: impl Into<String>, message: impl Into<String>) {
        self.errors.push(ConfigError { key: key.into(), message: message.into() });
    }

    pub(super) fn duration(&mut self, key: &str, text: &str) -> Duration {
        match self.duration_or_zero(key, text) {
            Some(d) if !d.is_zero() => d,
            Some(_) => {
                self.fail(key, "must be greater than zero");
                Duration::from_secs(1)
            }
            None => Duration::from_secs(1),
        }
    }

    /// A duration where "0s" means "none"; `None` (reported) when it does not parse.
    pub(super) fn duration_or_zero(&mut self, key: &str, text: &str) -> Option<Duration> {
        match humantime::parse_duration(text.trim()) {
            Ok(d) => Some(d),
            Err(e) => {
                self.fail(key, format!("{text:?} is not a duration like \"30s\", \"10m\" or \"12h\" ({e})"));
                None
            }
        }
    }

    /// A size like "64KiB", "10MB", "1GiB" or a plain number of bytes.
    pub(super) fn size(&mut self, key: &str, text: &str) -> u64 {
        let text = text.trim();
        let split = text.find(|c: char| !c.is_ascii_digit()).unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let factor = match unit.trim().to_ascii_lowercase().as_str() {
            "" | "b" => Some(1),
            "kb" => Some(1_000),
            "kib" | "k" => Some(1 << 10),
            "mb" => Some(1_000_000),
            "mib" | "m" => Some(1 << 20),
            "gb" => Some(1_000_000_000),
            "gib" | "g" => Some(1 << 30),
            _ => None,
        };
        match (number.parse::<u64>(), factor) {
            (Ok(n), Some(f)) if n > 0 => n.saturating_mul(f),
            _ => {
                self.fail(key, format!("{text:?} is not a size like \"64KiB\", \"10MB\" or \"1GiB\""));
                1
            }
        }
    }

    pub(super) fn socket_addr(&mut self, key: &str, text: &str) -> SocketAddr {
        text.trim().parse().unwrap_or_else(|_| {
            self.fail(key, format!("{text:?} is not an address like \"127.0.0.1:8080\""));
            SocketAddr::from(([127, 0, 0, 1], 0))
        })
    }

    pub(super) fn url(&mut self, key: &str, text: &str) -> Option<Url> {
        if text.trim().is_empty() {
            self.fail(key, "is required");
            return None;
        }
        match Url::parse(text.trim()) {
            Ok(url) if matches!(url.scheme(), "http" | "https") && url.host().is_some() => Some(url),
            Ok(_) => {
                self.fail(key, format!("{text:?} must be an http(s) URL with a host"));
                None
            }
            Err(e) => {
                self.fail(key, format!("{text:?} is not a URL ({e})"));
                None
            }
        }
    }

    /// Plain http is only for loopback development: browsers treat those as secure contexts,
    /// so `Secure` cookies still work, and nothing crosses a network in the clear.
    pub(super) fn require_https_unless_loopback(&mut self, key: &str, url: &Url) {
        if url.scheme() == "http" && !is_loopback(url) {
            self.fail(key, format!("{url} must use https (plain http is accepted only for localhost/127.0.0.1/[::1])"));
        }
    }

    /// RFC 8707 §2: an absolute URI without a fragment.
    pub(super) fn resource(&mut self, key: &str, text: &str) {
        match Url::parse(text) {
            Ok(url) if url.fragment().is_none() => {}
            Ok(_) => self.fail(key, format!("{text:?} must not carry a fragment (RFC 8707)")),
            Err(_) => self.fail(key, format!("{text:?} is not an absolute URI (RFC 8707 resource indicator)")),
        }
    }

    pub(super) fn secret(&mut self, key: &str, inline: Option<String>, file: Option<String>) -> Option<String> {
        match (inline.filter(|s| !s.is_empty()), file.filter(|s| !s.is_empty())) {
            (Some(_), Some(_)) => {
                self.fail(key, format!("set either {key} or {key}_file, not both"));
                None
            }
            (Some(value), None) => Some(value),
            (None, Some(path)) => match std::fs::read_to_string(&path) {
                Ok(text) => Some(text.trim_end_matches(['\r', '\n']).to_string()),
                Err(e) => {
                    self.fail(format!("{key}_file"), format!("cannot read {path}: {e}"));
                    None
                }
            },
            (None, None) => None,
        }
    }
}

/// `oidc.client_auth` and the credential it needs: a secret, or a private key (and never both,
/// so a leftover secret cannot quietly stay in use).
pub(super) fn client_auth(check: &mut Check, oidc: &super::raw::RawOidc) -> Option<ClientAuth> {
    let secret = check.secret("oidc.client_secret", oidc.client_secret.clone(), oidc.client_secret_file.clone());
    let method = oidc.client_auth;
    if method != ClientAuthMethod::PrivateKeyJwt {
        for (key, value) in [
            ("oidc.private_key_file", &oidc.private_key_file),
            ("oidc.private_key_kid", &oidc.private_key_kid),
            ("oidc.private_key_alg", &oidc.private_key_alg),
            ("oidc.private_key_cert_file", &oidc.private_key_cert_file),
        ] {
            if value.is_some() {
                check.fail(key, "is only used with client_auth = \"private_key_jwt\"");
            }
        }
    }
    let secret_required = "is required (cloakroom is a confidential client): set client_secret, client_secret_file or CLOAKROOM_OIDC__CLIENT_SECRET, or use client_auth = \"private_key_jwt\"";
    match method {
        ClientAuthMethod::ClientSecretBasic | ClientAuthMethod::ClientSecretPost => {
            let Some(secret) = secret else {
                check.fail("oidc.client_secret", secret_required);
                return None;
            };
            let secret = ClientSecret::new(secret);
            Some(if method == ClientAuthMethod::ClientSecretBasic {
                ClientAuth::SecretBasic(secret)
            } else {
                ClientAuth::SecretPost(secret)
            })
        }
        ClientAuthMethod::PrivateKeyJwt => {
            if secret.is_some() {
                check.fail("oidc.client_secret", "must not be set with client_auth = \"private_key_jwt\"");
            }
            let audience = oidc.client_assertion_audience;
            let Some(path) = oidc.private_key_file.as_deref().filter(|p| !p.is_empty()) else {
                check.fail("oidc.private_key_file", "is required with client_auth = \"private_key_jwt\"");
                return None;
            };
            let pem = match std::fs::read(path) {
                Ok(pem) => pem,
                Err(e) => {
                    check.fail("oidc.private_key_file", format!("cannot read {path}: {e}"));
                    return None;
                }
            };
            let key = ClientKey::from_pem(&pem, oidc.private_key_alg.as_deref(), oidc.private_key_kid.clone());
            let key = match (key, oidc.private_key_cert_file.as_deref()) {
                (Ok(key), Some(cert_path)) => match std::fs::read(cert_path) {
                    Ok(cert) => key.with_certificate(&cert).map_err(|e| {
                        check.fail("oidc.private_key_cert_file", format!("{cert_path}: {e}"));
                    }),
                    Err(e) => {
                        check.fail("oidc.private_key_cert_file", format!("cannot read {cert_path}: {e}"));
                        return None;
                    }
                },
                (key, _) => key.map_err(|e| {
                    let key = match e {
                        KeyError::Algorithm(_) => "oidc.private_key_alg",
                        KeyError::Key(_) => "oidc.private_key_file",
                    };
                    check.fail(key, format!("{path}: {e}"));
                }),
            };
            key.ok().map(|key| ClientAuth::PrivateKeyJwt { key: Arc::new(key), audience })
        }
    }
}

impl Check<'_> {
    /// Outgoing TLS for `section`: `ca_file`, and a client certificate given as both files.
    pub(super) fn client_tls(
        &mut self,
        section: &str,
        ca_file: Option<&str>,
        cert_file: Option<&str>,
        key_file: Option<&str>,
    ) -> Arc<rustls::ClientConfig> {
        let client_cert = match (cert_file, key_file) {
            (Some(cert), Some(key)) => Some((PathBuf::from(cert), PathBuf::from(key))),
            (None, None) => None,
            (Some(_), None) => {
                self.fail(format!("{section}.client_key_file"), "is required with client_cert_file");
                None
            }
            (None, Some(_)) => {
                self.fail(format!("{section}.client_cert_file"), "is required with client_key_file");
                None
            }
        };
        let files = crate::tls::ClientTlsFiles { ca_file: ca_file.map(PathBuf::from), client_cert };
        match crate::tls::client_config(&files) {
            Ok(config) => config,
            Err(e) => {
                let key = match e {
                    crate::tls::ClientTlsError::CaFile(_) => "ca_file",
                    crate::tls::ClientTlsError::ClientCert(_) => "client_cert_file",
                };
                self.fail(format!("{section}.{key}"), e.to_string());
                crate::tls::system_client_config()
            }
        }
    }
}

pub(super) fn is_loopback(url: &Url) -> bool {
    match url.host() {
        // Non-special schemes (redis://) leave IP addresses as opaque host names.
        Some(url::Host::Domain(d)) => {
            d.eq_ignore_ascii_case("localhost")
                || d.trim_start_matches('[')
                    .trim_end_matches(']')
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Authorization-request parameters cloakroom sets itself; config must not override them.
pub(super) const RESERVED_AUTH_PARAMS: &[&str] = &[
    "client_id",
    "redirect_uri",
    "response_type",
    "response_mode",
    "scope",
    "state",
    "nonce",
    "code_challenge",
    "code_challenge_method",
    "request",
    "request_uri",
];

pub(super) fn validate(raw: RawConfig, errors: &mut Vec<ConfigError>) -> Option<Config> {
    let mut check = Check { errors, warnings: Vec::new() };
    let (server, public_url) = sections::server(&mut check, &raw.server);
    let demo = sections::demo(&mut check, &raw.demo, &raw.oidc);
    let oidc = sections::oidc(&mut check, raw.oidc, public_url.as_ref());
    let session = sections::session(&mut check, &raw.session);
    let csrf = sections::csrf(&mut check, &raw.csrf);
    let log = sections::log(&mut check, raw.log);
    let (spa, spa_dev_server) = sections::spa(&mut check, &raw.spa);
    let routes = sections::routes(&mut check, &raw.routes);
    let providers = sections::more_providers(&mut check, raw.providers, public_url.as_ref(), oidc.as_ref());
    let (mut oidc, session) = (oidc?, session?);
    sections::default_audience(&mut check, oidc.resource.as_deref(), &routes);
    sections::step_up_login_params(&mut check, &oidc.login_params, &routes);
    sections::widen_for_routes(&mut oidc, &routes);
    Some(Config {
        server,
        oidc,
        session,
        csrf,
        log,
        spa,
        spa_dev_server,
        demo,
        routes,
        providers,
        warnings: check.warnings,
    })
}
