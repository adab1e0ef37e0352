//! A form POST to one of the provider's endpoints beside the token endpoint (revocation, PAR),
//! authenticated as the client is configured to (the token endpoint's own requests go through
//! `oauth2`, which does the same).

use super::{Discovered, OidcError, Provider};
use crate::config::ClientAuth;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use openidconnect::HttpRequest;
use url::Url;
use url::form_urlencoded::{Serializer, byte_serialize};

impl Provider {
    /// `form` posted to `endpoint`, with the client's authentication added.
    pub(super) fn authenticated_form(
        &self,
        discovered: &Discovered,
        endpoint: &Url,
        mut form: Vec<(String, String)>,
    ) -> Result<HttpRequest, OidcError> {
        let mut request = http::Request::post(endpoint.as_str())
            .header(CONTENT_TYPE, "application/x-www-form-urlencoded")
            .header(ACCEPT, "application/json");
        match &self.config.client_auth {
            // RFC 6749 §2.3.1: id and secret are form-encoded before base64.
            ClientAuth::SecretBasic(secret) => {
                let id: String = byte_serialize(self.config.client_id.as_bytes()).collect();
                let secret: String = byte_serialize(secret.secret().as_bytes()).collect();
                request = request.header(AUTHORIZATION, format!("Basic {}", STANDARD.encode(format!("{id}:{secret}"))));
            }
            ClientAuth::SecretPost(secret) => {
                form.retain(|(name, _)| name != "client_id");
                form.push(("client_id".into(), self.config.client_id.clone()));
                form.push(("client_secret".into(), secret.secret().clone()));
            }
            // The form names the client; a signed assertion authenticates it (none with mutual
            // TLS, RFC 8705 §2: the TLS client certificate does).
            ClientAuth::PrivateKeyJwt { .. } | ClientAuth::TlsClientAuth | ClientAuth::SelfSignedTlsClientAuth => {
                form.retain(|(name, _)| name != "client_id");
                form.push(("client_id".into(), self.config.client_id.clone()));
                form.extend(self.client_assertion(discovered)?.into_iter().map(|(k, v)| (k.to_string(), v)));
            }
        }
        let body = Serializer::new(String::new()).extend_pairs(form).finish().into_bytes();
        request.body(body).map_err(|e| OidcError::BadResponse(format!("building a request to {endpoint}: {e}")))
    }
}
