//! The connection the gRPC clients send through: a member's channel that,
//! with auth, puts the member's token in the `token` metadata header of
//! every request (as etcd's clients do), authenticating first when there is
//! no token, and drops the token when the answer refuses it as stale.
//!
//! Errors are read from the response headers: both servers answer a failed
//! call before any message as a trailers-only response, whose headers hold
//! `grpc-status` and `grpc-message`.

use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::codegen::http::{HeaderValue, Request, Response};
use tonic::codegen::{BoxFuture, Service, StdError};
use tonic::transport::Channel;

use super::refusal;
use super::tokens::MemberToken;

/// gRPC metadata key of etcd's tokens.
const TOKEN_HEADER: &str = "token";

#[derive(Clone)]
pub struct AuthedChannel {
    inner: Channel,
    token: Option<Arc<MemberToken>>,
}

impl AuthedChannel {
    /// Sends requests as they are (auth is off).
    pub fn plain(inner: Channel) -> AuthedChannel {
        AuthedChannel { inner, token: None }
    }

    pub fn with_token(inner: Channel, token: Arc<MemberToken>) -> AuthedChannel {
        AuthedChannel {
            inner,
            token: Some(token),
        }
    }
}

impl Service<Request<Body>> for AuthedChannel {
    type Response = Response<Body>;
    type Error = StdError;
    type Future = BoxFuture<Response<Body>, StdError>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), StdError>> {
        self.inner.poll_ready(cx).map_err(Into::into)
    }

    fn call(&mut self, mut request: Request<Body>) -> Self::Future {
        // The channel made ready by poll_ready goes with this call; a clone
        // stays for the next one (tower's rule for cloned services).
        let fresh = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, fresh);
        let Some(member_token) = self.token.clone() else {
            return Box::pin(async move { inner.call(request).await.map_err(Into::into) });
        };
        Box::pin(async move {
            let token = member_token.get().await?;
            let value = HeaderValue::from_str(&token.value).map_err(|_| {
                tonic::Status::internal(format!(
                    "{} the token is not a header value",
                    super::tokens::NOT_SENT
                ))
            })?;
            request.headers_mut().insert(TOKEN_HEADER, value);
            let response = inner.call(request).await?;
            if let Some(status) = tonic::Status::from_header_map(response.headers()) {
                if let Some(reason) = refusal::stale_token(status.message()) {
                    member_token.refused(&token, reason);
                }
            }
            Ok(response)
        })
    }
}
