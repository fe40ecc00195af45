//! gRPC connections to the endpoints: `--conns` HTTP/2 connections, spread
//! round-robin over the endpoints (or only the leader's, with
//! `--target-leader`, or only the followers', with `--target-follower`), and
//! shared round-robin by the clients: client `i` sends on connection
//! `i % conns`, as etcd's `benchmark` does.
//!
//! **TLS.** The workspace's tonic is built without its TLS features, and its
//! `ClientTlsConfig` could not express `--insecure-skip-tls-verify` anyway. So
//! the tool dials TCP and runs the rustls handshake itself (ALPN `h2`), then
//! hands tonic the encrypted stream through `connect_with_connector`. Tonic
//! refuses `https://` URIs when built without TLS, so it is given the
//! endpoint as `http://host:port`: only the `:scheme` pseudo-header says
//! `http`, which neither etcd (grpc-go) nor oxetcd checks. This keeps tonic's
//! features (and so the server's build) unchanged.

use std::error::Error as StdError;
use std::io;
use std::sync::Arc;
use std::time::Duration;

use hyper_util::rt::TokioIo;
use oxetcd_proto::etcdserverpb::kv_client::KvClient;
use oxetcd_proto::etcdserverpb::lease_client::LeaseClient;
use oxetcd_proto::etcdserverpb::maintenance_client::MaintenanceClient;
use oxetcd_proto::etcdserverpb::watch_client::WatchClient;
use oxetcd_proto::etcdserverpb::StatusRequest;
use rustls::pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::transport::{Channel, Endpoint, Uri};

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
}

/// One endpoint, parsed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// As given on the command line.
    pub endpoint: String,
    /// `host:port`, what TCP dials.
    pub addr: String,
    /// The host alone (brackets of an IPv6 address removed), the TLS server name.
    pub host: String,
    pub https: bool,
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
    let host = host.trim_start_matches('[').trim_end_matches(']');
    if host.is_empty() {
        return Err(bad("no host"));
    }
    Ok(Target {
        endpoint: endpoint.to_owned(),
        addr: addr.to_owned(),
        host: host.to_owned(),
        https,
    })
}

/// The connections of a run.
#[derive(Clone)]
pub struct Pool {
    channels: Arc<Vec<Channel>>,
    /// The endpoints actually used (only the leader's with `--target-leader`,
    /// only the followers' with `--target-follower`).
    pub endpoints: Vec<String>,
}

impl Pool {
    /// Opens every connection now, so a wrong endpoint fails before the run.
    /// Later, a connection that breaks is re-dialled on its next request.
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
        let tls = if targets.iter().any(|t| t.https) {
            Some(TlsConnector::from(tls::client_config(&opts.tls)?))
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
        for i in 0..opts.conns {
            channels
                .push(dial(&targets[i % targets.len()], tls.as_ref(), opts.dial_timeout).await?);
        }
        Ok(Pool {
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

    /// The connection client `i` uses.
    pub fn channel(&self, i: usize) -> Channel {
        self.channels[i % self.channels.len()].clone()
    }

    pub fn kv(&self, i: usize) -> KvClient<Channel> {
        KvClient::new(self.channel(i))
            .max_decoding_message_size(MAX_MESSAGE_BYTES)
            .max_encoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub fn watch(&self, i: usize) -> WatchClient<Channel> {
        WatchClient::new(self.channel(i)).max_decoding_message_size(MAX_MESSAGE_BYTES)
    }

    pub fn lease(&self, i: usize) -> LeaseClient<Channel> {
        LeaseClient::new(self.channel(i))
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

/// A byte stream tonic can speak HTTP/2 over: plain TCP or TLS over TCP.
trait Io: AsyncRead + AsyncWrite + Send + Unpin {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin> Io for T {}

/// Dials one target for tonic: TCP (no Nagle), then the TLS handshake for
/// `https` targets.
#[derive(Clone)]
struct Dialer {
    addr: String,
    tls: Option<(TlsConnector, ServerName<'static>)>,
}

impl Dialer {
    async fn dial(self) -> io::Result<TokioIo<Box<dyn Io>>> {
        let tcp = TcpStream::connect(&self.addr).await?;
        tcp.set_nodelay(true)?;
        let io: Box<dyn Io> = match self.tls {
            Some((connector, name)) => Box::new(connector.connect(name, tcp).await?),
            None => Box::new(tcp),
        };
        Ok(TokioIo::new(io))
    }
}

async fn dial(
    target: &Target,
    tls: Option<&TlsConnector>,
    timeout: Duration,
) -> Result<Channel, BenchError> {
    let connect_error = |reason: String| BenchError::Connect {
        endpoint: target.endpoint.clone(),
        reason,
    };
    let tls = match (target.https, tls) {
        (true, Some(connector)) => {
            let name = ServerName::try_from(target.host.clone())
                .map_err(|e| BenchError::Tls(format!("server name {}: {e}", target.host)))?;
            Some((connector.clone(), name))
        }
        _ => None,
    };
    let dialer = Dialer {
        addr: target.addr.clone(),
        tls,
    };
    let uri: Uri = format!("http://{}", target.addr)
        .parse()
        .map_err(|e| BenchError::Endpoint {
            endpoint: target.endpoint.clone(),
            reason: format!("{e}"),
        })?;
    Endpoint::from(uri)
        .connect_timeout(timeout)
        .connect_with_connector(tower::service_fn(move |_: Uri| dialer.clone().dial()))
        .await
        .map_err(|e| connect_error(error_chain(&e)))
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
        let t = parse_endpoint("http://127.0.0.1:2379").unwrap();
        assert_eq!(
            (t.addr.as_str(), t.host.as_str(), t.https),
            ("127.0.0.1:2379", "127.0.0.1", false)
        );
        let t = parse_endpoint("https://localhost:2379/").unwrap();
        assert_eq!((t.addr.as_str(), t.https), ("localhost:2379", true));
        let t = parse_endpoint("[::1]:2379").unwrap();
        assert_eq!((t.host.as_str(), t.https), ("::1", false));
        assert!(parse_endpoint("unix://x:1").is_err());
        assert!(parse_endpoint("http://host").is_err());
        assert!(parse_endpoint("http://host:1/v3").is_err());
        assert!(parse_endpoint(":2379").is_err());
    }
}
