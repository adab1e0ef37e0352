//! The development issuer: a small OpenID provider for local development only.
//!
//! It knows exactly one client (cloakroom's, from its own config) and two demo users. It does
//! what cloakroom needs and checks what a real provider checks: exact redirect URI, PKCE S256,
//! `state`, `nonce`, client authentication (basic or post), single-use codes, rotating refresh
//! tokens whose reuse revokes the family. Tokens are signed with a fresh Ed25519 key through
//! openidconnect's types. There is no provider session: every sign-in shows the user picker,
//! where each user can sign in with a password or "with MFA" (a second factor, pretended): the
//! ID token then says `acr` `mfa` instead of `pwd`, with `amr` and `auth_time`, for step-up
//! demos. The users carry `groups` (alice: staff and admins; bob: staff) for authorization rules.

use super::BANNER;
use crate::clock::SharedClock;
use crate::crypto::{random_bytes, sha256};
use crate::oidc::jws;
use crate::respond::{Body, empty, escape_html, html, json, page};
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use chrono::{DateTime, Utc};
use http::header::{AUTHORIZATION, LOCATION};
use http::{HeaderMap, HeaderValue, Method, Request, Response, StatusCode};

use hyper::body::Incoming;
use openidconnect::core::{
    CoreEdDsaPrivateSigningKey, CoreGenderClaim, CoreJsonWebKeySet, CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
};
use openidconnect::{
    AccessToken, Audience, AuthenticationContextClass, AuthenticationMethodReference, EndUserEmail, EndUserName,
    IdToken, IdTokenClaims, IssuerUrl, JsonWebKeyId, LocalizedClaim, Nonce, PrivateSigningKey, StandardClaims,
    SubjectIdentifier,
};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use url::Url;

type DemoIdToken = IdToken<DemoClaims, CoreGenderClaim, CoreJweContentEncryptionAlgorithm, CoreJwsSigningAlgorithm>;

const CODE_LIFETIME: u64 = 60;
const ACCESS_TOKEN_LIFETIME: u64 = 300;
const ID_TOKEN_LIFETIME: u64 = 300;

/// The demo users: (sub, name, email).
pub const USERS: &[(&str, &str, &str)] =
    &[("alice", "Alice Example", "alice@example.com"), ("bob", "Bob Example", "bob@example.com")];

/// A demo user's groups.
fn groups(sub: &str) -> Vec<String> {
    let groups: &[&str] = if sub == "alice" { &["staff", "admins"] } else { &["staff"] };
    groups.iter().map(|g| g.to_string()).collect()
}

/// How a demo user signed in: the `acr` and `amr` their ID tokens carry, and when.
#[derive(Debug, Clone)]
struct Authentication {
    mfa: bool,
    at: u64,
}

impl Authentication {
    fn acr(&self) -> &'static str {
        if self.mfa { "mfa" } else { "pwd" }
    }

    fn amr(&self) -> &'static [&'static str] {
        if self.mfa { &["pwd", "otp"] } else { &["pwd"] }
    }
}

/// The ID token's claims beyond the standard ones.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct DemoClaims {
    groups: Vec<String>,
}

impl openidconnect::AdditionalClaims for DemoClaims {}

/// What the issuer needs to know about its one client.
#[derive(Debug, Clone)]
pub struct DevIssuerConfig {
    pub issuer: String,
    pub client_id: String,
    pub client_secret: String,
    pub redirect_uri: String,
    pub post_logout_redirect_uri: String,
    /// The `aud` of the access tokens it issues (what the demo API expects).
    pub api_audience: String,
}

struct PendingCode {
    user: &'static str,
    authentication: Authentication,
    redirect_uri: String,
    challenge: String,
    nonce: String,
    scope: String,
    expires_at: u64,
}

struct Grant {
    user: &'static str,
    authentication: Authentication,
    scope: String,
    family: String,
}

struct State {
    config: DevIssuerConfig,
    clock: SharedClock,
    key: CoreEdDsaPrivateSigningKey,
    jwks: CoreJsonWebKeySet,
    codes: Mutex<HashMap<String, PendingCode>>,
    /// Live refresh tokens, and the ones already rotated out (whose reuse revokes the family).
    refresh: Mutex<HashMap<String, Grant>>,
    spent: Mutex<HashMap<String, String>>,
    /// The last tokens issued, in process only (never served): lets tests check that none of
    /// them reached a browser.
    issued: Mutex<std::collections::VecDeque<String>>,
}

const ISSUED_KEPT: usize = 1000;

#[derive(Clone)]
pub struct DevIssuer {
    state: Arc<State>,
}

impl DevIssuer {
    pub fn new(config: DevIssuerConfig, clock: SharedClock) -> Self {
        let key = generate_key();
        let jwks = CoreJsonWebKeySet::new(vec![key.as_verification_key()]);
        let state = State {
            config,
            clock,
            key,
            jwks,
            codes: Mutex::default(),
            refresh: Mutex::default(),
            spent: Mutex::default(),
            issued: Mutex::default(),
        };
        Self { state: Arc::new(state) }
    }

    /// The most recent tokens this issuer handed out (access, ID and refresh), newest last.
    pub fn issued_tokens(&self) -> Vec<String> {
        self.state.issued.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }

    fn remember_issued(&self, tokens: &[&str]) {
        let mut issued = self.state.issued.lock().unwrap_or_else(|e| e.into_inner());
        for token in tokens {
            issued.push_back(token.to_string());
        }
        while issued.len() > ISSUED_KEPT {
            issued.pop_front();
        }
    }

    pub async fn handle(&self, request: Request<Incoming>) -> Response<Body> {
        let path = request.uri().path().to_string();
        let method = request.method().clone();
        match (method, path.as_str()) {
            (Method::GET, "/.well-known/openid-configuration") => self.discovery(),
            (Method::GET, "/jwks") => json(StatusCode::OK, &serde_json::to_value(&self.state.jwks).unwrap_or_default()),
            (Method::GET, "/authorize") => {
                let params = query(request.uri().query());
                self.authorize_page(&params)
            }
            (Method::POST, "/authorize") => match form(request).await {
                Some(params) => self.authorize_decision(&params),
                None => error_page(StatusCode::BAD_REQUEST, "The form could not be read."),
            },
            (Method::POST, "/token") => {
                let headers = request.headers().clone();
                match form(request).await {
                    Some(params) => self.token(&headers, &params),
                    None => oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "unreadable form"),
                }
            }
            (Method::GET, "/userinfo") => self.userinfo(request.headers()),
            (Method::POST, "/revoke") => {
                let headers = request.headers().clone();
                match form(request).await {
                    Some(params) => self.revoke(&headers, &params),
                    None => oauth_error(StatusCode::BAD_REQUEST, "invalid_request", "unreadable form"),
                }
            }
            (Method::GET, "/end-session") => self.end_session_page(&query(request.uri().query())),
            (Method::POST, "/end-session") => match form(request).await {
                Some(params) => self.end_session(&params),
                None => error_page(StatusCode::BAD_REQUEST, "The form could not be read."),
            },
            _ => error_page(StatusCode::NOT_FOUND, "No such page on the development issuer."),
        }
    }

    fn discovery(&self) -> Response<Body> {
        let issuer = &self.state.config.issuer;
        json(
            StatusCode::OK,
            &json!({
                "issuer": issuer,
                "authorization_endpoint": format!("{issuer}/authorize"),
                "token_endpoint": format!("{issuer}/token"),
                "jwks_uri": format!("{issuer}/jwks"),
                "userinfo_endpoint": format!("{issuer}/userinfo"),
                "revocation_endpoint": format!("{issuer}/revoke"),
                "end_session_endpoint": format!("{issuer}/end-session"),
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["EdDSA"],
                "code_challenge_methods_supported": ["S256"],
                "grant_types_supported": ["authorization_code", "refresh_token"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "claims_supported": ["sub", "name", "email", "groups", "acr", "amr", "auth_time"],
                "acr_values_supported": ["pwd", "mfa"],
                "authorization_response_iss_parameter_supported": true,
                "x_development_only": BANNER,
            }),
        )
    }

    /// Checks an authorization request. Errors about the client or redirect URI are shown, never
    /// redirected (they could send the browser anywhere); the rest go back to the client.
    fn check_authorization(&self, params: &HashMap<String, String>) -> Result<(), Box<Response<Body>>> {
        let config = &self.state.config;
        if params.get("client_id") != Some(&config.client_id) {
            return Err(Box::new(error_page(StatusCode::BAD_REQUEST, "Unknown client_id.")));
        }
        if params.get("redirect_uri") != Some(&config.redirect_uri) {
            return Err(Box::new(error_page(StatusCode::BAD_REQUEST, "redirect_uri is not the registered one.")));
        }
        let state = params.get("state").filter(|s| !s.is_empty());
        let fail = |error: &str, description: &str| {
            Err(Box::new(self.redirect_error(state.map(String::as_str), error, description)))
        };
        if params.get("response_type").map(String::as_str) != Some("code") {
            return fail("unsupported_response_type", "only the authorization code flow");
        }
        if state.is_none() {
            return fail("invalid_request", "state is required");
        }
        if params.get("code_challenge_method").map(String::as_str) != Some("S256")
            || params.get("code_challenge").is_none_or(|c| c.len() != 43)
        {
            return fail("invalid_request", "PKCE with S256 is required");
        }
        if params.get("nonce").is_none_or(|n| n.is_empty()) {
            return fail("invalid_request", "nonce is required");
        }
        if !params.get("scope").is_some_and(|s| s.split(' ').any(|s| s == "openid")) {
            return fail("invalid_scope", "the openid scope is required");
        }
        Ok(())
    }

    fn authorize_page(&self, params: &HashMap<String, String>) -> Response<Body> {
        if let Err(response) = self.check_authorization(params) {
            return *response;
        }
        let hidden: String = [
            "client_id",
            "redirect_uri",
            "response_type",
            "state",
            "nonce",
            "scope",
            "code_challenge",
            "code_challenge_method",
        ]
        .iter()
        .filter_map(|name| params.get(*name).map(|value| (name, value)))
        .map(|(name, value)| format!("<input type=\"hidden\" name=\"{name}\" value=\"{}\">", escape_html(value)))
        .collect();
        let buttons: String = USERS
            .iter()
            .map(|(sub, name, email)| {
                format!(
                    "<p><button type=\"submit\" name=\"user\" value=\"{sub}\">Sign in as {sub}</button> \
                     <button type=\"submit\" name=\"user\" value=\"{sub}+mfa\">Sign in as {sub} with MFA</button> \
                     {} &lt;{}&gt;</p>",
                    escape_html(name),
                    escape_html(email)
                )
            })
            .collect();
        let asked = params.get("acr_values").is_some_and(|v| v.split(' ').any(|v| v == "mfa"));
        let step_up = if asked {
            "<p><strong>This app asks for a second factor:</strong> choose \"with MFA\" (pretended here), or \
             sign in with a password to see the app refuse the weaker sign-in.</p>"
        } else {
            ""
        };
        let body = format!(
            "{banner}<h1>Development issuer: sign in</h1><p>Pick a demo user. No password: this issuer exists only \
             for local development; \"with MFA\" pretends a second factor (acr <code>mfa</code>).</p>{step_up}\
             <form method=\"post\" action=\"/authorize\">{hidden}{buttons}\
             <p><button type=\"submit\" name=\"user\" value=\"\">Cancel</button></p></form>",
            banner = banner_html()
        );
        self.with_form_targets(html(StatusCode::OK, page("Development issuer: sign in", &body, "")))
    }

    /// Our forms redirect to the client afterwards, and CSP `form-action` also governs where a
    /// form submission may be redirected: name the client's origin next to 'self'.
    fn with_form_targets(&self, mut response: Response<Body>) -> Response<Body> {
        let origin = |uri: &str| Url::parse(uri).map(|u| u.origin().ascii_serialization()).unwrap_or_default();
        let config = &self.state.config;
        let csp = format!(
            "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'; form-action 'self' {} {}",
            origin(&config.redirect_uri),
            origin(&config.post_logout_redirect_uri)
        );
        if let Ok(value) = HeaderValue::try_from(csp) {
            response.headers_mut().insert(http::header::CONTENT_SECURITY_POLICY, value);
        }
        response
    }

    fn authorize_decision(&self, params: &HashMap<String, String>) -> Response<Body> {
        if let Err(response) = self.check_authorization(params) {
            return *response;
        }
        let state = params.get("state").map(String::as_str);
        let choice = params.get("user").map(String::as_str).unwrap_or_default();
        let (chosen, mfa) = match choice.strip_suffix("+mfa") {
            Some(sub) => (sub, true),
            None => (choice, false),
        };
        let Some(user) = USERS.iter().find(|(sub, _, _)| *sub == chosen) else {
            return self.redirect_error(state, "access_denied", "the user cancelled");
        };
        let authentication = Authentication { mfa, at: self.state.clock.now() };
        let code = random_token();
        self.state.codes.lock().unwrap_or_else(|e| e.into_inner()).insert(
            code.clone(),
            PendingCode {
                user: user.0,
                authentication,
                redirect_uri: params["redirect_uri"].clone(),
                challenge: params["code_challenge"].clone(),
                nonce: params["nonce"].clone(),
                scope: params["scope"].clone(),
                expires_at: self.state.clock.now() + CODE_LIFETIME,
            },
        );
        let mut target = match Url::parse(&self.state.config.redirect_uri) {
            Ok(url) => url,
            Err(_) => {
                return error_page(StatusCode::INTERNAL_SERVER_ERROR, "The registered redirect_uri is not a URL.");
            }
        };
        target
            .query_pairs_mut()
            .append_pair("code", &code)
            .append_pair("state", state.unwrap_or_default())
            .append_pair("iss", &self.state.config.issuer);
        see_other(target.as_str())
    }

    fn redirect_error(&self, state: Option<&str>, error: &str, description: &str) -> Response<Body> {
        let Ok(mut target) = Url::parse(&self.state.config.redirect_uri) else {
            return error_page(StatusCode::BAD_REQUEST, description);
        };
        {
            let mut query = target.query_pairs_mut();
            query.append_pair("error", error).append_pair("error_description", description);
            if let Some(state) = state {
                query.append_pair("state", state);
            }
            query.append_pair("iss", &self.state.config.issuer);
        }
        see_other(target.as_str())
    }

    fn client_authenticated(&self, headers: &HeaderMap, params: &HashMap<String, String>) -> bool {
        let config = &self.state.config;
        let (id, secret) = match headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()) {
            Some(value) => {
                let Some(encoded) = value.strip_prefix("Basic ") else { return false };
                let Ok(decoded) = STANDARD.decode(encoded.trim()) else { return false };
                let text = String::from_utf8_lossy(&decoded).into_owned();
                let Some((id, secret)) = text.split_once(':') else { return false };
                let decode = |s: &str| {
                    url::form_urlencoded::parse(format!("x={s}").as_bytes()).next().map(|(_, v)| v.into_owned())
                };
                (decode(id).unwrap_or_default(), decode(secret).unwrap_or_default())
            }
            None => (
                params.get("client_id").cloned().unwrap_or_default(),
                params.get("client_secret").cloned().unwrap_or_default(),
            ),
        };
        // Compared as hashes: equal length, no early exit on the first differing byte.
        id == config.client_id && sha256(secret.as_bytes()) == sha256(config.client_secret.as_bytes())
    }

    fn token(&self, headers: &HeaderMap, params: &HashMap<String, String>) -> Response<Body> {
        if !self.client_authenticated(headers, params) {
            return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication failed");
        }
        match params.get("grant_type").map(String::as_str) {
            Some("authorization_code") => self.redeem_code(params),
            Some("refresh_token") => self.redeem_refresh_token(params),
            _ => oauth_error(StatusCode::BAD_REQUEST, "unsupported_grant_type", "authorization_code or refresh_token"),
        }
    }

    fn redeem_code(&self, params: &HashMap<String, String>) -> Response<Body> {
        let code = params.get("code").cloned().unwrap_or_default();
        let Some(pending) = self.state.codes.lock().unwrap_or_else(|e| e.into_inner()).remove(&code) else {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "unknown or used code");
        };
        if self.state.clock.now() >= pending.expires_at {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "the code expired");
        }
        if params.get("redirect_uri") != Some(&pending.redirect_uri) {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "redirect_uri does not match");
        }
        let verifier = params.get("code_verifier").cloned().unwrap_or_default();
        if URL_SAFE_NO_PAD.encode(sha256(verifier.as_bytes())) != pending.challenge {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "PKCE verification failed");
        }
        let family = random_token();
        self.issue(pending.user, &pending.authentication, &pending.scope, Some(&pending.nonce), &family)
    }

    fn redeem_refresh_token(&self, params: &HashMap<String, String>) -> Response<Body> {
        let presented = params.get("refresh_token").cloned().unwrap_or_default();
        let grant = self.state.refresh.lock().unwrap_or_else(|e| e.into_inner()).remove(&presented);
        let Some(grant) = grant else {
            // A rotated-out token used again: treat it as stolen and end the whole family.
            let family = self.state.spent.lock().unwrap_or_else(|e| e.into_inner()).get(&presented).cloned();
            if let Some(family) = family {
                self.state.refresh.lock().unwrap_or_else(|e| e.into_inner()).retain(|_, g| g.family != family);
                tracing::warn!("development issuer: a rotated refresh token was reused; the grant is revoked");
            }
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "unknown, used or revoked refresh token");
        };
        self.state.spent.lock().unwrap_or_else(|e| e.into_inner()).insert(presented, grant.family.clone());
        self.issue(grant.user, &grant.authentication, &grant.scope, None, &grant.family)
    }

    /// Signs and returns an access token, an ID token and (with `offline_access`) a refresh token.
    fn issue(
        &self,
        sub: &'static str,
        authentication: &Authentication,
        scope: &str,
        nonce: Option<&str>,
        family: &str,
    ) -> Response<Body> {
        let now = self.state.clock.now();
        let Some((_, name, email)) = USERS.iter().find(|(s, _, _)| *s == sub) else {
            return oauth_error(StatusCode::BAD_REQUEST, "invalid_grant", "unknown user");
        };
        let config = &self.state.config;
        let access_claims = json!({
            "iss": config.issuer, "sub": sub, "aud": config.api_audience, "client_id": config.client_id,
            "scope": scope, "iat": now, "exp": now + ACCESS_TOKEN_LIFETIME, "jti": random_token(),
        });
        let Some(access_token) = self.sign_jwt(&access_claims, "at+jwt") else {
            return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "signing failed");
        };
        let access_token = AccessToken::new(access_token);
        let time = |t: u64| DateTime::<Utc>::from_timestamp(t as i64, 0).unwrap_or_default();
        let Ok(issuer) = IssuerUrl::new(config.issuer.clone()) else {
            return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "bad issuer");
        };
        let standard = StandardClaims::new(SubjectIdentifier::new(sub.to_string()))
            .set_name(Some(LocalizedClaim::from(EndUserName::new(name.to_string()))))
            .set_email(Some(EndUserEmail::new(email.to_string())))
            .set_email_verified(Some(true));
        let amr = authentication.amr().iter().map(|m| AuthenticationMethodReference::new(m.to_string())).collect();
        let claims = IdTokenClaims::new(
            issuer,
            vec![Audience::new(config.client_id.clone())],
            time(now + ID_TOKEN_LIFETIME),
            time(now),
            standard,
            DemoClaims { groups: groups(sub) },
        )
        .set_nonce(nonce.map(|n| Nonce::new(n.to_string())))
        .set_auth_time(Some(time(authentication.at)))
        .set_auth_context_ref(Some(AuthenticationContextClass::new(authentication.acr().to_string())))
        .set_auth_method_refs(Some(amr));
        let id_token = match DemoIdToken::new(
            claims,
            &self.state.key,
            CoreJwsSigningAlgorithm::EdDsa,
            Some(&access_token),
            None,
        ) {
            Ok(token) => token.to_string(),
            Err(_) => return oauth_error(StatusCode::INTERNAL_SERVER_ERROR, "server_error", "signing failed"),
        };
        let mut body = json!({
            "access_token": access_token.secret(), "token_type": "Bearer", "expires_in": ACCESS_TOKEN_LIFETIME,
            "id_token": id_token, "scope": scope,
        });
        if scope.split(' ').any(|s| s == "offline_access") {
            let refresh_token = random_token();
            self.state.refresh.lock().unwrap_or_else(|e| e.into_inner()).insert(
                refresh_token.clone(),
                Grant {
                    user: sub,
                    authentication: authentication.clone(),
                    scope: scope.to_string(),
                    family: family.to_string(),
                },
            );
            self.remember_issued(&[&refresh_token]);
            body["refresh_token"] = json!(refresh_token);
        }
        self.remember_issued(&[access_token.secret(), &id_token]);
        json(StatusCode::OK, &body)
    }

    /// A compact JWS of `claims`, signed by openidconnect's key type.
    fn sign_jwt(&self, claims: &Value, typ: &str) -> Option<String> {
        let kid = self.state.key.as_verification_key();
        let kid = openidconnect::JsonWebKey::key_id(&kid).map(|k| k.as_str().to_string());
        let header = json!({ "alg": "EdDSA", "typ": typ, "kid": kid });
        let input =
            format!("{}.{}", URL_SAFE_NO_PAD.encode(header.to_string()), URL_SAFE_NO_PAD.encode(claims.to_string()));
        let signature = self.state.key.sign(&CoreJwsSigningAlgorithm::EdDsa, input.as_bytes()).ok()?;
        Some(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }

    /// Verifies an access token this issuer signed; returns its claims.
    pub fn verify_access_token(&self, token: &str) -> Option<Value> {
        let (_, claims) = jws::verify(&self.state.jwks, &[CoreJwsSigningAlgorithm::EdDsa], token).ok()?;
        let config = &self.state.config;
        let fresh = claims["exp"].as_u64().is_some_and(|exp| self.state.clock.now() < exp);
        (claims["iss"] == config.issuer.as_str() && claims["aud"] == config.api_audience.as_str() && fresh)
            .then_some(claims)
    }

    fn userinfo(&self, headers: &HeaderMap) -> Response<Body> {
        let token = headers.get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        let Some(claims) = token.and_then(|t| self.verify_access_token(t)) else {
            return oauth_error(StatusCode::UNAUTHORIZED, "invalid_token", "a valid access token is required");
        };
        let sub = claims["sub"].as_str().unwrap_or_default();
        let Some((_, name, email)) = USERS.iter().find(|(s, _, _)| *s == sub) else {
            return oauth_error(StatusCode::UNAUTHORIZED, "invalid_token", "unknown user");
        };
        json(StatusCode::OK, &json!({ "sub": sub, "name": name, "email": email, "email_verified": true }))
    }

    fn revoke(&self, headers: &HeaderMap, params: &HashMap<String, String>) -> Response<Body> {
        if !self.client_authenticated(headers, params) {
            return oauth_error(StatusCode::UNAUTHORIZED, "invalid_client", "client authentication failed");
        }
        let token = params.get("token").cloned().unwrap_or_default();
        let revoked = self.state.refresh.lock().unwrap_or_else(|e| e.into_inner()).remove(&token);
        if let Some(grant) = revoked {
            self.state.refresh.lock().unwrap_or_else(|e| e.into_inner()).retain(|_, g| g.family != grant.family);
        }
        // RFC 7009: 200 whether or not the token was known.
        json(StatusCode::OK, &json!({}))
    }

    fn end_session_page(&self, params: &HashMap<String, String>) -> Response<Body> {
        let target = params.get("post_logout_redirect_uri").cloned().unwrap_or_default();
        let body = format!(
            "{banner}<h1>Sign out of the development issuer?</h1>\
             <form method=\"post\" action=\"/end-session\"><input type=\"hidden\" name=\"post_logout_redirect_uri\" value=\"{}\">\
             <button type=\"submit\" name=\"logout\" value=\"yes\">Yes, sign me out</button></form>",
            escape_html(&target),
            banner = banner_html()
        );
        self.with_form_targets(html(StatusCode::OK, page("Development issuer: sign out", &body, "")))
    }

    fn end_session(&self, params: &HashMap<String, String>) -> Response<Body> {
        match params.get("post_logout_redirect_uri") {
            Some(target) if *target == self.state.config.post_logout_redirect_uri => see_other(target),
            _ => html(
                StatusCode::OK,
                page("Signed out", &format!("{}<h1>Signed out of the development issuer.</h1>", banner_html()), ""),
            ),
        }
    }
}

fn banner_html() -> String {
    format!("<p><strong>{BANNER}.</strong> This is cloakroom's built-in demo identity provider.</p>")
}

fn error_page(status: StatusCode, message: &str) -> Response<Body> {
    html(
        status,
        page("Development issuer", &format!("{}<h1>Error</h1><p>{}</p>", banner_html(), escape_html(message)), ""),
    )
}

fn oauth_error(status: StatusCode, error: &str, description: &str) -> Response<Body> {
    json(status, &json!({ "error": error, "error_description": description }))
}

fn see_other(location: &str) -> Response<Body> {
    let mut response = Response::new(empty());
    *response.status_mut() = StatusCode::SEE_OTHER;
    if let Ok(value) = HeaderValue::try_from(location) {
        response.headers_mut().insert(LOCATION, value);
    }
    response
}

fn query(query: Option<&str>) -> HashMap<String, String> {
    url::form_urlencoded::parse(query.unwrap_or("").as_bytes()).into_owned().collect()
}

async fn form(request: Request<Incoming>) -> Option<HashMap<String, String>> {
    let text = crate::bff::read_form(request, 64 * 1024).await.ok()?;
    Some(url::form_urlencoded::parse(text.as_bytes()).into_owned().collect())
}

fn random_token() -> String {
    URL_SAFE_NO_PAD.encode(random_bytes::<32>())
}

/// A fresh Ed25519 key (aws-lc-rs), loaded into openidconnect's signing key type.
fn generate_key() -> CoreEdDsaPrivateSigningKey {
    let rng = aws_lc_rs::rand::SystemRandom::new();
    let pkcs8 = aws_lc_rs::signature::Ed25519KeyPair::generate_pkcs8v1(&rng).expect("the system RNG works");
    let pem = format!("-----BEGIN PRIVATE KEY-----\n{}\n-----END PRIVATE KEY-----\n", STANDARD.encode(pkcs8.as_ref()));
    let kid = JsonWebKeyId::new(format!("dev-{}", &URL_SAFE_NO_PAD.encode(random_bytes::<6>())));
    CoreEdDsaPrivateSigningKey::from_ed25519_pem(&pem, Some(kid)).expect("a freshly generated Ed25519 key loads")
}
