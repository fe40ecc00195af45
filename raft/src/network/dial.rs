//! Peer URLs and the connector tonic dials them with.
//!
//! A member's address ([`openraft::BasicNode::addr`]) is one peer URL or
//! several separated by commas, as etcd's `--initial-advertise-peer-urls`:
//! `http://host:port`, `https://host:port`, `unix://path`, `unixs://path`
//! (etcd names the socket file by the URL's host, port included). Each
//! connection attempt tries them in order.
//!
//! TLS is done here, with tokio-rustls over the socket, not by tonic: the
//! server hands over a complete [`rustls::ClientConfig`] (its CA, client
//! certificate, or etcd's `--peer-auto-tls` verifier that accepts any server
//! certificate), which tonic's `ClientTlsConfig` cannot take. tonic is only
//! ever given `http://` endpoints, so it never layers TLS of its own, even if
//! another crate of the build turns on tonic's TLS features.

use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use rustls::pki_types::ServerName;
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::codegen::Service;
use tonic::transport::Uri;

use super::error::AddrError;

/// Where one peer URL leads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Dial {
    Tcp { host: String, port: u16 },
    Unix { path: String },
}

/// One parsed peer URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PeerUrl {
    pub(crate) url: String,
    pub(crate) dial: Dial,
    /// https:// or unixs://: the name the server certificate must match.
    pub(crate) tls: Option<ServerName<'static>>,
}

impl PeerUrl {
    /// The `http://` URI tonic's endpoint is built from (and, with the
    /// scheme set right, the origin of the requests).
    pub(crate) fn authority(&self) -> String {
        match &self.dial {
            Dial::Tcp { host, port } if host.contains(':') => format!("[{host}]:{port}"),
            Dial::Tcp { host, port } => format!("{host}:{port}"),
            Dial::Unix { .. } => "localhost".to_string(),
        }
    }
}

fn bad(url: &str, reason: impl ToString) -> AddrError {
    AddrError {
        url: url.to_string(),
        reason: reason.to_string(),
    }
}

/// Parses a member's address: one or more peer URLs separated by commas.
pub(crate) fn parse_peer_urls(addr: &str) -> Result<Vec<PeerUrl>, AddrError> {
    let urls = addr
        .split(',')
        .map(str::trim)
        .filter(|u| !u.is_empty())
        .map(parse_peer_url)
        .collect::<Result<Vec<_>, _>>()?;
    if urls.is_empty() {
        return Err(bad(addr, "no peer URL"));
    }
    Ok(urls)
}

fn parse_peer_url(url: &str) -> Result<PeerUrl, AddrError> {
    let (scheme, rest) = url
        .split_once("://")
        .ok_or_else(|| bad(url, "expected scheme://host:port"))?;
    let scheme = scheme.to_ascii_lowercase();
    match scheme.as_str() {
        "unix" | "unixs" => {
            // etcd listens on, and dials, a socket file named by the URL's
            // host (port included); `unix:///abs/path` names it by its path.
            let path = match rest.split_once('/') {
                Some(("", path)) => format!("/{path}"),
                Some((host, _)) => host.to_string(),
                None => rest.to_string(),
            };
            if path.is_empty() || path == "/" {
                return Err(bad(url, "no socket path"));
            }
            let tls = if scheme == "unixs" {
                let host = path.rsplit_once(':').map_or(path.as_str(), |(h, _)| h);
                Some(ServerName::try_from(host.to_string()).map_err(|e| bad(url, e))?)
            } else {
                None
            };
            Ok(PeerUrl {
                url: url.to_string(),
                dial: Dial::Unix { path },
                tls,
            })
        }
        "http" | "https" => {
            let uri: Uri = url.parse().map_err(|e| bad(url, e))?;
            let host = uri
                .host()
                .filter(|h| !h.is_empty())
                .ok_or_else(|| bad(url, "no host"))?;
            let host = host
                .trim_start_matches('[')
                .trim_end_matches(']')
                .to_string();
            let https = scheme == "https";
            let port = uri.port_u16().unwrap_or(if https { 443 } else { 80 });
            let tls = if https {
                Some(ServerName::try_from(host.clone()).map_err(|e| bad(url, e))?)
            } else {
                None
            };
            Ok(PeerUrl {
                url: url.to_string(),
                dial: Dial::Tcp { host, port },
                tls,
            })
        }
        other => Err(bad(url, format!("unsupported scheme {other:?}"))),
    }
}

/// A connected socket, plain or TLS, TCP or unix.
pub(crate) trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// Why no URL of a peer could be dialed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DialError {
    #[error("cannot connect to {url}: {source}")]
    Connect { url: String, source: io::Error },
    #[error("TLS handshake with {url} failed: {source}")]
    Handshake { url: String, source: io::Error },
    #[error("{url} needs TLS, but no peer TLS configuration was given")]
    NoTls { url: String },
}

/// tonic's connector for one peer: dials its URLs in order, with TLS where
/// the URL asks for it. Ignores the URI tonic passes (a placeholder).
#[derive(Clone)]
pub(crate) struct Connector {
    urls: Arc<[PeerUrl]>,
    tls: Option<TlsConnector>,
}

impl Connector {
    pub(crate) fn new(urls: Vec<PeerUrl>, tls: Option<Arc<ClientConfig>>) -> Connector {
        Connector {
            urls: urls.into(),
            tls: tls.map(TlsConnector::from),
        }
    }
}

async fn dial(url: &PeerUrl, tls: Option<&TlsConnector>) -> Result<Box<dyn Io>, DialError> {
    let connect = |source| DialError::Connect {
        url: url.url.clone(),
        source,
    };
    if url.tls.is_some() && tls.is_none() {
        return Err(DialError::NoTls {
            url: url.url.clone(),
        });
    }
    let stream: Box<dyn Io> = match &url.dial {
        Dial::Tcp { host, port } => {
            let tcp = TcpStream::connect((host.as_str(), *port))
                .await
                .map_err(connect)?;
            // Raft messages are small and latency-bound.
            tcp.set_nodelay(true).map_err(connect)?;
            Box::new(tcp)
        }
        #[cfg(unix)]
        Dial::Unix { path } => Box::new(
            tokio::net::UnixStream::connect(path)
                .await
                .map_err(connect)?,
        ),
        #[cfg(not(unix))]
        Dial::Unix { .. } => {
            return Err(connect(io::Error::new(
                io::ErrorKind::Unsupported,
                "unix sockets are not supported on this platform",
            )))
        }
    };
    let (Some(name), Some(tls)) = (&url.tls, tls) else {
        return Ok(stream);
    };
    let stream =
        tls.connect(name.clone(), stream)
            .await
            .map_err(|source| DialError::Handshake {
                url: url.url.clone(),
                source,
            })?;
    Ok(Box::new(stream))
}

impl Service<Uri> for Connector {
    type Response = TokioIo<Box<dyn Io>>;
    type Error = DialError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, DialError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), DialError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move {
            let mut last = None;
            for url in this.urls.iter() {
                match dial(url, this.tls.as_ref()).await {
                    Ok(io) => return Ok(TokioIo::new(io)),
                    Err(e) => {
                        tracing::debug!(error = %e, "dialing peer");
                        last = Some(e);
                    }
                }
            }
            // parse_peer_urls never yields an empty list.
            Err(last.unwrap_or_else(|| DialError::Connect {
                url: String::new(),
                source: io::Error::new(io::ErrorKind::InvalidInput, "no peer URL"),
            }))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_peer_urls() {
        let urls = parse_peer_urls("https://127.0.0.1:2380, http://node-b:12380").unwrap();
        assert_eq!(urls.len(), 2);
        assert_eq!(
            urls[0].dial,
            Dial::Tcp {
                host: "127.0.0.1".into(),
                port: 2380
            }
        );
        assert_eq!(
            urls[0].tls,
            Some(ServerName::try_from("127.0.0.1").unwrap().to_owned())
        );
        assert_eq!(urls[0].authority(), "127.0.0.1:2380");
        assert_eq!(urls[1].tls, None);
        assert_eq!(urls[1].authority(), "node-b:12380");

        let v6 = parse_peer_urls("https://[::1]:2380").unwrap();
        assert_eq!(
            v6[0].dial,
            Dial::Tcp {
                host: "::1".into(),
                port: 2380
            }
        );
        assert_eq!(v6[0].authority(), "[::1]:2380");

        let unix = parse_peer_urls("unix://etcd.unix:1").unwrap();
        assert_eq!(
            unix[0].dial,
            Dial::Unix {
                path: "etcd.unix:1".into()
            }
        );
        assert_eq!(unix[0].tls, None);
        let unixs = parse_peer_urls("unixs://localhost:2380").unwrap();
        assert_eq!(
            unixs[0].tls,
            Some(ServerName::try_from("localhost").unwrap().to_owned())
        );
        let abs = parse_peer_urls("unix:///tmp/peer.sock").unwrap();
        assert_eq!(
            abs[0].dial,
            Dial::Unix {
                path: "/tmp/peer.sock".into()
            }
        );
        assert_eq!(
            parse_peer_urls("http://h").unwrap()[0].dial,
            Dial::Tcp {
                host: "h".into(),
                port: 80
            }
        );
    }

    #[test]
    fn rejects_bad_urls() {
        for bad in [
            "",
            " , ",
            "127.0.0.1:2380",
            "ftp://h:1",
            "http://:80",
            "unix://",
        ] {
            assert!(parse_peer_urls(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn reports_unreachable_urls_and_missing_tls() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        drop(listener);
        let mut c = Connector::new(
            parse_peer_urls(&format!("http://127.0.0.1:{port}")).unwrap(),
            None,
        );
        let err = c.call(Uri::from_static("http://x")).await.err().unwrap();
        assert!(matches!(err, DialError::Connect { .. }), "{err}");

        // Refused before dialing.
        let mut c = Connector::new(parse_peer_urls("https://127.0.0.1:1").unwrap(), None);
        let err = c.call(Uri::from_static("http://x")).await.err().unwrap();
        assert!(matches!(err, DialError::NoTls { .. }), "{err}");

        // The second URL is used when the first fails.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut c = Connector::new(
            parse_peer_urls(&format!("http://127.0.0.1:1,http://127.0.0.1:{port}")).unwrap(),
            None,
        );
        assert!(c.call(Uri::from_static("http://x")).await.is_ok());
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn dials_unix_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peer.sock");
        let _listener = tokio::net::UnixListener::bind(&path).unwrap();
        let url = format!("unix://{}", path.display());
        let urls = parse_peer_urls(&url).unwrap();
        assert_eq!(
            urls[0].dial,
            Dial::Unix {
                path: path.display().to_string()
            }
        );
        let mut c = Connector::new(urls, None);
        assert!(c.call(Uri::from_static("http://x")).await.is_ok());
    }
}
