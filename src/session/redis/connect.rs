//! Reaching Redis as it is deployed: one server, a Sentinel-managed primary, or a Cluster; in
//! plain text or TLS (a private CA, a client certificate, server names checked). The protocol
//! work is redis-rs's own: its `ConnectionManager` (reconnects to one address), its Sentinel
//! client (asks the sentinels where the primary is and checks it says `ROLE master`) and its
//! cluster connection (follows `MOVED`/`ASK` and topology changes).
//!
//! What is ours is when to ask again: a Sentinel connection that failed is dropped, so the next
//! command asks the sentinels for the primary again: after a failover the old address either
//! refuses connections or, back as a replica, refuses writes (`READONLY`).

use crate::config::{RedisAuth, RedisSettings, RedisTls, RedisTopology};
use redis::aio::{ConnectionLike, ConnectionManager, ConnectionManagerConfig, MultiplexedConnection};
use redis::cluster::ClusterClient;
use redis::cluster_async::ClusterConnection;
use redis::cluster_routing::{RoutingInfo, SingleNodeRoutingInfo};
use redis::sentinel::{SentinelClient, SentinelClientBuilder, SentinelServerType};
use redis::{
    AsyncConnectionConfig, Cmd, IntoConnectionInfo, Pipeline, ProtocolVersion, PushInfo, RedisFuture, TlsCertificates,
    Value,
};
use std::time::Duration;

/// Makes connections in the configured mode.
pub enum Connector {
    /// The data connection's client, and the tracking connection's (RESP3, for pushes).
    Standalone(redis::Client, redis::Client),
    Sentinel(tokio::sync::Mutex<SentinelClient>),
    Cluster(ClusterClient),
}

/// One connection, whichever the mode: cheap to clone, shared by every request.
#[derive(Clone)]
pub enum Conn {
    Single(ConnectionManager),
    Cluster(ClusterConnection),
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        cmd: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(cmd, offset, count),
            Conn::Cluster(c) => c.req_packed_commands(cmd, offset, count),
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.get_db(),
        }
    }
}

impl Connector {
    /// Checks the addresses; connects at the first command.
    pub fn new(settings: &RedisSettings) -> Result<Self, RedisSetupError> {
        let certificates = settings.tls.as_ref().map(certificates);
        match &settings.topology {
            RedisTopology::Standalone { url } => {
                let info = url.as_str().into_connection_info().map_err(RedisSetupError::Url)?;
                // Pushes (invalidations) come on a RESP3 connection, whatever the URL asks for.
                let resp3 = info.redis_settings().clone().set_protocol(ProtocolVersion::RESP3);
                let tracking_info = info.clone().set_redis_settings(resp3);
                let clients = match certificates {
                    Some(certs) => redis::Client::build_with_tls(info, certs.clone())
                        .and_then(|data| Ok((data, redis::Client::build_with_tls(tracking_info, certs)?))),
                    None => redis::Client::open(info).and_then(|data| Ok((data, redis::Client::open(tracking_info)?))),
                };
                clients.map(|(data, tracking)| Connector::Standalone(data, tracking)).map_err(RedisSetupError::Url)
            }
            RedisTopology::Sentinel { sentinels, master_name, auth } => {
                sentinel(sentinels, master_name, auth, certificates)
                    .map(|client| Connector::Sentinel(tokio::sync::Mutex::new(client)))
                    .map_err(RedisSetupError::Nodes)
            }
            RedisTopology::Cluster { nodes, auth } => {
                let tls = nodes.first().is_some_and(|n| n.starts_with("rediss://"));
                let mut builder = ClusterClient::builder(nodes.iter().map(String::as_str))
                    .connection_timeout(settings.connect_timeout)
                    .response_timeout(settings.command_timeout)
                    .retries(3)
                    .max_retry_wait(500);
                if let Some(username) = &auth.username {
                    builder = builder.username(username);
                }
                if let Some(password) = &auth.password {
                    builder = builder.password(password);
                }
                if tls {
                    builder = builder.tls(redis::TlsMode::Secure);
                }
                if let Some(certs) = certificates {
                    builder = builder.certs(certs);
                }
                builder.build().map(Connector::Cluster).map_err(RedisSetupError::Nodes)
            }
        }
    }

    /// A connection, made now. In Sentinel mode the sentinels are asked where the primary is.
    pub async fn connect(&self, settings: &RedisSettings) -> redis::RedisResult<Conn> {
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(settings.connect_timeout))
            .set_response_timeout(Some(settings.command_timeout))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_secs(2));
        match self {
            Connector::Standalone(client, _) => {
                ConnectionManager::new_with_config(client.clone(), config).await.map(Conn::Single)
            }
            Connector::Sentinel(sentinel) => {
                let primary = sentinel.lock().await.async_get_client().await?;
                ConnectionManager::new_with_config(primary, config).await.map(Conn::Single)
            }
            Connector::Cluster(client) => client.get_async_connection().await.map(Conn::Cluster),
        }
    }

    /// A connection on which Redis pushes the names of changed session keys (see
    /// [`super::cache`]), its pushes handed to `on_push`. Standalone only: a Sentinel's primary
    /// moves and a Cluster's keys live on many nodes, and one tracking connection follows neither
    /// (`None`: every read goes to Redis).
    pub async fn tracking(
        &self,
        settings: &RedisSettings,
        on_push: impl Fn(PushInfo) + Send + Sync + 'static,
    ) -> Option<redis::RedisResult<MultiplexedConnection>> {
        let Connector::Standalone(_, client) = self else { return None };
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(settings.connect_timeout))
            .set_response_timeout(Some(settings.command_timeout))
            .set_push_sender(move |push: PushInfo| {
                on_push(push);
                Ok::<(), std::convert::Infallible>(())
            });
        Some(client.get_multiplexed_async_connection_with_config(&config).await)
    }

    /// Whether a failed connection should be dropped and made again (asking where to go): in
    /// Sentinel mode, the primary may have moved. The other modes reconnect by themselves.
    pub fn reconnects_on_failure(&self) -> bool {
        matches!(self, Connector::Sentinel(_))
    }

    /// The mode's name, for logs and metrics.
    pub fn mode(&self) -> &'static str {
        match self {
            Connector::Standalone(..) => "standalone",
            Connector::Sentinel(_) => "sentinel",
            Connector::Cluster(_) => "cluster",
        }
    }
}

impl Conn {
    /// Unlinks every key matching each of `patterns`, a SCAN batch at a time on each node that
    /// holds keys (the one server, or every primary of a Cluster, asked for once); how many went
    /// per pattern.
    pub async fn unlink_matching<const N: usize>(&self, patterns: [&str; N]) -> redis::RedisResult<[u64; N]> {
        let nodes = match self {
            Conn::Single(_) => vec![None],
            Conn::Cluster(cluster) => primaries(cluster.clone()).await?.into_iter().map(Some).collect(),
        };
        let mut removed = [0; N];
        for (pattern, removed) in patterns.iter().zip(&mut removed) {
            for node in &nodes {
                *removed += self.unlink_on(node.as_ref(), pattern).await?;
            }
        }
        Ok(removed)
    }

    /// [`Conn::unlink_matching`] for one pattern on one node (`None`: the one server).
    async fn unlink_on(&self, node: Option<&(String, u16)>, pattern: &str) -> redis::RedisResult<u64> {
        let (mut removed, mut cursor) = (0, 0u64);
        loop {
            let mut scan = redis::cmd("SCAN");
            scan.arg(cursor).arg("MATCH").arg(pattern).arg("COUNT").arg(500);
            let (next, keys): (u64, Vec<String>) = match (self, node) {
                (Conn::Cluster(cluster), Some((host, port))) => {
                    let at = SingleNodeRoutingInfo::ByAddress { host: host.clone(), port: *port };
                    redis::from_redis_value(cluster.clone().route_command(scan, RoutingInfo::SingleNode(at)).await?)?
                }
                _ => scan.query_async(&mut self.clone()).await?,
            };
            // One command per key, all in flight at once: in a Cluster the keys live in
            // different slots, which one pipeline cannot span.
            let unlinks = keys.iter().map(|key| {
                let mut conn = self.clone();
                async move { redis::cmd("UNLINK").arg(key).query_async::<u64>(&mut conn).await }
            });
            for unlinked in futures_util::future::join_all(unlinks).await {
                removed += unlinked?;
            }
            if next == 0 {
                return Ok(removed);
            }
            cursor = next;
        }
    }
}

/// A Cluster's primaries, by address (`CLUSTER SLOTS`: each range's first node).
async fn primaries(mut cluster: ClusterConnection) -> redis::RedisResult<Vec<(String, u16)>> {
    let slots: redis::Value = redis::cmd("CLUSTER").arg("SLOTS").query_async(&mut cluster).await?;
    let mut found = Vec::new();
    if let redis::Value::Array(ranges) = slots {
        for range in ranges {
            let redis::Value::Array(parts) = range else { continue };
            let Some(redis::Value::Array(primary)) = parts.get(2) else { continue };
            let host = primary.first().and_then(|v| redis::from_redis_value_ref::<String>(v).ok());
            let port = primary.get(1).and_then(|v| redis::from_redis_value_ref::<u16>(v).ok());
            if let (Some(host), Some(port)) = (host, port)
                && !found.contains(&(host.clone(), port))
            {
                found.push((host, port));
            }
        }
    }
    Ok(found)
}

/// Addresses redis-rs cannot use, naming the setting they came from.
#[derive(Debug, thiserror::Error)]
pub enum RedisSetupError {
    #[error("session.redis_url: {0}")]
    Url(redis::RedisError),
    #[error("session.redis_nodes: {0}")]
    Nodes(redis::RedisError),
}

fn certificates(tls: &RedisTls) -> TlsCertificates {
    TlsCertificates {
        client_tls: tls
            .client
            .as_ref()
            .map(|(cert, key)| redis::ClientTlsConfig { client_cert: cert.clone(), client_key: key.clone() }),
        root_cert: tls.ca.clone(),
    }
}

/// The Sentinel client: the sentinels' addresses and their own credentials from their URLs;
/// the primary's credentials from `auth`; one TLS setting (the URLs' scheme) for both.
fn sentinel(
    sentinels: &[String],
    master_name: &str,
    auth: &RedisAuth,
    certificates: Option<TlsCertificates>,
) -> redis::RedisResult<SentinelClient> {
    let infos: Vec<redis::ConnectionInfo> =
        sentinels.iter().map(|s| s.as_str().into_connection_info()).collect::<Result<_, _>>()?;
    let tls = sentinels.first().is_some_and(|s| s.starts_with("rediss://"));
    let mut builder = SentinelClientBuilder::new(
        infos.iter().map(|info| info.addr().clone()),
        master_name.trim(),
        SentinelServerType::Master,
    )?;
    if let Some(first) = infos.first() {
        let redis = first.redis_settings();
        if let Some(username) = redis.username() {
            builder = builder.set_client_to_sentinel_username(username);
        }
        if let Some(password) = redis.password() {
            builder = builder.set_client_to_sentinel_password(password);
        }
    }
    if let Some(username) = &auth.username {
        builder = builder.set_client_to_redis_username(username);
    }
    if let Some(password) = &auth.password {
        builder = builder.set_client_to_redis_password(password);
    }
    if tls {
        builder = builder
            .set_client_to_redis_tls_mode(redis::TlsMode::Secure)
            .set_client_to_sentinel_tls_mode(redis::TlsMode::Secure);
    }
    if let Some(certs) = certificates {
        builder = builder.set_client_to_redis_certificates(certs.clone()).set_client_to_sentinel_certificates(certs);
    }
    builder.build()
}
