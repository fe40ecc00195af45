//! Listeners for etcd's listen URLs, feeding tonic one stream of accepted
//! connections.
//!
//! As etcd does, the same host:port given as both http:// and https:// is
//! one socket serving both (the first byte tells a TLS ClientHello from
//! HTTP/2), and unix:// / unixs:// listen on a socket file named by the
//! URL's host:port text. TLS handshakes run in their own tasks, so a slow or
//! broken client delays nobody else.

use std::future::Future;
use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpSocket, TcpStream, UnixListener, UnixStream};
use tokio::sync::mpsc;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;
use tokio_stream::wrappers::ReceiverStream;
use tokio_stream::Stream;

use crate::authority::{forward_async_write, AuthorityFix};
use crate::config::ListenUrl;

/// Longest a client may take from connect to finished TLS handshake.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// First byte of a TLS record carrying a handshake (the ClientHello).
const TLS_HANDSHAKE: u8 = 0x16;
const BACKLOG: u32 = 1024;
/// Ready connections waiting for the server to take them.
const QUEUE: usize = 64;

#[derive(Debug, thiserror::Error)]
pub enum ListenError {
    /// etcd's words.
    #[error("TLS key/cert ({flags}) must be provided for {what} url {url} with HTTPS scheme")]
    TlsRequired {
        what: String,
        url: String,
        flags: &'static str,
    },
    /// Go's words ("listen tcp 127.0.0.1:2379: bind: address already in
    /// use"), then the URL it came from.
    #[error(
        "listen {network} {addr}: {op}: {} ({what} url {url})",
        go_error_text(source)
    )]
    Listen {
        network: &'static str,
        addr: String,
        op: &'static str,
        what: String,
        url: String,
        source: io::Error,
    },
    #[error("cannot resolve {host:?} of {what} url {url}: {reason}")]
    Resolve {
        host: String,
        what: String,
        url: String,
        reason: String,
    },
}

/// Bound sockets, already accepting; see [`Listeners::incoming`].
#[derive(Debug)]
pub struct Listeners {
    rx: mpsc::Receiver<io::Result<Conn>>,
    addrs: Vec<String>,
}

impl Listeners {
    /// One entry per socket: "127.0.0.1:2379", "[::1]:2379", or a unix
    /// socket's path.
    pub fn local_addrs(&self) -> Vec<String> {
        self.addrs.clone()
    }

    /// One stream of accepted, handshaken connections from every listener, for
    /// tonic::transport::Server::serve_with_incoming_shutdown. Dropping the
    /// stream closes the sockets (and removes unix socket files).
    pub fn incoming(self) -> impl Stream<Item = io::Result<Conn>> + Send + 'static {
        ReceiverStream::new(self.rx)
    }
}

/// Binds every URL (one socket per address) and starts accepting. `tls` is
/// needed if any URL is https:// or unixs://; `what` ("client", "peer")
/// goes into error messages.
pub async fn bind(
    urls: &[ListenUrl],
    tls: Option<Arc<rustls::ServerConfig>>,
    what: &str,
) -> Result<Listeners, ListenError> {
    let mut groups: Vec<Group> = Vec::new();
    for url in urls {
        let addr = bind_addr(url, what).await?;
        match groups.iter_mut().find(|g| g.addr == addr) {
            Some(g) => g.add(url),
            None => groups.push(Group::new(addr, url)),
        }
    }
    if tls.is_none() {
        if let Some(url) = groups.iter().find_map(|g| g.tls_url.as_ref()) {
            let flags = if what == "peer" {
                "--peer-cert-file, --peer-key-file"
            } else {
                "--cert-file, --key-file"
            };
            return Err(ListenError::TlsRequired {
                what: what.to_string(),
                url: url.clone(),
                flags,
            });
        }
    }
    for g in &groups {
        if let BindAddr::Unix(path) = &g.addr {
            remove_stale_socket(path).await;
        }
    }
    // Bind everything before accepting anything: on an error, the sockets
    // bound so far close as they drop.
    let mut bound = Vec::with_capacity(groups.len());
    for g in &groups {
        bound.push((g.bind(what)?, g.mode()));
    }
    let acceptor = tls.map(TlsAcceptor::from);
    let (tx, rx) = mpsc::channel(QUEUE);
    let mut addrs = Vec::with_capacity(bound.len());
    for (socket, mode) in bound {
        let acceptor = acceptor.clone();
        let tx = tx.clone();
        let what = what.to_string();
        match socket {
            Socket::Tcp(l) => {
                addrs.push(
                    l.local_addr()
                        .map_or_else(|_| String::new(), |a| a.to_string()),
                );
                tokio::spawn(accept_tcp(l, mode, acceptor, tx, what));
            }
            Socket::Unix(u) => {
                addrs.push(u.path.display().to_string());
                tokio::spawn(accept_unix(u, mode, acceptor, tx, what));
            }
        }
    }
    Ok(Listeners { rx, addrs })
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum BindAddr {
    Tcp(SocketAddr),
    Unix(PathBuf),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Plain,
    Tls,
    /// Both on one socket: the first byte decides.
    Sniff,
}

/// The URLs sharing one address.
struct Group {
    addr: BindAddr,
    first_url: String,
    plain: bool,
    tls_url: Option<String>,
}

impl Group {
    fn new(addr: BindAddr, url: &ListenUrl) -> Group {
        let mut g = Group {
            addr,
            first_url: url.original.clone(),
            plain: false,
            tls_url: None,
        };
        g.add(url);
        g
    }

    fn add(&mut self, url: &ListenUrl) {
        if url.scheme.is_tls() {
            self.tls_url.get_or_insert_with(|| url.original.clone());
        } else {
            self.plain = true;
        }
    }

    fn mode(&self) -> Mode {
        match (self.plain, self.tls_url.is_some()) {
            (true, true) => Mode::Sniff,
            (false, true) => Mode::Tls,
            _ => Mode::Plain,
        }
    }

    fn bind(&self, what: &str) -> Result<Socket, ListenError> {
        let fail = |network, addr: String, op| {
            move |source: io::Error| ListenError::Listen {
                network,
                addr,
                op,
                what: what.to_string(),
                url: self.first_url.clone(),
                source,
            }
        };
        match &self.addr {
            BindAddr::Tcp(addr) => {
                let shown = addr.to_string();
                let socket = if addr.is_ipv4() {
                    TcpSocket::new_v4()
                } else {
                    TcpSocket::new_v6()
                }
                .map_err(fail("tcp", shown.clone(), "socket"))?;
                // A restart right after a kill must not wait out TIME_WAIT.
                socket
                    .set_reuseaddr(true)
                    .map_err(fail("tcp", shown.clone(), "setsockopt"))?;
                socket
                    .bind(*addr)
                    .map_err(fail("tcp", shown.clone(), "bind"))?;
                let listener = socket
                    .listen(BACKLOG)
                    .map_err(fail("tcp", shown, "listen"))?;
                Ok(Socket::Tcp(listener))
            }
            BindAddr::Unix(path) => {
                let shown = path.display().to_string();
                let listener =
                    UnixListener::bind(path).map_err(fail("unix", shown.clone(), "bind"))?;
                let id = file_id(path);
                Ok(Socket::Unix(UnixSocket {
                    listener,
                    path: path.clone(),
                    id,
                }))
            }
        }
    }
}

enum Socket {
    Tcp(TcpListener),
    Unix(UnixSocket),
}

/// A unix listener that removes its socket file when dropped, as Go's does.
struct UnixSocket {
    listener: UnixListener,
    path: PathBuf,
    /// (device, inode) of the file we created, so we never remove a socket
    /// another process has since put at the same path.
    id: Option<(u64, u64)>,
}

impl Drop for UnixSocket {
    fn drop(&mut self) {
        if self.id.is_some() && file_id(&self.path) == self.id {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

fn file_id(path: &Path) -> Option<(u64, u64)> {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path)
        .ok()
        .map(|m| (m.dev(), m.ino()))
}

/// A socket file nobody listens on any more (left by a killed server) would
/// make bind fail; a live one, or any other file, is left for bind to report.
async fn remove_stale_socket(path: &Path) {
    use std::os::unix::fs::FileTypeExt;
    let is_socket = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_socket());
    if !is_socket {
        return;
    }
    let probe = tokio::time::timeout(Duration::from_secs(1), UnixStream::connect(path)).await;
    if let Ok(Err(e)) = probe {
        if e.kind() == io::ErrorKind::ConnectionRefused {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// Where a URL listens. "localhost" is 127.0.0.1, as Go's net.Listen picks.
async fn bind_addr(url: &ListenUrl, what: &str) -> Result<BindAddr, ListenError> {
    if url.scheme.is_unix() {
        let path = url
            .path
            .clone()
            .unwrap_or_else(|| PathBuf::from(url.host_port()));
        return Ok(BindAddr::Unix(path));
    }
    let ip = if url.host == "localhost" {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else if let Ok(ip) = url.host.parse::<IpAddr>() {
        ip
    } else {
        let fail = |reason: String| ListenError::Resolve {
            host: url.host.clone(),
            what: what.to_string(),
            url: url.original.clone(),
            reason,
        };
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((url.host.as_str(), url.port))
            .await
            .map_err(|e| fail(e.to_string()))?
            .collect();
        addrs
            .iter()
            .find(|a| a.is_ipv4())
            .or(addrs.first())
            .ok_or_else(|| fail("no addresses".into()))?
            .ip()
    };
    Ok(BindAddr::Tcp(SocketAddr::new(ip, url.port)))
}

/// Go's wording for the usual bind failures.
fn go_error_text(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::AddrInUse => "address already in use".into(),
        io::ErrorKind::AddrNotAvailable => "cannot assign requested address".into(),
        io::ErrorKind::PermissionDenied => "permission denied".into(),
        io::ErrorKind::NotFound => "no such file or directory".into(),
        _ => e.to_string(),
    }
}

// ---------------------------------------------------------------------------
// Accepting.

type Queue = mpsc::Sender<io::Result<Conn>>;

/// Go's http.Server backoff on accept errors (e.g. out of file descriptors).
struct Backoff(Duration);

impl Backoff {
    const MIN: Duration = Duration::from_millis(5);
    const MAX: Duration = Duration::from_secs(1);

    async fn wait(&mut self) {
        tokio::time::sleep(self.0).await;
        self.0 = (self.0 * 2).min(Self::MAX);
    }
}

async fn accept_tcp(
    listener: TcpListener,
    mode: Mode,
    acceptor: Option<TlsAcceptor>,
    tx: Queue,
    what: String,
) {
    let local = listener
        .local_addr()
        .map_or_else(|_| String::new(), |a| a.to_string());
    let mut backoff = Backoff(Backoff::MIN);
    loop {
        let accepted = tokio::select! {
            // The server dropped the stream: stop and close the socket.
            _ = tx.closed() => return,
            r = listener.accept() => r,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(%local, error = %e, "{what} listener: accept failed");
                backoff.wait().await;
                continue;
            }
        };
        backoff = Backoff(Backoff::MIN);
        // Go sets TCP_NODELAY on every connection; gRPC latency wants it.
        let _ = stream.set_nodelay(true);
        let info = ConnInfo {
            remote_addr: peer.to_string(),
            local_addr: local.clone(),
            ..ConnInfo::default()
        };
        let remote = info.remote_addr.clone();
        establish(
            &tx,
            &what,
            remote,
            tcp_conn(stream, info, mode, acceptor.clone()),
        );
    }
}

async fn accept_unix(
    socket: UnixSocket,
    mode: Mode,
    acceptor: Option<TlsAcceptor>,
    tx: Queue,
    what: String,
) {
    let local = socket.path.display().to_string();
    let mut backoff = Backoff(Backoff::MIN);
    loop {
        let accepted = tokio::select! {
            _ = tx.closed() => return,
            r = socket.listener.accept() => r,
        };
        let stream = match accepted {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(%local, error = %e, "{what} listener: accept failed");
                backoff.wait().await;
                continue;
            }
        };
        backoff = Backoff(Backoff::MIN);
        let info = ConnInfo {
            remote_addr: local.clone(),
            local_addr: local.clone(),
            ..ConnInfo::default()
        };
        let remote = info.remote_addr.clone();
        establish(
            &tx,
            &what,
            remote,
            unix_conn(stream, info, mode, acceptor.clone()),
        );
    }
}

/// Finishes a connection (sniff, handshake) in its own task and queues it.
/// A refused TLS handshake is logged as etcd logs it ("rejected connection",
/// with Go's words for the error), since it usually means a certificate set
/// up wrong; other failures are the client's business, logged at debug.
fn establish(
    tx: &Queue,
    what: &str,
    remote: String,
    conn: impl Future<Output = io::Result<Conn>> + Send + 'static,
) {
    let tx = tx.clone();
    let what = what.to_string();
    tokio::spawn(async move {
        match tokio::time::timeout(HANDSHAKE_TIMEOUT, conn).await {
            Ok(Ok(conn)) => {
                // Err only when the server is gone; the connection just drops.
                let _ = tx.send(Ok(conn)).await;
            }
            Ok(Err(e)) if is_tls_failure(&e) => tracing::warn!(
                remote_addr = %remote,
                error = %crate::tls::handshake_error_text(&e),
                "{what} listener: rejected connection"
            ),
            Ok(Err(e)) => tracing::debug!(error = %e, "{what} connection dropped"),
            Err(_) => tracing::debug!("{what} connection dropped: no TLS handshake in time"),
        }
    });
}

/// Whether rustls refused the handshake (as opposed to the socket failing).
fn is_tls_failure(e: &io::Error) -> bool {
    e.get_ref()
        .is_some_and(|inner| inner.downcast_ref::<rustls::Error>().is_some())
}

fn no_tls_config() -> io::Error {
    io::Error::other("TLS connection on a listener without TLS configuration")
}

async fn tcp_conn(
    stream: TcpStream,
    mut info: ConnInfo,
    mode: Mode,
    acceptor: Option<TlsAcceptor>,
) -> io::Result<Conn> {
    let tls = match mode {
        Mode::Plain => false,
        Mode::Tls => true,
        Mode::Sniff => {
            let mut first = [0u8; 1];
            if stream.peek(&mut first).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            first[0] == TLS_HANDSHAKE
        }
    };
    if !tls {
        return Ok(Conn {
            inner: Inner::Tcp(AuthorityFix::new(stream)),
            info,
        });
    }
    let tls = acceptor.ok_or_else(no_tls_config)?.accept(stream).await?;
    info.add_tls(tls.get_ref().1);
    Ok(Conn {
        inner: Inner::TcpTls(AuthorityFix::new(Box::new(tls))),
        info,
    })
}

async fn unix_conn(
    mut stream: UnixStream,
    mut info: ConnInfo,
    mode: Mode,
    acceptor: Option<TlsAcceptor>,
) -> io::Result<Conn> {
    // Unix streams cannot peek in tokio: read the byte and replay it.
    let (first, tls) = match mode {
        Mode::Plain => (None, false),
        Mode::Tls => (None, true),
        Mode::Sniff => {
            let mut b = [0u8; 1];
            if stream.read(&mut b).await? == 0 {
                return Err(io::ErrorKind::UnexpectedEof.into());
            }
            (Some(b[0]), b[0] == TLS_HANDSHAKE)
        }
    };
    let stream = Replay {
        first,
        inner: stream,
    };
    if !tls {
        return Ok(Conn {
            inner: Inner::Unix(AuthorityFix::new(stream)),
            info,
        });
    }
    let tls = acceptor.ok_or_else(no_tls_config)?.accept(stream).await?;
    info.add_tls(tls.get_ref().1);
    Ok(Conn {
        inner: Inner::UnixTls(AuthorityFix::new(Box::new(tls))),
        info,
    })
}

/// A stream that yields one already-read byte before its own data.
#[derive(Debug)]
struct Replay<S> {
    first: Option<u8>,
    inner: S,
}

impl<S: AsyncRead + Unpin> AsyncRead for Replay<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if buf.remaining() > 0 {
            if let Some(b) = self.first.take() {
                buf.put_slice(&[b]);
                return Poll::Ready(Ok(()));
            }
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

forward_async_write!(Replay);

// ---------------------------------------------------------------------------
// Connections.

/// What tonic puts in each request's extensions
/// (`req.extensions().get::<ConnInfo>()`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConnInfo {
    /// The client's "ip:port"; for unix sockets the socket path.
    pub remote_addr: String,
    /// The listening "ip:port" or socket path.
    pub local_addr: String,
    pub tls: bool,
    /// The client's certificate chain, leaf first, when it sent one.
    /// Shared: tonic clones this for every request.
    pub peer_certificates: Option<Arc<[CertificateDer<'static>]>>,
    /// The leaf certificate's subject CN: etcd's auth takes it as the user.
    pub common_name: Option<String>,
}

impl ConnInfo {
    fn add_tls(&mut self, session: &rustls::ServerConnection) {
        self.tls = true;
        if let Some(certs) = session.peer_certificates() {
            self.common_name = certs.first().and_then(crate::tls::common_name);
            let owned: Vec<CertificateDer<'static>> =
                certs.iter().map(|c| c.clone().into_owned()).collect();
            self.peer_certificates = Some(owned.into());
        }
    }
}

/// An accepted connection: plain or TLS, over TCP or a unix socket.
#[derive(Debug)]
pub struct Conn {
    inner: Inner,
    info: ConnInfo,
}

#[derive(Debug)]
enum Inner {
    Tcp(AuthorityFix<TcpStream>),
    TcpTls(AuthorityFix<Box<TlsStream<TcpStream>>>),
    Unix(AuthorityFix<Replay<UnixStream>>),
    UnixTls(AuthorityFix<Box<TlsStream<Replay<UnixStream>>>>),
}

/// Calls the same method on whichever stream is inside.
macro_rules! each {
    ($inner:expr, $s:ident => $body:expr) => {
        match $inner {
            Inner::Tcp($s) => $body,
            Inner::TcpTls($s) => $body,
            Inner::Unix($s) => $body,
            Inner::UnixTls($s) => $body,
        }
    };
}

impl AsyncRead for Conn {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        each!(&mut self.inner, s => Pin::new(s).poll_read(cx, buf))
    }
}

impl AsyncWrite for Conn {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        each!(&mut self.inner, s => Pin::new(s).poll_write(cx, buf))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(&mut self.inner, s => Pin::new(s).poll_flush(cx))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        each!(&mut self.inner, s => Pin::new(s).poll_shutdown(cx))
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        each!(&mut self.inner, s => Pin::new(s).poll_write_vectored(cx, bufs))
    }

    fn is_write_vectored(&self) -> bool {
        each!(&self.inner, s => s.is_write_vectored())
    }
}

impl tonic::transport::server::Connected for Conn {
    type ConnectInfo = ConnInfo;

    fn connect_info(&self) -> ConnInfo {
        self.info.clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{Scheme, TlsSettings};
    use crate::tls::test_pki::{client_config, pki};
    use rustls::pki_types::ServerName;
    use tokio::io::AsyncWriteExt;
    use tokio_stream::StreamExt;
    use tonic::transport::server::Connected;

    fn url(scheme: Scheme, host: &str, port: u16) -> ListenUrl {
        ListenUrl {
            scheme,
            host: host.to_string(),
            port,
            path: None,
            original: format!("{}://{host}:{port}", scheme.as_str()),
        }
    }

    fn unix_url(scheme: Scheme, path: &Path) -> ListenUrl {
        ListenUrl {
            scheme,
            host: String::new(),
            port: 0,
            path: Some(path.to_path_buf()),
            original: format!("{}://{}", scheme.as_str(), path.display()),
        }
    }

    async fn next(incoming: &mut (impl Stream<Item = io::Result<Conn>> + Unpin)) -> Conn {
        tokio::time::timeout(Duration::from_secs(10), incoming.next())
            .await
            .expect("a connection in time")
            .expect("stream open")
            .expect("no error items")
    }

    /// Client writes `msg`, the server side reads it (after `sent`, what the
    /// client wrote before) and answers "ok".
    async fn exchange<C>(server: &mut Conn, client: &mut C, sent: &[u8], msg: &[u8])
    where
        C: AsyncRead + AsyncWrite + Unpin,
    {
        client.write_all(msg).await.unwrap();
        client.flush().await.unwrap();
        let mut got = vec![0u8; sent.len() + msg.len()];
        server.read_exact(&mut got).await.unwrap();
        assert_eq!(got, [sent, msg].concat());
        server.write_all(b"ok").await.unwrap();
        server.flush().await.unwrap();
        let mut reply = [0u8; 2];
        client.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply, b"ok");
    }

    fn connector(ca: &Path, cert: Option<(&Path, &Path)>) -> tokio_rustls::TlsConnector {
        tokio_rustls::TlsConnector::from(client_config(ca, cert))
    }

    /// The server side of `p`'s certificates, no client certificates asked.
    fn server_tls(p: &crate::tls::test_pki::Pki) -> Option<Arc<rustls::ServerConfig>> {
        let settings = TlsSettings {
            cert_file: Some(p.server.0.clone()),
            key_file: Some(p.server.1.clone()),
            ..TlsSettings::default()
        };
        crate::tls::server_config(&settings, p.dir.path(), "client", &[]).unwrap()
    }

    fn localhost() -> ServerName<'static> {
        ServerName::try_from("localhost").unwrap()
    }

    #[tokio::test]
    async fn http_and_https_share_one_port() {
        let p = pki();
        let tls = server_tls(&p);
        let urls = [
            url(Scheme::Http, "127.0.0.1", 0),
            url(Scheme::Https, "127.0.0.1", 0),
        ];
        let listeners = bind(&urls, tls, "client").await.unwrap();
        let addrs = listeners.local_addrs();
        assert_eq!(addrs.len(), 1, "{addrs:?}");
        let addr = addrs[0].clone();
        let mut incoming = Box::pin(listeners.incoming());

        let mut plain = TcpStream::connect(&addr).await.unwrap();
        plain.write_all(b"P").await.unwrap();
        let mut conn = next(&mut incoming).await;
        assert!(!conn.connect_info().tls);
        assert_eq!(conn.connect_info().local_addr, addr);
        assert_eq!(
            conn.connect_info().remote_addr,
            plain.local_addr().unwrap().to_string()
        );
        exchange(&mut conn, &mut plain, b"P", b"RI plain").await;

        let tcp = TcpStream::connect(&addr).await.unwrap();
        let mut client = connector(&p.ca, None)
            .connect(localhost(), tcp)
            .await
            .unwrap();
        let mut conn = next(&mut incoming).await;
        assert!(conn.connect_info().tls);
        assert_eq!(conn.connect_info().peer_certificates, None);
        exchange(&mut conn, &mut client, b"", b"over TLS").await;
    }

    #[tokio::test]
    async fn tls_connections_carry_the_client_certificate() {
        let p = pki();
        let settings = TlsSettings {
            cert_file: Some(p.server.0.clone()),
            key_file: Some(p.server.1.clone()),
            trusted_ca_file: Some(p.ca.clone()),
            client_cert_auth: true,
            ..TlsSettings::default()
        };
        let tls = crate::tls::server_config(&settings, p.dir.path(), "client", &[]).unwrap();
        let listeners = bind(&[url(Scheme::Https, "localhost", 0)], tls, "client")
            .await
            .unwrap();
        let addr = listeners.local_addrs()[0].clone();
        assert!(addr.starts_with("127.0.0.1:"), "{addr}");
        let mut incoming = Box::pin(listeners.incoming());
        let tcp = TcpStream::connect(&addr).await.unwrap();
        let mut client = connector(&p.ca, Some((&p.client.0, &p.client.1)))
            .connect(localhost(), tcp)
            .await
            .unwrap();
        client.write_all(b"x").await.unwrap();
        let mut conn = next(&mut incoming).await;
        assert_eq!(conn.connect_info().common_name.as_deref(), Some("client"));
        assert_eq!(
            conn.connect_info()
                .peer_certificates
                .as_ref()
                .map(|c| c.len()),
            Some(1)
        );
        exchange(&mut conn, &mut client, b"x", b"y").await;
    }

    #[tokio::test]
    async fn broken_and_slow_tls_clients_do_not_block_others() {
        let p = pki();
        let tls = server_tls(&p);
        let listeners = bind(&[url(Scheme::Https, "127.0.0.1", 0)], tls, "client")
            .await
            .unwrap();
        let addr = listeners.local_addrs()[0].clone();
        let mut incoming = Box::pin(listeners.incoming());

        // Plain HTTP to a TLS-only port: its handshake fails.
        let mut broken = TcpStream::connect(&addr).await.unwrap();
        broken.write_all(b"GET / HTTP/1.1\r\n\r\n").await.unwrap();
        // Connects and says nothing: its handshake would wait 10 s.
        let _silent = TcpStream::connect(&addr).await.unwrap();
        // A client whose certificate check fails on its side.
        let stranger_ca = crate::tls::test_pki::Ca::new("elsewhere");
        let other_ca =
            crate::tls::test_pki::write(p.dir.path(), "x.crt", &stranger_ca.issuer.pem());
        let tcp = TcpStream::connect(&addr).await.unwrap();
        assert!(connector(&other_ca, None)
            .connect(localhost(), tcp)
            .await
            .is_err());

        let tcp = TcpStream::connect(&addr).await.unwrap();
        let mut good = connector(&p.ca, None)
            .connect(localhost(), tcp)
            .await
            .unwrap();
        let mut conn = next(&mut incoming).await;
        exchange(&mut conn, &mut good, b"", b"still serving").await;
    }

    #[tokio::test]
    async fn unix_sockets_plain_and_tls_on_one_path() {
        let p = pki();
        let tls = server_tls(&p);
        let sock = p.dir.path().join("localhost:2379");
        let urls = [
            unix_url(Scheme::Unix, &sock),
            unix_url(Scheme::Unixs, &sock),
        ];
        let listeners = bind(&urls, tls, "client").await.unwrap();
        assert_eq!(listeners.local_addrs(), vec![sock.display().to_string()]);
        let mut incoming = Box::pin(listeners.incoming());

        let mut plain = UnixStream::connect(&sock).await.unwrap();
        plain.write_all(b"h").await.unwrap();
        let mut conn = next(&mut incoming).await;
        assert!(!conn.connect_info().tls);
        // The sniffed first byte is read again first.
        exchange(&mut conn, &mut plain, b"h", b"ello").await;

        let stream = UnixStream::connect(&sock).await.unwrap();
        let mut client = connector(&p.ca, None)
            .connect(localhost(), stream)
            .await
            .unwrap();
        let mut conn = next(&mut incoming).await;
        assert!(conn.connect_info().tls);
        exchange(&mut conn, &mut client, b"", b"unixs").await;

        // Dropping the stream closes the listener and removes its file.
        drop(incoming);
        for _ in 0..100 {
            if !sock.exists() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert!(!sock.exists());
    }

    #[tokio::test]
    async fn plain_unix_socket_and_stale_file() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("etcd.sock");
        // A socket file left behind by a killed server.
        drop(std::os::unix::net::UnixListener::bind(&sock).unwrap());
        assert!(sock.exists());
        let listeners = bind(&[unix_url(Scheme::Unix, &sock)], None, "client")
            .await
            .unwrap();
        let mut incoming = Box::pin(listeners.incoming());
        let mut client = UnixStream::connect(&sock).await.unwrap();
        let mut conn = next(&mut incoming).await;
        exchange(&mut conn, &mut client, b"", b"plain unix").await;
        // A live socket is not taken over.
        let e = bind(&[unix_url(Scheme::Unix, &sock)], None, "client")
            .await
            .unwrap_err();
        assert!(e.to_string().contains("address already in use"), "{e}");
    }

    #[tokio::test]
    async fn https_needs_a_tls_config() {
        let e = bind(&[url(Scheme::Https, "127.0.0.1", 0)], None, "client")
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "TLS key/cert (--cert-file, --key-file) must be provided for client url https://127.0.0.1:0 with HTTPS scheme"
        );
    }

    #[tokio::test]
    async fn bind_errors_read_like_go() {
        let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = taken.local_addr().unwrap().port();
        let e = bind(&[url(Scheme::Http, "localhost", port)], None, "client")
            .await
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            format!(
                "listen tcp 127.0.0.1:{port}: bind: address already in use (client url http://localhost:{port})"
            )
        );
    }

    /// tonic serves gRPC over these connections (an unknown method answers
    /// UNIMPLEMENTED), here on a port that also takes TLS.
    #[tokio::test]
    async fn tonic_serves_the_incoming_stream() {
        use tonic::codegen::Service;
        let p = pki();
        let tls = server_tls(&p);
        let urls = [
            url(Scheme::Http, "127.0.0.1", 0),
            url(Scheme::Https, "127.0.0.1", 0),
        ];
        let listeners = bind(&urls, tls, "client").await.unwrap();
        let addr = listeners.local_addrs()[0].clone();
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let server = tokio::spawn(
            tonic::transport::Server::builder()
                .add_routes(tonic::service::Routes::default())
                .serve_with_incoming_shutdown(listeners.incoming(), async {
                    let _ = stopped.await;
                }),
        );
        let mut channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
            .unwrap()
            .connect()
            .await
            .unwrap();
        let request = tonic::codegen::http::Request::builder()
            .method("POST")
            .uri(format!("http://{addr}/etcdserverpb.KV/Range"))
            .header("content-type", "application/grpc")
            .header("te", "trailers")
            .body(tonic::body::Body::empty())
            .unwrap();
        std::future::poll_fn(|cx| channel.poll_ready(cx))
            .await
            .unwrap();
        let response = channel.call(request).await.unwrap();
        let status = response
            .headers()
            .get("grpc-status")
            .map(|v| v.as_bytes().to_vec());
        assert_eq!(status.as_deref(), Some(&b"12"[..]));
        let _ = stop.send(());
        server.await.unwrap().unwrap();
    }
}
