//! The connector tonic dials through: TCP or a unix socket, then the rustls
//! handshake where the URL asks for TLS.
//!
//! TLS is done here, with tokio-rustls over the socket, not by tonic: the
//! configuration is a complete [`rustls::ClientConfig`] (a verifier that
//! accepts any certificate, an extra name check), which tonic's
//! `ClientTlsConfig` cannot take. tonic is only ever given `http://`
//! endpoints, so it never layers TLS of its own, even if another crate of
//! the build turns on tonic's TLS features; the requests' origin says
//! `https` where the connection is encrypted.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use hyper_util::rt::TokioIo;
use rustls::ClientConfig;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tonic::codegen::Service;
use tonic::transport::{Endpoint, Uri};

use crate::target::{Dial, Target};
use crate::{DialError, UrlError};

/// The TLS side of a [`Dialer`], made once and shared by its clones: `config`
/// as given, with ALPN `h2` added if it offers no protocol (gRPC needs
/// HTTP/2, and servers such as grpc-go refuse a TLS client without it).
pub fn tls_connector(config: Arc<ClientConfig>) -> TlsConnector {
    let config = if config.alpn_protocols.is_empty() {
        let mut config = (*config).clone();
        config.alpn_protocols = vec![b"h2".to_vec()];
        Arc::new(config)
    } else {
        config
    };
    TlsConnector::from(config)
}

/// A connected socket, plain or TLS, TCP or unix.
pub trait Io: AsyncRead + AsyncWrite + Send + Unpin + 'static {}
impl<T: AsyncRead + AsyncWrite + Send + Unpin + 'static> Io for T {}

/// tonic's connector for one server: dials its URLs in order until one
/// connects, with TLS where the URL asks for it. Ignores the URI tonic
/// passes (the placeholder of [`Dialer::endpoint`]). Cheap to clone.
///
/// ```no_run
/// # async fn run() -> Result<(), Box<dyn std::error::Error>> {
/// use oxetcd_tls::{client_config, tls_connector, ClientTlsOptions, Dialer, Pem, Target, Trust};
///
/// let tls = client_config(&ClientTlsOptions::new(Trust::Cas(vec![Pem::file("ca.crt")])))?;
/// let dialer = Dialer::new(Target::parse_list("https://127.0.0.1:2379")?, Some(tls_connector(tls)));
/// let channel = dialer
///     .endpoint()?
///     .connect_timeout(std::time::Duration::from_secs(2))
///     .connect_with_connector(dialer)
///     .await?;
/// # let _ = channel; Ok(()) }
/// ```
#[derive(Clone)]
pub struct Dialer {
    targets: Arc<[Target]>,
    tls: Option<TlsConnector>,
}

impl Dialer {
    /// `targets` are tried in order; `tls` serves those that use TLS (one
    /// that does, without it, fails with [`DialError::NoTls`]).
    ///
    /// # Panics
    /// If `targets` is empty ([`Target::parse_list`] never yields that).
    pub fn new(targets: Vec<Target>, tls: Option<TlsConnector>) -> Dialer {
        assert!(!targets.is_empty(), "a Dialer needs at least one target");
        Dialer {
            targets: targets.into(),
            tls,
        }
    }

    /// The endpoint to hand tonic with this dialer: `http://` and the
    /// first target's authority; the origin says `https` when that target
    /// uses TLS. Set timeouts and keep-alives on it as usual: tonic's
    /// connect timeout covers the whole dial, every URL and the handshake.
    pub fn endpoint(&self) -> Result<Endpoint, UrlError> {
        let first = &self.targets[0];
        let bad = |e: &dyn std::fmt::Display| UrlError::new(first.url(), e);
        let authority = first.authority();
        let endpoint = Endpoint::from_shared(format!("http://{authority}")).map_err(|e| bad(&e))?;
        if !first.uses_tls() {
            return Ok(endpoint);
        }
        let origin: Uri = format!("https://{authority}")
            .parse()
            .map_err(|e| bad(&e))?;
        Ok(endpoint.origin(origin))
    }

    /// The first URL that connects (and, with TLS, completes the handshake).
    pub async fn connect(&self) -> Result<Box<dyn Io>, DialError> {
        let mut last = None;
        for target in self.targets.iter() {
            match dial(target, self.tls.as_ref()).await {
                Ok(io) => return Ok(io),
                Err(e) => {
                    tracing::debug!(error = %e, "dialing");
                    last = Some(e);
                }
            }
        }
        Err(last.expect("Dialer::new refuses an empty target list"))
    }
}

async fn dial(target: &Target, tls: Option<&TlsConnector>) -> Result<Box<dyn Io>, DialError> {
    let url = || target.url().to_string();
    let connect = |source| DialError::Connect { url: url(), source };
    let tls = match (target.server_name(), tls) {
        (Some(_), None) => return Err(DialError::NoTls { url: url() }),
        (Some(name), Some(tls)) => Some((name, tls)),
        (None, _) => None,
    };
    let stream: Box<dyn Io> = match target.dial() {
        Dial::Tcp { host, port } => {
            let tcp = TcpStream::connect((host.as_str(), *port))
                .await
                .map_err(connect)?;
            // gRPC requests are small and latency-bound.
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
            return Err(connect(std::io::Error::new(
                std::io::ErrorKind::Unsupported,
                "unix sockets are not supported on this platform",
            )))
        }
    };
    let Some((name, tls)) = tls else {
        return Ok(stream);
    };
    let stream = tls
        .connect(name.clone(), stream)
        .await
        .map_err(|source| DialError::Handshake { url: url(), source })?;
    Ok(Box::new(stream))
}

impl Service<Uri> for Dialer {
    type Response = TokioIo<Box<dyn Io>>;
    type Error = DialError;
    type Future = Pin<Box<dyn Future<Output = Result<Self::Response, DialError>> + Send>>;

    fn poll_ready(&mut self, _cx: &mut Context<'_>) -> Poll<Result<(), DialError>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, _uri: Uri) -> Self::Future {
        let this = self.clone();
        Box::pin(async move { this.connect().await.map(TokioIo::new) })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_pki::pki;
    use crate::{client_config, ClientTlsOptions, Pem, Trust};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    fn dialer(urls: &str, tls: Option<TlsConnector>) -> Dialer {
        Dialer::new(Target::parse_list(urls).unwrap(), tls)
    }

    async fn free_port() -> u16 {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        listener.local_addr().unwrap().port()
    }

    #[tokio::test]
    async fn reports_unreachable_urls_and_missing_tls() {
        let port = free_port().await;
        let err = dialer(&format!("http://127.0.0.1:{port}"), None)
            .connect()
            .await
            .err()
            .unwrap();
        assert!(matches!(err, DialError::Connect { .. }), "{err}");

        // Refused before dialing.
        let err = dialer("https://127.0.0.1:1", None)
            .connect()
            .await
            .err()
            .unwrap();
        assert!(matches!(err, DialError::NoTls { .. }), "{err}");

        // The second URL is used when the first fails.
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut d = dialer(&format!("http://127.0.0.1:1,http://127.0.0.1:{port}"), None);
        assert!(d.call(Uri::from_static("http://x")).await.is_ok());
    }

    #[cfg(unix)]
    #[tokio::test]
    async fn dials_unix_sockets() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("peer.sock");
        let _listener = tokio::net::UnixListener::bind(&path).unwrap();
        let d = dialer(&format!("unix://{}", path.display()), None);
        assert!(d.connect().await.is_ok());
    }

    /// A TLS server on `ip` that answers one byte with the ALPN protocol it
    /// agreed and the SNI it was sent.
    async fn tls_server(ip: &str, server: Arc<rustls::ServerConfig>) -> u16 {
        let listener = TcpListener::bind((ip, 0)).await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let acceptor = tokio_rustls::TlsAcceptor::from(server);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let acceptor = acceptor.clone();
                tokio::spawn(async move {
                    let Ok(mut tls) = acceptor.accept(tcp).await else {
                        return;
                    };
                    let session = tls.get_ref().1;
                    let alpn = session.alpn_protocol().unwrap_or(b"-").to_vec();
                    let sni = session.server_name().unwrap_or("-").to_string();
                    let mut b = [0u8; 1];
                    if tls.read_exact(&mut b).await.is_ok() {
                        let answer = format!("{} {sni}\n", String::from_utf8_lossy(&alpn));
                        let _ = tls.write_all(answer.as_bytes()).await;
                        let _ = tls.shutdown().await;
                    }
                });
            }
        });
        port
    }

    async fn ask(dialer: &Dialer) -> Result<String, DialError> {
        let mut io = dialer.connect().await?;
        io.write_all(b"?").await.unwrap();
        let mut answer = String::new();
        io.read_to_string(&mut answer).await.unwrap();
        Ok(answer)
    }

    #[tokio::test]
    async fn tls_urls_are_dialed_with_h2_and_their_host_as_server_name() {
        let p = pki();
        let server = p.issuer.server_config("server", false);
        let port = tls_server("127.0.0.1", server.clone()).await;
        let trusting = ClientTlsOptions::new(Trust::Cas(vec![Pem::file(&p.ca)]));
        let mut bare = (*client_config(&trusting).unwrap()).clone();
        // A configuration without ALPN gets h2 all the same.
        bare.alpn_protocols.clear();
        let tls = Some(tls_connector(Arc::new(bare)));
        // A DNS name is sent as SNI; an IP address is not (RFC 6066).
        let by_name = dialer(&format!("https://localhost:{port}"), tls.clone());
        assert_eq!(ask(&by_name).await.unwrap(), "h2 localhost\n");
        let by_ip = dialer(&format!("https://127.0.0.1:{port}"), tls.clone());
        assert_eq!(ask(&by_ip).await.unwrap(), "h2 -\n");
        // The certificate names 127.0.0.1, not 127.0.0.2.
        let port = tls_server("127.0.0.2", server).await;
        let wrong = dialer(&format!("https://127.0.0.2:{port}"), tls);
        let err = ask(&wrong).await.err().unwrap();
        assert!(matches!(err, DialError::Handshake { .. }), "{err}");
        assert!(err.to_string().contains("not valid for name"), "{err}");
    }

    #[test]
    fn endpoints_are_http_placeholders_for_the_first_target() {
        let plain = dialer("http://127.0.0.1:2379", None).endpoint().unwrap();
        assert_eq!(plain.uri(), &Uri::from_static("http://127.0.0.1:2379"));
        let tls = dialer("https://[::1]:2380,http://127.0.0.1:1", None)
            .endpoint()
            .unwrap();
        // tonic dials the placeholder through the dialer only.
        assert_eq!(tls.uri(), &Uri::from_static("http://[::1]:2380"));
        let unix = dialer("unixs://etcd.sock:2379", None).endpoint().unwrap();
        assert_eq!(unix.uri(), &Uri::from_static("http://localhost"));
    }
}
