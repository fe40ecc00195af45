//! JSON over HTTP to the apiserver: a set of connections (hyper-util's
//! pooled client over hyper-rustls, HTTP/2 where ALPN agrees on it, else
//! HTTP/1.1), each request with the bearer token, a timeout, and any
//! non-2xx answer turned into [`OpError::Http`] with the message of the
//! Kubernetes `Status` it carried.
//!
//! One [`Conn`] is one hyper client: over HTTP/2 it holds one connection and
//! multiplexes every request on it; over HTTP/1.1 it opens a connection per
//! request in flight and keeps them for reuse.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ACCEPT, AUTHORIZATION, CONTENT_TYPE};
use hyper::{Method, Request, Response, StatusCode};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde_json::Value;

use super::kubeconfig::Target;
use crate::loadgen::connect::error_chain;
use crate::loadgen::error::{BenchError, OpError};

type HyperClient = Client<HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Merge patch, as `kubectl patch --type merge` sends.
pub const MERGE_PATCH: &str = "application/merge-patch+json";
const JSON: &str = "application/json";

/// What every request shares: the server and the credentials.
#[derive(Debug)]
struct Shared {
    server: String,
    authorization: Option<HeaderValue>,
    timeout: Duration,
}

/// One client of the apiserver (see the module doc). Cheap to clone.
#[derive(Clone)]
pub struct Conn {
    client: HyperClient,
    shared: Arc<Shared>,
}

/// Builds connections to one apiserver.
pub struct Connector {
    https: HttpsConnector<HttpConnector>,
    shared: Arc<Shared>,
}

impl Connector {
    pub fn new(
        target: &Target,
        timeout: Duration,
        dial_timeout: Duration,
    ) -> Result<Connector, BenchError> {
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_nodelay(true);
        http.set_connect_timeout(Some(dial_timeout));
        let mut tls = (*oxetcd_tls::client_config(&target.tls)?).clone();
        // HTTP/2 and HTTP/1.1 offered (kube-apiserver and oxetcd-apiserver
        // pick h2; `kubectl proxy` speaks HTTP/1.1 only): hyper-rustls sets
        // the ALPN list itself, and refuses a config with one (oxetcd-tls
        // offers h2, for gRPC).
        tls.alpn_protocols.clear();
        let https = HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_all_versions()
            .wrap_connector(http);
        let authorization =
            match &target.token {
                Some(token) => Some(HeaderValue::from_str(&format!("Bearer {token}")).map_err(
                    |_| BenchError::Usage("the token is not a valid header value".into()),
                )?),
                None => None,
            };
        Ok(Connector {
            https,
            shared: Arc::new(Shared {
                server: target.server.clone(),
                authorization,
                timeout,
            }),
        })
    }

    /// A new client, with connections of its own.
    pub fn conn(&self) -> Conn {
        let client = Client::builder(TokioExecutor::new())
            // Watches stay open for the whole run; HTTP/1.1 connections of
            // finished requests are kept for the next ones.
            .pool_idle_timeout(Duration::from_secs(90))
            .build(self.https.clone());
        Conn {
            client,
            shared: self.shared.clone(),
        }
    }
}

/// A request's answer: 2xx, its body parsed.
pub type Answer = Result<Value, OpError>;

impl Conn {
    fn request(
        &self,
        method: Method,
        path_and_query: &str,
        content_type: &str,
        body: Bytes,
    ) -> Result<Request<Full<Bytes>>, OpError> {
        let mut request = Request::builder()
            .method(method)
            .uri(format!("{}{path_and_query}", self.shared.server))
            .header(ACCEPT, JSON);
        if !body.is_empty() {
            request = request.header(CONTENT_TYPE, content_type);
        }
        if let Some(auth) = &self.shared.authorization {
            request = request.header(AUTHORIZATION, auth.clone());
        }
        request
            .body(Full::new(body))
            .map_err(|e| OpError::Unexpected(format!("building the request: {e}")))
    }

    /// Sends a request and waits for its headers (not the body).
    pub async fn send(
        &self,
        method: Method,
        path_and_query: &str,
        content_type: &str,
        body: Bytes,
    ) -> Result<Response<Incoming>, OpError> {
        let request = self.request(method, path_and_query, content_type, body)?;
        let timeout = self.shared.timeout;
        match tokio::time::timeout(timeout, self.client.request(request)).await {
            Err(_) => Err(OpError::Timeout(timeout)),
            Ok(Err(e)) => Err(OpError::Transport(error_chain(&e))),
            Ok(Ok(response)) => Ok(response),
        }
    }

    /// Sends a request and reads the whole JSON answer (the time limit
    /// covers both).
    pub async fn call(
        &self,
        method: Method,
        path_and_query: &str,
        content_type: &str,
        body: Bytes,
    ) -> Answer {
        let bytes = self
            .exchange(method, path_and_query, content_type, body)
            .await?;
        serde_json::from_slice(&bytes)
            .map_err(|e| OpError::Unexpected(format!("answer is not JSON: {e}")))
    }

    /// Sends a request and reads the whole body of a 2xx answer (the time
    /// limit covers both).
    async fn exchange(
        &self,
        method: Method,
        path_and_query: &str,
        content_type: &str,
        body: Bytes,
    ) -> Result<Bytes, OpError> {
        let timeout = self.shared.timeout;
        let exchange = async {
            let response = self
                .send(method, path_and_query, content_type, body)
                .await?;
            let status = response.status();
            let bytes = response
                .into_body()
                .collect()
                .await
                .map_err(|e| OpError::Transport(error_chain(&e)))?
                .to_bytes();
            if !status.is_success() {
                return Err(http_error(status, &bytes));
            }
            Ok(bytes)
        };
        tokio::time::timeout(timeout, exchange)
            .await
            .unwrap_or(Err(OpError::Timeout(timeout)))
    }

    pub async fn get(&self, path_and_query: &str) -> Answer {
        self.call(Method::GET, path_and_query, JSON, Bytes::new())
            .await
    }

    /// GETs a list and reads only its item count and continue token, on a
    /// blocking thread: a list of 100,000 pods is hundreds of MB, and
    /// building it as a `Value` on the runtime's threads would delay every
    /// other request this client times (and take GBs of memory).
    pub async fn get_list(&self, path_and_query: &str) -> Result<ListSummary, OpError> {
        let bytes = self
            .exchange(Method::GET, path_and_query, JSON, Bytes::new())
            .await?;
        tokio::task::spawn_blocking(move || ListSummary::parse(&bytes))
            .await
            .map_err(|e| OpError::Unexpected(format!("parsing the list: {e}")))?
    }
}

/// What a list answer's reader needs: how many items, and where to go on.
#[derive(Debug, PartialEq)]
pub struct ListSummary {
    pub items: u64,
    pub continue_token: Option<String>,
}

impl ListSummary {
    /// Checks that the body is a JSON list (every item parsed, none kept).
    fn parse(body: &[u8]) -> Result<ListSummary, OpError> {
        #[derive(serde::Deserialize)]
        struct Meta {
            #[serde(default, rename = "continue")]
            continue_token: Option<String>,
        }
        #[derive(serde::Deserialize)]
        struct List {
            #[serde(default)]
            metadata: Option<Meta>,
            items: Option<Vec<serde::de::IgnoredAny>>,
        }
        let list: List = serde_json::from_slice(body)
            .map_err(|e| OpError::Unexpected(format!("answer is not JSON: {e}")))?;
        let items = list
            .items
            .ok_or_else(|| OpError::Unexpected("list without items".into()))?;
        Ok(ListSummary {
            items: items.len() as u64,
            continue_token: list
                .metadata
                .and_then(|m| m.continue_token)
                .filter(|t| !t.is_empty()),
        })
    }
}

/// The error of a non-2xx answer: its code, and the `message` of the
/// Kubernetes `Status` in the body (else the body's start).
pub fn http_error(status: StatusCode, body: &[u8]) -> OpError {
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v.get("message").and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body).into_owned());
    OpError::Http {
        status: status.as_u16(),
        message,
    }
}

/// `text` escaped for a query string.
pub fn query_escape(text: &str) -> String {
    form_urlencoded::byte_serialize(text.as_bytes()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_messages_become_the_error() {
        let e = http_error(
            StatusCode::CONFLICT,
            br#"{"kind":"Status","message":"the object has been modified","code":409}"#,
        );
        assert_eq!(e.code(), "HTTP 409");
        assert_eq!(e.message(), "the object has been modified");
        let e = http_error(StatusCode::BAD_GATEWAY, b"upstream down");
        assert_eq!(
            (e.code().as_str(), e.message().as_str()),
            ("HTTP 502", "upstream down")
        );
    }

    #[test]
    fn lists_are_summarised_without_keeping_items() {
        let body = br#"{"kind":"PodList","metadata":{"resourceVersion":"7","continue":"abc"},
            "items":[{"metadata":{"name":"a"}},{"metadata":{"name":"b"}}]}"#;
        assert_eq!(
            ListSummary::parse(body).unwrap(),
            ListSummary {
                items: 2,
                continue_token: Some("abc".into())
            }
        );
        let last = br#"{"metadata":{"continue":""},"items":[]}"#;
        assert_eq!(ListSummary::parse(last).unwrap().continue_token, None);
        assert!(ListSummary::parse(br#"{"metadata":{}}"#).is_err());
        assert!(ListSummary::parse(br#"{"items":[{"a":1},"#).is_err());
    }

    #[test]
    fn selectors_are_escaped() {
        assert_eq!(query_escape("spec.nodeName=n-1"), "spec.nodeName%3Dn-1");
    }
}
