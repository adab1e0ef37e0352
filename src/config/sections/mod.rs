//! Validation, one section at a time: each function turns its raw section into the validated
//! one, reporting every problem under its key through [`Check`] (all are reported at once).
//! One file per section; [`super::validate`] runs them in order.

mod csrf;
mod demo;
mod log;
mod oidc;
mod routes;
mod server;
mod session;
mod spa;
mod traces;

pub(super) use csrf::csrf;
pub(super) use demo::demo;
pub(super) use log::log;
pub(super) use oidc::{more_providers, oidc, widen_for_routes};
pub(super) use routes::{bound_certificates, default_audience, dpop_providers, routes, step_up_login_params};
pub(super) use server::server;
pub(super) use session::session;
pub(super) use spa::{spa, spa_origins};
pub(super) use traces::traces;

// What the section files share (each takes it with `use super::*`).
use super::check::{Check, RESERVED_AUTH_PARAMS, is_loopback, split_list};
use super::raw::*;
use super::*;
use crate::crypto::client_key::KeyError;
use crate::crypto::seal::MasterKey;
use http::HeaderValue;
use std::path::Path;
