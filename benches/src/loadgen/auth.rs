//! `--user NAME:PASSWORD`: running against a server with auth enabled, as
//! etcd's clients do. Each connection authenticates once before the run
//! ([`Session::start`]) and every request on it carries the token in the
//! `token` gRPC metadata header ([`Conn`]). A unary request the server
//! refuses because of its token ("invalid auth token": expired or unknown;
//! "revision of auth store is old") makes the connection authenticate again
//! and the request go once more with the new token, as clientv3's
//! interceptor does; only if that fails too is the request counted as failed.
//!
//! Client-streaming calls (Watch, LeaseKeepAlive) carry the token but are
//! not replayed: their request bodies never end, so they cannot be kept for
//! a second try. A rejected stream still renews the token, so the workload's
//! re-opened stream carries the new one.
//!
//! The rejection is read from the response's headers: servers (tonic's,
//! grpc-go's) answer a request they refuse before any message with the
//! status in the headers ("trailers-only").

use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use http_body_util::{BodyExt, Full};
use oxetcd_proto::etcdserverpb::auth_client::AuthClient;
use oxetcd_proto::etcdserverpb::AuthenticateRequest;
use tonic::body::Body;
use tonic::codegen::http::{self, HeaderValue};
use tonic::codegen::{Service, StdError};
use tonic::transport::Channel;
use tonic::{Code, Status};

use super::error::OpError;
use super::requests::call;

/// The gRPC metadata key etcd reads the token from.
pub const TOKEN_HEADER: &str = "token";

/// Client-streaming methods: their requests are sent as they come and cannot
/// be replayed.
const STREAMING_PATHS: [&str; 2] = [
    "/etcdserverpb.Watch/Watch",
    "/etcdserverpb.Lease/LeaseKeepAlive",
];

/// A user name and its password, from `--user NAME:PASSWORD` (etcdctl's
/// form: the password is everything after the first colon).
#[derive(Clone, PartialEq, Eq)]
pub struct Credentials {
    pub name: String,
    pub password: String,
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the password: summaries and errors print options.
        write!(f, "Credentials({:?})", self.name)
    }
}

impl FromStr for Credentials {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        match text.split_once(':') {
            Some((name, password)) if !name.is_empty() => Ok(Credentials {
                name: name.to_owned(),
                password: password.to_owned(),
            }),
            _ => Err("want NAME:PASSWORD".to_owned()),
        }
    }
}

impl Credentials {
    /// One Authenticate call on `channel`; the token.
    pub async fn authenticate(
        &self,
        channel: Channel,
        timeout: Duration,
    ) -> Result<String, OpError> {
        let request = AuthenticateRequest {
            name: self.name.clone(),
            password: self.password.clone(),
        };
        let answer = call(timeout, AuthClient::new(channel).authenticate(request)).await?;
        if answer.token.is_empty() {
            return Err(OpError::Unexpected(
                "Authenticate answered without a token".into(),
            ));
        }
        Ok(answer.token)
    }
}

/// Whether `status` refuses the request's token (so a new one may pass):
/// etcd's ErrInvalidAuthToken and ErrAuthOldRevision.
pub fn token_rejected(status: &Status) -> bool {
    match status.code() {
        Code::Unauthenticated => status.message().contains("invalid auth token"),
        Code::InvalidArgument => status.message().contains("revision of auth store is old"),
        _ => false,
    }
}

/// The token in use on a connection and how many times it was renewed.
struct Token {
    header: HeaderValue,
    generation: u64,
}

/// One connection's login: the credentials and the current token.
pub struct Session {
    channel: Channel,
    credentials: Credentials,
    timeout: Duration,
    token: tokio::sync::RwLock<Token>,
    /// Logins after the first (tokens refused during the run).
    renewals: AtomicU64,
}

impl Session {
    /// Authenticates on `channel` now.
    pub async fn start(
        channel: Channel,
        credentials: Credentials,
        timeout: Duration,
    ) -> Result<Session, OpError> {
        let header = token_header(credentials.authenticate(channel.clone(), timeout).await?)?;
        Ok(Session {
            channel,
            credentials,
            timeout,
            token: tokio::sync::RwLock::new(Token {
                header,
                generation: 0,
            }),
            renewals: AtomicU64::new(0),
        })
    }

    async fn current(&self) -> (HeaderValue, u64) {
        let token = self.token.read().await;
        (token.header.clone(), token.generation)
    }

    /// Authenticates again, unless another request already did since the
    /// token of generation `stale` was refused.
    async fn renew(&self, stale: u64) -> Result<(), OpError> {
        let mut token = self.token.write().await;
        if token.generation != stale {
            return Ok(());
        }
        let fresh = self
            .credentials
            .authenticate(self.channel.clone(), self.timeout)
            .await?;
        *token = Token {
            header: token_header(fresh)?,
            generation: stale + 1,
        };
        self.renewals.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// How many times the token was renewed.
    pub fn renewals(&self) -> u64 {
        self.renewals.load(Ordering::Relaxed)
    }
}

fn token_header(token: String) -> Result<HeaderValue, OpError> {
    HeaderValue::from_str(&token)
        .map_err(|_| OpError::Unexpected("Authenticate answered a token that is no header".into()))
}

/// A connection as the workloads use it: the channel, and with `--user` the
/// session whose token every request carries.
#[derive(Clone)]
pub struct Conn {
    channel: Channel,
    session: Option<Arc<Session>>,
}

impl Conn {
    pub fn new(channel: Channel, session: Option<Arc<Session>>) -> Conn {
        Conn { channel, session }
    }

    /// Its session's token renewals (0 without `--user`).
    pub fn token_renewals(&self) -> u64 {
        self.session.as_ref().map_or(0, |s| s.renewals())
    }
}

type ResponseFuture =
    Pin<Box<dyn Future<Output = Result<http::Response<Body>, StdError>> + Send + 'static>>;

impl Service<http::Request<Body>> for Conn {
    type Response = http::Response<Body>;
    type Error = StdError;
    type Future = ResponseFuture;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.channel.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        // The channel polled ready is the one that must take this request.
        let fresh = self.channel.clone();
        let mut channel = std::mem::replace(&mut self.channel, fresh);
        let Some(session) = self.session.clone() else {
            let sent = channel.call(request);
            return Box::pin(async move { sent.await.map_err(Into::into) });
        };
        Box::pin(send_with_token(channel, session, request))
    }
}

/// Sends `request` with the session's token; a unary request whose token is
/// refused goes once more after the session authenticated again.
async fn send_with_token(
    mut channel: Channel,
    session: Arc<Session>,
    request: http::Request<Body>,
) -> Result<http::Response<Body>, StdError> {
    let (token, generation) = session.current().await;
    if STREAMING_PATHS.contains(&request.uri().path()) {
        let response = send(&mut channel, request, token, false).await?;
        if refused(&response) {
            // Nothing to replay; the next stream gets the new token.
            let _ = session.renew(generation).await;
        }
        return Ok(response);
    }
    let (parts, body) = request.into_parts();
    let body = body.collect().await.map_err(StdError::from)?.to_bytes();
    let replay = |token| {
        let request = http::Request::from_parts(parts.clone(), Body::new(Full::new(body.clone())));
        (request, token)
    };
    let (first, token) = replay(token);
    let response = send(&mut channel, first, token, false).await?;
    if !refused(&response) {
        return Ok(response);
    }
    if let Err(error) = session.renew(generation).await {
        let status = Status::unauthenticated(format!(
            "token refused, and authenticating again as {:?} failed: {error}",
            session.credentials.name
        ));
        return Ok(status.into_http());
    }
    let (token, _) = session.current().await;
    let (second, token) = replay(token);
    send(&mut channel, second, token, true).await
}

/// Sends `request` with `token` on `channel` (`ready_again`: the channel
/// already took a request, so wait until it can take another).
async fn send(
    channel: &mut Channel,
    mut request: http::Request<Body>,
    token: HeaderValue,
    ready_again: bool,
) -> Result<http::Response<Body>, StdError> {
    request.headers_mut().insert(TOKEN_HEADER, token);
    if ready_again {
        poll_fn(|cx| channel.poll_ready(cx)).await?;
    }
    Ok(channel.call(request).await?)
}

/// Whether the response is a refusal of the token (a status in the headers).
fn refused<B>(response: &http::Response<B>) -> bool {
    Status::from_header_map(response.headers()).is_some_and(|status| token_rejected(&status))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn credentials_parse_like_etcdctls_user_flag() {
        let c: Credentials = "bench:pa:ss".parse().unwrap();
        assert_eq!((c.name.as_str(), c.password.as_str()), ("bench", "pa:ss"));
        assert!(
            !format!("{c:?}").contains("pa:ss"),
            "no password in debug output"
        );
        let c: Credentials = "root:".parse().unwrap();
        assert_eq!(c.password, "");
        assert!("nopassword".parse::<Credentials>().is_err());
        assert!(":pw".parse::<Credentials>().is_err());
    }

    #[test]
    fn only_token_refusals_renew_the_token() {
        assert!(token_rejected(&Status::unauthenticated(
            "etcdserver: invalid auth token"
        )));
        assert!(token_rejected(&Status::invalid_argument(
            "etcdserver: revision of auth store is old"
        )));
        assert!(!token_rejected(&Status::permission_denied(
            "etcdserver: permission denied"
        )));
        assert!(!token_rejected(&Status::invalid_argument(
            "etcdserver: authentication failed, invalid user ID or password"
        )));
    }
}
