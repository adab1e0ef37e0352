//! The test harness, one concern per file: the real OpenID provider, a TCP gate, plain HTTP
//! calls, a cookie-jar browser with redirects off, the recording upstream, cloakroom itself
//! in-process on ephemeral ports, captured logs, a round-robin balancer, a real redis-server
//! and a test PKI.

#![allow(unused_imports)]

mod balancer;
mod bff;
mod bound_apis;
mod browser;
mod gate;
mod gateway;
mod glewlwyd;
mod http;
mod logs;
mod otlp;
mod pki;
mod provider;
mod redis_server;
mod spa_server;
mod upstream;

pub use self::http::*;
pub use balancer::*;
pub use bff::*;
pub use bound_apis::{DpopApi, MtlsApi};
pub use browser::*;
pub use gate::*;
pub use gateway::Gateway;
pub use glewlwyd::*;
pub use logs::*;
pub use otlp::{OtlpReceiver, ReceivedSpan};
pub use pki::{IssuedCert, TestPki, pki};
pub use provider::*;
pub use redis_server::{Cluster, RedisServer, Sentinel, free_port};
pub use spa_server::SpaServer;
pub use upstream::*;

use ::http::header::{CONTENT_TYPE, COOKIE, LOCATION, SET_COOKIE};
use ::http::{HeaderMap, Method, Request, Response, StatusCode};
use bytes::Bytes;
use cloakroom::clock::ManualClock;
use cloakroom::config::Config;
use cloakroom::respond::{Body, empty, full};
use cloakroom::server::Listeners;
use cloakroom::upstream::HttpClient;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
