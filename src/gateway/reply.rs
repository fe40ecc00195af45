//! HTTP responses of the gateway, shaped as etcd 3.4's grpc-gateway (v1)
//! writes them: the message as JSON, gRPC errors as
//! `{"error": msg, "message": msg, "code": N}` with the HTTP status its
//! runtime maps the code to, and on streams one `{"result": ...}` or
//! `{"error": {...}}` object per line.

use axum::body::Body;
use axum::http::{header, HeaderMap, HeaderName, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use tonic::metadata::MetadataMap;
use tonic::{Code, Status};

const JSON: &str = "application/json";
/// gRPC response headers reach HTTP clients under this prefix.
const METADATA_PREFIX: &str = "grpc-metadata-";

/// The HTTP status grpc-gateway v1's `HTTPStatusFromCode` gives a gRPC code
/// (note FailedPrecondition is 412 there, OutOfRange 400).
pub fn http_status(code: Code) -> StatusCode {
    match code {
        Code::Ok => StatusCode::OK,
        Code::Cancelled => StatusCode::REQUEST_TIMEOUT,
        Code::InvalidArgument | Code::OutOfRange => StatusCode::BAD_REQUEST,
        Code::DeadlineExceeded => StatusCode::GATEWAY_TIMEOUT,
        Code::NotFound => StatusCode::NOT_FOUND,
        Code::AlreadyExists | Code::Aborted => StatusCode::CONFLICT,
        Code::PermissionDenied => StatusCode::FORBIDDEN,
        Code::Unauthenticated => StatusCode::UNAUTHORIZED,
        Code::ResourceExhausted => StatusCode::TOO_MANY_REQUESTS,
        Code::FailedPrecondition => StatusCode::PRECONDITION_FAILED,
        Code::Unimplemented => StatusCode::NOT_IMPLEMENTED,
        Code::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
        Code::Unknown | Code::Internal | Code::DataLoss => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

/// grpc-gateway's errorBody; field order as etcd's clients see it.
#[derive(Serialize)]
struct ErrorBody<'a> {
    error: &'a str,
    message: &'a str,
    code: i32,
}

/// grpc-gateway's StreamError (jsonpb: zero values left out).
#[derive(Serialize)]
struct StreamError<'a> {
    #[serde(skip_serializing_if = "is_zero")]
    grpc_code: i32,
    http_code: u16,
    #[serde(skip_serializing_if = "str::is_empty")]
    message: &'a str,
    http_status: &'a str,
}

fn is_zero(n: &i32) -> bool {
    *n == 0
}

#[derive(Serialize)]
enum Chunk<'a, T> {
    #[serde(rename = "result")]
    Result(&'a T),
    #[serde(rename = "error")]
    Error(StreamError<'a>),
}

/// A failed call (or a request that never became one).
pub fn error(status: &Status) -> Response {
    let body = ErrorBody {
        error: status.message(),
        message: status.message(),
        code: status.code() as i32,
    };
    json_response(http_status(status.code()), HeaderMap::new(), to_json(&body))
}

/// A unary call's answer.
pub fn message<T: Serialize>(metadata: &MetadataMap, message: &T) -> Response {
    json_response(StatusCode::OK, forwarded(metadata), to_json(message))
}

/// Headers of a streamed answer; its body is made of [`result_line`]s.
pub fn stream(status: StatusCode, metadata: &MetadataMap, body: Body) -> Response {
    let mut headers = forwarded(metadata);
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    (status, headers, body).into_response()
}

/// One message of a stream: `{"result": ...}` and the line delimiter.
pub fn result_line<T: Serialize>(message: &T) -> Vec<u8> {
    line(&Chunk::Result(message))
}

/// The error that ends a stream: `{"error": {...}}` (no delimiter after it).
pub fn error_chunk(status: &Status) -> Vec<u8> {
    let http = http_status(status.code());
    let chunk: Chunk<'_, ()> = Chunk::Error(StreamError {
        grpc_code: status.code() as i32,
        http_code: http.as_u16(),
        message: status.message(),
        http_status: http.canonical_reason().unwrap_or_default(),
    });
    to_json(&chunk)
}

fn line<T: Serialize>(value: &T) -> Vec<u8> {
    let mut out = to_json(value);
    out.push(b'\n');
    out
}

/// Messages and the bodies above always serialize: no maps with non-string
/// keys, no floats; a failure would be a bug in generated code.
fn to_json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).unwrap_or_else(|e| {
        tracing::error!(error = %e, "cannot write a gateway response as JSON");
        br#"{"error": "failed to marshal error message"}"#.to_vec()
    })
}

fn json_response(status: StatusCode, mut headers: HeaderMap, body: Vec<u8>) -> Response {
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON));
    (status, headers, body).into_response()
}

/// The call's response headers as `Grpc-Metadata-*` headers, as the gateway
/// forwards them; gRPC's own protocol headers (`grpc-*`) stay behind.
fn forwarded(metadata: &MetadataMap) -> HeaderMap {
    let mut headers = HeaderMap::new();
    for (name, value) in metadata.clone().into_headers() {
        let Some(name) = name else { continue };
        if name.as_str().starts_with("grpc-") {
            continue;
        }
        let Ok(forwarded) = HeaderName::try_from(format!("{METADATA_PREFIX}{name}")) else {
            continue;
        };
        headers.append(forwarded, value);
    }
    headers
}

#[cfg(test)]
mod tests {
    use super::*;
    use oxetcd_proto::etcdserverpb::{LeaseGrantResponse, ResponseHeader};

    async fn body_text(response: Response) -> String {
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[tokio::test]
    async fn errors_have_grpc_gateways_shape_and_status() {
        let response = error(&Status::unknown("\"leader\" field must be provided"));
        assert_eq!(response.status(), StatusCode::INTERNAL_SERVER_ERROR);
        assert_eq!(response.headers()[header::CONTENT_TYPE], JSON);
        assert_eq!(
            body_text(response).await,
            r#"{"error":"\"leader\" field must be provided","message":"\"leader\" field must be provided","code":2}"#
        );
        let response = error(&Status::not_found("etcdserver: requested lease not found"));
        assert_eq!(response.status(), StatusCode::NOT_FOUND);
    }

    #[test]
    fn codes_map_as_in_etcd_3_4() {
        assert_eq!(http_status(Code::InvalidArgument), 400);
        assert_eq!(http_status(Code::OutOfRange), 400);
        assert_eq!(http_status(Code::FailedPrecondition), 412);
        assert_eq!(http_status(Code::NotFound), 404);
        assert_eq!(http_status(Code::Unavailable), 503);
        assert_eq!(http_status(Code::Unimplemented), 501);
        assert_eq!(http_status(Code::ResourceExhausted), 429);
    }

    #[tokio::test]
    async fn messages_use_proto_names_and_forward_metadata() {
        let mut metadata = MetadataMap::new();
        metadata.insert("content-type", "application/grpc".parse().unwrap());
        metadata.insert("grpc-status", "0".parse().unwrap());
        let response = message(
            &metadata,
            &LeaseGrantResponse {
                header: Some(ResponseHeader {
                    revision: 4,
                    ..Default::default()
                }),
                id: 1234,
                ttl: 20,
                error: String::new(),
            },
        );
        assert_eq!(response.status(), StatusCode::OK);
        assert_eq!(
            response.headers()["grpc-metadata-content-type"],
            "application/grpc"
        );
        assert!(response
            .headers()
            .get("grpc-metadata-grpc-status")
            .is_none());
        assert_eq!(
            body_text(response).await,
            r#"{"header":{"revision":"4"},"ID":"1234","TTL":"20"}"#
        );
    }

    #[test]
    fn stream_lines_wrap_results_and_errors() {
        let header = ResponseHeader {
            raft_term: 2,
            ..Default::default()
        };
        assert_eq!(
            String::from_utf8(result_line(&header)).unwrap(),
            "{\"result\":{\"raft_term\":\"2\"}}\n"
        );
        assert_eq!(
            String::from_utf8(error_chunk(&Status::out_of_range("compacted"))).unwrap(),
            r#"{"error":{"grpc_code":11,"http_code":400,"message":"compacted","http_status":"Bad Request"}}"#
        );
    }
}
