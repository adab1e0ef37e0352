//! `[oidc]` and each `[[providers]]` table: the provider, the client and its credential.

use super::*;

/// `[oidc]`. `None` when a setting the provider cannot do without is unusable (its error is
/// reported). The sign-in's scopes and resources are widened by [`widen_for_routes`].
pub(in crate::config) fn oidc(check: &mut Check, raw: RawOidc, public_url: Option<&Url>) -> Option<OidcConfig> {
    // [oidc]
    let issuer = check.url("oidc.issuer", &raw.issuer);
    if let Some(url) = &issuer {
        check.require_https_unless_loopback("oidc.issuer", url);
    }
    if raw.client_id.trim().is_empty() {
        check.fail("oidc.client_id", "is required");
    }
    if let Some(id) = &raw.id
        && (id.is_empty() || id.len() > 32 || !id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_'))
    {
        check.fail("oidc.id", "must be 1 to 32 letters, digits, '-' or '_'");
    }
    let client_auth = client_auth(check, &raw);
    if !raw.scopes.iter().any(|s| s == "openid") {
        check.fail("oidc.scopes", "must include \"openid\"");
    }
    for name in raw.extra_auth_params.keys() {
        if RESERVED_AUTH_PARAMS.contains(&name.as_str()) {
            check.fail(format!("oidc.extra_auth_params.{name}"), "is set by cloakroom itself and cannot be overridden");
        }
    }
    let redirect_uri = public_url.and_then(|u| u.join("/bff/callback").ok());
    let post_logout_redirect_uri = match raw.post_logout_redirect_uri.as_deref() {
        Some(text) => check.url("oidc.post_logout_redirect_uri", text),
        None => public_url.cloned(),
    };
    let oidc_timeout = check.duration("oidc.timeout", &raw.timeout);
    let (oidc_tls, client_certificate) = check.client_tls(
        "oidc",
        raw.ca_file.as_deref(),
        raw.client_cert_file.as_deref(),
        raw.client_key_file.as_deref(),
    );
    if raw.certificate_bound_tokens && raw.client_cert_file.is_none() {
        check.fail(
            "oidc.certificate_bound_tokens",
            "needs the certificate they are bound to: set client_cert_file and client_key_file",
        );
    }
    if raw.certificate_bound_tokens && raw.dpop {
        check.fail(
            "oidc.certificate_bound_tokens",
            "and dpop = true are two ways of binding the same tokens: choose one",
        );
    }
    let clock_skew = check.duration("oidc.clock_skew", &raw.clock_skew);
    let refresh_margin = check.duration("oidc.refresh_margin", &raw.refresh_margin);
    let refresh_timeout = check.duration("oidc.refresh_timeout", &raw.refresh_timeout);
    let refresh_retry_backoff = check.duration("oidc.refresh_retry_backoff", &raw.refresh_retry_backoff);
    let default_resource = raw.resource.as_deref().map(str::trim).filter(|r| !r.is_empty()).map(String::from);
    if let Some(resource) = &default_resource {
        check.resource("oidc.resource", resource);
    }
    for (i, name) in raw.login_params.iter().enumerate() {
        if !LOGIN_PARAM_NAMES.contains(&name.as_str()) {
            check.fail(format!("oidc.login_params[{i}]"), format!("{name:?} is not one of {:?}", LOGIN_PARAM_NAMES));
        } else if raw.extra_auth_params.contains_key(name) {
            check.fail(format!("oidc.login_params[{i}]"), format!("{name} is also set in oidc.extra_auth_params"));
        }
    }
    let par = fapi2(check, &raw, client_auth.as_ref());
    if !raw.logout_token_exp_required {
        check.warn("oidc.logout_token_exp_required = false: back-channel logout tokens without exp are accepted (bounded by their iat and single-use jti), for providers of the Back-Channel Logout drafts");
    }
    if raw.logout_id_token_hint {
        check.warn("oidc.logout_id_token_hint = true: the ID token is sent to the browser in the logout URL (the one place a token crosses to the browser)");
    }

    let (Some(_), Some(redirect_uri), Some(post_logout_redirect_uri), Some(client_auth)) =
        (issuer, redirect_uri, post_logout_redirect_uri, client_auth)
    else {
        return None;
    };
    Some(OidcConfig {
        issuer: raw.issuer.trim().to_string(),
        client_id: raw.client_id.trim().to_string(),
        client_auth,
        scopes: raw.scopes,
        extra_auth_params: raw.extra_auth_params.into_iter().collect(),
        redirect_uri,
        post_logout_redirect_uri,
        logout_id_token_hint: raw.logout_id_token_hint,
        timeout: oidc_timeout,
        tls: oidc_tls,
        client_certificate,
        certificate_bound_tokens: raw.certificate_bound_tokens,
        clock_skew,
        refresh_margin,
        refresh_timeout: refresh_timeout.max(oidc_timeout),
        refresh_retry_backoff,
        login_params: raw.login_params,
        enforce_acr_values: raw.enforce_acr_values,
        logout_token_exp_required: raw.logout_token_exp_required,
        par,
        display_name: raw.display_name.clone().or_else(|| raw.id.clone()).unwrap_or_else(|| "default".into()),
        id: raw.id.clone().unwrap_or_else(|| "default".into()),
        user_claims: raw.user_claims.iter().map(|c| c.trim().to_string()).filter(|c| !c.is_empty()).collect(),
        userinfo: raw.userinfo,
        userinfo_interval: check
            .duration_or_zero("oidc.userinfo_interval", &raw.userinfo_interval)
            .filter(|d| !d.is_zero()),
        authorization_resources: default_resource.iter().cloned().collect(),
        resource: default_resource,
        dpop: raw.dpop,
        profile: raw.profile,
    })
}

/// `profile = "fapi2"`: every setting that would weaken the FAPI 2.0 Security Profile is
/// refused with the reason; PAR is always used. (The provider's side is checked at discovery:
/// `iss` in the authorization response, ID tokens in PS256, ES256 or EdDSA.) Returns the PAR
/// mode to run with.
fn fapi2(check: &mut Check, raw: &RawOidc, client_auth: Option<&ClientAuth>) -> ParMode {
    if raw.profile != Profile::Fapi2 {
        return raw.par;
    }
    const WHY: &str = "profile = \"fapi2\"";
    match client_auth {
        Some(ClientAuth::PrivateKeyJwt { key, .. }) if !FAPI2_ALGS.contains(&key.alg()) => check.fail(
            "oidc.private_key_alg",
            format!("{WHY} allows PS256, ES256 or EdDSA client assertions, not {}", key.alg()),
        ),
        Some(ClientAuth::PrivateKeyJwt { .. } | ClientAuth::TlsClientAuth | ClientAuth::SelfSignedTlsClientAuth)
        | None => {}
        Some(ClientAuth::SecretBasic(_) | ClientAuth::SecretPost(_)) => check.fail(
            "oidc.client_auth",
            format!(
                "{WHY} needs private_key_jwt, tls_client_auth or self_signed_tls_client_auth: a shared client secret is not allowed (FAPI 2.0 §5.3.2.1)"
            ),
        ),
    }
    if raw.par == ParMode::Off {
        check.fail("oidc.par", format!("{WHY} requires pushed authorization requests: \"off\" is not allowed"));
    }
    if !raw.dpop && !raw.certificate_bound_tokens {
        check.fail(
            "oidc.dpop",
            format!("{WHY} requires sender-constrained tokens: set dpop = true or certificate_bound_tokens = true"),
        );
    }
    if raw.logout_id_token_hint {
        check.fail("oidc.logout_id_token_hint", format!("{WHY} keeps every token from the browser"));
    }
    ParMode::Required
}

/// `[[providers]]`: each checked as `[oidc]` is (keys named `providers[i].…`), with an id of
/// its own, unique among them and `[oidc]`'s.
pub(in crate::config) fn more_providers(
    check: &mut Check,
    raw: Vec<RawOidc>,
    public_url: Option<&Url>,
    default: Option<&OidcConfig>,
) -> Vec<OidcConfig> {
    let mut ids: Vec<String> = default.map(|d| d.id.clone()).into_iter().collect();
    let mut providers = Vec::new();
    for (i, raw) in raw.into_iter().enumerate() {
        let key = format!("providers[{i}]");
        let id = raw.id.clone().unwrap_or_default();
        if raw.id.is_none() {
            check.fail(format!("{key}.id"), "is required: 1 to 32 letters, digits, '-' or '_'");
        } else if ids.contains(&id) {
            check.fail(format!("{key}.id"), format!("{id:?} names another provider too"));
        }
        ids.push(id);
        if let Some(provider) = check.renamed("oidc.", &format!("{key}."), |check| oidc(check, raw, public_url)) {
            providers.push(provider);
        }
    }
    providers
}

/// The sign-in asks for everything routes will later ask for with the refresh token: a
/// refresh can narrow a grant, never widen it.
pub(in crate::config) fn widen_for_routes(oidc: &mut OidcConfig, routes: &[RouteConfig]) {
    for audience in routes.iter().filter_map(|r| r.audience.as_ref()) {
        if let Some(resource) = &audience.resource
            && !oidc.authorization_resources.contains(resource)
        {
            oidc.authorization_resources.push(resource.clone());
        }
        for scope in &audience.scopes {
            if !oidc.scopes.contains(scope) {
                oidc.scopes.push(scope.clone());
            }
        }
    }
}

/// `oidc.client_auth` and the credential it needs: a secret, or a private key (and never both,
/// so a leftover secret cannot quietly stay in use).
fn client_auth(check: &mut Check, oidc: &RawOidc) -> Option<ClientAuth> {
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
    let secret_required = "is required (cloakroom is a confidential client): set client_secret, client_secret_file or CLOAKROOM_OIDC__CLIENT_SECRET, or use client_auth = \"private_key_jwt\" or \"tls_client_auth\"";
    match method {
        ClientAuthMethod::TlsClientAuth | ClientAuthMethod::SelfSignedTlsClientAuth => {
            let (name, auth) = if method == ClientAuthMethod::TlsClientAuth {
                ("tls_client_auth", ClientAuth::TlsClientAuth)
            } else {
                ("self_signed_tls_client_auth", ClientAuth::SelfSignedTlsClientAuth)
            };
            if secret.is_some() {
                check.fail("oidc.client_secret", format!("must not be set with client_auth = \"{name}\""));
            }
            if oidc.client_cert_file.is_none() {
                check.fail(
                    "oidc.client_cert_file",
                    format!("is required with client_auth = \"{name}\": the certificate is the credential"),
                );
                return None;
            }
            Some(auth)
        }
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
                        KeyError::Key(_) | KeyError::Signing => "oidc.private_key_file",
                        KeyError::Certificate(_) => "oidc.private_key_cert_file",
                    };
                    check.fail(key, format!("{path}: {e}"));
                }),
            };
            key.ok().map(|key| ClientAuth::PrivateKeyJwt { key: Arc::new(key), audience })
        }
    }
}
