//! DPoP at the provider (RFC 9449 §5, §7, §8): a proof of the session's key on each token
//! request (code exchange and refresh, so every access token is bound to the key and a rotated
//! refresh token stays with it) and on each userinfo call, where the token goes as `DPoP`.
//!
//! The provider's nonce: it answers `use_dpop_nonce` with a `DPoP-Nonce` header, kept for the
//! next request (any answer's `DPoP-Nonce` replaces it); the request goes once more with a proof
//! carrying it, never more. A token request is built afresh by its caller for that
//! (`code_exchange::asks_for_nonce`: its client assertion's `jti` is single-use); a request without a body
//! (userinfo) is sent again here.

use super::http::{ProviderHttp, ProviderHttpError};
use crate::crypto::dpop::{DpopKey, DpopNonce};
use openidconnect::{AsyncHttpClient, HttpRequest, HttpResponse};
use std::future::Future;
use std::pin::Pin;

/// [`ProviderHttp`] with a DPoP proof on each request.
pub(super) struct WithProof<'a> {
    pub http: &'a ProviderHttp,
    pub key: &'a DpopKey,
    pub nonce: &'a DpopNonce,
    /// Unix seconds, for the proofs' `iat`.
    pub now: u64,
}

impl WithProof<'_> {
    async fn send(&self, request: HttpRequest) -> Result<HttpResponse, ProviderHttpError> {
        let (parts, body) = request.into_parts();
        let htu = {
            let uri = &parts.uri;
            format!(
                "{}://{}{}",
                uri.scheme_str().unwrap_or("https"),
                uri.authority().map_or("", |a| a.as_str()),
                uri.path()
            )
        };
        // A resource call (userinfo) carries the access token: as a DPoP-bound one, hashed into
        // the proof. A token-endpoint call's Authorization (client_secret_basic) stays as it is.
        let presented = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::to_string);
        let mut retried = false;
        loop {
            let mut request = http::Request::new(body.clone());
            *request.method_mut() = parts.method.clone();
            *request.uri_mut() = parts.uri.clone();
            *request.headers_mut() = parts.headers.clone();
            let proof = self
                .key
                .proof(&parts.method, &htu, presented.as_deref(), self.nonce.get().as_deref(), self.now)
                .map_err(|e| ProviderHttpError::Body(e.to_string()))?;
            let headers = request.headers_mut();
            headers.insert(
                "dpop",
                http::HeaderValue::try_from(proof).map_err(|e| ProviderHttpError::Body(e.to_string()))?,
            );
            if let Some(token) = &presented {
                let mut value = http::HeaderValue::try_from(format!("DPoP {token}"))
                    .map_err(|e| ProviderHttpError::Body(e.to_string()))?;
                value.set_sensitive(true);
                headers.insert(http::header::AUTHORIZATION, value);
            }
            let response = self.http.send(request).await?;
            let new_nonce = self.nonce.keep(response.headers());
            if !retried && new_nonce && body.is_empty() && answer_asks_for_nonce(&response) {
                retried = true;
                continue;
            }
            return Ok(response);
        }
    }
}

impl super::Provider {
    /// A token answer to a request with a proof must be a DPoP-bound token (`token_type`
    /// `DPoP`, RFC 9449 §5): a provider that ignored the proof issued a Bearer token, which
    /// would work from anywhere: refused, not kept.
    pub(super) fn check_binding(
        &self,
        response: &super::TokenAnswer,
        key: Option<&DpopKey>,
    ) -> Result<(), super::OidcError> {
        use openidconnect::OAuth2TokenResponse;
        use openidconnect::core::CoreTokenType;
        let bound =
            matches!(response.token_type(), CoreTokenType::Extension(kind) if kind.eq_ignore_ascii_case("dpop"));
        if key.is_some() && !bound {
            tracing::error!(provider = %self.id(), "oidc.dpop is on, but the provider issued a token that is not DPoP-bound (token_type is not DPoP): refused; does the provider support DPoP?");
            return Err(super::OidcError::BadResponse("the provider issued an unbound token to a DPoP request".into()));
        }
        Ok(())
    }
}

/// How a provider call goes: plain, or with a proof of the session's DPoP key.
pub(super) enum Sender<'a> {
    Plain(&'a ProviderHttp),
    Proof(WithProof<'a>),
}

impl<'c> AsyncHttpClient<'c> for Sender<'_> {
    type Error = ProviderHttpError;
    type Future = Pin<Box<dyn Future<Output = Result<HttpResponse, Self::Error>> + Send + 'c>>;

    fn call(&'c self, request: HttpRequest) -> Self::Future {
        match self {
            Sender::Plain(http) => Box::pin(http.send(request)),
            Sender::Proof(with_proof) => Box::pin(with_proof.send(request)),
        }
    }
}

/// `use_dpop_nonce`: in a token endpoint's error (400, JSON) or a resource's challenge (401).
fn answer_asks_for_nonce(response: &HttpResponse) -> bool {
    match response.status().as_u16() {
        400 => serde_json::from_slice::<serde_json::Value>(response.body())
            .is_ok_and(|body| body.get("error").and_then(|e| e.as_str()) == Some("use_dpop_nonce")),
        401 => response
            .headers()
            .get_all(http::header::WWW_AUTHENTICATE)
            .iter()
            .any(|v| v.to_str().is_ok_and(|v| v.contains("use_dpop_nonce"))),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn answer(status: u16, headers: &[(&'static str, &str)], body: &str) -> HttpResponse {
        let mut response = http::Response::new(body.as_bytes().to_vec());
        *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
        for (name, value) in headers {
            response.headers_mut().append(*name, value.parse().unwrap());
        }
        response
    }

    #[test]
    fn a_nonce_is_asked_for_by_the_token_endpoint_or_a_resource() {
        assert!(answer_asks_for_nonce(&answer(400, &[], r#"{"error":"use_dpop_nonce"}"#)));
        assert!(answer_asks_for_nonce(&answer(401, &[("www-authenticate", r#"DPoP error="use_dpop_nonce""#)], "")));
        assert!(!answer_asks_for_nonce(&answer(400, &[], r#"{"error":"invalid_grant"}"#)));
        assert!(!answer_asks_for_nonce(&answer(401, &[("www-authenticate", r#"DPoP error="invalid_token""#)], "")));
        assert!(!answer_asks_for_nonce(&answer(200, &[], r#"{"error":"use_dpop_nonce"}"#)));
    }
}
