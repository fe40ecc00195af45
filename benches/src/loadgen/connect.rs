//! gRPC connections to the endpoints: `--conns` HTTP/2 connections, spread
//! round-robin over the endpoints (or only the leader's, with
//! `--target-leader`, or only the followers', with `--target-follower`), and
//! shared round-robin by the clients: client `i` sends on connection
//! `i % conns`, as etcd's `benchmark` does. With `--user`, each connection
//! authenticates before the run and its requests carry the token (see
//! [`super::auth`]).
//!
//! **TLS.** Connections are dialed through oxetcd-tls's [`Dialer`], which
//! runs the rustls handshake itself (ALPN `h2`) and hands tonic the encrypted
//! stream: tonic's `ClientTlsConfig` could not express
//! `--insecure-skip-tls-verify`, and the workspace's tonic stays without its
//! TLS features.

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use oxetcd_proto::etcdserverpb::kv_client::KvClient;
use oxetcd_proto::etcdserverpb::lease_client::LeaseClient;
use oxetcd_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use oxetcd_proto::etcdserverpb::watch_client::WatchClient;
use oxetcd_proto::etcdserverpb::StatusRequest;
use oxetcd_tls::{tls_connector, Dialer, TlsConnector};
use tonic::transport::Channel;

use super::auth::{Conn, Credentials, Session};
use super::error::BenchError;
use super::tls::{self, TlsOptions};

/// Largest response the clients accept (a big list).
const MAX_MESSAGE_BYTES: usize = 256 << 20;

/// How to reach the servers.
#[derive(Clone, Debug)]
pub struct ConnOptions {
    pub endpoints: Vec<String>,
    pub conns: usize,
    pub target_leader: bool,
    pub target_follower: bool,
    pub dial_timeout: Duration,
    pub tls: TlsOptions,
    /// `--user`: authenticate every connection as this user.
    pub credentials: Option<Credentials>,
    /// `--request-timeout`: the longest wait for each Authenticate.
    pub request_timeout: Duration,
}

/// One endpoint, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// As given on the command line.
    pub endpoint: String,
    /// What is dialed, and the TLS server name for https.
    pub url: oxetcd_tls::Target,
}

/// Parses `http://host:port`, `https://host:port` or `host:port` (http).
pub fn parse_endpoint(endpoint: &str) -> Result<Target, BenchError> {
    let bad = |reason: &str| BenchError::Endpoint {
        endpoint: endpoint.to_owned(),
        reason: reason.to_owned(),
    };
    let (https, rest) = match endpoint.split_once("://") {
        Some(("http", rest)) => (false, rest),
        Some(("https", rest)) => (true, rest),
        Some((scheme, _)) => return Err(bad(&format!("scheme {scheme} (want http or https)"))),
        None => (false, endpoint),
    };
    let addr = rest.trim_end_matches('/');
    if addr.contains('/') {
        return Err(bad("a path is not allowed"));
    }
    let (host, port) = addr.rsplit_once(':').ok_or_else(|| bad("no port"))?;
    port.parse::<u16>().map_err(|_| bad("bad port"))?;
    if host
        .trim_start_matches('[')
        .trim_end_matches(']')
        .is_empty()
    {
        return Err(bad("no host"));
    }
    let scheme = if https { "https" } else { "http" };
    let url =
        oxetcd_tls::Target::parse(&format!("{scheme}://{addr}")).map_err(|e| bad(&e.reason))?;
    Ok(Target {
        endpoint: endpoint.to_owned(),
        url,
    })
}

/// The connections of a run.
#[derive(Clone)]
pub struct Pool {
    /// The connections, each with its login under `--user`.
    conns: Arc<Vec<Conn>>,
    /// The same connections without a token (for Authenticate itself).
    channels: Arc<Vec<Channel>>,
    /// The endpoints actually used (only the leader's with `--target-leader`,
    /// only the followers' with `--target-follower`).
    pub endpoints: Vec<String>,
}

impl Pool {
    /// Opens every connection now (and authenticates on it with `--user`),
    /// so a wrong endpoint or password fails before the run. Later, a
    /// connection that breaks is re-dialled on its next request.
    pub async fn connect(opts: &ConnOptions) -> Result<Pool, BenchError> {
        if opts.endpoints.is_empty() {
            return Err(BenchError::Usage("no --endpoints".into()));
        }
        if opts.conns == 0 {
            return Err(BenchError::Usage("--conns must be at least 1".into()));
        }
        let mut targets = opts
            .endpoints
            .iter()
            .map(|e| parse_endpoint(e))
            .collect::<Result<Vec<_>, _>>()?;
        let tls = if targets.iter().any(|t| t.url.uses_tls()) {
            Some(tls_connector(tls::client_config(&opts.tls)?))
        } else {
            None
        };
        if opts.target_leader || opts.target_follower {
            let roles = find_roles(&targets, tls.as_ref(), opts.dial_timeout).await;
            targets = if opts.target_leader {
                roles.leader()?
            } else {
                roles.followers()?
            };
        }
        let mut channels = Vec::with_capacity(opts.conns);
        let mut conns = Vec::with_capacity(opts.conns);
        for i in 0..opts.conns {
            let target = &targets[i % targets.len()];
            let channel = dial(target, tls.as_ref(), opts.dial_timeout).await?;
            let session = match &opts.credentials {
                Some(credentials) => Some(Arc::new(
                    Session::start(channel.clone(), credentials.clone(), opts.request_timeout)
                        .await
                        .map_err(|error| BenchError::Authenticate {
                            user: credentials.name.clone(),
                            endpoint: target.endpoint.clone(),
                            error,
                        })?,
                )),
                None => None,
            };
            conns.push(Conn::new(channel.clone(), session));
            channels.push(channel);
        }
        Ok(Pool {
            conns: Arc::new(conns),
            channels: Arc::new(channels),
            endpoints: targets.into_iter().map(|t| t.endpoint).collect(),
        })
    }

    pub fn len(&self) -> usize {
        self.channels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.channels.is_empty()
    }

    /// Tokens renewed during the run, over every connection.
    pub fn token_renewals(&self) -> u64 {
        self.conns.iter().map(Conn::token_renewals).sum()
    }

    /// The connection client `i` uses (its requests carry the token).
    pub fn conn(&self, i: usize) -> Conn {
        self.conns[i % self.conns.len()].clone()
    }

    /// The connection client `i` uses, without a token.
    pub fn channel(&self, i: usize) -> Channel {
        self.channels[i % self.channels.len()].clone()
    }

    pub fn kv(&self, i: usize) -> KvClient<Conn> {
        KvClient::new(self.conn(i))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub fn watch(&self, i: usize) -> WatchClient<Conn> {
        WatchClient::new(self.conn(i)).max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub fn lease(&self, i: usize) -> LeaseClient<Conn> {
        LeaseClient::new(self.conn(i))
    }
}

/// Which endpoints lead and which follow, by Maintenance.Status: a member
/// leads when its own id (`header.member_id`) is the leader it reports.
struct Roles {
    leaders: Vec<Target>,
    followers: Vec<Target>,
    /// What each endpoint answered, for the error when no endpoint fits.
    seen: Vec<String>,
}

impl Roles {
    fn leader(self) -> Result<Vec<Target>, BenchError> {
        match self.leaders.into_iter().next() {
            Some(leader) => Ok(vec![leader]),
            None => Err(BenchError::NoLeader(format!(
                "no endpoint is the leader ({})",
                self.seen.join("; ")
            ))),
        }
    }

    fn followers(self) -> Result<Vec<Target>, BenchError> {
        if self.followers.is_empty() {
            return Err(BenchError::NoFollower(format!(
                "no endpoint is a follower ({})",
                self.seen.join("; ")
            )));
        }
        Ok(self.followers)
    }
}

async fn find_roles(targets: &[Target], tls: Option<&TlsConnector>, timeout: Duration) -> Roles {
    let mut roles = Roles {
        leaders: Vec::new(),
        followers: Vec::new(),
        seen: Vec::new(),
    };
    for target in targets {
        let channel = match dial(target, tls, timeout).await {
            Ok(channel) => channel,
            Err(e) => {
                roles.seen.push(e.to_string());
                continue;
            }
        };
        let status = tokio::time::timeout(
            timeout,
            MaintenanceClient::new(channel).status(StatusRequest {}),
        )
        .await;
        match status {
            Ok(Ok(response)) => {
                let status = response.into_inner();
                let member = status.header.map(|h| h.member_id).unwrap_or(0);
                roles.seen.push(format!(
                    "{}: member {member:x}, leader {:x}",
                    target.endpoint, status.leader
                ));
                if member != 0 && member == status.leader {
                    roles.leaders.push(target.clone());
                } else if member != 0 && status.leader != 0 {
                    roles.followers.push(target.clone());
                }
            }
            Ok(Err(status)) => roles.seen.push(format!("{}: {status}", target.endpoint)),
            Err(_) => roles
                .seen
                .push(format!("{}: no status within {timeout:?}", target.endpoint)),
        }
    }
    roles
}

/// A connection to `target` (TLS for https), made now.
async fn dial(
    target: &Target,
    tls: Option<&TlsConnector>,
    timeout: Duration,
) -> Result<Channel, BenchError> {
    let dialer = Dialer::new(vec![target.url.clone()], tls.cloned());
    let endpoint = dialer.endpoint().map_err(|e| BenchError::Endpoint {
        endpoint: target.endpoint.clone(),
        reason: e.reason,
    })?;
    endpoint
        .connect_timeout(timeout)
        .connect_with_connector(dialer)
        .await
        .map_err(|e| BenchError::Connect {
            endpoint: target.endpoint.clone(),
            reason: error_chain(&e),
        })
}

/// An error and its sources, `outer: inner: innermost`.
pub fn error_chain(error: &dyn StdError) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(inner) = source {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        source = inner.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_parse_like_etcd_clients_take_them() {
        let parts = |t: Target| {
            let host = match t.url.dial() {
                oxetcd_tls::Dial::Tcp { host, .. } => host.clone(),
                other => panic!("{other:?}"),
            };
            (t.url.authority(), host, t.url.uses_tls())
        };
        let t = parse_endpoint("http://127.0.0.1:2379").unwrap();
        assert_eq!(
            parts(t),
            ("127.0.0.1:2379".into(), "127.0.0.1".into(), false)
        );
        let t = parse_endpoint("https://localhost:2379/").unwrap();
        assert_eq!(
            parts(t),
            ("localhost:2379".into(), "localhost".into(), true)
        );
        let t = parse_endpoint("[::1]:2379").unwrap();
        assert_eq!(parts(t), ("[::1]:2379".into(), "::1".into(), false));
        assert!(parse_endpoint("unix://x:1").is_err());
        assert!(parse_endpoint("http://host").is_err());
        assert!(parse_endpoint("http://host:1/v3").is_err());
        assert!(parse_endpoint(":2379").is_err());
    }
}
