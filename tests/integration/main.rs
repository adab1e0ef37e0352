//! Integration tests: cloakroom in-process against the real `oidc-provider`, a recording
//! upstream, and a cookie-jar browser.

mod audit;
mod backchannel;
mod browser;
mod callback;
mod client_auth;
mod client_token;
#[cfg(feature = "demo")]
mod dev_issuer;
mod dpop;
mod exchange;
mod fapi;
mod frontchannel;
mod frontends;
mod gateways;
mod glewlwyd;
mod hostile;
mod id_tokens;
mod identity;
mod journey;
mod kill_switch;
mod limits;
mod logout;
mod mtls;
mod observability;

mod par;
mod providers;
mod proxy;
mod redis_modes;
mod redis_store;
mod refresh;
mod reload;
mod replicas;
mod resources;
mod sessions;
mod spa;
mod spa_origins;
mod step_up;
mod tls;
mod upstream_client;
mod userinfo;
mod websocket;

use cloakroom_test_support as support;
