//! etcd's plain HTTP endpoints on the client port, beside gRPC.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;

use support::Server;

/// A minimal HTTP/1.1 GET (no client crate needed): status code and body.
fn get(endpoint: &str, path: &str) -> (u16, String) {
    let addr = endpoint.trim_start_matches("http://");
    let mut conn = TcpStream::connect(addr).expect("connect");
    write!(
        conn,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("send");
    let mut raw = String::new();
    conn.read_to_string(&mut raw).expect("read");
    let status = raw
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let body = raw
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default();
    (status, body)
}

#[tokio::test]
async fn health_and_version_answer_over_http_on_the_grpc_port() {
    let server = Server::start();
    let (status, body) = get(&server.endpoint(), "/health");
    assert_eq!(status, 200);
    assert!(body.contains(r#""health":"true""#), "{body}");
    let (status, body) = get(&server.endpoint(), "/version");
    assert_eq!(status, 200);
    assert!(
        body.contains(r#""etcdserver":"3."#) && body.contains(r#""etcdcluster":"3."#),
        "{body}"
    );
    assert_eq!(get(&server.endpoint(), "/no-such-page").0, 404);
    // gRPC still works on the same port.
    let mut kv = server.kv().await;
    kv.put(support::put_req("k", "v"))
        .await
        .expect("put over gRPC");
}
