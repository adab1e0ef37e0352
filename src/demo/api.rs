//! The demo API: a small upstream that verifies the Bearer JWT cloakroom attached, against the
//! issuer's JWKS (found by discovery, refetched on an unknown key), and answers with the
//! verified claims: proof that a token arrived, without ever showing it.

use super::BANNER;
use crate::clock::SharedClock;
use crate::oidc::http::ProviderHttp;
use crate::oidc::jws::{self, JwsError};
use crate::oidc::{ASYMMETRIC_ALGS, Metadata};
use crate::respond::{Body, json};
use http::header::AUTHORIZATION;
use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use openidconnect::IssuerUrl;
use openidconnect::core::CoreJsonWebKeySet;
use serde_json::json;
use std::sync::{Arc, RwLock};
use std::time::Duration;

#[derive(Clone)]
pub struct DemoApi {
    issuer: String,
    audience: String,
    clock: SharedClock,
    http: ProviderHttp,
    jwks: Arc<RwLock<Option<CoreJsonWebKeySet>>>,
}

impl DemoApi {
    pub fn new(issuer: String, audience: String, clock: SharedClock) -> Self {
        Self {
            issuer,
            audience,
            clock,
            http: ProviderHttp::new(
                Duration::from_secs(5),
                Duration::from_secs(5),
                crate::tls::system_client_config(),
                Arc::default(),
            ),
            jwks: Arc::default(),
        }
    }

    async fn keys(&self, refetch: bool) -> Option<CoreJsonWebKeySet> {
        if !refetch && let Some(keys) = self.jwks.read().unwrap_or_else(|e| e.into_inner()).clone() {
            return Some(keys);
        }
        let metadata = Metadata::discover_async(IssuerUrl::new(self.issuer.clone()).ok()?, &self.http).await.ok()?;
        let keys = metadata.jwks().clone();
        *self.jwks.write().unwrap_or_else(|e| e.into_inner()) = Some(keys.clone());
        Some(keys)
    }

    pub async fn handle(&self, request: Request<Incoming>) -> Response<Body> {
        let bearer =
            request.headers().get(AUTHORIZATION).and_then(|v| v.to_str().ok()).and_then(|v| v.strip_prefix("Bearer "));
        let Some(token) = bearer else {
            return unauthorized("no Bearer token: call this API through cloakroom");
        };
        let Some(keys) = self.keys(false).await else {
            return json(StatusCode::SERVICE_UNAVAILABLE, &json!({ "error": "issuer_unavailable" }));
        };
        let verified = match jws::verify(&keys, ASYMMETRIC_ALGS, token) {
            Err(JwsError::NoKey) => match self.keys(true).await {
                Some(keys) => jws::verify(&keys, ASYMMETRIC_ALGS, token),
                None => Err(JwsError::NoKey),
            },
            other => other,
        };
        let claims = match verified {
            Ok((_, claims)) => claims,
            Err(e) => return unauthorized(e.reason()),
        };
        let audience_ok = match &claims["aud"] {
            serde_json::Value::String(aud) => *aud == self.audience,
            serde_json::Value::Array(auds) => auds.iter().any(|a| *a == self.audience.as_str()),
            _ => false,
        };
        if claims["iss"] != self.issuer.as_str() || !audience_ok {
            return unauthorized("the token was not issued for this API");
        }
        if claims["exp"].as_u64().is_none_or(|exp| self.clock.now() >= exp) {
            return unauthorized("the token has expired");
        }
        json(
            StatusCode::OK,
            &json!({
                "message": format!("Hello {}, from the demo API.", claims["sub"].as_str().unwrap_or("there")),
                "path": request.uri().path(),
                "bearer_token_received": true,
                "verified_claims": claims,
                "note": BANNER,
            }),
        )
    }
}

fn unauthorized(reason: &str) -> Response<Body> {
    json(StatusCode::UNAUTHORIZED, &json!({ "error": "invalid_token", "error_description": reason }))
}
