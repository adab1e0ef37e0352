//! The helpers every section's validation uses: [`Check`], which collects every problem under its
//! key (all are reported at once) and the warnings printed at start-up, and the small rules
//! several sections share. A leaf: it uses the configuration's types and nothing else of `config`.

pub(super) use super::raw::split_list;
use super::*;

pub(super) struct Check<'a> {
    pub(super) errors: &'a mut Vec<ConfigError>,
    /// Insecure or ephemeral settings, printed loudly at start-up.
    pub(super) warnings: Vec<String>,
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

impl Check<'_> {
    /// Outgoing TLS for `section`: `ca_file`, and a client certificate given as both files;
    /// with the certificate it presents (DER of the leaf), when there is one.
    pub(super) fn client_tls(
        &mut self,
        section: &str,
        ca_file: Option<&str>,
        cert_file: Option<&str>,
        key_file: Option<&str>,
    ) -> (Arc<rustls::ClientConfig>, Option<Arc<[u8]>>) {
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
        match crate::tls::client_config_and_leaf(&files) {
            Ok((config, leaf)) => (config, leaf.map(Arc::from)),
            Err(e) => {
                let key = match e {
                    crate::tls::ClientTlsError::CaFile(_) => "ca_file",
                    crate::tls::ClientTlsError::ClientCert(_) => "client_cert_file",
                };
                self.fail(format!("{section}.{key}"), e.to_string());
                (crate::tls::system_client_config(), None)
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
